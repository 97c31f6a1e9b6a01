//! `hooks` (config.md "POSIX-platform Hooks"): runs one hook with the container state on its
//! stdin, its own args and env, and its timeout.
//!
//! Who runs what, and when (config.md "Lifecycle"):
//! - `prestart`, `createRuntime`: the runtime, in the runtime's namespaces, after the
//!   container's namespaces and mounts exist and before pivot_root ([`crate::process`]).
//! - `createContainer`: the init, in the container's namespaces, before pivot_root.
//! - `startContainer`: the init, after `start`, just before the user's process is executed.
//! - `poststart`: `start`, after the user process was started; failures only warn.
//! - `poststop`: `delete`, after the container is stopped; failures only warn.

use crate::error::{Context, Error, Result};
use oci_spec::runtime::Hook;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs one hook with `state` (the OCI state JSON) on its stdin.
pub fn run(hook: &Hook, state: &str) -> Result<()> {
    let path = hook.path();
    let name = path.display().to_string();
    let mut cmd = Command::new(path);
    if let Some(args) = hook.args() {
        if let Some((first, rest)) = args.split_first() {
            cmd.arg0(first).args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    // The state goes in through a memfd, not a pipe: a hook that never reads its stdin cannot
    // block the runtime. Its output is collected in another memfd and reported on failure.
    let input = memfd("dray-hook-state")?;
    (&input)
        .write_all(state.as_bytes())
        .ctx(|| "writing the hook's state".into())?;
    (&input)
        .seek(SeekFrom::Start(0))
        .ctx(|| "rewinding the hook's state".into())?;
    let output = memfd("dray-hook-output")?;
    cmd.stdin(Stdio::from(input));
    cmd.stdout(Stdio::from(output.try_clone().ctx(|| "dup".into())?));
    cmd.stderr(Stdio::from(output.try_clone().ctx(|| "dup".into())?));
    // SAFETY: pre_exec runs in the forked child before exec; it only restores the signal mask
    // and dispositions and marks fds close-on-exec, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            crate::sys::reset_signals();
            // A hook gets its stdio and nothing else: not the fds the container inherits
            // (--preserve-fds), nor a seccomp listener's (runc's notify test counts them).
            // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on this process's fds.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
            Ok(())
        });
    }
    let mut child = cmd.spawn().ctx(|| format!("running hook {name}"))?;
    drop(cmd);
    let timeout = hook
        .timeout()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .map(Duration::from_secs);
    if let Some(t) = timeout {
        if !crate::sys::wait_exit(child.id() as i32, Some(t)) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::msg(format!("hook {name} timed out after {}s", t.as_secs())));
        }
    }
    let status = child.wait().ctx(|| format!("waiting for hook {name}"))?;
    if status.success() {
        return Ok(());
    }
    let mut out = String::new();
    let _ = (&output).seek(SeekFrom::Start(0));
    let _ = (&output).take(4096).read_to_string(&mut out);
    let out = out.trim();
    let out = if out.is_empty() {
        String::new()
    } else {
        format!(", output: {out}")
    };
    match status.signal() {
        Some(sig) => Err(Error::msg(format!("{name}: signal: {}{out}", signal_name(sig)))),
        None => Err(Error::msg(format!(
            "{name}: exited with status {}{out}",
            status.code().unwrap_or(-1)
        ))),
    }
}

/// A signal as runc's hook errors word it (Go's names: "bad system call", "killed").
fn signal_name(sig: i32) -> String {
    // SAFETY: strsignal returns a pointer to a static or thread-local string, read at once.
    let p = unsafe { libc::strsignal(sig) };
    if p.is_null() {
        return format!("signal {sig}");
    }
    // SAFETY: a valid NUL-terminated string from strsignal.
    unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().to_lowercase()
}

/// An anonymous close-on-exec memory file.
fn memfd(name: &str) -> Result<std::fs::File> {
    let c = std::ffi::CString::new(name).map_err(|_| Error::msg("memfd name"))?;
    // SAFETY: memfd_create with a valid C string.
    let fd = unsafe { libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "memfd_create".into());
    }
    // SAFETY: a new fd owned here.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// Runs hooks in order, stopping at the first failure.
/// runc's words: `error running startContainer hook #0: ...`.
pub fn run_all(hooks: Option<&Vec<Hook>>, state: &str, phase: &str) -> Result<()> {
    for (i, h) in hooks.into_iter().flatten().enumerate() {
        run(h, state).ctx(|| format!("error running {phase} hook #{i}"))?;
    }
    Ok(())
}

/// Runs hooks in order, logging failures as warnings (poststart, poststop).
pub fn run_all_warn(hooks: Option<&Vec<Hook>>, state: &str, phase: &str) {
    for (i, h) in hooks.into_iter().flatten().enumerate() {
        if let Err(e) = run(h, state) {
            tracing::warn!("{phase} hook #{i} failed: {e}");
        }
    }
}
