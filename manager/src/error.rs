//! The manager's error kinds. The API layer maps each kind to one gRPC status code
//! (`api::status`), so clients can tell "not found" from "bad input" without reading text.

use std::io;

/// What went wrong, by kind; the message says what and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such image, blob, snapshot or name.
    #[error("{0}")]
    NotFound(String),
    /// The request itself is malformed (a bad reference, platform or option).
    #[error("{0}")]
    InvalidArgument(String),
    /// The thing exists already (a name, a snapshot key).
    #[error("{0}")]
    AlreadyExists(String),
    /// The request conflicts with the current state (an image in use, a second daemon).
    #[error("{0}")]
    Conflict(String),
    /// Content from outside (a registry, an archive, a layer) is wrong or hostile.
    #[error("{0}")]
    BadContent(String),
    /// A registry refused our credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// The registry or network failed.
    #[error("{0}")]
    Remote(String),
    /// The operation is not implemented (say so rather than pretend).
    #[error("{0}")]
    Unsupported(String),
    /// A local system call failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The metadata database failed.
    #[error("metadata database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The operation was cancelled (the client went away or drayd is stopping).
    #[error("cancelled")]
    Cancelled,
}

impl From<dray_archive::Error> for Error {
    fn from(e: dray_archive::Error) -> Self {
        match e {
            dray_archive::Error::Bad(m) => Error::BadContent(m),
            dray_archive::Error::Io { context, source } => Error::Io { context, source },
        }
    }
}

/// The manager's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds what was being done to an `io::Result`.
pub trait IoContext<T> {
    /// Wraps the error with a context built lazily.
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(f(), io::Error::from(e)))
    }
}
