//! The runtime's error type: every error carries the step that failed, so that the one line
//! printed on stderr tells the user what went wrong and where.

use std::fmt;

/// An error of the runtime library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A step failed with an OS error.
    #[error("{step}: {source}")]
    Os {
        step: String,
        #[source]
        source: std::io::Error,
    },
    /// Invalid input or state, described in words.
    #[error("{0}")]
    Msg(String),
}

/// Result alias for the runtime library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error described by a message.
    pub fn msg(m: impl fmt::Display) -> Self {
        Error::Msg(m.to_string())
    }

    /// The errno behind this error, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } => source.raw_os_error(),
            Error::Msg(_) => None,
        }
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::Os {
            step: "system call".into(),
            source: std::io::Error::from_raw_os_error(e as i32),
        }
    }
}

/// Adds the failing step to OS errors.
pub trait Context<T> {
    /// Names the step that failed.
    fn ctx(self, step: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn ctx(self, step: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Os { step: step(), source })
    }
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn ctx(self, step: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Os {
            step: step(),
            source: std::io::Error::from_raw_os_error(e as i32),
        })
    }
}

impl<T> Context<T> for Result<T> {
    fn ctx(self, step: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| match e {
            Error::Os { step: inner, source } => Error::Os {
                step: format!("{}: {}", step(), inner),
                source,
            },
            Error::Msg(m) => Error::Msg(format!("{}: {}", step(), m)),
        })
    }
}
