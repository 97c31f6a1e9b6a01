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
    /// Anything else, described in words.
    #[error("{0}")]
    Msg(String),
    /// The config.json (or an exec's process) is invalid, or asks for what dray does not
    /// support: found by [`crate::validate`] before anything is forked.
    #[error("{0}")]
    InvalidSpec(String),
    /// No container of that id.
    #[error("{0}")]
    NotFound(String),
    /// The container is not in a state the operation can work from (runtime.md "Operations").
    #[error("{0}")]
    InvalidState(String),
}

/// What kind of failure an [`Error`] is, so that a caller of the library (and a unit test) can
/// tell an invalid spec, a missing container or a refused state apart without reading message
/// text. The `dray` command line prints the message and exits 1 for each, as runc does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A system call failed (see [`Error::errno`]).
    Os,
    InvalidSpec,
    NotFound,
    InvalidState,
    Other,
}

/// Result alias for the runtime library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error described by a message.
    pub fn msg(m: impl fmt::Display) -> Self {
        Error::Msg(m.to_string())
    }

    /// An invalid or unsupported spec.
    pub fn spec(m: impl fmt::Display) -> Self {
        Error::InvalidSpec(m.to_string())
    }

    /// A container that does not exist.
    pub fn not_found(m: impl fmt::Display) -> Self {
        Error::NotFound(m.to_string())
    }

    /// An operation the container's state does not allow.
    pub fn state(m: impl fmt::Display) -> Self {
        Error::InvalidState(m.to_string())
    }

    /// The errno behind this error, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Os { .. } => ErrorKind::Os,
            Error::Msg(_) => ErrorKind::Other,
            Error::InvalidSpec(_) => ErrorKind::InvalidSpec,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::InvalidState(_) => ErrorKind::InvalidState,
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
            Error::InvalidSpec(m) => Error::InvalidSpec(format!("{}: {}", step(), m)),
            Error::NotFound(m) => Error::NotFound(format!("{}: {}", step(), m)),
            Error::InvalidState(m) => Error::InvalidState(format!("{}: {}", step(), m)),
        })
    }
}
