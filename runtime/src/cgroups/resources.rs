//! `linux.resources` (config-linux.md "Control groups"): what to write in which cgroup file,
//! on v1 and on v2, with runc's conversions between the two (cpu shares to cpu.weight, blkio
//! weight to io.weight, OCI swap (memory+swap) to memory.swap.max).
//!
//! Each controller goes where the host has it: a v1 hierarchy if one is mounted for it, else
//! the cgroup v2 directory if the controller is enabled there (hybrid hosts have both). A limit
//! for a controller the host lacks is an error, never silently dropped.

use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

/// File writes for one controller: (file, value), in order.
pub type Writes = Vec<(String, String)>;

fn num(v: i64) -> String {
    v.to_string()
}

/// v2 takes "max" for unlimited.
fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// runc's conversion of cpu shares (2..262144) to cpu.weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// runc's conversion of a blkio weight (10..1000) to io.weight (1..10000).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (u64::from(w.clamp(10, 1000)) - 10) * 9999 / 990
}

/// Memory, cgroup v1. `cur_limit` is the current memory.limit_in_bytes (the write order of
/// limit and memsw depends on it). Zero means "not set", as in runc. `warn` receives fields
/// the kernel no longer has.
pub fn memory_v1(m: &LinuxMemory, has_memsw: bool, cur_limit: u64, warn: &mut Vec<String>) -> Result<Writes> {
    let mut w = Writes::new();
    let set = |v: Option<i64>| v.filter(|x| *x != 0);
    if let Some(r) = set(m.reservation()) {
        w.push(("memory.soft_limit_in_bytes".into(), num(r)));
    }
    match (set(m.limit()), set(m.swap())) {
        (Some(l), Some(s)) if has_memsw => {
            if s != -1 && l != -1 && s < l {
                return Err(Error::msg(format!(
                    "memory.swap ({s}) must not be below memory.limit ({l})"
                )));
            }
            // memsw must stay >= limit at every step (runc's order): swap first when it grows
            // past the current limit, else the limit first.
            let limit = ("memory.limit_in_bytes".to_string(), num(l));
            let swap = ("memory.memsw.limit_in_bytes".to_string(), num(s));
            if s == -1 || i128::from(cur_limit) < i128::from(s) {
                w.push(swap);
                w.push(limit);
            } else {
                w.push(limit);
                w.push(swap);
            }
        }
        (Some(l), _) => w.push(("memory.limit_in_bytes".into(), num(l))),
        (None, Some(s)) if has_memsw => w.push(("memory.memsw.limit_in_bytes".into(), num(s))),
        _ => {}
    }
    if m.swap().is_some() && !has_memsw {
        warn.push("memory.swap ignored: this kernel has no swap accounting (memory.memsw.*)".into());
    }
    if m.kernel().is_some() {
        warn.push("memory.kernel ignored: kernel memory limits are gone from current kernels".into());
    }
    if let Some(k) = m.kernel_tcp() {
        w.push(("memory.kmem.tcp.limit_in_bytes".into(), num(k)));
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(Error::msg(format!("memory.swappiness {s} is above 100")));
        }
        w.push(("memory.swappiness".into(), s.to_string()));
    }
    if m.disable_oom_killer() == Some(true) {
        w.push(("memory.oom_control".into(), "1".into()));
    }
    if m.use_hierarchy() == Some(true) {
        w.push(("memory.use_hierarchy".into(), "1".into()));
    }
    Ok(w)
}

/// Memory, cgroup v2.
pub fn memory_v2(m: &LinuxMemory, warn: &mut Vec<String>) -> Result<Writes> {
    let mut w = Writes::new();
    let set = |v: Option<i64>| v.filter(|x| *x != 0);
    if let Some(r) = set(m.reservation()) {
        w.push(("memory.low".into(), max_or(r)));
    }
    if let Some(l) = set(m.limit()) {
        w.push(("memory.max".into(), max_or(l)));
    }
    if let Some(s) = set(m.swap()) {
        // OCI swap is memory+swap; v2's memory.swap.max is swap alone.
        let v = match (s, set(m.limit())) {
            (-1, _) => "max".to_string(),
            (s, Some(l)) if l >= 0 => {
                if s < l {
                    return Err(Error::msg(format!(
                        "memory.swap ({s}) must not be below memory.limit ({l})"
                    )));
                }
                (s - l).to_string()
            }
            (s, Some(_)) => {
                return Err(Error::msg(format!(
                    "memory.swap {s} with an unlimited memory.limit cannot be converted to cgroup v2"
                )))
            }
            (s, None) => {
                return Err(Error::msg(format!(
                    "memory.swap {s} without memory.limit cannot be converted to cgroup v2"
                )))
            }
        };
        w.push(("memory.swap.max".into(), v));
    }
    for (set, name) in [
        (m.swappiness().is_some(), "memory.swappiness"),
        (m.kernel().is_some(), "memory.kernel"),
        (m.kernel_tcp().is_some(), "memory.kernelTCP"),
        (m.disable_oom_killer() == Some(true), "memory.disableOOMKiller"),
    ] {
        if set {
            warn.push(format!("{name} ignored: cgroup v2 has no such setting"));
        }
    }
    Ok(w)
}

/// CPU bandwidth and shares, cgroup v1 (cpu controller).
pub fn cpu_v1(c: &LinuxCpu) -> Writes {
    let mut w = Writes::new();
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        w.push(("cpu.shares".into(), s.to_string()));
    }
    if let Some(p) = c.period().filter(|p| *p != 0) {
        w.push(("cpu.cfs_period_us".into(), p.to_string()));
    }
    if let Some(q) = c.quota().filter(|q| *q != 0) {
        w.push(("cpu.cfs_quota_us".into(), q.to_string()));
    }
    if let Some(b) = c.burst() {
        w.push(("cpu.cfs_burst_us".into(), b.to_string()));
    }
    // The period first: the runtime must fit in it.
    if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
        w.push(("cpu.rt_period_us".into(), p.to_string()));
    }
    if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
        w.push(("cpu.rt_runtime_us".into(), r.to_string()));
    }
    if let Some(i) = c.idle() {
        w.push(("cpu.idle".into(), i.to_string()));
    }
    w
}

/// CPU, cgroup v2.
pub fn cpu_v2(c: &LinuxCpu) -> Result<Writes> {
    let mut w = Writes::new();
    if c.realtime_runtime().is_some_and(|r| r != 0) || c.realtime_period().is_some_and(|p| p != 0) {
        return Err(Error::msg(
            "cpu.realtimeRuntime/realtimePeriod are not supported on cgroup v2",
        ));
    }
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        w.push(("cpu.weight".into(), shares_to_weight(s).to_string()));
    }
    let quota = c.quota().filter(|q| *q != 0);
    let period = c.period().filter(|p| *p != 0);
    if quota.is_some() || period.is_some() {
        let q = match quota {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".into(),
        };
        // Without a period, only the quota is written and the cgroup keeps its period (runc).
        let v = match period {
            Some(p) => format!("{q} {p}"),
            None => q,
        };
        w.push(("cpu.max".into(), v));
    }
    if let Some(b) = c.burst() {
        w.push(("cpu.max.burst".into(), b.to_string()));
    }
    if let Some(i) = c.idle() {
        w.push(("cpu.idle".into(), i.to_string()));
    }
    Ok(w)
}

/// cpuset (same files on v1 and v2).
pub fn cpuset(c: &LinuxCpu) -> Writes {
    let mut w = Writes::new();
    if let Some(v) = c.cpus().as_ref().filter(|v| !v.is_empty()) {
        w.push(("cpuset.cpus".into(), v.clone()));
    }
    if let Some(v) = c.mems().as_ref().filter(|v| !v.is_empty()) {
        w.push(("cpuset.mems".into(), v.clone()));
    }
    w
}

/// Block I/O, cgroup v1. `bfq`: the kernel has blkio.bfq.weight instead of blkio.weight.
pub fn blkio_v1(b: &LinuxBlockIo, bfq: bool) -> Writes {
    let mut w = Writes::new();
    let weight_file = if bfq { "blkio.bfq.weight" } else { "blkio.weight" };
    if let Some(x) = b.weight().filter(|x| *x != 0) {
        w.push((weight_file.into(), x.to_string()));
    }
    if let Some(x) = b.leaf_weight().filter(|x| *x != 0) {
        w.push(("blkio.leaf_weight".into(), x.to_string()));
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(x) = d.weight() {
            let file = if bfq {
                "blkio.bfq.weight_device"
            } else {
                "blkio.weight_device"
            };
            w.push((file.into(), format!("{}:{} {x}", d.major(), d.minor())));
        }
        if let Some(x) = d.leaf_weight() {
            w.push((
                "blkio.leaf_weight_device".into(),
                format!("{}:{} {x}", d.major(), d.minor()),
            ));
        }
    }
    for (list, file) in [
        (b.throttle_read_bps_device(), "blkio.throttle.read_bps_device"),
        (b.throttle_write_bps_device(), "blkio.throttle.write_bps_device"),
        (b.throttle_read_iops_device(), "blkio.throttle.read_iops_device"),
        (b.throttle_write_iops_device(), "blkio.throttle.write_iops_device"),
    ] {
        for d in list.iter().flatten() {
            w.push((file.into(), format!("{}:{} {}", d.major(), d.minor(), d.rate())));
        }
    }
    w
}

/// Block I/O, cgroup v2 (io controller). `bfq`: the kernel has io.bfq.weight.
pub fn io_v2(b: &LinuxBlockIo, bfq: bool) -> Writes {
    let mut w = Writes::new();
    if let Some(x) = b.weight().filter(|x| *x != 0) {
        if bfq {
            w.push(("io.bfq.weight".into(), x.to_string()));
        } else {
            w.push(("io.weight".into(), format!("default {}", blkio_to_io_weight(x))));
        }
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(x) = d.weight() {
            let (file, v) = if bfq {
                ("io.bfq.weight", u64::from(x))
            } else {
                ("io.weight", blkio_to_io_weight(x))
            };
            w.push((file.into(), format!("{}:{} {v}", d.major(), d.minor())));
        }
    }
    for (list, key) in [
        (b.throttle_read_bps_device(), "rbps"),
        (b.throttle_write_bps_device(), "wbps"),
        (b.throttle_read_iops_device(), "riops"),
        (b.throttle_write_iops_device(), "wiops"),
    ] {
        for d in list.iter().flatten() {
            let rate = if d.rate() == 0 {
                "max".to_string()
            } else {
                d.rate().to_string()
            };
            w.push(("io.max".into(), format!("{}:{} {key}={rate}", d.major(), d.minor())));
        }
    }
    w
}

/// The pids limit (same file on v1 and v2).
pub fn pids(limit: i64) -> Writes {
    vec![(
        "pids.max".into(),
        if limit > 0 { limit.to_string() } else { "max".into() },
    )]
}

/// Huge page limits. `v2`: hugetlb.<size>.max, else hugetlb.<size>.limit_in_bytes.
pub fn hugetlb(r: &LinuxResources, v2: bool) -> Result<Writes> {
    let mut w = Writes::new();
    for h in r.hugepage_limits().iter().flatten() {
        let size = h.page_size();
        if size.is_empty() || !size.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::msg(format!("invalid hugepage size {size:?}")));
        }
        let file = if v2 {
            format!("hugetlb.{size}.max")
        } else {
            format!("hugetlb.{size}.limit_in_bytes")
        };
        let value = if v2 { max_or(h.limit()) } else { num(h.limit()) };
        w.push((file, value));
    }
    Ok(w)
}

/// RDMA limits (same file on v1 and v2).
pub fn rdma(r: &LinuxResources) -> Writes {
    let mut w = Writes::new();
    let mut devs: Vec<_> = r.rdma().iter().flatten().collect();
    devs.sort_by(|a, b| a.0.cmp(b.0));
    for (dev, l) in devs {
        let mut parts = vec![dev.clone()];
        if let Some(h) = l.hca_handles() {
            parts.push(format!("hca_handle={h}"));
        }
        if let Some(o) = l.hca_objects() {
            parts.push(format!("hca_object={o}"));
        }
        if parts.len() > 1 {
            w.push(("rdma.max".into(), parts.join(" ")));
        }
    }
    w
}

/// Checks a `unified` key: a plain file name of the cgroup directory.
pub fn unified_key(k: &str) -> Result<()> {
    if k.is_empty() || k.contains('/') || k.starts_with('.') || !k.contains('.') {
        return Err(Error::msg(format!("invalid unified resource key {k:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }

    #[test]
    fn memory_swap_is_converted_for_v2() {
        let mut m = LinuxMemory::default();
        m.set_limit(Some(100));
        m.set_swap(Some(300));
        let mut warn = Vec::new();
        let w = memory_v2(&m, &mut warn).unwrap();
        assert_eq!(
            w,
            vec![
                ("memory.max".to_string(), "100".to_string()),
                ("memory.swap.max".to_string(), "200".to_string())
            ]
        );
        m.set_swap(Some(50));
        assert!(memory_v2(&m, &mut warn).is_err());
        m.set_swap(Some(-1));
        m.set_limit(Some(-1));
        let w = memory_v2(&m, &mut warn).unwrap();
        assert_eq!(w[0].1, "max");
        assert_eq!(w[1].1, "max");
    }

    #[test]
    fn cpu_max_and_weight() {
        let mut c = LinuxCpu::default();
        c.set_quota(Some(50_000));
        c.set_shares(Some(1024));
        let w = cpu_v2(&c).unwrap();
        assert!(w.contains(&("cpu.max".into(), "50000".into())));
        assert!(w.contains(&("cpu.weight".into(), "39".into())));
        c.set_realtime_runtime(Some(1000));
        assert!(cpu_v2(&c).is_err());
    }
}
