//! Container state: `<root>/<id>/state.json`, the status derived from the live process, and
//! the lock that serialises commands on one container.
//!
//! The status is derived, not stored (as runc does): `creating` while `create` runs, then
//! `created` while the init waits on `exec.fifo`, `running` once the fifo is gone and the init
//! is alive, `stopped` when the init is gone (pid + start time guard against pid reuse).

use crate::cgroups::CgroupPaths;
use crate::error::{Context, Error, Result};
use oci_spec::runtime::{Hooks, LinuxNamespaceType, Process};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Name of the state file inside a container's directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the fifo on which a created init waits for `start`.
pub const EXEC_FIFO: &str = "exec.fifo";

/// Container status, as in the OCI runtime spec's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What dray keeps about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    /// Host pid of the container's init (0 while creating).
    pub pid: i32,
    /// Start time of the init in clock ticks since boot, to detect pid reuse.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The container's cgroup directories on this host.
    #[serde(default)]
    pub cgroup: CgroupPaths,
    /// The cgroup directories dray created (and so removes on delete).
    #[serde(default)]
    pub cgroup_owned: Vec<PathBuf>,
    /// True when the container has its own pid namespace (killing init kills everything).
    pub own_pid_ns: bool,
    /// Hooks kept for the later phases (poststart, poststop).
    #[serde(default)]
    pub hooks: Option<Hooks>,
    /// The container's process, the defaults of `exec`.
    #[serde(default)]
    pub process: Option<Process>,
    /// The namespaces of the container (created or joined), which `exec` joins.
    #[serde(default)]
    pub namespaces: Vec<LinuxNamespaceType>,
    /// The container's seccomp profile, applied to `exec`'d processes too.
    #[serde(default)]
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// Without a mount namespace of its own: the id of the rootfs bind that holds the
    /// container's mounts in the namespace it shares, which `delete` detaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_mount: Option<u64>,
    /// The mount namespace the container joined by path, where that bind is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_ns_path: Option<PathBuf>,
    /// The container's own pid namespace (`pid:[INODE]`), which tells its processes from
    /// others' in a cgroup it shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<String>,
}

/// The OCI state JSON, as `runc state` prints it and hooks receive it on stdin.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

impl ContainerState {
    /// The status, derived from the init process and the exec fifo.
    pub fn status(&self, dir: &Path) -> Status {
        // No init yet: `create` is still running.
        if self.pid == 0 {
            return Status::Creating;
        }
        if !crate::sys::process_alive(self.pid, Some(self.pid_start)) {
            return Status::Stopped;
        }
        // Paused first, as runc: a created container can be paused too.
        if self.cgroup.frozen() {
            Status::Paused
        } else if dir.join(EXEC_FIFO).exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    /// The OCI state for this container with the given status.
    pub fn oci(&self, status: Status) -> OciState {
        OciState {
            oci_version: crate::OCI_VERSION.into(),
            id: self.id.clone(),
            pid: if status == Status::Stopped { 0 } else { self.pid },
            status,
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: self.owner.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

/// Checks a container id as runc does: `^[\w+-\.]+$`, and not `.` or `..`, so an id can never
/// name a path outside the state root.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "invalid container id {id:?}: an id may only contain letters, digits, '_', '+', '-' and '.'"
        )))
    }
}

/// The state root (`--root`) and the containers below it.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

/// An exclusive lock on one container's directory, released on drop.
#[derive(Debug)]
pub struct Lock {
    file: File,
}

impl Lock {
    /// The locked fd. A forked child that may outlive the command (an exec helper frozen in a
    /// paused container) closes its copy, or the lock would stay taken with it.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

/// How long a command waits for another one on the same container before it gives up: locks
/// are held for one step (a create, a start, the launch of an exec), never for a container's
/// life, so a longer wait means the holder is stuck.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Store {
    /// A store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    /// The directory of container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Creates the directory of a new container; fails if the id is taken.
    pub fn create_dir(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        std::fs::create_dir_all(&self.root).ctx(|| format!("creating state root {}", self.root.display()))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o711));
        let dir = self.dir(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::msg(format!("container with id {id:?} already exists")))
            }
            Err(e) => Err(e).ctx(|| format!("creating state directory {}", dir.display())),
        }
    }

    /// Takes the lock of container `id`, waiting for other commands on it to finish.
    pub fn lock(&self, id: &str) -> Result<Lock> {
        validate_id(id)?;
        let dir = self.dir(id);
        let file = File::open(&dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::not_found(format!("container {id:?} does not exist"))
            } else {
                Error::Os {
                    step: format!("opening {}", dir.display()),
                    source: e,
                }
            }
        })?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            // SAFETY: flock on an fd we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Lock { file });
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(e).ctx(|| format!("locking container {id:?}"));
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::msg(format!(
                    "container {id:?} is busy: another dray command has held it for {}s",
                    LOCK_WAIT.as_secs()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Loads the state of container `id`.
    pub fn load(&self, id: &str) -> Result<ContainerState> {
        validate_id(id)?;
        let path = self.dir(id).join(STATE_FILE);
        let data = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::not_found(format!("container {id:?} does not exist"))
            } else {
                Error::Os {
                    step: format!("reading {}", path.display()),
                    source: e,
                }
            }
        })?;
        serde_json::from_slice(&data).map_err(|e| Error::msg(format!("corrupt state file {}: {e}", path.display())))
    }

    /// Saves a state atomically (write to a temporary file, then rename).
    pub fn save(&self, st: &ContainerState) -> Result<()> {
        let data = serde_json::to_vec(st).map_err(|e| Error::msg(format!("encoding state: {e}")))?;
        crate::sys::write_file_atomic(&self.dir(&st.id).join(STATE_FILE), ".tmp", data)
            .ctx(|| format!("saving state of {:?}", st.id))
    }

    /// Removes a container's directory.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx(|| format!("removing {}", dir.display())),
        }
    }

    /// Ids of all containers in the store, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx(|| format!("reading {}", self.root.display())),
        };
        let mut ids: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated_like_runc() {
        for ok in ["a", "abc-1.2_x+y", "A9"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "a b", "x\0"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_container_is_not_found_by_kind() {
        let root = std::env::temp_dir().join(format!("dray-state-test-{}", std::process::id()));
        let store = Store::new(&root);
        let e = store.load("nosuch").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::NotFound, "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
