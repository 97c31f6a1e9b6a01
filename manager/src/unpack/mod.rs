//! Layers into directories: decompression (gzip through zlib-rs, zstd, or none, chosen by the
//! stream's magic bytes), the diff ID check, and the fd-relative applier ([`apply`]).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use dray_archive::apply::{self, Applied, Whiteouts};
use dray_archive::sys;

use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};

/// Counts bytes read (progress of the compressed stream).
pub struct Counting<R> {
    inner: R,
    pub count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Hashes what passes through (the diff ID of the uncompressed stream), and every
/// [`SPACE_CHECK_EVERY`] bytes checks that the destination's file system keeps
/// [`SPACE_RESERVE`] free: a decompression bomb ends with an error, not a full disk.
struct Hashing<'a, R> {
    inner: R,
    hasher: Hasher,
    dest: &'a Path,
    since_check: u64,
}

/// How often (in uncompressed bytes) the free space is checked while unpacking.
pub const SPACE_CHECK_EVERY: u64 = 64 << 20;
/// Free space an unpack never goes below.
pub const SPACE_RESERVE: u64 = 256 << 20;

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.since_check += n as u64;
        if self.since_check >= SPACE_CHECK_EVERY {
            self.since_check = 0;
            if let Ok(st) = nix::sys::statvfs::statvfs(self.dest) {
                let free = st.blocks_available().saturating_mul(st.fragment_size());
                if free < SPACE_RESERVE {
                    return Err(io::Error::new(
                        io::ErrorKind::StorageFull,
                        format!("only {free} bytes left on the file system of {}", self.dest.display()),
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// The compression of a layer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Sniffs the compression from the first bytes.
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A reader of the uncompressed stream of `r`.
pub fn decompress<'a, R: Read + 'a>(r: R) -> Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(256 << 10, r);
    let head = io::BufRead::fill_buf(&mut br).map_err(|e| Error::io("reading the layer", e))?;
    Ok(match sniff(head) {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(br)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(br).map_err(|e| Error::io("starting the zstd decoder", e))?,
        ),
        Compression::None => Box::new(br),
    })
}

/// Unpacks a layer blob into `dest`, checking that its uncompressed stream has digest
/// `diff_id`. `progress` counts compressed bytes consumed.
pub fn unpack_layer(
    blob: &Path,
    dest: &Path,
    diff_id: &Digest,
    mode: Whiteouts,
    progress: Arc<AtomicU64>,
) -> Result<Applied> {
    let f = File::open(blob).map_err(|e| Error::io(format!("opening layer blob {}", blob.display()), e))?;
    unpack_stream(
        Counting {
            inner: f,
            count: progress,
        },
        dest,
        diff_id,
        mode,
    )
}

/// Unpacks a (possibly compressed) layer stream into `dest`; see [`unpack_layer`].
pub fn unpack_stream(r: impl Read, dest: &Path, diff_id: &Digest, mode: Whiteouts) -> Result<Applied> {
    let corrupt =
        |e: io::Error| Error::BadContent(format!("layer {diff_id}: {e} (truncated or corrupt compressed stream)"));
    let plain = decompress(r)?;
    let mut hashing = Hashing {
        inner: plain,
        hasher: diff_id.hasher(),
        dest,
        since_check: 0,
    };
    let applied = apply::apply(dest, &mut hashing, mode)?;
    // The tar end marker may come before the end of the stream: the diff ID covers it all.
    io::copy(&mut hashing, &mut io::sink()).map_err(corrupt)?;
    let got = hashing.hasher.finish();
    if &got != diff_id {
        return Err(Error::BadContent(format!(
            "layer content has diff ID {got}, but the image config says {diff_id}: refusing the layer"
        )));
    }
    Ok(applied)
}

/// Makes everything written beneath `dir` durable: one `syncfs` of its file system, after the
/// applier started writeback of each file as it closed it.
pub fn make_durable(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| Error::io(format!("opening {}", dir.display()), e))?;
    sys::syncfs(std::os::fd::AsFd::as_fd(&f)).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

/// Where the tar stream of an entry ends and a new one starts: exported for the fuzz target.
pub fn apply_tar_for_fuzzing(dest: &Path, data: &[u8]) -> Result<Applied> {
    Ok(apply::apply(dest, data, Whiteouts::Overlay)?)
}
