//! containerd-shim-dray-v2: a containerd runtime-v2 shim that drives dray (or runc, crun)
//! through its command line. See docs/architecture.md, "The shim".

// Casts that truncate or lose the sign, and public types without Debug, are errors here (as
// firecracker has them): a pid, an fd or a size that silently wraps is a bug.
#![warn(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    missing_debug_implementations
)]

pub mod args;
pub mod bootstrap;
pub mod errors;
pub mod events;
pub mod exits;
pub mod metrics;
pub mod mount;
pub mod oom;
pub mod options;
pub mod reaper;
pub mod runtime;
pub mod server;
pub mod stdio;
pub mod task;
pub mod trim;
