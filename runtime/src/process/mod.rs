//! The processes that cooperate during `create`, and the order of their phases.
//!
//! ```text
//! runtime (parent)                         init (child)
//! ----------------                         ------------
//! create state dir, exec.fifo
//! [cgroup2: create the v2 cgroup (pure v2:
//!  with its limits)]
//! clone(new namespaces)  ───────────────▶  non-dumpable; wait for Go
//!   (into its v2 cgroup: CLONE_INTO_CGROUP)
//! [write uid/gid maps]
//! Go  ──────────────────────────────────▶  join namespaces by path; setsid; keyring;
//! cgroup directories, device rules,        propagation, rootfs bind, mounts (a v1 cgroup
//! resource limits                          mount, which binds the new directories, waits
//! CgroupsMade ──────────────────────────▶  for CgroupsMade; a fresh cgroup2 mount and a
//! [cgroup.procs], oom_score_adj, prlimit   tmpcopyup mount for InCgroup), /dev; after
//! InCgroup ─────────────────────────────▶  CgroupsMade a rootful init enters its v1
//!                                          cgroups itself (`tasks`)
//!                                          wait for InCgroup; unshare cgroupns
//! prestart + createRuntime hooks  ◀──────  RunCreateRuntimeHooks
//! HooksDone(state) ─────────────────────▶  createContainer hooks; pivot_root; masked and
//!                                          read-only paths; hostname; sysctl; console;
//!                                          capabilities, user, cwd; exec lookup
//! save state "created"; exit  ◀──────────  Ready
//!                                          block on exec.fifo until `start`;
//!                                          startContainer hooks; exec via the trampoline
//! ```
//! The slow path (a user namespace to join or to create before other namespaces, a pid or
//! time namespace that must be entered by a forked child) has an intermediate process: the
//! runtime creates the cgroups and moves the intermediate into them before `Go`; the
//! intermediate joins and unshares (asking `NeedIdMaps` ◀▶ `IdMapsDone` for a new user
//! namespace), forks the init and reports `InitPid`, then exits; `InCgroup` follows at once.
//!
//! Nothing the container controls runs before `InCgroup`: its hooks, the cgroup namespace and
//! the exec all come later, and so does copying image data (tmpcopyup). What the init
//! allocates for its mounts before it enters its cgroups (mount structures, a few tmpfs
//! inodes) is charged to the runtime's cgroup, as is the clone itself unless the init is born
//! in its v2 cgroup.
//!
//! Any failure in the init is sent as `Error(reason)`; the runtime then kills the init and
//! removes everything it made. The channel is a close-on-exec SOCK_SEQPACKET pair, so a dead
//! peer shows as end-of-file on the other side.

pub mod exec;
pub mod init;

pub mod message;
pub mod trampoline;

use crate::cgroups::CgroupPaths;
use crate::error::{Context, Error, Result};
use crate::namespaces;
use message::{Channel, Msg};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// The last fork of an intermediate process (the init's slow path, an exec helper): a pid
/// namespace it created or joined applies to its children only. The intermediate reports the
/// child's host pid on `ch` and exits; the child returns and goes on to become the process.
///
/// # Safety
/// The caller must be single-threaded (it is a fork of the single-threaded runtime).
pub(crate) unsafe fn fork_and_report(ch: &Channel) -> Result<()> {
    // SAFETY: the caller is single-threaded.
    let pid = unsafe { crate::sys::clone_fork(0) }?;
    if pid != 0 {
        // A failed report leaves the child waiting for a message that never comes; the
        // runtime sees the channel close and fails the operation.
        let code = i32::from(ch.send(&Msg::InitPid(pid)).is_err());
        // SAFETY: _exit skips destructors and atexit handlers of this forked copy of the runtime.
        unsafe { libc::_exit(code) }
    }
    Ok(())
}

/// Runs the runtime-side create hooks for an init pid; returns the state JSON for the
/// container-side hooks (status `creating`, status `created`).
pub type HookRunner<'a> = dyn FnMut(i32) -> Result<(String, String)> + 'a;

/// Everything the init needs, prepared by the runtime before the fork.
#[derive(Debug)]
pub struct InitConfig {
    pub id: String,
    pub spec: Spec,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// The checked spec: namespaces, mounts, devices (see [`crate::validate`]).
    pub checked: crate::validate::Checked,
    pub cgroup: CgroupPaths,
    /// The container's state directory (holds exec.fifo).
    pub state_dir: PathBuf,
    pub no_pivot: bool,
    /// The fds above stdio passed into the container (`--preserve-fds`): those the caller
    /// really passed, never the runtime's own.
    pub inherited_fds: Vec<i32>,
    /// The connected console socket, when `process.terminal` is set.
    pub console: Option<UnixStream>,
    /// `--no-new-keyring`: keep the caller's session keyring instead of a new one.
    pub no_new_keyring: bool,
    /// The compiled `linux.seccomp` profile.
    pub seccomp: Option<crate::seccomp::Program>,
}

/// Creates the container's cgroups and applies their limits and device rules, one
/// [`CgroupStep`] at a time.
pub type CgroupMaker<'a> = dyn FnMut(CgroupStep) -> Result<()> + 'a;

/// What a [`CgroupMaker`] call makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupStep {
    /// The cgroup2 directories (so that the init can be born in them on a hybrid host).
    V2Dirs,
    /// Every directory not made yet, ready to take processes (v1 cpusets initialised), with
    /// its device rules and resource limits: all in place before any process enters (an init
    /// makes /dev under the device rules; some limits cannot be set below what a process in
    /// the cgroup already uses).
    All,
}

/// Forks the container's init and drives it through set-up until it waits for `start`.
/// `make_cgroups` makes the cgroup before the clone on a pure cgroup v2 host (the init is born
/// in its cgroup), and otherwise while the init sets up its mounts (on a hybrid host, the v2
/// directory before the clone and the rest after). `hooks` runs the prestart
/// and createRuntime hooks for the given init pid and returns the state JSON for the
/// in-container hooks (status creating, status created). Returns the init's host pid; on
/// error, the init (if any) is killed and reaped.
pub fn spawn(cfg: &InitConfig, make_cgroups: &mut CgroupMaker, hooks: &mut HookRunner) -> Result<i32> {
    let (parent, child) = Channel::pair()?;
    let tramp = trampoline::create()?;
    let state_dir = crate::sys::open_path_dir(&cfg.state_dir)?;
    // Read from the host's /proc, for the init (see capabilities::supported).
    crate::capabilities::supported();
    let single = cfg.checked.namespaces.single_clone();
    // The init is born in its v2 cgroup (clone3 with CLONE_INTO_CGROUP), which saves that
    // migration: on a pure v2 host the whole cgroup is made first; on a hybrid host only the v2
    // directory (the v1 ones follow while the init works). Elsewhere, or on kernels without
    // clone3, the init is moved after the fork.
    let v2_dir = match cfg.cgroup.dirs.iter().find(|d| d.v2) {
        Some(d) if single => {
            make_cgroups(if cfg.cgroup.is_pure_v2() {
                CgroupStep::All
            } else {
                CgroupStep::V2Dirs
            })?;
            Some(crate::sys::open_path_dir(&d.path)?)
        }
        _ => None,
    };
    let cgroups_made = v2_dir.is_some() && cfg.cgroup.is_pure_v2();
    let mut saved_ns: Vec<(LinuxNamespaceType, OwnedFd)> = Vec::new();
    if single {
        // Namespaces that only apply to children are entered by the runtime itself around the
        // clone, then left again: the pid namespace to join, and a new time namespace.
        if let Some(p) = cfg.checked.namespaces.joins(LinuxNamespaceType::Pid) {
            saved_ns.push((LinuxNamespaceType::Pid, open_path_dir_or_file("/proc/self/ns/pid")?));
            namespaces::join(LinuxNamespaceType::Pid, p)?;
        }
        if cfg.checked.namespaces.creates(LinuxNamespaceType::Time) {
            saved_ns.push((LinuxNamespaceType::Time, open_path_dir_or_file("/proc/self/ns/time")?));
            namespaces::unshare(namespaces::CLONE_NEWTIME)?;
            if let Some(o) = cfg.spec.linux().as_ref().and_then(|l| l.time_offsets().as_ref()) {
                namespaces::write_time_offsets(o)?;
            }
        }
    }
    let flags = if single {
        cfg.checked.namespaces.clone_flags()
    } else {
        0
    };
    let mut placed = false;
    let mut pid = None;
    if let Some(fd) = &v2_dir {
        // c_ulong is u64 here but not on every target.
        #[allow(clippy::unnecessary_cast)]
        let flags64 = flags as u64;
        // SAFETY: the runtime is single-threaded on the creation path.
        match unsafe { crate::sys::clone_into_cgroup(flags64, fd.as_raw_fd()) } {
            Ok(p) => {
                placed = true;
                pid = Some(Ok(p));
            }
            // Kernels without clone3 or CLONE_INTO_CGROUP, and seccomp profiles (nested
            // runtimes) that refuse clone3: plain clone, then a move.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS) | Some(libc::E2BIG) | Some(libc::EINVAL) | Some(libc::EPERM)
                ) => {}
            Err(e) => pid = Some(Err(e).ctx(|| "clone3".into())),
        }
    }
    // SAFETY: the runtime is single-threaded on the creation path (no threads are spawned by
    // the library, and the CLI calls this from main).
    let pid = pid.unwrap_or_else(|| unsafe { crate::sys::clone_fork(flags) });
    let restore = |saved: &mut Vec<(LinuxNamespaceType, OwnedFd)>| -> Result<()> {
        for (t, fd) in saved.drain(..) {
            nix::sched::setns(
                fd.as_fd(),
                nix::sched::CloneFlags::from_bits_retain(namespaces::flag(t)),
            )
            .ctx(|| format!("returning to the runtime's {} namespace", namespaces::proc_name(t)))?;
        }
        Ok(())
    };
    // A rootful fast-path init moves itself into its v1 cgroups, which spares the migration's
    // wait for an RCU grace period (see CgroupPaths::enter_v1_self). It does so from its new
    // mount namespace, a copy of the runtime's, where the cgroup paths are the runtime's. In a
    // user namespace it may not write the host's cgroup files, and in a mount namespace joined
    // by path the paths would be another's: there the runtime moves it.
    let self_move = single
        && !cfg.checked.namespaces.creates(LinuxNamespaceType::User)
        && cfg.checked.namespaces.creates(LinuxNamespaceType::Mount)
        && cfg.cgroup.dirs.iter().any(|d| !d.v2);
    let pid = match pid {
        Ok(0) => {
            drop(parent);
            drop(v2_dir);
            init::child_main(cfg, child, tramp, state_dir, !single, self_move)
        }
        Ok(pid) => pid,
        Err(e) => {
            restore(&mut saved_ns)?;
            return Err(e);
        }
    };
    drop(child);
    if let Err(e) = restore(&mut saved_ns) {
        kill_and_reap(pid);
        return Err(e);
    }
    drop(v2_dir);
    let make = if cgroups_made { None } else { Some(make_cgroups) };
    // What the runtime still moves: the v1 hierarchies unless the init enters them itself,
    // v2 unless it was born there.
    let moves = (!self_move, !placed);
    match drive(cfg, &parent, pid, single, make, moves, hooks) {
        Ok(init_pid) => Ok(init_pid),
        Err((init_pid, e)) => {
            // Once the init's pid is known, the intermediate process was already reaped: its
            // pid may belong to someone else now, so only the init is killed.
            kill_and_reap(init_pid);
            // The init works alongside the runtime: when it failed first, its reason is the
            // one to report (the runtime's own error is then only a consequence, e.g. ESRCH).
            match parent.try_recv() {
                Some(Msg::Error(reason)) => Err(Error::Msg(reason)),
                // The init died without a word (a signal): the channel is closed under us.
                _ if e.errno() == Some(libc::EPIPE) => Err(Error::msg("the container's init exited during set-up")),
                _ => Err(e),
            }
        }
    }
}

/// The parent's side of the protocol (phase order in the module docs). `make` creates the
/// cgroups unless they were made before the clone; `moves` says which hierarchies (v1, v2)
/// the runtime moves the process into. On error, returns the init pid known so far.
fn drive(
    cfg: &InitConfig,
    ch: &Channel,
    pid: i32,
    single: bool,
    make: Option<&mut CgroupMaker>,
    moves: (bool, bool),
    hooks: &mut HookRunner,
) -> Result<i32, (i32, Error)> {
    let mut init_pid = pid;
    let mut t = crate::timing::Phases::new("create/init");
    let r = (|| -> Result<()> {
        if single && cfg.checked.namespaces.creates(LinuxNamespaceType::User) {
            write_maps(cfg, pid)?;
        }
        t.mark("uid/gid maps");
        // Single clone: the init sets up its mounts while its cgroups are made and it is moved
        // into them. Intermediate: it must be in place before it forks the init.
        if single {
            ch.send(&Msg::Go)?;
        }
        // Once made (with their device rules and limits), the init may bind the directories and
        // enter them itself.
        if let Some(make) = make {
            make(CgroupStep::All)?;
        }
        if single {
            ch.send(&Msg::CgroupsMade)?;
        }
        t.mark("cgroups: create, limits, devices");
        cfg.cgroup
            .add_to(pid, moves.0, moves.1)
            .ctx(|| "joining the container's cgroup".into())?;
        let process = cfg.spec.process().as_ref();
        if let Some(adj) = process.and_then(|p| p.oom_score_adj()) {
            write_oom_score_adj(pid, adj)?;
        }
        if let Some(l) = process.and_then(|p| p.rlimits().as_ref()) {
            crate::rlimits::apply(pid, l)?;
        }
        t.mark("cgroups: move the init, rlimits, oom score");
        if !single {
            ch.send(&Msg::Go)?;
            loop {
                match ch.recv()? {
                    Some(Msg::NeedIdMaps) => {
                        write_maps(cfg, pid)?;
                        ch.send(&Msg::IdMapsDone)?;
                    }
                    Some(Msg::InitPid(p)) => {
                        init_pid = p;
                        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                        break;
                    }
                    Some(Msg::Error(e)) => return Err(Error::Msg(e)),
                    Some(m) => return Err(Error::msg(format!("protocol error: unexpected {m:?}"))),
                    None => return Err(Error::msg("the container's init exited during set-up")),
                }
            }
        }
        if !single {
            ch.send(&Msg::CgroupsMade)?;
        }
        ch.send(&Msg::InCgroup)?;
        ch.expect(&Msg::RunCreateRuntimeHooks)?;
        t.mark("init: namespaces joined, mounts, /dev");
        let (creating, created) = hooks(init_pid)?;
        ch.send(&Msg::HooksDone {
            creating,
            created: created.clone(),
        })?;
        let seccomp = cfg.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
        let r = wait_ready(ch, seccomp, init_pid, &created);
        t.mark("init: pivot_root, paths, console, capabilities, user, exec lookup");
        r
    })();
    r.map(|_| init_pid).map_err(|e| (init_pid, e))
}

fn write_maps(cfg: &InitConfig, pid: i32) -> Result<()> {
    let linux = cfg.spec.linux().as_ref();
    let uid = linux.and_then(|l| l.uid_mappings().clone()).unwrap_or_default();
    let gid = linux.and_then(|l| l.gid_mappings().clone()).unwrap_or_default();
    namespaces::write_id_maps(pid, &uid, &gid)
}

/// `process.oomScoreAdj`, written for the init by the runtime.
pub(super) fn write_oom_score_adj(pid: i32, adj: i32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string()).map_err(|e| {
        let hint = if adj < 0 {
            " (lowering it needs CAP_SYS_RESOURCE)"
        } else {
            ""
        };
        Error::msg(format!("setting oomScoreAdj to {adj}: {e}{hint}"))
    })
}

/// Kills a process and reaps it if it is our child; waits for it to exit otherwise.
pub fn kill_and_reap(pid: i32) {
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    match nix::sys::wait::waitpid(p, None) {
        Ok(_) => {}
        Err(_) => {
            crate::sys::wait_exit(pid, Some(std::time::Duration::from_secs(5)));
        }
    }
}

fn open_path_dir_or_file(p: &str) -> Result<OwnedFd> {
    let f = std::fs::File::open(p).ctx(|| format!("opening {p}"))?;
    Ok(OwnedFd::from(f))
}

/// Waits for `Ready`, forwarding a seccomp notify fd to the profile's listener on the way.
pub fn wait_ready(
    ch: &Channel,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
    pid: i32,
    state: &str,
) -> Result<()> {
    loop {
        match ch.recv()? {
            Some(Msg::Ready) => return Ok(()),
            Some(Msg::SeccompNotify) => {
                let fd = ch
                    .take_fd()
                    .ok_or_else(|| Error::msg("seccomp notify message without an fd"))?;
                let s = seccomp.ok_or_else(|| Error::msg("seccomp notify fd without a profile"))?;
                let path = s
                    .listener_path()
                    .as_ref()
                    .ok_or_else(|| Error::msg("seccomp: no listenerPath"))?;
                let state: serde_json::Value = serde_json::from_str(state).unwrap_or_default();
                crate::seccomp::send_to_listener(path, s.listener_metadata().as_deref(), pid, &state, &fd)?;
            }
            Some(Msg::Error(e)) => return Err(Error::Msg(e)),
            Some(m) => return Err(Error::msg(format!("protocol error: unexpected {m:?}"))),
            None => return Err(Error::msg("the container's init exited during set-up")),
        }
    }
}
