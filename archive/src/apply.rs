//! The layer applier: a tar stream (already decompressed) written beneath one directory.
//!
//! Parsing is the `tar` crate's (GNU long names, PAX records); every write is ours and
//! fd-relative:
//! - entry names are cleaned lexically; a name whose `..` climbs above the layer is refused;
//! - parent directories are opened with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so a
//!   symlink (absolute or relative) in the layer can never redirect a later write, and a
//!   missing parent is created one component at a time under the same rule;
//! - the final component is never followed (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW, linkat without
//!   AT_SYMLINK_FOLLOW); an existing entry is removed before a new one is created;
//! - hardlink targets are resolved by the same rules, so they name files of this layer only.
//!
//! Whiteouts (OCI image spec, "Representing Changes"): `.wh.NAME` becomes an overlay whiteout
//! (a 0/0 character device) and `.wh..wh..opq` the `trusted.overlay.opaque` xattr on its
//! directory; the native snapshotter instead deletes what they name. Owners, modes (with
//! setuid/setgid/sticky), xattrs (PAX `SCHILY.xattr.*`, including `security.capability`) and
//! mtimes are applied in that order; directories get their mtimes after their children.

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys;

/// What to do with whiteouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Keep them as overlayfs expects (the layer is a separate overlay lower dir).
    Overlay,
    /// Apply them: delete what they name (the layer is applied onto a copy of its parent).
    Delete,
    /// None: the stream is a copy of files, not a layer (`cp`), so `.wh.` names are ordinary
    /// files, and the destination directory's own owner, mode and times stay as they are.
    None,
}

/// How a stream is applied.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub whiteouts: Whiteouts,
    /// Every entry gets this owner instead of the archive's (`docker cp` without `-a`).
    pub owner: Option<(u32, u32)>,
    /// An existing directory is never replaced by a non-directory, nor a non-directory by a
    /// directory (moby's `NoOverwriteDirNonDir`, which `docker cp` sets).
    pub no_overwrite_dir_non_dir: bool,
    /// Entries may lie on other mounts below the root (a running container's volumes); a
    /// layer's never do.
    pub cross_mounts: bool,
    /// What the stream is called in messages ("layer", "archive").
    pub noun: &'static str,
    /// setuid/setgid bits and device nodes are written as given; without it they are
    /// dropped (a copy out of a container onto the host, unless `cp -a`: files a container
    /// chose must not become setuid programs or device nodes on the host).
    pub keep_special: bool,
}

impl Options {
    /// An image layer.
    pub fn layer(whiteouts: Whiteouts) -> Options {
        Options {
            whiteouts,
            owner: None,
            no_overwrite_dir_non_dir: false,
            cross_mounts: false,
            noun: "layer",
            keep_special: true,
        }
    }

    /// A copy of files (`cp`), owned by `owner` unless the archive's owners are kept.
    pub fn copy(owner: Option<(u32, u32)>) -> Options {
        Options {
            whiteouts: Whiteouts::None,
            owner,
            no_overwrite_dir_non_dir: true,
            cross_mounts: true,
            noun: "archive",
            keep_special: true,
        }
    }
}

/// What an applied layer added up to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Bytes of regular files written.
    pub size: u64,
    /// Entries written.
    pub entries: u64,
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Applies the layer stream `r` beneath `root` (an existing directory).
pub fn apply(root: &Path, r: impl Read, mode: Whiteouts) -> Result<Applied> {
    let root_fd: OwnedFd = std::fs::File::open(root)
        .map_err(|e| Error::io(format!("opening layer directory {}", root.display()), e))?
        .into();
    apply_at(root_fd, r, Options::layer(mode))
}

/// Applies the tar stream `r` beneath the open directory `root`.
pub fn apply_at(root: OwnedFd, r: impl Read, opts: Options) -> Result<Applied> {
    let mut a = Applier {
        root,
        cache: None,
        dir_times: Vec::new(),
        created: HashSet::new(),
        opts,
        out: Applied::default(),
    };
    let noun = opts.noun;
    let mut archive = tar::Archive::new(crate::guard::TarGuard::new(r));
    let entries = archive.entries().map_err(|e| bad(format!("reading the {noun}: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("reading the {noun}: {e}")))?;
        a.entry(&mut entry)?;
    }
    a.finish()?;
    Ok(a.out)
}

fn bad(msg: String) -> Error {
    Error::Bad(msg)
}

struct Applier {
    root: OwnedFd,
    /// The last parent directory opened (entries come mostly in order).
    cache: Option<(PathBuf, OwnedFd)>,
    /// Directories whose mtimes are set at the end (children change them).
    dir_times: Vec<(PathBuf, i64, i64)>,
    /// Paths this layer created (Delete mode: an opaque directory keeps them).
    created: HashSet<PathBuf>,
    opts: Options,
    out: Applied,
}

/// Cleans an entry name to a path relative to the layer root; None is the root itself.
pub fn clean_name(raw: &[u8]) -> Result<Option<PathBuf>> {
    clean_name_in(raw, "layer")
}

/// [`clean_name`] for a stream called `noun` in messages.
pub fn clean_name_in(raw: &[u8], noun: &str) -> Result<Option<PathBuf>> {
    let p = Path::new(OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(bad(format!(
                        "{noun} entry {:?} points outside the {noun}: refusing the {noun}",
                        String::from_utf8_lossy(raw)
                    )));
                }
            }
            Component::Prefix(_) => return Err(bad("unexpected path prefix".into())),
        }
    }
    Ok(if out.as_os_str().is_empty() { None } else { Some(out) })
}

struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    xattrs: Vec<(CString, Vec<u8>)>,
}

fn pax_meta<R: Read>(entry: &mut tar::Entry<'_, R>, noun: &str) -> Result<Meta> {
    let h = entry.header();
    let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let badh = |what: &str, e: io::Error| bad(format!("{noun} entry {name:?}: bad {what}: {e}"));
    let mut m = Meta {
        mode: h.mode().map_err(|e| badh("mode", e))? & 0o7777,
        uid: h.uid().map_err(|e| badh("uid", e))? as u32,
        gid: h.gid().map_err(|e| badh("gid", e))? as u32,
        mtime: (h.mtime().map_err(|e| badh("mtime", e))? as i64, 0),
        xattrs: Vec::new(),
    };
    if let Some(exts) = entry.pax_extensions().map_err(|e| badh("PAX header", e))? {
        for ext in exts {
            let ext = ext.map_err(|e| badh("PAX record", e))?;
            let key = ext.key_bytes();
            let val = ext.value_bytes();
            let num = |v: &[u8]| std::str::from_utf8(v).ok().and_then(|s| s.parse::<u64>().ok());
            match key {
                b"uid" => m.uid = num(val).ok_or_else(|| bad(format!("{noun} entry {name:?}: bad PAX uid")))? as u32,
                b"gid" => m.gid = num(val).ok_or_else(|| bad(format!("{noun} entry {name:?}: bad PAX gid")))? as u32,
                b"mtime" => {
                    if let Some((s, n)) = parse_pax_time(val) {
                        m.mtime = (s, n);
                    }
                }
                k if k.starts_with(b"SCHILY.xattr.") => {
                    let xk = &k[b"SCHILY.xattr.".len()..];
                    let xk =
                        CString::new(xk).map_err(|_| bad(format!("{noun} entry {name:?}: xattr name with NUL")))?;
                    m.xattrs.push((xk, val.to_vec()));
                }
                _ => {}
            }
        }
    }
    Ok(m)
}

/// A PAX time "SECONDS[.FRACTION]".
fn parse_pax_time(v: &[u8]) -> Option<(i64, i64)> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos = 0i64;
    for (i, c) in frac.bytes().take(9).enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        nanos += (c - b'0') as i64 * 10i64.pow(8 - i as u32);
    }
    Some((secs, if secs < 0 && nanos > 0 { -nanos } else { nanos }))
}

fn split(rel: &Path) -> (PathBuf, CString) {
    let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = rel.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
    // Components of a cleaned path hold no NUL (they came from a C-like tar field via
    // CString-safe bytes; checked in `clean_name`'s callers).
    (parent, CString::new(name).unwrap_or_default())
}

impl Applier {
    /// The entry's metadata, with the owner replaced where the options say so.
    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<Meta> {
        let mut m = pax_meta(entry, self.opts.noun)?;
        if let Some((uid, gid)) = self.opts.owner {
            (m.uid, m.gid) = (uid, gid);
        }
        if !self.opts.keep_special {
            m.mode &= !0o6000;
        }
        if self.opts.whiteouts == Whiteouts::None {
            // A copy: only the xattrs that any file may carry (user.*), as GNU tar does
            // without --xattrs-include; trusted.* and security.* belong to the source's
            // system, and overlay's are never a file's own.
            m.xattrs.retain(|(k, _)| k.to_bytes().starts_with(b"user."));
        }
        Ok(m)
    }

    /// Makes way for a new entry at `name`: removes what is there, unless it is a directory
    /// and `keep_dirs` says a directory is never replaced by a non-directory.
    fn replace(dir: BorrowedFd<'_>, name: &CStr, rel: &Path, keep_dirs: bool) -> Result<()> {
        if keep_dirs {
            if let Ok(st) = sys::lstat(dir, name) {
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    return Err(bad(format!(
                        "cannot overwrite directory {} with a non-directory",
                        rel.display()
                    )));
                }
            }
        }
        Self::remove(dir, name).map_err(|e| Error::io(format!("replacing {}", rel.display()), e))
    }

    /// Opens `path` beneath the root's tree, across mounts where the options allow.
    fn open_below(&self, dir: BorrowedFd<'_>, path: &CStr) -> io::Result<OwnedFd> {
        sys::open_below(dir, path, libc::O_RDONLY | libc::O_DIRECTORY, self.opts.cross_mounts)
    }

    fn io(&self, rel: &Path, what: &str, e: io::Error) -> Error {
        let noun = self.opts.noun;
        match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::EXDEV) | Some(libc::ENOTDIR) => bad(format!(
                "{noun} entry {}: {what}: a parent is a symlink or not a directory: refusing the {noun}",
                rel.display()
            )),
            _ => Error::io(format!("{noun} entry {}: {what}", rel.display()), e),
        }
    }

    /// The directory `parent` (relative), created (0755, root) where missing.
    fn parent(&mut self, parent: &Path, create: bool) -> Result<BorrowedFd<'_>> {
        if parent.as_os_str().is_empty() {
            return Ok(self.root.as_fd());
        }
        if self.cache.as_ref().is_some_and(|(p, _)| p == parent) {
            return Ok(self
                .cache
                .as_ref()
                .map(|(_, fd)| fd.as_fd())
                .unwrap_or(self.root.as_fd()));
        }
        let c = sys::cstr(parent.as_os_str()).map_err(|e| self.io(parent, "name", e))?;
        let fd = match self.open_below(self.root.as_fd(), &c) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => self.make_parents(parent)?,
            Err(e) => return Err(self.io(parent, "opening its directory", e)),
        };
        self.cache = Some((parent.to_path_buf(), fd));
        Ok(self
            .cache
            .as_ref()
            .map(|(_, fd)| fd.as_fd())
            .unwrap_or(self.root.as_fd()))
    }

    fn make_parents(&mut self, parent: &Path) -> Result<OwnedFd> {
        let mut cur: OwnedFd = self.root.try_clone().map_err(|e| Error::io("dup", e))?;
        let mut sofar = PathBuf::new();
        for comp in parent.components() {
            sofar.push(comp);
            let name = sys::cstr(comp.as_os_str()).map_err(|e| self.io(&sofar, "name", e))?;
            let next = match self.open_below(cur.as_fd(), &name) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    match sys::mkdir(cur.as_fd(), &name, 0o755) {
                        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(self.io(&sofar, "creating", e)),
                        _ => {}
                    }
                    self.created.insert(sofar.clone());
                    self.open_below(cur.as_fd(), &name)
                        .map_err(|e| self.io(&sofar, "opening", e))?
                }
                Err(e) => return Err(self.io(&sofar, "opening", e)),
            };
            cur = next;
        }
        Ok(cur)
    }

    /// Removes whatever is at `name` in `dir` (a directory with its contents).
    fn remove(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
        match sys::unlink(dir, name, false) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EISDIR) | Some(libc::EPERM)) => {
                let sub = sys::open_dir(dir, name)?;
                Self::clear_dir(sub.as_fd(), &|_| false)?;
                sys::unlink(dir, name, true)
            }
            Err(e) => Err(e),
        }
    }

    /// Removes every child of `dir` for which `keep` is false.
    fn clear_dir(dir: BorrowedFd<'_>, keep: &dyn Fn(&OsStr) -> bool) -> io::Result<()> {
        let dup = dir.try_clone_to_owned()?;
        let mut d = nix::dir::Dir::from_fd(std::os::fd::IntoRawFd::into_raw_fd(dup)).map_err(io::Error::from)?;
        let names: Vec<CString> = d
            .iter()
            .filter_map(|e| e.ok())
            .map(|e| CString::from(e.file_name()))
            .filter(|n| n.to_bytes() != b"." && n.to_bytes() != b"..")
            .filter(|n| !keep(OsStr::from_bytes(n.to_bytes())))
            .collect();
        for n in names {
            Self::remove(dir, &n)?;
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let noun = self.opts.noun;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let Some(rel) = clean_name_in(&raw, noun)? else {
            // The layer's root directory itself: only its metadata applies (a copy leaves the
            // destination directory as it is, as docker's does).
            if kind == tar::EntryType::Directory && self.opts.whiteouts != Whiteouts::None {
                let m = self.meta(entry)?;
                let root = self.root.try_clone().map_err(|e| Error::io("dup", e))?;
                self.finish_fd(Path::new("."), root.as_fd(), &m)?;
                self.dir_times.push((PathBuf::new(), m.mtime.0, m.mtime.1));
            }
            return Ok(());
        };
        let (parent_rel, name) = split(&rel);
        let name_str = name.to_bytes();
        if name_str.starts_with(WHITEOUT_PREFIX.as_bytes()) && self.opts.whiteouts != Whiteouts::None {
            return self.whiteout(&rel, &parent_rel, name_str);
        }
        let m = self.meta(entry)?;
        self.out.entries += 1;
        let mode = self.opts.whiteouts;
        let keep_kind = self.opts.no_overwrite_dir_non_dir;
        match kind {
            tar::EntryType::Directory => {
                let dir = self.parent(&parent_rel, true)?;
                match sys::mkdir(dir, &name, 0o700) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                        let st = sys::lstat(dir, &name)
                            .map_err(|e| Error::io(format!("{noun} entry {}", rel.display()), e))?;
                        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                            if keep_kind {
                                return Err(bad(format!(
                                    "cannot overwrite non-directory {} with a directory",
                                    rel.display()
                                )));
                            }
                            Self::remove(dir, &name)
                                .map_err(|e| Error::io(format!("replacing {}", rel.display()), e))?;
                            sys::mkdir(dir, &name, 0o700)
                                .map_err(|e| Error::io(format!("creating {}", rel.display()), e))?;
                        }
                    }
                    Err(e) => return Err(self.io(&rel, "creating the directory", e)),
                }
                let fd = sys::open_dir(dir, &name).map_err(|e| Error::io(format!("opening {}", rel.display()), e))?;
                self.finish_fd(&rel, fd.as_fd(), &m)?;
                self.dir_times.push((rel.clone(), m.mtime.0, m.mtime.1));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let dir = self.parent(&parent_rel, true)?;
                Self::replace(dir, &name, &rel, keep_kind)?;
                let fd =
                    sys::create_file(dir, &name).map_err(|e| Error::io(format!("creating {}", rel.display()), e))?;
                let mut f = std::fs::File::from(fd);
                let n = io::copy(entry, &mut f).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::InvalidData {
                        bad(format!(
                            "{noun} entry {}: {e} (truncated or corrupt {noun})",
                            rel.display()
                        ))
                    } else {
                        Error::io(format!("writing {}", rel.display()), e)
                    }
                })?;
                self.out.size += n;
                self.finish_fd(&rel, f.as_fd(), &m)?;
                sys::set_mtime(f.as_fd(), c"", m.mtime.0, m.mtime.1)
                    .map_err(|e| Error::io(format!("mtime of {}", rel.display()), e))?;
                sys::start_writeback(f.as_fd());
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad(format!("{noun} entry {}: symlink without a target", rel.display())))?;
                let target = CString::new(target.into_owned())
                    .map_err(|_| bad(format!("{noun} entry {}: NUL in link target", rel.display())))?;
                let dir = self.parent(&parent_rel, true)?;
                Self::replace(dir, &name, &rel, keep_kind)?;
                sys::symlink(&target, dir, &name)
                    .map_err(|e| Error::io(format!("creating symlink {}", rel.display()), e))?;
                sys::chown(dir, &name, m.uid, m.gid).map_err(|e| Error::io(format!("chown {}", rel.display()), e))?;
                for (k, v) in &m.xattrs {
                    // Only trusted.* and security.* xattrs can sit on a symlink; others are skipped as tar does.
                    let _ = sys::lsetxattr_at(dir, &name, k, v);
                }
                sys::set_mtime(dir, &name, m.mtime.0, m.mtime.1)
                    .map_err(|e| Error::io(format!("mtime of {}", rel.display()), e))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad(format!("{noun} entry {}: hardlink without a target", rel.display())))?;
                let target_rel = clean_name(&target)?
                    .ok_or_else(|| bad(format!("{noun} entry {}: hardlink to the {noun} root", rel.display())))?;
                let (tparent, tname) = split(&target_rel);
                let tdir = {
                    let c = sys::cstr(tparent.as_os_str()).map_err(|e| Error::io("name", e))?;
                    if tparent.as_os_str().is_empty() {
                        self.root.try_clone().map_err(|e| Error::io("dup", e))?
                    } else {
                        self.open_below(self.root.as_fd(), &c).map_err(|e| {
                            bad(format!(
                                "{noun} entry {}: hardlink target {} is not a file of this {noun} ({e})",
                                rel.display(),
                                target_rel.display()
                            ))
                        })?
                    }
                };
                let st = sys::lstat(tdir.as_fd(), &tname).map_err(|e| {
                    bad(format!(
                        "{noun} entry {}: hardlink target {} is not a file of this {noun} ({e})",
                        rel.display(),
                        target_rel.display()
                    ))
                })?;
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    return Err(bad(format!("{noun} entry {}: hardlink to a directory", rel.display())));
                }
                if target_rel == rel {
                    return Ok(());
                }
                let dir = self.parent(&parent_rel, true)?;
                Self::replace(dir, &name, &rel, keep_kind)?;
                sys::hardlink(tdir.as_fd(), &tname, dir, &name)
                    .map_err(|e| Error::io(format!("linking {}", rel.display()), e))?;
            }
            tar::EntryType::Char | tar::EntryType::Block if !self.opts.keep_special => {
                // Not written (see `Options::keep_special`).
                self.out.entries -= 1;
                return Ok(());
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let ty = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let dir = self.parent(&parent_rel, true)?;
                Self::replace(dir, &name, &rel, keep_kind)?;
                sys::mknod(dir, &name, ty | (m.mode & 0o777), sys::makedev(major, minor))
                    .map_err(|e| Error::io(format!("creating device {}", rel.display()), e))?;
                sys::chown(dir, &name, m.uid, m.gid).map_err(|e| Error::io(format!("chown {}", rel.display()), e))?;
                sys::chmod_at(dir, &name, m.mode).map_err(|e| Error::io(format!("chmod {}", rel.display()), e))?;
                for (k, v) in &m.xattrs {
                    sys::lsetxattr_at(dir, &name, k, v)
                        .map_err(|e| Error::io(format!("xattr of {}", rel.display()), e))?;
                }
                sys::set_mtime(dir, &name, m.mtime.0, m.mtime.1)
                    .map_err(|e| Error::io(format!("mtime of {}", rel.display()), e))?;
            }
            other => {
                return Err(bad(format!(
                    "{noun} entry {}: unsupported tar entry type {other:?}",
                    rel.display()
                )));
            }
        }
        if mode == Whiteouts::Delete {
            self.created.insert(rel);
        }
        Ok(())
    }

    /// Owner, mode and xattrs of an open file or directory.
    fn finish_fd(&self, rel: &Path, fd: BorrowedFd<'_>, m: &Meta) -> Result<()> {
        sys::chown(fd, c"", m.uid, m.gid).map_err(|e| Error::io(format!("chown {}", rel.display()), e))?;
        sys::fchmod(fd, m.mode).map_err(|e| Error::io(format!("chmod {}", rel.display()), e))?;
        for (k, v) in &m.xattrs {
            sys::fsetxattr(fd, k, v).map_err(|e| Error::io(format!("xattr {:?} of {}", k, rel.display()), e))?;
        }
        Ok(())
    }

    fn whiteout(&mut self, rel: &Path, parent_rel: &Path, name: &[u8]) -> Result<()> {
        let mode = self.opts.whiteouts;
        if name == OPAQUE.as_bytes() {
            let parent_rel = parent_rel.to_path_buf();
            let created: HashSet<PathBuf> = if mode == Whiteouts::Delete {
                self.created.clone()
            } else {
                HashSet::new()
            };
            let dir = self.parent(&parent_rel, true)?;
            match mode {
                Whiteouts::Overlay => {
                    sys::fsetxattr(dir, c"trusted.overlay.opaque", b"y")
                        .map_err(|e| Error::io(format!("marking {} opaque", parent_rel.display()), e))?;
                }
                Whiteouts::Delete => {
                    let keep = |n: &OsStr| created.contains(&parent_rel.join(n));
                    Self::clear_dir(dir, &keep)
                        .map_err(|e| Error::io(format!("emptying {}", parent_rel.display()), e))?;
                }
                // A copy never gets here (its `.wh.` names are files).
                Whiteouts::None => {}
            }
            return Ok(());
        }
        if name.starts_with(b".wh..wh.") {
            // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not part of the image.
            return Ok(());
        }
        let target = &name[WHITEOUT_PREFIX.len()..];
        if target.is_empty() || target == b"." || target == b".." {
            return Err(bad(format!(
                "{} entry {}: invalid whiteout",
                self.opts.noun,
                rel.display()
            )));
        }
        let target = CString::new(target).map_err(|_| bad("NUL in whiteout".into()))?;
        let dir = self.parent(parent_rel, true)?;
        Self::remove(dir, &target).map_err(|e| Error::io(format!("whiteout {}", rel.display()), e))?;
        if mode == Whiteouts::Overlay {
            sys::mknod(dir, &target, libc::S_IFCHR, sys::makedev(0, 0))
                .map_err(|e| Error::io(format!("creating whiteout {}", rel.display()), e))?;
        }
        Ok(())
    }

    /// Directory mtimes, deepest first, once nothing more is written into them.
    fn finish(&mut self) -> Result<()> {
        self.cache = None;
        self.dir_times
            .sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
        for (rel, s, n) in std::mem::take(&mut self.dir_times) {
            let fd = if rel.as_os_str().is_empty() {
                self.root.try_clone().map_err(|e| Error::io("dup", e))?
            } else {
                let c = sys::cstr(rel.as_os_str()).map_err(|e| Error::io("name", e))?;
                match self.open_below(self.root.as_fd(), &c) {
                    Ok(fd) => fd,
                    // Replaced or whited out later in the layer.
                    Err(_) => continue,
                }
            };
            sys::set_mtime(fd.as_fd(), c"", s, n).map_err(|e| Error::io(format!("mtime of {}", rel.display()), e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_and_escapes_refused() {
        assert_eq!(clean_name(b"./a/b/../c").unwrap(), Some(PathBuf::from("a/c")));
        assert_eq!(clean_name(b"/etc/passwd").unwrap(), Some(PathBuf::from("etc/passwd")));
        assert_eq!(clean_name(b"./").unwrap(), None);
        assert!(clean_name(b"../x").is_err());
        assert!(clean_name(b"a/../../x").is_err());
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time(b"1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(parse_pax_time(b"12"), Some((12, 0)));
        assert_eq!(parse_pax_time(b"x"), None);
    }
}
