//! The rootfs bind of a container without a mount namespace of its own (see
//! [`crate::rootfs`]): detached again by `delete`, in the namespace it shared or joined.

use super::*;

/// Detaches the rootfs bind of a container without a mount namespace of its own, in the
/// namespace it shared or joined.
pub(super) fn detach_container_rootfs(st: &ContainerState) {
    match &st.mount_ns_path {
        Some(ns) if st.rootfs_mount.is_some() => detach_rootfs_in(ns, &st.rootfs, st.rootfs_mount),
        None if st.rootfs_mount.is_some() => detach_rootfs(&st.rootfs, st.rootfs_mount),
        _ => {}
    }
}

/// Detaches the rootfs bind of a container that shared the runtime's mount namespace (and with
/// it every mount the container made under it), if it is still the one dray made.
pub(super) fn detach_rootfs(rootfs: &Path, id: Option<u64>) {
    if id.is_some() && crate::sys::mount_id(rootfs) == id {
        if let Err(e) = crate::rootfs::detach_shared_bind(rootfs) {
            tracing::warn!("detaching the rootfs bind {}: {e}", rootfs.display());
        }
    }
}

/// [`detach_rootfs`] in the mount namespace at `ns` (one the container joined by path), from a
/// child process: setns into a mount namespace needs a single-threaded caller, and the runtime
/// stays where it is. A namespace that is gone took the mounts with it.
fn detach_rootfs_in(ns: &Path, rootfs: &Path, id: Option<u64>) {
    let Ok(f) = std::fs::File::open(ns) else {
        return;
    };
    // SAFETY: the CLI is single-threaded; the child only makes syscalls and exits.
    match unsafe { crate::sys::clone_fork(0) } {
        Ok(0) => {
            let ok = nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNS).is_ok();
            if ok {
                detach_rootfs(rootfs, id);
            }
            // SAFETY: _exit skips the destructors of the forked copy of the runtime.
            unsafe { libc::_exit(i32::from(!ok)) }
        }
        Ok(pid) => {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
        Err(e) => tracing::warn!("detaching the rootfs bind in {}: {e}", ns.display()),
    }
}
