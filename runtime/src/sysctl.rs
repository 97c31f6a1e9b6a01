//! `linux.sysctl` (config-linux.md "Sysctl"). Only namespaced sysctls are accepted, and only
//! when the container has the namespace that scopes them, as runc validates: otherwise a
//! container could change the host's kernel settings.

use crate::error::{Context, Error, Result};
use crate::namespaces::Plan;
use oci_spec::runtime::LinuxNamespaceType as Ns;

/// Checks that `key` may be set for a container with these namespaces.
pub fn validate(key: &str, plan: &Plan) -> Result<()> {
    let has = |t: Ns| plan.creates(t) || plan.joins(t).is_some();
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let (ok, ns) = if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        (has(Ns::Ipc), "ipc")
    } else if key.starts_with("net.") {
        // A network namespace joined by path may be the host's own: refused, as in runc.
        if let Some(p) = plan.joins(Ns::Network) {
            let same = |a: &std::path::Path, b: &str| {
                use std::os::unix::fs::MetadataExt;
                match (std::fs::metadata(a), std::fs::metadata(b)) {
                    (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
                    _ => false,
                }
            };
            if same(p, "/proc/self/ns/net") || same(p, "/proc/1/ns/net") {
                return Err(Error::msg(format!(
                    "sysctl {key:?} is not allowed in the host's network namespace"
                )));
            }
        }
        (has(Ns::Network), "network")
    } else if key == "kernel.hostname" {
        return Err(Error::msg(
            "sysctl \"kernel.hostname\" is not allowed: it conflicts with the \"hostname\" field",
        ));
    } else if key == "kernel.domainname" {
        (has(Ns::Uts), "uts")
    } else {
        return Err(Error::msg(format!(
            "sysctl {key:?} is not namespaced and cannot be set in a container"
        )));
    };
    if ok {
        Ok(())
    } else {
        Err(Error::msg(format!("sysctl {key:?} needs a private {ns} namespace")))
    }
}

/// Writes one sysctl through /proc/sys (inside the container's namespaces).
pub fn write(key: &str, value: &str) -> Result<()> {
    if key.is_empty() || key.split(['.', '/']).any(|c| c.is_empty() || c == "..") {
        return Err(Error::msg(format!("invalid sysctl name {key:?}")));
    }
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).ctx(|| format!("setting sysctl {key}={value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespaced_sysctls_pass() {
        let mut plan = Plan::default();
        assert!(validate("net.ipv4.ip_forward", &plan).is_err());
        plan.new.push(Ns::Network);
        assert!(validate("net.ipv4.ip_forward", &plan).is_ok());
        assert!(validate("kernel.shmmax", &plan).is_err());
        plan.new.push(Ns::Ipc);
        assert!(validate("kernel.shmmax", &plan).is_ok());
        assert!(validate("vm.swappiness", &plan).is_err());
        assert!(validate("kernel.domainname", &plan).is_err());
        assert!(validate("kernel.hostname", &plan).is_err());
        let mut host = Plan::default();
        host.join.push((Ns::Network, "/proc/self/ns/net".into()));
        assert!(validate("net.ipv4.ip_forward", &host).is_err());
    }
}
