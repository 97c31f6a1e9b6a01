//! cgroup v1 specifics.

use crate::error::{Context, Result};
use std::path::Path;

/// True for a mount option of a v1 cgroup mount that names a controller (`cpu`, `memory`,
/// `name=systemd`, ...), as opposed to a generic mount option.
pub fn is_controller_option(opt: &str) -> bool {
    if opt.starts_with("name=") {
        return true;
    }
    matches!(
        opt,
        "cpu"
            | "cpuacct"
            | "cpuset"
            | "memory"
            | "devices"
            | "freezer"
            | "blkio"
            | "pids"
            | "net_cls"
            | "net_prio"
            | "perf_event"
            | "hugetlb"
            | "rdma"
            | "misc"
    )
}

/// A new v1 cpuset cgroup starts with empty `cpuset.cpus`/`cpuset.mems`, and no process can
/// join it until they are set: copy them from the parent, as runc does.
pub fn init_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else { return Ok(()) };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let cur = crate::sys::read_text(dir.join(file)).unwrap_or_default();
        if !cur.trim().is_empty() {
            continue;
        }
        let val = crate::sys::read_text(parent.join(file)).ctx(|| format!("reading {}/{file}", parent.display()))?;
        crate::sys::write_file(dir.join(file), val.trim())?;
    }
    Ok(())
}
