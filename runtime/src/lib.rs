//! dray runtime: a runc-compatible OCI runtime.
//!
//! The library holds the whole container lifecycle so that the `dray` binary (its command
//! line is the `dray-cli` crate, runtime/cli), the shim and tests can call it directly. The creation path is single-threaded by design: it forks, and
//! a fork in a multithreaded process is unsound.
//!
//! Module map (where each part of the OCI runtime spec is applied):
//! - [`container`]: lifecycle operations (create, start, state, kill, delete, run, list).
//! - [`process`]: the cooperating processes of `create` and the messages they exchange.
//! - [`namespaces`]: `linux.namespaces`, `linux.uidMappings`/`gidMappings`.
//! - [`rootfs`]: `root`, `mounts`, `linux.devices`, `maskedPaths`, `readonlyPaths`, pivot_root.
//! - [`cgroups`]: `linux.cgroupsPath` on cgroup v1, v2 and hybrid hosts.
//! - [`capabilities`], [`rlimits`], [`user`]: `process.capabilities`, `process.rlimits`,
//!   `process.user`.
//! - [`hooks`]: `hooks.*`; [`console`]: `process.terminal`; [`sysctl`]: `linux.sysctl`.
//! - [`validate`]: the checks of a spec before anything is forked, and the parsed plan the
//!   init consumes.
//! - [`state`]: the state directory, state JSON and locking.

// Casts that truncate or lose the sign, and public types without Debug, are errors here (as
// firecracker has them): a pid, an fd or a size that silently wraps is a bug.
#![warn(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    missing_debug_implementations
)]

pub mod capabilities;
pub mod cgroups;
pub mod console;
pub mod container;
pub mod error;
pub mod features;
pub mod hooks;
pub mod logging;
pub mod namespaces;
pub mod netdev;
pub mod process;
pub mod rlimits;
pub mod rootfs;
pub mod scheduling;
pub mod seccomp;
pub mod signals;
pub mod spec;
pub mod state;
pub mod sys;
pub mod sysctl;
pub mod time;
pub mod timing;
pub mod user;
pub mod validate;

pub use error::{Error, ErrorKind, Result};

/// Version reported by `dray --version` and in state files.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The OCI runtime-spec version this runtime implements.
pub const OCI_VERSION: &str = "1.2.0";
