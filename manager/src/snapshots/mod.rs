//! Snapshots: directories that layers are unpacked into and containers run on, and the mounts
//! that stack them. The snapshotter never mounts anything itself: it returns [`Mount`]s (as
//! containerd's snapshotters do) for whoever mounts them (the shim, or a view).
//!
//! Overlay layout, one numbered directory per snapshot (short paths keep many layers within
//! the kernel's one-page limit on mount options):
//!
//! ```text
//! snapshots/<id>/fs     the layer's files (upper dir while active)
//! snapshots/<id>/work   overlayfs work dir (active snapshots)
//! ```
//!
//! The native snapshotter (where overlayfs cannot be mounted on the data root) keeps the same
//! layout, but each snapshot's `fs` is a full copy of its parent's with the layer applied on
//! top (whiteouts delete), and its mounts are binds.
//!
//! Records live in `meta`; a directory without a record (a crash between the two) is removed
//! by [`Snapshotter::recover`], and so is an active snapshot that an interrupted unpack left.

use std::fs;
use std::path::{Path, PathBuf};

use crate::config::SnapshotterKind;
use crate::error::{Error, IoContext, Result};
use crate::meta::{Meta, SnapshotRecord};

/// A mount as containerd describes one: type, source, options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Prefix of the keys of snapshots that an unpack is filling.
pub const EXTRACT_PREFIX: &str = "extract-";

/// The snapshotter: overlay, or native copies.
pub struct Snapshotter {
    root: PathBuf,
    meta: Meta,
    kind: SnapshotterKind,
}

impl Snapshotter {
    /// Opens the snapshotter under `root` (for overlay, the daemon checked that overlayfs can
    /// be mounted there).
    pub fn open(root: &Path, meta: Meta, kind: SnapshotterKind) -> Result<Snapshotter> {
        fs::create_dir_all(root).ctx(|| format!("creating {}", root.display()))?;
        Ok(Snapshotter {
            root: root.to_path_buf(),
            meta,
            kind,
        })
    }

    /// The name of this snapshotter (docker's GraphDriver.Name).
    pub fn name(&self) -> &'static str {
        match self.kind {
            SnapshotterKind::Overlay => "overlayfs",
            SnapshotterKind::Native => "native",
        }
    }

    /// Which kind this is: overlay layers unpack independently and stack at mount time;
    /// native ones unpack onto a copy of their parent, one after the other.
    pub fn kind(&self) -> SnapshotterKind {
        self.kind
    }

    fn dir_of(&self, id: i64) -> PathBuf {
        self.root.join(id.to_string())
    }

    /// Where a snapshot's files are (the upper dir of an active one).
    pub fn fs_dir(&self, rec: &SnapshotRecord) -> PathBuf {
        self.dir_of(rec.id).join("fs")
    }

    /// A snapshot's record.
    pub fn stat(&self, key: &str) -> Result<SnapshotRecord> {
        self.meta
            .snapshot(key)?
            .ok_or_else(|| Error::NotFound(format!("snapshot {key} does not exist")))
    }

    /// Creates an active snapshot on `parent` (a committed one) and returns its record. The
    /// native snapshotter copies the parent's files into it.
    pub fn prepare(&self, key: &str, parent: Option<&str>) -> Result<SnapshotRecord> {
        let parent_rec = match parent {
            Some(p) => {
                let pr = self.stat(p)?;
                if !pr.committed {
                    return Err(Error::InvalidArgument(format!("parent snapshot {p} is not committed")));
                }
                Some(pr)
            }
            None => None,
        };
        let id = self.meta.insert_snapshot(key, parent)?;
        let dir = self.dir_of(id);
        let made = fs::create_dir_all(dir.join("fs")).and_then(|_| fs::create_dir_all(dir.join("work")));
        let copied = match (&made, self.kind, &parent_rec) {
            (Ok(()), SnapshotterKind::Native, Some(pr)) => copy_tree(&self.fs_dir(pr), &dir.join("fs")),
            _ => Ok(()),
        };
        if let Err(e) = made
            .map_err(|e| Error::io(format!("creating snapshot directory {}", dir.display()), e))
            .and(copied)
        {
            let _ = fs::remove_dir_all(&dir);
            let _ = self.meta.remove_snapshot(key);
            return Err(e);
        }
        self.stat(key)
    }

    /// Commits active snapshot `key` as `name` (read-only from now on).
    pub fn commit(&self, name: &str, key: &str, size: i64, parent: Option<&str>) -> Result<()> {
        let rec = self.stat(key)?;
        if let Some(p) = parent {
            if !self.stat(p)?.committed {
                return Err(Error::InvalidArgument(format!("parent snapshot {p} is not committed")));
            }
        }
        self.meta.commit_snapshot(key, name, size, parent)?;
        let _ = fs::remove_dir_all(self.dir_of(rec.id).join("work"));
        Ok(())
    }

    /// Removes a snapshot and its directory (refused while it has children).
    pub fn remove(&self, key: &str) -> Result<()> {
        let trash = self.detach(key)?;
        remove_tree(&trash)
    }

    /// Removes a snapshot's record and moves its directory aside (fast, for the collector's
    /// critical section); returns the directory to delete. A crash leaves a directory without
    /// a record, which `recover` removes.
    pub fn detach(&self, key: &str) -> Result<PathBuf> {
        let rec = self.stat(key)?;
        self.meta.remove_snapshot(key)?;
        let dir = self.dir_of(rec.id);
        let trash = self.root.join(format!("trash-{}", rec.id));
        match fs::rename(&dir, &trash) {
            Ok(()) => Ok(trash),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(trash),
            Err(_) => Ok(dir),
        }
    }

    /// The chain of directories from `key` down to its base layer.
    fn chain(&self, key: &str) -> Result<Vec<SnapshotRecord>> {
        let mut out = Vec::new();
        let mut cur = Some(key.to_string());
        while let Some(k) = cur {
            let r = self.stat(&k)?;
            cur = r.parent.clone();
            out.push(r);
            if out.len() > 1000 {
                return Err(Error::BadContent(format!("snapshot chain of {key} is too deep")));
            }
        }
        Ok(out)
    }

    /// The mounts that show snapshot `key`: for an active snapshot a read-write overlay on its
    /// parents; for a committed one a read-only view (a bind for a single layer).
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let chain = self.chain(key)?;
        let top = &chain[0];
        if self.kind == SnapshotterKind::Native {
            let mode = if top.committed { "ro" } else { "rw" };
            return Ok(vec![Mount {
                kind: "bind".into(),
                source: self.fs_dir(top).display().to_string(),
                options: vec!["rbind".into(), mode.into()],
            }]);
        }
        if !top.committed {
            let lowers: Vec<String> = chain[1..]
                .iter()
                .map(|r| self.fs_dir(r).display().to_string())
                .collect();
            if lowers.is_empty() {
                return Ok(vec![Mount {
                    kind: "bind".into(),
                    source: self.fs_dir(top).display().to_string(),
                    options: vec!["rbind".into(), "rw".into()],
                }]);
            }
            let dir = self.dir_of(top.id);
            return Ok(vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                options: vec![
                    format!("workdir={}", dir.join("work").display()),
                    format!("upperdir={}", dir.join("fs").display()),
                    format!("lowerdir={}", lowers.join(":")),
                ],
            }]);
        }
        if chain.len() == 1 {
            return Ok(vec![Mount {
                kind: "bind".into(),
                source: self.fs_dir(top).display().to_string(),
                options: vec!["rbind".into(), "ro".into()],
            }]);
        }
        let lowers: Vec<String> = chain.iter().map(|r| self.fs_dir(r).display().to_string()).collect();
        Ok(vec![Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec![format!("lowerdir={}", lowers.join(":"))],
        }])
    }

    /// Removes directories without a record, and active snapshots left by interrupted unpacks
    /// (their layers are unpacked again from the content store). Run before serving.
    pub fn recover(&self) -> Result<()> {
        let recs = self.meta.snapshots()?;
        for r in recs
            .iter()
            .filter(|r| !r.committed && r.key.starts_with(EXTRACT_PREFIX))
        {
            tracing::info!(key = %r.key, "removing the snapshot of an interrupted unpack");
            self.meta.remove_snapshot(&r.key)?;
            remove_tree(&self.dir_of(r.id))?;
        }
        let known: std::collections::HashSet<String> =
            self.meta.snapshots()?.iter().map(|r| r.id.to_string()).collect();
        for e in fs::read_dir(&self.root)
            .ctx(|| format!("listing {}", self.root.display()))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !known.contains(&name) {
                tracing::info!(dir = %e.path().display(), "removing a snapshot directory without a record");
                remove_tree(&e.path())?;
            }
        }
        Ok(())
    }

    /// Reads regular file `rel` (relative, e.g. `etc/passwd`) as the view of `key` shows it:
    /// its layers top down, as overlayfs merges them; a whiteout hides the lower ones. Paths
    /// are resolved beneath each layer with no symlink followed, so a hostile image cannot
    /// point drayd at a host file; a symlinked file reads as absent. At most `limit` bytes.
    pub fn read_file(&self, key: &str, rel: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        use dray_archive::sys;
        use std::io::Read;
        use std::os::fd::AsFd;
        use std::os::unix::fs::FileTypeExt;
        let name = sys::cstr(std::ffi::OsStr::new(rel.trim_start_matches('/')))
            .map_err(|e| Error::io(format!("path {rel}"), e))?;
        for r in self.chain(key)? {
            let dir = self.fs_dir(&r);
            let root = fs::File::open(&dir).ctx(|| format!("opening {}", dir.display()))?;
            let fd = match sys::open_beneath(root.as_fd(), &name, libc::O_PATH) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(_) => return Ok(None),
            };
            let meta = fs::File::from(fd).metadata().ctx(|| format!("stat {rel}"))?;
            if meta.file_type().is_char_device() || !meta.is_file() {
                return Ok(None);
            }
            let f = sys::open_beneath(root.as_fd(), &name, libc::O_RDONLY).ctx(|| format!("opening {rel}"))?;
            let mut buf = Vec::new();
            fs::File::from(f)
                .take(limit)
                .read_to_end(&mut buf)
                .ctx(|| format!("reading {rel}"))?;
            return Ok(Some(buf));
        }
        Ok(None)
    }

    /// docker's `diff` of active snapshot `key` against its parents (overlay only): every
    /// path of the writable layer as ('A'dded, 'C'hanged or 'D'eleted), sorted.
    pub fn changes(&self, key: &str) -> Result<Vec<(char, String)>> {
        use dray_archive::sys;
        use std::os::fd::AsFd;
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if self.kind != SnapshotterKind::Overlay {
            return Err(Error::Unsupported(
                "diff needs the overlay snapshotter (the native one keeps full copies)".into(),
            ));
        }
        let chain = self.chain(key)?;
        let upper = self.fs_dir(&chain[0]);
        let lowers: Vec<fs::File> = chain[1..]
            .iter()
            .map(|r| fs::File::open(self.fs_dir(r)).ctx(|| "opening a layer".to_string()))
            .collect::<Result<_>>()?;
        let in_lower = |rel: &str| -> bool {
            let Ok(c) = sys::cstr(std::ffi::OsStr::new(rel)) else {
                return false;
            };
            lowers
                .iter()
                .any(|l| sys::open_beneath(l.as_fd(), &c, libc::O_PATH).is_ok())
        };
        let mut out = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(dir) = stack.pop() {
            let abs = if dir.is_empty() {
                upper.clone()
            } else {
                upper.join(&dir)
            };
            let rd = fs::read_dir(&abs).ctx(|| format!("listing {}", abs.display()))?;
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let rel = if dir.is_empty() { name } else { format!("{dir}/{name}") };
                let m = e.path().symlink_metadata().ctx(|| format!("stat {rel}"))?;
                let kind = if m.file_type().is_char_device() && m.rdev() == 0 {
                    'D'
                } else if in_lower(&rel) {
                    'C'
                } else {
                    'A'
                };
                if m.is_dir() {
                    stack.push(rel.clone());
                }
                out.push((kind, format!("/{rel}")));
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(out)
    }

    /// Creates directory `rel` (mode 0755, owned by root) in the writable top of active
    /// snapshot `key` unless some layer has the path already (docker creates a missing
    /// WorkingDir).
    pub fn ensure_dir(&self, key: &str, rel: &str) -> Result<()> {
        use dray_archive::sys;
        use std::os::fd::AsFd;
        let rel = rel.trim_matches('/');
        if rel.is_empty() {
            return Ok(());
        }
        let name = sys::cstr(std::ffi::OsStr::new(rel)).map_err(|e| Error::io(format!("path {rel}"), e))?;
        let chain = self.chain(key)?;
        for r in &chain {
            let root = fs::File::open(self.fs_dir(r)).ctx(|| "opening a layer".to_string())?;
            match sys::open_beneath(root.as_fd(), &name, libc::O_PATH) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                _ => return Ok(()),
            }
        }
        let top = fs::File::open(self.fs_dir(&chain[0])).ctx(|| "opening the writable layer".to_string())?;
        let mut cur: std::os::fd::OwnedFd = top.into();
        for part in rel.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if part == ".." {
                return Err(Error::InvalidArgument(format!(
                    "working directory {rel} leaves the root"
                )));
            }
            let c = sys::cstr(std::ffi::OsStr::new(part)).map_err(|e| Error::io(format!("path {rel}"), e))?;
            match sys::mkdir(cur.as_fd(), &c, 0o755) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(format!("creating the working directory {rel}"), e)),
            }
            cur = sys::open_dir(cur.as_fd(), &c).map_err(|e| Error::io(format!("opening {rel}"), e))?;
        }
        Ok(())
    }

    /// Every snapshot record.
    pub fn list(&self) -> Result<Vec<SnapshotRecord>> {
        self.meta.snapshots()
    }
}

/// Copies a snapshot's tree with everything a layer can hold (owners, modes, hardlinks,
/// xattrs, device nodes, times): `cp -a` does all of it, with reflinks where the file system
/// has them.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg("--no-target-directory")
        .arg(from)
        .arg(to)
        .output()
        .map_err(|e| Error::io("running cp", e))?;
    if !out.status.success() {
        return Err(Error::io(
            format!("copying {} to {}", from.display(), to.display()),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ));
    }
    Ok(())
}

/// Removes a directory tree that may hold read-only directories and immutable-free files.
pub fn remove_tree(p: &Path) -> Result<()> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(format!("removing {}", p.display()), e)),
        _ => Ok(()),
    }
}

/// True when overlayfs can be mounted with directories under `dir` (the data root's file
/// system may not support it, e.g. overlay on overlay).
pub fn overlay_supported(dir: &Path) -> bool {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let base = dir.join(format!("overlay-check-{}", std::process::id()));
    let ok = (|| -> Option<()> {
        for d in ["lower", "upper", "work", "merged"] {
            fs::create_dir_all(base.join(d)).ok()?;
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            base.join("lower").display(),
            base.join("upper").display(),
            base.join("work").display()
        );
        mount(
            Some("overlay"),
            &base.join("merged"),
            Some("overlay"),
            MsFlags::empty(),
            Some(opts.as_str()),
        )
        .ok()?;
        let _ = umount2(&base.join("merged"), MntFlags::MNT_DETACH);
        Some(())
    })()
    .is_some();
    let _ = fs::remove_dir_all(&base);
    ok
}
