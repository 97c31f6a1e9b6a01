//! The short-lived actions containerd runs the shim binary for: `start` (find or launch the
//! long-lived server for this container's group and print its address) and `delete` (clean
//! up after a shim that died).

use crate::args::Flags;
use crate::task::RuntimeOptions;
use anyhow::{bail, Context, Result};
use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use dray_runtime::cgroups::CgroupPaths;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// Where shim sockets live (as containerd's own shims put them).
pub const SOCKET_DIR: &str = "/run/containerd/s";

/// The annotation that groups a pod's containers under one shim (containerd's CRI).
pub const SANDBOX_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

/// FNV-1a, 128 bits: a stable name for (containerd address, namespace, group).
fn fnv128(data: &[u8]) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in data {
        h ^= *b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h
}

/// The socket of the shim serving `group` for this containerd and namespace: the same
/// inputs always give the same path, so a second container of the group finds the shim.
pub fn socket_path(address: &str, ns: &str, group: &str) -> PathBuf {
    let h = fnv128(format!("{address}/{ns}/{group}").as_bytes());
    Path::new(SOCKET_DIR).join(format!("dray-{h:032x}"))
}

/// The group of the container in `bundle`: its pod's sandbox id, or its own id.
pub fn group_of(bundle: &Path, id: &str) -> String {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["annotations"][SANDBOX_ANNOTATION].as_str().map(str::to_string))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| id.to_string())
}

fn require(flags: &Flags) -> Result<()> {
    if flags.id.is_empty() {
        bail!("-id is required");
    }
    if flags.namespace.is_empty() {
        bail!("-namespace is required");
    }
    Ok(())
}

/// `start`: returns the address to print.
pub fn start(flags: &Flags) -> Result<String> {
    require(flags)?;
    // The runtime options containerd sends on stdin (a protobuf Any); of them only the shim's
    // own cgroup matters here, the rest is read again at Create.
    let mut opts = Vec::new();
    // SAFETY: isatty only inspects fd 0.
    if unsafe { libc::isatty(0) } == 0 {
        let _ = std::io::stdin().read_to_end(&mut opts);
    }
    let shim_cgroup = Any::parse_from_bytes(&opts)
        .ok()
        .and_then(|a| RuntimeOptions::from_any(Some(&a)).ok())
        .map(|o| o.shim_cgroup)
        .unwrap_or_default();
    let bundle = std::env::current_dir().context("bundle directory")?;
    let group = group_of(&bundle, &flags.id);
    let path = socket_path(&flags.address, &flags.namespace, &group);
    let address = format!("unix://{}", path.display());
    std::fs::create_dir_all(SOCKET_DIR).with_context(|| SOCKET_DIR.to_string())?;
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(&path).is_ok() {
                // The group's shim is running: this container joins it.
                std::fs::write(bundle.join("address"), &address).context("write address")?;
                return Ok(address);
            }
            std::fs::remove_file(&path).with_context(|| format!("stale socket {}", path.display()))?;
            UnixListener::bind(&path).with_context(|| format!("listen on {}", path.display()))?
        }
        Err(e) => return Err(e).with_context(|| format!("listen on {}", path.display())),
    };
    let exe = std::env::current_exe().context("own executable")?;
    let fd = listener.as_raw_fd();
    let mut cmd = std::process::Command::new(exe);
    cmd.args(flags.server_args())
        .current_dir(&bundle)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls (setsid, dup2, fcntl) on fds open in the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0);
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(e).context("start the shim server");
        }
    };
    let _ = std::fs::write(bundle.join("shim.pid"), child.id().to_string());
    if !shim_cgroup.is_empty() {
        // ShimCgroup: the server lives (and is accounted) in the cgroup the options name.
        join_cgroup(&shim_cgroup, child.id()).with_context(|| format!("move the shim into {shim_cgroup}"))?;
    }
    std::fs::write(bundle.join("address"), &address).context("write address")?;
    Ok(address)
}

/// Moves `pid` into the cgroup at `path` (absolute: from each hierarchy's root), in every
/// hierarchy where that cgroup exists.
fn join_cgroup(path: &str, pid: u32) -> Result<()> {
    let mut cg = CgroupPaths::for_container(Some(Path::new(path)), "shim")?;
    cg.dirs.retain(|d| d.path.is_dir());
    if cg.dirs.is_empty() {
        bail!("no cgroup {path} on this host");
    }
    cg.add(pid as i32)?;
    Ok(())
}

/// `delete`: force-deletes the container of a dead shim and unmounts its rootfs; returns
/// the DeleteResponse to print.
pub fn delete(flags: &Flags) -> Result<Vec<u8>> {
    require(flags)?;
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir().context("bundle directory")?
    } else {
        PathBuf::from(&flags.bundle)
    };
    let opts = RuntimeOptions::load(&bundle);
    let root = opts.root_for(&flags.namespace);
    // containerd runs `delete` after every shim exit, clean ones included: when the runtime
    // (runc, crun and dray alike keep `<root>/<id>`) no longer knows the container, there is
    // nothing to force.
    if root.join(&flags.id).exists() {
        let status = std::process::Command::new(opts.binary())
            .arg("--root")
            .arg(&root)
            .arg("--log")
            .arg(bundle.join("log.json"))
            .args(["--log-format", "json", "delete", "--force", &flags.id])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if let Err(e) = status {
            eprintln!("delete {}: {e}", flags.id);
        }
    }
    crate::mount::unmount_all(&bundle.join("rootfs"));
    // The dead shim's socket, if nobody answers on it any more.
    if let Ok(a) = std::fs::read_to_string(bundle.join("address")) {
        if let Some(p) = a.trim().strip_prefix("unix://") {
            if UnixStream::connect(p).is_err() {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let r = DeleteResponse {
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: MessageField::some(crate::events::timestamp(std::time::SystemTime::now())),
        ..Default::default()
    };
    Ok(r.write_to_bytes()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_is_stable_per_group() {
        let a = socket_path("/run/containerd/containerd.sock", "default", "pod1");
        assert_eq!(a, socket_path("/run/containerd/containerd.sock", "default", "pod1"));
        assert_ne!(a, socket_path("/run/containerd/containerd.sock", "k8s.io", "pod1"));
        assert_ne!(a, socket_path("/other.sock", "default", "pod1"));
        assert!(a.to_string_lossy().len() < 108);
    }

    #[test]
    fn group_from_sandbox_annotation() {
        let d = std::env::temp_dir().join(format!("dray-shim-group-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"sb"}}"#,
        )
        .unwrap();
        assert_eq!(group_of(&d, "c1"), "sb");
        std::fs::write(d.join("config.json"), r#"{"annotations":{}}"#).unwrap();
        assert_eq!(group_of(&d, "c1"), "c1");
        let _ = std::fs::remove_dir_all(&d);
    }
}
