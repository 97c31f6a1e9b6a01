//! The container's root filesystem, as containerd passes it in CreateTaskRequest.rootfs
//! (an overlay of snapshot layers, or a bind mount), mounted onto `<bundle>/rootfs`; and
//! its removal when the task is deleted or the shim is cleaned up after a crash.

use containerd_shim_protos::api::Mount;
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

/// Splits fstab-style options into mount flags and the filesystem's data string, as
/// containerd's `mount.parseMountOptions` does. Returns (flags, propagation, data).
pub fn parse_options(options: &[String]) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut prop = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        let (set, clear) = match o.as_str() {
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable" => {
                let mut p = match o.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                if o.starts_with('r') {
                    p |= MsFlags::MS_REC;
                }
                prop |= p;
                continue;
            }
            _ => {
                data.push(o.as_str());
                continue;
            }
        };
        flags |= set;
        flags &= !clear;
    }
    (flags, prop, data.join(","))
}

/// Mounts each of `mounts` in turn onto `target`; on failure what was mounted is undone.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<(), MountError> {
    let fail = |m: &Mount, e: String| MountError {
        what: format!("{} {}", m.type_, m.source),
        target: target.display().to_string(),
        err: e,
    };
    for (i, m) in mounts.iter().enumerate() {
        let (flags, prop, data) = parse_options(&m.options);
        if data.len() >= 4096 {
            unmount_all(target);
            return Err(fail(m, format!("mount options too long ({} bytes)", data.len())));
        }
        let fstype = if m.type_.is_empty() || m.type_ == "bind" || m.type_ == "rbind" {
            None
        } else {
            Some(m.type_.as_str())
        };
        let mut flags = flags;
        if m.type_ == "bind" || m.type_ == "rbind" {
            flags |= MsFlags::MS_BIND;
            if m.type_ == "rbind" {
                flags |= MsFlags::MS_REC;
            }
        }
        let data_opt = if data.is_empty() { None } else { Some(data.as_str()) };
        let bind = flags.contains(MsFlags::MS_BIND);
        // A bind mount ignores most flags on creation: it takes them on a remount.
        let first = if bind {
            flags & (MsFlags::MS_BIND | MsFlags::MS_REC)
        } else {
            flags
        };
        let r = mount(Some(m.source.as_str()), target, fstype, first, data_opt).and_then(|_| {
            if bind && flags != first {
                mount(
                    None::<&str>,
                    target,
                    None::<&str>,
                    flags | MsFlags::MS_REMOUNT,
                    None::<&str>,
                )?;
            }
            if !prop.is_empty() {
                mount(None::<&str>, target, None::<&str>, prop, None::<&str>)?;
            }
            Ok(())
        });
        if let Err(e) = r {
            for _ in 0..i + 1 {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
            return Err(fail(m, e.to_string()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let o: Vec<String> = ["ro", "nosuid", "index=off", "lowerdir=/a:/b", "rprivate"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (f, p, d) = parse_options(&o);
        assert!(f.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
        assert_eq!(p, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(d, "index=off,lowerdir=/a:/b");
        let (f, _, _) = parse_options(&["ro".into(), "rw".into(), "rbind".into()]);
        assert!(!f.contains(MsFlags::MS_RDONLY));
        assert!(f.contains(MsFlags::MS_BIND | MsFlags::MS_REC));
    }
}
