//! dray under a real containerd 1.6 (Debian's), through its runc shim:
//! `ctr run --runc-binary <dray>`.

use dray_e2e::engines::Containerd;
use dray_e2e::*;
use std::time::Duration;

const IMAGE: &str = "docker.io/dray/busybox:latest";

fn setup(name: &str) -> Containerd {
    Containerd::with_busybox(name, None)
}

fn dray() -> String {
    dray_bin().to_string_lossy().into_owned()
}

#[test]
fn ctr_run_with_output_and_exit_code() {
    let c = setup("run");
    let d = dray();
    let o = c.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        &d,
        IMAGE,
        "ctrd-run-1",
        "sh",
        "-c",
        "echo hello-from-dray; hostname; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{} {}\n{}", stdout(&o), stderr(&o), c.log());
    assert!(stdout(&o).starts_with("hello-from-dray\n"), "{}", stdout(&o));
    let o = c.ctr(&["run", "--rm", "--runc-binary", &d, IMAGE, "ctrd-run-2", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // No container is left behind.
    let o = c.ctr(&["containers", "ls", "-q"]);
    assert_eq!(stdout(&o).trim(), "");
}

#[test]
fn ctr_detached_exec_ps_kill_delete() {
    let c = setup("detached");
    let d = dray();
    let o = c.ctr(&["run", "-d", "--runc-binary", &d, IMAGE, "ctrd-d", "sleep", "1000"]);
    assert!(o.status.success(), "{} {}\n{}", stdout(&o), stderr(&o), c.log());
    // The runc shim drives dray: dray itself can read the container's state in the shim's root.
    let mut st = std::process::Command::new(dray_bin());
    st.args(["--root", "/run/containerd/runc/default", "state", "ctrd-d"]);
    let o = run_with_timeout(st, Duration::from_secs(10));
    assert!(o.status.success(), "dray does not know the container: {}", stderr(&o));
    assert!(stdout(&o).contains("\"status\": \"running\""), "{}", stdout(&o));
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "ctrd-d",
        "sh",
        "-c",
        "echo from-exec; exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5), "{} {}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "from-exec\n");
    let o = c.ctr(&["task", "ps", "ctrd-d"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).lines().count() >= 2, "{}", stdout(&o));
    let o = c.ctr(&["task", "ls"]);
    assert!(stdout(&o).contains("RUNNING"), "{}", stdout(&o));
    let o = c.ctr(&["task", "pause", "ctrd-d"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&c.ctr(&["task", "ls"])).contains("PAUSED"));
    assert!(c.ctr(&["task", "resume", "ctrd-d"]).status.success());
    let o = c.ctr(&["task", "kill", "-s", "SIGKILL", "ctrd-d"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = std::time::Instant::now();
    while !stdout(&c.ctr(&["task", "ls"])).contains("STOPPED") {
        assert!(t.elapsed() < Duration::from_secs(20), "task never stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(c.ctr(&["task", "delete", "ctrd-d"]).status.success());
    assert!(c.ctr(&["containers", "delete", "ctrd-d"]).status.success());
}

#[test]
fn ctr_log_uri_file() {
    let c = setup("loguri");
    let d = dray();
    let log = c.dir.join("ctr-out.log");
    let uri = format!("file://{}", log.display());
    let o = c.ctr(&[
        "run",
        "--rm",
        "--log-uri",
        &uri,
        "--runc-binary",
        &d,
        IMAGE,
        "ctrd-log",
        "echo",
        "into-the-log",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = std::time::Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("into-the-log")
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "log: {:?}",
            std::fs::read_to_string(&log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
