//! The content store: blobs addressed by digest under `<data-root>/content`.
//!
//! ```text
//! content/blobs/sha256/<hex>      verified blobs, read-only
//! content/ingest/<algo>-<hex>/data   a blob being written; kept across crashes so it resumes
//! ```
//!
//! A blob enters only through [`Ingest::commit`]: its size and digest are checked, the data is
//! fsynced and renamed into place, and the directory is fsynced. A blob with the wrong digest or
//! size is never stored. The file system is the truth for which blobs exist; the database says
//! what references them (`meta`), and `gc` removes what nothing does.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, IoContext, Result};

/// Manifests, indexes and configs larger than this are refused (hostile sizes).
pub const MAX_METADATA_BLOB: u64 = 8 << 20;

/// The blob store.
pub struct ContentStore {
    root: PathBuf,
    /// One lock per digest being written: two pulls of one blob fetch it once.
    writers: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
}

impl ContentStore {
    /// Opens (creating) the store under `root`.
    pub fn open(root: &Path) -> Result<ContentStore> {
        for d in ["blobs/sha256", "blobs/sha512", "ingest"] {
            let p = root.join(d);
            fs::create_dir_all(&p).ctx(|| format!("creating {}", p.display()))?;
        }
        Ok(ContentStore {
            root: root.to_path_buf(),
            writers: Mutex::new(HashMap::new()),
        })
    }

    /// Where a blob lives (whether or not it exists).
    pub fn path(&self, d: &Digest) -> PathBuf {
        let algo = match d.algorithm() {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        };
        self.root.join("blobs").join(algo).join(d.hex())
    }

    /// The size of a stored blob, or None.
    pub fn size(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.path(d)).ok().filter(|m| m.is_file()).map(|m| m.len())
    }

    /// Opens a stored blob.
    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        File::open(self.path(d)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(format!("blob {d} is not in the content store")),
            _ => Error::io(format!("opening blob {d}"), e),
        })
    }

    /// Reads a small stored blob (manifest, config) whole.
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let f = self.open_blob(d)?;
        let mut buf = Vec::new();
        f.take(MAX_METADATA_BLOB + 1)
            .read_to_end(&mut buf)
            .ctx(|| format!("reading blob {d}"))?;
        if buf.len() as u64 > MAX_METADATA_BLOB {
            return Err(Error::BadContent(format!(
                "blob {d} is larger than {MAX_METADATA_BLOB} bytes"
            )));
        }
        Ok(buf)
    }

    /// Stores bytes already in memory under their expected digest (verified). Blocking: call
    /// it from a blocking thread (it waits for other writers of the same digest).
    pub fn write_blob(&self, d: &Digest, data: &[u8]) -> Result<()> {
        let _writer = self.lock_blocking(d);
        if self.size(d).is_some() {
            return Ok(());
        }
        let mut ing = self.ingest(d, Some(data.len() as u64))?;
        if ing.offset() != 0 {
            ing.reset()?;
        }
        ing.write(data)?;
        ing.commit()
    }

    /// Stores a local file as a blob: under `expected` (verified), or under its own sha256.
    /// Returns the digest and size.
    pub fn write_file(&self, path: &Path, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let digest = match expected {
            Some(d) => d.clone(),
            None => digest_file(path)?,
        };
        let size = fs::metadata(path).ctx(|| format!("stat {}", path.display()))?.len();
        let _writer = self.lock_blocking(&digest);
        if self.size(&digest) != Some(size) {
            let mut ing = self.ingest(&digest, Some(size))?;
            ing.reset()?;
            for_each_chunk(path, |c| ing.write(c))?;
            ing.commit()?;
        }
        Ok((digest, size))
    }

    /// Serialises writers of one digest (every ingest of a digest happens under this lock; one
    /// drayd per data root makes it sufficient). Hold the guard while checking for the blob and
    /// writing it: a second pull of the same blob waits, then finds it stored.
    pub async fn lock(&self, d: &Digest) -> tokio::sync::OwnedMutexGuard<()> {
        self.writer_lock(d).lock_owned().await
    }

    /// [`ContentStore::lock`] for blocking threads.
    pub fn lock_blocking(&self, d: &Digest) -> tokio::sync::OwnedMutexGuard<()> {
        self.writer_lock(d).blocking_lock_owned()
    }

    fn writer_lock(&self, d: &Digest) -> Arc<tokio::sync::Mutex<()>> {
        let mut w = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        w.retain(|_, m| Arc::strong_count(m) > 1);
        w.entry(d.clone()).or_default().clone()
    }

    /// Opens the ingest of `expected`, resuming what a previous attempt left. `size`, when
    /// known, bounds what may be written. The caller holds the digest's writer lock.
    pub fn ingest(&self, expected: &Digest, size: Option<u64>) -> Result<Ingest> {
        let dir = self.ingest_dir(expected);
        fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let path = dir.join("data");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .ctx(|| format!("opening {}", path.display()))?;
        // Rebuild the hash of what is there (hash state cannot be saved, the bytes can).
        let mut hasher = expected.hasher();
        let mut written = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).ctx(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            written += n as u64;
        }
        let mut ing = Ingest {
            dir,
            path,
            file,
            hasher,
            written,
            expected: expected.clone(),
            size,
            store_path: self.path(expected),
        };
        if size.is_some_and(|s| written > s) {
            ing.reset()?;
        }
        Ok(ing)
    }

    /// Bytes an unfinished ingest of `d` holds (for progress of a resumed pull).
    pub fn ingest_offset(&self, d: &Digest) -> u64 {
        fs::metadata(self.ingest_dir(d).join("data"))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    fn ingest_dir(&self, d: &Digest) -> PathBuf {
        let algo = match d.algorithm() {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        };
        self.root.join("ingest").join(format!("{algo}-{}", d.hex()))
    }

    /// Every stored blob with its size.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>> {
        let mut out = Vec::new();
        for algo in ["sha256", "sha512"] {
            let dir = self.root.join("blobs").join(algo);
            for e in fs::read_dir(&dir).ctx(|| format!("listing {}", dir.display()))? {
                let e = e.ctx(|| format!("listing {}", dir.display()))?;
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                let Ok(d) = format!("{algo}:{name}").parse::<Digest>() else {
                    continue;
                };
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((d, len));
            }
        }
        Ok(out)
    }

    /// Removes a blob (garbage collection only).
    pub fn remove(&self, d: &Digest) -> Result<()> {
        match fs::remove_file(self.path(d)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(format!("removing blob {d}"), e)),
            _ => Ok(()),
        }
    }

    /// Removes unfinished ingests older than `max_age` (abandoned pulls).
    pub fn prune_ingests(&self, max_age: std::time::Duration) -> Result<u64> {
        let dir = self.root.join("ingest");
        let mut freed = 0;
        for e in fs::read_dir(&dir)
            .ctx(|| format!("listing {}", dir.display()))?
            .flatten()
        {
            let data = e.path().join("data");
            let (age, len) = match fs::metadata(&data) {
                Ok(m) => (m.modified().ok().and_then(|t| t.elapsed().ok()), m.len()),
                Err(_) => (Some(max_age), 0),
            };
            if age.is_some_and(|a| a >= max_age) {
                freed += len;
                let _ = fs::remove_dir_all(e.path());
            }
        }
        Ok(freed)
    }
}

/// A blob being written. Dropping it keeps the partial data for a later resume.
pub struct Ingest {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    hasher: Hasher,
    written: u64,
    expected: Digest,
    size: Option<u64>,
    store_path: PathBuf,
}

impl Ingest {
    /// Bytes already written: where a resumed download starts (HTTP Range).
    pub fn offset(&self) -> u64 {
        self.written
    }

    /// Starts over (the server ignored our Range request).
    pub fn reset(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .ctx(|| format!("truncating {}", self.path.display()))?;
        self.file
            .seek(SeekFrom::Start(0))
            .ctx(|| format!("seeking {}", self.path.display()))?;
        self.hasher = self.expected.hasher();
        self.written = 0;
        Ok(())
    }

    /// Appends data; more than the declared size is refused (and the ingest discarded).
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        if let Some(size) = self.size {
            if self.written + data.len() as u64 > size {
                self.discard();
                return Err(Error::BadContent(format!(
                    "blob {} is larger than its declared size {size}",
                    self.expected
                )));
            }
        }
        self.file
            .write_all(data)
            .ctx(|| format!("writing {}", self.path.display()))?;
        self.hasher.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    /// Verifies size and digest, makes the blob durable and moves it into the store. On a
    /// mismatch the partial data is discarded (a resume would only repeat the error).
    pub fn commit(self) -> Result<()> {
        if let Some(size) = self.size {
            if self.written != size {
                let w = self.written;
                let e = self.expected.clone();
                self.discard();
                return Err(Error::BadContent(format!(
                    "blob {e}: got {w} bytes, its descriptor says {size}"
                )));
            }
        }
        let got = self.hasher.clone().finish();
        if got != self.expected {
            let e = self.expected.clone();
            self.discard();
            return Err(Error::BadContent(format!(
                "blob {e}: its content has digest {got}: refusing it"
            )));
        }
        self.file
            .sync_all()
            .ctx(|| format!("syncing {}", self.path.display()))?;
        set_readonly(&self.file);
        fs::rename(&self.path, &self.store_path).ctx(|| format!("storing blob {}", self.expected))?;
        if let Some(parent) = self.store_path.parent() {
            sync_dir(parent)?;
        }
        let _ = fs::remove_dir_all(&self.dir);
        Ok(())
    }

    fn discard(&self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn set_readonly(f: &File) {
    use std::os::unix::fs::PermissionsExt;
    let _ = f.set_permissions(fs::Permissions::from_mode(0o444));
}

/// The sha256 digest of a file.
pub fn digest_file(path: &Path) -> Result<Digest> {
    let mut h = Hasher::new(Algorithm::Sha256);
    for_each_chunk(path, |c| {
        h.update(c);
        Ok(())
    })?;
    Ok(h.finish())
}

/// Calls `f` with a file's content, 1 MiB at a time.
pub fn for_each_chunk(path: &Path, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut file = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).ctx(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        f(&buf[..n])?;
    }
}

/// Writes a small file durably: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    // A name of its own per call: concurrent writers of files in one directory never share it.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}-{seq}", std::process::id()));
    let tmp = path.with_file_name(name);
    let mut f = File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .ctx(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).ctx(|| format!("renaming {}", tmp.display()))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// fsyncs a directory, so a rename into it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_verifies_resumes_and_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let data = b"hello, blob".to_vec();
        let d = Digest::sha256_of(&data);

        // Interrupted after 5 bytes: the next ingest resumes there.
        let mut ing = cs.ingest(&d, Some(data.len() as u64)).unwrap();
        ing.write(&data[..5]).unwrap();
        drop(ing);
        assert_eq!(cs.ingest_offset(&d), 5);
        let mut ing = cs.ingest(&d, Some(data.len() as u64)).unwrap();
        assert_eq!(ing.offset(), 5);
        ing.write(&data[5..]).unwrap();
        ing.commit().unwrap();
        assert_eq!(cs.read(&d).unwrap(), data);
        assert_eq!(cs.list().unwrap(), vec![(d.clone(), data.len() as u64)]);

        // A lying digest is refused and nothing is stored.
        let liar = Digest::sha256_of(b"something else");
        let mut ing = cs.ingest(&liar, None).unwrap();
        ing.write(&data).unwrap();
        assert!(matches!(ing.commit(), Err(Error::BadContent(_))));
        assert!(cs.size(&liar).is_none());
        assert_eq!(cs.ingest_offset(&liar), 0);

        // More than the declared size is refused at once.
        let mut ing = cs.ingest(&liar, Some(3)).unwrap();
        assert!(matches!(ing.write(&data), Err(Error::BadContent(_))));
        // Less is refused at commit.
        let mut ing = cs.ingest(&liar, Some(100)).unwrap();
        ing.write(&data).unwrap();
        assert!(matches!(ing.commit(), Err(Error::BadContent(_))));
    }
}
