//! `cp`: files between the host and a container, with docker's rules for where a copy lands
//! (docker's `cli/command/container/cp.go`): a directory destination receives the source by
//! its name, a missing one becomes the source's copy, `SRC/.` copies a directory's contents,
//! `-` streams a tar on stdin or stdout.
//!
//! The tar travels between drayd and here. Whichever side packs it names the top entry as the
//! copy should be called at the destination, so the other side only extracts into an existing
//! directory, with `dray-archive`'s confined applier: a hostile container's tar cannot write
//! outside the destination on the host, nor a host tar outside it in the container.

use std::ffi::CString;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use dray_proto::v1 as pb;

use crate::client::Client;
use crate::DaemonError;

const CHUNK: usize = 1 << 20;

#[derive(Args, Debug)]
#[command(
    override_usage = "drayctl cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n       drayctl cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH"
)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Suppress progress output during copy. Progress output is automatically suppressed if no
    /// terminal is attached
    #[arg(short, long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH, SRC_PATH or - (a tar on stdin)
    pub src: String,
    /// DEST_PATH, - (a tar on stdout) or CONTAINER:DEST_PATH
    pub dest: String,
}

/// One side of a copy: a container's path or a local one (docker's `splitCpArg`: an absolute
/// path, or one whose part before `:` starts with `.`, is local).
#[derive(Debug, PartialEq, Eq)]
enum Side {
    Local(String),
    Container(String, String),
}

fn side(arg: &str) -> Side {
    if arg.starts_with('/') {
        return Side::Local(arg.into());
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.starts_with('.') && !c.is_empty() => Side::Container(c.into(), p.into()),
        _ => Side::Local(arg.into()),
    }
}

/// The last component of a path as docker names a copy (`/a/b/` → `b`, `/` → `/`).
fn base(path: &str) -> String {
    let mut trimmed = path.trim_end_matches('/');
    while let Some(t) = trimmed.strip_suffix("/.") {
        trimmed = t.trim_end_matches('/');
    }
    if trimmed.is_empty() {
        return "/".into();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

/// The directory part of a path (`a/b` → `a`, `b` → `.`, `/b` → `/`).
fn dir_of(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => trimmed[..i].into(),
        None => ".".into(),
    }
}

/// `SRC/.`: a directory's contents rather than the directory.
fn wants_contents(path: &str) -> bool {
    path == "." || path.ends_with("/.")
}

/// Where a copy goes, decided from what the destination is.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    /// The existing directory to extract into.
    dir: String,
    /// The name of the top entry (unused with `contents`).
    name: String,
    /// The source directory's contents go straight into `dir`.
    contents: bool,
}

/// What is at the destination: nothing, a directory, or something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    Missing,
    Dir,
    Other,
}

/// docker's rules (`archive.PrepareArchiveCopy` and the CLI's checks).
fn plan(src: &str, src_is_dir: bool, dest: &str, what: Dest) -> Result<Plan> {
    let contents = src_is_dir && wants_contents(src);
    match what {
        Dest::Dir => Ok(Plan {
            dir: dest.into(),
            name: base(src),
            contents,
        }),
        Dest::Other if src_is_dir => bail!("cannot copy a directory to a file: {dest} exists and is not a directory"),
        Dest::Missing if dest.ends_with('/') && !src_is_dir => {
            bail!("destination directory {dest} does not exist (a path ending with / must be a directory)")
        }
        Dest::Other | Dest::Missing => Ok(Plan {
            dir: dir_of(dest),
            name: base(dest),
            contents: false,
        }),
    }
}

pub async fn cp(c: &Client, a: CpArgs) -> Result<u8> {
    match (side(&a.src), side(&a.dest)) {
        (Side::Container(..), Side::Container(..)) => bail!("copying between containers is not supported"),
        (Side::Local(_), Side::Local(_)) => bail!("must specify at least one container source"),
        (Side::Container(ctr, path), Side::Local(dest)) => from_container(c, &a, &ctr, &path, &dest).await,
        (Side::Local(src), Side::Container(ctr, path)) => to_container(c, &a, &src, &ctr, &path).await,
    }
}

async fn stat(c: &Client, ctr: &str, path: &str) -> Result<Option<pb::PathStat>> {
    match c
        .containers()
        .stat_path(pb::StatPathRequest {
            id: ctr.into(),
            path: path.into(),
        })
        .await
    {
        Ok(r) => Ok(Some(r.into_inner())),
        Err(s) if s.code() == tonic::Code::NotFound && s.message().starts_with("Could not find") => Ok(None),
        Err(s) => Err(DaemonError::from(s).into()),
    }
}

fn is_dir(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFDIR
}

fn is_link(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFLNK
}

/// A symlink's target as a path in the container (relative targets start at its directory).
fn link_path(path: &str, target: &str) -> String {
    if target.starts_with('/') {
        target.into()
    } else {
        format!("{}/{}", dir_of(path).trim_end_matches('/'), target)
    }
}

/// `Successfully copied 2.56kB to ...` (docker 24's summary), on a terminal only.
fn summary(a: &CpArgs, bytes: u64, to: &str) {
    if !a.quiet && std::io::stderr().is_terminal() {
        eprintln!("Successfully copied {} to {to}", crate::units::human_size(bytes as i64));
    }
}

async fn from_container(c: &Client, a: &CpArgs, ctr: &str, path: &str, dest: &str) -> Result<u8> {
    let no_such = || anyhow!("No such container:path: {ctr}:{path}");
    let mut st = stat(c, ctr, path).await?.ok_or_else(no_such)?;
    if a.follow_link {
        let mut at = path.to_string();
        for _ in 0..40 {
            if !is_link(st.mode) {
                break;
            }
            at = link_path(&at, &st.link_target);
            st = stat(c, ctr, &at).await?.ok_or_else(no_such)?;
        }
    }
    let src_is_dir = is_dir(st.mode);
    if wants_contents(path) && !src_is_dir {
        bail!("{ctr}:{path}: not a directory");
    }
    let req = |name: String, contents: bool| pb::CopyFromRequest {
        id: ctr.into(),
        path: path.into(),
        name,
        contents,
        follow_link: a.follow_link,
    };
    if dest == "-" {
        if std::io::stdout().is_terminal() {
            bail!("cowardly refusing to write a tar archive to a terminal: redirect the output");
        }
        let s = c
            .containers()
            .copy_from(req(String::new(), false))
            .await
            .map_err(DaemonError::from)?;
        super::archive::write_chunks(s.into_inner(), None).await?;
        return Ok(0);
    }
    let what = match std::fs::metadata(dest) {
        Ok(m) if m.is_dir() => Dest::Dir,
        Ok(_) => Dest::Other,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Dest::Missing,
        Err(e) => return Err(e).with_context(|| format!("destination {dest}")),
    };
    let p = plan(path, src_is_dir, dest, what)?;
    let dir = std::fs::File::open(&p.dir)
        .and_then(|f| {
            if f.metadata()?.is_dir() {
                Ok(f)
            } else {
                Err(std::io::Error::from_raw_os_error(libc::ENOTDIR))
            }
        })
        .with_context(|| format!("destination directory {}", p.dir))?;
    let mut stream = c
        .containers()
        .copy_from(req(p.name, p.contents))
        .await
        .map_err(DaemonError::from)?
        .into_inner();
    // The host side: owned by whoever runs drayctl unless -a keeps the container's owners.
    // SAFETY: geteuid and getegid cannot fail.
    let me = unsafe { (libc::geteuid(), libc::getegid()) };
    let mut opts = dray_archive::Options::copy(if a.archive { None } else { Some(me) });
    // Without -a, nothing the container chose becomes a setuid program or a device node here.
    opts.keep_special = a.archive;
    let (reader, mut writer) = std::io::pipe().context("pipe")?;
    let dir: OwnedFd = dir.into();
    let applier = std::thread::spawn(move || dray_archive::apply::apply_at(dir, reader, opts));
    let mut bytes = 0u64;
    let sent: Result<()> = async {
        while let Some(chunk) = stream.message().await.map_err(DaemonError::from)? {
            bytes += chunk.data.len() as u64;
            if writer.write_all(&chunk.data).is_err() {
                // The applier stopped: its error says why.
                break;
            }
        }
        Ok(())
    }
    .await;
    drop(writer);
    let applied = applier.join().map_err(|_| anyhow!("the copy failed"))?;
    sent?;
    applied.with_context(|| format!("copying into {dest}"))?;
    summary(a, bytes, dest);
    Ok(0)
}

/// Packs the local `src` as a tar entry named `name` (or its contents) into `out`.
fn pack_local(src: &str, follow: bool, name: &str, contents: bool, out: impl Write) -> std::io::Result<()> {
    let path = Path::new(src);
    if contents {
        let d = std::fs::File::open(path)?;
        return dray_archive::pack::write_tree(&d, dray_archive::pack::Mode::Tree, out).map(drop);
    }
    if follow {
        use std::os::unix::fs::OpenOptionsExt;
        // O_PATH: reaching a fifo or a device does not block on it.
        let f: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(path)?
            .into();
        return dray_archive::pack::write_opened(&f, name, out).map(drop);
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let last = path
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_else(|| b".".to_vec());
    let last = CString::new(last).map_err(std::io::Error::other)?;
    let dir = std::fs::File::open(&parent)?;
    dray_archive::pack::write_entry(&dir, &last, name, out).map(drop)
}

async fn to_container(c: &Client, a: &CpArgs, src: &str, ctr: &str, path: &str) -> Result<u8> {
    // The destination: a symlink there is followed once, as docker's client does.
    let mut dest = path.to_string();
    let mut st = stat(c, ctr, &dest).await?;
    if let Some(s) = &st {
        if is_link(s.mode) {
            dest = link_path(&dest, &s.link_target);
            st = stat(c, ctr, &dest).await?;
        }
    }
    let what = match &st {
        None => Dest::Missing,
        Some(s) if is_dir(s.mode) => Dest::Dir,
        Some(_) => Dest::Other,
    };
    let (p, packer): (Plan, Box<dyn FnOnce(std::io::PipeWriter) -> std::io::Result<()> + Send>) = if src == "-" {
        if what != Dest::Dir {
            bail!("destination \"{ctr}:{path}\" must be a directory when the source is a tar on stdin");
        }
        let p = Plan {
            dir: dest.clone(),
            name: String::new(),
            contents: false,
        };
        (
            p,
            Box::new(|mut w| {
                std::io::copy(&mut std::io::stdin().lock(), &mut w)?;
                Ok(())
            }),
        )
    } else {
        let meta = if a.follow_link {
            std::fs::metadata(src)
        } else {
            std::fs::symlink_metadata(src)
        }
        .with_context(|| format!("could not read {src}"))?;
        if wants_contents(src) && !meta.is_dir() {
            bail!("{src}: not a directory");
        }
        let p = plan(src, meta.is_dir(), &dest, what)?;
        let (src, follow, name, contents) = (src.to_string(), a.follow_link, p.name.clone(), p.contents);
        (
            p,
            Box::new(move |w| {
                pack_local(
                    &src,
                    follow,
                    &name,
                    contents,
                    std::io::BufWriter::with_capacity(CHUNK, w),
                )
            }),
        )
    };
    let (mut reader, writer) = std::io::pipe().context("pipe")?;
    let packer = std::thread::spawn(move || packer(writer));
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::CopyToRequest>(4);
    let first = pb::CopyToRequest {
        id: ctr.into(),
        path: p.dir.clone(),
        copy_uid_gid: a.archive,
        data: Vec::new(),
    };
    tx.send(first).await.map_err(|_| anyhow!("the copy stream closed"))?;
    // Reading the pipe blocks: a thread feeds the request stream.
    let feeder = std::thread::spawn(move || -> std::io::Result<u64> {
        let mut total = 0u64;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
            buf.truncate(n);
            let m = pb::CopyToRequest {
                data: buf,
                ..Default::default()
            };
            if tx.blocking_send(m).is_err() {
                return Ok(total);
            }
        }
    });
    let sent = c
        .containers()
        .copy_to(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let packed = packer.join().map_err(|_| anyhow!("reading {src} failed"))?;
    let bytes = feeder.join().map_err(|_| anyhow!("reading {src} failed"))?;
    sent.map_err(DaemonError::from)?;
    packed.with_context(|| format!("reading {src}"))?;
    let bytes = bytes.context("reading the archive")?;
    summary(a, bytes, &format!("{ctr}:{path}"));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_split_as_docker_splits_them() {
        assert_eq!(side("web:/etc/x"), Side::Container("web".into(), "/etc/x".into()));
        assert_eq!(side("/abs:x"), Side::Local("/abs:x".into()));
        assert_eq!(side("./a:b"), Side::Local("./a:b".into()));
        assert_eq!(side("file"), Side::Local("file".into()));
        assert_eq!(side("-"), Side::Local("-".into()));
    }

    #[test]
    fn names_and_dirs() {
        assert_eq!(base("/a/b/"), "b");
        assert_eq!(base("/"), "/");
        assert_eq!(base("x"), "x");
        assert_eq!(dir_of("/a/b"), "/a");
        assert_eq!(dir_of("/b"), "/");
        assert_eq!(dir_of("b"), ".");
        assert_eq!(link_path("/etc/x", "../y"), "/etc/../y");
        assert_eq!(link_path("/etc/x", "/y"), "/y");
    }

    #[test]
    fn where_a_copy_lands() {
        let p = |s: &str, d: bool, t: &str, w: Dest| plan(s, d, t, w).map_err(|e| e.to_string());
        let ok = |dir: &str, name: &str, contents: bool| {
            Ok(Plan {
                dir: dir.into(),
                name: name.into(),
                contents,
            })
        };
        // Into an existing directory, by the source's name.
        assert_eq!(p("/etc/hosts", false, "/tmp", Dest::Dir), ok("/tmp", "hosts", false));
        // Onto a file, or a new name.
        assert_eq!(p("/etc/hosts", false, "/tmp/h", Dest::Other), ok("/tmp", "h", false));
        assert_eq!(p("/etc", true, "/tmp/e", Dest::Missing), ok("/tmp", "e", false));
        // A directory's contents.
        assert_eq!(p("/etc/.", true, "/tmp", Dest::Dir), ok("/tmp", "etc", true));
        assert_eq!(p("/etc/.", true, "/tmp/new", Dest::Missing), ok("/tmp", "new", false));
        // Errors.
        assert!(p("/etc", true, "/tmp/file", Dest::Other).is_err());
        assert!(p("/etc/hosts", false, "/tmp/nodir/", Dest::Missing).is_err());
    }
}
