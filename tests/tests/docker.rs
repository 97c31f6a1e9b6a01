//! dray as a dockerd 20.10 runtime (`--add-runtime dray=...`, `docker run --runtime dray`), with
//! Docker's own default seccomp profile.

use dray_e2e::engines::{volume_scenario, Dockerd};
use dray_e2e::*;

const IMAGE: &str = "dray/busybox:latest";

#[test]
fn docker_run_exec_logs_stop_rm_and_volumes() {
    let d = Dockerd::start("main");
    let run_rm = |script: &str| {
        d.docker(&[
            "run",
            "--rm",
            "--runtime",
            "dray",
            "--network",
            "none",
            IMAGE,
            "sh",
            "-c",
            script,
        ])
    };
    let o = run_rm("echo hi-from-docker; exit 6");
    assert_eq!(o.status.code(), Some(6), "{} {}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "hi-from-docker\n");
    // Docker's default seccomp profile is applied by dray: unshare is refused.
    let o = run_rm("unshare -m true 2>&1; grep Seccomp: /proc/self/status");
    assert!(
        stdout(&o).contains("Operation not permitted") && stdout(&o).contains("Seccomp:\t2"),
        "{} {}",
        stdout(&o),
        stderr(&o)
    );

    volume_scenario(
        &|args| d.docker(args),
        &["--runtime", "dray", "--network", "none"],
        IMAGE,
        "dk1",
        &d.dir,
        &|| {},
    );
}
