//! dray as podman 4.3's OCI runtime (Debian's podman, conmon, cgroupfs, file events).

use dray_e2e::engines::{wait_until, Podman};
use dray_e2e::*;

const IMAGE: &str = "localhost/dray-busybox:latest";

#[test]
fn podman_run_rm_with_output_and_exit_code() {
    let p = Podman::new("run");
    let o = p.podman(&["run", "--rm", IMAGE, "sh", "-c", "echo hi-from-podman; exit 4"]);
    assert_eq!(o.status.code(), Some(4), "{} {}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "hi-from-podman\n");
}

#[test]
fn podman_detached_logs_exec_top_stop_rm_and_volumes() {
    let p = Podman::new("detached");
    let vol = p.dir.join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("f"), "data1\n").unwrap();
    let v = format!("{}:/data", vol.display());
    let o = p.podman(&[
        "run",
        "-d",
        "--name",
        "pm1",
        "-v",
        &v,
        IMAGE,
        "sh",
        "-c",
        "echo started; cat /data/f; echo w > /data/g; sleep 1000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until(
        std::time::Duration::from_secs(20),
        || stdout(&p.podman(&["logs", "pm1"])).contains("data1"),
        || format!("logs: {}", stderr(&p.podman(&["logs", "pm1"]))),
    );
    assert_eq!(stdout(&p.podman(&["logs", "pm1"])), "started\ndata1\n");
    let o = p.podman(&["exec", "pm1", "sh", "-c", "echo exec-ok; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o), "exec-ok\n");
    let o = p.podman(&["top", "pm1"]);
    assert!(
        o.status.success() && stdout(&o).contains("sleep 1000"),
        "{} {}",
        stdout(&o),
        stderr(&o)
    );
    let o = p.podman(&["stop", "-t", "1", "pm1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = p.podman(&["rm", "pm1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The read-write volume got the container's write; a read-only one refuses writes.
    assert_eq!(std::fs::read_to_string(vol.join("g")).unwrap(), "w\n");
    let v = format!("{}:/data:ro", vol.display());
    let o = p.podman(&[
        "run",
        "--rm",
        "-v",
        &v,
        IMAGE,
        "sh",
        "-c",
        "touch /data/x 2>&1; cat /data/g",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "touch: /data/x: Read-only file system\nw\n");
}
