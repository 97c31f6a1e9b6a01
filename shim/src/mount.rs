//! The container's root filesystem, as containerd passes it in CreateTaskRequest.rootfs
//! (an overlay of snapshot layers, or a bind mount), mounted onto `<bundle>/rootfs`; and
//! its removal when the task is deleted or the shim is cleaned up after a crash. Options are
//! split by the runtime's own parser (`dray_runtime::rootfs::mounts::parse_options`).

use containerd_shim_protos::api::Mount;
use dray_runtime::rootfs::mounts::parse_options;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
#[error("mount {what} on {target}: {err}")]
pub struct MountError {
    what: String,
    target: String,
    err: String,
}

/// Mounts one of containerd's mounts onto `target`.
fn mount_one(m: &Mount, target: &Path) -> Result<(), String> {
    let o = parse_options(&m.options).map_err(|e| e.to_string())?;
    let data = o.data.join(",");
    if data.len() >= 4096 {
        return Err(format!("mount options too long ({} bytes)", data.len()));
    }
    let mut flags = o.flags;
    let fstype = match m.type_.as_str() {
        "" => None,
        "bind" => {
            flags |= MsFlags::MS_BIND;
            None
        }
        "rbind" => {
            flags |= MsFlags::MS_BIND | MsFlags::MS_REC;
            None
        }
        t => Some(t),
    };
    let bind = flags.contains(MsFlags::MS_BIND);
    // A bind mount ignores most flags on creation: it takes them on a remount.
    let first = if bind {
        flags & (MsFlags::MS_BIND | MsFlags::MS_REC)
    } else {
        flags
    };
    let data = (!data.is_empty()).then_some(data.as_str());
    mount(Some(m.source.as_str()), target, fstype, first, data).map_err(|e| e.to_string())?;
    let rest = (|| {
        if bind && flags != first {
            mount(
                None::<&str>,
                target,
                None::<&str>,
                flags | MsFlags::MS_REMOUNT,
                None::<&str>,
            )?;
        }
        for p in &o.propagation {
            mount(None::<&str>, target, None::<&str>, *p, None::<&str>)?;
        }
        Ok::<(), nix::Error>(())
    })();
    rest.map_err(|e| {
        let _ = umount2(target, MntFlags::MNT_DETACH);
        e.to_string()
    })
}

/// Mounts each of `mounts` in turn onto `target`; on failure what was mounted is undone.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<(), MountError> {
    for (i, m) in mounts.iter().enumerate() {
        if let Err(err) = mount_one(m, target) {
            for _ in 0..i {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
            return Err(MountError {
                what: format!("{} {}", m.type_, m.source),
                target: target.display().to_string(),
                err,
            });
        }
    }
    Ok(())
}

/// Unmounts everything stacked on `target` (lazily: a process may still hold it).
pub fn unmount_all(target: &Path) {
    for _ in 0..64 {
        if umount2(target, MntFlags::MNT_DETACH).is_err() {
            return;
        }
    }
}
