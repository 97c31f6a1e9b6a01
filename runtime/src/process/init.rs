//! The container's init: everything that runs inside the new namespaces, up to the exec of the
//! user's process. Runs in a forked copy of the runtime; it never returns.

use super::message::{Channel, Msg};
use super::InitConfig;
use crate::error::{Context, Error, Result};
use crate::namespaces;
use crate::rootfs::CgroupGate;
use oci_spec::runtime::{LinuxNamespaceType as Ns, Process};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Entry point of the forked child. Reports any failure on the channel and exits 1.
pub fn child_main(
    cfg: &InitConfig,
    ch: Channel,
    tramp: Option<OwnedFd>,
    state_dir: OwnedFd,
    intermediate: bool,
    self_move: bool,
) -> ! {
    let err = match run(cfg, &ch, tramp, state_dir, intermediate, self_move) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    crate::rootfs::undo_shared_bind(&cfg.rootfs);
    // Before Ready the runtime reports the error; after it (the runtime may be gone), the
    // container's stderr is the only place left to say why the process did not start.
    if READY.load(std::sync::atomic::Ordering::Relaxed) || ch.send(&Msg::Error(err.to_string())).is_err() {
        eprintln!("dray: container {}: {err}", cfg.id);
    }
    // SAFETY: _exit skips destructors and atexit handlers of the forked copy of the runtime.
    unsafe { libc::_exit(1) }
}

enum Never {}

/// Set once `Ready` was sent.
static READY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn run(
    cfg: &InitConfig,
    ch: &Channel,
    tramp: Option<OwnedFd>,
    state_dir: OwnedFd,
    intermediate: bool,
    self_move: bool,
) -> Result<Never> {
    // Until the exec, /proc/PID/{exe,fd,mem} of this process must not be reachable from the
    // container (CVE-2019-5736).
    crate::sys::set_dumpable(false)?;
    ch.expect(&Msg::Go)?;
    let plan = &cfg.checked.namespaces;
    if intermediate {
        if let Some(p) = plan.joins(Ns::User) {
            namespaces::join(Ns::User, p)?;
        }
        for (t, p) in plan.join.iter().filter(|(t, _)| *t != Ns::User) {
            namespaces::join(*t, p)?;
        }
        if plan.creates(Ns::User) {
            namespaces::unshare(libc::CLONE_NEWUSER)?;
            ch.send(&Msg::NeedIdMaps)?;
            ch.expect(&Msg::IdMapsDone)?;
        }
        let rest = plan
            .new
            .iter()
            .filter(|t| **t != Ns::User)
            .fold(0, |a, t| a | namespaces::flag(*t));
        namespaces::unshare(rest)?;
        if plan.creates(Ns::Time) {
            if let Some(o) = cfg.spec.linux().as_ref().and_then(|l| l.time_offsets().as_ref()) {
                namespaces::write_time_offsets(o)?;
            }
        }
        // SAFETY: this process is single-threaded (a fork of the single-threaded runtime).
        unsafe { super::fork_and_report(ch) }?;
    } else {
        for (t, p) in plan.join.iter().filter(|(t, _)| *t != Ns::Pid) {
            namespaces::join(*t, p)?;
        }
    }
    let mut gate = Gate {
        ch,
        made: false,
        placed: false,
        cgroupns: !intermediate && plan.creates(Ns::Cgroup),
        self_move: self_move.then_some(&cfg.cgroup),
    };
    let userns = plan.creates(Ns::User) || plan.joins(Ns::User).is_some();
    if userns {
        // Become root of the new user namespace (when 0 is mapped) to own the mounts.
        let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
        let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
    }
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    if !cfg.no_new_keyring {
        join_session_keyring(&cfg.id)?;
    }
    let process = cfg
        .spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::msg("config.json has no process"))?;

    // Root file system. Without a new mount namespace (shared or joined) the set-up happens in
    // the namespace the process is in, and it ends in a chroot (see crate::rootfs).
    let own_mount_ns = plan.creates(Ns::Mount);
    crate::rootfs::prepare(&mut crate::rootfs::Setup {
        checked: &cfg.checked,
        rootfs: &cfg.rootfs,
        bundle: &cfg.bundle,
        cgroup: &cfg.cgroup,
        cgroupns: plan.creates(Ns::Cgroup),
        userns,
        own_mount_ns,
        cgroups: &mut gate,
    })?;
    gate.placed()?;
    // runc's order: the createContainer hooks run with the rootfs as their working directory
    // (runc's own hook tests write files relative to it).
    nix::unistd::chdir(&cfg.rootfs).ctx(|| format!("chdir {}", cfg.rootfs.display()))?;
    let states = hooks_phase(cfg, ch)?;
    if own_mount_ns {
        crate::rootfs::pivot(&cfg.rootfs, cfg.no_pivot)?;
    } else {
        crate::rootfs::chroot(&cfg.rootfs)?;
    }

    // The console needs a writable /dev/console, so it comes before the read-only root (runc's
    // order: console, read-only root, hostname, sysctl, read-only and masked paths).
    if process.terminal().unwrap_or(false) {
        let sock = cfg
            .console
            .as_ref()
            .ok_or_else(|| Error::msg("process.terminal is set but there is no console socket"))?;
        setup_console(sock, process, true)?;
    }
    crate::rootfs::finalize_root(&cfg.spec)?;
    // Both need a UTS namespace, checked before the fork (crate::validate).
    if let Some(h) = cfg.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).ctx(|| format!("setting hostname {h:?}"))?;
    }
    if let Some(d) = cfg.spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        // SAFETY: setdomainname with a valid buffer and its length.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(std::io::Error::last_os_error()).ctx(|| format!("setting domainname {d:?}"));
        }
    }
    for (k, v) in cfg
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        crate::sysctl::write(k, v)?;
    }
    crate::rootfs::protect_paths(&cfg.spec, &cfg.checked)?;

    let linux = cfg.spec.linux().as_ref();
    if let Some(p) = linux.and_then(|l| l.personality().as_ref()) {
        crate::scheduling::apply_personality(p)?;
    }
    if let Some(m) = linux.and_then(|l| l.memory_policy().as_ref()) {
        crate::scheduling::apply_memory_policy(m)?;
    }
    let prepared = finish_process(process, &cfg.inherited_fds, cfg.seccomp.as_ref(), ch)?;
    ch.send(&Msg::Ready)?;
    READY.store(true, std::sync::atomic::Ordering::Relaxed);

    // Wait for `start`: opening the fifo for writing blocks until `start` opens it for reading.
    let fifo = {
        let name = CString::new(crate::state::EXEC_FIFO).map_err(|_| Error::msg("fifo name"))?;
        // SAFETY: openat with a valid dirfd and C string.
        let fd = unsafe { libc::openat(state_dir.as_raw_fd(), name.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).ctx(|| "opening exec.fifo".into());
        }
        // SAFETY: new fd owned here.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    drop(state_dir);
    nix::unistd::write(&fifo, b"0").ctx(|| "writing exec.fifo".into())?;
    // The fifo stays open (close-on-exec) until the exec: `start` reads its end of file as
    // "the user's process is being executed" and only then runs the poststart hooks.
    let _exec_signal = fifo;

    crate::hooks::run_all(
        cfg.spec.hooks().as_ref().and_then(|h| h.start_container().as_ref()),
        &states.1,
        "startContainer",
    )?;
    Err(exec_prepared(tramp.as_ref(), &prepared))
}

/// The init's side of the runtime's cgroup work, which runs while the init sets up its
/// mounts: `CgroupsMade`, then `InCgroup` (see [`crate::process`]).
#[derive(Debug)]
struct Gate<'a> {
    ch: &'a Channel,
    made: bool,
    placed: bool,
    /// A new cgroup namespace to unshare once in place (it is rooted at the cgroup the process
    /// is in when it is made). The slow path's intermediate made it already.
    cgroupns: bool,
    /// The cgroups whose v1 directories this process enters itself once they exist.
    self_move: Option<&'a crate::cgroups::CgroupPaths>,
}

impl crate::rootfs::CgroupGate for Gate<'_> {
    fn made(&mut self) -> Result<()> {
        if !self.made {
            self.ch.expect(&Msg::CgroupsMade)?;
            if let Some(c) = self.self_move {
                c.enter_v1_self()?;
            }
            self.made = true;
        }
        Ok(())
    }

    fn placed(&mut self) -> Result<()> {
        self.made()?;
        if !self.placed {
            self.ch.expect(&Msg::InCgroup)?;
            if self.cgroupns {
                namespaces::unshare(libc::CLONE_NEWCGROUP)?;
            }
            self.placed = true;
        }
        Ok(())
    }
}

/// The program to exec, resolved and converted before the point of no return.
#[derive(Debug)]
pub struct Prepared {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

/// The last steps shared by the init and `exec`: capabilities, user, umask, cwd, program
/// lookup, noNewPrivileges, and closing every fd the process must not inherit.
pub fn finish_process(
    process: &Process,
    inherited_fds: &[i32],
    seccomp: Option<&crate::seccomp::Program>,
    ch: &Channel,
) -> Result<Prepared> {
    let nnp = process.no_new_privileges().unwrap_or(false);
    // Without `capabilities` the process gets none (as runc): an empty bounding set too, or a
    // uid-0 exec would regain every capability from it.
    // Scheduling first: raising a priority needs capabilities that are dropped next.
    if let Some(s) = process.scheduler() {
        crate::scheduling::apply_scheduler(s)?;
    }
    if let Some(p) = process.io_priority() {
        crate::scheduling::apply_io_priority(p)?;
    }
    // cwd as root first (a directory only root can enter), again after the switch on EPERM.
    // Both come before the filter where they can: a profile may refuse getcwd (the runtime
    // validation suite's does), which the check below needs.
    let cwd = process.cwd();
    if !cwd.is_absolute() {
        return Err(Error::msg(format!(
            "process.cwd {} is not an absolute path",
            cwd.display()
        )));
    }
    let retry_cwd = match nix::unistd::chdir(cwd) {
        Ok(()) => {
            verify_cwd(cwd)?;
            false
        }
        Err(nix::errno::Errno::EPERM) | Err(nix::errno::Errno::EACCES) => true,
        Err(e) => return Err(e).ctx(|| format!("changing to the working directory {}", cwd.display())),
    };
    // Without noNewPrivileges, installing a filter needs CAP_SYS_ADMIN: do it before the
    // capabilities are dropped (as runc). With it, as late as possible (below).
    if let (Some(p), false) = (seccomp, nnp) {
        install_seccomp(p, ch)?;
    }
    let caps = process.capabilities().clone().unwrap_or_else(crate::capabilities::none);
    crate::capabilities::apply_bounding(&caps)?;
    crate::sys::set_keepcaps(true)?;
    crate::user::switch(process.user(), crate::user::setgroups_allowed())?;
    crate::sys::set_keepcaps(false)?;
    crate::capabilities::apply_sets(&caps)?;
    crate::user::apply_umask(process.user());
    if retry_cwd {
        nix::unistd::chdir(cwd).ctx(|| format!("changing to the working directory {}", cwd.display()))?;
        verify_cwd(cwd)?;
    }

    // The program, looked up now so that a missing binary fails `create`/`exec`.
    let env = environment(process);
    let args = process.args().as_deref().unwrap_or(&[]);
    let first = args.first().ok_or_else(|| Error::msg("process.args is empty"))?;
    let path = lookup(first, &env)?;
    if nnp {
        crate::sys::set_no_new_privs()?;
        if let Some(p) = seccomp {
            install_seccomp(p, ch)?;
        }
    }
    let to_c = |v: &[String], what: &str| -> Result<Vec<CString>> {
        v.iter()
            .map(|a| CString::new(a.as_str()).map_err(|_| Error::msg(format!("{what} contains a NUL byte"))))
            .collect()
    };
    let prepared = Prepared {
        path: crate::sys::cstr(&path)?,
        argv: to_c(args, "an argument")?,
        envp: to_c(&env, "an env entry")?,
    };

    // No host fd may survive into the container (CVE-2024-21626): everything above stdio is
    // close-on-exec, then the fds the caller passed with --preserve-fds are made inheritable.
    crate::sys::cloexec_from(3)?;
    for fd in inherited_fds {
        crate::sys::set_cloexec(*fd, false);
    }
    Ok(prepared)
}

/// CVE-2024-21626: a working directory reached through a leaked fd lies outside the root, which
/// getcwd reports as ENOENT or as a path that is not absolute ("(unreachable)/..."). Any other
/// failure is refused too (as runc does): a path grown past PATH_MAX must not pass unchecked.
/// The check runs before a seccomp filter is installed where it can (see finish_process).
fn verify_cwd(cwd: &Path) -> Result<()> {
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        Ok(_) | Err(nix::errno::Errno::ENOENT) => Err(Error::msg(format!(
            "the working directory {} is outside the container's root",
            cwd.display()
        ))),
        Err(e) => Err(Error::msg(format!(
            "cannot check that the working directory {} is inside the container's root: {e}",
            cwd.display()
        ))),
    }
}

/// Execs the prepared program through the trampoline, with default signal handling (the
/// runtime ignores SIGPIPE; the container must not inherit that). Returns only on failure.
pub fn exec_prepared(tramp: Option<&OwnedFd>, p: &Prepared) -> Error {
    crate::sys::reset_signals();
    super::trampoline::exec(tramp, &p.path, &p.argv, &p.envp)
}

/// Asks the runtime to run the prestart and createRuntime hooks, then runs the createContainer
/// hooks here (in the container's namespaces, before pivot_root). Returns the state JSON.
fn hooks_phase(cfg: &InitConfig, ch: &Channel) -> Result<(String, String)> {
    ch.send(&Msg::RunCreateRuntimeHooks)?;
    let (creating, created) = match ch.recv()? {
        Some(Msg::HooksDone { creating, created }) => (creating, created),
        Some(m) => return Err(Error::msg(format!("protocol error: unexpected {m:?}"))),
        None => return Err(Error::msg("the runtime went away during set-up")),
    };
    crate::hooks::run_all(
        cfg.spec.hooks().as_ref().and_then(|h| h.create_container().as_ref()),
        &creating,
        "createContainer",
    )?;
    Ok((creating, created))
}

/// Allocates the pty, sends its master over the console socket and makes the slave the
/// controlling terminal and stdio. The init also bind-mounts it on /dev/console (`exec` does
/// not: the container's /dev/console is the init's).
pub fn setup_console(sock: &UnixStream, process: &Process, dev_console: bool) -> Result<()> {
    let (master, slave, name) = crate::console::open_pty()?;
    // runc: the terminal belongs to the process's user; its group stays devpts's (tty, gid=5).
    nix::unistd::fchown(
        slave.as_raw_fd(),
        Some(nix::unistd::Uid::from_raw(process.user().uid())),
        None,
    )
    .ctx(|| format!("chown of the terminal {name} to uid {}", process.user().uid()))?;
    if let Some(sz) = process.console_size() {
        let cells = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
        crate::console::set_size(master.as_raw_fd(), cells(sz.height()), cells(sz.width()))?;
    }
    if dev_console {
        // /dev/console must exist as a file to be a bind target; create it if the image lacks it.
        if !Path::new("/dev/console").exists() {
            std::fs::File::create("/dev/console").ctx(|| "creating /dev/console".into())?;
        }
        crate::rootfs::mounts::mount(
            Some(&name),
            "/dev/console",
            None,
            nix::mount::MsFlags::MS_BIND,
            None,
            Path::new("/dev/console"),
        )?;
    }
    crate::console::send_fd(sock.as_raw_fd(), "/dev/ptmx", master.as_raw_fd())?;
    drop(master);
    crate::console::make_controlling(&slave)
}

/// The process environment, with HOME from the container's /etc/passwd when unset (as runc).
fn environment(p: &Process) -> Vec<String> {
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let uid = p.user().uid();
        let home = std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
                })
            })
            .unwrap_or_else(|| "/".into());
        env.push(format!("HOME={home}"));
    }
    env
}

/// Finds the executable like execvp, with the container's PATH.
fn lookup(name: &str, env: &[String]) -> Result<PathBuf> {
    let executable = |p: &Path| {
        std::fs::metadata(p).map(|m| m.is_file()).unwrap_or(false)
            && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok()
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        if !p.exists() {
            return Err(Error::msg(format!("exec: {name:?}: no such file or directory")));
        }
        if !executable(&p) {
            return Err(Error::msg(format!("exec: {name:?}: permission denied")));
        }
        return Ok(p);
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let p = Path::new(dir).join(name);
        if executable(&p) {
            return Ok(p);
        }
    }
    Err(Error::msg(format!(
        "exec: {name:?}: executable file not found in $PATH"
    )))
}

/// Joins a new session keyring named after the container, as runc does unless
/// `--no-new-keyring`: the container must not share the caller's keys. Kernels without keyrings
/// (ENOSYS) are fine.
fn join_session_keyring(id: &str) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    const KEYCTL_SETPERM: libc::c_long = 5;
    const KEYCTL_DESCRIBE: libc::c_long = 6;
    let name = CString::new(id).map_err(|_| Error::msg("container id contains a NUL byte"))?;
    // SAFETY: keyctl with a valid C string.
    let key = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if key < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOSYS) {
            return Ok(());
        }
        return Err(e).ctx(|| "joining a new session keyring".into());
    }
    // Let the container's user search its keyring: add "user search" to the permissions, which
    // the description ("type;uid;gid;perm;name") gives in hex.
    let mut buf = [0u8; 512];
    // SAFETY: keyctl writes at most buf.len() bytes into buf.
    let n = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_DESCRIBE, key, buf.as_mut_ptr(), buf.len()) };
    if n > 0 {
        let n = usize::try_from(n).unwrap_or(0).min(buf.len());
        let desc = String::from_utf8_lossy(&buf[..n]).into_owned();
        if let Some(perm) = desc.split(';').nth(3).and_then(|p| u32::from_str_radix(p, 16).ok()) {
            // SAFETY: keyctl with integer arguments.
            unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_SETPERM, key, perm | 0x0008_0000) };
        }
    }
    Ok(())
}

/// Installs the seccomp filters; a notify fd goes to the runtime, which hands it to the
/// profile's listener.
fn install_seccomp(p: &crate::seccomp::Program, ch: &Channel) -> Result<()> {
    if let Some(fd) = crate::seccomp::install(p)? {
        ch.send_with_fd(&Msg::SeccompNotify, fd.as_raw_fd())?;
    }
    Ok(())
}
