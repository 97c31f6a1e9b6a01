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
