//! The device cgroup (`linux.resources.devices`): v1 rules on this host, an eBPF program on a
//! pure cgroup v2 layout. A container allowed to mknod may still not open devices it was not
//! granted.

use dray_e2e::*;
use serde_json::json;

const PROBE: &str = "mknod /dev/l0 b 7 0 && { head -c1 /dev/l0 >/dev/null 2>/tmp/err; cat /tmp/err; echo done; }";

fn bundle(name: &str, allow_loop: bool) -> Bundle {
    let mut b = Bundle::new(name, &["sh", "-c", PROBE]);
    let caps = json!(["CAP_MKNOD", "CAP_DAC_OVERRIDE"]);
    b.config["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
    if allow_loop {
        b.config["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(json!({"allow": true, "type": "b", "major": 7, "minor": 0, "access": "r"}));
    }
    b
}

fn check(out: &str, allowed: bool) {
    assert!(out.ends_with("done\n"), "{out}");
    assert_eq!(out.contains("Operation not permitted"), !allowed, "{out}");
}

#[test]
fn v1_device_rules_deny_what_is_not_allowed() {
    let b = bundle("devdeny", false);
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    check(&stdout(&o), false);
    let b = bundle("devallow", true);
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    check(&stdout(&o), true);
}

#[test]
fn v2_device_program_denies_what_is_not_allowed() {
    if !std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists()
        && !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        eprintln!("skipped: no cgroup2 hierarchy");
        return;
    }
    let b = bundle("devdeny2", false);
    let o = run_pure_v2(&b, "exec {dray} run {id}");
    assert!(o.status.success(), "{}", stderr(&o));
    check(&stdout(&o), false);
    assert_no_leaks(&b);
    let b = bundle("devallow2", true);
    let o = run_pure_v2(&b, "exec {dray} run {id}");
    assert!(o.status.success(), "{}", stderr(&o));
    check(&stdout(&o), true);
    assert_no_leaks(&b);
}

#[test]
fn unsupported_fields_are_refused_not_ignored() {
    let mut b = Bundle::new("unsup", &["true"]);
    b.config["linux"]["intelRdt"] = json!({"closID": "x"});
    let o = b.dray(&["create", &b.id.clone()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("linux.intelRdt"), "{}", stderr(&o));
    assert_no_leaks(&b);
    let mut b = Bundle::new("unsupaa", &["true"]);
    b.config["process"]["apparmorProfile"] = json!("docker-default");
    let o = b.dray(&["create", &b.id.clone()]);
    assert!(stderr(&o).contains("AppArmor"), "{}", stderr(&o));
    // SELinux labels on a host without SELinux: nothing could enforce them; ignored, as crun
    // and runc do (this host has no SELinux).
    assert!(!std::path::Path::new("/sys/fs/selinux/enforce").exists());
    let mut b = Bundle::new("mountlabel", &["true"]);
    b.config["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0:c1,c2");
    b.config["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c1,c2");
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    // Zero values, as some engines send them, set nothing and are accepted.
    let mut b = Bundle::new("zeros", &["true"]);
    b.config["linux"]["resources"]["cpu"] = json!({"shares": 0});
    b.config["linux"]["resources"]["memory"] = json!({"disableOOMKiller": false});
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
}
