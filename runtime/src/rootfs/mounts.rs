//! `mounts` (config.md "Mounts"): mount options, and mounting each entry on a target resolved
//! inside the rootfs.

use super::paths::{self, Kind};
use crate::cgroups::CgroupPaths;
use crate::error::{Context, Error, Result};
use crate::sys::fd_path;
use crate::validate::PlannedMount;
use nix::mount::MsFlags;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// A mount's options, split as mount(2) wants them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Flags set by options (MS_RDONLY, MS_NOSUID, MS_BIND, ...).
    pub flags: MsFlags,
    /// Flags explicitly cleared by options (`rw`, `suid`, ...), used when remounting.
    pub cleared: MsFlags,
    /// Propagation changes, applied one by one after the mount.
    pub propagation: Vec<MsFlags>,
    /// Everything else, passed as file-system data.
    pub data: Vec<String>,
    /// runc's `tmpcopyup`: copy the original contents into a new tmpfs.
    pub tmpcopyup: bool,
    /// Recursive attributes (`rro`, `rnosuid`, ...), applied with mount_setattr(AT_RECURSIVE).
    pub rec_set: u64,
    pub rec_clear: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// runc's recursive mount options: (clear?, attribute).
fn recursive_attr(opt: &str) -> Option<(bool, u64)> {
    Some(match opt {
        "rro" => (false, MOUNT_ATTR_RDONLY),
        "rrw" => (true, MOUNT_ATTR_RDONLY),
        "rnosuid" => (false, MOUNT_ATTR_NOSUID),
        "rsuid" => (true, MOUNT_ATTR_NOSUID),
        "rnodev" => (false, MOUNT_ATTR_NODEV),
        "rdev" => (true, MOUNT_ATTR_NODEV),
        "rnoexec" => (false, MOUNT_ATTR_NOEXEC),
        "rexec" => (true, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (false, MOUNT_ATTR_NODIRATIME),
        "rdiratime" => (true, MOUNT_ATTR_NODIRATIME),
        "rrelatime" => (false, MOUNT_ATTR_RELATIME | ATIME_CHANGE),
        "rnorelatime" => (true, MOUNT_ATTR_RELATIME | ATIME_CHANGE),
        "rnoatime" => (false, MOUNT_ATTR_NOATIME),
        "ratime" => (true, MOUNT_ATTR_NOATIME),
        "rstrictatime" => (false, MOUNT_ATTR_STRICTATIME),
        "rnostrictatime" => (true, MOUNT_ATTR_STRICTATIME),
        "rnosymfollow" => (false, MOUNT_ATTR_NOSYMFOLLOW),
        "rsymfollow" => (true, MOUNT_ATTR_NOSYMFOLLOW),
        _ => return None,
    })
}

/// Marks relatime changes, whose attribute value is 0 (internal bit, never passed on).
const ATIME_CHANGE: u64 = 1 << 63;

/// mount_setattr(2) with AT_RECURSIVE on the mount at `path`.
pub fn set_recursive_attrs(path: &str, set: u64, clear: u64, what: &Path) -> Result<()> {
    set_attrs(path, set, clear, true, what)
}

/// Makes the mount at `path` read-only and changes nothing else of it: mount_setattr(2) with
/// only MOUNT_ATTR_RDONLY, or, on kernels without it, a bind remount that keeps the flags the
/// mount has (statvfs). Either way only this mount changes, never its file system (a
/// devtmpfs shares its file system with the host's /dev).
pub fn make_read_only(path: &str, what: &Path) -> Result<()> {
    match set_attrs(path, MOUNT_ATTR_RDONLY, 0, false, what) {
        Err(e) if matches!(e.errno(), Some(libc::ENOSYS) | Some(libc::EPERM)) => {
            remount_bind(path, MsFlags::MS_RDONLY, what)
        }
        r => r,
    }
}

/// mount_setattr(2) on the mount at `path`, and with `recursive` on every mount under it.
fn set_attrs(path: &str, set: u64, clear: u64, recursive: bool, what: &Path) -> Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let atime = (set | clear) & (MOUNT_ATTR_ATIME_MASK | ATIME_CHANGE) != 0;
    let mut attr = MountAttr {
        attr_set: set & !ATIME_CHANGE,
        attr_clr: clear & !ATIME_CHANGE,
        propagation: 0,
        userns_fd: 0,
    };
    if atime {
        // Changing the atime mode needs the whole atime field cleared first.
        attr.attr_clr |= MOUNT_ATTR_ATIME_MASK;
        attr.attr_set &= !(clear & MOUNT_ATTR_ATIME_MASK);
    }
    let c = crate::sys::cstr(path)?;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let flags = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: mount_setattr with a valid C string and a mount_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("setting mount attributes on {}", what.display()));
    }
    Ok(())
}

/// Every mount option name dray understands (everything else is passed as file-system data);
/// `features` reports this list, and a unit test keeps it in sync with [`parse_options`].
pub const KNOWN_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "relatime",
    "remount",
    "ro",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "tmpcopyup",
    "unbindable",
    "rro",
    "rrw",
    "rnosuid",
    "rsuid",
    "rnodev",
    "rdev",
    "rnoexec",
    "rexec",
    "rnodiratime",
    "rdiratime",
    "rrelatime",
    "rnorelatime",
    "rnoatime",
    "ratime",
    "rstrictatime",
    "rnostrictatime",
    "rnosymfollow",
    "rsymfollow",
];

/// Parses mount options as runc does (`ro`, `nosuid`, `rbind`, `rprivate`, ..., data).
pub fn parse_options(opts: &[String]) -> Result<Options> {
    let mut o = Options {
        flags: MsFlags::empty(),
        cleared: MsFlags::empty(),
        propagation: Vec::new(),
        data: Vec::new(),
        tmpcopyup: false,
        rec_set: 0,
        rec_clear: 0,
    };
    for opt in opts {
        let (set, clear) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
            "iversion" => (MsFlags::MS_I_VERSION, MsFlags::empty()),
            "noiversion" => (MsFlags::empty(), MsFlags::MS_I_VERSION),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "tmpcopyup" => {
                o.tmpcopyup = true;
                continue;
            }
            p @ ("private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable") => {
                let base = match p.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                let rec = if p.starts_with('r') {
                    MsFlags::MS_REC
                } else {
                    MsFlags::empty()
                };
                o.propagation.push(base | rec);
                continue;
            }
            "idmap" | "ridmap" => {
                return Err(Error::msg(format!(
                    "mount option {opt:?} (idmapped mounts) is not supported"
                )))
            }
            r if recursive_attr(r).is_some() => {
                if let Some((clear, attr)) = recursive_attr(r) {
                    if clear {
                        o.rec_clear |= attr;
                        o.rec_set &= !attr;
                    } else {
                        o.rec_set |= attr;
                        o.rec_clear &= !attr;
                    }
                }
                continue;
            }
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        o.flags = (o.flags | set) & !clear;
        o.cleared = (o.cleared | clear) & !set;
    }
    Ok(o)
}

/// The flags a bind remount must keep because the kernel locks them (nosuid, nodev, noexec,
/// read-only and atime flags of the source mount), read with statvfs.
pub fn locked_flags(path: &str) -> MsFlags {
    use nix::sys::statvfs::FsFlags;
    let Ok(st) = nix::sys::statvfs::statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut m = MsFlags::empty();
    for (a, b) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(a) {
            m |= b;
        }
    }
    m
}

/// mount(2) with optional strings, naming the target in the error.
pub fn mount(
    src: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    what: &Path,
) -> Result<()> {
    nix::mount::mount(src, target, fstype, flags, data).ctx(|| format!("mounting {}", what.display()))
}

/// Remounts a bind mount with `flags` (plus the flags the kernel locks on it).
pub fn remount_bind(target: &str, flags: MsFlags, what: &Path) -> Result<()> {
    let keep = locked_flags(target) & !MsFlags::MS_RDONLY;
    let f = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | (flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT))
        | keep;
    mount(None, target, None, f, None, what).ctx(|| "remounting with its options".into())
}

/// Mount set-up context shared by every entry.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// O_PATH fd of the rootfs (after it was bind-mounted on itself).
    pub root: &'a OwnedFd,
    /// The bundle directory: relative bind sources are relative to it.
    pub bundle: &'a Path,
    pub cgroup: &'a CgroupPaths,
    /// True when the container has a new cgroup namespace.
    pub cgroupns: bool,
    /// True when the container runs in a new user namespace (sysfs may need a bind instead).
    pub userns: bool,
}

/// Mounts one checked `mounts` entry with `opts` (its own options, or those with read-only
/// deferred: see [`crate::rootfs::prepare`]).
pub fn mount_entry(ctx: &Ctx, pm: &PlannedMount, opts: &Options) -> Result<()> {
    let m = &pm.mount;
    let dest = pm.destination();
    let typ = pm.typ();
    let is_bind = pm.bind;
    let step = || format!("mount {} ({typ})", dest.display());
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(ctx, dest, opts).ctx(step);
    }
    let data = opts.data.join(",");
    if is_bind {
        let src = crate::validate::bind_source(ctx.bundle, m)
            .ok_or_else(|| Error::spec(format!("bind mount {} has no source", dest.display())))?;
        let meta = std::fs::metadata(&src)
            .ctx(|| format!("bind source {}", src.display()))
            .ctx(step)?;
        let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
        let target = paths::open_or_create(ctx.root, dest, kind).ctx(step)?;
        let tpath = fd_path(target.as_raw_fd());
        let src_s = src.to_string_lossy();
        let rec = opts.flags & MsFlags::MS_REC;
        mount(Some(&src_s), &tpath, None, MsFlags::MS_BIND | rec, None, dest).ctx(step)?;
        // Bind mounts ignore most flags on the first call: remount to apply them. The target
        // fd still names the covered directory, so reopen it to reach the new mount.
        let target = paths::open_or_create(ctx.root, dest, kind).ctx(step)?;
        let tpath = fd_path(target.as_raw_fd());
        if !(opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)).is_empty() {
            remount_bind(&tpath, opts.flags, dest).ctx(step)?;
        }
        apply_propagation(&tpath, opts, dest).ctx(step)?;
        return apply_recursive(&tpath, opts, dest).ctx(step);
    }
    // procfs and sysfs: the directory that was checked is the one mounted on (no second
    // lookup that a swapped-in symlink could win).
    let checked = match typ {
        "proc" | "sysfs" => ordinary_directory(ctx.root, dest, typ)?,
        _ => None,
    };
    let target = match checked {
        Some(fd) => fd,
        None => paths::open_or_create(ctx.root, dest, Kind::Dir).ctx(step)?,
    };
    let tpath = fd_path(target.as_raw_fd());
    // tmpcopyup: keep a handle on the directory the tmpfs will cover, to copy it afterwards.
    let covered = if opts.tmpcopyup && typ == "tmpfs" {
        Some(
            crate::sys::openat2_in_root(
                ctx.root.as_raw_fd(),
                &paths::relative(dest),
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )
            .ctx(|| "opening the directory to copy up".into())
            .ctx(step)?,
        )
    } else {
        None
    };
    let src = m
        .source()
        .as_ref()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| typ.to_string());
    let data_opt = if data.is_empty() { None } else { Some(data.as_str()) };
    let flags = opts.flags & !MsFlags::MS_REMOUNT;
    let res = mount(Some(&src), &tpath, Some(typ), flags, data_opt, dest);
    match res {
        Ok(()) => {}
        // In a user namespace without its own network namespace the kernel refuses sysfs:
        // fall back to a recursive read-only bind of the host's /sys, as runc does.
        Err(e) if typ == "sysfs" && ctx.userns && e.errno() == Some(libc::EPERM) => {
            mount(
                Some("/sys"),
                &tpath,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
                dest,
            )
            .ctx(step)?;
            let target = paths::open_or_create(ctx.root, dest, Kind::Dir).ctx(step)?;
            remount_bind(&fd_path(target.as_raw_fd()), flags | MsFlags::MS_RDONLY, dest).ctx(step)?;
            return Ok(());
        }
        Err(e) => return Err(e).ctx(step),
    }
    let target = paths::open_or_create(ctx.root, dest, Kind::Dir).ctx(step)?;
    let tpath = fd_path(target.as_raw_fd());
    if let Some(orig) = covered {
        copy_tree(Path::new(&fd_path(orig.as_raw_fd())), Path::new(&tpath))
            .ctx(|| "tmpcopyup".into())
            .ctx(step)?;
    }
    apply_propagation(&tpath, opts, dest).ctx(step)?;
    apply_recursive(&tpath, opts, dest).ctx(step)
}

/// procfs and sysfs go only on a real directory of the rootfs (or where nothing is yet): an
/// image whose /proc is a symlink would otherwise have them mounted wherever it points, which
/// has been a way to defeat the masked paths (runc refuses the same way). Returns the opened
/// directory, None when there is nothing there yet.
fn ordinary_directory(root: &OwnedFd, dest: &Path, typ: &str) -> Result<Option<OwnedFd>> {
    let rel = paths::relative(dest);
    match crate::sys::openat2_in_root(root.as_raw_fd(), &rel, libc::O_PATH | libc::O_NOFOLLOW, 0) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e).ctx(|| format!("checking the mount point {}", dest.display())),
        Ok(fd) => {
            let st = nix::sys::stat::fstat(fd.as_raw_fd()).ctx(|| format!("stat {}", dest.display()))?;
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                return Ok(Some(fd));
            }
            let what = if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                "a symlink"
            } else {
                "not a directory"
            };
            Err(Error::msg(format!(
                "filesystem {typ:?} must be mounted on an ordinary directory: {} in the rootfs is {what}",
                dest.display()
            )))
        }
    }
}

fn apply_recursive(target: &str, opts: &Options, what: &Path) -> Result<()> {
    if opts.rec_set | opts.rec_clear == 0 {
        return Ok(());
    }
    set_recursive_attrs(target, opts.rec_set, opts.rec_clear, what)
}

/// Copies a directory tree (files, directories, symlinks, with modes and owners), for
/// `tmpcopyup`: the new tmpfs starts with what the image had there.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // src and dst may be /proc/self/fd links: follow them.
    let meta = std::fs::metadata(src).ctx(|| format!("stat {}", src.display()))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .ctx(|| format!("chmod {}", dst.display()))?;
    std::os::unix::fs::chown(dst, Some(meta.uid()), Some(meta.gid())).ctx(|| format!("chown {}", dst.display()))?;
    for e in std::fs::read_dir(src).ctx(|| format!("reading {}", src.display()))? {
        let e = e.ctx(|| format!("reading {}", src.display()))?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let m = std::fs::symlink_metadata(&from).ctx(|| format!("stat {}", from.display()))?;
        let ft = m.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to).ctx(|| format!("mkdir {}", to.display()))?;
            copy_tree(&from, &to)?;
            continue;
        }
        if ft.is_symlink() {
            let t = std::fs::read_link(&from).ctx(|| format!("readlink {}", from.display()))?;
            std::os::unix::fs::symlink(t, &to).ctx(|| format!("symlink {}", to.display()))?;
        } else if ft.is_file() {
            // O_NOFOLLOW on both ends: a file swapped for a symlink meanwhile (the host's root is
            // still visible here) is refused instead of followed.
            use std::os::unix::fs::OpenOptionsExt;
            let mut src = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&from)
                .ctx(|| format!("opening {}", from.display()))?;
            let mut dst = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(m.mode() & 0o7777)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&to)
                .ctx(|| format!("creating {}", to.display()))?;
            std::io::copy(&mut src, &mut dst).ctx(|| format!("copying {}", from.display()))?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(m.mode() & 0o7777))
                .ctx(|| format!("chmod {}", to.display()))?;
        } else {
            // Device nodes, fifos and sockets are not copied up.
            continue;
        }
        std::os::unix::fs::lchown(&to, Some(m.uid()), Some(m.gid())).ctx(|| format!("chown {}", to.display()))?;
    }
    Ok(())
}

fn apply_propagation(target: &str, opts: &Options, what: &Path) -> Result<()> {
    for p in &opts.propagation {
        mount(None, target, None, *p, None, what).ctx(|| "setting mount propagation".into())?;
    }
    Ok(())
}

/// A `cgroup`/`cgroup2` mount: the container's own cgroup, read-only if asked.
///
/// On a pure v2 host with a cgroup namespace a fresh cgroup2 is mounted; otherwise the
/// container's cgroup directories are bind-mounted (v1 and hybrid: a tmpfs with one directory
/// per hierarchy, named like on the host).
fn mount_cgroup(ctx: &Ctx, dest: &Path, opts: &Options) -> Result<()> {
    let flags = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    let pure_v2 = ctx.cgroup.is_pure_v2();
    let target = paths::open_or_create(ctx.root, dest, Kind::Dir)?;
    let tpath = fd_path(target.as_raw_fd());
    if pure_v2 {
        if ctx.cgroupns {
            return mount(Some("cgroup2"), &tpath, Some("cgroup2"), flags, None, dest);
        }
        let d = &ctx.cgroup.dirs[0];
        mount(
            Some(&d.path.to_string_lossy()),
            &tpath,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
            dest,
        )?;
        let target = paths::open_or_create(ctx.root, dest, Kind::Dir)?;
        return remount_bind(&fd_path(target.as_raw_fd()), flags, dest);
    }
    let tflags = flags & !MsFlags::MS_RDONLY;
    mount(Some("tmpfs"), &tpath, Some("tmpfs"), tflags, Some("mode=755"), dest)?;
    // The new tmpfs is empty and nothing of the container runs yet: its entries are made
    // relative to its root instead of resolving each path from the rootfs again.
    let base = paths::open_or_create(ctx.root, dest, Kind::Dir)?;
    let mut subs = Vec::new();
    for d in &ctx.cgroup.dirs {
        let Some(name) = d.mountpoint.file_name() else { continue };
        let sub = dest.join(name);
        let t = paths::mkdir_open_at(&base, name).ctx(|| format!("creating {}", sub.display()))?;
        mount(
            Some(&d.path.to_string_lossy()),
            &fd_path(t.as_raw_fd()),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
            &sub,
        )?;
        // Co-mounted controllers ("cpu,cpuacct") are also reachable by each name.
        let n = name.to_string_lossy();
        if n.contains(',') {
            for c in n.split(',') {
                let link = crate::sys::cstr(c)?;
                let to = crate::sys::cstr(&*n)?;
                // SAFETY: symlinkat with valid C strings; an existing link is fine.
                unsafe { libc::symlinkat(to.as_ptr(), base.as_raw_fd(), link.as_ptr()) };
            }
        }
        subs.push((name.to_owned(), sub));
    }
    // The options (read-only, nosuid...) go on the tmpfs and every bind at once.
    let base_path = fd_path(base.as_raw_fd());
    if let Some(attrs) = mount_attrs(flags) {
        if attrs == 0 {
            return Ok(());
        }
        match set_recursive_attrs(&base_path, attrs, 0, dest) {
            Ok(()) => return Ok(()),
            // No mount_setattr, or a seccomp profile (nested runtimes) that refuses it.
            Err(e) if matches!(e.errno(), Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EINVAL)) => {}
            Err(e) => return Err(e),
        }
    }
    // Kernels without mount_setattr, or atime options it would need to clear: one remount
    // per mount.
    for (name, sub) in &subs {
        let t = paths::open_at(&base, name)?;
        remount_bind(&fd_path(t.as_raw_fd()), flags, sub)?;
    }
    // The tmpfs itself, filled, goes read-only last, as every read-only tmpfs does
    // (crate::rootfs::prepare).
    if flags.contains(MsFlags::MS_RDONLY) {
        make_read_only(&base_path, dest)?;
    }
    Ok(())
}

/// The mount_setattr attributes for mount flags, when they are only ro/nosuid/nodev/noexec
/// (plus the default relatime): what setting attributes recursively can express without
/// clearing any (a cleared attribute may be locked in a user namespace).
fn mount_attrs(flags: MsFlags) -> Option<u64> {
    let simple = MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC
        | MsFlags::MS_RELATIME
        | MsFlags::MS_SILENT;
    if !(flags & !simple).is_empty() {
        return None;
    }
    let mut a = 0;
    for (f, attr) in [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
    ] {
        if flags.contains(f) {
            a |= attr;
        }
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn known_options_are_all_parsed() {
        for o in KNOWN_OPTIONS {
            let p = parse_options(&[o.to_string()]).unwrap();
            assert!(p.data.is_empty(), "{o} fell through to data");
        }
    }

    #[test]
    fn parses_flags_propagation_and_data() {
        let o = parse_options(&s(&["rbind", "ro", "nosuid", "rprivate", "mode=755", "size=65536k"])).unwrap();
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        );
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert_eq!(o.data, s(&["mode=755", "size=65536k"]));
        let o = parse_options(&s(&["ro", "rw"])).unwrap();
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.cleared.contains(MsFlags::MS_RDONLY));
        let o = parse_options(&s(&["rro", "rnosuid", "rsuid", "rnoatime"])).unwrap();
        assert_eq!(o.rec_set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOATIME);
        assert_eq!(o.rec_clear, MOUNT_ATTR_NOSUID);
        assert!(parse_options(&s(&["idmap"])).is_err());
    }
}
