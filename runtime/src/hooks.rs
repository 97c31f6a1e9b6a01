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
use std::io::Write;
use std::os::fd::AsRawFd;
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
    cmd.stdin(Stdio::piped());
    // SAFETY: pre_exec runs in the forked child before exec; it only restores the signal mask,
    // which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let empty = nix::sys::signal::SigSet::empty();
            let _ = nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&empty), None);
            Ok(())
        });
    }
    let mut child = cmd.spawn().ctx(|| format!("running hook {name}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin must not fail the write (EPIPE is ignored).
        let _ = stdin.write_all(state.as_bytes());
    }
    let timeout = hook.timeout().filter(|t| *t > 0).map(|t| Duration::from_secs(t as u64));
    if let Some(t) = timeout {
        let exited = match crate::sys::pidfd_open(child.id() as i32) {
            Ok(fd) => crate::sys::poll_readable(fd.as_raw_fd(), Some(t)).unwrap_or(true),
            Err(_) => true,
        };
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::msg(format!("hook {name} timed out after {}s", t.as_secs())));
        }
    }
    let status = child.wait().ctx(|| format!("waiting for hook {name}"))?;
    if status.success() {
        Ok(())
    } else if let Some(sig) = status.signal() {
        Err(Error::msg(format!("hook {name} was killed by signal {sig}")))
    } else {
        Err(Error::msg(format!(
            "hook {name} exited with status {}",
            status.code().unwrap_or(-1)
        )))
    }
}

/// Runs hooks in order, stopping at the first failure.
pub fn run_all(hooks: Option<&Vec<Hook>>, state: &str, phase: &str) -> Result<()> {
    for h in hooks.into_iter().flatten() {
        run(h, state).ctx(|| format!("{phase} hook"))?;
    }
    Ok(())
}

/// Runs hooks in order, logging failures as warnings (poststart, poststop).
pub fn run_all_warn(hooks: Option<&Vec<Hook>>, state: &str, phase: &str) {
    for h in hooks.into_iter().flatten() {
        if let Err(e) = run(h, state) {
            tracing::warn!("{phase} hook failed: {e}");
        }
    }
}
