//! Task Stats: the runtime's `events --stats` sample (runc's JSON types) converted into
//! containerd's cgroup metrics messages — `io.containerd.cgroups.v1.Metrics` on a v1 (or
//! hybrid) host, `io.containerd.cgroups.v2.Metrics` on a unified one — as `ctr task metrics`
//! and the CRI decode them.

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use serde_json::Value;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn raw(s: &Value, k: &str) -> u64 {
    u(&s["memory"]["raw"][k])
}

fn entry(v: &Value) -> MessageField<v1::MemoryEntry> {
    let mut e = v1::MemoryEntry::new();
    e.limit = u(&v["limit"]);
    e.usage = u(&v["usage"]);
    e.max = u(&v["max"]);
    e.failcnt = u(&v["failcnt"]);
    MessageField::some(e)
}

/// cgroup v1 metrics from runc's stats.
pub fn v1_metrics(s: &Value) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    let mut pids = v1::PidsStat::new();
    pids.current = u(&s["pids"]["current"]);
    pids.limit = u(&s["pids"]["limit"]);
    m.pids = MessageField::some(pids);

    let mut usage = v1::CPUUsage::new();
    let cu = &s["cpu"]["usage"];
    usage.total = u(&cu["total"]);
    usage.kernel = u(&cu["kernel"]);
    usage.user = u(&cu["user"]);
    usage.per_cpu = cu["percpu"]
        .as_array()
        .map(|a| a.iter().map(u).collect())
        .unwrap_or_default();
    let mut thr = v1::Throttle::new();
    let ct = &s["cpu"]["throttling"];
    thr.periods = u(&ct["periods"]);
    thr.throttled_periods = u(&ct["throttledPeriods"]);
    thr.throttled_time = u(&ct["throttledTime"]);
    let mut cpu = v1::CPUStat::new();
    cpu.usage = MessageField::some(usage);
    cpu.throttling = MessageField::some(thr);
    m.cpu = MessageField::some(cpu);

    let mem = &s["memory"];
    let mut ms = v1::MemoryStat::new();
    macro_rules! raw_fields {
        ($($f:ident = $k:literal),*) => { $( ms.$f = raw(s, $k); )* };
    }
    raw_fields!(
        cache = "cache",
        rss = "rss",
        rss_huge = "rss_huge",
        mapped_file = "mapped_file",
        dirty = "dirty",
        writeback = "writeback",
        pg_pg_in = "pgpgin",
        pg_pg_out = "pgpgout",
        pg_fault = "pgfault",
        pg_maj_fault = "pgmajfault",
        inactive_anon = "inactive_anon",
        active_anon = "active_anon",
        inactive_file = "inactive_file",
        active_file = "active_file",
        unevictable = "unevictable",
        hierarchical_memory_limit = "hierarchical_memory_limit",
        hierarchical_swap_limit = "hierarchical_memsw_limit",
        total_cache = "total_cache",
        total_rss = "total_rss",
        total_rss_huge = "total_rss_huge",
        total_mapped_file = "total_mapped_file",
        total_dirty = "total_dirty",
        total_writeback = "total_writeback",
        total_pg_pg_in = "total_pgpgin",
        total_pg_pg_out = "total_pgpgout",
        total_pg_fault = "total_pgfault",
        total_pg_maj_fault = "total_pgmajfault",
        total_inactive_anon = "total_inactive_anon",
        total_active_anon = "total_active_anon",
        total_inactive_file = "total_inactive_file",
        total_active_file = "total_active_file",
        total_unevictable = "total_unevictable"
    );
    ms.usage = entry(&mem["usage"]);
    ms.swap = entry(&mem["swap"]);
    ms.kernel = entry(&mem["kernel"]);
    ms.kernel_tcp = entry(&mem["kernelTCP"]);
    m.memory = MessageField::some(ms);

    let mut blk = v1::BlkIOStat::new();
    let entries = |k: &str| -> Vec<v1::BlkIOEntry> {
        s["blkio"][k]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        let mut b = v1::BlkIOEntry::new();
                        b.major = u(&e["major"]);
                        b.minor = u(&e["minor"]);
                        b.op = e["op"].as_str().unwrap_or_default().to_string();
                        b.value = u(&e["value"]);
                        b
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    blk.io_service_bytes_recursive = entries("ioServiceBytesRecursive");
    blk.io_serviced_recursive = entries("ioServicedRecursive");
    m.blkio = MessageField::some(blk);

    if let Some(h) = s["hugetlb"].as_object() {
        for (size, v) in h {
            let mut e = v1::HugetlbStat::new();
            e.pagesize = size.clone();
            e.usage = u(&v["usage"]);
            e.max = u(&v["max"]);
            e.failcnt = u(&v["failcnt"]);
            m.hugetlb.push(e);
        }
    }
    m
}

/// cgroup v2 metrics from runc's stats (CPU times back to microseconds, memory.stat keys
/// from the raw map).
pub fn v2_metrics(s: &Value) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    let mut pids = v2::PidsStat::new();
    pids.current = u(&s["pids"]["current"]);
    pids.limit = u(&s["pids"]["limit"]);
    m.pids = MessageField::some(pids);

    let mut cpu = v2::CPUStat::new();
    let cu = &s["cpu"]["usage"];
    let ct = &s["cpu"]["throttling"];
    cpu.usage_usec = u(&cu["total"]) / 1000;
    cpu.user_usec = u(&cu["user"]) / 1000;
    cpu.system_usec = u(&cu["kernel"]) / 1000;
    cpu.nr_periods = u(&ct["periods"]);
    cpu.nr_throttled = u(&ct["throttledPeriods"]);
    cpu.throttled_usec = u(&ct["throttledTime"]) / 1000;
    m.cpu = MessageField::some(cpu);

    let mem = &s["memory"];
    let mut ms = v2::MemoryStat::new();
    macro_rules! raw_fields {
        ($($f:ident),*) => { $( ms.$f = raw(s, stringify!($f)); )* };
    }
    raw_fields!(
        anon,
        file,
        kernel_stack,
        slab,
        sock,
        shmem,
        file_mapped,
        file_dirty,
        file_writeback,
        anon_thp,
        inactive_anon,
        active_anon,
        inactive_file,
        active_file,
        unevictable,
        slab_reclaimable,
        slab_unreclaimable,
        pgfault,
        pgmajfault,
        workingset_refault,
        workingset_activate,
        workingset_nodereclaim,
        pgrefill,
        pgscan,
        pgsteal,
        pgactivate,
        pgdeactivate,
        pglazyfree,
        pglazyfreed,
        thp_fault_alloc,
        thp_collapse_alloc
    );
    ms.usage = u(&mem["usage"]["usage"]);
    ms.usage_limit = u(&mem["usage"]["limit"]);
    ms.max_usage = u(&mem["usage"]["max"]);
    // runc reports v2 swap as memory+swap; containerd's v2 metrics want swap alone.
    ms.swap_usage = u(&mem["swap"]["usage"]).saturating_sub(ms.usage);
    ms.swap_limit = u(&mem["swap"]["limit"]).saturating_sub(ms.usage_limit);
    m.memory = MessageField::some(ms);

    let mut io = v2::IOStat::new();
    let mut by_dev: Vec<v2::IOEntry> = Vec::new();
    for (k, is_bytes) in [("ioServiceBytesRecursive", true), ("ioServicedRecursive", false)] {
        for e in s["blkio"][k].as_array().into_iter().flatten() {
            let (maj, min) = (u(&e["major"]), u(&e["minor"]));
            let idx = match by_dev.iter().position(|d| d.major == maj && d.minor == min) {
                Some(i) => i,
                None => {
                    let mut d = v2::IOEntry::new();
                    d.major = maj;
                    d.minor = min;
                    by_dev.push(d);
                    by_dev.len() - 1
                }
            };
            let d = &mut by_dev[idx];
            let v = u(&e["value"]);
            match (e["op"].as_str().unwrap_or_default(), is_bytes) {
                ("Read", true) => d.rbytes = v,
                ("Write", true) => d.wbytes = v,
                ("Read", false) => d.rios = v,
                ("Write", false) => d.wios = v,
                _ => {}
            }
        }
    }
    io.usage = by_dev;
    m.io = MessageField::some(io);

    if let Some(h) = s["hugetlb"].as_object() {
        for (size, v) in h {
            let mut e = v2::HugeTlbStat::new();
            e.pagesize = size.clone();
            e.current = u(&v["usage"]);
            e.max = u(&v["max"]);
            e.failcnt = u(&v["failcnt"]);
            m.hugetlb.push(e);
        }
    }
    m
}

/// Is this host's cgroup hierarchy unified (cgroup v2 mounted at /sys/fs/cgroup)?
pub fn unified_host() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// The StatsResponse payload for this host's cgroup version.
pub fn to_any(stats: &Value, unified: bool) -> Any {
    let mut a = Any::new();
    if unified {
        a.type_url = "io.containerd.cgroups.v2.Metrics".into();
        a.value = v2_metrics(stats).write_to_bytes().unwrap_or_default();
    } else {
        a.type_url = "io.containerd.cgroups.v1.Metrics".into();
        a.value = v1_metrics(stats).write_to_bytes().unwrap_or_default();
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "cpu": {"usage": {"total": 5_000_000, "kernel": 1_000_000, "user": 3_000_000, "percpu": [2_000_000, 3_000_000]},
                    "throttling": {"periods": 4, "throttledPeriods": 2, "throttledTime": 7000}},
            "memory": {"usage": {"usage": 4096, "limit": 8192, "max": 5000, "failcnt": 1},
                       "swap": {"usage": 6000, "limit": 16384}, "kernel": {}, "kernelTCP": {},
                       "raw": {"cache": 11, "rss": 22, "total_rss": 33, "anon": 44, "file": 55, "pgmajfault": 3}},
            "pids": {"current": 3, "limit": 10},
            "blkio": {"ioServiceBytesRecursive": [{"major": 8, "minor": 0, "op": "Read", "value": 100},
                                                  {"major": 8, "minor": 0, "op": "Write", "value": 200}],
                      "ioServicedRecursive": [{"major": 8, "minor": 0, "op": "Read", "value": 1}]},
            "hugetlb": {"2MB": {"usage": 0, "max": 0, "failcnt": 0}}
        })
    }

    #[test]
    fn v1_from_runc_stats() {
        let m = v1_metrics(&sample());
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.pids.limit, 10);
        assert_eq!(m.cpu.usage.total, 5_000_000);
        assert_eq!(m.cpu.usage.per_cpu, vec![2_000_000, 3_000_000]);
        assert_eq!(m.cpu.throttling.throttled_periods, 2);
        assert_eq!(m.memory.cache, 11);
        assert_eq!(m.memory.total_rss, 33);
        assert_eq!(m.memory.usage.limit, 8192);
        assert_eq!(m.memory.usage.failcnt, 1);
        assert_eq!(m.blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(m.hugetlb[0].pagesize, "2MB");
        let a = to_any(&sample(), false);
        assert_eq!(a.type_url, "io.containerd.cgroups.v1.Metrics");
        assert_eq!(v1::Metrics::parse_from_bytes(&a.value).unwrap(), m);
    }

    #[test]
    fn v2_from_runc_stats() {
        let m = v2_metrics(&sample());
        assert_eq!(m.cpu.usage_usec, 5000);
        assert_eq!(m.cpu.system_usec, 1000);
        assert_eq!(m.cpu.throttled_usec, 7);
        assert_eq!(m.memory.anon, 44);
        assert_eq!(m.memory.pgmajfault, 3);
        assert_eq!(m.memory.usage, 4096);
        assert_eq!(m.memory.swap_usage, 6000 - 4096);
        assert_eq!(m.io.usage.len(), 1);
        assert_eq!(
            (m.io.usage[0].rbytes, m.io.usage[0].wbytes, m.io.usage[0].rios),
            (100, 200, 1)
        );
        assert_eq!(to_any(&sample(), true).type_url, "io.containerd.cgroups.v2.Metrics");
    }
}
