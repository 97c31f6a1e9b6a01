//! `cp`: files into and out of a container (docker's `cp`, the Engine API's
//! `/containers/{id}/archive`: a stat, a tar out, a tar in).
//!
//! Paths are the container's: they resolve as its processes see them, `..` stopping at its
//! root and symlinks resolved inside it (openat2 `RESOLVE_IN_ROOT`), so a hostile container
//! cannot aim a copy at a host file with a symlink, not even by swapping one in mid-copy. The
//! walk out and the applier in (`dray-archive`) work fd-relative beneath the resolved
//! directory and never follow a symlink.
//!
//! Where the files are: a running (or paused) container's root is `/proc/PID/root` of its
//! init, opened through a `/proc/PID` directory fd so that a recycled PID cannot stand in. That
//! root shows its volumes and binds as the container sees them, and what is mounted read-only
//! there stays read-only. A stopped container's file system is mounted for the copy on a
//! thread of its own, in a private mount namespace: the writable layer, then its volumes and
//! binds. The namespace, and every mount in it, ends with the thread, so a drayd killed
//! mid-copy leaks no mount.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use dray_archive::sys;

use super::record::Status;
use super::Containers;
use crate::error::{Error, IoContext, Result};

/// What is at a path of a container (docker's `ContainerPathStat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// st_mode: type and permission bits.
    pub mode: u32,
    pub mtime: i64,
    /// A symlink's target as stored in it.
    pub link_target: String,
}

/// A container path split for resolution: the parent (resolved in the container's root,
/// symlinks followed) and the last component (looked at without following it).
#[derive(Debug, PartialEq, Eq)]
struct Split {
    parent: CString,
    name: CString,
}

/// Splits `path` lexically (docker cleans container paths the same way): relative paths start
/// at the root, `..` stops there, and the root itself is the entry `.` of itself.
fn split(path: &str) -> Result<Split> {
    let mut parts: Vec<&OsStr> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let cstr =
        |b: &[u8]| CString::new(b).map_err(|_| Error::InvalidArgument(format!("path {path:?} contains a NUL byte")));
    match parts.split_last() {
        None => Ok(Split {
            parent: cstr(b"/")?,
            name: cstr(b".")?,
        }),
        Some((last, dirs)) => {
            let parent: PathBuf = std::iter::once(OsStr::new("/")).chain(dirs.iter().copied()).collect();
            Ok(Split {
                parent: cstr(parent.as_os_str().as_bytes())?,
                name: cstr(last.as_bytes())?,
            })
        }
    }
}

/// Opens the directory `parent` of the container whose root is `root`.
fn open_parent(root: &File, path: &str, parent: &CString) -> Result<File> {
    sys::open_in_root(root.as_fd(), parent, libc::O_RDONLY | libc::O_DIRECTORY)
        .map(File::from)
        .map_err(|e| not_found_or(path, e))
}

fn not_found_or(path: &str, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => {
            Error::NotFound(format!("Could not find the file {path} in container"))
        }
        Some(libc::EROFS) => Error::Conflict(format!(
            "{path} is on a read-only file system of the container (--read-only or a :ro mount)"
        )),
        _ => Error::io(format!("{path} in the container"), e),
    }
}

/// Stats `path` in the container whose root is `root`.
fn stat_in(root: &File, path: &str) -> Result<PathStat> {
    let s = split(path)?;
    let dir = open_parent(root, path, &s.parent)?;
    let st = sys::lstat(dir.as_fd(), &s.name).map_err(|e| not_found_or(path, e))?;
    let link_target = if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        let target = sys::readlink_at(dir.as_fd(), &s.name).map_err(|e| not_found_or(path, e))?;
        String::from_utf8_lossy(&target).into_owned()
    } else {
        String::new()
    };
    let name = if s.name.as_bytes() == b"." {
        "/".to_string()
    } else {
        String::from_utf8_lossy(s.name.as_bytes()).into_owned()
    };
    Ok(PathStat {
        name,
        size: st.st_size,
        mode: st.st_mode,
        mtime: st.st_mtime,
        link_target,
    })
}

/// `parent/name` as one C string.
fn join(s: &Split) -> Result<CString> {
    if s.name.as_bytes() == b"." {
        return Ok(s.parent.clone());
    }
    CString::new([s.parent.as_bytes(), b"/", s.name.as_bytes()].concat())
        .map_err(|_| Error::InvalidArgument("NUL in path".into()))
}

/// Writes `path` of the container whose root is `root` as a tar to `out`: the entry named
/// `name` (the path's own name when empty), a directory's `contents` at the top, and a
/// symlink at the end followed (inside the root) when `follow` is set.
fn pack_in<W: Write>(root: &File, path: &str, name: &str, contents: bool, follow: bool, out: W) -> Result<()> {
    let s = split(path)?;
    let dir = open_parent(root, path, &s.parent)?;
    let st = sys::lstat(dir.as_fd(), &s.name).map_err(|e| not_found_or(path, e))?;
    let is_link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
    let shown = if !name.is_empty() {
        name.to_string()
    } else if s.name.as_bytes() == b"." {
        "/".to_string()
    } else {
        String::from_utf8_lossy(s.name.as_bytes()).into_owned()
    };
    let reading = |e: std::io::Error| Error::io(format!("reading {path} in the container"), e);
    if contents {
        let sub = if is_link {
            sys::open_in_root(root.as_fd(), &join(&s)?, libc::O_RDONLY | libc::O_DIRECTORY)
        } else {
            sys::open_below(dir.as_fd(), &s.name, libc::O_RDONLY | libc::O_DIRECTORY, true)
        }
        .map(File::from)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR) => Error::InvalidArgument(format!(
                "{path} is not a directory (SRC/. names the contents of a directory)"
            )),
            _ => not_found_or(path, e),
        })?;
        dray_archive::pack::write_tree(&sub, dray_archive::pack::Mode::Tree, out)
            .map(drop)
            .map_err(reading)
    } else if follow && is_link {
        let target = sys::open_in_root(root.as_fd(), &join(&s)?, libc::O_PATH).map_err(|e| not_found_or(path, e))?;
        dray_archive::pack::write_opened(&target, &shown, out)
            .map(drop)
            .map_err(reading)
    } else {
        dray_archive::pack::write_entry(&dir, &s.name, &shown, out)
            .map(drop)
            .map_err(reading)
    }
}

/// Extracts the tar `r` into the directory `path` of the container whose root is `root`.
fn apply_in(root: &File, path: &str, r: impl Read, keep_owners: bool) -> Result<()> {
    let full = join(&split(path)?)?;
    let dir: OwnedFd =
        sys::open_in_root(root.as_fd(), &full, libc::O_RDONLY | libc::O_DIRECTORY).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::ENOTDIR) => Error::InvalidArgument(format!("extraction point {path} is not a directory")),
                _ => not_found_or(path, e),
            }
        })?;
    let owner = if keep_owners { None } else { Some((0, 0)) };
    dray_archive::apply::apply_at(dir, r, dray_archive::Options::copy(owner)).map_err(|e| match e {
        dray_archive::Error::Io { source, context } if source.raw_os_error() == Some(libc::EROFS) => {
            Error::Conflict(format!(
                "{context}: the destination is on a read-only file system of the container (--read-only or a :ro mount)"
            ))
        }
        e => e.into(),
    })?;
    Ok(())
}

/// One mount of a stopped container's view: a host directory or file over `target`.
#[derive(Debug, Clone)]
struct Bind {
    source: String,
    target: String,
    read_only: bool,
}

/// The mounts of a stopped container's view, made in the calling thread's (private) mount
/// namespace over `at`; returns the root.
fn mount_view(at: &Path, rootfs: &crate::snapshots::Mount, read_only: bool, binds: &[Bind]) -> Result<File> {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).ctx(|| "a private mount namespace for cp".into())?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .ctx(|| "making the copy's mount namespace private".into())?;
    let ro = if read_only {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    if rootfs.kind == "overlay" {
        let data = rootfs.options.join(",");
        mount(Some("overlay"), at, Some("overlay"), ro, Some(data.as_str()))
    } else {
        mount(
            Some(rootfs.source.as_str()),
            at,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .and_then(|()| {
            if read_only {
                mount(
                    None::<&str>,
                    at,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | ro,
                    None::<&str>,
                )
            } else {
                Ok(())
            }
        })
    }
    .ctx(|| "mounting the container's file system".into())?;
    let root = File::open(at).ctx(|| format!("opening {}", at.display()))?;
    for b in binds {
        let is_dir = std::fs::metadata(&b.source).map(|m| m.is_dir()).unwrap_or(true);
        let target = make_target(&root, &b.target, is_dir)?;
        let through = format!("/proc/thread-self/fd/{}", target.as_raw_fd());
        mount(
            Some(b.source.as_str()),
            through.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .ctx(|| format!("mounting {} at {}", b.source, b.target))?;
        if b.read_only {
            let top = make_target(&root, &b.target, is_dir)?;
            let through = format!("/proc/thread-self/fd/{}", top.as_raw_fd());
            mount(
                None::<&str>,
                through.as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .ctx(|| format!("making {} read-only", b.target))?;
        }
    }
    Ok(root)
}

/// Opens (O_PATH) the mount target `target` inside `root`, creating it (a directory, or an
/// empty file for a file bind) where missing, as the runtime would when the container starts.
fn make_target(root: &File, target: &str, is_dir: bool) -> Result<OwnedFd> {
    let c = CString::new(target.as_bytes()).map_err(|_| Error::InvalidArgument("NUL in a mount target".into()))?;
    match sys::open_in_root(root.as_fd(), &c, libc::O_PATH) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(Error::io(format!("mount target {target}"), e)),
        Err(_) => {}
    }
    let s = split(target)?;
    let mut cur: OwnedFd = root.as_fd().try_clone_to_owned().map_err(|e| Error::io("dup", e))?;
    let mut comps: Vec<&[u8]> = s
        .parent
        .as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    comps.push(s.name.as_bytes());
    let last = comps.len() - 1;
    for (i, comp) in comps.iter().enumerate() {
        let name = CString::new(*comp).map_err(|_| Error::InvalidArgument("NUL in a mount target".into()))?;
        let leaf_file = i == last && !is_dir;
        let opened = sys::open_in_root(
            cur.as_fd(),
            &name,
            if leaf_file {
                libc::O_PATH
            } else {
                libc::O_PATH | libc::O_DIRECTORY
            },
        );
        cur = match opened {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if leaf_file {
                    drop(sys::create_file(cur.as_fd(), &name).map_err(|e| Error::io(format!("creating {target}"), e))?);
                } else {
                    sys::mkdir(cur.as_fd(), &name, 0o755).map_err(|e| Error::io(format!("creating {target}"), e))?;
                }
                sys::open_beneath(cur.as_fd(), &name, libc::O_PATH)
                    .map_err(|e| Error::io(format!("opening {target}"), e))?
            }
            Err(e) => return Err(Error::io(format!("mount target {target}"), e)),
        };
    }
    Ok(cur)
}

impl Containers {
    /// Runs `f` on the root of container `key`'s file system: its init's root while it runs,
    /// otherwise a private mount of its layers, volumes and binds (see the module doc).
    async fn with_root<T: Send + 'static>(
        self: &Arc<Self>,
        key: &str,
        f: impl FnOnce(&File) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let c = self.find(key)?;
        let rec = c.record();
        let live =
            matches!(rec.state.status, Status::Running | Status::Paused | Status::Restarting) && rec.state.pid > 0;
        if live {
            let pid = rec.state.pid;
            let id = rec.id.clone();
            let root = tokio::task::spawn_blocking(move || -> Result<Option<File>> {
                // The /proc/PID fd pins the process: once it is open, opening its root fails
                // rather than reaching whatever takes the PID over. That it is the container's
                // process (the record's PID may be stale while an exit is being handled, and
                // recycled) is checked through the same directory: it is in the container's
                // cgroup (`/dray/ID`, from the spec drayd wrote).
                let Ok(proc_dir) = File::open(format!("/proc/{pid}")) else {
                    return Ok(None);
                };
                let cgroup = {
                    // SAFETY: a valid descriptor and C string; the result is a new descriptor.
                    let fd = unsafe {
                        libc::openat(
                            proc_dir.as_raw_fd(),
                            c"cgroup".as_ptr(),
                            libc::O_RDONLY | libc::O_CLOEXEC,
                        )
                    };
                    if fd < 0 {
                        return Ok(None);
                    }
                    // SAFETY: openat returned a new descriptor that nothing else owns.
                    let mut f = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                    let mut text = String::new();
                    let _ = std::io::Read::read_to_string(&mut f, &mut text);
                    text
                };
                if !cgroup.lines().any(|l| l.ends_with(&format!("/dray/{id}"))) {
                    return Ok(None);
                }
                // `root` is a magic link: opened through the pinned directory, not by path.
                // SAFETY: a valid descriptor and C string; the result is a new descriptor.
                let fd = unsafe {
                    libc::openat(
                        proc_dir.as_raw_fd(),
                        c"root".as_ptr(),
                        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    )
                };
                if fd < 0 {
                    return Ok(None);
                }
                // SAFETY: openat returned a new descriptor that nothing else owns.
                Ok(Some(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) }))
            })
            .await
            .map_err(|e| Error::io("cp", std::io::Error::other(e.to_string())))??;
            if let Some(root) = root {
                return tokio::task::spawn_blocking(move || f(&root))
                    .await
                    .map_err(|e| Error::io("cp", std::io::Error::other(e.to_string())))?;
            }
        }
        // Stopped (or just stopping): nothing may start it while its layers are mounted here.
        let _op = c.op.lock().await;
        let rec = c.record();
        if rec.state.status.is_live() || rec.state.pid > 0 {
            // It started (or its exit is still being handled) since the look above.
            return Err(Error::Conflict(format!(
                "container {} changed state during the copy: try again",
                rec.name
            )));
        }
        let mounts = self.store.snapshots.mounts(&rec.snapshot_key)?;
        let rootfs = mounts
            .into_iter()
            .next()
            .ok_or_else(|| Error::BadContent("the container has no root file system".into()))?;
        let binds: Vec<Bind> = rec
            .options
            .mounts
            .iter()
            .filter_map(|m| match m.kind.as_str() {
                "bind" => Some(Bind {
                    source: m.source.clone(),
                    target: m.target.clone(),
                    read_only: m.read_only,
                }),
                "volume" => Some(Bind {
                    source: self.volumes.mountpoint(&m.source),
                    target: m.target.clone(),
                    read_only: m.read_only,
                }),
                _ => None,
            })
            .collect();
        let read_only = rec.options.read_only_rootfs;
        let at = self.run_dir.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("dray-cp".into())
            .spawn(move || {
                // This thread's mount namespace is its own (unshared in mount_view) and ends
                // with it; it never runs other work.
                let r = mount_view(&at, &rootfs, read_only, &binds).and_then(|root| f(&root));
                let _ = tx.send(r);
            })
            .map_err(|e| Error::io("starting the copy thread", e))?;
        rx.await
            .map_err(|_| Error::io("cp", std::io::Error::other("the copy thread failed")))?
    }

    /// `cp`'s stat of `path` in container `key`.
    pub async fn stat_path(self: &Arc<Self>, key: &str, path: &str) -> Result<PathStat> {
        let path = path.to_string();
        self.with_root(key, move |root| stat_in(root, &path)).await
    }

    /// `cp CONTAINER:SRC`: `path` as a tar, its entry named `name` (the path's own name when
    /// empty), or a directory's contents at the top (`contents`).
    pub async fn copy_from<W: Write + Send + 'static>(
        self: &Arc<Self>,
        key: &str,
        path: &str,
        name: &str,
        contents: bool,
        follow: bool,
        out: W,
    ) -> Result<()> {
        let (path, name) = (path.to_string(), name.to_string());
        self.with_root(key, move |root| pack_in(root, &path, &name, contents, follow, out))
            .await
    }

    /// `cp ... CONTAINER:DEST`: the tar `r` extracted into the directory `path`; owned by root
    /// unless `keep_owners` (`-a`).
    pub async fn copy_to<R: Read + Send + 'static>(
        self: &Arc<Self>,
        key: &str,
        path: &str,
        r: R,
        keep_owners: bool,
    ) -> Result<()> {
        let path = path.to_string();
        let c = self.find(key)?;
        self.with_root(key, move |root| apply_in(root, &path, r, keep_owners))
            .await?;
        self.event(&c.record(), "copy", &[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(p: &str) -> (String, String) {
        let s = split(p).unwrap();
        (
            String::from_utf8(s.parent.into_bytes()).unwrap(),
            String::from_utf8(s.name.into_bytes()).unwrap(),
        )
    }

    #[test]
    fn container_paths_split_lexically_below_the_root() {
        assert_eq!(sp("/etc/passwd"), ("/etc".into(), "passwd".into()));
        assert_eq!(sp("etc/passwd"), ("/etc".into(), "passwd".into()));
        assert_eq!(sp("/"), ("/".into(), ".".into()));
        assert_eq!(sp("/../../etc/./x/"), ("/etc".into(), "x".into()));
        assert_eq!(sp("/a/b/.."), ("/".into(), "a".into()));
        assert!(split("/a\0b").is_err());
    }

    #[test]
    fn stat_and_pack_resolve_symlinks_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
        // An absolute symlink that would leave the root on the host resolves inside it.
        std::os::unix::fs::symlink("/etc", r.join("link")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/passwd", r.join("up")).unwrap();
        let root = File::open(r).unwrap();
        let st = stat_in(&root, "/link/passwd").unwrap();
        assert_eq!(st.size, 26);
        let st = stat_in(&root, "/up").unwrap();
        assert_eq!(st.mode & libc::S_IFMT, libc::S_IFLNK);
        assert_eq!(st.link_target, "../../../../etc/passwd");
        assert!(matches!(stat_in(&root, "/nope"), Err(Error::NotFound(_))));
        let mut out = Vec::new();
        pack_in(&root, "/up", "", false, true, &mut out).unwrap();
        let mut a = tar::Archive::new(&out[..]);
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_str(), Some("up"));
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        assert_eq!(s, "root:x:0:0::/root:/bin/sh\n");
    }
}
