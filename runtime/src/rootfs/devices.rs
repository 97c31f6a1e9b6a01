//! The container's /dev: the default devices (config-linux.md "Default Devices"), the
//! configured `linux.devices`, and the standard symlinks.

use super::paths::{self, Kind};
use crate::error::{Context, Error, Result};
use crate::sys::fd_path;
use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// One device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    /// S_IFCHR, S_IFBLK or S_IFIFO.
    pub kind: libc::mode_t,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The character devices every container gets (config-linux.md "Default Devices"): name under
/// /dev, major, minor. The device cgroup's default rules allow the same nodes
/// ([`crate::cgroups::devices::default_allowed`]).
pub const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// The default devices every container gets.
pub fn defaults() -> Vec<Node> {
    DEFAULT_DEVICES
        .iter()
        .map(|(n, ma, mi)| Node {
            path: PathBuf::from("/dev").join(n),
            kind: libc::S_IFCHR,
            major: *ma,
            minor: *mi,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect()
}

/// Converts a `linux.devices` entry.
pub fn from_spec(d: &LinuxDevice) -> Result<Node> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::msg(format!(
                "device {}: type 'a' is only valid in device cgroup rules",
                d.path().display()
            )))
        }
    };
    let bad = !d.path().starts_with("/dev/")
        || d.path()
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir | std::path::Component::CurDir));
    if bad {
        return Err(Error::msg(format!(
            "device path {} is not a path under /dev",
            d.path().display()
        )));
    }

    Ok(Node {
        path: d.path().clone(),
        kind,
        major: device_number(d, d.major(), "major")?,
        minor: device_number(d, d.minor(), "minor")?,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// A device number of `linux.devices`: 32 bits (12 for the major, 20 for the minor).
fn device_number(d: &LinuxDevice, n: i64, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::msg(format!("device {}: {what} {n} is out of range", d.path().display())))
}

/// Creates the device nodes inside the rootfs (see [`create`]). The umask is cleared meanwhile
/// so that mknod gives each node its exact mode, and each parent directory is resolved once.
pub fn create_all(root: &OwnedFd, nodes: &[Node], userns: bool) -> Result<()> {
    // SAFETY: umask only changes this process's file creation mask; restored below.
    let old = unsafe { libc::umask(0) };
    let mut dirs: Vec<(&Path, OwnedFd)> = Vec::new();
    let mut res = Ok(());
    for n in nodes {
        let parent = n.path.parent().unwrap_or(Path::new("/dev"));
        let dir = match dirs.iter().position(|(p, _)| *p == parent) {
            Some(i) => &dirs[i].1,
            None => match paths::mkdir_all(root, parent) {
                Ok(fd) => {
                    dirs.push((parent, fd));
                    &dirs[dirs.len() - 1].1
                }
                Err(e) => {
                    res = Err(e).ctx(|| format!("creating device {}", n.path.display()));
                    break;
                }
            },
        };
        res = create(root, dir, n, userns);
        if res.is_err() {
            break;
        }
    }
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    res
}

/// Creates a device node in `dir` (its parent, resolved inside the rootfs): mknod, or (in a
/// user namespace, where mknod is not allowed) a bind mount of the host's node onto an empty
/// file.
fn create(root: &OwnedFd, dir: &OwnedFd, n: &Node, userns: bool) -> Result<()> {
    let step = || format!("creating device {}", n.path.display());
    let name = n
        .path
        .file_name()
        .ok_or_else(|| Error::msg(format!("bad device path {}", n.path.display())))?;
    let cname = crate::sys::cstr(name)?;
    // An existing entry (from the image) is replaced.
    // SAFETY: unlinkat with a valid C string; failure (ENOENT) is fine.
    unsafe { libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0) };
    // A FIFO needs no privilege and has no device number (the kernel ignores a major/minor
    // given for it), so it is made with mknod even in a user namespace.
    let fifo = n.kind == libc::S_IFIFO;
    if userns && !fifo {
        // The host's node of the same path is bound in; it must really be a device node.
        let host = nix::fcntl::open(
            &n.path,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(|| format!("opening host device {}", n.path.display()))
        .ctx(step)?;
        // SAFETY: `host` is a new fd owned here.
        let host = unsafe { OwnedFd::from_raw_fd(host) };
        let st = nix::sys::stat::fstat(host.as_raw_fd()).ctx(step)?;
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt != libc::S_IFCHR && fmt != libc::S_IFBLK {
            return Err(Error::msg(format!(
                "host path {} is not a device node",
                n.path.display()
            )));
        }
        let target = paths::open_or_create(root, &n.path, Kind::File).ctx(step)?;
        let src = fd_path(host.as_raw_fd());
        return nix::mount::mount(
            Some(src.as_str()),
            fd_path(target.as_raw_fd()).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(step);
    }
    let dev = if fifo { 0 } else { libc::makedev(n.major, n.minor) };
    // SAFETY: mknodat with a valid C string.
    if unsafe { libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), n.kind | n.mode, dev) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(step);
    }
    // The mode is exact (no umask, see create_all). The owner is set through an fd of the node
    // after checking that it is the node just made (the directory may be the image's own /dev):
    // chown must never land on something swapped in.
    // SAFETY: openat with a valid dirfd and C string; the new fd is owned below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            cname.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).ctx(step);
    }
    // SAFETY: a new fd, owned here.
    let node = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = nix::sys::stat::fstat(node.as_raw_fd()).ctx(step)?;
    if st.st_mode & libc::S_IFMT != n.kind || st.st_rdev != dev {
        return Err(Error::msg(format!("{} changed while it was created", n.path.display())));
    }
    let empty = crate::sys::cstr("")?;
    // SAFETY: fchownat on an fd with AT_EMPTY_PATH.
    if unsafe { libc::fchownat(node.as_raw_fd(), empty.as_ptr(), n.uid, n.gid, libc::AT_EMPTY_PATH) } != 0 {
        return Err(std::io::Error::last_os_error()).ctx(step);
    }
    // chown clears setuid/setgid bits: put them back.
    if n.mode & 0o6000 != 0 {
        std::fs::set_permissions(
            fd_path(node.as_raw_fd()),
            std::os::unix::fs::PermissionsExt::from_mode(n.mode),
        )
        .ctx(step)?;
    }
    Ok(())
}

/// The standard /dev symlinks: fd, stdin, stdout, stderr, ptmx (to the container's devpts) and
/// core (when /proc/kcore exists).
pub fn symlinks(root: &OwnedFd) -> Result<()> {
    let dev = paths::mkdir_all(root, Path::new("/dev"))?;
    let mut links = vec![
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("core", "/proc/kcore"));
    }
    for (name, to) in links {
        let (n, t) = (crate::sys::cstr(name)?, crate::sys::cstr(to)?);
        if name == "ptmx" {
            // SAFETY: unlinkat with a valid C string; ENOENT is fine.
            unsafe { libc::unlinkat(dev.as_raw_fd(), n.as_ptr(), 0) };
        }
        // SAFETY: symlinkat with valid C strings.
        if unsafe { libc::symlinkat(t.as_ptr(), dev.as_raw_fd(), n.as_ptr()) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e).ctx(|| format!("creating /dev/{name}"));
            }
        }
    }
    Ok(())
}
