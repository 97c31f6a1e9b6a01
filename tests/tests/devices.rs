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

/// runc's device test: /dev/kmsg is created (linux.devices) under a deny-all rule list, the
/// process has CAP_SYSLOG; a node being created does not allow it.
fn kmsg_bundle(name: &str) -> Bundle {
    let mut b = Bundle::new(name, &["sleep", "60"]);
    let caps = json!(["CAP_SYSLOG"]);
    b.config["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
    b.config["linux"]["devices"] = json!([{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11}]);
    b.config["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwm"}]);
    b
}

const READ_KMSG: &str = "head -c1 /dev/kmsg >/dev/null 2>/tmp/e && echo read || cat /tmp/e";

fn rules_file(b: &Bundle, rules: serde_json::Value) -> String {
    let p = b.dir.join("resources.json");
    std::fs::write(&p, json!({"devices": rules}).to_string()).unwrap();
    p.display().to_string()
}

#[test]
fn device_rules_hold_across_updates_and_can_be_replaced() {
    let b = kmsg_bundle("kmsg");
    let id = b.id.clone();
    let o = b.dray(&["run", "-d", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let read = || stdout(&b.dray(&["exec", &id, "sh", "-c", READ_KMSG]));
    assert!(read().contains("Operation not permitted"), "{}", read());
    // An update of something else leaves the device rules as they are.
    let o = b.dray(&["update", "--pids-limit", "42", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(read().contains("Operation not permitted"), "{}", read());
    // New rules: allowed, then denied again with runc's own "rwa".
    let allow = rules_file(
        &b,
        json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rw"}]),
    );
    let o = b.dray(&["update", "-r", &allow, &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read(), "read\n");
    let deny = rules_file(
        &b,
        json!([{"allow": false, "access": "rwm"}, {"allow": false, "type": "c", "major": 1, "minor": 11, "access": "rwa"}]),
    );
    let o = b.dray(&["update", "-r", &deny, &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(read().contains("Operation not permitted"), "{}", read());
    // The default devices stay usable throughout.
    assert_eq!(
        stdout(&b.dray(&["exec", &id, "sh", "-c", "head -c3 /dev/zero | wc -c"])),
        "3\n"
    );
    b.cleanup();
}

#[test]
fn v2_device_programs_are_replaced_without_a_gap() {
    if !cgroup2_available() {
        eprintln!("skipped: no cgroup2 hierarchy");
        return;
    }
    let b = kmsg_bundle("kmsg2");
    let allow = rules_file(
        &b,
        json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rw"}]),
    );
    let read = format!("{{dray}} exec {{id}} sh -c '{READ_KMSG}'");
    // The program allowing kmsg only works if the one denying it was detached.
    let script = format!(
        "{{dray}} run -d {{id}} </dev/null >/dev/null 2>&1 && {read} && {{dray}} update -r {allow} {{id}} && {read}; {{dray}} delete -f {{id}}"
    );
    let o = run_pure_v2(&b, &script);
    let out = stdout(&o);
    let mut lines = out.lines();
    assert!(
        lines.next().unwrap_or_default().contains("Operation not permitted"),
        "{out}{}",
        stderr(&o)
    );
    assert_eq!(lines.next(), Some("read"), "{out}{}", stderr(&o));
    assert_no_leaks(&b);
}
