//! Thin wrappers over the system calls that `nix` does not cover (or covers awkwardly), each
//! small enough to test on its own.

use crate::error::{Context, Error, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

/// Forks with `flags` (namespace flags) using the raw `clone` system call with no new stack,
/// which behaves like `fork(2)` but can create namespaces at the same time. The child gets
/// `SIGCHLD` as exit signal so that `waitpid` works as for `fork`.
///
/// Returns 0 in the child and the child's pid in the parent.
///
/// # Safety
/// The caller must be single-threaded: the child continues on a copy of the caller's stack
/// and memory, with only the calling thread.
pub unsafe fn clone_fork(flags: libc::c_ulong) -> Result<libc::pid_t> {
    // (Unknown inside a container's mount namespace whose /proc does not show this process.)
    debug_assert!(
        thread_count().is_none_or(|n| n == 1),
        "clone_fork in a multithreaded process"
    );
    let flags = flags | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: a null child stack makes clone copy the parent's stack like fork; the caller
    // guarantees that the process is single-threaded. The unused pointer arguments are null.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
            0usize,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "clone".into());
    }
    syscall_int(r).ctx(|| "clone".into())
}

/// `clone3(2)` with CLONE_INTO_CGROUP: like [`clone_fork`], but the child is born in the cgroup
/// v2 directory `cgroup_fd`, so it never has to be migrated there (a migration waits for an
/// RCU grace period). Returns the kernel's error (ENOSYS, E2BIG, EINVAL on kernels without it)
/// so that the caller can fall back to `clone_fork` + cgroup.procs.
///
/// # Safety
/// As [`clone_fork`]: the caller must be single-threaded.
pub unsafe fn clone_into_cgroup(flags: u64, cgroup_fd: RawFd) -> std::io::Result<libc::pid_t> {
    debug_assert!(
        thread_count().is_none_or(|n| n == 1),
        "clone_into_cgroup in a multithreaded process"
    );
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: flags | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: u64::from(fd_u32(cgroup_fd)),
    };
    // SAFETY: clone3 with a valid clone_args of the size passed; no stack means the child runs on
    // a copy of ours, like fork; the caller guarantees a single thread.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    syscall_int(r)
}

/// A raw system call's result that is a pid or an fd, as the `int` it is: the kernel returns
/// it in a long, never above INT_MAX.
pub fn syscall_int(r: libc::c_long) -> std::io::Result<i32> {
    i32::try_from(r).map_err(|_| std::io::Error::from_raw_os_error(libc::EOVERFLOW))
}

/// An fd for kernel structures that take it unsigned. An open fd is never negative; a negative
/// one becomes u32::MAX, which the kernel refuses as a bad fd.
pub fn fd_u32(fd: RawFd) -> u32 {
    u32::try_from(fd).unwrap_or(u32::MAX)
}

/// `pidfd_open(2)`: a file descriptor that becomes readable when the process exits, which lets
/// us wait for processes that are not our children without sleeping.
pub fn pidfd_open(pid: libc::pid_t) -> std::io::Result<OwnedFd> {
    // SAFETY: plain system call with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new, owned file descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(syscall_int(fd)?) })
}

/// Waits until `fd` is readable, at most `timeout` (None: forever). Returns false on timeout.
pub fn poll_readable(fd: RawFd, timeout: Option<Duration>) -> std::io::Result<bool> {
    let ms = timeout.map_or(-1, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: pfd is a valid pollfd array of length 1.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(r > 0);
    }
}

/// Waits for a process (not necessarily our child) to exit, up to `timeout`. Returns true when
/// it has exited (or is a zombie).
pub fn wait_exit(pid: libc::pid_t, timeout: Option<Duration>) -> bool {
    match pidfd_open(pid) {
        Ok(fd) => poll_readable(fd.as_raw_fd(), timeout).unwrap_or(true),
        Err(_) => true,
    }
}

/// The state letter (field 3) and start time (field 22, clock ticks since boot) of a
/// process, from one read of `/proc/PID/stat`; None if it does not exist.
fn stat(pid: libc::pid_t) -> Option<(char, u64)> {
    let stat = read_text(format!("/proc/{pid}/stat")).ok()?;
    // The comm (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut f = rest.split(' ');
    let state = f.next()?.chars().next()?;
    // state is field 3, so the start time (22) is 19 fields further.
    let start = f.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The id of the mount at the top of `path`, which tells a mount dray made apart from one that
/// was there before: the 64-bit id that is never reused (STATX_MNT_ID_UNIQUE, Linux 6.8), else
/// the classic one (STATX_MNT_ID, Linux 5.8), which a later mount may reuse.
pub fn mount_id(path: &Path) -> Option<u64> {
    const STATX_MNT_ID_UNIQUE: u32 = 0x4000;
    let c = cstr(path.as_os_str()).ok()?;
    for want in [STATX_MNT_ID_UNIQUE, libc::STATX_MNT_ID] {
        // SAFETY: statx is plain data; all-zero is a valid value.
        let mut stx: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: statx with a valid C string and a pointer to a statx buffer owned here.
        let r = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), 0, want, &mut stx) };
        if r == 0 && stx.stx_mask & want != 0 {
            return Some(stx.stx_mnt_id);
        }
    }
    None
}

/// The start time of a process, used to tell a live container init from an unrelated
/// process that reused its pid.
pub fn process_start_time(pid: libc::pid_t) -> Option<u64> {
    stat(pid).map(|(_, t)| t)
}

/// True when `pid` is alive, not a zombie, and (if given) started at `start_time`.
pub fn process_alive(pid: libc::pid_t, start_time: Option<u64>) -> bool {
    if pid <= 0 {
        return false;
    }
    match stat(pid) {
        None | Some(('Z' | 'X' | 'x', _)) => false,
        Some((_, t)) => start_time.is_none_or(|want| t == want),
    }
}

/// Marks every fd from `first` upwards close-on-exec, so no host fd survives into the container
/// (CVE-2024-21626). Uses `close_range(CLOSE_RANGE_CLOEXEC)` and falls back to /proc/self/fd.
pub fn cloexec_from(first: RawFd) -> Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags here.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            libc::c_uint::try_from(first).map_err(|_| Error::msg(format!("bad fd {first}")))?,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .ctx(|| "listing /proc/self/fd".into())?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|fd| *fd >= first) {
        set_cloexec(fd, true);
    }
    Ok(())
}

/// The fds among `first..first+count` that are open.
pub fn open_fds(first: RawFd, count: i32) -> Vec<RawFd> {
    // SAFETY: F_GETFD has no effects; -1 means the fd is not open.
    (first..first + count.max(0))
        .filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } != -1)
        .collect()
}

/// Sets or clears FD_CLOEXEC on `fd`, ignoring fds that are already closed.
pub fn set_cloexec(fd: RawFd, on: bool) {
    // SAFETY: fcntl on an integer fd has no memory effects; errors (EBADF) are ignored.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            let new = if on {
                flags | libc::FD_CLOEXEC
            } else {
                flags & !libc::FD_CLOEXEC
            };
            libc::fcntl(fd, libc::F_SETFD, new);
        }
    }
}

/// One `prctl` option set to an integer value, its failure named after the option.
fn prctl_set(option: libc::c_int, value: libc::c_ulong, name: &str) -> Result<()> {
    // SAFETY: prctl with integer arguments only; the options used here take no pointers.
    let r = unsafe { libc::prctl(option, value, 0, 0, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| format!("prctl({name})"));
    }
    Ok(())
}

/// `prctl(PR_SET_DUMPABLE)`: a non-dumpable process's /proc files (exe, fd, mem) cannot be
/// opened by container processes without CAP_SYS_PTRACE in the host user namespace.
pub fn set_dumpable(on: bool) -> Result<()> {
    prctl_set(libc::PR_SET_DUMPABLE, libc::c_ulong::from(on), "PR_SET_DUMPABLE")
}

/// `prctl(PR_SET_CHILD_SUBREAPER)`: orphaned descendants are re-parented to us.
pub fn set_child_subreaper() -> Result<()> {
    prctl_set(libc::PR_SET_CHILD_SUBREAPER, 1, "PR_SET_CHILD_SUBREAPER")
}

/// `prctl(PR_SET_KEEPCAPS)`: keep permitted capabilities across the switch to a non-zero uid.
pub fn set_keepcaps(on: bool) -> Result<()> {
    prctl_set(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(on), "PR_SET_KEEPCAPS")
}

/// `prctl(PR_SET_NO_NEW_PRIVS)` (`process.noNewPrivileges`).
pub fn set_no_new_privs() -> Result<()> {
    prctl_set(libc::PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")
}

/// The number of threads of this process (/proc/self/status), for the single-thread checks of
/// the fork paths.
pub fn thread_count() -> Option<usize> {
    read_text("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// A path as a C string, with a clear error for an interior NUL.
pub fn cstr(p: impl AsRef<Path>) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_ref().as_os_str().as_bytes())
        .map_err(|_| Error::msg(format!("path {:?} contains a NUL byte", p.as_ref())))
}

/// `openat2(2)` with `RESOLVE_IN_ROOT`: opens `path` as if `dirfd` were the root directory, so
/// that symlinks and `..` in an untrusted tree cannot lead outside it.
pub fn openat2_in_root(dirfd: RawFd, path: &Path, flags: i32, mode: u32) -> std::io::Result<OwnedFd> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_IN_ROOT: u64 = 0x10;
    let c = cstr(path).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let how = OpenHow {
        // The bits of the int, as the kernel's u64 field takes them.
        flags: u64::from(u32::from_ne_bytes((flags | libc::O_CLOEXEC).to_ne_bytes())),
        mode: u64::from(mode),
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    loop {
        // SAFETY: `c` is a valid C string and `how` a valid open_how of the given size.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel returned a new, owned file descriptor.
            return Ok(unsafe { OwnedFd::from_raw_fd(syscall_int(fd)?) });
        }
        let e = std::io::Error::last_os_error();
        // EAGAIN: a concurrent rename raced the lookup; the kernel asks us to retry.
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
}

/// The path of an fd through the host's /proc, for system calls that take a path (mount).
pub fn fd_path(fd: RawFd) -> String {
    format!("/proc/self/fd/{fd}")
}

/// Blocks the given signals in this thread and returns the previous mask.
pub fn block_signals(set: &nix::sys::signal::SigSet) -> Result<nix::sys::signal::SigSet> {
    let mut old = nix::sys::signal::SigSet::empty();
    nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(set), Some(&mut old))
        .ctx(|| "blocking signals".into())?;
    Ok(old)
}

/// Restores a signal mask saved by [`block_signals`].
pub fn set_signal_mask(set: &nix::sys::signal::SigSet) -> Result<()> {
    nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(set), None)
        .ctx(|| "restoring the signal mask".into())
}

/// kill(2) with a raw signal number (real-time signals included).
pub fn kill(pid: i32, sig: i32) -> std::io::Result<()> {
    // SAFETY: kill with integer arguments.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Writes `data` to `path` through a temporary file in the same directory and a rename, so
/// that readers see the old contents or the new, never a part.
pub fn write_file_atomic(path: &Path, tmp_suffix: &str, data: impl AsRef<[u8]>) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(tmp_suffix);
    let tmp = path.with_file_name(name);
    write_file(&tmp, data)?;
    std::fs::rename(&tmp, path).ctx(|| format!("writing {}", path.display()))
}

/// An `O_PATH` directory fd (for *at calls and fd-based mounts).
pub fn open_path_dir(p: &Path) -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        p,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("opening {}", p.display()))?;
    // SAFETY: a new fd, owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Before running another program: an empty signal mask and default dispositions.
/// Async-signal-safe (callable between fork and exec).
pub fn reset_signals() {
    let empty = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&empty), None);
    reset_signal_dispositions();
}

/// Resets every signal to its default action (before exec: handlers are reset by the kernel,
/// but ignored signals, like Rust's SIGPIPE, would stay ignored in the container).
pub fn reset_signal_dispositions() {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // The raw system call: glibc's wrapper refuses its internal signals (32, 33), which may
        // have been inherited as ignored.
        #[repr(C)]
        struct KernelSigaction {
            handler: usize,
            flags: libc::c_ulong,
            restorer: usize,
            mask: u64,
        }
        let act = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: rt_sigaction with a valid kernel sigaction (SIG_DFL needs no restorer) and the
        // kernel's sigset size of 8 bytes; invalid numbers just fail.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &act as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
}

/// Reads a small text file such as a /proc or cgroupfs entry. Those report a size of 0, for
/// which `std::fs::read_to_string` stats the file and then reads 32 bytes at a time, growing;
/// this reads 4 KiB at a time from the start.
pub fn read_text(path: impl AsRef<Path>) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(4096);
    std::fs::File::open(path)?.read_to_end(&mut buf)?;
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Writes a whole file, naming the file in the error.
pub fn write_file(path: impl AsRef<Path>, data: impl AsRef<[u8]>) -> Result<()> {
    let path = path.as_ref();
    std::fs::write(path, data).ctx(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_with_matching_start_time() {
        let pid = std::process::id() as i32;
        let st = process_start_time(pid).expect("start time");
        assert!(process_alive(pid, Some(st)));
        assert!(!process_alive(pid, Some(st + 1)));
        assert!(!process_alive(0, None));
    }

    #[test]
    fn openat2_stays_in_root() {
        let dir = std::env::temp_dir().join(format!("dray-sys-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::os::unix::fs::symlink("/../../..", dir.join("a/up")).unwrap();
        std::fs::write(dir.join("f"), "x").unwrap();
        let root = std::fs::File::open(&dir).unwrap();
        // `a/up/f` climbs above the root through a symlink: it must resolve to <root>/f.
        let fd = openat2_in_root(root.as_raw_fd(), Path::new("a/up/f"), libc::O_RDONLY, 0).unwrap();
        let target = std::fs::read_link(fd_path(fd.as_raw_fd())).unwrap();
        assert_eq!(target, dir.join("f"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
