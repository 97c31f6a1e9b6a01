//! create / start / state / kill / delete / run / list, as runc does them.

use dray_e2e::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn create_does_not_run_the_process_until_start() {
    let b = Bundle::new("life", &["sh", "-c", "touch /out/started; exec sleep 100"]);
    let pidfile = b.dir.join("pidfile");
    let o = b.dray(&["create", "--pid-file", pidfile.to_str().unwrap(), &b.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let st = b.state();
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], b.id.as_str());
    assert_eq!(st["bundle"], b.dir.to_str().unwrap());
    assert_eq!(st["rootfs"], b.dir.join("rootfs").to_str().unwrap());
    assert!(st["ociVersion"].is_string() && st["created"].is_string());
    let pid = st["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), pid.to_string());
    std::thread::sleep(Duration::from_millis(200));
    assert!(!b.out().join("started").exists(), "the process ran before start");

    let o = b.dray(&["start", &b.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_for_file(&b.out().join("started"));
    assert_eq!(b.status(), "running");
    assert_eq!(b.state()["pid"].as_i64().unwrap(), pid);
    // The init is the user's process now (exec, no extra process).
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");

    // A second start is refused.
    assert!(!b.dray(&["start", &b.id]).status.success());
    // delete without --force refuses a running container.
    let o = b.dray(&["delete", &b.id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not stopped"), "{}", stderr(&o));

    let o = b.dray(&["kill", &b.id, "KILL"]);
    assert!(o.status.success(), "{}", stderr(&o));
    b.wait_status("stopped");
    assert_eq!(b.state()["pid"], 0);
    let o = b.dray(&["delete", &b.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_no_leaks(&b);
    // The container is gone.
    let o = b.dray(&["state", &b.id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"));
}

#[test]
fn delete_of_a_created_container_kills_its_init() {
    let b = Bundle::new("delcreated", &["sleep", "100"]);
    b.create();
    let pid = b.state()["pid"].as_i64().unwrap() as i32;
    let o = b.dray(&["delete", &b.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/exe")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
    );
    assert_no_leaks(&b);
}

#[test]
fn delete_force_kills_a_running_container() {
    let b = Bundle::new("delforce", &["sleep", "100"]);
    b.create();
    assert!(b.dray(&["start", &b.id]).status.success());
    let o = b.dray(&["delete", "--force", &b.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_no_leaks(&b);
}

#[test]
fn run_returns_the_exit_status() {
    let b = Bundle::new("exit", &["sh", "-c", "exit 42"]);
    let o = b.run();
    assert_eq!(o.status.code(), Some(42), "{}", stderr(&o));
    assert_no_leaks(&b);
    // pid 1 of a pid namespace cannot be killed from inside it: use the host's pid namespace.
    let mut b = Bundle::new("exitsig", &["sh", "-c", "kill -9 $$"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "pid");
    let o = b.run();
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    assert_no_leaks(&b);
}

#[test]
fn run_passes_stdio_through() {
    let b = Bundle::new("stdio", &["sh", "-c", "echo out; echo err >&2"]);
    let o = b.run();
    assert!(o.status.success());
    assert_eq!(stdout(&o), "out\n");
    assert!(stderr(&o).contains("err\n"));
}

#[test]
fn run_forwards_signals_to_the_container() {
    let b = Bundle::new(
        "sigfwd",
        &[
            "sh",
            "-c",
            "trap 'exit 7' TERM; touch /out/ready; while :; do sleep 0.05; done",
        ],
    );
    let mut child = b
        .cmd(&["run", &b.id])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&b.out().join("ready"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(7));
    assert_no_leaks(&b);
}

#[test]
fn fast_exits_are_never_lost() {
    // The exit of a container that exits at once must be seen every time (SIGCHLD is blocked
    // before the fork); a lost one would hang until the time limit.
    for _ in 0..15 {
        let b = Bundle::new("fast", &["true"]);
        let o = b.run();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
}

#[test]
fn run_detached_leaves_the_container_running() {
    let b = Bundle::new("detach", &["sleep", "100"]);
    let o = b.dray(&["run", "--detach", &b.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(b.status(), "running");
    b.cleanup();
}

#[test]
fn kill_accepts_names_and_numbers_and_all() {
    let b = Bundle::new("kill", &["sh", "-c", "trap 'echo usr1 >> /out/log' USR1; trap 'echo hup >> /out/log' HUP; touch /out/ready; while :; do sleep 0.05; done"]);
    b.create();
    assert!(b.dray(&["start", &b.id]).status.success());
    wait_for_file(&b.out().join("ready"));
    assert!(b.dray(&["kill", &b.id, "USR1"]).status.success());
    let t = std::time::Instant::now();
    while std::fs::read_to_string(b.out().join("log")).unwrap_or_default() != "usr1\n" {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(b.dray(&["kill", &b.id, "SIGHUP"]).status.success());
    while std::fs::read_to_string(b.out().join("log")).unwrap_or_default() != "usr1\nhup\n" {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = b.dray(&["kill", &b.id, "NOSUCHSIG"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(b.dray(&["kill", "--all", &b.id, "9"]).status.success());
    b.wait_status("stopped");
    let o = b.dray(&["kill", &b.id, "KILL"]);
    assert_eq!(o.status.code(), Some(1), "kill of a stopped container must fail");
    b.cleanup();
}

#[test]
fn list_shows_containers_in_table_json_and_quiet_forms() {
    let b = Bundle::new("list", &["sleep", "100"]);
    b.create();
    let o = b.dray(&["list"]);
    let t = stdout(&o);
    let mut lines = t.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[0], b.id);
    assert_eq!(row[2], "created");
    assert_eq!(row[5], "root");
    let o = b.dray(&["list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["id"], b.id.as_str());
    assert_eq!(v[0]["status"], "created");
    assert_eq!(v[0]["owner"], "root");
    // As runc: `state` leaves the owner empty; `list` names the state directory's owner.
    let st: serde_json::Value = serde_json::from_slice(&b.dray(&["state", &b.id]).stdout).unwrap();
    assert_eq!(st["owner"], "");
    let o = b.dray(&["list", "-q"]);
    assert_eq!(stdout(&o), format!("{}\n", b.id));
    b.cleanup();
}

#[test]
fn state_of_a_missing_container_fails_clearly() {
    let b = Bundle::new("missing", &["true"]);
    for cmd in [
        vec!["state", "nope"],
        vec!["start", "nope"],
        vec!["kill", "nope"],
        vec!["delete", "nope"],
    ] {
        let o = b.dray(&cmd);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        assert!(e.contains("\"nope\"") && e.contains("does not exist"), "{e}");
    }
}

#[test]
fn concurrent_creates_of_one_id_let_exactly_one_win() {
    let b = Bundle::new("race", &["sleep", "100"]);
    b.save();
    let children: Vec<_> = (0..4)
        .map(|_| {
            let mut c = std::process::Command::new(dray_bin());
            c.arg("--root").arg(&b.root).args(["create", &b.id]).current_dir(&b.dir);
            std::thread::spawn(move || run_with_timeout(c, std::time::Duration::from_secs(60)))
        })
        .collect();
    let results: Vec<_> = children.into_iter().map(|c| c.join().unwrap()).collect();
    let ok = results.iter().filter(|o| o.status.success()).count();
    assert_eq!(ok, 1, "{:?}", results.iter().map(stderr).collect::<Vec<_>>());
    assert!(results
        .iter()
        .filter(|o| !o.status.success())
        .all(|o| stderr(o).contains("already exists")));
    assert_eq!(b.status(), "created");
    b.cleanup();
}

#[test]
fn containers_run_in_parallel() {
    // Engines start many containers at once; each must come up whatever the others do (the
    // runtime's cgroup work and each init's set-up interleave).
    let b = Bundle::new("par", &["sh", "-c", "test -c /dev/null && echo ok"]);
    b.save();
    for round in 0..5 {
        let children: Vec<_> = (0..10)
            .map(|i| {
                let mut c = std::process::Command::new(dray_bin());
                c.arg("--root")
                    .arg(&b.root)
                    .args(["run", &format!("{}-{round}-{i}", b.id)])
                    .current_dir(&b.dir);
                std::thread::spawn(move || run_with_timeout(c, std::time::Duration::from_secs(60)))
            })
            .collect();
        for c in children {
            let o = c.join().unwrap();
            assert!(o.status.success() && stdout(&o) == "ok\n", "{}", stderr(&o));
        }
    }
    let left: Vec<_> = std::fs::read_dir(&b.root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "state left behind: {left:?}");
    for i in 0..10 {
        let cgs = cgroup_dirs(&format!("{}-4-{i}", b.id));
        assert!(cgs.is_empty(), "cgroups left behind: {cgs:?}");
    }
    assert_no_leaks(&b);
}

#[test]
fn json_log_format_is_what_containerd_parses() {
    let b = Bundle::new("log", &["true"]);
    let log = b.dir.join("log.json");
    let o = b.dray(&["--log", log.to_str().unwrap(), "--log-format", "json", "start", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(last["msg"].as_str().unwrap().contains("\"nope\""));
    assert!(last["time"].as_str().unwrap().ends_with('Z'));
    // And one clear line on stderr.
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    let _ = json!(null);
}

#[test]
fn realtime_signals_and_forced_delete_of_a_missing_container() {
    let b = Bundle::new(
        "rtsig",
        &[
            "sh",
            "-c",
            "trap 'echo rt >> /out/log' 35; touch /out/ready; while :; do sleep 0.05; done",
        ],
    );
    b.create();
    assert!(b.dray(&["start", &b.id]).status.success());
    wait_for_file(&b.out().join("ready"));
    // RTMIN is 34 with glibc; RTMIN+1 = 35.
    let o = b.dray(&["kill", &b.id, "RTMIN+1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = std::time::Instant::now();
    while std::fs::read_to_string(b.out().join("log")).unwrap_or_default() != "rt\n" {
        assert!(t.elapsed() < Duration::from_secs(10), "real-time signal not delivered");
        std::thread::sleep(Duration::from_millis(10));
    }
    b.cleanup();
    // As runc: delete --force of a container that does not exist succeeds.
    assert!(b.dray(&["delete", "--force", "no-such-container"]).status.success());
    assert_eq!(b.dray(&["delete", "no-such-container"]).status.code(), Some(1));
}

#[test]
fn features_describe_what_works() {
    let b = Bundle::new("features", &["true"]);
    let o = b.dray(&["features"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let list = |p: &str| {
        v.pointer(p)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(list("/linux/namespaces").contains(&"pid".to_string()));
    assert!(list("/linux/capabilities").contains(&"CAP_SYS_ADMIN".to_string()));
    assert!(list("/mountOptions").contains(&"rro".to_string()));
    assert_eq!(list("/hooks").len(), 6);
    assert_eq!(v.pointer("/linux/seccomp/enabled"), Some(&json!(true)));
    assert!(list("/linux/seccomp/actions").contains(&"SCMP_ACT_NOTIFY".to_string()));
    assert_eq!(list("/linux/seccomp/operators").len(), 7);
    // What features says is off is refused by create.
    assert_eq!(v.pointer("/linux/apparmor/enabled"), Some(&json!(false)));
    assert_eq!(v["ociVersionMax"], "1.2.0");
    // Every namespace it lists can really be created.
    let mut b = Bundle::new("featns", &["true"]);
    let ns: Vec<serde_json::Value> = list("/linux/namespaces")
        .into_iter()
        .map(|t| json!({"type": t}))
        .collect();
    b.config["linux"]["namespaces"] = json!(ns);
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn delete_force_kills_and_removes_sub_cgroups() {
    // runc's test on cgroup v1: a process of the container moved (from inside, with a script
    // on the exec's stdin) into sub-cgroups it made; delete --force kills it and removes all.
    let mut b = Bundle::new("delsub", &["sleep", "1000"]);
    // A nested path, as runc's test sets one.
    b.config["linux"]["cgroupsPath"] = serde_json::json!(format!("/dray-delsub-test/{}", b.id));
    // The cgroup mount writable, as runc's test makes it.
    for m in b.config["mounts"].as_array_mut().unwrap() {
        if m["type"] == "cgroup" {
            m["options"] = serde_json::json!(["nosuid", "noexec", "nodev", "relatime", "rw"]);
        }
    }
    let id = b.id.clone();
    assert!(b.dray(&["run", "-d", &id]).status.success());
    if !std::path::Path::new("/sys/fs/cgroup/freezer").exists() || !std::path::Path::new("/sys/fs/cgroup/pids").exists()
    {
        eprintln!("skipped: not a cgroup v1 host");
        b.cleanup();
        return;
    }
    assert!(b.dray(&["exec", "-d", &id, "sleep", "1d"]).status.success());
    let script = "pid=$(ps -o pid,args | grep '[s]leep 1d' | awk '{print $1}'); \
                  for s in pids freezer; do cd /sys/fs/cgroup/$s && mkdir foo && echo $pid > foo/tasks && cat foo/tasks; done";
    let mut cmd = b.cmd(&["exec", &id, "sh"]);
    cmd.stdin(std::process::Stdio::piped());
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{script}").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().all(|l| l.parse::<i32>().is_ok()), "{out}");
    let subs: Vec<_> = cgroup_dirs(&id)
        .into_iter()
        .map(|d| d.join("foo"))
        .filter(|d| d.exists())
        .collect();
    assert_eq!(subs.len(), 2, "{subs:?}");
    let o = b.dray(&["delete", "--force", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!b.dray(&["state", &id]).status.success());
    assert!(subs.iter().all(|d| !d.exists()), "{subs:?}");
    assert_no_leaks(&b);
    // The parent dray made for the path went with it.
    assert!(cgroup_dirs("dray-delsub-test").is_empty());
}
