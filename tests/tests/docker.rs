//! dray as a dockerd 20.10 runtime (`--add-runtime dray=...`, `docker run --runtime dray`), with
//! Docker's own default seccomp profile.

use dray_e2e::engines::{wait_until, Dockerd};
use dray_e2e::*;

const IMAGE: &str = "dray/busybox:latest";

#[test]
fn docker_run_exec_logs_stop_rm_and_volumes() {
    let d = Dockerd::start("main");
    let o = d.docker(&[
        "run",
        "--rm",
        "--runtime",
        "dray",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "echo hi-from-docker; exit 6",
    ]);
    assert_eq!(o.status.code(), Some(6), "{} {}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "hi-from-docker\n");
    // Docker's default seccomp profile is applied by dray: unshare is refused.
    let o = d.docker(&[
        "run",
        "--rm",
        "--runtime",
        "dray",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "unshare -m true 2>&1; grep Seccomp: /proc/self/status",
    ]);
    assert!(
        stdout(&o).contains("Operation not permitted") && stdout(&o).contains("Seccomp:\t2"),
        "{} {}",
        stdout(&o),
        stderr(&o)
    );

    let vol = d.dir.join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("f"), "d1\n").unwrap();
    let v = format!("{}:/data", vol.display());
    let o = d.docker(&[
        "run",
        "-d",
        "--name",
        "dk1",
        "--runtime",
        "dray",
        "--network",
        "none",
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
        || stdout(&d.docker(&["logs", "dk1"])).contains("d1"),
        || format!("logs: {}", stderr(&d.docker(&["logs", "dk1"]))),
    );
    assert_eq!(stdout(&d.docker(&["logs", "dk1"])), "started\nd1\n");
    let o = d.docker(&["exec", "dk1", "sh", "-c", "echo exec-ok; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o), "exec-ok\n");
    assert!(d.docker(&["stop", "-t", "1", "dk1"]).status.success());
    assert!(d.docker(&["rm", "dk1"]).status.success());
    assert_eq!(std::fs::read_to_string(vol.join("g")).unwrap(), "w\n");
    let v = format!("{}:/data:ro", vol.display());
    let o = d.docker(&[
        "run",
        "--rm",
        "--runtime",
        "dray",
        "--network",
        "none",
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
