//! exec, pause/resume and ps in a running container.

use dray_e2e::*;
use serde_json::json;
use std::time::Duration;

fn running(name: &str) -> Bundle {
    let b = Bundle::new(name, &["sleep", "1000"]);
    let o = b.dray(&["run", "--detach", &b.id.clone()]);
    assert!(o.status.success(), "{}", stderr(&o));
    b
}

#[test]
fn exec_joins_the_container_and_returns_the_exit_status() {
    let b = running("exec");
    let init = b.state()["pid"].as_i64().unwrap();
    let ns = |pid: &str, n: &str| std::fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
    let o = b.dray(&[
        "exec",
        &b.id,
        "sh",
        "-c",
        "for n in pid mnt uts ipc net cgroup; do readlink /proc/self/ns/$n; done; hostname; exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    for (i, n) in ["pid", "mnt", "uts", "ipc", "net", "cgroup"].iter().enumerate() {
        assert_eq!(lines[i], ns(&init.to_string(), n).to_string_lossy(), "{n}");
    }
    assert_eq!(lines[6], "dray");
    // The exec'd process is in the container's cgroup (and cgroup namespace), like pid 1.
    let o = b.dray(&[
        "exec",
        &b.id,
        "sh",
        "-c",
        "cat /proc/self/cgroup; echo ---; cat /proc/1/cgroup",
    ]);
    let out = stdout(&o);
    let (mine, init1) = out.split_once("---\n").unwrap();
    assert_eq!(mine, init1);
    b.cleanup();
}

#[test]
fn exec_flags_user_env_cwd_caps_and_process_json() {
    let b = running("execflags");
    let o = b.dray(&[
        "exec",
        "--user",
        "1000:1001",
        "--additional-gids",
        "20",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        "--cap",
        "CAP_KILL",
        "--no-new-privs",
        &b.id,
        "sh",
        "-c",
        "id -u; id -g; echo $FOO; pwd; grep -E 'CapBnd|CapAmb|CapInh|NoNewPrivs|Groups' /proc/self/status",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(&l[..4], ["1000", "1001", "bar", "/tmp"]);
    // --cap adds to bounding (KILL is bit 5) but, as runc since CVE-2022-29162, never to
    // inheritable, nor to ambient when the process has no inheritable capabilities.
    let bnd = out.lines().find_map(|l| l.strip_prefix("CapBnd:\t")).unwrap();
    assert!(u64::from_str_radix(bnd, 16).unwrap() & (1 << 5) != 0, "{out}");
    assert!(
        out.contains("CapInh:\t0000000000000000") && out.contains("CapAmb:\t0000000000000000"),
        "{out}"
    );
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(
        out.lines().any(|x| x.starts_with("Groups:") && x.contains("20")),
        "{out}"
    );
    let process = json!({"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "echo $X; pwd"], "env": ["X=from-json", "PATH=/bin"], "cwd": "/etc"});
    let pj = b.dir.join("process.json");
    std::fs::write(&pj, process.to_string()).unwrap();
    let o = b.dray(&["exec", "--process", pj.to_str().unwrap(), &b.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "from-json\n/etc\n");
    b.cleanup();
}

#[test]
fn exec_detach_with_pid_file_and_ps() {
    let b = running("execd");
    let pid = b.exec_detached(&["sleep", "500"]);
    let init = b.state()["pid"].as_i64().unwrap() as i32;
    let o = b.dray(&["ps", "--format", "json", &b.id]);
    let pids: Vec<i32> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(pids.contains(&pid) && pids.contains(&init), "{pids:?}");
    let o = b.dray(&["ps", &b.id]);
    let t = stdout(&o);
    assert!(
        t.starts_with("UID") && t.contains("sleep 500") && t.contains("sleep 1000"),
        "{t}"
    );
    let o = b.dray(&["ps", &b.id, "-o", "pid,comm"]);
    assert!(stdout(&o).lines().next().unwrap().contains("PID"), "{}", stdout(&o));
    b.cleanup();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
    );
}

#[test]
fn exec_with_a_terminal() {
    let b = running("exectty");
    let o = b.dray(&["exec", "--tty", &b.id, "sh", "-c", "tty; exit 4"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stdout(&o).contains("/dev/pts/"), "{}", stdout(&o));
    b.cleanup();
}

#[test]
fn exec_refuses_paused_stopped_and_missing_containers() {
    let b = running("execref");
    assert!(b.dray(&["pause", &b.id]).status.success());
    assert_eq!(b.status(), "paused");
    let o = b.dray(&["exec", &b.id, "true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("paused"), "{}", stderr(&o));
    assert!(b.dray(&["resume", &b.id]).status.success());
    assert_eq!(b.status(), "running");
    assert!(
        !b.dray(&["resume", &b.id]).status.success(),
        "resume of a running container"
    );
    assert!(b.dray(&["kill", &b.id, "KILL"]).status.success());
    b.wait_status("stopped");
    let o = b.dray(&["exec", &b.id, "true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("stopped"), "{}", stderr(&o));
    let o = b.dray(&["exec", "no-such-container", "true"]);
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    let o = b.dray(&["exec", &b.id, "/no/such/binary"]);
    assert_eq!(o.status.code(), Some(255));
    b.cleanup();
}

#[test]
fn exec_of_a_missing_binary_fails_and_leaves_nothing() {
    let b = running("execmissing");
    let o = b.dray(&["exec", &b.id, "/no/such/binary"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("/no/such/binary"), "{}", stderr(&o));
    let o = b.dray(&["ps", "--format", "json", &b.id]);
    let pids: Vec<i32> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(pids.len(), 1, "only the init is left: {pids:?}");
    b.cleanup();
}

#[test]
fn pause_freezes_every_process() {
    let b = Bundle::new(
        "pause",
        &["sh", "-c", "while :; do date +%s%N > /out/tick; sleep 0.01; done"],
    );
    assert!(b.dray(&["run", "--detach", &b.id.clone()]).status.success());
    wait_for_file(&b.out().join("tick"));
    assert!(b.dray(&["pause", &b.id]).status.success());
    let a = std::fs::read_to_string(b.out().join("tick")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        std::fs::read_to_string(b.out().join("tick")).unwrap(),
        a,
        "a paused container kept running"
    );
    assert!(b.dray(&["resume", &b.id]).status.success());
    let t = std::time::Instant::now();
    while std::fs::read_to_string(b.out().join("tick")).unwrap() == a {
        assert!(t.elapsed() < Duration::from_secs(10), "resumed container does not run");
        std::thread::sleep(Duration::from_millis(10));
    }
    // delete --force of a paused container works too.
    assert!(b.dray(&["pause", &b.id]).status.success());
    assert!(b.dray(&["delete", "--force", &b.id]).status.success());
    assert_no_leaks(&b);
}

#[test]
fn exec_never_runs_the_host_binary_either() {
    let b = running("execcve");
    std::fs::write(b.dir.join("rootfs/evil"), "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(
        b.dir.join("rootfs/evil"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let before = std::fs::read(dray_bin()).unwrap();
    let o = b.dray(&["exec", &b.id, "/evil"]);
    assert_eq!(o.status.code(), Some(127), "{} {}", stdout(&o), stderr(&o));
    assert_eq!(std::fs::read(dray_bin()).unwrap(), before);
    b.cleanup();
}

#[test]
fn exec_with_console_socket_and_preserved_fds() {
    use std::os::fd::AsRawFd;
    let b = running("execsock");
    // --preserve-fds: fd 3 is passed into the process, fd 4 is not.
    let f = std::fs::File::open("/").unwrap();
    let raw = f.as_raw_fd();
    let mut cmd = b.cmd(&[
        "exec",
        "--preserve-fds",
        "1",
        &b.id,
        "sh",
        "-c",
        "ls /proc/self/fd | tr '\\n' ' '",
    ]);
    inherit_fd_as(&mut cmd, raw, &[3, 4]);
    let o = run_with_timeout(cmd, std::time::Duration::from_secs(30));
    assert_eq!(
        stdout(&o).trim(),
        "0 1 2 3 4",
        "fd 3 passed, 4 is ls's own: {}",
        stderr(&o)
    );
    // --console-socket with --tty --detach: the pty master arrives on the socket.
    let sock = b.dir.join("exec-console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let id = b.id.clone();
    let cmd = b.cmd(&[
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
        "sh",
        "-c",
        "tty; sleep 5",
    ]);
    let t = std::thread::spawn(move || run_with_timeout(cmd, std::time::Duration::from_secs(30)));
    let (conn, _) = listener.accept().unwrap();
    let (_, master) = recv_with_fd(conn.as_raw_fd());
    let o = t.join().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut f = std::fs::File::from(master.expect("no pty master"));
    let mut out = String::new();
    let mut chunk = [0u8; 256];
    while !out.contains("/dev/pts/") {
        let n = std::io::Read::read(&mut f, &mut chunk).unwrap();
        assert!(n > 0);
        out.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    b.cleanup();
}

#[test]
fn exec_failures_exit_255_and_kill_reaches_a_paused_container() {
    let b = running("exec255");
    let o = b.dray(&["exec", &b.id, "/no/such/binary"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(stderr(&o).contains("exec failed"), "{}", stderr(&o));
    assert!(b.dray(&["pause", &b.id]).status.success());
    let o = b.dray(&["kill", &b.id, "KILL"]);
    assert!(o.status.success(), "{}", stderr(&o));
    b.wait_status("stopped");
    b.cleanup();
}

#[test]
fn exec_ignore_paused_waits_for_resume() {
    // runc's test: exec --ignore-paused into a paused container blocks until `resume` (which
    // must not wait for the exec), then prints exactly what the process prints.
    let b = running("execpaused");
    assert!(b.dray(&["pause", &b.id]).status.success());
    let resumer = {
        let cmd = b.cmd(&["resume", &b.id.clone()]);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            run_with_timeout(cmd, Duration::from_secs(10))
        })
    };
    let t = std::time::Instant::now();
    let o = b.dray(&["exec", "--ignore-paused", &b.id, "echo", "ok"]);
    let r = resumer.join().unwrap();
    assert!(r.status.success(), "resume: {}", stderr(&r));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(format!("{}{}", stdout(&o), stderr(&o)), "ok\n");
    assert!(t.elapsed() >= Duration::from_millis(1400), "it ran while paused");
    assert_eq!(b.status(), "running");
    b.cleanup();
}

/// The container's v1 cgroup directory of `controller` on the host.
fn v1_dir(b: &Bundle, controller: &str) -> Option<std::path::PathBuf> {
    cgroup_dirs(&b.id)
        .into_iter()
        .find(|d| d.starts_with(format!("/sys/fs/cgroup/{controller}/")))
}

#[test]
fn exec_cgroup_runs_the_process_in_a_sub_cgroup() {
    let b = running("execcg");
    let pids = v1_dir(&b, "pids");
    let cpus: Vec<_> = ["cpu", "cpuacct", "cpu,cpuacct"]
        .iter()
        .filter_map(|c| v1_dir(&b, c))
        .collect();
    let Some(pids) = pids.filter(|_| !cpus.is_empty()) else {
        eprintln!("skipped: not a cgroup v1 host");
        b.cleanup();
        return;
    };
    let id = b.id.clone();
    let cg = |extra: &[&str]| {
        let mut args = vec!["exec"];
        args.extend_from_slice(extra);
        args.extend([id.as_str(), "cat", "/proc/self/cgroup"]);
        b.dray(&args)
    };
    // Without --cgroup, and with "/": the container's own cgroup (its namespace's root).
    for extra in [&[][..], &["--cgroup", "/"][..]] {
        let o = cg(extra);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).lines().all(|l| l.ends_with(":/")), "{}", stdout(&o));
    }
    std::fs::create_dir(pids.join("subp")).unwrap();
    for d in &cpus {
        std::fs::create_dir(d.join("subcpu")).unwrap();
    }
    let o = cg(&["--cgroup", "pids:subp", "--cgroup", "cpu,cpuacct:subcpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for l in out.lines() {
        let ctrls = l.split(':').nth(1).unwrap_or_default();
        let want = if ctrls == "pids" {
            ":/subp"
        } else if ctrls.split(',').any(|c| c == "cpu" || c == "cpuacct") {
            ":/subcpu"
        } else {
            ":/"
        };
        assert!(l.ends_with(want), "{l} in\n{out}");
    }
    assert!(out.contains(":/subp\n") && out.contains(":/subcpu\n"), "{out}");
    for (flag, msg) in [
        ("..", "is not a sub cgroup path"),
        ("nonexistent", "No such file"),
        ("cpu:nonexistent", "No such file"),
        ("whaaat:/", "unknown controller"),
    ] {
        let o = cg(&["--cgroup", flag]);
        assert!(!o.status.success(), "{flag}");
        assert!(stderr(&o).contains(msg), "{flag}: {}", stderr(&o));
    }
    // delete removes the sub-cgroups with the container's own.
    b.cleanup();
}

#[test]
fn v2_exec_falls_back_to_the_inits_cgroup_when_the_containers_has_children() {
    // runc's v2 test: once the container moved its processes into a child cgroup and enabled
    // a controller for its children, no process may join the container's own cgroup; a plain
    // exec goes where the init is, `--cgroup /` fails (EBUSY), `--cgroup foobar` works.
    if !cgroup2_available() {
        eprintln!("skipped: no cgroup2 hierarchy");
        return;
    }
    let mut b = Bundle::new("execv2cg", &["sleep", "100"]);
    for m in b.config["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/sys/fs/cgroup" {
            m["options"] = json!(["nosuid", "noexec", "nodev", "relatime", "rw"]);
        }
    }
    let setup = "read c rest < /sys/fs/cgroup/cgroup.controllers; [ -n \"$c\" ] || { echo nocontroller; exit 0; }; \
                 mkdir /sys/fs/cgroup/foobar && echo 1 > /sys/fs/cgroup/foobar/cgroup.procs && \
                 echo $$ > /sys/fs/cgroup/foobar/cgroup.procs && echo +$c > /sys/fs/cgroup/cgroup.subtree_control";
    let script = format!(
        "{{dray}} run -d {{id}} </dev/null >/dev/null 2>&1 && {{dray}} exec {{id}} sh -c '{setup}' && \
         {{dray}} exec {{id}} cat /proc/self/cgroup && \
         ({{dray}} exec --cgroup / {{id}} true 2>/dev/null && echo joined || echo busy) && \
         {{dray}} exec --cgroup foobar {{id}} cat /proc/self/cgroup; {{dray}} delete -f {{id}}"
    );
    let o = run_pure_v2(&b, &script);
    let out = stdout(&o);
    if out.starts_with("nocontroller") {
        eprintln!("skipped: no v2 controller to enable for the container's children here");
        return;
    }
    // (The v1 lines of /proc/self/cgroup are the host's hierarchies, hidden in this namespace.)
    let v2: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("0::") || *l == "busy" || *l == "joined")
        .collect();
    assert_eq!(v2, ["0::/foobar", "busy", "0::/foobar"], "{out}{}", stderr(&o));
    assert_no_leaks(&b);
}
