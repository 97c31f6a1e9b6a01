//! A spec is checked whole before anything is forked (runtime-spec config.md, config-linux.md;
//! the rules are runc's libcontainer/configs/validate and specconv, in youki's and netavark's
//! validate-before-set-up manner). A bad config.json then costs no fork, no cgroup, no mount
//! and no clean-up, and its error names the field.
//!
//! What is parsed on the way (mount options, propagation, device nodes, the namespace plan) is
//! kept in a [`Checked`] plan that the init consumes: nothing is parsed again after the fork.
//!
//! Every rule here is a pure function of the spec (plus, for namespace paths and sysctls, a
//! look at /proc): each has a unit test that needs no root.

use crate::error::{Error, Result};
use crate::namespaces::Plan;
use crate::rootfs::devices::{self, Node};
use crate::rootfs::mounts::{self, Options};
use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxNamespaceType as Ns, Mount, Process, Spec};
use std::path::{Path, PathBuf};

/// A spec that passed every check, with what the init needs already parsed.
#[derive(Debug, Clone)]
pub struct Checked {
    /// `linux.namespaces`: which to create, which to join.
    pub namespaces: Plan,
    /// `mounts`, in order, with their options parsed.
    pub mounts: Vec<PlannedMount>,
    /// `linux.devices`, as nodes to create.
    pub devices: Vec<Node>,
    /// `linux.rootfsPropagation` (only with a mount namespace of the container's own).
    pub rootfs_propagation: Option<MsFlags>,
    /// `linux.resources.devices` followed by the default rules, None without any rule (no
    /// device cgroup restriction, as runc).
    pub device_rules: Option<Vec<crate::cgroups::devices::Rule>>,
}

impl Checked {
    /// True when `/dev` is a bind mount: the container brings its own device nodes.
    pub fn dev_bound(&self) -> bool {
        self.mounts
            .iter()
            .any(|m| m.bind && m.destination() == Path::new("/dev"))
    }
}

/// One `mounts` entry, checked.
#[derive(Debug, Clone)]
pub struct PlannedMount {
    /// The entry as config.json has it (destination, type, source).
    pub mount: Mount,
    /// Its options, split as mount(2) wants them.
    pub options: Options,
    /// A bind mount (`bind`/`rbind` among the options, or type `bind`).
    pub bind: bool,
    /// A read-only tmpfs (or `/dev`): mounted read-write, filled (device nodes, mounts nested
    /// in it, tmpcopyup), and made read-only once everything under it is in place
    /// ([`crate::rootfs`]). Mounting it read-only at once would make every nested mount point
    /// impossible to create.
    pub read_only_later: bool,
}

impl PlannedMount {
    /// The absolute path inside the container.
    pub fn destination(&self) -> &Path {
        self.mount.destination()
    }

    /// The type, `bind` for a bind mount without one.
    pub fn typ(&self) -> &str {
        match self.mount.typ().as_deref() {
            Some(t) if !t.is_empty() => t,
            _ => "bind",
        }
    }
}

/// Checks a container's spec (`create`, `run`) and returns the plan the init consumes.
pub fn spec(spec: &Spec) -> Result<Checked> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::spec("config.json has no process"))?;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::spec("config.json has no linux section"))?;
    self::process(process)?;
    if process.cwd().as_os_str().is_empty() {
        return Err(Error::spec("process.cwd must not be empty"));
    }
    unsupported_fields(spec)?;
    let namespaces = Plan::from_spec(linux.namespaces().as_deref().unwrap_or(&[])).map_err(to_spec)?;
    let has = |t: Ns| namespaces.creates(t) || namespaces.joins(t).is_some();
    for k in linux.sysctl().iter().flat_map(|m| m.keys()) {
        crate::sysctl::validate(k, &namespaces).map_err(to_spec)?;
    }
    for (field, value) in [("hostname", spec.hostname()), ("domainname", spec.domainname())] {
        if value.as_deref().is_some_and(|v| !v.is_empty()) && !has(Ns::Uts) {
            return Err(Error::spec(format!(
                "setting the {field} needs a private UTS namespace"
            )));
        }
    }
    if let Some(offsets) = linux.time_offsets().as_ref().filter(|m| !m.is_empty()) {
        if !namespaces.creates(Ns::Time) {
            return Err(Error::spec("linux.timeOffsets needs a new time namespace"));
        }
        if let Some(clock) = offsets.keys().find(|c| !matches!(c.as_str(), "monotonic" | "boottime")) {
            return Err(Error::spec(format!(
                "linux.timeOffsets: unknown clock {clock:?} (monotonic or boottime)"
            )));
        }
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) && !namespaces.creates(Ns::Network) {
        return Err(Error::spec("linux.netDevices needs a new network namespace"));
    }
    if namespaces.creates(Ns::User) {
        let empty = |m: &Option<Vec<_>>| m.as_ref().is_none_or(|v| v.is_empty());
        if empty(linux.uid_mappings()) || empty(linux.gid_mappings()) {
            return Err(Error::spec(
                "a new user namespace needs linux.uidMappings and linux.gidMappings",
            ));
        }
    }
    let own_mount_ns = namespaces.creates(Ns::Mount);
    let rootfs_propagation = match linux.rootfs_propagation().as_deref().filter(|p| !p.is_empty()) {
        None => None,
        Some(_) if !own_mount_ns => {
            // It would change the propagation of a mount namespace other processes use.
            return Err(Error::spec("linux.rootfsPropagation needs a new mount namespace"));
        }
        Some(p) => Some(crate::rootfs::propagation_flag(p).map_err(to_spec)?),
    };
    let mounts = spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| mount(m, own_mount_ns))
        .collect::<Result<Vec<_>>>()?;
    let devices = linux
        .devices()
        .iter()
        .flatten()
        .map(|d| devices::from_spec(d).map_err(to_spec))
        .collect::<Result<Vec<_>>>()?;
    let device_rules = crate::cgroups::devices::rules(spec).map_err(to_spec)?;
    Ok(Checked {
        namespaces,
        mounts,
        devices,
        rootfs_propagation,
        device_rules,
    })
}

/// Checks one `mounts` entry (config.md "Mounts").
///
/// In a mount namespace the container shares, a bind whose options name no propagation is
/// made `rprivate`: a bind of a shared host mount would join the host's peer group, so mounts
/// under it would appear on the host and the final detach would unmount the host's copies.
pub fn mount(m: &Mount, own_mount_ns: bool) -> Result<PlannedMount> {
    let dest = m.destination();
    let what = || format!("mount {}", dest.display());
    if !dest.is_absolute() {
        return Err(Error::spec(format!("{}: the destination is not absolute", what())));
    }
    let mut options = mounts::parse_options(m.options().as_deref().unwrap_or(&[]))
        .map_err(|e| Error::spec(format!("{}: {e}", what())))?;
    let typ = m.typ().as_deref().unwrap_or("");
    let bind = options.flags.contains(MsFlags::MS_BIND) || typ == "bind";
    if bind && m.source().as_ref().is_none_or(|s| s.as_os_str().is_empty()) {
        return Err(Error::spec(format!("{}: a bind mount needs a source", what())));
    }
    if !bind && typ.is_empty() {
        return Err(Error::spec(format!("{}: no type (and not a bind mount)", what())));
    }
    if options.tmpcopyup && typ != "tmpfs" {
        return Err(Error::spec(format!("{}: tmpcopyup is only for tmpfs", what())));
    }
    if bind && !own_mount_ns && options.propagation.is_empty() {
        options.propagation.push(MsFlags::MS_PRIVATE | MsFlags::MS_REC);
    }
    let cgroup = matches!(typ, "cgroup" | "cgroup2");
    let read_only_later =
        !bind && !cgroup && options.flags.contains(MsFlags::MS_RDONLY) && (typ == "tmpfs" || dest == Path::new("/dev"));
    Ok(PlannedMount {
        mount: m.clone(),
        options,
        bind,
        read_only_later,
    })
}

/// Checks a process (the container's, or an `exec --process`): runc's rules for args and the
/// environment, plus the fields dray does not apply.
pub fn process(p: &Process) -> Result<()> {
    let args = p.args().as_deref().unwrap_or(&[]);
    if args.is_empty() {
        return Err(Error::spec("process.args must not be empty"));
    }
    if let Some(i) = args.iter().position(|a| a.contains('\0')) {
        return Err(Error::spec(format!("process.args[{i}] contains a NUL byte")));
    }
    let cwd = p.cwd();
    if !cwd.as_os_str().is_empty() && !cwd.is_absolute() {
        return Err(Error::spec(format!(
            "process.cwd {} must be an absolute path",
            cwd.display()
        )));
    }
    for e in p.env().iter().flatten() {
        env_entry(e)?;
    }
    let mut seen = Vec::new();
    for l in p.rlimits().iter().flatten() {
        let name = crate::rlimits::name(l.typ());
        if seen.contains(&l.typ()) {
            return Err(Error::spec(format!("process.rlimits: {name} is listed twice")));
        }
        seen.push(l.typ());
        if l.soft() > l.hard() {
            return Err(Error::spec(format!(
                "process.rlimits: {name}: soft limit {} is above hard limit {}",
                l.soft(),
                l.hard()
            )));
        }
    }
    if let Some(prio) = p.scheduler().as_ref().and_then(|s| *s.priority()).filter(|p| *p < 0) {
        return Err(Error::spec(format!("process.scheduler.priority {prio} is negative")));
    }
    if let Some(io) = p.io_priority().as_ref().filter(|io| !(0..=7).contains(&io.priority())) {
        return Err(Error::spec(format!(
            "process.ioPriority.priority {} is outside 0..7",
            io.priority()
        )));
    }
    unsupported_process_fields(p)
}

/// One `process.env` entry: `NAME=value`, as runc requires (a process would otherwise see an
/// environment that getenv cannot read back).
fn env_entry(e: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::spec(format!("process.env {e:?}: {why}")));
    match e.split_once('=') {
        _ if e.contains('\0') => bad("contains a NUL byte"),
        None => bad("missing '='"),
        Some(("", _)) => bad("the name is empty"),
        Some(_) => Ok(()),
    }
}

/// Refuses spec fields that dray does not apply yet: silently ignoring a resource limit or an
/// LSM label would run the container with less isolation than asked.
pub fn unsupported_fields(spec: &Spec) -> Result<()> {
    if let Some(l) = spec.linux().as_ref() {
        let no_resctrl = || !Path::new("/sys/fs/resctrl/info").exists();
        for (name, present) in [
            (
                if l.intel_rdt().is_some() && no_resctrl() {
                    "linux.intelRdt (this host has no resctrl file system)"
                } else {
                    "linux.intelRdt"
                },
                l.intel_rdt().is_some(),
            ),
            (
                "linux.mountLabel (SELinux is enabled on this host and dray cannot apply labels)",
                selinux_enabled() && l.mount_label().as_ref().is_some_and(|m| !m.is_empty()),
            ),
        ] {
            if present {
                return unsupported(name);
            }
        }
    }
    Ok(())
}

/// Whether SELinux is enabled here (its file system is mounted, as libselinux's
/// `is_selinux_enabled` checks). Where it is not, nothing could enforce a label: SELinux labels
/// are ignored, as crun and runc do; where it is, a label dray cannot apply is refused.
fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// Refuses process fields dray does not apply.
fn unsupported_process_fields(p: &Process) -> Result<()> {
    for (name, present) in [
        (
            "process.apparmorProfile (AppArmor)",
            p.apparmor_profile().as_ref().is_some_and(|m| !m.is_empty()),
        ),
        (
            "process.selinuxLabel (SELinux is enabled on this host and dray cannot apply labels)",
            selinux_enabled() && p.selinux_label().as_ref().is_some_and(|m| !m.is_empty()),
        ),
        ("process.execCPUAffinity", p.exec_cpu_affinity().is_some()),
    ] {
        if present {
            return unsupported(name);
        }
    }
    Ok(())
}

fn unsupported(what: &str) -> Result<()> {
    Err(Error::spec(format!("{what} is not supported by dray yet")))
}

/// Errors of the parsers this module calls are spec errors.
fn to_spec(e: Error) -> Error {
    match e {
        Error::Msg(m) => Error::InvalidSpec(m),
        other => other,
    }
}

/// The absolute path of a bind mount's source: relative sources are relative to the bundle
/// (runc).
pub fn bind_source(bundle: &Path, m: &Mount) -> Option<PathBuf> {
    let src = m.source().as_ref()?;
    Some(if src.is_absolute() {
        src.clone()
    } else {
        bundle.join(src)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use oci_spec::runtime::{
        LinuxBuilder, LinuxDeviceBuilder, LinuxDeviceType, LinuxIdMappingBuilder, LinuxNamespaceBuilder,
        LinuxTimeOffset, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, SpecBuilder,
    };
    use std::collections::HashMap;

    fn process(args: &[&str], env: &[&str]) -> Process {
        ProcessBuilder::default()
            .args(args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
            .env(env.iter().map(|a| a.to_string()).collect::<Vec<_>>())
            .cwd("/")
            .build()
            .unwrap()
    }

    fn ns(list: &[Ns]) -> Vec<oci_spec::runtime::LinuxNamespace> {
        list.iter()
            .map(|t| LinuxNamespaceBuilder::default().typ(*t).build().unwrap())
            .collect()
    }

    /// A valid spec: a mount, pid and UTS namespace and one mount.
    fn base() -> Spec {
        let linux = LinuxBuilder::default()
            .namespaces(ns(&[Ns::Mount, Ns::Pid, Ns::Uts]))
            .build()
            .unwrap();
        SpecBuilder::default()
            .process(process(&["sh"], &["PATH=/bin"]))
            .linux(linux)
            .mounts(vec![mnt("/proc", "proc", None, &[])])
            .hostname("")
            .build()
            .unwrap()
    }

    fn mnt(dest: &str, typ: &str, src: Option<&str>, opts: &[&str]) -> Mount {
        let mut b = MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .options(opts.iter().map(|o| o.to_string()).collect::<Vec<_>>());
        if let Some(s) = src {
            b = b.source(s);
        }
        b.build().unwrap()
    }

    fn with_linux(f: impl FnOnce(&mut oci_spec::runtime::Linux)) -> Spec {
        let mut s = base();
        let mut l = s.linux().clone().unwrap();
        f(&mut l);
        s.set_linux(Some(l));
        s
    }

    fn refused(s: &Spec, needle: &str) {
        let e = spec(s).expect_err(needle);
        assert_eq!(e.kind(), ErrorKind::InvalidSpec, "{e}");
        assert!(e.to_string().contains(needle), "{e} (wanted {needle:?})");
    }

    #[test]
    fn a_valid_spec_gives_a_plan() {
        let c = spec(&base()).unwrap();
        assert!(c.namespaces.creates(Ns::Mount));
        assert_eq!(c.mounts.len(), 1);
        assert_eq!(c.mounts[0].typ(), "proc");
        assert!(!c.mounts[0].bind && !c.dev_bound());
        assert_eq!(c.rootfs_propagation, None);
    }

    #[test]
    fn process_and_linux_are_required() {
        let mut s = base();
        s.set_process(None);
        refused(&s, "has no process");
        let mut s = base();
        s.set_linux(None);
        refused(&s, "has no linux section");
    }

    #[test]
    fn args_env_and_cwd_follow_runcs_rules() {
        assert!(super::process(&process(&["sh"], &["A=1", "B=", "C=x=y"])).is_ok());
        for (p, needle) in [
            (process(&[], &[]), "args must not be empty"),
            (process(&["sh", "a\0b"], &[]), "args[1] contains a NUL byte"),
            (process(&["sh"], &["A=\0"]), "NUL byte"),
            (process(&["sh"], &["NOEQUALS"]), "missing '='"),
            (process(&["sh"], &["=v"]), "the name is empty"),
        ] {
            let e = super::process(&p).expect_err(needle);
            assert_eq!(e.kind(), ErrorKind::InvalidSpec);
            assert!(e.to_string().contains(needle), "{e}");
        }
        let mut p = process(&["sh"], &[]);
        p.set_cwd("relative".into());
        assert!(super::process(&p)
            .unwrap_err()
            .to_string()
            .contains("must be an absolute path"));
    }

    #[test]
    fn rlimits_are_checked() {
        let rl = |t, soft: u64, hard: u64| {
            PosixRlimitBuilder::default()
                .typ(t)
                .soft(soft)
                .hard(hard)
                .build()
                .unwrap()
        };
        let mut p = process(&["sh"], &[]);
        p.set_rlimits(Some(vec![rl(PosixRlimitType::RlimitNofile, 10, 20)]));
        assert!(super::process(&p).is_ok());
        p.set_rlimits(Some(vec![rl(PosixRlimitType::RlimitNofile, 30, 20)]));
        assert!(super::process(&p).unwrap_err().to_string().contains("above hard limit"));
        p.set_rlimits(Some(vec![
            rl(PosixRlimitType::RlimitNofile, 1, 2),
            rl(PosixRlimitType::RlimitNofile, 1, 2),
        ]));
        assert!(super::process(&p).unwrap_err().to_string().contains("listed twice"));
    }

    #[test]
    fn scheduler_and_io_priorities_are_checked() {
        use oci_spec::runtime::{IOPriorityClass, LinuxIOPriorityBuilder, SchedulerBuilder};
        let mut p = process(&["sh"], &[]);
        p.set_scheduler(Some(SchedulerBuilder::default().priority(-1).build().unwrap()));
        assert!(super::process(&p).unwrap_err().to_string().contains("is negative"));
        let mut p = process(&["sh"], &[]);
        let io = |prio| {
            LinuxIOPriorityBuilder::default()
                .class(IOPriorityClass::IoprioClassBe)
                .priority(prio)
                .build()
                .unwrap()
        };
        p.set_io_priority(Some(io(8)));
        assert!(super::process(&p).unwrap_err().to_string().contains("outside 0..7"));
        p.set_io_priority(Some(io(7)));
        assert!(super::process(&p).is_ok());
    }

    #[test]
    fn device_rules_are_checked_before_the_fork() {
        use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxResourcesBuilder};
        let rule = |major: i64| {
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(major)
                .access("rwm")
                .build()
                .unwrap()
        };
        let with_rules = |rules| {
            with_linux(|l| {
                l.set_resources(Some(LinuxResourcesBuilder::default().devices(rules).build().unwrap()));
            })
        };
        let c = spec(&with_rules(vec![rule(10)])).unwrap();
        let rules = c.device_rules.unwrap();
        assert_eq!(rules[0].major, Some(10));
        // Followed by the defaults.
        assert!(rules.len() > 1);
        // No rule at all: no device cgroup restriction.
        let none = with_linux(|l| {
            l.set_resources(None);
        });
        assert!(spec(&none).unwrap().device_rules.is_none());
        refused(&with_rules(vec![rule(1 << 40)]), "out of range");
    }

    #[test]
    fn hostname_and_domainname_need_a_uts_namespace() {
        let mut s = with_linux(|l| {
            l.set_namespaces(Some(ns(&[Ns::Mount])));
        });
        s.set_hostname(Some("box".into()));
        refused(&s, "hostname needs a private UTS namespace");
        let mut s = with_linux(|l| {
            l.set_namespaces(Some(ns(&[Ns::Mount])));
        });
        s.set_domainname(Some("example".into()));
        refused(&s, "domainname needs a private UTS namespace");
        let mut s = base();
        s.set_hostname(Some("box".into()));
        assert!(spec(&s).is_ok());
        // An empty hostname sets nothing.
        let mut s = with_linux(|l| {
            l.set_namespaces(Some(ns(&[Ns::Mount])));
        });
        s.set_hostname(Some(String::new()));
        assert!(spec(&s).is_ok());
    }

    #[test]
    fn time_offsets_need_a_time_namespace_and_known_clocks() {
        let offsets = |clock: &str| {
            let mut m = HashMap::new();
            m.insert(clock.to_string(), LinuxTimeOffset::default());
            m
        };
        refused(
            &with_linux(|l| {
                l.set_time_offsets(Some(offsets("monotonic")));
            }),
            "needs a new time namespace",
        );
        let time_ns = |l: &mut oci_spec::runtime::Linux, clock: &str| {
            l.set_namespaces(Some(ns(&[Ns::Mount, Ns::Uts, Ns::Time])));
            l.set_time_offsets(Some(offsets(clock)));
        };
        refused(&with_linux(|l| time_ns(l, "realtime")), "unknown clock \"realtime\"");
        assert!(spec(&with_linux(|l| time_ns(l, "boottime"))).is_ok());
    }

    #[test]
    fn sysctls_are_checked_against_the_namespaces() {
        let sysctl = |k: &str| {
            let mut m = HashMap::new();
            m.insert(k.to_string(), "1".to_string());
            m
        };
        refused(
            &with_linux(|l| {
                l.set_sysctl(Some(sysctl("net.ipv4.ip_forward")));
            }),
            "network namespace",
        );
        assert!(spec(&with_linux(|l| {
            l.set_sysctl(Some(sysctl("kernel.shmmax")));
        }))
        .is_err());
    }

    #[test]
    fn user_namespaces_need_mappings_and_net_devices_a_network_namespace() {
        refused(
            &with_linux(|l| {
                l.set_namespaces(Some(ns(&[Ns::Mount, Ns::User])));
            }),
            "needs linux.uidMappings",
        );
        let map = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(1000u32)
            .size(1u32)
            .build()
            .unwrap();
        assert!(spec(&with_linux(|l| {
            l.set_namespaces(Some(ns(&[Ns::Mount, Ns::User])));
            l.set_uid_mappings(Some(vec![map]));
            l.set_gid_mappings(Some(vec![map]));
        }))
        .is_ok());
        let mut devs = HashMap::new();
        devs.insert("dummy0".to_string(), Default::default());
        refused(
            &with_linux(|l| {
                l.set_net_devices(Some(devs));
            }),
            "needs a new network namespace",
        );
    }

    #[test]
    fn namespace_lists_are_checked() {
        refused(
            &with_linux(|l| {
                l.set_namespaces(Some(ns(&[Ns::Pid, Ns::Pid])));
            }),
            "listed twice",
        );
        let joined = LinuxNamespaceBuilder::default()
            .typ(Ns::Network)
            .path("/nonexistent/ns/net")
            .build()
            .unwrap();
        refused(
            &with_linux(|l| {
                l.set_namespaces(Some(vec![joined]));
            }),
            "does not exist",
        );
    }

    #[test]
    fn mounts_are_parsed_per_entry() {
        let c = mount(&mnt("/data", "bind", Some("/srv"), &["rbind", "ro", "rslave"]), true).unwrap();
        assert!(c.bind && !c.read_only_later);
        assert!(c.options.flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_REC));
        assert_eq!(c.options.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        // A bind without a type is a bind too.
        let mut m = mnt("/data", "", Some("/srv"), &["bind"]);
        m.set_typ(None);
        assert_eq!(mount(&m, true).unwrap().typ(), "bind");
        for (m, needle) in [
            (mnt("data", "tmpfs", None, &[]), "not absolute"),
            (mnt("/data", "bind", None, &["rbind"]), "needs a source"),
            (mnt("/data", "none", Some(""), &["bind"]), "needs a source"),
            (mnt("/data", "tmpfs", None, &["idmap"]), "idmapped"),
            (
                mnt("/data", "proc", None, &["tmpcopyup"]),
                "tmpcopyup is only for tmpfs",
            ),
        ] {
            let e = mount(&m, true).expect_err(needle);
            assert_eq!(e.kind(), ErrorKind::InvalidSpec);
            assert!(e.to_string().contains(needle), "{e}");
        }
        let mut m = mnt("/data", "", None, &[]);
        m.set_typ(None);
        assert!(mount(&m, true).unwrap_err().to_string().contains("no type"));
    }

    #[test]
    fn binds_in_a_shared_mount_namespace_are_private_unless_told() {
        let plain = mnt("/data", "bind", Some("/srv"), &["rbind"]);
        assert!(mount(&plain, true).unwrap().options.propagation.is_empty());
        assert_eq!(
            mount(&plain, false).unwrap().options.propagation,
            vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]
        );
        let shared = mnt("/data", "bind", Some("/srv"), &["rbind", "rshared"]);
        assert_eq!(
            mount(&shared, false).unwrap().options.propagation,
            vec![MsFlags::MS_SHARED | MsFlags::MS_REC]
        );
        // Not a bind: nothing to add.
        assert!(mount(&mnt("/t", "tmpfs", None, &[]), false)
            .unwrap()
            .options
            .propagation
            .is_empty());
    }

    #[test]
    fn read_only_tmpfs_and_dev_are_made_read_only_later() {
        let later = |m: Mount| mount(&m, true).unwrap().read_only_later;
        assert!(later(mnt("/run", "tmpfs", None, &["ro", "nosuid"])));
        assert!(later(mnt("/dev", "devtmpfs", None, &["ro"])));
        assert!(!later(mnt("/run", "tmpfs", None, &["rw"])));
        assert!(!later(mnt("/proc", "proc", None, &["ro"])));
        assert!(!later(mnt("/dev", "bind", Some("/dev"), &["rbind", "ro"])));
        assert!(!later(mnt("/sys/fs/cgroup", "cgroup", None, &["ro"])));
    }

    #[test]
    fn a_bind_of_dev_brings_its_own_nodes() {
        let mut s = base();
        s.set_mounts(Some(vec![mnt("/dev", "bind", Some("/dev"), &["rbind"])]));
        assert!(spec(&s).unwrap().dev_bound());
    }

    #[test]
    fn rootfs_propagation_is_parsed_and_needs_a_mount_namespace() {
        let c = spec(&with_linux(|l| {
            l.set_rootfs_propagation(Some("rshared".into()));
        }))
        .unwrap();
        assert_eq!(c.rootfs_propagation, Some(MsFlags::MS_SHARED | MsFlags::MS_REC));
        refused(
            &with_linux(|l| {
                l.set_rootfs_propagation(Some("sideways".into()));
            }),
            "invalid rootfsPropagation",
        );
        refused(
            &with_linux(|l| {
                l.set_namespaces(Some(ns(&[Ns::Pid, Ns::Uts])));
                l.set_rootfs_propagation(Some("private".into()));
            }),
            "needs a new mount namespace",
        );
    }

    #[test]
    fn devices_are_converted_or_refused() {
        let dev = |path: &str, t| {
            LinuxDeviceBuilder::default()
                .path(path)
                .typ(t)
                .major(1)
                .minor(3)
                .build()
                .unwrap()
        };
        let c = spec(&with_linux(|l| {
            l.set_devices(Some(vec![dev("/dev/fuse", LinuxDeviceType::C)]));
        }))
        .unwrap();
        assert_eq!(c.devices.len(), 1);
        assert_eq!(c.devices[0].kind, libc::S_IFCHR);
        refused(
            &with_linux(|l| {
                l.set_devices(Some(vec![dev("/etc/passwd", LinuxDeviceType::C)]));
            }),
            "not a path under /dev",
        );
        refused(
            &with_linux(|l| {
                l.set_devices(Some(vec![dev("/dev/../etc/x", LinuxDeviceType::B)]));
            }),
            "not a path under /dev",
        );
        refused(
            &with_linux(|l| {
                l.set_devices(Some(vec![dev("/dev/all", LinuxDeviceType::A)]));
            }),
            "only valid in device cgroup rules",
        );
    }
}
