//! dray as podman 4.3's OCI runtime (Debian's podman, conmon, cgroupfs, file events).

use dray_e2e::engines::{volume_scenario, Podman};
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
    volume_scenario(&|args| p.podman(args), &[], IMAGE, "pm1", &p.dir, &|| {
        let o = p.podman(&["top", "pm1"]);
        assert!(
            o.status.success() && stdout(&o).contains("sleep 1000"),
            "{} {}",
            stdout(&o),
            stderr(&o)
        );
    });
}
