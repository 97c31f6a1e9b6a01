//! containerd-shim-dray-v2 under a real containerd 1.6 (Debian's): `ctr run --runtime
//! io.containerd.dray.v2`, with the shim and dray first on the daemon's PATH.

use dray_e2e::engines::{wait_until, Containerd};
use dray_e2e::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const IMAGE: &str = "docker.io/dray/busybox:latest";
const RUNTIME: &str = "io.containerd.dray.v2";

/// A private containerd whose shims and containers are removed with it, even when a test
/// fails half-way (shims outlive containerd by design).
struct Env(Containerd);

impl std::ops::Deref for Env {
    type Target = Containerd;
    fn deref(&self) -> &Containerd {
        &self.0
    }
}

impl std::ops::DerefMut for Env {
    fn deref_mut(&mut self) -> &mut Containerd {
        &mut self.0
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for pid in shims_of(&self.0) {
            // SAFETY: plain kill(2) of a shim this test's containerd started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let bundles = self.0.dir.join("state/io.containerd.runtime.v2.task/default");
        for e in std::fs::read_dir(bundles).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let _ = Command::new(dray_bin())
                .args(["--root", "/run/containerd/dray/default", "delete", "--force", &id])
                .stderr(Stdio::null())
                .status();
            let _ = nix::mount::umount2(&e.path().join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn setup(name: &str) -> Env {
    let bin_dir = shim_bin().parent().unwrap().to_path_buf();
    Env(Containerd::with_busybox(&format!("shim-{name}"), Some(&bin_dir)))
}

/// SIGKILL, wait for STOPPED, `task delete`, `containers rm`: all must succeed.
fn kill_and_remove(c: &Env, id: &str) {
    let o = c.ctr(&["task", "kill", "-s", "SIGKILL", id]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until(
        Duration::from_secs(10),
        || task_status(c, id) == "STOPPED",
        || "not stopped".into(),
    );
    let o = c.ctr(&["task", "delete", id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = c.ctr(&["containers", "rm", id]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn task_status(c: &Env, id: &str) -> String {
    let o = c.ctr(&["task", "ls"]);
    stdout(&o)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("")
        .to_string()
}

fn shim_pid(c: &Env, id: &str) -> i32 {
    std::fs::read_to_string(c.bundle(id).join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The shim processes serving this containerd (their cwd is a bundle under its state).
fn shims_of(c: &Containerd) -> Vec<i32> {
    let shim = shim_bin();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let exe = std::fs::read_link(e.path().join("exe")).unwrap_or_default();
        let cwd = std::fs::read_link(e.path().join("cwd")).unwrap_or_default();
        if exe == shim && cwd.starts_with(&c.dir) {
            v.push(pid);
        }
    }
    v
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn run_with_output_and_exit_code() {
    let c = setup("run");
    let o = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        IMAGE,
        "shim-run-1",
        "sh",
        "-c",
        "echo hello-from-shim; echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{} {}\n{}", stdout(&o), stderr(&o), c.log());
    assert_eq!(stdout(&o), "hello-from-shim\n");
    assert_eq!(stderr(&o), "err\n");
    // The shim ran the container with dray: its state lived in the shim's dray root.
    let o = c.ctr(&["run", "--rm", "--runtime", RUNTIME, IMAGE, "shim-run-2", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = c.ctr(&["containers", "ls", "-q"]);
    assert_eq!(stdout(&o).trim(), "");
    // Every shim exited after its task was deleted.
    wait_until(
        Duration::from_secs(10),
        || shims_of(&c).is_empty(),
        || "a shim is still running".into(),
    );
}

#[test]
fn detached_exec_ps_pause_metrics_kill_delete() {
    let c = setup("detached");
    let id = "shim-d";
    let o = c.ctr(&["run", "-d", "--runtime", RUNTIME, IMAGE, id, "sleep", "1000"]);
    assert!(o.status.success(), "{} {}\n{}", stdout(&o), stderr(&o), c.log());
    assert_eq!(task_status(&c, id), "RUNNING");
    // dray itself knows the container, in the shim's default root.
    let mut st = Command::new(dray_bin());
    st.args(["--root", "/run/containerd/dray/default", "state", id]);
    let o = run_with_timeout(st, Duration::from_secs(10));
    assert!(o.status.success(), "dray does not know the container: {}", stderr(&o));

    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        id,
        "sh",
        "-c",
        "echo from-exec; exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5), "{} {}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "from-exec\n");

    let o = c.ctr(&["task", "ps", id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 2, "{}", stdout(&o));

    let o = c.ctr(&["task", "pause", id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(task_status(&c, id), "PAUSED");
    let o = c.ctr(&["task", "resume", id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(task_status(&c, id), "RUNNING");

    let o = c.ctr(&["task", "metrics", "--format", "json", id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
    assert_eq!(m["pids"]["current"], 1, "{m}");
    assert!(m["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0, "{m}");

    kill_and_remove(&c, id);
    assert!(cgroup_dirs(id).is_empty(), "cgroups left: {:?}", cgroup_dirs(id));
}

#[test]
fn tty() {
    let c = setup("tty");
    // ctr -t needs a terminal of its own: run it under script(1).
    let line = format!(
        "ctr --address {} run --rm -t --runtime {RUNTIME} {IMAGE} shim-tty sh -c 'tty; stty size; exit 4'",
        c.socket.display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qefc", &line, "/dev/null"]).stdin(Stdio::null());
    let o = run_with_timeout(cmd, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(4), "{} {}\n{}", stdout(&o), stderr(&o), c.log());
    assert!(stdout(&o).contains("/dev/pts/"), "{}", stdout(&o));
}

#[test]
fn log_uri_file() {
    let c = setup("log");
    let log = c.dir.join("out.log");
    let uri = format!("file://{}", log.display());
    let o = c.ctr(&[
        "run",
        "--rm",
        "--log-uri",
        &uri,
        "--runtime",
        RUNTIME,
        IMAGE,
        "shim-log",
        "sh",
        "-c",
        "echo to-log; echo e >&2",
    ]);
    assert!(o.status.success(), "{} {}\n{}", stdout(&o), stderr(&o), c.log());
    let got = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(got.contains("to-log\n") && got.contains("e\n"), "{got:?}");
}

#[test]
fn oom_kill_publishes_task_oom() {
    let c = setup("oom");
    let mut ev = Command::new("ctr");
    let events_out = c.dir.join("events.txt");
    ev.arg("--address")
        .arg(&c.socket)
        .arg("events")
        .stdout(std::fs::File::create(&events_out).unwrap())
        .stderr(Stdio::null());
    let mut events = ev.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // dd's 64 MiB buffer cannot fit under a 16 MiB limit (this host has no swap).
    let o = c.ctr(&[
        "run",
        "--rm",
        "--memory-limit",
        "16777216",
        "--runtime",
        RUNTIME,
        IMAGE,
        "shim-oom",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
    assert_eq!(o.status.code(), Some(137), "{} {}", stdout(&o), stderr(&o));
    std::thread::sleep(Duration::from_millis(300));
    let _ = events.kill();
    let _ = events.wait();
    let got = std::fs::read_to_string(&events_out).unwrap();
    let oom = got
        .find("/tasks/oom")
        .unwrap_or_else(|| panic!("no TaskOOM event:\n{got}"));
    let exit = got
        .find("/tasks/exit")
        .unwrap_or_else(|| panic!("no TaskExit event:\n{got}"));
    assert!(oom < exit, "TaskOOM after TaskExit:\n{got}");
}

#[test]
fn containerd_killed_and_restarted_reconnects() {
    let mut c = setup("restart");
    let id = "shim-restart";
    let o = c.ctr(&["run", "-d", "--runtime", RUNTIME, IMAGE, id, "sleep", "1000"]);
    assert!(o.status.success(), "{} {}\n{}", stdout(&o), stderr(&o), c.log());
    let shim = shim_pid(&c, id);
    c.kill9_and_restart();
    assert!(alive(shim), "the shim died with containerd");
    assert_eq!(task_status(&c, id), "RUNNING", "{}", c.log());
    let o = c.ctr(&["task", "exec", "--exec-id", "after", id, "echo", "still-managed"]);
    assert_eq!(stdout(&o), "still-managed\n", "{}\n{}", stderr(&o), c.log());
    kill_and_remove(&c, id);
    wait_until(
        Duration::from_secs(10),
        || !alive(shim),
        || "the shim did not exit".into(),
    );
}

#[test]
fn shim_killed_is_cleaned_up_by_delete() {
    let c = setup("shimkill");
    let id = "shim-killed";
    let o = c.ctr(&["run", "-d", "--runtime", RUNTIME, IMAGE, id, "sleep", "1000"]);
    assert!(o.status.success(), "{} {}\n{}", stdout(&o), stderr(&o), c.log());
    let bundle = c.bundle(id);
    let shim = shim_pid(&c, id);
    let init: i32 = std::fs::read_to_string(bundle.join("init.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: plain kill(2) of the shim process this test started through containerd.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    // containerd sees the shim go, runs `containerd-shim-dray-v2 delete`, and the task ends.
    wait_until(
        Duration::from_secs(20),
        || !matches!(task_status(&c, id).as_str(), "RUNNING" | "PAUSED"),
        || format!("task still listed as running:\n{}", c.log()),
    );
    wait_until(
        Duration::from_secs(10),
        || !alive(init),
        || "the container's init survived".into(),
    );
    let _ = c.ctr(&["task", "delete", id]);
    let o = c.ctr(&["containers", "rm", id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&format!("/{id}/rootfs")), "rootfs still mounted");
    assert!(cgroup_dirs(id).is_empty(), "cgroups left: {:?}", cgroup_dirs(id));
}
