//! The OCI runtime, driven through its runc-compatible command line (`dray` by default; runc
//! or crun through the runtime options' `BinaryName`).
//!
//! Every invocation logs in JSON to `<bundle>/log.json` (runc's `--log-format json`), and a
//! failure is reported with the last error the runtime logged there, as containerd's runc
//! shim does. Output that the shim reads (`ps`, `events --stats`) goes to a memfd, not a pipe:
//! nothing can block on it and the reaper owns every exit.

use crate::reaper::{Exit, Reaper};
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("cannot run {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("{0}")]
    Failed(String),
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
}

/// Which runtime, with which global flags (runc's `--root`, `--systemd-cgroup`).
#[derive(Debug, Clone)]
pub struct RuntimeCli {
    pub binary: String,
    pub root: PathBuf,
    pub log: PathBuf,
    pub systemd_cgroup: bool,
    /// `--debug` (the shim runs with `-debug`): the runtime's debug lines, phase timings
    /// included, go to the log file too.
    pub debug: bool,
    /// Who owns the container's stdio pipes (containerd's IoUid/IoGid), exec's included.
    pub io_owner: Option<(u32, u32)>,
    pub reaper: Arc<Reaper>,
}

/// The three standard streams of a runtime invocation (for `create` and `exec` they become
/// the container process's own).
#[derive(Debug)]
pub struct Stdio3 {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl Stdio3 {
    /// No streams given: the runtime's stdin is /dev/null and the shim captures its output.
    pub fn null() -> Stdio3 {
        Stdio3 {
            stdin: None,
            stdout: None,
            stderr: None,
        }
    }

    /// Streams that become a container process's own: what is not given is /dev/null (never
    /// a capture file, which the container could fill).
    pub fn or_dev_null(mut self) -> Result<Stdio3, RuntimeError> {
        for slot in [&mut self.stdin, &mut self.stdout, &mut self.stderr] {
            if slot.is_none() {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .map_err(|e| RuntimeError::Io("/dev/null", e))?;
                *slot = Some(OwnedFd::from(f));
            }
        }
        Ok(self)
    }
}

fn memfd(name: &str) -> Result<File, RuntimeError> {
    let n = CString::new(name).map_err(|_| RuntimeError::Failed("bad memfd name".into()))?;
    // SAFETY: `n` is a valid NUL-terminated string; memfd_create returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(n.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(RuntimeError::Io("memfd_create", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// A memfd holding `data`, positioned at its start: stdin for a child.
pub fn memfd_with(name: &str, data: &[u8]) -> Result<File, RuntimeError> {
    let mut m = memfd(name)?;
    m.write_all(data).map_err(|e| RuntimeError::Io("memfd", e))?;
    m.seek(SeekFrom::Start(0)).map_err(|e| RuntimeError::Io("memfd", e))?;
    Ok(m)
}

fn stdio_of(fd: Option<OwnedFd>) -> Stdio {
    match fd {
        Some(f) => Stdio::from(f),
        None => Stdio::null(),
    }
}

/// The runtime's absolute path, looked up on PATH once per container rather than at every
/// invocation (a name containing `/` is used as it is).
pub fn resolve(binary: &str) -> String {
    if binary.contains('/') {
        return binary.to_string();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(binary))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| binary.to_string())
}

/// The last `level=error` message of a runc JSON log written after `from`.
pub fn last_error(log: &Path, from: u64) -> Option<String> {
    let mut f = File::open(log).ok()?;
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut s = String::new();
    f.read_to_string(&mut s).ok()?;
    s.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "error")
        .and_then(|v| v["msg"].as_str().map(str::to_string))
}

impl RuntimeCli {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root);
        c.arg("--log").arg(&self.log).args(["--log-format", "json"]);
        if self.systemd_cgroup {
            c.arg("--systemd-cgroup");
        }
        if self.debug {
            c.arg("--debug");
        }
        c.args(args);
        c
    }

    /// Runs the runtime with `args`; `io` becomes its standard streams, `input` (if any) its
    /// stdin instead. Returns what it printed on stdout.
    pub async fn run(&self, args: &[&str], io: Stdio3, input: Option<&[u8]>) -> Result<Vec<u8>, RuntimeError> {
        let log_start = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let mut out = None;
        let mut c = self.command(args);
        let Stdio3 { stdin, stdout, stderr } = io;
        match input {
            Some(data) => {
                c.stdin(Stdio::from(memfd_with("runtime-stdin", data)?));
            }
            None => {
                c.stdin(stdio_of(stdin));
            }
        }
        match stdout {
            Some(f) => {
                c.stdout(Stdio::from(f));
            }
            None => {
                let m = memfd("runtime-stdout")?;
                c.stdout(Stdio::from(m.try_clone().map_err(|e| RuntimeError::Io("dup", e))?));
                out = Some(m);
            }
        }
        let errf = match stderr {
            Some(f) => {
                c.stderr(Stdio::from(f));
                None
            }
            None => {
                let m = memfd("runtime-stderr")?;
                c.stderr(Stdio::from(m.try_clone().map_err(|e| RuntimeError::Io("dup", e))?));
                Some(m)
            }
        };
        let child = c.spawn().map_err(|e| RuntimeError::Spawn(self.binary.clone(), e))?;
        let exit_rx = self.reaper.subscribe(child.id() as i32);
        // `c` holds the parent's copies of the child's stdio: drop them now.
        drop(c);
        drop(child);
        let exit: Exit = exit_rx
            .await
            .map_err(|_| RuntimeError::Failed(format!("{} vanished", self.binary)))?;
        let read_all = |f: Option<File>| -> Vec<u8> {
            let mut v = Vec::new();
            if let Some(mut f) = f {
                let _ = f.seek(SeekFrom::Start(0));
                let _ = f.read_to_end(&mut v);
            }
            v
        };
        let stdout = read_all(out);
        if exit.status != 0 {
            let err = String::from_utf8_lossy(&read_all(errf)).trim().to_string();
            let msg = last_error(&self.log, log_start)
                .or(if err.is_empty() { None } else { Some(err) })
                .unwrap_or_else(|| format!("exit status {}", exit.status));
            return Err(RuntimeError::Failed(format!(
                "{} {}: {msg}",
                self.binary,
                args.first().unwrap_or(&"")
            )));
        }
        Ok(stdout)
    }

    /// The pids of the container's processes (`ps --format json`).
    pub async fn pids(&self, id: &str) -> Result<Vec<i32>, RuntimeError> {
        let out = self.run(&["ps", "--format", "json", id], Stdio3::null(), None).await?;
        serde_json::from_slice::<Option<Vec<i32>>>(&out)
            .map(Option::unwrap_or_default)
            .map_err(|e| RuntimeError::Failed(format!("ps output: {e}")))
    }

    /// One `events --stats` sample: runc's stats data.
    pub async fn stats(&self, id: &str) -> Result<serde_json::Value, RuntimeError> {
        let out = self.run(&["events", "--stats", id], Stdio3::null(), None).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&out).map_err(|e| RuntimeError::Failed(format!("events --stats output: {e}")))?;
        Ok(v["data"].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_reads_only_new_lines() {
        let d = std::env::temp_dir().join(format!("dray-shim-log-{}", std::process::id()));
        let old = "{\"level\":\"error\",\"msg\":\"old\",\"time\":\"t\"}\n";
        let new =
            "{\"level\":\"info\",\"msg\":\"x\"}\n{\"level\":\"error\",\"msg\":\"container not found\"}\nnot json\n";
        std::fs::write(&d, format!("{old}{new}")).unwrap();
        assert_eq!(last_error(&d, old.len() as u64).as_deref(), Some("container not found"));
        assert_eq!(last_error(&d, (old.len() + new.len()) as u64), None);
        let _ = std::fs::remove_file(&d);
    }
}
