//! Paths inside the container's root file system, resolved so that the image cannot redirect
//! them: every lookup goes through `openat2(RESOLVE_IN_ROOT)` from an fd of the rootfs, so a
//! symlink or `..` in the image is resolved as if the rootfs were `/`. Mounts are then made on
//! the opened fd (`/proc/self/fd/N`), never on a path that could be swapped in between.

use crate::error::{Context, Error, Result};
use crate::sys::openat2_in_root;
use std::ffi::OsStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// What to create at a missing mount target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// The path of `p` relative to the root, without a leading `/`; `..` is kept (resolved by the
/// kernel inside the root).
pub fn relative(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect()
}

/// Opens `path` inside `root` with O_PATH, creating missing directories (and, if `kind` is
/// File, the last component as an empty file). Returns an O_PATH fd of the target.
pub fn open_or_create(root: &OwnedFd, path: &Path, kind: Kind) -> Result<OwnedFd> {
    open_or_create_at(root, path, kind, 0)
}

/// Symlinks followed while creating one target, at most (as the kernel's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

fn open_or_create_at(root: &OwnedFd, path: &Path, kind: Kind, links: usize) -> Result<OwnedFd> {
    if links > MAX_LINKS {
        return Err(Error::msg(format!(
            "too many levels of symbolic links creating {}",
            path.display()
        )));
    }
    let rel = relative(path);
    match openat2_in_root(root.as_raw_fd(), &rel, libc::O_PATH, 0) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e).ctx(|| format!("resolving {} in the rootfs", path.display())),
    }
    let comps: Vec<&OsStr> = rel.iter().collect();
    // The deepest existing ancestor, searched upwards (usually only the last component is
    // missing); creation goes on from there.
    let mut start = 0;
    let mut dir = None;
    for k in (1..comps.len()).rev() {
        let prefix: PathBuf = comps[..k].iter().collect();
        match openat2_in_root(root.as_raw_fd(), &prefix, libc::O_PATH, 0) {
            Ok(fd) => {
                start = k;
                dir = Some(fd);
                break;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e).ctx(|| format!("resolving {} in the rootfs", prefix.display())),
        }
    }
    let mut dir = match dir {
        Some(d) => d,
        None => openat2_in_root(root.as_raw_fd(), Path::new("."), libc::O_PATH | libc::O_DIRECTORY, 0)
            .ctx(|| "opening the rootfs".into())?,
    };
    let mut cur: PathBuf = comps[..start].iter().collect();
    for (i, c) in comps.iter().enumerate().skip(start) {
        let last = i + 1 == comps.len();
        cur.push(c);
        if i == start {
            // Known to be missing (or the whole path was): straight to creating it.
        } else {
            match openat2_in_root(root.as_raw_fd(), &cur, libc::O_PATH, 0) {
                Ok(fd) => {
                    dir = fd;
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e).ctx(|| format!("resolving {} in the rootfs", cur.display())),
            }
        }
        if *c == OsStr::new("..") {
            return Err(Error::msg(format!("cannot create {} in the rootfs", path.display())));
        }
        let name = crate::sys::cstr(c)?;
        if last && kind == Kind::File {
            // SAFETY: openat with a valid C string; the new fd is closed right away.
            let fd = unsafe {
                libc::openat(
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                    0o644,
                )
            };
            if fd < 0 {
                return Err(std::io::Error::last_os_error())
                    .ctx(|| format!("creating {} in the rootfs", cur.display()));
            }
            // SAFETY: fd is a new fd we own.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        } else {
            // SAFETY: mkdirat with a valid C string.
            if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EEXIST) {
                    return Err(e).ctx(|| format!("creating directory {} in the rootfs", cur.display()));
                }
                // A dangling symlink: create what it points to, resolved inside the root.
                if let Ok(target) = nix::fcntl::readlinkat(Some(dir.as_raw_fd()), c.as_ref() as &Path) {
                    let target = PathBuf::from(target);
                    let base = if target.is_absolute() {
                        PathBuf::from("/")
                    } else {
                        Path::new("/").join(cur.parent().unwrap_or(Path::new("")))
                    };
                    let mut next = base.join(target);
                    for rest in &comps[i + 1..] {
                        next.push(rest);
                    }
                    return open_or_create_at(root, &next, kind, links + 1);
                }
            }
        }
        dir = openat2_in_root(root.as_raw_fd(), &cur, libc::O_PATH, 0)
            .ctx(|| format!("opening {} in the rootfs", cur.display()))?;
    }
    Ok(dir)
}

/// Creates directory `name` (one component) in `dir` and opens it with O_PATH, following no
/// symlink: for directories the container cannot have touched yet, such as a tmpfs the
/// runtime just mounted. An existing directory is fine.
pub fn mkdir_open_at(dir: &OwnedFd, name: &OsStr) -> Result<OwnedFd> {
    let c = crate::sys::cstr(name)?;
    // SAFETY: mkdirat with a valid dirfd and C string.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e).ctx(|| format!("mkdir {}", Path::new(name).display()));
        }
    }
    open_at(dir, name)
}

/// Opens directory `name` (one component) in `dir` with O_PATH, following no symlink.
pub fn open_at(dir: &OwnedFd, name: &OsStr) -> Result<OwnedFd> {
    let c = crate::sys::cstr(name)?;
    // SAFETY: openat with a valid dirfd and C string; the new fd is owned below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("opening {}", Path::new(name).display()));
    }
    // SAFETY: fd is a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates directories for `path` inside `root` and returns an O_PATH fd of the last one.
pub fn mkdir_all(root: &OwnedFd, path: &Path) -> Result<OwnedFd> {
    open_or_create(root, path, Kind::Dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_follows_symlinks_inside_the_root_only() {
        let base = std::env::temp_dir().join(format!("dray-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (root, outside) = (base.join("root"), base.join("outside"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // A hostile image: /evil -> the absolute host path of `outside`.
        std::os::unix::fs::symlink(&outside, root.join("evil")).unwrap();
        let rfd = nix::fcntl::open(
            &root,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        // SAFETY: new fd owned here.
        let rfd = unsafe { OwnedFd::from_raw_fd(rfd) };
        let fd = open_or_create(&rfd, Path::new("/evil/x/y"), Kind::File).unwrap();
        let target = std::fs::read_link(crate::sys::fd_path(fd.as_raw_fd())).unwrap();
        assert!(target.starts_with(&root), "{target:?} escaped the root");
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "something was created outside"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
