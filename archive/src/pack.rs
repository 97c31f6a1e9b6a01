//! The way back from a file tree to a tar: `export` (a container's whole file system, from
//! a private read-only mount of it) and `commit` (an overlay upper directory as an OCI layer:
//! whiteout devices become `.wh.NAME`, opaque directories get `.wh..wh..opq`).
//!
//! The walk is fd-relative (openat with O_NOFOLLOW, fstatat, readlinkat): a running container
//! that swaps a directory for a symlink mid-walk makes the walk fail or record the symlink,
//! never read a host file. Hard links are kept as links to the first name seen.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use crate::writer::{Header, Kind, TarWriter};

/// What the tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A plain tree (export).
    Tree,
    /// An overlayfs upper directory: a layer diff (commit).
    OverlayUpper,
}

fn openat(dir: &impl AsFd, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string and `dir` an open descriptor; the result is a new
    // descriptor that nothing else owns.
    let fd = unsafe {
        libc::openat(
            dir.as_fd().as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn lstat_at(dir: &impl AsFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: all-zero is a valid `stat`; fstatat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, C string and out pointer.
    let r = unsafe {
        libc::fstatat(
            dir.as_fd().as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW | if name.is_empty() { libc::AT_EMPTY_PATH } else { 0 },
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// The extended attributes of an open file (overlay's own `trusted.overlay.*` left out).
fn xattrs(fd: &impl AsFd) -> Vec<(String, Vec<u8>)> {
    let raw = fd.as_fd().as_raw_fd();
    let mut names = vec![0u8; 4096];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::flistxattr(raw, names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let key = String::from_utf8_lossy(name).into_owned();
        if key.starts_with("trusted.overlay.") {
            continue;
        }
        let Ok(c) = CString::new(name) else { continue };
        let mut val = vec![0u8; 65536];
        // SAFETY: valid descriptor, C string and buffer.
        let m = unsafe { libc::fgetxattr(raw, c.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        if m >= 0 {
            val.truncate(m as usize);
            out.push((key, val));
        }
    }
    out
}

/// Whether `fd` is a directory of a kernel pseudo file system (procfs, sysfs, cgroupfs, ...):
/// their files describe the kernel, not the container, and some are endless (`/proc/kcore`).
/// A walk through a running container's root records such a directory but not its contents,
/// as docker's export shows an empty `/proc`.
fn is_pseudo_fs(fd: &impl AsFd) -> bool {
    const PSEUDO: [i64; 9] = [
        0x9fa0,      // proc
        0x6265_6572, // sysfs
        0x0027_e0eb, // cgroup
        0x6367_7270, // cgroup2
        0x6462_6720, // debugfs
        0x7472_6163, // tracefs
        0x7363_6673, // securityfs
        0xcafe_4a11, // bpf
        0x1980_0202, // mqueue
    ];
    // SAFETY: all-zero is a valid `statfs`; fstatfs fills it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and out pointer.
    let r = unsafe { libc::fstatfs(fd.as_fd().as_raw_fd(), &mut st) };
    r == 0 && PSEUDO.contains(&(st.f_type as i64))
}

fn is_opaque(fd: &impl AsFd) -> bool {
    let mut v = [0u8; 4];
    // SAFETY: valid descriptor, C string literal and buffer.
    let n = unsafe {
        libc::fgetxattr(
            fd.as_fd().as_raw_fd(),
            c"trusted.overlay.opaque".as_ptr(),
            v.as_mut_ptr().cast(),
            v.len(),
        )
    };
    n == 1 && v[0] == b'y'
}

struct Walk<'a, W: Write> {
    tar: &'a mut TarWriter<W>,
    mode: Mode,
    links: HashMap<(u64, u64), String>,
}

/// The deepest nesting of directories a walk enters.
pub const MAX_DEPTH: usize = 512;

/// Opens the regular file `name` of `dir` for reading, and only if it is still the file that
/// `expect` describes: it is reached with O_PATH (which opens nothing: a FIFO or a device
/// swapped in by a running container is never opened, so a walk cannot block on a FIFO or
/// start a host device's driver), checked, then reopened through its own descriptor.
fn open_regular(dir: &OwnedFd, name: &CStr, expect: &libc::stat, shown: &str) -> io::Result<OwnedFd> {
    let path_fd = openat(dir, name, libc::O_PATH)?;
    let st = lstat_at(&path_fd, c"")?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_dev != expect.st_dev || st.st_ino != expect.st_ino {
        return Err(io::Error::other(format!("{shown} changed while it was read")));
    }
    reopen(&path_fd, libc::O_RDONLY)
}

/// Opens what `fd` (an O_PATH descriptor will do) refers to again, with `flags`, through the
/// descriptor itself: never by a path that could change meanwhile.
fn reopen(fd: &OwnedFd, flags: libc::c_int) -> io::Result<OwnedFd> {
    let p = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(io::Error::other)?;
    // SAFETY: a valid C string; the result is a new descriptor that nothing else owns.
    let r = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open returned a new descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

impl<W: Write> Walk<'_, W> {
    fn base(name: &str, st: &libc::stat, kind: Kind) -> Header {
        let mut h = Header::file(name, 0);
        h.kind = kind;
        h.mode = st.st_mode & 0o7777;
        h.uid = u64::from(st.st_uid);
        h.gid = u64::from(st.st_gid);
        h.mtime = st.st_mtime;
        h
    }

    /// The names in `dir`, sorted (a reproducible tar).
    fn names(dir: &OwnedFd) -> io::Result<Vec<CString>> {
        // Dir takes the (duplicated) descriptor over and closes it.
        let d =
            nix::dir::Dir::from_fd(std::os::fd::IntoRawFd::into_raw_fd(dir.try_clone()?)).map_err(io::Error::from)?;
        let mut names: Vec<CString> = Vec::new();
        for e in d.into_iter() {
            let e = e.map_err(io::Error::from)?;
            let n = e.file_name();
            if n.to_bytes() == b"." || n.to_bytes() == b".." {
                continue;
            }
            names.push(n.to_owned());
        }
        names.sort();
        Ok(names)
    }

    /// Everything beneath `dir`, its entries named `{prefix}NAME`. The walk is iterative (an
    /// explicit stack, one open directory per level): a container's deeply nested tree can
    /// neither overflow the thread's stack nor take more than [`MAX_DEPTH`] descriptors.
    fn dir(&mut self, dir: OwnedFd, prefix: String) -> io::Result<()> {
        struct Level {
            dir: OwnedFd,
            prefix: String,
            names: std::vec::IntoIter<CString>,
        }
        let names = Self::names(&dir)?.into_iter();
        let mut stack = vec![Level { dir, prefix, names }];
        while let Some(top) = stack.last_mut() {
            let Some(name) = top.names.next() else {
                stack.pop();
                continue;
            };
            let shown = String::from_utf8_lossy(name.to_bytes()).into_owned();
            if let Some((sub, sub_prefix)) = self.one(&top.dir, &name, &top.prefix, &shown)? {
                if stack.len() >= MAX_DEPTH {
                    return Err(io::Error::other(format!(
                        "{sub_prefix}: directories nested more than {MAX_DEPTH} deep"
                    )));
                }
                let names = Self::names(&sub)?.into_iter();
                stack.push(Level {
                    dir: sub,
                    prefix: sub_prefix,
                    names,
                });
            }
        }
        Ok(())
    }

    /// The entry `name` of `dir`, written as `{prefix}{shown}`; for a directory whose
    /// contents are to be walked, its descriptor and the prefix of its entries.
    fn one(&mut self, dir: &OwnedFd, name: &CStr, prefix: &str, shown: &str) -> io::Result<Option<(OwnedFd, String)>> {
        let path = format!("{prefix}{shown}");
        let st = match lstat_at(dir, name) {
            Ok(st) => st,
            // Gone since the listing (a running container): skipped.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let fmt = st.st_mode & libc::S_IFMT;
        if self.mode == Mode::OverlayUpper && fmt == libc::S_IFCHR && st.st_rdev == 0 {
            // A whiteout: the name was deleted.
            let wh = format!("{prefix}.wh.{shown}");
            let mut h = Header::file(&wh, 0);
            h.mtime = st.st_mtime;
            return self.tar.header(&h).map(|()| None);
        }
        match fmt {
            libc::S_IFDIR => {
                let fd = openat(dir, name, libc::O_RDONLY | libc::O_DIRECTORY)?;
                let mut h = Self::base(&format!("{path}/"), &st, Kind::Dir);
                h.xattrs = xattrs(&fd);
                self.tar.header(&h)?;
                if self.mode == Mode::OverlayUpper && is_opaque(&fd) {
                    let mut o = Header::file(&format!("{path}/.wh..wh..opq"), 0);
                    o.mtime = st.st_mtime;
                    self.tar.header(&o)?;
                }
                if !is_pseudo_fs(&fd) {
                    return Ok(Some((fd, format!("{path}/"))));
                }
            }
            libc::S_IFREG => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&key) {
                        let mut h = Self::base(&path, &st, Kind::Hardlink);
                        h.link = first.clone();
                        return self.tar.header(&h).map(|()| None);
                    }
                    self.links.insert(key, path.clone());
                }
                let fd = open_regular(dir, name, &st, &path)?;
                let mut h = Self::base(&path, &st, Kind::File);
                h.size = st.st_size as u64;
                h.xattrs = xattrs(&fd);
                self.tar.entry(&h, File::from(fd))?;
            }
            libc::S_IFLNK => {
                let mut h = Self::base(&path, &st, Kind::Symlink);
                h.link = String::from_utf8_lossy(&crate::sys::readlink_at(dir.as_fd(), name)?).into_owned();
                self.tar.header(&h)?;
            }
            libc::S_IFCHR | libc::S_IFBLK => {
                let kind = if fmt == libc::S_IFCHR { Kind::Char } else { Kind::Block };
                let mut h = Self::base(&path, &st, kind);
                h.devmajor = libc::major(st.st_rdev);
                h.devminor = libc::minor(st.st_rdev);
                self.tar.header(&h)?;
            }
            libc::S_IFIFO => self.tar.header(&Self::base(&path, &st, Kind::Fifo))?,
            // Sockets are not kept in images (docker skips them too).
            _ => {}
        }
        Ok(None)
    }
}

/// Writes the entry `name` of the directory `parent` as a tar to `out`, named `as_name` (with
/// everything beneath it, for a directory): `cp` out of a container. The walk crosses mounts
/// below the entry (a container's volumes, seen through its root) but never follows a symlink.
pub fn write_entry<W: Write>(parent: &File, name: &CStr, as_name: &str, out: W) -> io::Result<W> {
    let mut tar = TarWriter::new(out);
    let fd: OwnedFd = parent.try_clone()?.into();
    let mut walk = Walk {
        tar: &mut tar,
        mode: Mode::Tree,
        links: HashMap::new(),
    };
    if let Some((sub, prefix)) = walk.one(&fd, name, "", as_name)? {
        walk.dir(sub, prefix)?;
    }
    tar.finish()
}

/// Writes the file or directory open at `fd` (an O_PATH descriptor will do) as a tar entry
/// named `as_name` to `out`: `cp -L`, where a symlink was followed to reach it.
pub fn write_opened<W: Write>(fd: &OwnedFd, as_name: &str, out: W) -> io::Result<W> {
    let mut tar = TarWriter::new(out);
    let mut walk = Walk {
        tar: &mut tar,
        mode: Mode::Tree,
        links: HashMap::new(),
    };
    let st = lstat_at(fd, c"")?;
    let fmt = st.st_mode & libc::S_IFMT;
    match fmt {
        libc::S_IFDIR => {
            let d = reopen(fd, libc::O_RDONLY | libc::O_DIRECTORY)?;
            let mut h = Walk::<W>::base(&format!("{as_name}/"), &st, Kind::Dir);
            h.xattrs = xattrs(&d);
            walk.tar.header(&h)?;
            if !is_pseudo_fs(&d) {
                walk.dir(d, format!("{as_name}/"))?;
            }
        }
        libc::S_IFREG => {
            let f = reopen(fd, libc::O_RDONLY)?;
            let mut h = Walk::<W>::base(as_name, &st, Kind::File);
            h.size = st.st_size as u64;
            h.xattrs = xattrs(&f);
            walk.tar.entry(&h, File::from(f))?;
        }
        libc::S_IFCHR | libc::S_IFBLK => {
            let kind = if fmt == libc::S_IFCHR { Kind::Char } else { Kind::Block };
            let mut h = Walk::<W>::base(as_name, &st, kind);
            h.devmajor = libc::major(st.st_rdev);
            h.devminor = libc::minor(st.st_rdev);
            walk.tar.header(&h)?;
        }
        libc::S_IFIFO => walk.tar.header(&Walk::<W>::base(as_name, &st, Kind::Fifo))?,
        _ => {}
    }
    tar.finish()
}

/// Writes the tree under `root` (an open directory) as a tar to `out`.
pub fn write_tree<W: Write>(root: &File, mode: Mode, out: W) -> io::Result<W> {
    let mut tar = TarWriter::new(out);
    let fd: OwnedFd = root.try_clone()?.into();
    Walk {
        tar: &mut tar,
        mode,
        links: HashMap::new(),
    }
    .dir(fd, String::new())?;
    tar.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_tree_nested_too_deep_is_refused_not_overflowed() {
        let d = tempfile::tempdir().unwrap();
        // Relative mkdirs, one level at a time (a full path would exceed PATH_MAX).
        let root = File::open(d.path()).unwrap();
        let mut cur: OwnedFd = root.try_clone().unwrap().into();
        for _ in 0..(MAX_DEPTH + 5) {
            crate::sys::mkdir(cur.as_fd(), c"d", 0o755).unwrap();
            cur = crate::sys::open_dir(cur.as_fd(), c"d").unwrap();
        }
        let e = write_tree(&root, Mode::Tree, std::io::sink()).unwrap_err();
        assert!(e.to_string().contains("nested more than"), "{e}");
    }

    #[test]
    fn a_tree_round_trips_through_the_tar_crate() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("etc/sub")).unwrap();
        std::fs::write(r.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::hard_link(r.join("etc/passwd"), r.join("etc/sub/again")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", r.join("link")).unwrap();
        nix::unistd::mkfifo(&r.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let root = File::open(r).unwrap();
        let bytes = write_tree(&root, Mode::Tree, Vec::new()).unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().display().to_string();
            let t = e.header().entry_type();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.display().to_string())
                .unwrap_or_default();
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            seen.push(format!("{p} {t:?} {link} {}", s.len()));
        }
        assert_eq!(
            seen,
            [
                "etc/ Directory  0",
                "etc/passwd Regular  26",
                "etc/sub/ Directory  0",
                "etc/sub/again Link etc/passwd 0",
                "fifo Fifo  0",
                "link Symlink /etc/passwd 0",
            ]
        );
    }
}
