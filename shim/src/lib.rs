//! containerd-shim-dray-v2: a containerd runtime-v2 shim that drives dray (or runc, crun)
//! through its command line. See docs/architecture.md, "The shim".

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
