//! A container process's standard streams, as containerd hands them over: paths of FIFOs
//! (created by the client), `file://` and `binary://` log URIs, or a terminal.
//!
//! The process writes into pipes the shim owns; the shim pumps them to their destination with
//! non-blocking I/O on the tokio reactor (no blocking or tokio-fs calls on FIFOs). Output is
//! read as soon as the process writes it: when the destination's reader is slow or gone, up
//! to [`OUTPUT_BUFFER`] bytes wait in the shim and the rest is dropped, so a container is
//! never blocked by its log reader. With a terminal, the runtime sends the pty master through
//! a console socket and the shim pumps the master instead.

use crate::runtime::Stdio3;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Output held for a slow reader before the shim starts dropping it.
pub const OUTPUT_BUFFER: usize = 1 << 20;

#[derive(Debug, Error)]
pub enum IoError {
    #[error("{0}: {1}")]
    Os(String, std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

fn os<E: Into<std::io::Error>>(what: impl Into<String>) -> impl FnOnce(E) -> IoError {
    let w = what.into();
    move |e| IoError::Os(w, e.into())
}

/// Where one output stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Null,
    /// A FIFO (or other file) the client reads.
    Path(PathBuf),
    /// `file:///abs/path`: appended to.
    File(PathBuf),
    /// `binary:///abs/path?k=v`: a logging program started by the shim (containerd's
    /// protocol: stdout on fd 3, stderr on fd 4, fd 5 closed when it is ready).
    Binary(PathBuf, Vec<String>),
    /// `dray-log:///FIFO?log=LOG&max-size=N&max-file=M` (drayd's): the shim writes the
    /// docker json-file log LOG itself, so that no line waits for or is lost by a reader,
    /// and copies the output to FIFO for attached clients (dropped when nobody reads).
    Log {
        fifo: PathBuf,
        log: PathBuf,
        rotation: dray_logfile::Rotation,
    },
}

/// Decodes `%XX` escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a containerd stdio URI.
pub fn parse_dest(s: &str) -> Result<Dest, IoError> {
    if s.is_empty() {
        return Ok(Dest::Null);
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Ok(Dest::Path(PathBuf::from(s)));
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !path.starts_with('/') {
        return Err(IoError::Invalid(format!("{s}: the path of a log URI must be absolute")));
    }
    match scheme {
        "dray-log" => {
            let mut log = None;
            let mut rotation = dray_logfile::Rotation::default();
            for kv in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                let v = unescape(v);
                match k {
                    "log" => log = Some(PathBuf::from(v)),
                    "max-size" => {
                        rotation.max_size = v.parse().map_err(|_| IoError::Invalid(format!("{s}: bad max-size")))?
                    }
                    "max-file" => {
                        rotation.max_file = v
                            .parse()
                            .ok()
                            .filter(|n| *n >= 1)
                            .ok_or_else(|| IoError::Invalid(format!("{s}: bad max-file")))?
                    }
                    _ => {}
                }
            }
            let log = log
                .filter(|l| l.is_absolute())
                .ok_or_else(|| IoError::Invalid(format!("{s}: log=ABSOLUTE-PATH is required")))?;
            Ok(Dest::Log {
                fifo: PathBuf::from(unescape(path)),
                log,
                rotation,
            })
        }
        "fifo" => Ok(Dest::Path(PathBuf::from(path))),
        "file" => Ok(Dest::File(PathBuf::from(path))),
        "binary" => {
            let mut args = Vec::new();
            for kv in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                args.push(k.to_string());
                if !v.is_empty() {
                    args.push(v.to_string());
                }
            }
            Ok(Dest::Binary(PathBuf::from(path), args))
        }
        o => Err(IoError::Invalid(format!("{s}: unsupported log URI scheme {o:?}"))),
    }
}

fn set_nonblocking(fd: RawFd) -> Result<(), IoError> {
    let fl = fcntl(fd, FcntlArg::F_GETFL).map_err(os("fcntl"))?;
    fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK)).map_err(os("fcntl"))?;
    Ok(())
}

/// Registers a file with the reactor (must run inside the tokio runtime).
pub fn register(f: File) -> std::io::Result<AsyncFd<File>> {
    // SAFETY: a `File` owns its descriptor: it stays open, and `as_raw_fd` returns the same
    // number, until the `File` (moved into the AsyncFd) is dropped.
    unsafe { AsyncFd::register(f) }.map_err(|e| e.into_parts().1)
}

fn async_file(f: File) -> Result<AsyncFd<File>, IoError> {
    set_nonblocking(f.as_raw_fd())?;
    register(f).map_err(os("epoll"))
}

fn pipe() -> Result<(File, File), IoError> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(os("pipe"))?;
    Ok((File::from(r), File::from(w)))
}

/// Reads once, waiting for readiness; `Ok(0)` at end of stream (EIO from a pty master whose
/// slave is gone counts as the end).
async fn read_some(fd: &AsyncFd<File>, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        let mut g = fd.readable().await?;
        match g.try_io(|f| f.get_ref().read(buf)) {
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
            Ok(r) => return r,
            Err(_) => continue,
        }
    }
}

async fn write_all(fd: &AsyncFd<File>, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        let mut g = fd.writable().await?;
        match g.try_io(|f| f.get_ref().write(buf)) {
            Ok(Ok(n)) => buf = &buf[n..],
            Ok(Err(e)) => return Err(e),
            Err(_) => continue,
        }
    }
    Ok(())
}

/// The destination side of an output pump.
#[derive(Debug)]
enum Sink {
    /// Regular files never block: written in place.
    File(File),
    Fd(AsyncFd<File>),
}

/// A json-file log written by the shim; stdout and stderr of a process share one writer.
#[derive(Debug, Clone)]
pub struct LogSink {
    writer: Arc<std::sync::Mutex<dray_logfile::Writer>>,
    stream: dray_logfile::Stream,
}

/// The open json-file writers, by path: the two streams of a process share one.
fn log_writer(
    path: &Path,
    rotation: dray_logfile::Rotation,
) -> Result<Arc<std::sync::Mutex<dray_logfile::Writer>>, IoError> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock, Weak};
    type Open = Mutex<HashMap<PathBuf, Weak<Mutex<dray_logfile::Writer>>>>;
    static OPEN: OnceLock<Open> = OnceLock::new();
    let mut open = OPEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    open.retain(|_, w| w.strong_count() > 0);
    if let Some(w) = open.get(path).and_then(Weak::upgrade) {
        return Ok(w);
    }
    let w = Arc::new(Mutex::new(
        dray_logfile::Writer::open(path, rotation).map_err(os(format!("{}", path.display())))?,
    ));
    open.insert(path.to_path_buf(), Arc::downgrade(&w));
    Ok(w)
}

impl LogSink {
    fn write_lines(&self, lines: Vec<Vec<u8>>, failed: &mut bool) {
        if lines.is_empty() {
            return;
        }
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        for line in lines {
            let e = dray_logfile::Entry {
                stream: self.stream,
                line,
                time: dray_logfile::now(),
            };
            if let Err(err) = w.write(&e) {
                if !*failed {
                    tracing::error!("writing {}: {err}", w.path().display());
                    *failed = true;
                }
            }
        }
    }
}

/// Copies `src` to `sink` until `src` ends, never leaving `src` unread: data the sink cannot
/// take waits in a bounded buffer and the excess is dropped.
async fn pump_out(src: AsyncFd<File>, sink: Option<Sink>, log: Option<LogSink>, what: String) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut dropped = 0usize;
    let mut open = true;
    let mut split = dray_logfile::LineSplitter::default();
    let mut log_failed = false;
    // Every chunk read goes to the log first (it never waits for anyone).
    let mut to_log = |data: &[u8]| {
        if let Some(l) = &log {
            l.write_lines(split.push(data), &mut log_failed);
        }
    };
    match sink {
        None => loop {
            match read_some(&src, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => to_log(&buf[..n]),
            }
        },
        Some(Sink::File(mut f)) => loop {
            match read_some(&src, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    to_log(&buf[..n]);
                    let _ = f.write_all(&buf[..n]);
                }
            }
        },
        Some(Sink::Fd(dst)) => {
            while open || !pending.is_empty() {
                tokio::select! {
                    r = read_some(&src, &mut buf), if open => match r {
                        Ok(0) | Err(_) => open = false,
                        Ok(n) => {
                            to_log(&buf[..n]);
                            let room = OUTPUT_BUFFER.saturating_sub(pending.len());
                            if pending.is_empty() {
                                // Fast path: straight to the sink when it has room.
                                let w = dst.get_ref().write(&buf[..n]).unwrap_or(0);
                                pending.extend_from_slice(&buf[w..n.min(w + room)]);
                            } else {
                                pending.extend_from_slice(&buf[..n.min(room)]);
                            }
                            if n > room {
                                if dropped == 0 {
                                    tracing::warn!("{what}: reader too slow, dropping output");
                                }
                                dropped += n - room;
                            }
                        }
                    },
                    g = dst.writable(), if !pending.is_empty() => {
                        let Ok(mut g) = g else { break };
                        match g.try_io(|f| f.get_ref().write(&pending)) {
                            Ok(Ok(n)) => { pending.drain(..n); }
                            Ok(Err(_)) => break,
                            Err(_) => {}
                        }
                    }
                }
            }
        }
    }
    if let (Some(l), Some(rest)) = (&log, split.finish()) {
        l.write_lines(vec![rest], &mut log_failed);
    }
    if dropped > 0 {
        tracing::warn!("{what}: {dropped} bytes dropped");
    }
}

/// Copies the client's stdin FIFO into the process until the client closes it or CloseIO
/// asks; what the FIFO already holds is delivered before the process's stdin is closed.
async fn pump_in(src: AsyncFd<File>, dst: AsyncFd<File>, mut close: oneshot::Receiver<()>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            r = read_some(&src, &mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => if write_all(&dst, &buf[..n]).await.is_err() { return },
            },
            _ = &mut close => {
                while let Ok(n) = src.get_ref().read(&mut buf) {
                    if n == 0 || write_all(&dst, &buf[..n]).await.is_err() {
                        break;
                    }
                }
                return;
            }
        }
    }
}

/// What the shim keeps of a process's I/O once it runs.
#[derive(Debug, Default)]
pub struct ProcessIo {
    stdin_close: Option<oneshot::Sender<()>>,
    /// The pty master (terminal processes), for ResizePty.
    pub console: Option<Arc<File>>,
    pumps: Vec<JoinHandle<()>>,
    inputs: Vec<JoinHandle<()>>,
}

impl ProcessIo {
    /// CloseIO: the process's stdin ends once what the client wrote is delivered.
    pub fn close_stdin(&mut self) {
        if let Some(tx) = self.stdin_close.take() {
            let _ = tx.send(());
        }
    }

    /// Waits (at most `limit`) until all output is delivered, then stops every pump.
    pub async fn finish(&mut self, limit: Duration) {
        let pumps = std::mem::take(&mut self.pumps);
        let aborts: Vec<_> = pumps.iter().map(|p| p.abort_handle()).collect();
        let all = async {
            for p in pumps {
                let _ = p.await;
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            aborts.iter().for_each(|a| a.abort());
        }
        self.abort();
    }

    /// Stops every pump at once (failed create/exec, shim shutdown).
    pub fn abort(&mut self) {
        for p in self.pumps.drain(..).chain(self.inputs.drain(..)) {
            p.abort();
        }
        self.stdin_close = None;
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        self.abort();
    }
}

/// The stdio of one process, as asked: stdin/stdout/stderr URIs and the terminal flag.
#[derive(Debug, Clone, Default)]
pub struct StdioSpec {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Set up before the runtime runs: the runtime's stdio and, for a terminal, the console
/// socket it sends the pty master to.
#[derive(Debug)]
pub struct Prepared {
    pub child: Stdio3,
    pub console_socket: Option<ConsoleSocket>,
    pub io: ProcessIo,
    stdin_fifo: Option<AsyncFd<File>>,
    stdout_sink: Option<Sink>,
    stdout_log: Option<LogSink>,
}

fn append_to(p: &Path) -> Result<Sink, IoError> {
    // O_NONBLOCK: should the "file" be a FIFO, opening it must not wait for a reader.
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(p)
        .map_err(os(format!("{}", p.display())))?;
    Ok(Sink::File(f))
}

/// The sink (and, for `dray-log`, the json-file log) of one output stream.
fn open_output(dest: &Dest, stream: dray_logfile::Stream) -> Result<(Option<Sink>, Option<LogSink>), IoError> {
    if let Dest::Log { fifo, log, rotation } = dest {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(os(format!("{}", dir.display())))?;
        }
        let log = LogSink {
            writer: log_writer(log, *rotation)?,
            stream,
        };
        let sink = if fifo.exists() {
            open_sink(&Dest::Path(fifo.clone()))?
        } else {
            None
        };
        return Ok((sink, Some(log)));
    }
    Ok((open_sink(dest)?, None))
}

fn open_sink(dest: &Dest) -> Result<Option<Sink>, IoError> {
    Ok(match dest {
        Dest::Null | Dest::Binary(..) | Dest::Log { .. } => None,
        Dest::File(p) => {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).map_err(os(format!("{}", dir.display())))?;
            }
            Some(append_to(p)?)
        }
        Dest::Path(p) => {
            let is_fifo = std::fs::metadata(p).map(|m| m.file_type().is_fifo()).unwrap_or(false);
            if !is_fifo {
                return Ok(Some(append_to(p)?));
            }
            // Read-write: the open never waits for a reader, and a reader that goes away
            // does not turn our writes into EPIPE.
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(p)
                .map_err(os(format!("{}", p.display())))?;
            Some(Sink::Fd(async_file(f)?))
        }
    })
}

fn open_stdin(path: &str) -> Result<Option<AsyncFd<File>>, IoError> {
    if path.is_empty() {
        return Ok(None);
    }
    let p = match parse_dest(path)? {
        Dest::Path(p) => p,
        _ => {
            return Err(IoError::Invalid(format!(
                "stdin {path:?}: only a FIFO path is supported"
            )))
        }
    };
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&p)
        .map_err(os(format!("{}", p.display())))?;
    Ok(Some(async_file(f)?))
}

/// Starts a `binary://` logger with the two output pipes and waits until it says it is
/// ready (closes fd 5). Returns the write ends for the process.
async fn start_logger(bin: &Path, args: &[String], id: &str, ns: &str) -> Result<(File, File), IoError> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (wait_r, wait_w) = pipe()?;
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), wait_w.as_raw_fd()];
    let mut cmd = std::process::Command::new(bin);
    cmd.args(args)
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", ns)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: the closure only calls async-signal-safe fcntl/dup2 on fds that are open in
    // the child (the parent keeps them open until spawn returns).
    unsafe {
        cmd.pre_exec(move || {
            let mut high = [0; 3];
            for (i, fd) in fds.iter().enumerate() {
                // Close-on-exec: only the dup2 targets below may reach the logger, or it
                // could never signal readiness by closing fd 5.
                high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 100);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().enumerate() {
                // A handful of extra fds (runc's --preserve-fds).
                let target = 3 + i32::try_from(i).unwrap_or(i32::MAX - 3);
                if libc::dup2(*fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(os(format!("log binary {}", bin.display())))?;
    drop(cmd);
    drop((out_r, err_r, wait_w));
    let wait = async_file(wait_r)?;
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(10), read_some(&wait, &mut b)).await {
        Ok(_) => Ok((out_w, err_w)),
        Err(_) => Err(IoError::Invalid(format!(
            "log binary {} did not get ready",
            bin.display()
        ))),
    }
}

/// Creates the pipes (or console socket) for a process and starts its pumps; `uid`/`gid`
/// own the process's ends (containerd's IoUid/IoGid, for user namespaces).
pub async fn prepare(spec: &StdioSpec, id: &str, ns: &str, owner: Option<(u32, u32)>) -> Result<Prepared, IoError> {
    let mut io = ProcessIo::default();
    let stdin_fifo = open_stdin(&spec.stdin)?;
    let out = parse_dest(&spec.stdout)?;
    let err = parse_dest(&spec.stderr)?;
    let chown = |f: &File| -> Result<(), IoError> {
        if let Some((u, g)) = owner {
            std::os::unix::fs::fchown(f, Some(u), Some(g)).map_err(os("fchown"))?;
        }
        Ok(())
    };
    if spec.terminal {
        let (stdout_sink, stdout_log) = match &out {
            Dest::Binary(bin, args) => {
                // The terminal's output to the logger's stdout; its stderr stays empty.
                let (o, _e) = start_logger(bin, args, id, ns).await?;
                (Some(Sink::Fd(async_file(o)?)), None)
            }
            _ => open_output(&out, dray_logfile::Stream::Stdout)?,
        };
        return Ok(Prepared {
            child: Stdio3::null()
                .or_dev_null()
                .map_err(|e| IoError::Invalid(e.to_string()))?,
            console_socket: Some(ConsoleSocket::new()?),
            io,
            stdin_fifo,
            stdout_sink,
            stdout_log,
        });
    }
    let mut child = Stdio3::null();
    if let Some(fifo) = stdin_fifo {
        let (r, w) = pipe()?;
        chown(&r)?;
        child.stdin = Some(OwnedFd::from(r));
        let (tx, rx) = oneshot::channel();
        io.stdin_close = Some(tx);
        io.inputs.push(tokio::spawn(pump_in(fifo, async_file(w)?, rx)));
    }
    if let Dest::Binary(bin, args) = &out {
        let (o, e) = start_logger(bin, args, id, ns).await?;
        chown(&o)?;
        chown(&e)?;
        child.stdout = Some(OwnedFd::from(o));
        child.stderr = Some(OwnedFd::from(e));
    } else {
        let streams = [
            (&out, &mut child.stdout, dray_logfile::Stream::Stdout),
            (&err, &mut child.stderr, dray_logfile::Stream::Stderr),
        ];
        for (dest, slot, stream) in streams {
            let (sink, log) = open_output(dest, stream)?;
            if sink.is_some() || log.is_some() {
                let (r, w) = pipe()?;
                chown(&w)?;
                *slot = Some(OwnedFd::from(w));
                let what = format!("{id} {}", stream.as_str());
                io.pumps.push(tokio::spawn(pump_out(async_file(r)?, sink, log, what)));
            }
        }
    }
    Ok(Prepared {
        child: child.or_dev_null().map_err(|e| IoError::Invalid(e.to_string()))?,
        console_socket: None,
        io,
        stdin_fifo: None,
        stdout_sink: None,
        stdout_log: None,
    })
}

impl Prepared {
    /// After the runtime has run: with a terminal, takes the pty master from the console
    /// socket and starts pumping it.
    pub fn finish(mut self, id: &str) -> Result<ProcessIo, IoError> {
        let Some(sock) = self.console_socket.take() else {
            return Ok(self.io);
        };
        let master = sock.receive()?;
        let master = Arc::new(master);
        let reader = master.try_clone().map_err(os("dup"))?;
        let (sink, log) = (self.stdout_sink.take(), self.stdout_log.take());
        if sink.is_some() || log.is_some() {
            self.io.pumps.push(tokio::spawn(pump_out(
                async_file(reader)?,
                sink,
                log,
                format!("{id} tty"),
            )));
        }
        if let Some(fifo) = self.stdin_fifo.take() {
            let w = master.try_clone().map_err(os("dup"))?;
            let (tx, rx) = oneshot::channel();
            self.io.stdin_close = Some(tx);
            self.io.inputs.push(tokio::spawn(pump_in(fifo, async_file(w)?, rx)));
        }
        self.io.console = Some(master);
        Ok(self.io)
    }
}

/// A listening unix socket the runtime sends the pty master to (runc's `--console-socket`).
#[derive(Debug)]
pub struct ConsoleSocket {
    pub path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    fn new() -> Result<ConsoleSocket, IoError> {
        // A fresh private directory (mkdtemp, 0700): nobody can take or pre-create the path.
        let dir = nix::unistd::mkdtemp(&std::env::temp_dir().join("dray-pty-XXXXXX")).map_err(os("mkdtemp"))?;
        let path = dir.join("pty.sock");
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(IoError::Os(path.display().to_string(), e));
            }
        };
        Ok(ConsoleSocket { path, listener })
    }

    /// Takes the master the runtime sent (it connected and sent before exiting).
    fn receive(&self) -> Result<File, IoError> {
        self.listener.set_nonblocking(true).map_err(os("console socket"))?;
        let (conn, _) = self
            .listener
            .accept()
            .map_err(|e| IoError::Os("the runtime sent no terminal".into(), e))?;
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            // The runtime sent before it exited: never wait (a silent peer must not stall
            // the shim's only thread).
            nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        )
        .map_err(os("console socket"))?;
        let mut received = Vec::new();
        for c in msg.cmsgs().map_err(os("console socket"))? {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: these fds were just received with SCM_RIGHTS and are ours alone;
                // owning them closes any beyond the first.
                received.extend(fds.into_iter().map(|fd| unsafe { File::from_raw_fd(fd) }));
            }
        }
        received
            .into_iter()
            .next()
            .ok_or_else(|| IoError::Invalid("the runtime sent no terminal".into()))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// ResizePty: sets the terminal's window size.
pub fn resize(console: &File, width: u32, height: u32) -> Result<(), IoError> {
    let ws = libc::winsize {
        ws_row: u16::try_from(height).unwrap_or(u16::MAX),
        ws_col: u16::try_from(width).unwrap_or(u16::MAX),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct from the pointer, which is valid here.
    let r = unsafe { libc::ioctl(console.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r < 0 {
        return Err(IoError::Os("resize pty".into(), std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            parse_dest("dray-log:///run/b/init-stdout?log=/var/lib/x%20y/c-json.log&max-size=1024&max-file=2").unwrap(),
            Dest::Log {
                fifo: "/run/b/init-stdout".into(),
                log: "/var/lib/x y/c-json.log".into(),
                rotation: dray_logfile::Rotation {
                    max_size: 1024,
                    max_file: 2
                }
            }
        );
        assert!(parse_dest("dray-log:///run/b/x?max-file=0&log=/l").is_err());
        assert!(parse_dest("dray-log:///run/b/x").is_err());
        assert_eq!(parse_dest("").unwrap(), Dest::Null);
        assert_eq!(parse_dest("/run/x/stdout").unwrap(), Dest::Path("/run/x/stdout".into()));
        assert_eq!(parse_dest("fifo:///a/b").unwrap(), Dest::Path("/a/b".into()));
        assert_eq!(
            parse_dest("file:///var/log/c.log").unwrap(),
            Dest::File("/var/log/c.log".into())
        );
        assert_eq!(
            parse_dest("binary:///usr/bin/logger?id=7&debug").unwrap(),
            Dest::Binary("/usr/bin/logger".into(), vec!["id".into(), "7".into(), "debug".into()])
        );
        assert!(parse_dest("file://relative").is_err());
        assert!(parse_dest("ftp:///x").is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn output_never_blocks_the_writer_when_nobody_reads() {
        let dir = std::env::temp_dir().join(format!("dray-shim-io-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let fifo = dir.join("out");
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let spec = StdioSpec {
            stdout: fifo.to_string_lossy().into_owned(),
            ..Default::default()
        };
        let p = prepare(&spec, "t", "ns", None).await.unwrap();
        let w = File::from(p.child.stdout.unwrap());
        // 4 MiB into a FIFO nobody reads: more than the pipe and the shim's buffer hold.
        let writer = std::thread::spawn(move || {
            let mut w = w;
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..64 {
                w.write_all(&chunk).unwrap();
            }
        });
        for _ in 0..500 {
            if writer.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(writer.is_finished(), "the writer blocked on an absent reader");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
