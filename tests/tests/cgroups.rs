//! cgroups on the host layouts dray must handle: this host's v1/hybrid layout is covered by
//! the other tests; here a private mount namespace shows only a cgroup2 hierarchy at
//! /sys/fs/cgroup, as on a pure v2 host.

use dray_e2e::*;

fn v2_mount_available() -> bool {
    cgroup2_available()
}

#[test]
fn pure_cgroup_v2_layout() {
    if !v2_mount_available() {
        eprintln!("skipped: no cgroup2 hierarchy on this host");
        return;
    }
    let b = Bundle::new(
        "cgv2",
        &[
            "sh",
            "-c",
            "cat /proc/self/cgroup; grep ' /sys/fs/cgroup ' /proc/self/mountinfo; cat /sys/fs/cgroup/cgroup.procs",
        ],
    );
    let o = run_pure_v2(&b, "grep -c cgroup /proc/self/mountinfo && exec {dray} run {id}");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // The kernel still lists the (unmounted) v1 hierarchies in /proc/self/cgroup: look at the
    // cgroup2 line only.
    assert_eq!(
        out.lines().next(),
        Some("1"),
        "only the cgroup2 mount is visible: {out}"
    );
    // In its cgroup namespace the container is at the root of a fresh cgroup2 mount, alone.
    assert_eq!(out.lines().find(|l| l.starts_with("0::")), Some("0::/"), "{out}");
    assert!(out.lines().any(|l| l.contains(" - cgroup2 ")), "{out}");
    assert_eq!(out.lines().last(), Some("1"), "{out}");
    assert_no_leaks(&b);
}

#[test]
fn pure_cgroup_v2_layout_without_cgroup_namespace() {
    if !v2_mount_available() {
        eprintln!("skipped: no cgroup2 hierarchy on this host");
        return;
    }
    let mut b = Bundle::new(
        "cgv2nons",
        &["sh", "-c", "cat /proc/self/cgroup; cat /sys/fs/cgroup/cgroup.procs"],
    );
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "cgroup");
    let o = run_pure_v2(&b, "exec {dray} run {id}");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let v2 = out.lines().find(|l| l.starts_with("0::")).unwrap();
    // Without a cgroup namespace the path shows; /sys/fs/cgroup is a bind of its directory.
    assert!(v2.ends_with(&format!("/{}", b.id)), "{out}");
    assert_eq!(out.lines().last().unwrap(), "1", "{out}");
    assert_no_leaks(&b);
}

#[test]
fn pause_and_resume_on_cgroup_v2() {
    if !v2_mount_available() {
        eprintln!("skipped: no cgroup2 hierarchy on this host");
        return;
    }
    let b = Bundle::new("cgv2pause", &["sleep", "100"]);
    let o = run_pure_v2(
        &b,
        "{dray} run -d {id} && {dray} pause {id} && {dray} state {id} | grep -o '\"status\": \"[a-z]*\"' && \
         cat /sys/fs/cgroup/{id}/cgroup.freeze && {dray} resume {id} && {dray} state {id} | grep -o '\"status\": \"[a-z]*\"' && \
         {dray} delete --force {id} && echo deleted",
    );
    assert!(o.status.success(), "{} {}", stdout(&o), stderr(&o));
    assert_eq!(
        stdout(&o),
        "\"status\": \"paused\"\n1\n\"status\": \"running\"\ndeleted\n"
    );
    assert_no_leaks(&b);
}
