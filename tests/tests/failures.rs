//! Every failed create leaves nothing behind: no process, mount, cgroup or state directory.

use dray_e2e::*;
use serde_json::json;

fn create_fails(b: &Bundle, needle: &str) {
    let o = b.dray(&["create", &b.id.clone()]);
    assert_eq!(o.status.code(), Some(1), "create unexpectedly succeeded");
    let e = stderr(&o);
    assert!(e.contains(needle), "error should mention {needle:?}: {e}");
    assert_eq!(
        e.lines()
            .filter(|l| l.starts_with("dray: ") && !l.contains("warning"))
            .count(),
        1,
        "{e}"
    );
    assert_no_leaks(b);
}

#[test]
fn malformed_config() {
    let b = Bundle::new("malformed", &["true"]);
    b.save();
    std::fs::write(b.dir.join("config.json"), "{ not json").unwrap();
    let o = run_with_timeout(
        {
            let mut c = std::process::Command::new(dray_bin());
            c.arg("--root").arg(&b.root).args(["create", &b.id]).current_dir(&b.dir);
            c
        },
        std::time::Duration::from_secs(20),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("config.json"), "{}", stderr(&o));
    assert_no_leaks(&b);
}

#[test]
fn missing_config_and_missing_rootfs() {
    let b = Bundle::new("noconfig", &["true"]);
    let o = run_with_timeout(
        {
            let mut c = std::process::Command::new(dray_bin());
            c.arg("--root")
                .arg(&b.root)
                .args(["create", "--bundle", "/nonexistent-bundle", &b.id]);
            c
        },
        std::time::Duration::from_secs(20),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nonexistent-bundle"), "{}", stderr(&o));
    assert_no_leaks(&b);
    let mut b = Bundle::new("norootfs", &["true"]);
    b.config["root"]["path"] = json!("no-such-rootfs");
    create_fails(&b, "no-such-rootfs");
}

#[test]
fn unknown_or_duplicate_namespace() {
    let mut b = Bundle::new("badns", &["true"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "nosuchns"}));
    create_fails(&b, "nosuchns");
    let mut b = Bundle::new("dupns", &["true"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "pid"}));
    create_fails(&b, "listed twice");
    let mut b = Bundle::new("nsnopath", &["true"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network");
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "network", "path": "/proc/no/ns/net"}));
    create_fails(&b, "/proc/no/ns/net");
}

#[test]
fn invalid_and_duplicate_ids() {
    let b = Bundle::new("ids", &["sleep", "100"]);
    for bad in ["../x", "a/b", "..", "x y"] {
        let o = b.dray(&["create", bad]);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert!(stderr(&o).contains("invalid container id"), "{}", stderr(&o));
    }
    assert!(!b.root.join("..").join("x").exists());
    b.create();
    let o = b.dray(&["create", &b.id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"));
    // The first container is untouched by the failed second create.
    assert_eq!(b.status(), "created");
    b.cleanup();
}

#[test]
fn a_failure_inside_the_init_after_mounts_cleans_up() {
    // The hostname needs a UTS namespace: the init fails late, after all mounts were made.
    let mut b = Bundle::new("latefail", &["true"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "uts");
    b.config["hostname"] = json!("x");
    create_fails(&b, "UTS namespace");
}

#[test]
fn cgroups_path_may_not_name_the_callers_cgroup() {
    let mut b = Bundle::new("cgroot", &["true"]);
    b.config["linux"]["cgroupsPath"] = json!("/");
    create_fails(&b, "cgroupsPath");
    // Empty means unset: the container gets a cgroup named after its id.
    let mut b = Bundle::new("cgempty", &["true"]);
    b.config["linux"]["cgroupsPath"] = json!("");
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_no_leaks(&b);
}

#[test]
fn device_paths_must_stay_under_dev() {
    let mut b = Bundle::new("devpath", &["true"]);
    b.config["linux"]["devices"] = json!([{"path": "/dev/../etc/evil", "type": "c", "major": 1, "minor": 3}]);
    create_fails(&b, "not a path under /dev");
}

#[test]
fn hook_output_is_in_the_error() {
    let mut b = Bundle::new("hookout", &["true"]);
    b.config["hooks"] =
        json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo hook-says-no >&2; exit 3"]}]});
    create_fails(&b, "hook-says-no");
}
