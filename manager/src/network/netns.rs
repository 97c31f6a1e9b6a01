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
