//! Volumes with docker's `local` driver: a directory `<data-root>/volumes/<name>/_data` per
//! volume, its record (labels, anonymous or named, creation time) in the database. Named
//! volumes are made by `volume create` or by the first container that names them; anonymous
//! ones (a 64-hex name) for `-v /path` and the image's `VOLUME` entries. The only code that
//! creates or removes volume directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::meta::Meta;

/// A volume's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Volume {
    pub name: String,
    /// Unix nanoseconds.
    pub created: i64,
    pub labels: BTreeMap<String, String>,
    pub anonymous: bool,
}

/// The volume store.
pub struct Volumes {
    root: PathBuf,
    meta: Meta,
}

/// docker's volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(n: &str) -> bool {
    crate::containers::valid_name(n)
}

impl Volumes {
    pub fn open(root: &Path, meta: Meta) -> Result<Volumes> {
        std::fs::create_dir_all(root).ctx(|| format!("creating {}", root.display()))?;
        Ok(Volumes {
            root: root.to_path_buf(),
            meta,
        })
    }

    /// The directory a container mounts.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.root.join(name).join("_data")
    }

    /// docker's Mountpoint.
    pub fn mountpoint(&self, name: &str) -> String {
        self.data_dir(name).display().to_string()
    }

    /// Creates a volume; an existing one is returned as it is (docker's create is idempotent),
    /// with `false` for "not new".
    pub fn create(&self, name: &str, labels: BTreeMap<String, String>, anonymous: bool) -> Result<(Volume, bool)> {
        if !valid_name(name) {
            return Err(Error::InvalidArgument(format!(
                "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            )));
        }
        if let Some(v) = self.get(name)? {
            return Ok((v, false));
        }
        let v = Volume {
            name: name.to_string(),
            created: crate::meta::now_nanos(),
            labels,
            anonymous,
        };
        let dir = self.data_dir(name);
        std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let json = serde_json::to_string(&v).map_err(|e| Error::io("encoding a volume", std::io::Error::other(e)))?;
        match self.meta.insert_volume(name, &json) {
            Ok(true) => Ok((v, true)),
            // Created by a concurrent request in between: theirs.
            Ok(false) => Ok((self.get(name)?.unwrap_or(v), false)),
            Err(e) => {
                let _ = std::fs::remove_dir_all(self.root.join(name));
                Err(e)
            }
        }
    }

    pub fn get(&self, name: &str) -> Result<Option<Volume>> {
        Ok(self.meta.volume(name)?.and_then(|j| serde_json::from_str(&j).ok()))
    }

    pub fn list(&self) -> Result<Vec<Volume>> {
        let mut v: Vec<Volume> = self
            .meta
            .volumes()?
            .into_iter()
            .filter_map(|j| serde_json::from_str(&j).ok())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// Removes a volume; the caller checked that no container uses it.
    pub fn remove(&self, name: &str) -> Result<()> {
        if self.get(name)?.is_none() {
            return Err(Error::NotFound(format!("get {name}: no such volume")));
        }
        self.meta.remove_volume(name)?;
        // The record goes first: a crash leaves a directory without a record, removed at start.
        crate::snapshots::remove_tree(&self.root.join(name))
    }

    /// Bytes used by a volume (`system df -v`, `volume inspect` has none: docker's size -1).
    pub fn size(&self, name: &str) -> i64 {
        crate::containers::du(&self.data_dir(name))
    }

    /// Removes directories without a record (a crash between the two steps of `remove`).
    pub fn recover(&self) -> Result<()> {
        let known: std::collections::HashSet<String> = self.list()?.into_iter().map(|v| v.name).collect();
        for e in std::fs::read_dir(&self.root)
            .ctx(|| format!("listing {}", self.root.display()))?
            .flatten()
        {
            let n = e.file_name().to_string_lossy().into_owned();
            if !known.contains(&n) {
                tracing::info!(volume = %n, "removing a volume directory without a record");
                crate::snapshots::remove_tree(&e.path())?;
            }
        }
        Ok(())
    }
}

/// Copies the image's content at a mount point into a new, empty volume (docker's copy-up):
/// `src` is the directory in the container's root file system, opened beneath the root by
/// the caller; ownership, modes, symlinks, hardlinks and xattrs are kept (`cp -a`), and the
/// volume's own directory takes the source directory's owner and mode.
pub fn copy_up(src: &std::fs::File, dst: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    // Through drayd's own fd (cp is another process): the directory opened beneath the root.
    let fd_path = format!("/proc/{}/fd/{}/.", std::process::id(), src.as_raw_fd());
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg("--no-target-directory")
        .arg(&fd_path)
        .arg(dst)
        .output()
        .map_err(|e| Error::io("running cp", e))?;
    if !out.status.success() {
        return Err(Error::io(
            format!("copying the image's content into {}", dst.display()),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ));
    }
    let m = src.metadata().ctx(|| "stat the mount point".to_string())?;
    std::os::unix::fs::chown(dst, Some(m.uid()), Some(m.gid())).ctx(|| format!("chown {}", dst.display()))?;
    std::fs::set_permissions(dst, std::os::unix::fs::PermissionsExt::from_mode(m.mode() & 0o7777))
        .ctx(|| format!("chmod {}", dst.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_is_idempotent_and_remove_removes() {
        let d = tempfile::tempdir().unwrap();
        let meta = Meta::open(&d.path().join("m.db")).unwrap();
        let v = Volumes::open(&d.path().join("volumes"), meta).unwrap();
        let (a, new) = v.create("data", BTreeMap::new(), false).unwrap();
        assert!(new && v.data_dir("data").is_dir());
        let (b, new) = v
            .create("data", BTreeMap::from([("x".into(), "y".into())]), false)
            .unwrap();
        assert!(!new);
        assert_eq!(a, b);
        assert!(v.create("bad/name", BTreeMap::new(), false).is_err());
        assert_eq!(v.list().unwrap().len(), 1);
        v.remove("data").unwrap();
        assert!(!d.path().join("volumes/data").exists());
        assert!(matches!(v.remove("data"), Err(Error::NotFound(_))));
        std::fs::create_dir_all(d.path().join("volumes/orphan/_data")).unwrap();
        v.recover().unwrap();
        assert!(!d.path().join("volumes/orphan").exists());
    }
}
