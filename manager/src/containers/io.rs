//! A task's standard streams on drayd's side: the FIFOs the shim writes (containerd's
//! protocol, so any shim works), drained on the reactor (non-blocking pipes, no thread per
//! container) to attached clients and, for shims that do not write the log themselves, into
//! the json-file log (a line appended to a file in the page cache: it does not block).
//!
//! Order of phases: [`Fifos::create`] makes the FIFOs in the bundle and opens their read
//! ends with a keep-alive writer each, so that the shim's open for writing never blocks and
//! the reader sees no end-of-file before the shim has them; the pumps start; Task.Create
//! and Task.Start (or Exec and Start) open the shim's ends; [`Fifos::release`] drops the
//! keep-alive writers. From then on a
//! pump ends exactly when the shim closes its end: every byte is read.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{broadcast, Notify};

use crate::error::{Error, IoContext, Result};
use crate::logs::{Entry, LineSplitter, LogWriter, Stream};

/// Output as attached clients get it.
#[derive(Debug, Clone)]
pub struct Output {
    pub stream: Stream,
    pub data: Bytes,
}

/// The running pumps of a task: how many are left, and a wake-up when one ends.
#[derive(Debug, Default)]
pub struct Pumps {
    left: AtomicUsize,
    done: Notify,
}

impl Pumps {
    /// Waits until every pump ended or `limit` passed; true when they all ended.
    pub async fn wait(&self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let n = self.done.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.left.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, n).await.is_err() {
                return self.left.load(Ordering::SeqCst) == 0;
            }
        }
    }
}

fn mkfifo(p: &Path) -> Result<()> {
    let _ = std::fs::remove_file(p);
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| Error::io(format!("mkfifo {}", p.display()), e.into()))
}

/// Opens a FIFO's read end without waiting for a writer, then makes reads blocking.
fn open_reader(p: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .ctx(|| format!("opening {}", p.display()))?;
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    let fl = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).map_err(|e| Error::io("fcntl", e.into()))?;
    let mut flags = nix::fcntl::OFlag::from_bits_truncate(fl);
    flags.remove(nix::fcntl::OFlag::O_NONBLOCK);
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(|e| Error::io("fcntl", e.into()))?;
    Ok(f)
}

/// The FIFOs of one process.
pub struct Fifos {
    pub stdin: Option<PathBuf>,
    pub stdout: PathBuf,
    pub stderr: Option<PathBuf>,
    readers: Vec<(Stream, File)>,
    keepalive: Vec<File>,
}

impl Fifos {
    /// Makes `<dir>/<prefix>-stdin|stdout|stderr` (stderr only without a terminal, stdin only
    /// when the process reads it) and opens drayd's ends.
    pub fn create(dir: &Path, prefix: &str, stdin: bool, tty: bool) -> Result<Fifos> {
        let stdout = dir.join(format!("{prefix}-stdout"));
        let stderr = (!tty).then(|| dir.join(format!("{prefix}-stderr")));
        let stdin = stdin.then(|| dir.join(format!("{prefix}-stdin")));
        for p in [Some(&stdout), stderr.as_ref(), stdin.as_ref()].into_iter().flatten() {
            mkfifo(p)?;
        }
        let mut f = Fifos {
            stdin,
            stdout,
            stderr,
            readers: Vec::new(),
            keepalive: Vec::new(),
        };
        f.open(true)?;
        Ok(f)
    }

    /// Reopens the FIFOs of a process that is running (drayd restarted): the shim holds the
    /// write ends, so no keep-alive is needed.
    pub fn reopen(dir: &Path, prefix: &str) -> Result<Fifos> {
        let stdout = dir.join(format!("{prefix}-stdout"));
        let stderr = Some(dir.join(format!("{prefix}-stderr"))).filter(|p| p.exists());
        let stdin = Some(dir.join(format!("{prefix}-stdin"))).filter(|p| p.exists());
        let mut f = Fifos {
            stdin,
            stdout,
            stderr,
            readers: Vec::new(),
            keepalive: Vec::new(),
        };
        f.open(false)?;
        Ok(f)
    }

    fn open(&mut self, keepalive: bool) -> Result<()> {
        let outs = [
            (Stream::Stdout, Some(self.stdout.clone())),
            (Stream::Stderr, self.stderr.clone()),
        ];
        for (s, p) in outs {
            let Some(p) = p else { continue };
            self.readers.push((s, open_reader(&p)?));
            if keepalive {
                let w = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&p)
                    .ctx(|| format!("opening {}", p.display()))?;
                self.keepalive.push(w);
            }
        }
        Ok(())
    }

    /// Removes the FIFOs (after the process is gone).
    pub fn remove(&self) {
        for p in [Some(&self.stdout), self.stderr.as_ref(), self.stdin.as_ref()]
            .into_iter()
            .flatten()
        {
            let _ = std::fs::remove_file(p);
        }
    }

    /// The containerd stdio paths for Task.Create.
    pub fn paths(&self) -> (String, String, String) {
        let s = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        (s(&self.stdin), self.stdout.display().to_string(), s(&self.stderr))
    }

    /// Starts one pump task per output stream.
    pub fn pump(
        &mut self,
        log: Option<&LogWriter>,
        attach: &broadcast::Sender<Output>,
        pumps: &Arc<Pumps>,
    ) -> Result<()> {
        for (stream, file) in self.readers.drain(..) {
            let rx = tokio::net::unix::pipe::Receiver::from_file(file)
                .map_err(|e| Error::io("watching the container's output", e))?;
            let log = log.cloned();
            let attach = attach.clone();
            let pumps_c = pumps.clone();
            pumps.left.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                drain(rx, stream, log.as_ref(), &attach).await;
                pumps_c.left.fetch_sub(1, Ordering::SeqCst);
                pumps_c.done.notify_waiters();
            });
        }
        Ok(())
    }

    /// Drops the keep-alive writers: the shim holds the FIFOs now (after Task.Create), or the
    /// task failed and the pumps must end.
    pub fn release(&mut self) {
        self.keepalive.clear();
    }
}

/// One read of what the pipe holds (the buffer lives on the stack of this call only, so
/// an idle pump holds no buffer). `Ok(None)` at the end of the stream.
fn read_chunk(rx: &tokio::net::unix::pipe::Receiver) -> std::io::Result<Option<Bytes>> {
    let mut buf = [0u8; 16 * 1024];
    match rx.try_read(&mut buf) {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(Bytes::copy_from_slice(&buf[..n]))),
        Err(e) => Err(e),
    }
}

/// Reads one stream to its end: each chunk goes to attached clients, each line to the log
/// (an exec's output has no log, as in docker).
async fn drain(
    rx: tokio::net::unix::pipe::Receiver,
    stream: Stream,
    log: Option<&LogWriter>,
    attach: &broadcast::Sender<Output>,
) {
    let mut split = LineSplitter::default();
    let mut log_failed = false;
    let mut write = |line: Vec<u8>| {
        let Some(log) = log else { return };
        let r = log.write(Entry {
            stream,
            line,
            time: crate::meta::now_nanos(),
        });
        if let Err(e) = r {
            if !log_failed {
                tracing::error!(log = %log.path().display(), "writing the container's log: {e}");
                log_failed = true;
            }
        }
    };
    loop {
        if rx.readable().await.is_err() {
            break;
        }
        match read_chunk(&rx) {
            Ok(None) => break,
            Ok(Some(data)) => {
                if log.is_some() {
                    for line in split.push(&data) {
                        write(line);
                    }
                }
                let _ = attach.send(Output { stream, data });
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                tracing::warn!("reading the container's {}: {e}", stream.as_str());
                break;
            }
        }
    }
    if let Some(rest) = split.finish() {
        write(rest);
    }
}
