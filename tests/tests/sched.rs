//! process.scheduler, process.ioPriority, linux.personality, linux.memoryPolicy and
//! linux.timeOffsets, each observed from inside the container.

use dray_e2e::*;
use serde_json::json;

/// Field n (1-based, as in proc(5)) of /proc/self/stat text.
fn stat_field(stat: &str, n: usize) -> String {
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(n - 3).unwrap().to_string()
}

#[test]
fn scheduler_policy_and_nice() {
    let mut b = Bundle::new("sched", &["cat", "/proc/self/stat"]);
    b.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert_eq!(stat_field(&s, 41), "3", "policy SCHED_BATCH");
    assert_eq!(stat_field(&s, 19), "7", "nice");
}

#[test]
fn io_priority() {
    let mut b = Bundle::new("ioprio", &["ionice", "-p", "1"]);
    b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("best-effort") && stdout(&o).contains('6'),
        "{}",
        stdout(&o)
    );
    let mut b = Bundle::new("ioprio-bad", &["true"]);
    b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 9});
    let o = b.run();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("0..7"), "{}", stderr(&o));
    assert_no_leaks(&b);
}

#[test]
fn personality_linux32() {
    let mut b = Bundle::new("pers", &["uname", "-m"]);
    b.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    if cfg!(target_arch = "x86_64") {
        assert_eq!(stdout(&o).trim(), "i686");
    }
}

#[test]
fn memory_policy() {
    let mut b = Bundle::new(
        "mempol",
        &[
            "sh",
            "-c",
            "grep -m1 -o 'bind:0\\|interleave:0' /proc/self/numa_maps || grep Mems_allowed_list /proc/self/status",
        ],
    );
    b.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"});
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    if std::path::Path::new("/proc/self/numa_maps").exists() {
        assert_eq!(stdout(&o).trim(), "bind:0");
    }
    let mut b = Bundle::new("mempol-bad", &["true"]);
    b.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "9-3"});
    let o = b.run();
    assert_eq!(o.status.code(), Some(1));
    assert_no_leaks(&b);
}

#[test]
fn time_offsets_in_a_time_namespace() {
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        eprintln!("skipped: no time namespaces");
        return;
    }
    let mut b = Bundle::new("timeoff", &["cat", "/proc/uptime"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    b.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 864000, "nanosecs": 0}});
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    let up: f64 = stdout(&o).split_whitespace().next().unwrap().parse().unwrap();
    let host: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(up >= host + 864000.0 - 5.0, "uptime {up} vs host {host}");
    // Offsets without a new time namespace are refused.
    let mut b = Bundle::new("timeoff-bad", &["true"]);
    b.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 1}});
    let o = b.run();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("time namespace"), "{}", stderr(&o));
}
