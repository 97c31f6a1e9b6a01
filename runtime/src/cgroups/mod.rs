//! Cgroups: where a container's cgroup lives (`linux.cgroupsPath`), creating it, placing the
//! init in it, listing and signalling its processes, and removing it on delete.
//!
//! Works on cgroup v1, pure v2 and "hybrid" hosts (v1 controllers plus a cgroup2 mount, often
//! at /sys/fs/cgroup/unified): the hierarchies are read from /proc/self/mountinfo, and the
//! container gets a directory in each of them. Version-specific details live in [`v1`] and
//! [`v2`]. One file per job: `discovery` (the hierarchies and the container's paths), this
//! file (creating and removing the directories), `apply` (applying resources, one function
//! per controller), `procs` (placing,
//! listing and signalling processes), `freezer` (pause/resume), [`devices`], [`resources`]
//! (the values written), [`stats`].

mod apply;
pub mod devices;
mod discovery;
mod freezer;
mod procs;
pub mod resources;
pub mod stats;
pub mod v1;
pub mod v2;

pub(crate) use discovery::unescape;
pub use discovery::{hierarchies, own_cgroup, parse_mountinfo, paths_for};

// What the files of this module share: each starts with `use super::*`.
use crate::error::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where the hierarchy is mounted, e.g. /sys/fs/cgroup/memory.
    pub mountpoint: PathBuf,
    /// The cgroup path the mount shows as its root (usually "/").
    pub root: String,
    /// v1 controllers (e.g. ["cpu"], ["name=systemd"]); empty for cgroup2.
    pub controllers: Vec<String>,
    /// True for a cgroup2 mount.
    pub v2: bool,
}

/// The container's directory in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupDir {
    /// Mount point of the hierarchy (its last component names it inside the container).
    pub mountpoint: PathBuf,
    /// The container's cgroup directory on the host.
    pub path: PathBuf,
    /// Comma-separated v1 controllers, empty for cgroup2.
    pub controllers: String,
    /// True for cgroup2.
    pub v2: bool,
}

/// The container's cgroup, one directory per hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupPaths {
    pub dirs: Vec<CgroupDir>,
}

impl CgroupPaths {
    /// Creates the directories (and initialises v1 cpuset ones). Every directory that did not
    /// exist before is pushed to `created` as soon as it is made, so that a failure halfway
    /// still lets the caller remove all of them.
    pub fn create(&self, created: &mut Vec<PathBuf>) -> Result<()> {
        self.create_where(created, |_| true)
    }

    /// [`Self::create`] for the directories `which` selects.
    pub fn create_where(&self, created: &mut Vec<PathBuf>, which: impl Fn(&CgroupDir) -> bool) -> Result<()> {
        for d in self.dirs.iter().filter(|d| which(d)) {
            if d.v2 {
                v2::enable_controllers(&d.mountpoint, &d.path);
            }
            // Usually only the last component is missing: try it first.
            match std::fs::create_dir(&d.path) {
                Ok(()) => {
                    created.push(d.path.clone());
                    if !d.v2 && d.controllers.split(',').any(|c| c == "cpuset") {
                        v1::init_cpuset(&d.path)?;
                    }
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    // An existing cpuset cgroup may still have empty cpus/mems (made by hand):
                    // filled from the parent, as runc does, or no process could join it.
                    if !d.v2 && d.controllers.split(',').any(|c| c == "cpuset") {
                        v1::init_cpuset(&d.path)?;
                    }
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).ctx(|| format!("creating cgroup {}", d.path.display())),
            }
            let mut missing = Vec::new();
            let mut p = d.path.as_path();
            while !p.exists() && p != d.mountpoint {
                missing.push(p.to_path_buf());
                match p.parent() {
                    Some(parent) => p = parent,
                    None => break,
                }
            }
            for dir in missing.iter().rev() {
                match std::fs::create_dir(dir) {
                    Ok(()) => created.push(dir.clone()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e).ctx(|| format!("creating cgroup {}", dir.display())),
                }
                if !d.v2 && d.controllers.split(',').any(|c| c == "cpuset") {
                    v1::init_cpuset(dir)?;
                }
            }
        }
        Ok(())
    }

    /// Applies `linux.resources.devices` (plus `linux.devices` and the default devices): on the
    /// v1 devices hierarchy if the host has one, else as an eBPF program on the v2 cgroup.
    pub fn apply_devices(&self, rules: &[devices::Rule]) -> Result<()> {
        if let Some(d) = self
            .dirs
            .iter()
            .find(|d| !d.v2 && d.controllers.split(',').any(|c| c == "devices"))
        {
            return devices::apply_v1(&d.path, rules);
        }
        if let Some(d) = self.dirs.iter().find(|d| d.v2) {
            return devices::apply_v2(&d.path, rules);
        }
        Err(Error::msg(
            "no device controller on this host: cannot enforce linux.resources.devices",
        ))
    }

    /// Where the host has a controller: its v1 hierarchy, else the v2 directory when the
    /// controller is enabled there.
    pub fn host(&self, v1: &str, v2: Option<&str>) -> Option<&CgroupDir> {
        if let Some(d) = self
            .dirs
            .iter()
            .find(|d| !d.v2 && d.controllers.split(',').any(|c| c == v1))
        {
            return Some(d);
        }
        let v2 = v2?;
        let d = self.dirs.iter().find(|d| d.v2)?;
        let avail = crate::sys::read_text(d.path.join("cgroup.controllers")).unwrap_or_default();
        avail.split_whitespace().any(|c| c == v2).then_some(d)
    }

    /// True on a pure cgroup v2 host: one cgroup2 hierarchy and nothing else.
    pub fn is_pure_v2(&self) -> bool {
        matches!(self.dirs.as_slice(), [d] if d.v2)
    }

    /// Removes the container's cgroup directories that `owned` lists (those dray created).
    /// Retries while the kernel still reports a cgroup busy (killed processes still exiting).
    pub fn remove(&self, owned: &[PathBuf]) -> Result<()> {
        for d in self.dirs.iter().filter(|d| owned.contains(&d.path)) {
            remove_dir(&d.path)?;
        }
        // Parents dray made for a nested cgroupsPath go too, deepest first, once nothing else
        // (another container under the same path) uses them: a plain rmdir, never recursive.
        let mut parents: Vec<&PathBuf> = owned
            .iter()
            .filter(|p| !self.dirs.iter().any(|d| &d.path == *p))
            .collect();
        parents.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in parents {
            let _ = std::fs::remove_dir(p);
        }
        Ok(())
    }
}

/// Removes one cgroup directory, with its child cgroups, retrying EBUSY for up to a second.
pub fn remove_dir(path: &Path) -> Result<()> {
    // Usually there is no child cgroup: try the directory itself first.
    match std::fs::remove_dir(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_dir(&e.path())?;
            }
        }
    }
    let mut delay = Duration::from_millis(1);
    let mut waited = Duration::ZERO;
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && waited < Duration::from_secs(1) => {
                std::thread::sleep(delay);
                waited += delay;
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(e).ctx(|| format!("removing cgroup {}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw shared:6 - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu rw shared:7 - cgroup cgroup rw,cpu
34 30 0:30 / /sys/fs/cgroup/memory rw shared:8 - cgroup cgroup rw,memory
35 30 0:30 / /mnt/again rw shared:8 - cgroup cgroup rw,memory
36 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct
";
    const PROC_CGROUP: &str = "4:memory:/sandbox/a\n3:cpu,cpuacct:/\n2:cpu:/\n1:name=systemd:/init.scope\n0::/\n";

    #[test]
    fn mounts_covered_by_a_later_mount_do_not_count() {
        let mi = "\
25 1 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
27 25 0:24 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
40 1 0:50 / /sys/fs/cgroup rw - tmpfs tmpfs rw
41 40 0:24 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
42 41 0:60 / /sys/fs/cgroup/unified/sub rw - tmpfs tmpfs rw
";
        let hs = parse_mountinfo(mi);
        assert_eq!(hs.len(), 1, "{hs:?}");
        assert!(hs[0].v2 && hs[0].mountpoint == Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn finds_hierarchies_once_each() {
        let hs = parse_mountinfo(HYBRID);
        assert_eq!(hs.len(), 5);
        assert!(hs[0].v2);
        assert_eq!(hs[1].controllers, vec!["name=systemd"]);
        assert_eq!(hs[4].controllers, vec!["cpu", "cpuacct"]);
    }

    #[test]
    fn relative_paths_are_below_our_own_cgroup() {
        let hs = parse_mountinfo(HYBRID);
        let p = paths_for(&hs, PROC_CGROUP, None, "c1").unwrap();
        let mem = p.dirs.iter().find(|d| d.controllers == "memory").unwrap();
        assert_eq!(mem.path, PathBuf::from("/sys/fs/cgroup/memory/sandbox/a/c1"));
        let uni = p.dirs.iter().find(|d| d.v2).unwrap();
        assert_eq!(uni.path, PathBuf::from("/sys/fs/cgroup/unified/c1"));
    }

    #[test]
    fn absolute_paths_are_from_the_root() {
        let hs = parse_mountinfo(HYBRID);
        let p = paths_for(&hs, PROC_CGROUP, Some(Path::new("/dray/x")), "c1").unwrap();
        assert!(p.dirs.iter().all(|d| d.path.ends_with("dray/x")));
        assert!(paths_for(&hs, PROC_CGROUP, Some(Path::new("/a/../../b")), "c1").is_err());
        assert!(paths_for(&hs, PROC_CGROUP, Some(Path::new("system.slice:dray:x")), "c1").is_err());
        // Empty means unset; the root and our own cgroup are refused.
        let p = paths_for(&hs, PROC_CGROUP, Some(Path::new("")), "c1").unwrap();
        assert!(p.dirs.iter().all(|d| d.path.ends_with("c1")));
        assert!(paths_for(&hs, PROC_CGROUP, Some(Path::new("/")), "c1").is_err());
        assert!(paths_for(&hs, PROC_CGROUP, Some(Path::new("/sandbox/a")), "c1").is_err());
    }

    #[test]
    fn exec_sub_cgroups() {
        let hs = parse_mountinfo(HYBRID);
        let p = paths_for(&hs, PROC_CGROUP, Some(Path::new("/dray/x")), "c1").unwrap();
        let find = |p: &CgroupPaths, c: &str| {
            p.dirs
                .iter()
                .find(|d| d.controllers == c || (c.is_empty() && d.v2))
                .unwrap()
                .path
                .clone()
        };
        let s = p
            .with_sub_cgroups(&["memory:submem".into(), "cpu,cpuacct:subcpu".into()])
            .unwrap();
        assert_eq!(find(&s, "memory"), Path::new("/sys/fs/cgroup/memory/dray/x/submem"));
        assert_eq!(
            find(&s, "cpu,cpuacct"),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/dray/x/subcpu")
        );
        assert_eq!(find(&s, ""), find(&p, ""));
        let all = p.with_sub_cgroups(&["/a/b".into()]).unwrap();
        assert!(all.dirs.iter().all(|d| d.path.ends_with("dray/x/a/b")));
        assert_eq!(p.with_sub_cgroups(&["/".into()]).unwrap(), p);
        let e = p.with_sub_cgroups(&["..".into()]).unwrap_err().to_string();
        assert!(e.contains("is not a sub cgroup path"), "{e}");
        let e = p.with_sub_cgroups(&["whaaat:/".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown controller"), "{e}");
    }

    #[test]
    fn unescapes_spaces() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn v2_resources_are_written_to_a_cgroupfs() {
        let base = std::env::temp_dir().join(format!("dray-cgfs-{}", std::process::id()));
        let dir = base.join("c1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma\n",
        )
        .unwrap();
        std::fs::write(dir.join("memory.high"), "max").unwrap();
        let paths = CgroupPaths {
            dirs: vec![CgroupDir {
                mountpoint: base.clone(),
                path: dir.clone(),
                controllers: String::new(),
                v2: true,
            }],
        };
        let r: oci_spec::runtime::LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 100, "swap": 300, "reservation": 50},
            "cpu": {"shares": 1024, "quota": 50000, "period": 200000, "cpus": "0-1", "mems": "0"},
            "pids": {"limit": 10},
            "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "rdma": {"mlx4_0": {"hcaHandles": 2, "hcaObjects": 2000}},
            "unified": {"memory.high": "90"}
        }))
        .unwrap();
        let warn = paths.apply_resources(&r, false).unwrap();
        assert!(warn.is_empty(), "{warn:?}");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("memory.max"), "100");
        assert_eq!(read("memory.swap.max"), "200");
        assert_eq!(read("memory.low"), "50");
        assert_eq!(read("cpu.weight"), "39");
        assert_eq!(read("cpu.max"), "50000 200000");
        assert_eq!(read("cpuset.cpus"), "0-1");
        assert_eq!(read("pids.max"), "10");
        assert_eq!(read("io.weight"), "default 4950");
        assert_eq!(read("io.max"), "8:0 rbps=1000");
        assert_eq!(read("hugetlb.2MB.max"), "4194304");
        assert_eq!(read("rdma.max"), "mlx4_0 hca_handle=2 hca_object=2000");
        assert_eq!(read("memory.high"), "90");
        // A controller the cgroup lacks is an error, not a silent no-op.
        std::fs::write(dir.join("cgroup.controllers"), "cpu\n").unwrap();
        let e = paths.apply_resources(&r, false).unwrap_err().to_string();
        assert!(e.contains("memory controller"), "{e}");
        // Unified keys cannot name other paths.
        std::fs::write(
            dir.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma\n",
        )
        .unwrap();
        let bad: oci_spec::runtime::LinuxResources =
            serde_json::from_value(serde_json::json!({"unified": {"../x.y": "1"}})).unwrap();
        assert!(paths.apply_resources(&bad, false).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn v1_resources_are_written_to_a_cgroupfs() {
        let base = std::env::temp_dir().join(format!("dray-cgfs1-{}", std::process::id()));
        let mut dirs = Vec::new();
        for c in [
            "memory", "cpu", "pids", "blkio", "hugetlb", "net_cls", "net_prio", "rdma",
        ] {
            let d = base.join(c).join("c1");
            std::fs::create_dir_all(&d).unwrap();
            dirs.push(CgroupDir {
                mountpoint: base.join(c),
                path: d,
                controllers: c.into(),
                v2: false,
            });
        }
        std::fs::write(base.join("memory/c1/memory.memsw.limit_in_bytes"), "").unwrap();
        std::fs::write(base.join("blkio/c1/blkio.weight"), "").unwrap();
        let paths = CgroupPaths { dirs };
        let r: oci_spec::runtime::LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 100, "swap": 300, "swappiness": 5},
            "cpu": {"shares": 1024, "quota": 50000, "period": 200000},
            "pids": {"limit": -1},
            "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 300}],
                        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 50}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
            "rdma": {"mlx4_0": {"hcaHandles": 2}}
        }))
        .unwrap();
        paths.apply_resources(&r, false).unwrap();
        let read = |c: &str, f: &str| {
            std::fs::read_to_string(base.join(c).join("c1").join(f)).unwrap_or_else(|e| panic!("{c}/{f}: {e}"))
        };
        assert_eq!(read("memory", "memory.limit_in_bytes"), "100");
        assert_eq!(read("memory", "memory.memsw.limit_in_bytes"), "300");
        assert_eq!(read("memory", "memory.swappiness"), "5");
        assert_eq!(read("cpu", "cpu.shares"), "1024");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu", "cpu.cfs_period_us"), "200000");
        assert_eq!(read("pids", "pids.max"), "max");
        assert_eq!(read("blkio", "blkio.weight"), "500");
        assert_eq!(read("blkio", "blkio.weight_device"), "8:0 300");
        assert_eq!(read("blkio", "blkio.throttle.write_iops_device"), "8:0 50");
        assert_eq!(read("hugetlb", "hugetlb.2MB.limit_in_bytes"), "4194304");
        assert_eq!(read("net_cls", "net_cls.classid"), "1048577");
        assert_eq!(read("net_prio", "net_prio.ifpriomap"), "eth0 5");
        assert_eq!(read("rdma", "rdma.max"), "mlx4_0 hca_handle=2");
        // unified needs a v2 hierarchy.
        let u: oci_spec::runtime::LinuxResources =
            serde_json::from_value(serde_json::json!({"unified": {"memory.high": "1"}})).unwrap();
        assert!(paths.apply_resources(&u, false).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
