//! Containers through drayd end to end: a private drayd per test, the real dray shim and
//! runtime (and Debian's containerd-shim-runc-v2 with runc), the busybox fixture image, and
//! drayctl as a user runs it. Each test checks what is left behind afterwards.

use std::process::Command;
use std::time::Duration;

use dray_e2e::manager::{stderr, stdout, wait_until, Daemon};

fn daemon() -> Daemon {
    let d = Daemon::start_isolated();
    d.load_busybox();
    d
}

/// Nothing of drayd's containers remains: no bundle, no container snapshot, no mount under
/// the daemon's roots, no cgroup.
fn assert_clean(d: &Daemon, ids: &[String]) {
    let tasks: Vec<_> = std::fs::read_dir(d.exec_root().join("tasks"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(tasks.is_empty(), "bundles left: {tasks:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = d.dir.path().display().to_string();
    assert!(!mounts.contains(&root), "mounts left under {root}:\n{mounts}");
    for id in ids {
        assert!(!d.data_root().join("containers").join(id).exists(), "{id}'s files left");
        for c in ["memory", "pids", "unified"] {
            let p = format!("/sys/fs/cgroup/{c}/dray/{id}");
            assert!(!std::path::Path::new(&p).exists(), "cgroup {p} left");
        }
    }
}

/// drayctl `args` (one shell string) on a pty of script(1), with this daemon's environment.
fn under_script(d: &Daemon, args: &str) -> Command {
    let mut c = Command::new("script");
    c.args([
        "-qec",
        &format!("{} {args}", dray_e2e::manager::drayctl_bin().display()),
        "/dev/null",
    ]);
    for (k, v) in d.ctl().get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c
}

fn inspect(d: &Daemon, id: &str, fmt: &str) -> String {
    d.ok(&["inspect", "--format", fmt, id]).trim().to_string()
}

#[test]
fn foreground_run_relays_output_and_exit_code() {
    let d = daemon();
    let o = d.run(&["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "out\n");
    assert!(stderr(&o).contains("err"), "{}", stderr(&o));
    // --rm: gone once run returns.
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    assert_clean(&d, &[]);
    let snaps = d.snapshot_dirs();
    // Docker's defaults are in place: hostname is the short ID, caps are docker's set, the
    // default seccomp profile is on, /proc/keys masked.
    let o = d.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "cat /proc/self/status | busybox grep -E '^(CapEff|Seccomp):'; busybox hostname | busybox wc -c; busybox wc -c < /proc/keys",
    ]);
    assert!(o.contains("CapEff:\t00000000a80425fb"), "{o}");
    assert!(o.contains("Seccomp:\t2"), "{o}");
    assert!(o.contains("13\n0\n"), "{o}");
    assert_eq!(d.snapshot_dirs(), snaps, "the container's snapshot was not removed");
}

#[test]
fn options_reach_the_process() {
    let d = daemon();
    let host = d.dir.path().join("shared");
    let o = d.ok(&[
        "run",
        "--rm",
        "-u",
        "1000:1000",
        "-w",
        "/work/dir",
        "-e",
        "A=b",
        "--hostname",
        "myhost",
        "--label",
        "x=y",
        "--tmpfs",
        "/scratch:size=1m",
        "--read-only",
        "busybox",
        "sh",
        "-c",
        "id -u; id -g; pwd; echo $A; busybox hostname; busybox grep /scratch /proc/mounts | busybox grep -c size=1024k; busybox touch /x 2>/dev/null || echo ro-ok",
    ]);
    assert_eq!(o, "1000\n1000\n/work/dir\nb\nmyhost\n1\nro-ok\n");
    let o = d.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/data", host.display()),
        "-v",
        "/etc:/hostetc:ro",
        "busybox",
        "sh",
        "-c",
        "busybox touch /data/f && echo bind-ok; busybox touch /hostetc/x 2>/dev/null || echo ro-ok",
    ]);
    assert_eq!(o, "bind-ok\nro-ok\n");
    // -v created the missing host directory, as docker does.
    assert!(host.join("f").exists());
    // --mount refuses a missing source.
    let o = d.run(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,source=/nonexistent/x,target=/x",
        "busybox",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("bind source path does not exist"), "{}", stderr(&o));
    assert_eq!(d.ok(&["ps", "-aq"]), "");
}

#[test]
fn detached_container_logs_stop_and_remove() {
    let d = daemon();
    let id = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            "i=0; while true; do echo line $i; echo e$i >&2; i=$((i+1)); busybox sleep 0.1; done",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    assert!(wait_until(Duration::from_secs(10), || d
        .ok(&["logs", "web"])
        .contains("line 3")));
    let ps = d.ok(&["ps"]);
    assert!(ps.lines().next().unwrap().starts_with("CONTAINER ID   IMAGE"), "{ps}");
    assert!(
        ps.contains(&id[..12]) && ps.contains("Up ") && ps.contains("web"),
        "{ps}"
    );
    let tail = d.run(&["logs", "--tail", "2", "web"]);
    assert_eq!(stdout(&tail).lines().count() + stderr(&tail).lines().count(), 2);
    let o = d.run(&["logs", "-t", "web"]);
    assert!(stderr(&o).contains("e0"), "stderr goes to stderr");
    assert!(stdout(&o).starts_with("20"), "timestamps: {}", stdout(&o));
    // The json-file log, in docker's format.
    let log = std::fs::read_to_string(inspect(&d, "web", "{{.LogPath}}")).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert!(
        first["log"].as_str().unwrap().ends_with('\n') && first["time"].is_string(),
        "{first}"
    );
    assert_eq!(inspect(&d, "web", "{{.State.Status}}"), "running");
    let pid: i32 = inspect(&d, "web", "{{.State.Pid}}").parse().unwrap();
    assert!(pid > 0);
    let top = d.ok(&["top", "web"]);
    assert!(top.contains("PID") && top.contains("while true"), "{top}");
    // A running container is not removed without -f.
    let o = d.run(&["rm", "web"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("You cannot remove a running container"),
        "{}",
        stderr(&o)
    );
    // sh as pid 1 ignores SIGTERM: stop kills it after the timeout (exit 137).
    let t = std::time::Instant::now();
    assert_eq!(d.ok(&["stop", "-t", "1", "web"]), "web\n");
    assert!(t.elapsed() < Duration::from_secs(8));
    assert_eq!(inspect(&d, "web", "{{.State.ExitCode}}"), "137");
    let ps = d.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (137)"), "{ps}");
    assert_eq!(d.ok(&["wait", "web"]), "137\n");
    // Restart brings it back with the same log.
    d.ok(&["start", "web"]);
    assert_eq!(inspect(&d, "web", "{{.State.Running}}"), "true");
    d.ok(&["rm", "-f", "web"]);
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    assert_clean(&d, &[id]);
}

#[test]
fn containers_survive_a_killed_drayd() {
    let mut d = daemon();
    let id = d
        .ok(&[
            "run",
            "-d",
            "busybox",
            "sh",
            "-c",
            "i=0; while [ $i -lt 30 ]; do echo tick $i; i=$((i+1)); busybox sleep 0.1; done; exit 7",
        ])
        .trim()
        .to_string();
    let short = d
        .ok(&["run", "-d", "busybox", "sh", "-c", "busybox sleep 1; exit 5"])
        .trim()
        .to_string();
    let burst = d
        .ok(&[
            "run",
            "-d",
            "busybox",
            "sh",
            "-c",
            "busybox sleep 1; i=0; while [ $i -lt 40000 ]; do echo \"burst line $i with some padding to make it longer than fifty bytes\"; i=$((i+1)); done",
        ])
        .trim()
        .to_string();
    assert!(wait_until(Duration::from_secs(10), || d
        .ok(&["logs", &id])
        .contains("tick 2")));
    d.kill9();
    // Meanwhile the first keeps writing, the second exits, and the third writes 3 MB (more
    // than any pipe or shim buffer holds): the dray shim writes the log itself.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(wait_until(Duration::from_secs(30), || {
        let log = d
            .data_root()
            .join("containers")
            .join(&burst)
            .join(format!("{burst}-json.log"));
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("burst line 39999 ")
    }));
    d.spawn();
    let o = d.ok(&["logs", &burst]);
    assert_eq!(o.lines().count(), 40000);
    assert!(o
        .lines()
        .enumerate()
        .all(|(i, l)| l.starts_with(&format!("burst line {i} "))));
    let ps = d.ok(&["ps", "-a", "--no-trunc"]);
    assert!(ps.contains(&id), "{ps}");
    // Recorded by the recovery that drayd runs as it starts (asynchronously for each task).
    assert!(
        wait_until(Duration::from_secs(10), || {
            inspect(&d, &short, "{{.State.Status}} {{.State.ExitCode}}") == "exited 5"
        }),
        "{}\n{}",
        inspect(&d, &short, "{{.State.Status}} {{.State.ExitCode}}"),
        d.log()
    );
    // The long one is still followed: its exit is recorded, every line is in the log.
    assert_eq!(d.ok(&["wait", &id]), "7\n");
    let logs = d.ok(&["logs", &id]);
    for i in 0..30 {
        assert!(
            logs.contains(&format!("tick {i}\n")),
            "tick {i} missing:\n{logs}\n{}",
            d.log()
        );
    }
    d.ok(&["rm", "-f", &id, &short, &burst]);
    assert_clean(&d, &[id, short, burst]);
}

#[test]
fn debian_runc_shim_runs_containers_too() {
    if !std::path::Path::new("/usr/bin/containerd-shim-runc-v2").exists() {
        panic!("containerd-shim-runc-v2 is not installed (make deps installs containerd)");
    }
    let d = daemon();
    let o = d.run(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.runc.v2",
        "busybox",
        "sh",
        "-c",
        "echo via runc; exit 4",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}{}\n{}", stdout(&o), stderr(&o), d.log());
    assert_eq!(stdout(&o), "via runc\n");
    let id = d
        .ok(&[
            "run",
            "-d",
            "--runtime",
            "io.containerd.runc.v2",
            "busybox",
            "busybox",
            "sleep",
            "100",
        ])
        .trim()
        .to_string();
    assert_eq!(inspect(&d, &id, "{{.HostConfig.Runtime}}"), "io.containerd.runc.v2");
    d.ok(&["stop", "-t", "0", &id]);
    assert_eq!(inspect(&d, &id, "{{.State.ExitCode}}"), "137");
    d.ok(&["rm", &id]);
    assert_clean(&d, &[id]);
}

#[test]
fn bad_input_gives_one_error_and_leaves_nothing() {
    let d = daemon();
    let snaps = d.snapshot_dirs();
    let o = d.run(&["run", "--rm", "busybox", "nosuchcommand"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stderr(&o).contains("nosuchcommand"), "{}", stderr(&o));
    let o = d.run(&["run", "--rm", "--pull", "never", "nosuchimage", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("No such image"), "{}", stderr(&o));
    let o = d.run(&["run", "--rm", "--memory", "1k", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("Minimum memory limit allowed is 6MB"),
        "{}",
        stderr(&o)
    );
    let o = d.run(&["run", "--rm", "-v", "/a:b", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    let o = d.run(&["run", "--rm", "--restart", "sometimes", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    let o = d.run(&["run", "--rm", "--cap-add", "NOT_A_CAP", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("unknown capability"), "{}", stderr(&o));
    d.ok(&["create", "--name", "taken", "busybox", "true"]);
    let o = d.run(&["create", "--name", "taken", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("is already in use"), "{}", stderr(&o));
    d.ok(&["rm", "taken"]);
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    assert_eq!(d.snapshot_dirs(), snaps);
    assert_clean(&d, &[]);
}

#[test]
fn restart_policies_follow_docker() {
    let d = daemon();
    let id = d
        .ok(&[
            "run",
            "-d",
            "--restart",
            "on-failure:2",
            "busybox",
            "sh",
            "-c",
            "exit 1",
        ])
        .trim()
        .to_string();
    assert!(
        wait_until(Duration::from_secs(20), || {
            inspect(&d, &id, "{{.RestartCount}} {{.State.Status}}") == "2 exited"
        }),
        "{}",
        inspect(&d, &id, "{{.RestartCount}} {{.State.Status}}")
    );
    // always: restarted after each exit, but not after a stop.
    let a = d
        .ok(&[
            "run",
            "-d",
            "--restart",
            "always",
            "busybox",
            "sh",
            "-c",
            "busybox sleep 0.2",
        ])
        .trim()
        .to_string();
    assert!(wait_until(Duration::from_secs(20), || {
        inspect(&d, &a, "{{.RestartCount}}").parse::<i64>().unwrap_or(0) >= 2
    }));
    d.ok(&["stop", "-t", "1", &a]);
    let n = inspect(&d, &a, "{{.RestartCount}}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(inspect(&d, &a, "{{.State.Status}}"), "exited");
    assert_eq!(inspect(&d, &a, "{{.RestartCount}}"), n);
    // --rm with a restart policy is refused.
    let o = d.run(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert!(stderr(&o).contains("Conflicting options"), "{}", stderr(&o));
    d.ok(&["rm", &id, &a]);
    assert_clean(&d, &[id, a]);
}

#[test]
fn concurrent_runs_and_one_name_one_winner() {
    let d = daemon();
    let ctl = |args: Vec<String>| {
        let mut c: Command = d.ctl();
        c.args(args);
        c
    };
    let children: Vec<_> = (0..50)
        .map(|i| {
            ctl(vec![
                "run".into(),
                "-d".into(),
                "--name".into(),
                format!("c{i}"),
                "busybox".into(),
                "busybox".into(),
                "sleep".into(),
                "100".into(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(d.ok(&["ps", "-q"]).lines().count(), 50);
    let racers: Vec<_> = (0..4)
        .map(|_| {
            ctl(vec![
                "create".into(),
                "--name".into(),
                "same".into(),
                "busybox".into(),
                "true".into(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let wins = racers
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .filter(|o| o.status.success())
        .count();
    assert_eq!(wins, 1);
    let all = d.ok(&["ps", "-aq", "--no-trunc"]);
    let ids: Vec<String> = all.split_whitespace().map(str::to_string).collect();
    assert_eq!(ids.len(), 51);
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    d.ok(&args);
    assert_clean(&d, &ids);
}

#[test]
fn terminal_and_stdin_are_relayed() {
    let d = daemon();
    // -t under a pty of script(1): the container's stdout is a terminal, its status comes back.
    let cmd = "run --rm -t busybox sh -c 'tty; echo hi; exit 2'";
    let o = under_script(&d, cmd).output().unwrap();
    let out = stdout(&o);
    assert!(out.contains("/dev/pts/0") && out.contains("hi"), "{out}{}", stderr(&o));
    assert_eq!(o.status.code(), Some(2), "{out}");
    // -i: stdin reaches the process and its end closes the container's stdin.
    let mut c = d.ctl();
    c.args(["run", "--rm", "-i", "busybox", "sh"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut i = child.stdin.take().unwrap();
        i.write_all(b"echo from-stdin\nexit 6\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(stdout(&o), "from-stdin\n");
    assert_eq!(o.status.code(), Some(6));
    assert_eq!(d.ok(&["ps", "-aq"]), "");
}

#[test]
fn exec_runs_processes_in_a_running_container() {
    let d = daemon();
    let id = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "box",
            "-e",
            "FROM_RUN=1",
            "busybox",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let o = d.run(&["exec", "box", "sh", "-c", "echo out $FROM_RUN; echo err >&2; exit 5"]);
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(stdout(&o), "out 1\n");
    assert!(stderr(&o).contains("err"));
    let o = d.ok(&[
        "exec",
        "-u",
        "nobody",
        "-w",
        "/tmp",
        "-e",
        "X=y",
        "box",
        "sh",
        "-c",
        "id -u; pwd; echo $X $HOME",
    ]);
    assert_eq!(o, "65534\n/tmp\ny /\n");
    // The exec's process shares the container's namespaces: it sees the sleep as pid 1.
    assert_eq!(
        d.ok(&["exec", "box", "cat", "/proc/1/cmdline"]),
        "busybox\0sleep\x001000\0"
    );
    let o = d.run(&["exec", "box", "nosuchcommand"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    // Detached: returns at once; the process runs.
    d.ok(&["exec", "-d", "box", "sh", "-c", "echo detached > /tmp/d"]);
    assert!(wait_until(Duration::from_secs(5), || d
        .ok(&["exec", "box", "cat", "/tmp/d"])
        == "detached\n"));
    // Not running: refused (exit 1 as docker's exec).
    d.ok(&["stop", "-t", "0", "box"]);
    let o = d.run(&["exec", "box", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
    d.ok(&["rm", "box"]);
    assert_clean(&d, &[id]);
}

#[test]
fn volumes_named_anonymous_and_copied_up() {
    let d = daemon();
    assert_eq!(d.ok(&["volume", "create", "--label", "k=v", "data"]), "data\n");
    // Named volumes keep data across containers; one is made on first use too.
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert_eq!(
        d.ok(&["run", "--rm", "-v", "data:/data:ro", "busybox", "cat", "/data/f"]),
        "kept\n"
    );
    let o = d.run(&[
        "run",
        "--rm",
        "-v",
        "data:/data:ro",
        "busybox",
        "sh",
        "-c",
        "echo x > /data/g",
    ]);
    assert_ne!(o.status.code(), Some(0), "a :ro volume is read-only");
    // Copy-up: a new volume over /etc starts with the image's files (owner and mode kept).
    let o = d.ok(&["run", "--rm", "-v", "etcvol:/etc", "busybox", "cat", "/etc/passwd"]);
    assert!(o.starts_with("root:x:0:0"), "{o}");
    let mp = d.ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", "etcvol"]);
    assert!(std::path::Path::new(mp.trim()).join("group").exists());
    // An existing volume is not overwritten by another image path.
    let o = d.ok(&["run", "--rm", "-v", "data:/etc", "busybox", "ls", "/etc"]);
    assert_eq!(o, "f\n");
    let ls = d.ok(&["volume", "ls"]);
    assert!(
        ls.starts_with("DRIVER    VOLUME NAME\n") && ls.contains("local     data"),
        "{ls}"
    );
    assert_eq!(d.ok(&["volume", "ls", "-q", "--filter", "label=k=v"]), "data\n");
    // In use: rm refused; rm -v removes the anonymous volumes only.
    let id = d
        .ok(&[
            "run",
            "-d",
            "-v",
            "data:/data",
            "-v",
            "/anon",
            "busybox",
            "busybox",
            "sleep",
            "100",
        ])
        .trim()
        .to_string();
    let o = d.run(&["volume", "rm", "data"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("volume is in use"), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", &id])).unwrap();
    let mounts = doc[0]["Mounts"].as_array().unwrap();
    let anon = mounts.iter().find(|m| m["Destination"] == "/anon").unwrap();
    assert_eq!(anon["Type"], "volume");
    let anon_name = anon["Name"].as_str().unwrap().to_string();
    assert_eq!(anon_name.len(), 64);
    assert!(anon["Source"].as_str().unwrap().ends_with("/_data"));
    d.ok(&["rm", "-f", "-v", &id]);
    let left = d.ok(&["volume", "ls", "-q"]);
    assert!(!left.contains(&anon_name) && left.contains("data"), "{left}");
    // An image's VOLUME gets an anonymous volume (removed with --rm).
    let tar = d.dir.path().join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(dray_e2e::template().join("rootfs"))
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    d.ok(&["import", "-c", "VOLUME /vol", tar.to_str().unwrap(), "volimg"]);
    let before = d.ok(&["volume", "ls", "-q"]);
    let o = d.ok(&["run", "--rm", "volimg", "sh", "-c", "grep -c ' /vol ' /proc/mounts"]);
    assert_eq!(o, "1\n");
    assert_eq!(d.ok(&["volume", "ls", "-q"]), before, "--rm removes anonymous volumes");
    // prune: every unused volume (docker 20.10).
    let o = d.ctl().args(["volume", "prune", "-f"]).output().unwrap();
    assert!(
        stdout(&o).contains("Deleted Volumes:\n") && stdout(&o).contains("data\n"),
        "{}",
        stdout(&o)
    );
    assert_eq!(d.ok(&["volume", "ls", "-q"]), "");
    let vols: Vec<_> = std::fs::read_dir(d.data_root().join("volumes")).unwrap().collect();
    assert!(vols.is_empty());
    assert_clean(&d, &[id]);
}

#[test]
fn logs_rotate_and_follow_across_rotation() {
    let d = daemon();
    for runtime in ["io.containerd.dray.v2", "io.containerd.runc.v2"] {
        // 2000 lines in files of 20 kB: many rotations, 3 files kept; the writer pauses
        // now and then (a follower that falls more than two files behind loses lines, as
        // docker's does).
        let id = d
            .ok(&[
                "run",
                "-d",
                "--runtime",
                runtime,
                "--log-opt",
                "max-size=20k",
                "--log-opt",
                "max-file=3",
                "busybox",
                "sh",
                "-c",
                "busybox sleep 0.5; i=0; while [ $i -lt 2000 ]; do echo \"line $i\"; i=$((i+1)); [ $((i % 100)) = 0 ] && busybox sleep 0.05; done; busybox sleep 0.5",
            ])
            .trim()
            .to_string();
        let out = d.ctl().args(["logs", "-f", &id]).output().unwrap();
        let text = stdout(&out);
        // Everything from the start of the follow to the end: in order, none twice.
        let nums: Vec<usize> = text.lines().map(|l| l[5..].parse().unwrap()).collect();
        assert!(
            nums.windows(2).all(|w| w[1] == w[0] + 1),
            "{runtime}: {:?}",
            &nums[..nums.len().min(20)]
        );
        assert_eq!(nums.last(), Some(&1999), "{runtime}");
        let dir = d.data_root().join("containers").join(&id);
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("-json.log"))
            .collect();
        files.sort();
        assert_eq!(files.len(), 3, "{runtime}: {files:?}");
        for f in &files {
            assert!(
                std::fs::metadata(dir.join(f)).unwrap().len() <= 20 * 1024,
                "{runtime}: {f}"
            );
        }
        d.ok(&["rm", &id]);
    }
}

/// Runs drayctl `args` on a pty of its own (Python's pty module) sized `rows`×`cols`,
/// resizing it to 50×120 after `resize_after` seconds; returns the output and exit status.
fn on_pty(d: &Daemon, args: &[&str], resize_after: f64) -> (String, i32) {
    let script = r#"
import os, pty, struct, fcntl, termios, time, select, sys, json
args = json.loads(sys.argv[1]); resize_after = float(sys.argv[2])
pid, fd = pty.fork()
if pid == 0:
    time.sleep(0.2)
    os.execv(args[0], args)
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
start = time.time(); resized = False; out = b""
while True:
    if not resized and time.time() - start > resize_after:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0)); resized = True
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace")); sys.exit(os.waitstatus_to_exitcode(st))
"#;
    let mut full = vec![dray_e2e::manager::drayctl_bin().display().to_string()];
    full.extend(args.iter().map(|s| s.to_string()));
    let mut c = Command::new("python3");
    c.args([
        "-c",
        script,
        &serde_json::to_string(&full).unwrap(),
        &resize_after.to_string(),
    ]);
    for (k, v) in d.ctl().get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    let o = c.output().unwrap();
    (stdout(&o), o.status.code().unwrap_or(-1))
}

#[test]
fn terminal_size_resize_detach_and_attach() {
    let d = daemon();
    // The initial size is the client's (consoleSize at create); SIGWINCH resizes.
    let (out, code) = on_pty(
        &d,
        &[
            "run",
            "--rm",
            "-t",
            "busybox",
            "sh",
            "-c",
            "busybox stty size; busybox sleep 1.5; busybox stty size; exit 4",
        ],
        0.9,
    );
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("40 100\r\n50 120\r\n"), "{out:?}");
    let (out, code) = on_pty(&d, &["run", "--rm", "busybox", "true"], 10.0);
    assert_eq!((out.as_str(), code), ("", 0));
    // exec -t too.
    let id = d
        .ok(&["run", "-dit", "--name", "tt", "busybox", "sh"])
        .trim()
        .to_string();
    let (out, code) = on_pty(&d, &["exec", "-t", "tt", "busybox", "stty", "size"], 10.0);
    assert_eq!(code, 0);
    assert!(out.contains("40 100"), "{out:?}");
    // ctrl-p ctrl-q detaches: drayctl exits 0, the container runs on; attach takes it back.
    let mut child = under_script(&d, "attach tt")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut i = child.stdin.take().unwrap();
        i.write_all(b"echo one\n").unwrap();
        std::thread::sleep(Duration::from_millis(500));
        i.write_all(b"\x10\x11").unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("one"), "{}", stdout(&o));
    assert_eq!(inspect(&d, "tt", "{{.State.Running}}"), "true");
    let mut child = under_script(&d, "attach tt")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut i = child.stdin.take().unwrap();
        i.write_all(b"exit 3\n").unwrap();
        std::thread::sleep(Duration::from_millis(1500));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    d.ok(&["rm", "tt"]);
    assert_clean(&d, &[id]);
}

/// What drayd holds: open fds and threads.
fn drayd_resources(d: &Daemon) -> (usize, usize) {
    let pid = d.child.as_ref().unwrap().id();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count();
    (fds, threads)
}

/// Processes whose working directory is under the daemon's exec root (its shims).
fn shims_of(d: &Daemon) -> usize {
    let root = d.exec_root();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| std::fs::read_link(e.path().join("cwd")).is_ok_and(|p| p.starts_with(&root)))
        .count()
}

#[test]
fn four_hundred_runs_leave_nothing_behind() {
    let d = daemon();
    // Warm up (lazy allocations, the first shim), then the baseline.
    d.ok(&["run", "--rm", "busybox", "true"]);
    let (fds0, threads0) = drayd_resources(&d);
    let snaps0 = d.snapshot_dirs();
    let ids = std::sync::Mutex::new(Vec::new());
    let worker = |n: usize, detached: bool| {
        for _ in 0..n {
            if detached {
                let id = d
                    .ok(&["run", "-d", "busybox", "busybox", "sleep", "100"])
                    .trim()
                    .to_string();
                d.ok(&["rm", "-f", &id]);
                ids.lock().unwrap().push(id);
            } else {
                d.ok(&["run", "--rm", "busybox", "true"]);
            }
        }
    };
    std::thread::scope(|s| {
        for w in 0..4 {
            let worker = &worker;
            s.spawn(move || worker(100, w % 2 == 1));
        }
    });
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    assert_eq!(d.snapshot_dirs(), snaps0);
    assert_eq!(shims_of(&d), 0);
    // No bundle, mount, file or cgroup of any of them.
    assert_clean(&d, &ids.into_inner().unwrap());
    // drayd's fds and threads are back to the baseline (tokio's blocking threads stay 10 s
    // after their last job).
    assert!(
        wait_until(Duration::from_secs(15), || {
            let (fds, threads) = drayd_resources(&d);
            fds <= fds0 + 2 && threads <= threads0 + 2
        }),
        "baseline {fds0} fds, {threads0} threads; now {:?}",
        drayd_resources(&d)
    );
}

#[test]
fn stats_and_update_of_a_running_container() {
    let d = daemon();
    let id = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "busy",
            "--memory",
            "64m",
            "busybox",
            "sh",
            "-c",
            "while true; do :; done",
        ])
        .trim()
        .to_string();
    let out = d.ok(&["stats", "--no-stream", "busy"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("CONTAINER ID   NAME") && lines[0].ends_with("PIDS"),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&id[..12]) && lines[1].contains(" / 64MiB "),
        "{out}"
    );
    let cpu: f64 = lines[1]
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(cpu > 50.0, "a busy loop uses a CPU: {out}");
    // update: the cgroup changes at once and the record keeps it.
    d.ok(&[
        "update",
        "--memory",
        "128m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        "--restart",
        "on-failure:3",
        "busy",
    ]);
    let cg = |c: &str, f: &str| {
        let v1 = format!("/sys/fs/cgroup/{c}/dray/{id}/{f}");
        std::fs::read_to_string(&v1).unwrap_or_default().trim().to_string()
    };
    if std::path::Path::new("/sys/fs/cgroup/memory").exists() {
        assert_eq!(cg("memory", "memory.limit_in_bytes"), "134217728");
        assert_eq!(cg("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(cg("pids", "pids.max"), "50");
    }
    assert_eq!(
        inspect(
            &d,
            "busy",
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.RestartPolicy.Name}}"
        ),
        "134217728 500000000 on-failure"
    );
    let o = d.run(&["update", "--memory", "1k", "busy"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Minimum memory limit"), "{}", stderr(&o));
    let o = d.run(&["stats", "--no-stream", "nosuch"]);
    assert_ne!(o.status.code(), Some(0));
    d.ok(&["rm", "-f", "busy"]);
    assert_clean(&d, &[id]);
}

#[test]
fn events_report_the_lifecycle() {
    let d = daemon();
    let since = format!(
        "{:.3}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    );
    // A live subscriber sees what comes next.
    let mut live = d
        .ctl()
        .args(["events", "--filter", "type=container", "--format", "{{.Action}}"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let id = d
        .ok(&[
            "run", "-d", "--name", "ev", "-v", "/anon", "busybox", "busybox", "sleep", "100",
        ])
        .trim()
        .to_string();
    d.ok(&["exec", "ev", "true"]);
    d.ok(&["stop", "-t", "0", "ev"]);
    d.ok(&["rm", "-v", "ev"]);
    d.ok(&["tag", "busybox", "other:1"]);
    d.ok(&["rmi", "other:1"]);
    std::thread::sleep(Duration::from_millis(300));
    let until = format!(
        "{:.3}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    );
    // The history, with docker's line format.
    let out = d.ok(&["events", "--since", &since, "--until", &until]);
    let actions: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(&id))
        .map(|l| l.split(' ').nth(2).unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "create",
            "start",
            "exec_create:",
            "exec_start:",
            "exec_die",
            "kill",
            "kill",
            "die",
            "stop",
            "destroy"
        ],
        "{out}"
    );
    let start = out.lines().find(|l| l.contains(" container start ")).unwrap();
    assert!(
        start.ends_with("(image=busybox, name=ev, org.dray.test=yes)"),
        "{start}"
    );
    assert!(
        out.contains(" volume create ") && out.contains(" volume destroy "),
        "{out}"
    );
    assert!(
        out.contains(" image tag ") && out.contains("name=other:1") && out.contains(" image untag "),
        "{out}"
    );
    let die = out.lines().find(|l| l.contains(" die ")).unwrap();
    assert!(die.contains("exitCode=137"), "{die}");
    let _ = live.kill();
    let o = live.wait_with_output().unwrap();
    let seen = stdout(&o);
    assert!(
        seen.starts_with("create\nstart\n") && seen.contains("destroy\n"),
        "{seen}"
    );
    assert!(!seen.contains("volume"));
}

#[test]
fn diff_port_disk_usage_and_images_in_use() {
    let d = daemon();
    d.ok(&[
        "run",
        "--name",
        "ch",
        "busybox",
        "sh",
        "-c",
        "echo x > /tmp/new; busybox rm /bin/ls; echo y >> /etc/passwd; echo some output",
    ]);
    assert_eq!(
        d.ok(&["diff", "ch"]),
        "C /bin\nD /bin/ls\nC /etc\nC /etc/passwd\nC /tmp\nA /tmp/new\n"
    );
    // ps --filter before= / since=: by creation order.
    d.ok(&["create", "--name", "later", "busybox", "true"]);
    assert_eq!(
        d.ok(&["ps", "-a", "--format", "{{.Names}}", "--filter", "since=ch"]),
        "later\n"
    );
    assert_eq!(
        d.ok(&["ps", "-a", "--format", "{{.Names}}", "--filter", "before=later"]),
        "ch\n"
    );
    d.ok(&["rm", "later"]);
    // No published ports yet: an empty list; a named port is an error, as docker's.
    assert_eq!(d.ok(&["port", "ch"]), "");
    let o = d.run(&["port", "ch", "80"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("No public port '80/tcp' published for ch"),
        "{}",
        stderr(&o)
    );
    // system df counts the container (its layer and its log) and marks the image active.
    let df = d.ok(&["system", "df"]);
    let row = |t: &str| {
        df.lines()
            .find(|l| l.starts_with(t))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(row("Images").starts_with("Images 1 1 "), "{df}");
    assert!(row("Containers").starts_with("Containers 1 0 "), "{df}");
    assert!(row("Containers").ends_with("(100%)"), "{df}");
    // An image a container uses is not removed (nor pruned) without -f.
    let o = d.run(&["rmi", "busybox"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("container") && stderr(&o).contains("is using its referenced image"),
        "{}",
        stderr(&o)
    );
    let o = d.ctl().args(["image", "prune", "-a", "-f"]).output().unwrap();
    assert!(o.status.success());
    assert!(
        d.ok(&["images", "-q"]).lines().count() == 1,
        "prune kept the image in use"
    );
    d.ok(&["rm", "ch"]);
    d.ok(&["rmi", "busybox"]);
}

#[test]
fn commit_and_export_keep_what_the_container_changed() {
    let d = daemon();
    d.ok(&[
        "run",
        "--name",
        "cm",
        "busybox",
        "sh",
        "-c",
        "echo new > /tmp/new; busybox rm /bin/ls; mkdir -p /data/d; echo f > /data/d/f; busybox ln /tmp/new /tmp/hard; busybox mknod /tmp/fifo p",
    ]);
    let id = d
        .ok(&[
            "commit",
            "-c",
            "CMD [\"cat\", \"/tmp/new\"]",
            "-m",
            "my commit",
            "-a",
            "me",
            "cm",
            "committed:v1",
        ])
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    // The new image: the change applied, the deletion kept (a whiteout), links and fifos kept.
    assert_eq!(d.ok(&["run", "--rm", "committed:v1"]), "new\n");
    let o = d.ok(&[
        "run",
        "--rm",
        "committed:v1",
        "sh",
        "-c",
        "ls /bin/ls 2>/dev/null || echo gone; cat /data/d/f; stat -c '%h %F' /tmp/hard /tmp/fifo",
    ]);
    assert_eq!(o, "gone\nf\n2 regular file\n1 fifo\n");
    let h = d.ok(&["history", "--no-trunc", "committed:v1"]);
    assert!(h.lines().nth(1).unwrap().contains("my commit"), "{h}");
    let doc: serde_json::Value = serde_json::from_str(&d.ok(&["image", "inspect", "committed:v1"])).unwrap();
    assert_eq!(doc[0]["Author"], "me");
    assert_eq!(doc[0]["RootFS"]["Layers"].as_array().unwrap().len(), 4);
    // export: the whole file system as a tar that tar(1) reads.
    let tar = d.dir.path().join("exp.tar");
    d.ok(&["export", "-o", tar.to_str().unwrap(), "cm"]);
    let list = Command::new("tar").arg("-tvf").arg(&tar).output().unwrap();
    let list = stdout(&list);
    assert!(
        list.contains("bin/busybox") && list.contains("data/d/f") && !list.contains("bin/ls\n"),
        "{list}"
    );
    assert!(
        list.lines().any(|l| l.starts_with('h') && l.contains("link to")),
        "{list}"
    );
    // A running container is paused while it is committed, then runs on.
    let live = d
        .ok(&["run", "-d", "busybox", "busybox", "sleep", "100"])
        .trim()
        .to_string();
    d.ok(&["commit", &live]);
    assert_eq!(inspect(&d, &live, "{{.State.Status}}"), "running");
    d.ok(&["rm", "-f", &live, "cm"]);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains("view-") && !mounts.contains("copyup-"), "{mounts}");
}

#[test]
fn a_killed_shim_leaves_an_exited_container_and_nothing_else() {
    let d = daemon();
    let id = d
        .ok(&["run", "-d", "busybox", "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let pid: i32 = inspect(&d, &id, "{{.State.Pid}}").parse().unwrap();
    // The shim: the process whose working directory is the container's bundle.
    let bundle = d.exec_root().join("tasks").join(&id);
    let shim: i32 = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .find(|p| std::fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|c| c == bundle))
        .expect("the container's shim");
    // SAFETY: kill(2) on a process this test found.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    assert!(
        wait_until(Duration::from_secs(20), || inspect(&d, &id, "{{.State.Status}}")
            == "exited"),
        "{}",
        d.log()
    );
    assert_eq!(inspect(&d, &id, "{{.State.ExitCode}}"), "255");
    // The container's process went with it, and so did its mounts, cgroup and bundle.
    assert!(wait_until(Duration::from_secs(10), || !std::path::Path::new(&format!(
        "/proc/{pid}"
    ))
    .exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.contains(") Z "))));
    assert_clean(&d, &[]);
    d.ok(&["rm", &id]);
    assert_clean(&d, &[id]);
}

#[test]
fn restart_policies_bring_containers_back_after_a_reboot() {
    let mut d = daemon();
    let back = d
        .ok(&[
            "run",
            "-d",
            "--restart",
            "unless-stopped",
            "busybox",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let stays = d
        .ok(&["run", "-d", "busybox", "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let stopped = d
        .ok(&[
            "run",
            "-d",
            "--restart",
            "always",
            "busybox",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    d.ok(&["stop", "-t", "0", &stopped]);
    // A reboot, as far as a test can make one: drayd, the shims and the containers die at
    // once, and what /run held (bundles, the runtime's state) is gone.
    let pids: Vec<i32> = [&back, &stays]
        .iter()
        .map(|id| inspect(&d, id, "{{.State.Pid}}").parse().unwrap())
        .collect();
    d.kill9();
    let tasks = d.exec_root().join("tasks");
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(e.path().join("cwd")).is_ok_and(|c| c.starts_with(&tasks)) || pids.contains(&pid) {
            // SAFETY: kill(2) on the shims and container processes of this test.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for id in [&back, &stays] {
        let _ = Command::new(dray_e2e::dray_bin())
            .args(["--root", "/run/containerd/dray/dray", "delete", "--force", id])
            .output();
        let rootfs = tasks.join(id).join("rootfs");
        let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
    }
    std::fs::remove_dir_all(&tasks).unwrap();
    d.spawn();
    assert!(
        wait_until(Duration::from_secs(20), || inspect(&d, &back, "{{.State.Status}}")
            == "running"),
        "{}",
        d.log()
    );
    assert_eq!(inspect(&d, &stays, "{{.State.Status}}"), "exited");
    assert_eq!(inspect(&d, &stopped, "{{.State.Status}}"), "exited");
    d.ok(&["rm", "-f", &back, &stays, &stopped]);
    assert_clean(&d, &[back, stays, stopped]);
}

/// `cp` both ways, running and stopped: docker's rules for where a copy lands, owners (root
/// unless `-a`; the caller's on the host), volumes, read-only containers, and no way out of
/// the container's root through its symlinks or a hostile tar.
#[test]
fn cp_copies_files_both_ways_and_stays_inside_the_container() {
    let d = daemon();
    let host = d.dir.path().join("cp");
    std::fs::create_dir_all(host.join("tree/sub")).unwrap();
    std::fs::write(host.join("tree/f.txt"), "hello\n").unwrap();
    std::fs::write(host.join("tree/sub/y"), "y\n").unwrap();
    std::os::unix::fs::symlink("f.txt", host.join("tree/link")).unwrap();
    std::os::unix::fs::chown(host.join("tree/f.txt"), Some(1234), Some(567)).unwrap();
    let h = |p: &str| host.join(p).display().to_string();

    // A stopped (created) container: the copy lands in its layer and its volume.
    let id = d
        .ok(&[
            "create",
            "--name",
            "cpc",
            "-v",
            "cpvol:/data",
            "busybox",
            "busybox",
            "sleep",
            "100",
        ])
        .trim()
        .to_string();
    d.ok(&["cp", &h("tree"), "cpc:/data/"]);
    d.ok(&["cp", &h("tree/f.txt"), "cpc:/etc/motd"]);
    assert!(d.data_root().join("volumes/cpvol/_data/tree/sub/y").exists());
    d.ok(&["start", "cpc"]);
    let o = d.ok(&[
        "exec",
        "cpc",
        "sh",
        "-c",
        "cat /etc/motd /data/tree/sub/y; ls -ln /data/tree/f.txt; readlink /data/tree/link",
    ]);
    assert!(o.starts_with("hello\ny\n"), "{o}");
    assert!(o.contains(" 0        0 "), "not owned by root: {o}");
    assert!(o.ends_with("f.txt\n"), "{o}");

    // Running: -a keeps the owners; a directory's contents with SRC/.; a new name.
    d.ok(&["cp", "-a", &h("tree/f.txt"), "cpc:/tmp/kept"]);
    d.ok(&["cp", &h("tree/."), "cpc:/tmp/"]);
    let o = d.ok(&["exec", "cpc", "sh", "-c", "ls -ln /tmp/kept; ls /tmp"]);
    assert!(o.contains(" 1234     567 "), "{o}");
    assert!(o.contains("f.txt") && o.contains("sub") && !o.contains("tree"), "{o}");

    // Out of the container: a file, a directory (by name, or into a new name), a tar.
    d.ok(&[
        "exec",
        "cpc",
        "sh",
        "-c",
        "echo from-ctr > /tmp/out; chown 33:33 /tmp/out",
    ]);
    d.ok(&["cp", "cpc:/tmp/out", &h("")]);
    assert_eq!(std::fs::read_to_string(h("out")).unwrap(), "from-ctr\n");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(h("out")).unwrap().uid(),
        0,
        "the caller owns it without -a"
    );
    d.ok(&["cp", "-a", "cpc:/tmp/out", &h("out-a")]);
    assert_eq!(std::fs::metadata(h("out-a")).unwrap().uid(), 33);
    d.ok(&["cp", "cpc:/data/tree", &h("back")]);
    assert_eq!(std::fs::read_to_string(h("back/sub/y")).unwrap(), "y\n");
    assert_eq!(std::fs::read_link(h("back/link")).unwrap().to_str(), Some("f.txt"));
    let o = d.ctl().args(["cp", "cpc:/etc/hostname", "-"]).output().unwrap();
    let mut a = tar::Archive::new(&o.stdout[..]);
    let names: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["hostname"]);

    // Symlinks in the container resolve inside it, both ways: never the host's /etc.
    d.ok(&[
        "exec",
        "cpc",
        "sh",
        "-c",
        "ln -s / /tmp/root; ln -s ../../../../../../etc /tmp/up",
    ]);
    d.ok(&["cp", "cpc:/tmp/up/hostname", &h("hn")]);
    assert_eq!(std::fs::read_to_string(h("hn")).unwrap().trim(), &id[..12]);
    d.ok(&["cp", &h("tree/sub/y"), "cpc:/tmp/root/etc/"]);
    assert!(!std::path::Path::new("/etc/y").exists());
    assert_eq!(d.ok(&["exec", "cpc", "cat", "/etc/y"]), "y\n");
    // -L follows a symlink at the end (inside the container) and keeps the name asked for.
    d.ok(&["cp", "-L", "cpc:/tmp/up", &h("etc-copy")]);
    assert!(host.join("etc-copy/hostname").exists());

    // A hostile tar on stdin: refused, nothing written outside.
    let mut evil = Vec::new();
    {
        let mut b = tar::Builder::new(&mut evil);
        let mut hd = tar::Header::new_old();
        hd.as_old_mut().name[..14].copy_from_slice(b"../../../../x1");
        hd.set_size(1);
        hd.set_mode(0o644);
        hd.set_cksum();
        b.append(&hd, &b"x"[..]).unwrap();
        b.finish().unwrap();
    }
    let mut c = d.ctl();
    c.args(["cp", "-", "cpc:/tmp"]).stdin(std::process::Stdio::piped());
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&evil).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("points outside the archive"), "{}", stderr(&o));
    assert!(d.run(&["exec", "cpc", "ls", "/x1"]).status.code() != Some(0));

    // Errors as docker words them.
    let o = d.run(&["cp", "cpc:/nope", &h("x")]);
    assert!(
        stderr(&o).contains("No such container:path: cpc:/nope"),
        "{}",
        stderr(&o)
    );
    let o = d.run(&["cp", &h("tree"), "cpc:/etc/hostname"]);
    assert!(
        stderr(&o).contains("cannot copy a directory to a file"),
        "{}",
        stderr(&o)
    );
    let o = d.run(&["cp", &h("tree"), &h("other")]);
    assert!(
        stderr(&o).contains("must specify at least one container source"),
        "{}",
        stderr(&o)
    );

    // A read-only container refuses, running or stopped; its volume does not.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "cpro",
        "--read-only",
        "-v",
        "/rw",
        "busybox",
        "busybox",
        "sleep",
        "100",
    ]);
    let o = d.run(&["cp", &h("tree/f.txt"), "cpro:/tmp/"]);
    assert!(stderr(&o).contains("read-only"), "{}", stderr(&o));
    d.ok(&["cp", &h("tree/f.txt"), "cpro:/rw/"]);
    d.ok(&["stop", "-t", "0", "cpro"]);
    let o = d.run(&["cp", &h("tree/f.txt"), "cpro:/tmp/"]);
    assert!(stderr(&o).contains("read-only"), "{}", stderr(&o));
    d.ok(&["cp", "cpro:/rw/f.txt", &h("from-stopped")]);
    assert_eq!(std::fs::read_to_string(h("from-stopped")).unwrap(), "hello\n");

    d.ok(&["rm", "-f", "cpc", "cpro"]);
    assert_clean(&d, &[id]);
}
