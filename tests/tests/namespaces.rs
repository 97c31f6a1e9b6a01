//! Namespaces: new ones, joined ones by path, user namespaces with mappings, time.

use dray_e2e::*;
use serde_json::json;
use std::time::Duration;

fn ns_inode(pid: &str, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn new_namespaces_differ_from_the_host() {
    let b = Bundle::new(
        "nsnew",
        &[
            "sh",
            "-c",
            "for n in pid mnt uts ipc net cgroup; do readlink /proc/self/ns/$n; done",
        ],
    );
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for (l, n) in out.lines().zip(["pid", "mnt", "uts", "ipc", "net", "cgroup"]) {
        assert_ne!(l, ns_inode("self", n), "{n} namespace is the host's");
    }
}

#[test]
fn joining_a_network_namespace_by_path() {
    let mut holder = std::process::Command::new("unshare")
        .args(["--net", "sleep", "60"])
        .spawn()
        .unwrap();
    let hpid = holder.id().to_string();
    let t = std::time::Instant::now();
    while ns_inode(&hpid, "net") == ns_inode("self", "net") {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    let want = ns_inode(&hpid, "net");
    let mut b = Bundle::new("nsjoin", &["readlink", "/proc/self/ns/net"]);
    for ns in b.config["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "network" {
            ns["path"] = json!(format!("/proc/{hpid}/ns/net"));
        }
    }
    let o = b.run();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), want);
}

#[test]
fn user_namespace_with_mappings() {
    let mut b = Bundle::new(
        "userns",
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u; touch /tmp/f && stat -c %u /tmp/f",
        ],
    );
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    // The rootfs must be owned by the mapped root for the container to write to it.
    let st = std::process::Command::new("chown")
        .args(["-R", "200000:200000"])
        .arg(b.dir.join("rootfs"))
        .status()
        .unwrap();
    assert!(st.success());
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let v: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(v[0], ["0", "200000", "65536"]);
    assert_eq!(v[1], ["0", "200000", "65536"]);
    assert_eq!(v[2], ["0"]);
    assert_eq!(v[3], ["0"]);
    assert_no_leaks(&b);
}

#[test]
fn user_namespace_owning_a_joined_network_namespace_uses_the_slow_path() {
    // A new user namespace plus a namespace joined by path: an intermediate process joins
    // first, then creates the user namespace, then forks the init.
    let mut b = Bundle::new("userjoin", &["sh", "-c", "id -u; readlink /proc/self/ns/uts"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    for ns in b.config["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "uts" {
            ns["path"] = json!("/proc/self/ns/uts");
        }
    }
    b.config["hostname"] = json!(null);
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "0");
    assert_eq!(l[1], ns_inode("self", "uts"), "the host uts namespace was joined");
    assert_no_leaks(&b);
}

#[test]
fn time_namespace() {
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        eprintln!("skipped: no time namespaces on this kernel");
        return;
    }
    let mut b = Bundle::new("timens", &["readlink", "/proc/self/ns/time"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(stdout(&o).trim(), ns_inode("self", "time"));
}

#[test]
fn the_init_lives_in_its_own_cgroup_which_delete_removes() {
    let mut b = Bundle::new("cgroup", &["sleep", "100"]);
    let path = format!("/dray-e2e/{}", b.id);
    b.config["linux"]["cgroupsPath"] = json!(path);
    b.create();
    let pid = b.state()["pid"].as_i64().unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v1: Vec<&str> = cg.lines().filter(|l| !l.starts_with("0::")).collect();
    assert!(!v1.is_empty() || cg.contains(&path));
    for l in cg.lines() {
        assert!(l.ends_with(&path), "not in {path}: {l}");
    }
    let dirs = cgroup_dirs(&b.id);
    assert!(!dirs.is_empty());
    b.cleanup();
    assert!(cgroup_dirs(&b.id).is_empty());
    // Default: a cgroup named after the container, below the runtime's own.
    let b = Bundle::new("cgdefault", &["sleep", "100"]);
    b.create();
    let pid = b.state()["pid"].as_i64().unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.lines().all(|l| l.ends_with(&format!("/{}", b.id))), "{cg}");
    b.cleanup();
}
