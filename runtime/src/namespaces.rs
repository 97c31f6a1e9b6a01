//! `linux.namespaces` (config-linux.md "Namespaces") and the user namespace id mappings.
//!
//! A [`Plan`] splits the configured namespaces into the ones to create and the ones to join
//! by path, and decides how the init is forked: in the common case one `clone` creates every
//! new namespace at once (the fast path); when a user namespace must be joined, or a new user
//! namespace must own namespaces joined by path, an intermediate process joins and unshares
//! in the right order first and then forks the init (see [`crate::process`]).

use crate::error::{Context, Error, Result};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespace, LinuxNamespaceType};
use std::os::fd::AsFd;
use std::path::PathBuf;

/// CLONE_NEWTIME (not in nix's CloneFlags on every version).
pub const CLONE_NEWTIME: libc::c_int = 0x80;

/// How the configured namespaces are entered.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Namespaces to create.
    pub new: Vec<LinuxNamespaceType>,
    /// Namespaces to join, by path.
    pub join: Vec<(LinuxNamespaceType, PathBuf)>,
}

/// The clone flag of a namespace type.
pub fn flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => CLONE_NEWTIME,
    }
}

/// The name of a namespace under /proc/PID/ns.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

impl Plan {
    /// Builds the plan from the spec's namespace list, rejecting duplicates and namespaces the
    /// kernel lacks.
    pub fn from_spec(list: &[LinuxNamespace]) -> Result<Plan> {
        let mut plan = Plan::default();
        let mut seen = Vec::new();
        for ns in list {
            let t = ns.typ();
            if seen.contains(&t) {
                return Err(Error::msg(format!("namespace {:?} is listed twice", proc_name(t))));
            }
            seen.push(t);
            if !std::path::Path::new("/proc/self/ns").join(proc_name(t)).exists() {
                return Err(Error::msg(format!(
                    "namespace {:?} is not supported by this kernel",
                    proc_name(t)
                )));
            }
            match ns.path() {
                Some(p) if !p.as_os_str().is_empty() => {
                    if !p.exists() {
                        return Err(Error::msg(format!(
                            "{} namespace path {} does not exist",
                            proc_name(t),
                            p.display()
                        )));
                    }
                    plan.join.push((t, p.clone()))
                }
                _ => plan.new.push(t),
            }
        }
        Ok(plan)
    }

    /// True if namespace `t` is created.
    pub fn creates(&self, t: LinuxNamespaceType) -> bool {
        self.new.contains(&t)
    }

    /// The path of a namespace to join, if `t` is joined.
    pub fn joins(&self, t: LinuxNamespaceType) -> Option<&PathBuf> {
        self.join.iter().find(|(x, _)| *x == t).map(|(_, p)| p)
    }

    /// True if the container is in a pid namespace of its own, created here.
    pub fn own_pid_ns(&self) -> bool {
        self.creates(LinuxNamespaceType::Pid)
    }

    /// True when one clone can do everything: no user namespace to join, and no namespace to
    /// join that a new user namespace would have to own.
    pub fn single_clone(&self) -> bool {
        self.joins(LinuxNamespaceType::User).is_none()
            && !(self.creates(LinuxNamespaceType::User) && self.join.iter().any(|(t, _)| *t != LinuxNamespaceType::Pid))
    }

    /// Flags for the fast-path clone. The cgroup namespace is left out (it is unshared after
    /// the init was moved into its cgroup, so that this cgroup is its root) and so is time
    /// (legacy clone cannot take CLONE_NEWTIME; the parent unshares it for its children).
    pub fn clone_flags(&self) -> libc::c_ulong {
        self.new
            .iter()
            .filter(|t| !matches!(t, LinuxNamespaceType::Cgroup | LinuxNamespaceType::Time))
            // The bits of each int flag.
            .fold(0, |acc, t| {
                acc | libc::c_ulong::from(u32::from_ne_bytes(flag(*t).to_ne_bytes()))
            })
    }
}

/// Writes `linux.timeOffsets` for the time namespace this process just unshared (its
/// children's): must happen before any process enters it.
pub fn write_time_offsets(
    offsets: &std::collections::HashMap<String, oci_spec::runtime::LinuxTimeOffset>,
) -> Result<()> {
    let mut text = String::new();
    for (clock, o) in offsets {
        if clock != "monotonic" && clock != "boottime" {
            return Err(Error::msg(format!(
                "timeOffsets: unknown clock {clock:?} (monotonic or boottime)"
            )));
        }
        text.push_str(&format!(
            "{clock} {} {}\n",
            o.secs().unwrap_or(0),
            o.nanosecs().unwrap_or(0)
        ));
    }
    if text.is_empty() {
        return Ok(());
    }
    crate::sys::write_file("/proc/self/timens_offsets", text).ctx(|| "writing linux.timeOffsets".into())
}

/// Joins the namespace at `path` with `setns(2)`.
pub fn join(t: LinuxNamespaceType, path: &std::path::Path) -> Result<()> {
    let f = std::fs::File::open(path).ctx(|| format!("opening {} namespace {}", proc_name(t), path.display()))?;
    nix::sched::setns(f.as_fd(), CloneFlags::from_bits_retain(flag(t)))
        .ctx(|| format!("joining {} namespace {}", proc_name(t), path.display()))
}

/// Creates namespaces with `unshare(2)`.
pub fn unshare(flags: libc::c_int) -> Result<()> {
    if flags == 0 {
        return Ok(());
    }
    // SAFETY: unshare with integer flags; the caller is single-threaded.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("unshare({flags:#x})"));
    }
    Ok(())
}

/// The text written to /proc/PID/{uid,gid}_map.
pub fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Writes the uid and gid mappings of process `pid`'s user namespace (config-linux.md "User
/// namespace mappings"). Written by the parent, which is privileged in the parent namespace.
pub fn write_id_maps(pid: i32, uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<()> {
    if uid.is_empty() || gid.is_empty() {
        return Err(Error::msg(
            "a new user namespace needs linux.uidMappings and linux.gidMappings",
        ));
    }
    crate::sys::write_file(format!("/proc/{pid}/uid_map"), map_text(uid)).ctx(|| "writing uid_map".into())?;
    crate::sys::write_file(format!("/proc/{pid}/gid_map"), map_text(gid)).ctx(|| "writing gid_map".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(t: LinuxNamespaceType, p: Option<&str>) -> LinuxNamespace {
        let mut n = LinuxNamespace::default();
        n.set_typ(t);
        n.set_path(p.map(PathBuf::from));
        n
    }

    #[test]
    fn plans_fast_and_slow_paths() {
        let p = Plan::from_spec(&[ns(LinuxNamespaceType::Pid, None), ns(LinuxNamespaceType::Mount, None)]).unwrap();
        assert!(p.single_clone());
        assert_eq!(
            p.clone_flags(),
            (libc::CLONE_NEWPID | libc::CLONE_NEWNS) as libc::c_ulong
        );
        let p = Plan::from_spec(&[
            ns(LinuxNamespaceType::User, None),
            ns(LinuxNamespaceType::Network, Some("/proc/self/ns/net")),
        ])
        .unwrap();
        assert!(!p.single_clone());
        let p = Plan::from_spec(&[ns(LinuxNamespaceType::Pid, Some("/proc/self/ns/pid"))]).unwrap();
        assert!(p.single_clone());
    }

    #[test]
    fn rejects_duplicates_and_missing_paths() {
        assert!(Plan::from_spec(&[ns(LinuxNamespaceType::Pid, None), ns(LinuxNamespaceType::Pid, None)]).is_err());
        assert!(Plan::from_spec(&[ns(LinuxNamespaceType::Network, Some("/nonexistent/ns"))]).is_err());
    }
}
