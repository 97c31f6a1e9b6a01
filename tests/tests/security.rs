//! The classic escapes: CVE-2019-5736 (/proc/self/exe), CVE-2024-21626 (leaked fds and cwd).

use dray_e2e::*;
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::time::Duration;

fn sha(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn a_shebang_to_proc_self_exe_never_runs_the_host_binary() {
    // CVE-2019-5736: the container's entry point is a script whose interpreter is
    // /proc/self/exe. With a vulnerable runtime this runs the host runtime binary as a
    // container process, which can then be reopened and overwritten through /proc/PID/exe.
    let b = Bundle::new("cve5736", &["/evil"]);
    std::fs::write(b.dir.join("rootfs/evil"), "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(
        b.dir.join("rootfs/evil"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let before = sha(&dray_bin());
    let o = b.run();
    // The interpreter is the sealed exec trampoline, which refuses to run with no program.
    assert_eq!(
        o.status.code(),
        Some(127),
        "stdout {} stderr {}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        !stdout(&o).contains("Usage") && !stderr(&o).contains("Usage"),
        "the dray binary ran inside the container"
    );
    assert_eq!(sha(&dray_bin()), before);
}

#[test]
fn the_exe_of_a_running_container_is_not_the_runtime() {
    let b = Bundle::new(
        "exe",
        &[
            "sh",
            "-c",
            "readlink /proc/self/exe; ls -l /proc/1/exe; echo x >> /proc/1/exe 2>&1 || echo write-refused",
        ],
    );
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.contains("dray"), "{out}");
    assert!(out.contains("write-refused"), "{out}");
}

#[test]
fn a_waiting_init_cannot_be_reached_from_a_container_sharing_its_pid_namespace() {
    // Container A scans /proc for readable exe links once told to; container B is created in
    // A's pid namespace, so its init (still the dray binary, waiting for start) is visible.
    let a = Bundle::new("cveA", &["sh", "-c", "while [ ! -e /out/go ]; do sleep 0.02; done; for p in /proc/[0-9]*; do l=$(readlink $p/exe 2>/dev/null) && echo \"$p $l\"; cat $p/exe > /dev/null 2>&1 && echo \"readable $p\"; done > /out/scan; echo done >> /out/scan; sleep 100"]);
    let o = a.dray(&["run", "--detach", &a.id.clone()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let apid = a.state()["pid"].as_i64().unwrap();
    let mut b = Bundle::new("cveB", &["true"]);
    for ns in b.config["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "pid" {
            ns["path"] = json!(format!("/proc/{apid}/ns/pid"));
        }
    }
    b.create();
    std::fs::write(a.out().join("go"), "").unwrap();
    let scan = a.out().join("scan");
    let t = std::time::Instant::now();
    while !std::fs::read_to_string(&scan).unwrap_or_default().contains("done") {
        assert!(t.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&scan).unwrap();
    assert!(
        !text.contains("dray"),
        "container A reached the runtime binary:\n{text}"
    );
    let readable = text.lines().filter(|l| l.starts_with("readable")).count();
    let linked = text
        .lines()
        .filter(|l| !l.starts_with("readable") && *l != "done")
        .count();
    assert!(readable <= linked, "{text}");
    b.cleanup();
    a.cleanup();
}

#[test]
fn no_host_fd_leaks_into_the_container() {
    let b = Bundle::new("fdleak", &["sh", "-c", "ls /proc/self/fd | tr '\\n' ' '"]);
    let dir = std::fs::File::open("/").unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&dir);
    let mut cmd = b.cmd(&["run", &b.id]);
    inherit_fd_as(&mut cmd, raw, &[5, 6]);
    let o = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(o.status.success(), "{}", stderr(&o));
    // ls itself opens one fd (3) for the directory it lists.
    assert_eq!(stdout(&o).trim(), "0 1 2 3", "leaked fds");
    // --preserve-fds passes exactly the asked ones.
    let b = Bundle::new("fdkeep", &["sh", "-c", "ls /proc/self/fd | tr '\\n' ' '"]);
    let mut cmd = b.cmd(&["run", "--preserve-fds", "1", &b.id]);
    inherit_fd_as(&mut cmd, raw, &[3, 4]);
    let o = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "0 1 2 3 4", "fd 3 is passed, 4 is ls's own");
}

#[test]
fn a_cwd_through_a_leaked_fd_is_refused() {
    // CVE-2024-21626: cwd /proc/self/fd/N where N is an fd of the runtime's init.
    for n in 3..12 {
        let mut b = Bundle::new("cwdleak", &["sh", "-c", "pwd; ls"]);
        b.config["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        let o = b.run();
        let out = stdout(&o);
        assert!(
            !out.contains("state.json") && !out.contains("exec.fifo") && !out.contains("(unreachable)"),
            "fd {n}: {out}"
        );
        if !o.status.success() {
            assert_no_leaks(&b);
        }
    }
}

#[test]
fn preserve_fds_never_passes_the_runtimes_own_fds() {
    // Ask for 3 preserved fds but pass only fd 3: fds 4 and 5 would be the runtime's own (its
    // log file, its sockets) and must stay closed.
    let b = Bundle::new("fdfew", &["sh", "-c", "ls -l /proc/self/fd/; true"]);
    let log = b.dir.join("dray.log");
    let dir = std::fs::File::open("/").unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&dir);
    let mut cmd = b.cmd(&["--log", log.to_str().unwrap(), "run", "--preserve-fds", "3", &b.id]);
    // SAFETY: pre_exec in the child: one dup2, and closing what the test harness left open.
    unsafe {
        cmd.pre_exec(move || {
            libc::dup2(raw, 3);
            libc::fcntl(3, libc::F_SETFD, 0);
            for fd in 4..64 {
                libc::close(fd);
            }
            Ok(())
        });
    }
    let o = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(o.status.success(), "{:?} {} {}", o.status, stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        !out.contains("dray.log") && !out.contains("socket:") && !out.contains("memfd"),
        "runtime fd leaked:\n{out}"
    );
    assert!(out.lines().any(|l| l.ends_with(" 3 -> /")), "fd 3 was passed: {out}");
}

#[test]
fn proc_or_sys_as_a_symlink_in_the_rootfs_is_refused() {
    // An image whose /proc points elsewhere would get procfs mounted there, past every masked
    // path: refused, as runc does.
    for dir in ["proc", "sys"] {
        let b = Bundle::new("procsym", &["true"]);
        let p = b.dir.join("rootfs").join(dir);
        std::fs::remove_dir_all(&p).unwrap();
        std::fs::create_dir_all(b.dir.join("rootfs/elsewhere")).unwrap();
        std::os::unix::fs::symlink("/elsewhere", &p).unwrap();
        let o = b.run();
        assert!(!o.status.success(), "{dir}");
        assert!(
            stderr(&o).contains("must be mounted on an ordinary directory"),
            "{dir}: {}",
            stderr(&o)
        );
        assert_eq!(std::fs::read_dir(b.dir.join("rootfs/elsewhere")).unwrap().count(), 0);
        assert_no_leaks(&b);
    }
}

#[test]
fn no_pivot_leaves_no_bare_procfs_to_mount_from() {
    // With --no-pivot the host's mounts stay in the namespace under the moved rootfs; a whole
    // procfs among them would let a new user namespace mount a bare /proc (runc's test).
    let mut b = Bundle::new(
        "nopivotproc",
        &[
            "unshare",
            "-mrpf",
            "sh",
            "-c",
            "mount -t proc none /proc && echo mounted",
        ],
    );
    // Not uid 0: mapping uid 0 into a new user namespace needs CAP_SETFCAP (Linux 5.12).
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let o = run_with_timeout(b.cmd(&["run", "--no-pivot", &b.id]), std::time::Duration::from_secs(30));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!o.status.success(), "{all}");
    assert!(!all.contains("mounted"), "{all}");
    assert!(
        all.contains("Permission denied") || all.contains("permission denied"),
        "{all}"
    );
    assert_no_leaks(&b);
}
