//! `linux.seccomp`: Docker's default profile, every action, every operator, notify.

use dray_e2e::*;
use serde_json::{json, Value};
use std::os::fd::AsRawFd;

fn docker_profile() -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/docker-default-seccomp.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn with_admin_caps(b: &mut Bundle) {
    // CAP_SYS_ADMIN, so that a refused mount/unshare is seccomp's doing, not missing caps.
    let caps = json!([
        "CAP_SYS_ADMIN",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_SETUID",
        "CAP_SETGID"
    ]);
    b.config["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
}

#[test]
fn docker_default_profile_refuses_unshare_and_mount() {
    let mut b = Bundle::new(
        "secdocker",
        &[
            "sh",
            "-c",
            "unshare -m true 2>&1; mount -t tmpfs none /mnt 2>&1; ls /bin/sh",
        ],
    );
    with_admin_caps(&mut b);
    b.config["linux"]["seccomp"] = docker_profile();
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let l: Vec<&str> = out.lines().collect();
    assert!(l[0].contains("Operation not permitted"), "unshare: {out}");
    // busybox mount words EPERM as "permission denied".
    assert!(l[1].contains("permission denied"), "mount: {out}");
    assert_eq!(l[2], "/bin/sh", "ordinary programs run: {out}");
    // Without the profile, the same caps let both succeed: the refusal above is seccomp's.
    let mut b = Bundle::new("secnone", &["sh", "-c", "unshare -m true && echo unshare-ok"]);
    with_admin_caps(&mut b);
    let o = b.run();
    assert_eq!(stdout(&o), "unshare-ok\n", "{}", stderr(&o));
}

#[test]
fn docker_profile_applies_to_exec_too_and_without_no_new_privileges() {
    let mut b = Bundle::new("secexec", &["sleep", "100"]);
    with_admin_caps(&mut b);
    b.config["process"]["noNewPrivileges"] = json!(false);
    b.config["linux"]["seccomp"] = docker_profile();
    assert!(b.dray(&["run", "-d", &b.id.clone()]).status.success());
    let o = b.dray(&[
        "exec",
        &b.id,
        "sh",
        "-c",
        "unshare -m true 2>&1; grep Seccomp: /proc/self/status",
    ]);
    let out = stdout(&o);
    assert!(out.contains("Operation not permitted"), "{out} {}", stderr(&o));
    assert!(out.contains("Seccomp:\t2"), "{out}");
    let o = b.dray(&["exec", &b.id, "sh", "-c", "grep NoNewPrivs /proc/self/status"]);
    assert!(stdout(&o).contains("NoNewPrivs:\t0"), "{}", stdout(&o));
    b.cleanup();
}

/// Runs `script` under a profile whose default is ALLOW and `rule` applies to mkdir.
fn run_with_rule(name: &str, rule: Value, script: &str) -> std::process::Output {
    let mut b = Bundle::new(name, &["sh", "-c", script]);
    let mut rule = rule;
    rule["names"] = json!(["mkdir", "mkdirat"]);
    b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]});
    b.run()
}

#[test]
fn every_action() {
    let o = run_with_rule(
        "errno",
        json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 38}),
        "mkdir /tmp/x 2>&1; true",
    );
    assert!(stdout(&o).contains("Function not implemented"), "{}", stdout(&o));
    for (action, code) in [
        ("SCMP_ACT_KILL_PROCESS", 159),
        ("SCMP_ACT_KILL", 159),
        ("SCMP_ACT_KILL_THREAD", 159),
        ("SCMP_ACT_TRAP", 159),
    ] {
        let o = run_with_rule("kill", json!({"action": action}), "exec mkdir /tmp/x");
        assert_eq!(o.status.code(), Some(code), "{action}: {}", stderr(&o));
    }
    // TRACE without a tracer: the call fails with ENOSYS.
    let o = run_with_rule("trace", json!({"action": "SCMP_ACT_TRACE"}), "mkdir /tmp/x 2>&1; true");
    assert!(stdout(&o).contains("Function not implemented"), "{}", stdout(&o));
    for action in ["SCMP_ACT_LOG", "SCMP_ACT_ALLOW"] {
        let o = run_with_rule("allow", json!({"action": action}), "mkdir /tmp/x && echo made");
        assert_eq!(stdout(&o), "made\n", "{action}: {}", stderr(&o));
    }
    // The default action with its errno.
    let mut b = Bundle::new("default", &["sh", "-c", "mkdir /tmp/x 2>&1; true"]);
    b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]});
    let o = b.run();
    assert!(
        stdout(&o).contains("Operation not permitted"),
        "{} {}",
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn every_operator() {
    // kill(99999, sig) fails with ESRCH when allowed and EPERM when the rule refuses it.
    let script =
        "for s in 1 5 9 10 12 15; do kill -$s 99999 2>&1 | grep -q 'not permitted' && printf '%s ' $s; done; echo";
    for (op, value, two, want) in [
        ("SCMP_CMP_EQ", 10, None, "10"),
        ("SCMP_CMP_NE", 10, None, "1 5 9 12 15"),
        ("SCMP_CMP_LT", 10, None, "1 5 9"),
        ("SCMP_CMP_LE", 10, None, "1 5 9 10"),
        ("SCMP_CMP_GE", 10, None, "10 12 15"),
        ("SCMP_CMP_GT", 10, None, "12 15"),
        ("SCMP_CMP_MASKED_EQ", 1, Some(1), "1 5 9 15"),
    ] {
        let mut arg = json!({"index": 1, "value": value, "op": op});
        if let Some(t) = two {
            arg["valueTwo"] = json!(t);
        }
        let mut b = Bundle::new("op", &["sh", "-c", script]);
        b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [arg]}]});
        let o = b.run();
        assert_eq!(stdout(&o).trim(), want, "{op}: {}", stderr(&o));
    }
}

#[test]
fn notify_sends_the_fd_and_state_to_the_listener() {
    let mut b = Bundle::new("notify", &["sh", "-c", "mkdir /tmp/x 2>&1; true"]);
    let sock = b.dir.join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock, "listenerMetadata": "meta-1",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]});
    let agent = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let (data, fd) = recv_with_fd(conn.as_raw_fd());
        let v: Value = serde_json::from_slice(&data).unwrap();
        // Closing the listener fd makes the notified calls fail with ENOSYS.
        let fd = fd.expect("no fd");
        let is_listener = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .to_string_lossy()
            .contains("seccomp");
        drop(fd);
        (v, is_listener)
    });
    let o = b.run();
    let (v, is_listener) = agent.join().unwrap();
    assert!(is_listener, "the fd is not a seccomp listener");
    assert_eq!(v["fds"], json!(["seccompFd"]));
    assert_eq!(v["metadata"], "meta-1");
    assert_eq!(v["state"]["id"], b.id.as_str());
    assert!(v["pid"].as_i64().unwrap() > 0);
    assert!(
        stdout(&o).contains("Function not implemented"),
        "{} {}",
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn bad_profiles_fail_clearly() {
    for (name, profile, needle) in [
        ("secbadact", json!({"defaultAction": "SCMP_ACT_NOPE"}), "SCMP_ACT_NOPE"),
        (
            "secnotifywrite",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/none.sock", "syscalls": [{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]}),
            "SCMP_ACT_NOTIFY cannot be used for the write syscall",
        ),
        (
            "secnolistener",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            "listenerPath",
        ),
    ] {
        let mut b = Bundle::new(name, &["true"]);
        b.config["linux"]["seccomp"] = profile;
        let o = b.dray(&["create", &b.id.clone()]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        assert!(stderr(&o).contains(needle), "{name}: {}", stderr(&o));
        assert_no_leaks(&b);
    }
    // Unknown syscall names are skipped, logged at debug level as runc does (engines send
    // profiles naming the calls of every architecture).
    let mut b = Bundle::new("secunknown", &["true"]);
    b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"}]});
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("no_such_call"), "not a warning: {}", stderr(&o));
    let o = b.dray(&["--debug", "run", &b.id.clone()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("no_such_call"), "{}", stderr(&o));
}

#[test]
fn compiled_profiles_are_cached_per_profile() {
    let mut b = Bundle::new("seccache", &["true"]);
    b.config["linux"]["seccomp"] = docker_profile();
    let count = |b: &Bundle| {
        std::fs::read_dir(b.root.join(".cache"))
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with("seccomp-")
                })
                .count()
            })
            .unwrap_or(0)
    };
    assert!(b.run().status.success());
    assert_eq!(count(&b), 1);
    assert!(b.run().status.success());
    assert_eq!(count(&b), 1, "the same profile is compiled once");
    b.config["linux"]["seccomp"]["defaultErrnoRet"] = json!(38);
    assert!(b.run().status.success());
    assert_eq!(count(&b), 2, "another profile gets its own entry");
}

/// A bundle running the static probe (tests/fixtures/probe.c) with `args`: busybox has no
/// applet for the calls it makes.
fn probe_bundle(name: &str, args: &[&str]) -> Bundle {
    let mut argv = vec!["/probe"];
    argv.extend_from_slice(args);
    let b = Bundle::new(name, &argv);
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/probe.c");
    let st = std::process::Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(b.dir.join("rootfs/probe"))
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "gcc -static failed");
    b
}

#[test]
fn docker_default_profile_refuses_keyctl() {
    let mut b = probe_bundle("seckeyctl", &["keyctl"]);
    with_admin_caps(&mut b);
    let o = b.run();
    assert_eq!(stdout(&o), "ok\n", "without the profile keyctl works: {}", stderr(&o));
    b.config["linux"]["seccomp"] = docker_profile();
    let o = b.run();
    assert_eq!(stdout(&o), "EPERM\n", "{}", stderr(&o));
}

#[test]
fn a_profile_refusing_getcwd_still_runs() {
    // The runtime validation suite's profile errnos getcwd, which the CVE-2024-21626 check of
    // the working directory uses: the check runs before the filter is installed.
    for nnp in [false, true] {
        let mut b = Bundle::new("getcwd", &["sh", "-c", "echo ran"]);
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]});
        let o = b.run();
        assert!(o.status.success(), "nnp {nnp}: {}", stderr(&o));
        assert_eq!(stdout(&o), "ran\n");
    }
}

#[test]
fn calls_newer_than_the_profile_get_enosys_and_default_errno_ret_applies() {
    // runc: a restrictive profile answers system calls newer than any it names with ENOSYS (a
    // C library then falls back), not with its default action.
    let mut b = probe_bundle("secnosys", &["nr1000"]);
    b.config["linux"]["seccomp"] = docker_profile();
    let o = b.run();
    assert_eq!(stdout(&o), "Function not implemented\n", "{}", stderr(&o));
    // Also when the default action kills.
    let mut b = probe_bundle("secnosys-kill", &["nr1000"]);
    let mut p = docker_profile();
    p["defaultAction"] = json!("SCMP_ACT_KILL_PROCESS");
    b.config["linux"]["seccomp"] = p;
    let o = b.run();
    assert_eq!(stdout(&o), "Function not implemented\n", "{}", stderr(&o));
    // defaultErrnoRet is the default action's errno (runc's test: ENXIO for a chdir the
    // profile leaves out); a known call still gets it.
    for call in ["chdir", "nr1000"] {
        let mut b = probe_bundle("secerrnoret", &[call]);
        let mut p = docker_profile();
        p["defaultErrnoRet"] = json!(6);
        for rule in p["syscalls"].as_array_mut().unwrap() {
            if let Some(names) = rule["names"].as_array_mut() {
                names.retain(|n| n != "chdir");
            }
        }
        b.config["linux"]["seccomp"] = p;
        let o = b.run();
        let want = if call == "chdir" {
            "No such device or address\n"
        } else {
            "Function not implemented\n"
        };
        assert_eq!(stdout(&o), want, "{call}: {}", stderr(&o));
    }
}

#[test]
fn start_container_hooks_run_under_the_filter_with_stdio_only() {
    // runc's test: a profile listing foreign architectures too (they cannot make calls on this
    // kernel), and a startContainer hook that the filter kills.
    let arches = json!([
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_ARM"
    ]);
    let mut b = Bundle::new("sechook", &["/bin/true"]);
    b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": arches,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]});
    b.config["hooks"] = json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "mkdir /dev/shm/foo"]}]});
    let o = b.run();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("error running startContainer hook #0") && err.contains("bad system call"),
        "{err}"
    );
    assert_no_leaks(&b);
    // A hook the profile allows runs, and it gets its stdio and no other fd (runc counts
    // them), even when the container is passed one with --preserve-fds.
    let mut b = Bundle::new("sechook-ok", &["sh", "-c", "cat /out/fds"]);
    b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": arches,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]});
    b.config["hooks"] =
        json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "ls /proc/self/fd | wc -l > /out/fds"]}]});
    let extra = std::fs::File::open("/dev/null").unwrap();
    let mut cmd = b.cmd(&["run", "--preserve-fds", "1", &b.id.clone()]);
    inherit_fd_as(&mut cmd, extra.as_raw_fd(), &[3]);
    let o = run_with_timeout(cmd, std::time::Duration::from_secs(30));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "4\n", "stdio and ls's own directory fd");
}

/// A seccomp agent: answers every notification on `fd` until the container is gone. mkdir is
/// answered "done" without doing anything; every other call continues in the kernel.
fn answer_notifications(fd: std::os::fd::OwnedFd) -> usize {
    const RECV: libc::c_ulong = 0xc050_2100; // SECCOMP_IOCTL_NOTIF_RECV
    const SEND: libc::c_ulong = 0xc018_2101; // SECCOMP_IOCTL_NOTIF_SEND
    const CONTINUE: u32 = 1; // SECCOMP_USER_NOTIF_FLAG_CONTINUE
    let mut answered = 0;
    loop {
        // struct seccomp_notif: id u64, pid u32, flags u32, data {nr i32, arch u32, ip u64,
        // args [u64; 6]}.
        let mut req = [0u8; 80];
        // SAFETY: RECV fills the 80-byte struct seccomp_notif.
        if unsafe { libc::ioctl(fd.as_raw_fd(), RECV, req.as_mut_ptr()) } != 0 {
            return answered;
        }
        let id = u64::from_ne_bytes(req[0..8].try_into().unwrap());
        let nr = i32::from_ne_bytes(req[16..20].try_into().unwrap()) as libc::c_long;
        // struct seccomp_notif_resp: id u64, val i64, error i32, flags u32.
        let mut resp = [0u8; 24];
        resp[0..8].copy_from_slice(&id.to_ne_bytes());
        if nr != libc::SYS_mkdir && nr != libc::SYS_mkdirat {
            resp[20..24].copy_from_slice(&CONTINUE.to_ne_bytes());
        }
        // SAFETY: SEND reads the 24-byte struct seccomp_notif_resp.
        unsafe { libc::ioctl(fd.as_raw_fd(), SEND, resp.as_mut_ptr()) };
        answered += 1;
    }
}

#[test]
fn notify_flow_end_to_end_with_the_calls_the_runtime_makes_too() {
    // runc's notify tests: the calls the init itself makes after installing the filter
    // (openat, read, close, execve) are notified as well; the agent lets them continue, and
    // answers mkdir itself. With and without noNewPrivileges (the filter goes in at different
    // points).
    for nnp in [false, true] {
        let mut b = Bundle::new(
            "notifyflow",
            &["sh", "-c", "mkdir /tmp/x && echo made; ls -d /tmp/x 2>&1"],
        );
        let sock = b.dir.join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock,
            "syscalls": [{"names": ["mkdir", "mkdirat", "execve", "openat", "open", "read", "close"], "action": "SCMP_ACT_NOTIFY"}]});
        let agent = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let (_, fd) = recv_with_fd(conn.as_raw_fd());
            answer_notifications(fd.expect("no fd"))
        });
        let o = b.run();
        let answered = agent.join().unwrap();
        let out = stdout(&o);
        // mkdir "succeeded" without a directory: ls fails, and so does the container.
        assert_eq!(o.status.code(), Some(1), "nnp {nnp}: {out} {}", stderr(&o));
        assert!(
            out.starts_with("made\n") && out.contains("No such file"),
            "nnp {nnp}: {out}"
        );
        assert!(answered > 3, "nnp {nnp}: {answered}");
        assert_no_leaks(&b);
    }
}
