//! Tar archives in and out of a directory, every file system call relative to a directory
//! descriptor and confined beneath it.
//!
//! - [`apply`]: a tar stream written beneath a directory (image layers with their whiteouts,
//!   and `cp` into a container or onto the host), refusing `..`, symlink and hardlink escapes;
//! - [`guard`]: the framing check in front of the `tar` crate's parser (hostile sizes);
//! - [`pack`]: a directory tree (or one entry of it) walked into a tar (`export`, `commit`,
//!   `cp` out of a container);
//! - [`writer`]: dray's own tar writer (ustar with PAX records);
//! - [`sys`]: the system calls, each behind one checked function.
//!
//! drayd uses all of it; drayctl uses it for `cp`, where the host side is as untrusted a
//! destination as a layer is a source.

pub mod apply;
pub mod error;
pub mod guard;
pub mod pack;
pub mod sys;
pub mod writer;

pub use apply::{Applied, Options, Whiteouts};
pub use error::{Error, Result};
