//! The container lifecycle (runtime.md "Operations"): create, start, state, kill, delete, plus
//! runc's run, list, exec, update, events, pause/resume and ps. This is the library API the
//! CLI, the shim and tests call; one file per job:
//! - `create`: checking a bundle and `create` (the init's set-up, in [`crate::process`]);
//! - `lifecycle`: `start`, `state`, `kill`, `delete`, `list`;
//! - `run`: `run` in the foreground (signals, terminal, exit status);
//! - `exec`: a new process in a running container;
//! - `manage`: `update`, `events`, `pause`/`resume`, `ps`;
//! - `shared_root`: the rootfs bind of a container without a mount namespace of its own.

mod create;
mod exec;
mod lifecycle;
mod manage;
mod run;
mod shared_root;

pub use create::load_bundle;
pub use manage::Event;
use shared_root::{detach_container_rootfs, detach_rootfs};

// What the job files share: each starts with `use super::*`.
use crate::cgroups::CgroupPaths;
use crate::error::{Context, Error, Result};
use crate::process::{self, InitConfig};
use crate::state::{ContainerState, OciState, Status, Store, EXEC_FIFO};
use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of `create` (and `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    /// The bundle directory (holds config.json).
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
    /// Which of the fds 3..3+preserve_fds the caller really passed, found before the runtime
    /// opened any fd of its own (the CLI does this first thing). None: look now.
    pub inherited_fds: Option<Vec<i32>>,
}

/// A runtime rooted at a state directory (`--root`).
#[derive(Debug, Clone)]
pub struct Runtime {
    pub store: Store,
}

impl Runtime {
    /// A runtime keeping its state under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Runtime {
            store: Store::new(root),
        }
    }
}

/// Options of `exec`.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The process to run (from `--process`, or the container's process with CLI overrides).
    pub process: oci_spec::runtime::Process,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
    /// As [`CreateOptions::inherited_fds`].
    pub inherited_fds: Option<Vec<i32>>,
    /// `--ignore-paused`: exec into a paused container (the process starts frozen with it).
    pub ignore_paused: bool,
    /// `--cgroup [CONTROLLERS:]PATH`: sub-cgroups to run the process in.
    pub sub_cgroups: Vec<String>,
}

/// The signals a foreground `run`/`exec` blocks before the fork and forwards to the
/// container (plus SIGCHLD, read from a signalfd): all but the ones that cannot be caught
/// and the synchronous fault signals.
fn forwarded_signals() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::all();
    for s in [
        Signal::SIGKILL,
        Signal::SIGSTOP,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGTRAP,
        Signal::SIGABRT,
    ] {
        set.remove(s);
    }
    set
}

/// The OCI state as JSON text.
pub fn state_json(s: &OciState) -> Result<String> {
    serde_json::to_string(s).map_err(|e| Error::msg(format!("encoding state: {e}")))
}

/// Writes the pid file atomically (runc writes it without a newline).
fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    crate::sys::write_file_atomic(path, ".dray-tmp", pid.to_string())
        .ctx(|| format!("writing pid file {}", path.display()))
}

/// The pid namespace of a process, as its /proc link reads (`pid:[4026532...]`).
fn pid_namespace(pid: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|l| l.to_string_lossy().into_owned())
}
