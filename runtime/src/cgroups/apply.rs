//! Applying `linux.resources` (all but devices, see [`CgroupPaths::apply_devices`]): one
//! function per controller finds where the host has it (a v1 hierarchy, else the v2
//! directory, see [`CgroupPaths::host`]) and asks [`resources`] for the writes of that
//! version; then everything is written, in controller order. A limit for a controller the host
//! lacks is an error before anything is written.

use super::*;
use oci_spec::runtime::LinuxResources;
use resources as res;

/// The writes of one controller, in the directory they go to.
type Todo<'a> = (&'a CgroupDir, res::Writes);

/// What each controller function gets.
struct Ctx<'a> {
    cg: &'a CgroupPaths,
    r: &'a LinuxResources,
    /// `update` (not `create`): memory's checkBeforeUpdate applies.
    update: bool,
    warn: &'a mut Vec<String>,
}

/// One controller: its writes, if the resources set any of its fields.
type Controller = for<'a> fn(&mut Ctx<'a>) -> Result<Option<Todo<'a>>>;

/// The controllers, in the order their files are written.
const CONTROLLERS: [Controller; 10] = [
    memory, cpu, cpuset, pids, blkio, hugetlb, net_cls, net_prio, rdma, unified,
];

impl CgroupPaths {
    /// Applies `linux.resources` to the container's cgroup, at create time or for `update`.
    /// Returns warnings about fields the host cannot honour but runc ignores too.
    pub fn apply_resources(&self, r: &LinuxResources, update: bool) -> Result<Vec<String>> {
        let mut warn = Vec::new();
        let mut todo = Vec::new();
        let mut ctx = Ctx {
            cg: self,
            r,
            update,
            warn: &mut warn,
        };
        for controller in CONTROLLERS {
            todo.extend(controller(&mut ctx)?);
        }
        for (d, writes) in todo {
            for (file, value) in writes {
                std::fs::write(d.path.join(&file), &value)
                    .map_err(|e| Error::msg(format!("setting {file} to {value:?} in {}: {e}", d.path.display())))?;
            }
        }
        Ok(warn)
    }
}

fn missing(name: &str) -> Error {
    Error::msg(format!("the {name} controller is not available on this host"))
}

/// The directory of a controller: its v1 name, its v2 name if v2 has it.
fn host<'a>(c: &Ctx<'a>, v1: &str, v2: Option<&str>, name: &str) -> Result<&'a CgroupDir> {
    c.cg.host(v1, v2).ok_or_else(|| missing(name))
}

fn read_number<T: std::str::FromStr>(path: &Path) -> Option<T> {
    crate::sys::read_text(path).ok().and_then(|s| s.trim().parse().ok())
}

fn memory<'a>(c: &mut Ctx<'a>) -> Result<Option<Todo<'a>>> {
    let Some(m) = c.r.memory() else { return Ok(None) };
    let any = m.limit().is_some()
        || m.reservation().is_some()
        || m.swap().is_some()
        || m.kernel_tcp().is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer() == Some(true)
        || m.use_hierarchy() == Some(true);
    if !any {
        if m.kernel().is_some() {
            c.warn
                .push("memory.kernel ignored: kernel memory limits are gone from current kernels".into());
        }
        return Ok(None);
    }
    let d = host(c, "memory", Some("memory"), "memory")?;
    if c.update && m.check_before_update() == Some(true) {
        if let Some(limit) = m.limit().filter(|l| *l >= 0) {
            let f = if d.v2 {
                "memory.current"
            } else {
                "memory.usage_in_bytes"
            };
            let usage: i64 = read_number(&d.path.join(f)).unwrap_or(0);
            if limit < usage {
                return Err(Error::msg(format!(
                    "memory.limit {limit} is below the current usage {usage} (checkBeforeUpdate)"
                )));
            }
        }
    }
    let w = if d.v2 {
        res::memory_v2(m, c.warn)?
    } else {
        res::memory_v1(
            m,
            d.path.join("memory.memsw.limit_in_bytes").exists(),
            read_number(&d.path.join("memory.limit_in_bytes")).unwrap_or(u64::MAX),
            c.warn,
        )?
    };
    Ok(Some((d, w)))
}

fn cpu<'a>(c: &mut Ctx<'a>) -> Result<Option<Todo<'a>>> {
    let Some(cpu) = c.r.cpu() else { return Ok(None) };
    let v1 = res::cpu_v1(cpu);
    if v1.is_empty() {
        return Ok(None);
    }
    let d = host(c, "cpu", Some("cpu"), "cpu")?;
    Ok(Some((d, if d.v2 { res::cpu_v2(cpu)? } else { v1 })))
}

fn cpuset<'a>(c: &mut Ctx<'a>) -> Result<Option<Todo<'a>>> {
    let Some(cpu) = c.r.cpu() else { return Ok(None) };
    let w = res::cpuset(cpu);
    if w.is_empty() {
        return Ok(None);
    }
    Ok(Some((host(c, "cpuset", Some("cpuset"), "cpuset")?, w)))
}

fn pids<'a>(c: &mut Ctx<'a>) -> Result<Option<Todo<'a>>> {
    let Some(p) = c.r.pids() else { return Ok(None) };
    Ok(Some((host(c, "pids", Some("pids"), "pids")?, res::pids(p.limit()))))
}

fn blkio<'a>(c: &mut Ctx<'a>) -> Result<Option<Todo<'a>>> {
    let Some(b) = c.r.block_io() else { return Ok(None) };
    if res::blkio_v1(b, false).is_empty() {
        return Ok(None);
    }
    let d = host(c, "blkio", Some("io"), "blkio/io")?;
    let w = if d.v2 {
        res::io_v2(b, d.path.join("io.bfq.weight").exists())
    } else {
        res::blkio_v1(
            b,
            !d.path.join("blkio.weight").exists() && d.path.join("blkio.bfq.weight").exists(),
        )
    };
    Ok(Some((d, w)))
}

fn hugetlb<'a>(c: &mut Ctx<'a>) -> Result<Option<Todo<'a>>> {
    if c.r.hugepage_limits().as_ref().is_none_or(|h| h.is_empty()) {
        return Ok(None);
    }
    let d = host(c, "hugetlb", Some("hugetlb"), "hugetlb")?;
    Ok(Some((d, res::hugetlb(c.r, d.v2)?)))
}

/// net_cls and net_prio exist on v1 only (v2 classifies with eBPF instead).
fn net_cls<'a>(c: &mut Ctx<'a>) -> Result<Option<Todo<'a>>> {
    let Some(id) = c.r.network().as_ref().and_then(|n| n.class_id()) else {
        return Ok(None);
    };
    let d = host(c, "net_cls", None, "net_cls")?;
    Ok(Some((d, vec![("net_cls.classid".into(), id.to_string())])))
}

fn net_prio<'a>(c: &mut Ctx<'a>) -> Result<Option<Todo<'a>>> {
    let prios: res::Writes =
        c.r.network()
            .iter()
            .flat_map(|n| n.priorities().iter().flatten())
            .map(|p| ("net_prio.ifpriomap".into(), format!("{} {}", p.name(), p.priority())))
            .collect();
    if prios.is_empty() {
        return Ok(None);
    }
    Ok(Some((host(c, "net_prio", None, "net_prio")?, prios)))
}

fn rdma<'a>(c: &mut Ctx<'a>) -> Result<Option<Todo<'a>>> {
    let w = res::rdma(c.r);
    if w.is_empty() {
        return Ok(None);
    }
    Ok(Some((host(c, "rdma", Some("rdma"), "rdma")?, w)))
}

/// `unified`: files of the v2 directory, by name (config-linux.md "Unified").
fn unified<'a>(c: &mut Ctx<'a>) -> Result<Option<Todo<'a>>> {
    let Some(u) = c.r.unified().as_ref().filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let d =
        c.cg.dirs
            .iter()
            .find(|d| d.v2)
            .ok_or_else(|| Error::msg("linux.resources.unified needs cgroup v2"))?;
    let mut keys: Vec<_> = u.iter().collect();
    keys.sort();
    let mut w = res::Writes::new();
    for (k, v) in keys {
        res::unified_key(k)?;
        if !d.path.join(k).exists() {
            return Err(Error::msg(format!(
                "unified resource {k:?}: no such file in the container's cgroup (controller not enabled?)"
            )));
        }
        w.push((k.clone(), v.clone()));
    }
    Ok(Some((d, w)))
}
