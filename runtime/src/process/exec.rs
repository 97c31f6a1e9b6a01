//! `exec`: a new process inside a running container.
//!
//! The runtime opens the init's namespace files, forks a child that joins them (the user
//! namespace last), and that child forks the process (a pid namespace only applies to
//! children), reports its pid and exits. The process then finishes like the init (console,
//! capabilities, user, cwd, exec lookup) and execs through the trampoline. Phases:
//!
//! ```text
//! runtime                                  child (joins)          process
//! [cgroup.procs], oom_score_adj, prlimit
//! Go ─────────────────────────────────▶    [v1 tasks];
//!                                          setns(..., user); fork ───▶ (born in the container)
//! (reap the child)   ◀──── InitPid(pid)    exit
//! Go ───────────────────────────────────────────────────────────────▶ console, capabilities, ...
//! done ◀───────────────────────────────────────────────────────────── Ready, then exec
//!      (end-of-file: the exec happened; Error(reason): it did not)
//! ```

use super::message::{Channel, Msg};
use crate::cgroups::CgroupPaths;
use crate::error::{Context, Error, Result};
use crate::namespaces;
use oci_spec::runtime::{LinuxNamespaceType as Ns, Process};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// What `exec` needs, prepared before the fork.
#[derive(Debug)]
pub struct ExecConfig {
    pub id: String,
    pub init_pid: i32,
    pub init_start: u64,
    pub namespaces: Vec<Ns>,
    pub process: Process,
    pub cgroup: CgroupPaths,
    /// The fds above stdio passed into the process (`--preserve-fds`).
    pub inherited_fds: Vec<i32>,
    pub console: Option<UnixStream>,
    /// The container's compiled seccomp profile (exec'd processes get it too) and its source.
    pub seccomp: Option<(crate::seccomp::Program, oci_spec::runtime::LinuxSeccomp)>,
    /// The container's state JSON, for a seccomp listener.
    pub state_json: String,
    /// The runtime's lock on the container, closed in the forked children (see
    /// [`crate::state::Lock::fd`]).
    pub lock_fd: Option<std::os::fd::RawFd>,
    /// True when the container has no mount namespace of its own (it shares or joined one,
    /// see [`crate::rootfs`]): its root is a chroot, which the process must enter too.
    pub chroot: bool,
    /// True when `--cgroup` chose the cgroup: no fallback then (see [`spawn`]).
    pub explicit_cgroup: bool,
}

/// Starts the process; returns its host pid once it has exec'd.
pub fn spawn(cfg: &ExecConfig) -> Result<i32> {
    let tramp = super::trampoline::create()?;
    // The user namespace goes last: the runtime, privileged where it runs, can join every
    // other namespace of the container, those owned by the container's user namespace and
    // those joined from the host (a host network namespace, say), which it could no longer
    // join from inside that user namespace.
    let mut order: Vec<Ns> = cfg.namespaces.clone();
    order.sort_by_key(|t| *t == Ns::User);
    order.dedup();
    let mut fds = Vec::new();
    for t in order {
        let path = format!("/proc/{}/ns/{}", cfg.init_pid, namespaces::proc_name(t));
        let f = File::open(&path).ctx(|| format!("opening {path}"))?;
        fds.push((t, f));
    }
    // Without a mount namespace of its own the container's root is the init's chroot: joining
    // (or sharing) the namespace is not enough.
    let root = if cfg.chroot {
        Some(crate::sys::open_path_dir(std::path::Path::new(&format!(
            "/proc/{}/root",
            cfg.init_pid
        )))?)
    } else {
        None
    };
    // The namespace files were opened from the right process, not one that reused its pid.
    if !crate::sys::process_alive(cfg.init_pid, Some(cfg.init_start)) {
        return Err(Error::msg("the container's init is not running"));
    }
    let (parent, child) = Channel::pair()?;
    // Still a process of the host, the helper enters the v1 cgroups itself, which spares the
    // migration's wait for an RCU grace period (see CgroupPaths::enter_v1_self); the runtime
    // moves it into a v2 one.
    let self_move = cfg.cgroup.dirs.iter().any(|d| !d.v2);
    // SAFETY: the runtime is single-threaded here.
    let pid = unsafe { crate::sys::clone_fork(0) }?;
    if pid == 0 {
        drop(parent);
        if let Some(fd) = cfg.lock_fd {
            // SAFETY: closes this process's copy of the lock fd; the runtime keeps its own.
            unsafe { libc::close(fd) };
        }
        let err = match child_run(cfg, &child, &fds, root.as_ref(), tramp.as_ref(), self_move) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        let _ = child.send(&Msg::Error(err.to_string()));
        // SAFETY: _exit skips the destructors of the forked copy of the runtime.
        unsafe { libc::_exit(1) }
    }
    drop(child);
    let mut proc_pid = 0;
    let res = (|| -> Result<i32> {
        cfg.cgroup
            .add_to(pid, !self_move, false)
            .ctx(|| "joining the container's cgroup".into())?;
        if let Err(e) = cfg.cgroup.add_to(pid, false, true) {
            // runc on cgroup v2: once the container's cgroup has controllers enabled for its
            // children, no process may join it (EBUSY); the process then goes where the init
            // is, unless --cgroup named the place.
            let fallback = (e.errno() == Some(libc::EBUSY) && !cfg.explicit_cgroup)
                .then(|| cfg.cgroup.v2_dir_of(cfg.init_pid))
                .flatten();
            match fallback {
                Some(dir) => crate::sys::write_file(dir.join("cgroup.procs"), pid.to_string())
                    .ctx(|| "joining the init's cgroup".into())?,
                None => return Err(e).ctx(|| "joining the container's cgroup".into()),
            }
        }
        if let Some(adj) = cfg.process.oom_score_adj() {
            super::write_oom_score_adj(pid, adj)?;
        }
        if let Some(l) = cfg.process.rlimits() {
            crate::rlimits::apply(pid, l)?;
        }
        parent.send(&Msg::Go)?;
        match parent.recv()? {
            Some(Msg::InitPid(p)) => proc_pid = p,
            Some(Msg::Error(e)) => return Err(Error::Msg(e)),
            Some(m) => return Err(Error::msg(format!("protocol error: unexpected {m:?}"))),
            None => return Err(Error::msg("the exec helper exited early")),
        }
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        // The process waits for this: anything it sends comes after InitPid.
        parent.send(&Msg::Go)?;
        super::wait_ready(&parent, cfg.seccomp.as_ref().map(|s| &s.1), proc_pid, &cfg.state_json)?;
        match parent.recv()? {
            None => Ok(proc_pid),
            Some(Msg::Error(e)) => Err(Error::Msg(e)),
            Some(m) => Err(Error::msg(format!("protocol error: unexpected {m:?}"))),
        }
    })();
    if res.is_err() {
        if proc_pid > 0 {
            super::kill_and_reap(proc_pid);
        } else {
            super::kill_and_reap(pid);
        }
    }
    res
}

enum Never {}

fn child_run(
    cfg: &ExecConfig,
    ch: &Channel,
    fds: &[(Ns, File)],
    root: Option<&OwnedFd>,
    tramp: Option<&OwnedFd>,
    self_move: bool,
) -> Result<Never> {
    crate::sys::set_dumpable(false)?;
    ch.expect(&Msg::Go)?;
    if self_move {
        cfg.cgroup.enter_v1_self()?;
    }
    // The container's chroot (no mount namespace of its own) is entered once its mount
    // namespace is joined (that resets the root) and before its user namespace (after which
    // chroot would need CAP_SYS_CHROOT over a namespace the container does not own).
    let mut root = root;
    let enter_root = |root: &mut Option<&OwnedFd>| -> Result<()> {
        if let Some(r) = root.take() {
            nix::unistd::fchdir(r.as_raw_fd()).ctx(|| "entering the container's root".into())?;
            nix::unistd::chroot(".").ctx(|| "chroot to the container's root".into())?;
            nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
        }
        Ok(())
    };
    for (t, f) in fds {
        if *t == Ns::User {
            enter_root(&mut root)?;
        }
        nix::sched::setns(
            f.as_fd(),
            nix::sched::CloneFlags::from_bits_retain(namespaces::flag(*t)),
        )
        .ctx(|| format!("joining the container's {} namespace", namespaces::proc_name(*t)))?;
        if *t == Ns::Mount {
            enter_root(&mut root)?;
        }
    }
    enter_root(&mut root)?;
    // SAFETY: single-threaded (a fork of the single-threaded runtime).
    unsafe { super::fork_and_report(ch) }?;
    // The helper and this process share the channel: without this wait, this process's
    // messages could overtake the helper's InitPid.
    ch.expect(&Msg::Go)?;
    if cfg.namespaces.contains(&Ns::User) {
        let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
        let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
    }
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    if cfg.process.terminal().unwrap_or(false) {
        let sock = cfg
            .console
            .as_ref()
            .ok_or_else(|| Error::msg("--tty needs a console socket"))?;
        super::init::setup_console(sock, &cfg.process, false)?;
    }
    let prepared =
        super::init::finish_process(&cfg.process, &cfg.inherited_fds, cfg.seccomp.as_ref().map(|s| &s.0), ch)?;
    ch.send(&Msg::Ready)?;
    let e = super::init::exec_prepared(tramp, &prepared);
    eprintln!("dray: exec in container {}: {e}", cfg.id);
    Err(e)
}
