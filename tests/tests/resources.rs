//! `linux.resources` on this host's cgroups (v1 controllers, hugetlb on the hybrid cgroup2
//! mount): values read back from the cgroup files, and their effect seen.

use dray_e2e::*;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The container's directory in the hierarchy mounted at /sys/fs/cgroup/<name>.
fn cg_dir(b: &Bundle, name: &str) -> PathBuf {
    cgroup_dirs(&b.id)
        .into_iter()
        .find(|p| p.starts_with(Path::new("/sys/fs/cgroup").join(name)))
        .unwrap_or_else(|| panic!("no {name} cgroup for {}", b.id))
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

fn v1(name: &str) -> bool {
    Path::new("/sys/fs/cgroup").join(name).join("cgroup.procs").exists()
        && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

#[test]
fn limits_are_written_to_the_cgroup_files() {
    if !v1("memory") {
        eprintln!("skipped: not a cgroup v1 host");
        return;
    }
    let mut b = Bundle::new("res", &["sleep", "100"]);
    b.config["linux"]["resources"] = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 96 << 20, "swappiness": 10, "disableOOMKiller": false},
        "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 42}
    });
    b.create();
    let mem = cg_dir(&b, "memory");
    assert_eq!(read(mem.join("memory.limit_in_bytes")), (64u64 << 20).to_string());
    assert_eq!(read(mem.join("memory.soft_limit_in_bytes")), (32u64 << 20).to_string());
    if mem.join("memory.memsw.limit_in_bytes").exists() {
        assert_eq!(read(mem.join("memory.memsw.limit_in_bytes")), (96u64 << 20).to_string());
    }
    assert_eq!(read(mem.join("memory.swappiness")), "10");
    let cpu = cg_dir(&b, "cpu");
    assert_eq!(read(cpu.join("cpu.shares")), "512");
    assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "20000");
    assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(cg_dir(&b, "cpuset").join("cpuset.cpus")), "0");
    assert_eq!(read(cg_dir(&b, "pids").join("pids.max")), "42");
    b.cleanup();
}

#[test]
fn hugetlb_limits_go_to_the_hierarchy_that_has_the_controller() {
    let has = |p: &str| std::fs::read_to_string(p).is_ok_and(|s| s.split_whitespace().any(|c| c == "hugetlb"));
    let hybrid = has("/sys/fs/cgroup/unified/cgroup.controllers");
    if !hybrid && !Path::new("/sys/fs/cgroup/hugetlb").exists() {
        eprintln!("skipped: no hugetlb controller");
        return;
    }
    let mut b = Bundle::new("hugetlb", &["sleep", "100"]);
    b.config["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 4 << 20}]);
    b.create();
    let (dir, file) = if hybrid {
        (cg_dir(&b, "unified"), "hugetlb.2MB.max")
    } else {
        (cg_dir(&b, "hugetlb"), "hugetlb.2MB.limit_in_bytes")
    };
    assert_eq!(read(dir.join(file)), (4u64 << 20).to_string());
    b.cleanup();
}

#[test]
fn a_memory_limit_gets_a_process_oom_killed() {
    let mut b = Bundle::new("oomkill", &["sh", "-c", "tail /dev/zero; echo status=$?"]);
    b.config["linux"]["resources"]["memory"] = json!({"limit": 16 << 20, "swap": 16 << 20});
    let o = b.run();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "status=137\n", "tail must be killed by the OOM killer");
    assert_no_leaks(&b);
}

#[test]
fn a_fork_bomb_is_stopped_by_the_pids_limit() {
    if !v1("pids") {
        eprintln!("skipped: not a cgroup v1 host");
        return;
    }
    // busybox sh gives up at the first refused fork; the kernel counts refusals in pids.events.
    let mut b = Bundle::new("forkbomb", &["sh", "-c", "while :; do sleep 30 & done"]);
    b.config["linux"]["resources"]["pids"] = json!({"limit": 20});
    assert!(b.dray(&["run", "-d", &b.id.clone()]).status.success());
    let pids = cg_dir(&b, "pids");
    let t = std::time::Instant::now();
    loop {
        let current: usize = read(pids.join("pids.current")).parse().unwrap();
        assert!(current <= 20, "{current} processes under a pids limit of 20");
        let refused: usize = read(pids.join("pids.events"))
            .trim_start_matches("max ")
            .parse()
            .unwrap();
        if refused > 0 {
            break;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "no fork was ever refused"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    b.cleanup();
}

#[test]
fn update_changes_limits_live() {
    if !v1("memory") {
        eprintln!("skipped: not a cgroup v1 host");
        return;
    }
    let b = Bundle::new("update", &["sleep", "100"]);
    assert!(b.dray(&["run", "-d", &b.id.clone()]).status.success());
    let o = b.dray(&[
        "update",
        "--memory",
        "50m",
        "--memory-swap",
        "100m",
        "--pids-limit",
        "33",
        "--cpu-quota",
        "30000",
        "--cpu-share",
        "256",
        "--cpuset-cpus",
        "0",
        &b.id,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mem = cg_dir(&b, "memory");
    assert_eq!(read(mem.join("memory.limit_in_bytes")), (50u64 << 20).to_string());
    assert_eq!(read(cg_dir(&b, "pids").join("pids.max")), "33");
    assert_eq!(read(cg_dir(&b, "cpu").join("cpu.cfs_quota_us")), "30000");
    assert_eq!(read(cg_dir(&b, "cpu").join("cpu.shares")), "256");
    let r = b.dir.join("res.json");
    std::fs::write(
        &r,
        json!({"pids": {"limit": 77}, "memory": {"limit": 40 << 20}}).to_string(),
    )
    .unwrap();
    let o = b.dray(&["update", "-r", r.to_str().unwrap(), &b.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read(cg_dir(&b, "pids").join("pids.max")), "77");
    assert_eq!(read(mem.join("memory.limit_in_bytes")), (40u64 << 20).to_string());
    // Bad input: clear errors, limits unchanged.
    std::fs::write(&r, "{ nope").unwrap();
    let o = b.dray(&["update", "-r", r.to_str().unwrap(), &b.id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid resources JSON"), "{}", stderr(&o));
    let o = b.dray(&["update", "--memory", "lots", &b.id]);
    assert_eq!(o.status.code(), Some(1));
    // checkBeforeUpdate refuses a limit below the current usage.
    std::fs::write(
        &r,
        json!({"memory": {"limit": 4096, "checkBeforeUpdate": true}}).to_string(),
    )
    .unwrap();
    let o = b.dray(&["update", "-r", r.to_str().unwrap(), &b.id]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("checkBeforeUpdate"), "{}", stderr(&o));
    assert_eq!(read(mem.join("memory.limit_in_bytes")), (40u64 << 20).to_string());
    b.cleanup();
    let o = b.dray(&["update", "--pids-limit", "5", &b.id]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn events_stats_in_runcs_format() {
    let mut b = Bundle::new("stats", &["sleep", "100"]);
    b.config["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
    b.config["linux"]["resources"]["pids"] = json!({"limit": 50});
    assert!(b.dray(&["run", "-d", &b.id.clone()]).status.success());
    let o = b.dray(&["events", "--stats", &b.id]);
    assert!(o.status.success(), "{}", stderr(&o));
    // runc's layout, keys in this order (its tests match the text).
    let head = format!("{{\"type\":\"stats\",\"id\":\"{}\",\"data\":{{", b.id);
    assert!(stdout(&o).starts_with(&head), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], b.id.as_str());
    let d = &v["data"];
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap() > 0, "{d}");
    assert!(d["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(d["memory"]["usage"]["limit"].as_u64().unwrap(), 64 << 20);
    assert_eq!(d["pids"]["current"], 1);
    assert_eq!(d["pids"]["limit"], 50);
    assert!(d["memory"]["raw"].is_object() && d["blkio"].is_object() && d["hugetlb"].is_object());
    b.cleanup();
    let o = b.dray(&["events", "--stats", &b.id]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn events_report_oom_kills() {
    let mut b = Bundle::new(
        "oomevent",
        &[
            "sh",
            "-c",
            "while [ ! -e /out/go ]; do sleep 0.02; done; tail /dev/zero; sleep 100",
        ],
    );
    b.config["linux"]["resources"]["memory"] = json!({"limit": 16 << 20, "swap": 16 << 20});
    assert!(b.dray(&["run", "-d", &b.id.clone()]).status.success());
    let mut cmd = b.cmd(&["events", "--interval", "10s", &b.id.clone()]);
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    std::fs::write(b.out().join("go"), "").unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines() {
            let line = line.unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["type"] == "oom" {
                return Some(line);
            }
        }
        None
    });
    let t = std::time::Instant::now();
    while !reader.is_finished() && t.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let ev = reader.join().unwrap().expect("no oom event");
    assert_eq!(ev, format!("{{\"type\":\"oom\",\"id\":\"{}\"}}", b.id));
    b.cleanup();
}

#[test]
fn events_stream_at_each_interval_and_end_with_the_container() {
    // runc's tests: `events` with the default interval (5s), 1s and 100ms prints stats lines
    // until the container is deleted, then exits by itself.
    for (interval, min_lines) in [(None, 1), (Some("1s"), 2), (Some("100ms"), 10)] {
        let b = Bundle::new("evint", &["sleep", "100"]);
        assert!(b.dray(&["run", "-d", &b.id.clone()]).status.success());
        let mut args = vec!["events"];
        if let Some(i) = interval {
            args.extend(["--interval", i]);
        }
        args.push(&b.id);
        let mut child = b
            .cmd(&args)
            .stdout(std::process::Stdio::piped())
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut n = 0;
            for line in std::io::BufReader::new(out).lines() {
                let line = line.unwrap();
                assert!(line.starts_with("{\"type\":\"stats\",\"id\":\""), "{line}");
                n += 1;
                let _ = tx.send(n);
            }
            n
        });
        // Wait for the lines this interval gives within ~1.1s (or the first one), then delete.
        let t = std::time::Instant::now();
        let mut seen = 0;
        while seen < min_lines {
            seen = rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("no events line");
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(8), "{interval:?}");
        let o = b.dray(&["delete", "-f", &b.id.clone()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let t = std::time::Instant::now();
        while !reader.is_finished() {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(5),
                "{interval:?}: events did not end"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(child.wait().unwrap().success());
        assert!(reader.join().unwrap() >= min_lines);
        assert_no_leaks(&b);
    }
}

#[test]
fn more_v1_fields_read_back() {
    if !v1("cpu") {
        eprintln!("skipped: not a cgroup v1 host");
        return;
    }
    let mut b = Bundle::new("resmore", &["sleep", "100"]);
    let mut cpu = json!({"burst": 1000});
    let cpu_dir = Path::new("/sys/fs/cgroup/cpu");
    if cpu_dir.join("cpu.rt_runtime_us").exists() {
        cpu["realtimePeriod"] = json!(1_000_000);
        cpu["realtimeRuntime"] = json!(10_000);
    }
    if cpu_dir.join("cpu.idle").exists() {
        cpu["idle"] = json!(1);
    }
    b.config["linux"]["resources"]["cpu"] = cpu.clone();
    b.config["linux"]["resources"]["memory"] = json!({"disableOOMKiller": true});
    // Throttle the first real disk of this host, whatever its numbers.
    let disk = std::fs::read_dir("/sys/block").unwrap().flatten().find_map(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("loop") || n.starts_with("ram") || n.starts_with("zram") {
            return None;
        }
        std::fs::read_to_string(e.path().join("dev"))
            .ok()
            .map(|d| d.trim().to_string())
    });
    if let Some(d) = &disk {
        let (maj, min) = d.split_once(':').unwrap();
        b.config["linux"]["resources"]["blockIO"] = json!({"throttleReadBpsDevice": [{"major": maj.parse::<i64>().unwrap(), "minor": min.parse::<i64>().unwrap(), "rate": 1_048_576}]});
    }
    if std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").is_ok_and(|c| c.contains("hugetlb")) {
        b.config["linux"]["resources"]["unified"] = json!({"hugetlb.2MB.max": "2097152"});
    }
    b.create();
    let c = cg_dir(&b, "cpu");
    assert_eq!(read(c.join("cpu.cfs_burst_us")), "1000");
    if cpu.get("realtimeRuntime").is_some() {
        assert_eq!(read(c.join("cpu.rt_runtime_us")), "10000");
    }
    if cpu.get("idle").is_some() {
        assert_eq!(read(c.join("cpu.idle")), "1");
    }
    assert!(read(cg_dir(&b, "memory").join("memory.oom_control")).contains("oom_kill_disable 1"));
    if let Some(d) = disk {
        assert_eq!(
            read(cg_dir(&b, "blkio").join("blkio.throttle.read_bps_device")),
            format!("{d} 1048576")
        );
    }
    if b.config["linux"]["resources"].get("unified").is_some() {
        assert_eq!(read(cg_dir(&b, "unified").join("hugetlb.2MB.max")), "2097152");
    }
    b.cleanup();
}

#[test]
fn a_limit_for_a_missing_controller_is_an_error() {
    if Path::new("/sys/fs/cgroup/net_cls").exists() {
        eprintln!("skipped: this host has net_cls");
        return;
    }
    let mut b = Bundle::new("resmissing", &["true"]);
    b.config["linux"]["resources"]["network"] = json!({"classID": 1048577});
    let o = b.dray(&["create", &b.id.clone()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("net_cls controller is not available"),
        "{}",
        stderr(&o)
    );
    assert_no_leaks(&b);
}
