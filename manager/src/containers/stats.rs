//! `stats`: one sample of a container's resource use, decoded from the cgroup metrics its
//! shim reports (Task.Stats: `io.containerd.cgroups.v1.Metrics` or `.v2.Metrics`), with the
//! host's CPU time beside it so that clients compute docker's CPU % from two samples.

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;

use crate::error::{Error, Result};

/// One sample (docker's `stats` fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// Nanoseconds of CPU the container used.
    pub cpu_total: u64,
    /// Nanoseconds of CPU the host used (all CPUs), read with the sample.
    pub system_cpu: u64,
    pub online_cpus: u32,
    /// docker's "usage": without the inactive file cache.
    pub mem_usage: u64,
    pub mem_limit: u64,
    pub pids: u64,
    pub blk_read: u64,
    pub blk_write: u64,
    /// Bytes received and sent on the container's interfaces (loopback aside).
    pub net_rx: u64,
    pub net_tx: u64,
    /// Unix nanoseconds.
    pub read: i64,
}

/// The bytes received and sent on the interfaces of a network namespace, from its
/// /proc/net/dev (docker's NET I/O sums every interface but loopback).
pub fn net_io(dev: &str) -> (u64, u64) {
    let mut rx = 0u64;
    let mut tx = 0u64;
    for line in dev.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if f.len() >= 9 {
            rx += f[0];
            tx += f[8];
        }
    }
    (rx, tx)
}

/// Decodes a shim's metrics; `host_mem` caps an unlimited memory limit (as docker shows).
pub fn decode(any: &Any, host_mem: u64) -> Result<Sample> {
    let mut s = Sample::default();
    if any.type_url.ends_with("cgroups.v1.Metrics") {
        let m =
            v1::Metrics::parse_from_bytes(&any.value).map_err(|e| Error::Remote(format!("cgroup v1 metrics: {e}")))?;
        s.cpu_total = m.cpu.usage.total;
        let usage = m.memory.usage.usage;
        s.mem_usage = usage.saturating_sub(m.memory.total_inactive_file);
        s.mem_limit = m.memory.usage.limit;
        s.pids = m.pids.current;
        for e in &m.blkio.io_service_bytes_recursive {
            match e.op.to_ascii_lowercase().as_str() {
                "read" => s.blk_read += e.value,
                "write" => s.blk_write += e.value,
                _ => {}
            }
        }
    } else if any.type_url.ends_with("cgroups.v2.Metrics") {
        let m =
            v2::Metrics::parse_from_bytes(&any.value).map_err(|e| Error::Remote(format!("cgroup v2 metrics: {e}")))?;
        s.cpu_total = m.cpu.usage_usec * 1000;
        s.mem_usage = m.memory.usage.saturating_sub(m.memory.inactive_file);
        s.mem_limit = m.memory.usage_limit;
        s.pids = m.pids.current;
        for e in &m.io.usage {
            s.blk_read += e.rbytes;
            s.blk_write += e.wbytes;
        }
    } else {
        return Err(Error::Unsupported(format!("metrics of type {}", any.type_url)));
    }
    if s.mem_limit == 0 || s.mem_limit > host_mem {
        s.mem_limit = host_mem;
    }
    Ok(s)
}

/// The host's CPU time in nanoseconds (the `cpu` line of /proc/stat, as docker reads it).
pub fn system_cpu() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    stat.lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(7)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum::<u64>()
        })
        .unwrap_or(0)
        * (1_000_000_000 / hz)
}

/// Online CPUs and total memory of the host.
pub fn host() -> (u32, u64) {
    // SAFETY: sysconf only reads system constants.
    let (cpus, pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_NPROCESSORS_ONLN),
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (cpus.max(1) as u32, (pages.max(0) as u64) * (page.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_io_sums_interfaces_but_loopback() {
        let dev = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    1500      10    0    0    0     0          0         0      700       5    0    0    0     0       0          0
  eth1:      20       1    0    0    0     0          0         0       30       1    0    0    0     0       0          0
";
        assert_eq!(net_io(dev), (1520, 730));
    }

    #[test]
    fn v1_and_v2_metrics_decode_as_docker_counts() {
        let mut m = v1::Metrics::new();
        m.cpu.mut_or_insert_default().usage.mut_or_insert_default().total = 5_000;
        let mem = m.memory.mut_or_insert_default();
        mem.total_inactive_file = 100;
        let u = mem.usage.mut_or_insert_default();
        u.usage = 1100;
        u.limit = u64::MAX;
        m.pids.mut_or_insert_default().current = 3;
        let mut e = v1::BlkIOEntry::new();
        e.op = "Read".into();
        e.value = 7;
        m.blkio.mut_or_insert_default().io_service_bytes_recursive.push(e);
        let mut a = Any::new();
        a.type_url = "io.containerd.cgroups.v1.Metrics".into();
        a.value = m.write_to_bytes().unwrap();
        let s = decode(&a, 1 << 30).unwrap();
        assert_eq!(
            (s.cpu_total, s.mem_usage, s.mem_limit, s.pids, s.blk_read),
            (5000, 1000, 1 << 30, 3, 7)
        );

        let mut m = v2::Metrics::new();
        m.cpu.mut_or_insert_default().usage_usec = 2;
        let mem = m.memory.mut_or_insert_default();
        mem.usage = 500;
        mem.inactive_file = 200;
        mem.usage_limit = 4096;
        a.type_url = "io.containerd.cgroups.v2.Metrics".into();
        a.value = m.write_to_bytes().unwrap();
        let s = decode(&a, 1 << 30).unwrap();
        assert_eq!((s.cpu_total, s.mem_usage, s.mem_limit), (2000, 300, 4096));
        a.type_url = "x".into();
        assert!(decode(&a, 1).is_err());
        assert!(system_cpu() > 0);
    }
}
