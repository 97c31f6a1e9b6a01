//! `dray features` (runtime-spec features.md): what this build and this kernel really support,
//! derived from the code's own tables and the running kernel, not a list of wishes.

use serde_json::{json, Value};

/// The features document.
pub fn features() -> Value {
    let namespaces: Vec<&str> = ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"]
        .into_iter()
        .filter(|n| {
            let proc = match *n {
                "mount" => "mnt",
                "network" => "net",
                other => other,
            };
            std::path::Path::new("/proc/self/ns").join(proc).exists()
        })
        .collect();
    let all = caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all());
    let mut capabilities: Vec<String> = all.iter().map(|c| c.to_string()).collect();
    capabilities.sort();
    let mut mount_options: Vec<&str> = crate::rootfs::mounts::KNOWN_OPTIONS.to_vec();
    mount_options.sort_unstable();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options,
        "linux": {
            "namespaces": namespaces,
            "capabilities": capabilities,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": true},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86_64"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "run.dray.version": crate::VERSION,
            "run.dray.checkpoint.enabled": "false"
        }
    })
}
