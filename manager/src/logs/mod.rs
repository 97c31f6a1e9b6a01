//! Container logs: docker's json-file format (the `dray-logfile` crate, shared with the dray
//! shim, which writes the logs of its containers itself), drayd's writer for containers of
//! other shims (fed from their FIFOs), and `follow` (`logs -f`), which tails a log whoever
//! writes it, across rotations.

mod follow;

pub use dray_logfile::{
    decode, encode, files, format_time, parse_size, read, Entry, Filter, LineSplitter, Position, Rotation, Stream,
    MAX_LINE,
};
pub use follow::follow;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// drayd's json-file writer of one container; cheap to clone.
#[derive(Clone, Debug)]
pub struct LogWriter {
    path: PathBuf,
    inner: Arc<Mutex<dray_logfile::Writer>>,
}

impl LogWriter {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, rotation: Rotation) -> Result<LogWriter> {
        let w = dray_logfile::Writer::open(path, rotation)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        Ok(LogWriter {
            path: path.to_path_buf(),
            inner: Arc::new(Mutex::new(w)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry (rotating when due).
    pub fn write(&self, e: Entry) -> Result<()> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write(&e)
            .map_err(|err| Error::io(format!("writing {}", self.path.display()), err))
    }
}
