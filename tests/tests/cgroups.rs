//! cgroups on the host layouts dray must handle: this host's v1/hybrid layout is covered by
//! the other tests; here a private mount namespace shows only a cgroup2 hierarchy at
//! /sys/fs/cgroup, as on a pure v2 host.

use dray_e2e::*;

fn v2_mount_available() -> bool {
    cgroup2_available()
}

#[test]
fn pure_cgroup_v2_layout() {
    if !v2_mount_available() {
        eprintln!("skipped: no cgroup2 hierarchy on this host");
        return;
    }
    let b = Bundle::new(
        "cgv2",
        &[
            "sh",
            "-c",
            "cat /proc/self/cgroup; grep ' /sys/fs/cgroup ' /proc/self/mountinfo; cat /sys/fs/cgroup/cgroup.procs",
        ],
    );
    let o = run_pure_v2(&b, "grep -c cgroup /proc/self/mountinfo && exec {dray} run {id}");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // The kernel still lists the (unmounted) v1 hierarchies in /proc/self/cgroup: look at the
    // cgroup2 line only.
    assert_eq!(
        out.lines().next(),
        Some("1"),
        "only the cgroup2 mount is visible: {out}"
    );
    // In its cgroup namespace the container is at the root of a fresh cgroup2 mount, alone.
    assert_eq!(out.lines().find(|l| l.starts_with("0::")), Some("0::/"), "{out}");
    assert!(out.lines().any(|l| l.contains(" - cgroup2 ")), "{out}");
    assert_eq!(out.lines().last(), Some("1"), "{out}");
    assert_no_leaks(&b);
}

#[test]
fn pure_cgroup_v2_layout_without_cgroup_namespace() {
    if !v2_mount_available() {
        eprintln!("skipped: no cgroup2 hierarchy on this host");
        return;
    }
    let mut b = Bundle::new(
        "cgv2nons",
        &["sh", "-c", "cat /proc/self/cgroup; cat /sys/fs/cgroup/cgroup.procs"],
    );
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "cgroup");
    let o = run_pure_v2(&b, "exec {dray} run {id}");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let v2 = out.lines().find(|l| l.starts_with("0::")).unwrap();
    // Without a cgroup namespace the path shows; /sys/fs/cgroup is a bind of its directory.
    assert!(v2.ends_with(&format!("/{}", b.id)), "{out}");
    assert_eq!(out.lines().last().unwrap(), "1", "{out}");
    assert_no_leaks(&b);
}

#[test]
fn pause_and_resume_on_cgroup_v2() {
    if !v2_mount_available() {
        eprintln!("skipped: no cgroup2 hierarchy on this host");
        return;
    }
    let b = Bundle::new("cgv2pause", &["sleep", "100"]);
    let o = run_pure_v2(
        &b,
        "{dray} run -d {id} && {dray} pause {id} && {dray} state {id} | grep -o '\"status\": \"[a-z]*\"' && \
         cat /sys/fs/cgroup/{id}/cgroup.freeze && {dray} resume {id} && {dray} state {id} | grep -o '\"status\": \"[a-z]*\"' && \
         {dray} delete --force {id} && echo deleted",
    );
    assert!(o.status.success(), "{} {}", stdout(&o), stderr(&o));
    assert_eq!(
        stdout(&o),
        "\"status\": \"paused\"\n1\n\"status\": \"running\"\ndeleted\n"
    );
    assert_no_leaks(&b);
}

/// Every line of /proc/PID/cgroup (one per hierarchy of this host) names the container's own
/// cgroup (the default cgroupsPath is the id).
fn assert_in_container_cgroups(pid: i32, id: &str, what: &str) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for l in text.lines() {
        let path = l.splitn(3, ':').nth(2).unwrap();
        assert!(
            path.ends_with(&format!("/{id}")),
            "{what} is outside its cgroup: {l}\n{text}"
        );
    }
}

#[test]
fn init_and_exec_are_in_the_container_cgroup_in_every_hierarchy() {
    // A rootful init enters its v1 cgroups itself, an init in a user namespace is moved by the
    // runtime, and so is the init forked by the slow path's intermediate; exec'd processes
    // enter through their helper. All must end up in every hierarchy.
    for variant in ["rootful", "userns", "slow"] {
        let mut b = Bundle::new(&format!("cgin{variant}"), &["sleep", "1000"]);
        let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
        match variant {
            "userns" | "slow" => {
                ns.push(serde_json::json!({"type": "user"}));
                if variant == "slow" {
                    ns.retain(|n| n["type"] != "network");
                    ns.push(serde_json::json!({"type": "network", "path": "/proc/self/ns/net"}));
                }
                b.config["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
                b.config["linux"]["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
            }
            _ => {}
        }
        b.create();
        let init = b.state()["pid"].as_i64().unwrap() as i32;
        assert_in_container_cgroups(init, &b.id, &format!("{variant} init"));
        assert!(b.dray(&["start", &b.id]).status.success());
        let pid = b.exec_detached(&["sleep", "500"]);
        assert_in_container_cgroups(pid, &b.id, &format!("{variant} exec"));
        b.cleanup();
        assert_no_leaks(&b);
    }
}

/// The v1 hierarchies (and the v2 mount) this host has, as directories to make a cgroup in.
fn hierarchies() -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists() && !p.is_symlink())
        .collect()
}

#[test]
fn a_cgroup_with_processes_warns_and_a_frozen_one_is_refused() {
    // runc 1.1 (issue 10, item 18): creating into a cgroup that already holds processes warns
    // "container's cgroup is not empty"; a frozen one is an error.
    let name = format!("dray-nonempty-{}", std::process::id());
    let dirs: Vec<_> = hierarchies().into_iter().map(|h| h.join(&name)).collect();
    /// Kills the sleeper and removes the hand-made cgroups, whatever the test's outcome.
    struct Cleanup(std::process::Child, Vec<std::path::PathBuf>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            for d in &self.1 {
                let _ = std::fs::write(d.join("freezer.state"), "THAWED");
                for _ in 0..50 {
                    if std::fs::remove_dir(d).is_ok() || !d.exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
    }
    let sleeper = std::process::Command::new("sleep").arg("100").spawn().unwrap();
    let pid = sleeper.id();
    let cleanup = Cleanup(sleeper, dirs.clone());
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
        let _ = std::fs::write(d.join("cgroup.procs"), pid.to_string());
    }
    let mut b = Bundle::new("nonempty", &["true"]);
    b.config["linux"]["cgroupsPath"] = serde_json::json!(format!("/{name}"));
    let o = b.dray(&["create", &b.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("container's cgroup is not empty: 1 process(es) found"),
        "{}",
        stderr(&o)
    );
    assert!(b.dray(&["delete", "--force", &b.id]).status.success());
    // Frozen: refused, and nothing is left of the attempt.
    let freezer = dirs.iter().find(|d| d.join("freezer.state").exists()).cloned();
    if let Some(f) = &freezer {
        std::fs::write(f.join("freezer.state"), "FROZEN").unwrap();
        let mut b2 = Bundle::new("frozen", &["true"]);
        b2.config["linux"]["cgroupsPath"] = serde_json::json!(format!("/{name}"));
        let o = b2.dray(&["create", &b2.id]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("unexpectedly frozen"), "{}", stderr(&o));
        assert_eq!(b2.dray(&["state", &b2.id]).status.code(), Some(1));
        std::fs::write(f.join("freezer.state"), "THAWED").unwrap();
    }
    drop(cleanup);
    for d in &dirs {
        assert!(!d.exists(), "{} was left", d.display());
    }
}

#[test]
fn unified_keys_without_their_v2_controller_are_a_clear_error() {
    // Issue 10, item 19: on this hybrid host the memory controller is a v1 one, so
    // `linux.resources.unified` memory keys cannot be applied: an error, nothing left behind.
    if !std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        eprintln!("skipped: this host's memory controller is not a v1 one");
        return;
    }
    let mut b = Bundle::new("unified", &["true"]);
    b.config["linux"]["resources"]["unified"] = serde_json::json!({"memory.max": "100000000"});
    let o = b.dray(&["create", &b.id]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("unified") && err.contains("memory.max"), "{err}");
    assert_eq!(b.dray(&["state", &b.id]).status.code(), Some(1));
    assert!(cgroup_dirs(&b.id).is_empty(), "{:?}", cgroup_dirs(&b.id));
}

#[test]
fn hierarchies_hidden_under_a_later_mount_are_not_used() {
    // Issue 10, "Also": inside a sandbox that mounted a tmpfs over /sys/fs/cgroup (and a
    // cgroup2 below it), the host's v1 mounts are still in mountinfo but not visible: only
    // the visible cgroup2 hierarchy may be used.
    if !cgroup2_available() {
        eprintln!("skipped: cgroup2 cannot be mounted here");
        return;
    }
    let b = Bundle::new("hidden", &["sh", "-c", "cat /proc/self/cgroup > /out/cgroup"]);
    b.save();
    let d = format!("{} --root {}", dray_bin().display(), b.root.display());
    let script = format!(
        "mount --make-rprivate / && mount -t tmpfs tmpfs /sys/fs/cgroup && mkdir /sys/fs/cgroup/unified && \
         mount -t cgroup2 none /sys/fs/cgroup/unified && {d} run {id} && test ! -e /sys/fs/cgroup/unified/{id}",
        id = b.id
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "sh", "-c", &script]).current_dir(&b.dir);
    let o = run_with_timeout(cmd, std::time::Duration::from_secs(30));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let cg = std::fs::read_to_string(b.out().join("cgroup")).unwrap();
    assert!(cg.lines().any(|l| l.starts_with("0::")), "{cg}");
    assert_no_leaks(&b);
}

/// Runs a dray command of `b` and checks that it ended within `secs` (runc's suites hung on
/// some of these: item 24 of issue 10).
fn prompt(b: &Bundle, args: &[&str], secs: u64) -> std::process::Output {
    let t = std::time::Instant::now();
    let o = run_with_timeout(b.cmd(args), std::time::Duration::from_secs(secs + 5));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(secs),
        "{args:?} took {:?}",
        t.elapsed()
    );
    o
}

#[test]
fn no_command_waits_forever_in_runcs_hang_cases() {
    // runc's cgroup tests: three containers in one cgroup (the later ones warned), deleted in
    // its teardown's order; each delete ends promptly and leaves the cgroup empty (the first,
    // which made it, leaves it to the others; it is removed here).
    let path = format!("/dray-shared-{}", std::process::id());
    let cts: Vec<Bundle> = (0..3)
        .map(|i| {
            let mut b = Bundle::new(&format!("shared{i}"), &["sleep", "100"]);
            b.config["linux"]["cgroupsPath"] = serde_json::json!(path);
            b
        })
        .collect();
    let o = prompt(&cts[0], &["run", "-d", &cts[0].id], 10);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = prompt(&cts[1], &["--debug", "run", "-d", &cts[1].id], 10);
    assert!(
        o.status.success() && stderr(&o).contains("container's cgroup is not empty"),
        "{}",
        stderr(&o)
    );
    let o = prompt(&cts[2], &["create", &cts[2].id], 10);
    assert!(o.status.success(), "{}", stderr(&o));
    for b in &cts {
        let o = prompt(b, &["delete", "-f", &b.id], 15);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(prompt(b, &["state", &b.id], 5).status.code(), Some(1));
    }
    let left: Vec<_> = hierarchies()
        .into_iter()
        .map(|h| h.join(&path[1..]))
        .filter(|d| d.exists())
        .collect();
    for d in &left {
        assert!(
            std::fs::read_to_string(d.join("cgroup.procs")).unwrap().is_empty(),
            "{}",
            d.display()
        );
        let _ = std::fs::remove_dir(d);
    }

    // runc's update tests: a paused container is updated (from a file and from stdin), stays
    // paused, and is deleted with --force.
    let b = Bundle::new("pausedupd", &["sleep", "100"]);
    assert!(prompt(&b, &["run", "-d", &b.id], 10).status.success());
    assert!(prompt(&b, &["pause", &b.id], 15).status.success());
    assert!(prompt(&b, &["update", "--pids-limit", "30", &b.id], 10)
        .status
        .success());
    let mut cmd = b.cmd(&["update", "-r", "-", &b.id.clone()]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(br#"{"pids": {"limit": 31}}"#).unwrap();
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(b.status(), "paused");
    // An exec into the paused container that is given up (killed) leaves its helper frozen
    // in the cgroup: that must not hold the container's lock.
    let mut exec = b
        .cmd(&["exec", "--ignore-paused", &b.id.clone(), "true"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = exec.kill();
    let _ = exec.wait();
    let o = prompt(&b, &["delete", "-f", &b.id], 15);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_no_leaks(&b);
}
