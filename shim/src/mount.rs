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

/// The kernel takes at most one page of mount options.
const MAX_DATA: usize = 4096;

/// When an overlay's options exceed a page (deep images: every layer is a `lowerdir`), the
/// lower directories are given relative to their longest common parent and the mount is made
/// from there, as containerd's mount package does. Returns that directory and the new options,
/// or None when nothing can be shortened.
pub fn compact_lowerdir(data: &[String]) -> Option<(String, Vec<String>)> {
    let idx = data.iter().position(|o| o.starts_with("lowerdir="))?;
    let dirs: Vec<&str> = data[idx]["lowerdir=".len()..].split(':').collect();
    if dirs.len() < 2 || dirs.iter().any(|d| !d.starts_with('/')) {
        return None;
    }
    let first = dirs[0];
    let mut common = first.len();
    for d in &dirs[1..] {
        common = common.min(first.bytes().zip(d.bytes()).take_while(|(a, b)| a == b).count());
    }
    // Cut back to a whole directory: the prefix must end where a path component ends.
    let prefix = &first[..common];
    let dir = &prefix[..prefix.rfind('/')?];
    if dir.is_empty() {
        return None;
    }
    let rel: Vec<&str> = dirs
        .iter()
        .map(|d| d[dir.len() + 1..].trim_start_matches('/'))
        .collect();
    let mut out = data.to_vec();
    out[idx] = format!("lowerdir={}", rel.join(":"));
    Some((dir.to_string(), out))
}

/// Mounts with relative option paths resolved from `dir`: a short-lived child process
/// changes into `dir` and mounts (the mount namespace is shared, the shim's own working
/// directory is not touched).
fn mount_from(
    dir: &str,
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: &str,
) -> Result<(), String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    let c = |s: &str| std::ffi::CString::new(s).map_err(|e| e.to_string());
    let (dir, source, data) = (c(dir)?, c(source)?, c(data)?);
    let target = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    let fstype = fstype.map(c).transpose()?;
    // SAFETY: the child only makes async-signal-safe system calls (chdir, mount, _exit) on
    // buffers prepared before the fork.
    match unsafe { fork() }.map_err(|e| e.to_string())? {
        ForkResult::Child => {
            // SAFETY: valid C strings; _exit never returns.
            unsafe {
                let ok = libc::chdir(dir.as_ptr()) == 0
                    && libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
                        flags.bits(),
                        data.as_ptr().cast(),
                    ) == 0;
                libc::_exit(if ok { 0 } else { *libc::__errno_location() & 0x7f });
            }
        }
        ForkResult::Parent { child } => match waitpid(child, None).map_err(|e| e.to_string())? {
            WaitStatus::Exited(_, 0) => Ok(()),
            WaitStatus::Exited(_, errno) => Err(nix::Error::from_raw(errno).to_string()),
            other => Err(format!("mount helper: {other:?}")),
        },
    }
}

/// Mounts one of containerd's mounts onto `target`.
fn mount_one(m: &Mount, target: &Path) -> Result<(), String> {
    let o = parse_options(&m.options).map_err(|e| e.to_string())?;
    let mut data = o.data.join(",");
    let mut from_dir = None;
    if data.len() >= MAX_DATA && m.type_ == "overlay" {
        if let Some((dir, opts)) = compact_lowerdir(&o.data) {
            data = opts.join(",");
            from_dir = Some(dir);
        }
    }
    if data.len() >= MAX_DATA {
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
    match &from_dir {
        Some(dir) => mount_from(dir, &m.source, target, fstype, first, &data)?,
        None => {
            let data = (!data.is_empty()).then_some(data.as_str());
            mount(Some(m.source.as_str()), target, fstype, first, data).map_err(|e| e.to_string())?
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowerdirs_are_made_relative_to_their_common_parent() {
        let lowers: Vec<String> = (1..=3).map(|i| format!("/var/lib/x/snapshots/{i}/fs")).collect();
        let data = vec![
            "workdir=/var/lib/x/snapshots/9/work".to_string(),
            format!("lowerdir={}", lowers.join(":")),
        ];
        let (dir, out) = compact_lowerdir(&data).unwrap();
        assert_eq!(dir, "/var/lib/x/snapshots");
        assert_eq!(out[1], "lowerdir=1/fs:2/fs:3/fs");
        assert_eq!(out[0], data[0]);
        // Names that share a prefix inside a component cut back to the whole directory.
        let (dir, out) = compact_lowerdir(&["lowerdir=/a/b10/fs:/a/b11/fs".to_string()]).unwrap();
        assert_eq!((dir.as_str(), out[0].as_str()), ("/a", "lowerdir=b10/fs:b11/fs"));
        assert!(compact_lowerdir(&["lowerdir=/a:/b".to_string()]).is_none());
        assert!(compact_lowerdir(&["lowerdir=rel/a:rel/b".to_string()]).is_none());
        assert!(compact_lowerdir(&["upperdir=/x".to_string()]).is_none());
    }
}
