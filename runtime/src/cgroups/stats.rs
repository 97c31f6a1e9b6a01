//! Container statistics in runc's `events --stats` format (runc's libcontainer types.go: cpu,
//! cpuset, memory, pids, blkio, hugetlb), read from v1 or v2 cgroup files, each controller from
//! the hierarchy that has it.

use super::{CgroupDir, CgroupPaths};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

fn read(dir: &Path, file: &str) -> Option<String> {
    crate::sys::read_text(dir.join(file)).ok().map(|s| s.trim().to_string())
}

fn read_u64(dir: &Path, file: &str) -> u64 {
    read(dir, file).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// "key value" lines (memory.stat, cpu.stat, ...).
fn kv(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    read(dir, file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// A limit file: "max" (v2) or a huge v1 value means unlimited, reported as its raw value.
fn limit(dir: &Path, file: &str) -> u64 {
    match read(dir, file).as_deref() {
        Some("max") | None => u64::MAX,
        Some(s) => s.parse().unwrap_or(u64::MAX),
    }
}

fn percpu(dir: &Path, file: &str) -> Vec<u64> {
    read(dir, file)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect()
}

/// runc's throttling numbers from cpu.stat; `time_key` and `scale` give the throttled time in
/// nanoseconds (v2 counts microseconds, v1 nanoseconds).
fn throttling(s: &BTreeMap<String, u64>, time_key: &str, scale: u64) -> Map<String, Value> {
    let get = |k: &str| s.get(k).copied().unwrap_or(0);
    let mut thr = Map::new();
    thr.insert("periods".into(), json!(get("nr_periods")));
    thr.insert("throttledPeriods".into(), json!(get("nr_throttled")));
    thr.insert("throttledTime".into(), json!(get(time_key) * scale));
    thr
}

fn cpu(d: Option<&CgroupDir>, acct: Option<&CgroupDir>) -> Value {
    let mut usage = Map::new();
    let mut thr = Map::new();
    if let Some(d) = d.filter(|d| d.v2) {
        let s = kv(&d.path, "cpu.stat");
        usage.insert("total".into(), json!(s.get("usage_usec").copied().unwrap_or(0) * 1000));
        usage.insert(
            "kernel".into(),
            json!(s.get("system_usec").copied().unwrap_or(0) * 1000),
        );
        usage.insert("user".into(), json!(s.get("user_usec").copied().unwrap_or(0) * 1000));
        thr = throttling(&s, "throttled_usec", 1000);
    } else {
        if let Some(a) = acct {
            // cpuacct.stat is in clock ticks (USER_HZ = 100).
            let st = kv(&a.path, "cpuacct.stat");
            usage.insert("total".into(), json!(read_u64(&a.path, "cpuacct.usage")));
            usage.insert("percpu".into(), json!(percpu(&a.path, "cpuacct.usage_percpu")));
            let k = percpu(&a.path, "cpuacct.usage_percpu_sys");
            if !k.is_empty() {
                usage.insert("percpu_kernel".into(), json!(k));
                usage.insert(
                    "percpu_user".into(),
                    json!(percpu(&a.path, "cpuacct.usage_percpu_user")),
                );
            }
            usage.insert(
                "kernel".into(),
                json!(st.get("system").copied().unwrap_or(0) * 10_000_000),
            );
            usage.insert("user".into(), json!(st.get("user").copied().unwrap_or(0) * 10_000_000));
        }
        if let Some(d) = d {
            let s = kv(&d.path, "cpu.stat");
            thr = throttling(&s, "throttled_time", 1);
        }
    }
    json!({"usage": usage, "throttling": thr})
}

fn memory(d: Option<&CgroupDir>) -> Value {
    let Some(d) = d else { return json!({}) };
    let p = &d.path;
    if d.v2 {
        let raw = kv(p, "memory.stat");
        let events = kv(p, "memory.events");
        return json!({
            "cache": raw.get("file").copied().unwrap_or(0),
            "usage": {"usage": read_u64(p, "memory.current"), "limit": limit(p, "memory.max"), "max": read_u64(p, "memory.peak"), "failcnt": events.get("max").copied().unwrap_or(0)},
            // runc 1.1 reports v2 swap as memory+swap, like v1's memsw.
            "swap": {
                "usage": read_u64(p, "memory.swap.current") + read_u64(p, "memory.current"),
                "limit": limit(p, "memory.swap.max").saturating_add(limit(p, "memory.max")),
                "failcnt": 0
            },
            "raw": raw
        });
    }
    let entry = |pre: &str| {
        json!({
            "usage": read_u64(p, &format!("{pre}usage_in_bytes")),
            "max": read_u64(p, &format!("{pre}max_usage_in_bytes")),
            "limit": limit(p, &format!("{pre}limit_in_bytes")),
            "failcnt": read_u64(p, &format!("{pre}failcnt"))
        })
    };
    let raw = kv(p, "memory.stat");
    json!({
        "cache": raw.get("total_cache").or(raw.get("cache")).copied().unwrap_or(0),
        "usage": entry("memory."),
        "swap": entry("memory.memsw."),
        "kernel": entry("memory.kmem."),
        "kernelTCP": entry("memory.kmem.tcp."),
        "raw": raw
    })
}

fn pids(d: Option<&CgroupDir>) -> Value {
    let Some(d) = d else { return json!({}) };
    let lim = match read(&d.path, "pids.max").as_deref() {
        Some("max") | None => 0,
        Some(s) => s.parse().unwrap_or(0),
    };
    json!({"current": read_u64(&d.path, "pids.current"), "limit": lim})
}

fn blkio(d: Option<&CgroupDir>) -> Value {
    let Some(d) = d else { return json!({}) };
    let entry = |maj: &str, min: &str, op: &str, v: u64| json!({"major": maj.parse::<u64>().unwrap_or(0), "minor": min.parse::<u64>().unwrap_or(0), "op": op, "value": v});
    let (mut bytes, mut ios) = (Vec::new(), Vec::new());
    if d.v2 {
        for l in read(&d.path, "io.stat").unwrap_or_default().lines() {
            let mut it = l.split_whitespace();
            let Some((maj, min)) = it.next().and_then(|x| x.split_once(':')) else {
                continue;
            };
            for f in it {
                let Some((k, v)) = f.split_once('=') else { continue };
                let v: u64 = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => bytes.push(entry(maj, min, "Read", v)),
                    "wbytes" => bytes.push(entry(maj, min, "Write", v)),
                    "rios" => ios.push(entry(maj, min, "Read", v)),
                    "wios" => ios.push(entry(maj, min, "Write", v)),
                    _ => {}
                }
            }
        }
    } else {
        for (file, out) in [
            ("blkio.throttle.io_service_bytes_recursive", &mut bytes),
            ("blkio.throttle.io_serviced_recursive", &mut ios),
        ] {
            for l in read(&d.path, file).unwrap_or_default().lines() {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() == 3 {
                    if let Some((maj, min)) = f[0].split_once(':') {
                        out.push(entry(maj, min, f[1], f[2].parse().unwrap_or(0)));
                    }
                }
            }
        }
    }
    json!({"ioServiceBytesRecursive": bytes, "ioServicedRecursive": ios})
}

fn hugetlb(d: Option<&CgroupDir>) -> Value {
    let mut out = Map::new();
    let Some(d) = d else { return Value::Object(out) };
    let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Value::Object(out);
    };
    for e in rd.flatten() {
        // hugepages-2048kB -> 2MB, as the cgroup files name it.
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(kb) = name
            .strip_prefix("hugepages-")
            .and_then(|s| s.strip_suffix("kB"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        let size = if kb >= 1 << 20 {
            format!("{}GB", kb >> 20)
        } else if kb >= 1024 {
            format!("{}MB", kb >> 10)
        } else {
            format!("{kb}KB")
        };
        let v = if d.v2 {
            json!({"usage": read_u64(&d.path, &format!("hugetlb.{size}.current")), "failcnt": kv(&d.path, &format!("hugetlb.{size}.events")).get("max").copied().unwrap_or(0)})
        } else {
            json!({
                "usage": read_u64(&d.path, &format!("hugetlb.{size}.usage_in_bytes")),
                "max": read_u64(&d.path, &format!("hugetlb.{size}.max_usage_in_bytes")),
                "failcnt": read_u64(&d.path, &format!("hugetlb.{size}.failcnt"))
            })
        };
        out.insert(size, v);
    }
    Value::Object(out)
}

impl CgroupPaths {
    /// The container's statistics (runc's `events --stats` data).
    pub fn stats(&self) -> Value {
        // runc's CPUSet has lists of numbers ([]uint16), not the kernel's "0-3,5" text.
        let list = |s: Option<String>| -> Vec<u16> {
            let mut v = Vec::new();
            for part in s.unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
                let (a, b) = part.split_once('-').unwrap_or((part, part));
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
                    v.extend(a..=b.min(a.saturating_add(4096)));
                }
            }
            v
        };
        let cpuset = self.host("cpuset", Some("cpuset")).map(|d| {
            json!({"cpus": list(read(&d.path, "cpuset.cpus.effective").or_else(|| read(&d.path, "cpuset.effective_cpus"))),
                   "mems": list(read(&d.path, "cpuset.mems.effective").or_else(|| read(&d.path, "cpuset.effective_mems")))})
        });
        json!({
            "cpu": cpu(self.host("cpu", Some("cpu")), self.host("cpuacct", None)),
            "cpuset": cpuset.unwrap_or(json!({})),
            "memory": memory(self.host("memory", Some("memory"))),
            "pids": pids(self.host("pids", Some("pids"))),
            "blkio": blkio(self.host("blkio", Some("io"))),
            "hugetlb": hugetlb(self.host("hugetlb", Some("hugetlb"))),
            "intel_rdt": {},
            "network_interfaces": null
        })
    }

    /// How many processes of the container the OOM killer has killed so far (v1
    /// memory.oom_control, v2 memory.events).
    pub fn oom_kills(&self) -> u64 {
        match self.host("memory", Some("memory")) {
            Some(d) if d.v2 => kv(&d.path, "memory.events").get("oom_kill").copied().unwrap_or(0),
            Some(d) => kv(&d.path, "memory.oom_control").get("oom_kill").copied().unwrap_or(0),
            None => 0,
        }
    }
}
