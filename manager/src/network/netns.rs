//! Named network namespaces, as `ip netns add` makes them: a file that a bind mount of the
//! namespace keeps alive while no process is in it. drayd makes one per container before the
//! CNI plugins run (they need its path) and gives that path to the runtime in the spec.

use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// Creates a network namespace kept at `path` (a new file). The namespace is made on a
/// thread of its own, which exits afterwards: no thread of drayd ever runs in it.
pub fn create(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .ctx(|| format!("creating {}", path.display()))?;
    let target = path.to_path_buf();
    let made = std::thread::Builder::new()
        .name("dray-netns".into())
        .spawn(move || -> Result<()> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).ctx(|| "a new network namespace".into())?;
            loopback_up().ctx(|| "bringing up loopback in the new network namespace".into())?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .ctx(|| format!("keeping the network namespace at {}", target.display()))
        })
        .map_err(|e| Error::io("starting the netns thread", e))?
        .join()
        .map_err(|_| Error::io("netns", std::io::Error::other("the netns thread panicked")))?;
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Brings `lo` up in the calling thread's network namespace (SIOCSIFFLAGS, as `ip link set
/// lo up`): the kernel then gives it 127.0.0.1 and ::1.
fn loopback_up() -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket(2); the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: socket returned a new descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: a valid socket and an ifreq naming an interface; the kernel fills the flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the flags member of the union is the one SIOCGIFFLAGS filled.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; the kernel reads the name and flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Removes the namespace kept at `path` (gone already is fine). The namespace itself ends
/// when its last process does.
pub fn remove(path: &Path) -> Result<()> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(Error::io(format!("unmounting {}", path.display()), e.into())),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

/// Whether `path` holds a network namespace (the bind mount is in place).
pub fn exists(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0 == 0x6e73_6673) // NSFS_MAGIC
        .unwrap_or(false)
}
