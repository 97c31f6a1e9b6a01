//! The container's root file system (config.md "Root", "Mounts"; config-linux.md
//! "Rootfs Mount Propagation", "Masked Paths", "Readonly Paths", "Devices").
//!
//! Order, as runc: make `/` a slave (or `rootfsPropagation`) so nothing leaks to the host, bind
//! the rootfs on itself, mount every entry (checked and parsed before the fork, see
//! [`crate::validate`]), create /dev, make the read-only tmpfs mounts read-only now that they
//! are filled, then (after the createContainer hooks) pivot_root, then masked and read-only
//! paths and a read-only root.
//!
//! Without a mount namespace of its own (none in `linux.namespaces`, or one joined by `path`),
//! the container's mounts are made in the namespace it shares, under a private bind of the
//! rootfs on itself, and the process is chrooted into it (runtime-spec: a namespace that is not
//! listed is inherited; crun does the same). `/` of that namespace is never touched, and
//! `delete` detaches the bind (and with it every mount under it) again.

pub mod devices;
pub mod mounts;
pub mod paths;

use crate::error::{Context, Error, Result};
use crate::sys::fd_path;
use nix::mount::{MntFlags, MsFlags};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

/// Parses `linux.rootfsPropagation`.
pub fn propagation_flag(s: &str) -> Result<MsFlags> {
    Ok(match s {
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        other => return Err(Error::msg(format!("invalid rootfsPropagation {other:?}"))),
    })
}

/// What the init needs to set up the rootfs.
#[derive(Debug)]
pub struct Setup<'a> {
    /// The checked spec: its mounts, devices and rootfs propagation ([`crate::validate`]).
    pub checked: &'a crate::validate::Checked,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub cgroup: &'a crate::cgroups::CgroupPaths,
    pub cgroupns: bool,
    pub userns: bool,
    /// False when the container shares (or joined) a mount namespace: see the module doc.
    pub own_mount_ns: bool,
    /// Waits for the runtime's cgroup work, which runs alongside the mounts.
    pub cgroups: &'a mut dyn CgroupGate,
}

/// How the mount set-up waits for the runtime's cgroup work (see [`crate::process`]).
pub trait CgroupGate: std::fmt::Debug {
    /// Returns once the container's cgroup directories exist.
    fn made(&mut self) -> Result<()>;
    /// Returns once the process is in them, and in its new cgroup namespace if it has one.
    fn placed(&mut self) -> Result<()>;
}

/// Everything before pivot_root: propagation, the rootfs bind, mounts, /dev. Runs in the
/// container's new mount namespace.
///
/// Read-only tmpfs mounts (and a read-only `/dev`) are mounted read-write and made read-only
/// only once every mount and device node under them is in place ([`ReadOnlyLater`]).
pub fn prepare(s: &mut Setup) -> Result<()> {
    if s.own_mount_ns {
        let prop = match s.checked.rootfs_propagation {
            Some(p) => initial_propagation(p),
            None => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        };
        mounts::mount(None, "/", None, prop, None, Path::new("/")).ctx(|| "setting rootfs propagation".into())?;
        // After a recursive change to slave or private (rslave by default), no mount of this
        // namespace is shared any more: there is nothing to look for.
        if !prop.contains(MsFlags::MS_REC) || prop.contains(MsFlags::MS_SHARED) {
            make_parent_private(s.rootfs)?;
        }
    }
    let root_s = s.rootfs.to_string_lossy();
    mounts::mount(
        Some(&root_s),
        &root_s,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
        s.rootfs,
    )
    .ctx(|| "bind-mounting the rootfs on itself".into())?;
    if !s.own_mount_ns {
        SHARED_BIND.store(BOUND, Ordering::Relaxed);
        // In a shared namespace the container's mounts stay under this bind: none of them
        // propagates to the namespace's peers, and one detach removes them all.
        mounts::mount(None, &root_s, None, MsFlags::MS_PRIVATE, None, s.rootfs)
            .ctx(|| "making the rootfs bind private".into())?;
    }
    let root = crate::sys::open_path_dir(s.rootfs).ctx(|| "opening the rootfs".into())?;
    let ctx = mounts::Ctx {
        root: &root,
        bundle: s.bundle,
        cgroup: s.cgroup,
        cgroupns: s.cgroupns,
        userns: s.userns,
    };
    let mut later = ReadOnlyLater::default();
    for m in &s.checked.mounts {
        // Copying image data into a tmpfs is charged to whoever copies: the container.
        if m.options.tmpcopyup {
            s.cgroups.placed()?;
        }
        if matches!(m.typ(), "cgroup" | "cgroup2") {
            // v1 and hybrid: the container's directories are bound, so they must exist; a fresh
            // cgroup2 (pure v2 with a cgroup namespace) shows the namespace's root.
            if s.cgroupns && s.cgroup.is_pure_v2() {
                s.cgroups.placed()?;
            } else {
                s.cgroups.made()?;
            }
        }
        if m.read_only_later {
            let mut rw = m.options.clone();
            rw.flags.remove(MsFlags::MS_RDONLY);
            mounts::mount_entry(&ctx, m, &rw)?;
            later.push(m);
        } else {
            mounts::mount_entry(&ctx, m, &m.options)?;
        }
    }
    if !s.checked.dev_bound() {
        let mut nodes = devices::defaults();
        for n in &s.checked.devices {
            nodes.retain(|x| x.path != n.path);
            nodes.push(n.clone());
        }
        devices::create_all(&root, &nodes, s.userns)?;
        devices::symlinks(&root)?;
    }
    later.apply(&root)
}

/// The mounts made read-write so that they could be filled, to be made read-only at the end of
/// [`prepare`]. One mechanism for every such mount: a read-only `/dev` gets its device nodes
/// first, a read-only tmpfs its nested mount points and tmpcopyup contents.
#[derive(Debug, Default)]
struct ReadOnlyLater {
    mounts: Vec<std::path::PathBuf>,
}

impl ReadOnlyLater {
    fn push(&mut self, m: &crate::validate::PlannedMount) {
        self.mounts.push(m.destination().to_path_buf());
    }

    /// Makes each read-only and changes nothing else of it ([`mounts::make_read_only`]):
    /// nosuid, nodev, noexec, the atime mode and runc's recursive options (`rnoexec`, ...)
    /// stay as the entry set them. Only the mount changes, not its file system.
    fn apply(self, root: &std::os::fd::OwnedFd) -> Result<()> {
        for dest in self.mounts.iter().rev() {
            let d = paths::mkdir_all(root, dest)?;
            mounts::make_read_only(&fd_path(d.as_raw_fd()), dest)
                .ctx(|| format!("making {} read-only", dest.display()))?;
        }
        Ok(())
    }
}

/// Detaches a rootfs bind made in a shared namespace, with every mount under it. The tree is
/// made private first: an unmount propagates to the peers of a mount's parent, and an rbind of
/// a shared host tree (`/sys`, say) has peers on the host.
pub fn detach_shared_bind(target: &Path) -> Result<()> {
    mounts::mount(
        None,
        &target.to_string_lossy(),
        None,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None,
        target,
    )?;
    nix::mount::umount2(target, MntFlags::MNT_DETACH).ctx(|| format!("detaching {}", target.display()))
}

/// The propagation `/` gets before the rootfs is bound: the requested one, except that an
/// unbindable `/` (or tree) could not be bound at all; it starts private (which unbindable
/// implies) and [`finalize_root`] makes the container's root unbindable once it is in place.
fn initial_propagation(requested: MsFlags) -> MsFlags {
    if requested.contains(MsFlags::MS_UNBINDABLE) {
        (requested & MsFlags::MS_REC) | MsFlags::MS_PRIVATE
    } else {
        requested
    }
}

/// pivot_root needs the rootfs's parent mount not to be shared.
fn make_parent_private(rootfs: &Path) -> Result<()> {
    let text = crate::sys::read_text("/proc/self/mountinfo").ctx(|| "reading mountinfo".into())?;
    let mut best: Option<(String, bool)> = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 7 {
            continue;
        }
        let mp = f[4];
        if rootfs.starts_with(mp) && best.as_ref().is_none_or(|(b, _)| mp.len() >= b.len()) {
            let shared = f[6..]
                .iter()
                .take_while(|x| **x != "-")
                .any(|x| x.starts_with("shared:"));
            best = Some((mp.to_string(), shared));
        }
    }
    if let Some((mp, true)) = best {
        mounts::mount(None, &mp, None, MsFlags::MS_PRIVATE, None, Path::new(&mp))
            .ctx(|| "making the rootfs parent mount private".into())?;
    }
    Ok(())
}

/// Makes the rootfs the root: pivot_root, then detach the old root (after making it a slave so
/// that the unmount does not propagate to the host). With `no_pivot`, MS_MOVE + chroot.
pub fn pivot(rootfs: &Path, no_pivot: bool) -> Result<()> {
    nix::unistd::chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    if no_pivot {
        hide_full_proc_and_sys(rootfs)?;
        mounts::mount(Some("."), "/", None, MsFlags::MS_MOVE, None, rootfs).ctx(|| "moving the rootfs to /".into())?;
        nix::unistd::chroot(".").ctx(|| "chroot".into())?;
    } else {
        nix::unistd::pivot_root(".", ".").ctx(|| "pivot_root".into())?;
        mounts::mount(
            None,
            ".",
            None,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None,
            Path::new("/"),
        )
        .ctx(|| "making the old root a slave".into())?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH).ctx(|| "detaching the old root".into())?;
    }
    nix::unistd::chdir("/").ctx(|| "chdir /".into())
}

/// With `--no-pivot` the host's mounts stay in the namespace, under the moved rootfs. A whole
/// procfs or sysfs among them would let a process in a new user namespace mount a fresh, bare
/// one (the kernel allows that when an unmasked instance is already in the namespace), so
/// they are detached first, or covered where they cannot be (runc does the same).
fn hide_full_proc_and_sys(rootfs: &Path) -> Result<()> {
    let text = crate::sys::read_text("/proc/self/mountinfo").ctx(|| "reading mountinfo".into())?;
    for mp in full_proc_and_sys(&text, rootfs) {
        let p = Path::new(&mp);
        // A slave first, so that the detach does not propagate to the host.
        match mounts::mount(None, &mp, None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None, p) {
            // Gone with a parent detached before it.
            Err(e) if e.errno() == Some(libc::ENOENT) => continue,
            r => r?,
        }
        match nix::mount::umount2(p, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::EPERM) => {
                mounts::mount(Some("tmpfs"), &mp, Some("tmpfs"), MsFlags::empty(), None, p)?
            }
            Err(e) => return Err(e).ctx(|| format!("detaching {mp}")),
        }
    }
    Ok(())
}

/// The mount points of whole procfs and sysfs instances outside `rootfs`, from mountinfo text.
fn full_proc_and_sys(mountinfo: &str, rootfs: &Path) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let fstype = post.split(' ').next()?;
            let (root, mp) = (pre.get(3)?, pre.get(4)?);
            let mp = crate::cgroups::unescape(mp);
            let inside = Path::new(&mp).starts_with(rootfs);
            (*root == "/" && matches!(fstype, "proc" | "sysfs") && !inside).then_some(mp)
        })
        .collect()
}

/// The root of a container without a mount namespace of its own (see the module doc): the
/// namespace is shared, so pivot_root (which would move every process of it) is not an option.
pub fn chroot(rootfs: &Path) -> Result<()> {
    nix::unistd::chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    nix::unistd::chroot(".").ctx(|| "chroot".into())?;
    SHARED_BIND.store(CHROOTED, Ordering::Relaxed);
    nix::unistd::chdir("/").ctx(|| "chdir /".into())
}

/// Where the init stands with a rootfs bind in a shared mount namespace: nothing yet, bound at
/// the rootfs path, or chrooted into it.
static SHARED_BIND: AtomicU8 = AtomicU8::new(NONE);
const NONE: u8 = 0;
const BOUND: u8 = 1;
const CHROOTED: u8 = 2;

/// On a failed set-up in a shared mount namespace: detaches the rootfs bind, and every mount the
/// init made under it, from the namespace that outlives the init.
pub fn undo_shared_bind(rootfs: &Path) {
    let target = match SHARED_BIND.load(Ordering::Relaxed) {
        BOUND => rootfs,
        CHROOTED => Path::new("/"),
        _ => return,
    };
    let _ = detach_shared_bind(target);
}

/// After pivot_root (and the console): the read-only root.
pub fn finalize_root(spec: &oci_spec::runtime::Spec) -> Result<()> {
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        mounts::remount_bind("/", MsFlags::MS_RDONLY, Path::new("/")).ctx(|| "making the root read-only".into())?;
    }
    Ok(())
}

/// After the sysctls: `readonlyPaths`, then `maskedPaths`, then the final propagation of `/`
/// (last: read-only paths are bind mounts, which an unbindable tree would refuse).
pub fn protect_paths(spec: &oci_spec::runtime::Spec, checked: &crate::validate::Checked) -> Result<()> {
    let linux = spec.linux().as_ref();
    for p in linux.and_then(|l| l.readonly_paths().as_ref()).into_iter().flatten() {
        readonly_path(p).ctx(|| format!("making {p} read-only"))?;
    }
    for p in linux.and_then(|l| l.masked_paths().as_ref()).into_iter().flatten() {
        mask_path(p).ctx(|| format!("masking {p}"))?;
    }
    if let Some(p) = checked.rootfs_propagation {
        mounts::mount(None, "/", None, p, None, Path::new("/")).ctx(|| format!("setting rootfs propagation {p:?}"))?;
    }
    Ok(())
}

/// `readonlyPaths`: bind the path on itself and remount it read-only. A missing path is fine.
fn readonly_path(p: &str) -> Result<()> {
    if !Path::new(p).exists() {
        return Ok(());
    }
    mounts::mount(Some(p), p, None, MsFlags::MS_BIND | MsFlags::MS_REC, None, Path::new(p))?;
    mounts::remount_bind(p, MsFlags::MS_RDONLY, Path::new(p))
}

/// `maskedPaths`: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask_path(p: &str) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).ctx(|| format!("stat {p}")),
        Ok(m) if m.is_dir() => mounts::mount(Some("tmpfs"), p, Some("tmpfs"), MsFlags::MS_RDONLY, None, Path::new(p)),
        Ok(_) => mounts::mount(Some("/dev/null"), p, None, MsFlags::MS_BIND, None, Path::new(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_proc_and_sys_outside_the_rootfs_are_found() {
        let mi = "\
22 1 0:20 / /proc rw - proc proc rw
23 1 0:21 / /sys rw - sysfs sysfs rw
24 22 0:30 / /proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw
25 1 0:20 /sys /mnt/procsys rw - proc proc rw
26 1 0:40 / /run/c/rootfs rw - overlay overlay rw
27 26 0:41 / /run/c/rootfs/proc rw - proc proc rw
28 1 0:42 / /srv/a\\040b rw - sysfs sysfs rw
";
        assert_eq!(
            full_proc_and_sys(mi, Path::new("/run/c/rootfs")),
            vec!["/proc", "/sys", "/srv/a b"]
        );
    }

    #[test]
    fn unbindable_starts_private() {
        assert_eq!(initial_propagation(MsFlags::MS_UNBINDABLE), MsFlags::MS_PRIVATE);
        assert_eq!(
            initial_propagation(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
            MsFlags::MS_PRIVATE | MsFlags::MS_REC
        );
        assert_eq!(initial_propagation(MsFlags::MS_SHARED), MsFlags::MS_SHARED);
    }
}
