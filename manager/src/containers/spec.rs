//! The OCI runtime spec of a container: docker's defaults (moby `oci/defaults.go` and
//! `daemon/oci_linux.go`), the image's config and the user's options, in that order of
//! precedence. Pure: everything it needs from the host comes in [`Host`].

use serde_json::{json, Value};

use super::record::{MountOpt, Record};
use super::seccomp;
use super::user::Ids;
use crate::error::{Error, Result};

/// docker's default environment PATH.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// docker's minimum `--memory` (6 MiB).
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// What the spec needs from the host and from drayd's files.
#[derive(Debug, Clone)]
pub struct Host {
    pub cgroup_v2: bool,
    /// Files drayd wrote for the container, bind-mounted over the image's.
    pub hostname_file: String,
    pub hosts_file: String,
    pub resolv_file: String,
    /// Host directories of the container's volumes, by target.
    pub volume_sources: Vec<(String, String)>,
    /// The init binary for `--init` (bind-mounted at /sbin/docker-init... here /dray-init).
    pub init_binary: Option<String>,
    pub arch: String,
    /// The network namespace to join (None: the host's for `host`, else a new one).
    pub netns: Option<String>,
}

/// The paths docker masks (moby `oci.DefaultSpec`).
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// The paths docker makes read-only.
const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Every capability (for `--privileged` and `--cap-add ALL`), as runc knows them.
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// `net_admin` / `NET_ADMIN` / `CAP_NET_ADMIN` → `CAP_NET_ADMIN`; `ALL` stays.
fn normalize_cap(c: &str) -> Result<String> {
    let up = c.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(Error::InvalidArgument(format!("unknown capability: {c:?}")))
    }
}

/// docker's capability set: the defaults, `--cap-add`, `--cap-drop` (ALL on either side).
pub fn capabilities(add: &[String], drop: &[String], privileged: bool) -> Result<Vec<String>> {
    let add: Vec<String> = add.iter().map(|c| normalize_cap(c)).collect::<Result<_>>()?;
    let drop: Vec<String> = drop.iter().map(|c| normalize_cap(c)).collect::<Result<_>>()?;
    if privileged || add.iter().any(|c| c == "ALL") {
        let all: Vec<String> = ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect();
        if privileged {
            return Ok(all);
        }
        return Ok(all.into_iter().filter(|c| !drop.contains(c)).collect());
    }
    let mut caps: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        seccomp::DEFAULT_CAPABILITIES
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    for c in add {
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    Ok(caps)
}

/// The `--security-opt` values drayd understands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecurityOpts {
    pub no_new_privileges: bool,
    /// `None`: docker's default profile; `Some(Null)`: unconfined.
    pub seccomp: Option<Value>,
}

/// Parses `--security-opt` (docker's `key=value` and `key:value` forms).
pub fn security_opts(opts: &[String]) -> Result<SecurityOpts> {
    let mut out = SecurityOpts::default();
    for o in opts {
        let (k, v) = o
            .split_once('=')
            .or_else(|| o.split_once(':'))
            .unwrap_or((o.as_str(), ""));
        match k {
            "no-new-privileges" => {
                out.no_new_privileges = match v {
                    "" | "true" => true,
                    "false" => false,
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "invalid --security-opt {o:?}: no-new-privileges takes true or false"
                        )))
                    }
                }
            }
            "seccomp" if v == "unconfined" => out.seccomp = Some(Value::Null),
            "seccomp" if !v.is_empty() => {
                // drayctl sends the profile's content (the file lives on the client's side).
                let p: Value = serde_json::from_str(v)
                    .map_err(|e| Error::InvalidArgument(format!("decoding seccomp profile failed: {e}")))?;
                out.seccomp = Some(convert_docker_profile(&p)?);
            }
            "apparmor" | "label" => {}
            _ => return Err(Error::InvalidArgument(format!("invalid --security-opt: {o:?}"))),
        }
    }
    Ok(out)
}

/// A docker seccomp profile file (`defaultAction`, `syscalls[].names`, ...) as the OCI
/// `linux.seccomp` object: the layouts are the same apart from docker's extra keys, which
/// drayd drops (includes/excludes of a user profile are not evaluated).
fn convert_docker_profile(p: &Value) -> Result<Value> {
    let obj = p
        .as_object()
        .ok_or_else(|| Error::InvalidArgument("seccomp profile: not a JSON object".into()))?;
    if !obj.contains_key("defaultAction") {
        return Err(Error::InvalidArgument("seccomp profile: no defaultAction".into()));
    }
    let mut out = serde_json::Map::new();
    for k in [
        "defaultAction",
        "defaultErrnoRet",
        "architectures",
        "flags",
        "listenerPath",
    ] {
        if let Some(v) = obj.get(k) {
            out.insert(k.to_string(), v.clone());
        }
    }
    if out.get("architectures").is_none() {
        if let Some(m) = obj.get("archMap").and_then(Value::as_array) {
            let arches: Vec<Value> = m
                .iter()
                .flat_map(|a| {
                    std::iter::once(a["architecture"].clone())
                        .chain(a["subArchitectures"].as_array().cloned().unwrap_or_default())
                })
                .collect();
            out.insert("architectures".into(), Value::Array(arches));
        }
    }
    let syscalls: Vec<Value> = obj
        .get("syscalls")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| {
                    let mut e = serde_json::Map::new();
                    let names = s.get("names").cloned().or_else(|| s.get("name").map(|n| json!([n])));
                    e.insert("names".into(), names.unwrap_or(json!([])));
                    for k in ["action", "errnoRet", "args"] {
                        if let Some(v) = s.get(k).filter(|v| !v.is_null()) {
                            e.insert(k.into(), v.clone());
                        }
                    }
                    Value::Object(e)
                })
                .collect()
        })
        .unwrap_or_default();
    out.insert("syscalls".into(), Value::Array(syscalls));
    Ok(Value::Object(out))
}

/// docker's ulimit names → RLIMIT_*.
fn rlimit_name(n: &str) -> Result<&'static str> {
    Ok(match n {
        "core" => "RLIMIT_CORE",
        "cpu" => "RLIMIT_CPU",
        "data" => "RLIMIT_DATA",
        "fsize" => "RLIMIT_FSIZE",
        "locks" => "RLIMIT_LOCKS",
        "memlock" => "RLIMIT_MEMLOCK",
        "msgqueue" => "RLIMIT_MSGQUEUE",
        "nice" => "RLIMIT_NICE",
        "nofile" => "RLIMIT_NOFILE",
        "nproc" => "RLIMIT_NPROC",
        "rss" => "RLIMIT_RSS",
        "rtprio" => "RLIMIT_RTPRIO",
        "rttime" => "RLIMIT_RTTIME",
        "sigpending" => "RLIMIT_SIGPENDING",
        "stack" => "RLIMIT_STACK",
        _ => return Err(Error::InvalidArgument(format!("invalid ulimit type: {n}"))),
    })
}

/// The devices every container may use (moby `oci.DefaultLinuxSpec` device rules).
fn default_device_rules() -> Vec<Value> {
    vec![
        json!({"allow": false, "access": "rwm"}),
        json!({"allow": true, "type": "c", "access": "m"}),
        json!({"allow": true, "type": "b", "access": "m"}),
        json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}),
        json!({"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"}),
        json!({"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"}),
        json!({"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"}),
        json!({"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}),
        json!({"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"}),
        json!({"allow": true, "type": "c", "major": 136, "access": "rwm"}),
        json!({"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"}),
        json!({"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"}),
    ]
}

fn user_mount(m: &MountOpt, host: &Host) -> Result<Value> {
    let mut opts: Vec<String> = Vec::new();
    let (kind, source) = match m.kind.as_str() {
        "bind" => {
            opts.push("rbind".into());
            (String::from("bind"), m.source.clone())
        }
        "volume" => {
            let src = host
                .volume_sources
                .iter()
                .find(|(t, _)| t == &m.target)
                .map(|(_, s)| s.clone())
                .ok_or_else(|| Error::InvalidArgument(format!("no volume for {}", m.target)))?;
            opts.push("rbind".into());
            ("bind".into(), src)
        }
        "tmpfs" => {
            opts.extend(["nosuid".into(), "nodev".into(), "noexec".into()]);
            if m.tmpfs_size > 0 {
                opts.push(format!("size={}k", (m.tmpfs_size + 1023) / 1024));
            }
            opts.push(format!(
                "mode={:o}",
                if m.tmpfs_mode == 0 { 0o1777 } else { m.tmpfs_mode }
            ));
            ("tmpfs".into(), "tmpfs".into())
        }
        k => {
            return Err(Error::InvalidArgument(format!(
                "invalid mount type {k:?}: bind, volume or tmpfs"
            )))
        }
    };
    for o in &m.options {
        match o.as_str() {
            "rw" | "ro" | "z" | "Z" | "" => {}
            "exec" if kind == "tmpfs" => opts.retain(|x| x != "noexec"),
            "suid" if kind == "tmpfs" => opts.retain(|x| x != "nosuid"),
            "dev" if kind == "tmpfs" => opts.retain(|x| x != "nodev"),
            o if o.starts_with("size=") || o.starts_with("mode=") => {
                let key = &o[..5];
                opts.retain(|x| !x.starts_with(key));
                opts.push(o.to_string());
            }
            o => opts.push(o.to_string()),
        }
    }
    if kind == "bind"
        && !opts
            .iter()
            .any(|o| o.ends_with("private") || o.ends_with("shared") || o.ends_with("slave"))
    {
        opts.push("rprivate".into());
    }
    opts.push(if m.read_only { "ro".into() } else { "rw".into() });
    Ok(json!({"destination": m.target, "type": kind, "source": source, "options": opts}))
}

/// Generates config.json for `rec` run as `ids`.
pub fn generate(rec: &Record, ids: &Ids, host: &Host) -> Result<Value> {
    let o = &rec.options;
    let r = &rec.resolved;
    let mut args = r.args();
    if args.is_empty() {
        return Err(Error::InvalidArgument("no command specified".into()));
    }
    let caps = capabilities(&o.cap_add, &o.cap_drop, o.privileged)?;
    let sec = security_opts(&o.security_opt)?;
    // Environment: PATH (when the image has none), HOSTNAME, TERM with a tty, the image's and
    // the user's (later entries win), HOME from passwd when unset.
    let mut env: Vec<String> = Vec::new();
    let mut set = |kv: String| {
        // Replaced in place, as docker's ReplaceOrAppendEnvValues does.
        let key = kv.split('=').next().unwrap_or("").to_string();
        match env.iter_mut().find(|e| e.split('=').next() == Some(key.as_str())) {
            Some(slot) => *slot = kv,
            None => env.push(kv),
        }
    };
    set(DEFAULT_PATH.to_string());
    set(format!("HOSTNAME={}", r.hostname));
    if o.tty {
        set("TERM=xterm".to_string());
    }
    for e in &r.env {
        set(e.clone());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", ids.home));
    }
    if o.init {
        if let Some(init) = &host.init_binary {
            let _ = init;
            let mut a = vec!["/dray-init".to_string(), "--".to_string()];
            a.append(&mut args);
            args = a;
        }
    }
    let mut rlimits = Vec::new();
    for u in &o.ulimits {
        rlimits.push(json!({"type": rlimit_name(&u.name)?, "soft": u.soft, "hard": u.hard}));
    }
    let mut process = json!({
        "terminal": o.tty,
        "user": {"uid": ids.uid, "gid": ids.gid},
        "args": args,
        "env": env,
        "cwd": if r.working_dir.is_empty() { "/".to_string() } else { r.working_dir.clone() },
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps,
        },
        "noNewPrivileges": sec.no_new_privileges,
        "oomScoreAdj": 0,
    });
    if !ids.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(ids.additional_gids);
    }
    if !rlimits.is_empty() {
        process["rlimits"] = Value::Array(rlimits);
    }
    if let [h, w] = o.console_size[..] {
        if o.tty && h > 0 && w > 0 {
            process["consoleSize"] = json!({"height": h, "width": w});
        }
    }

    let shm_size = if o.shm_size > 0 { o.shm_size } else { 64 * 1024 * 1024 };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if o.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if o.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm_size}")]}),
    ];
    let user_targets: Vec<&str> = o.mounts.iter().map(|m| m.target.as_str()).collect();
    for (dst, src) in [
        ("/etc/resolv.conf", &host.resolv_file),
        ("/etc/hostname", &host.hostname_file),
        ("/etc/hosts", &host.hosts_file),
    ] {
        if !user_targets.contains(&dst) && !src.is_empty() {
            mounts.push(json!({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
        }
    }
    if o.init {
        if let Some(init) = &host.init_binary {
            mounts.push(json!({"destination": "/dray-init", "type": "bind", "source": init, "options": ["rbind", "ro", "rprivate"]}));
        }
    }
    // /dev/shm given by the user replaces the default one.
    if user_targets.contains(&"/dev/shm") {
        mounts.retain(|m| m["destination"] != "/dev/shm");
    }
    for m in &o.mounts {
        mounts.push(user_mount(m, host)?);
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    match (o.network_mode.as_str(), &host.netns) {
        ("host", _) => {}
        // A bridge network's namespace, made and set up by drayd, or another container's.
        (_, Some(path)) => namespaces.push(json!({"type": "network", "path": path})),
        // `none`: a namespace of its own with only loopback.
        (_, None) => namespaces.push(json!({"type": "network"})),
    }
    // docker: a private cgroup namespace on cgroup v2, the host's on v1.
    if host.cgroup_v2 && !o.privileged {
        namespaces.push(json!({"type": "cgroup"}));
    }

    let mut resources = json!({"devices": default_device_rules()});
    if o.privileged {
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }
    if o.memory != 0 || o.memory_swap != 0 {
        if o.memory != 0 && o.memory < MIN_MEMORY {
            return Err(Error::InvalidArgument("Minimum memory limit allowed is 6MB".into()));
        }
        if o.memory_swap > 0 && o.memory > 0 && o.memory_swap < o.memory {
            return Err(Error::InvalidArgument(
                "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
            ));
        }
        if o.memory_swap != 0 && o.memory == 0 {
            return Err(Error::InvalidArgument(
                "You should always set the Memory limit when using Memoryswap limit, see usage".into(),
            ));
        }
        let mut mem = json!({"limit": o.memory});
        if o.memory_swap != 0 {
            mem["swap"] = json!(o.memory_swap);
        }
        resources["memory"] = mem;
    }
    if o.nano_cpus != 0 || o.cpu_shares != 0 {
        let mut cpu = json!({});
        if o.nano_cpus != 0 {
            if o.nano_cpus < 10_000_000 {
                return Err(Error::InvalidArgument(
                    "Range of CPUs is from 0.01 to the number of CPUs available".into(),
                ));
            }
            cpu["period"] = json!(100_000u64);
            cpu["quota"] = json!(o.nano_cpus / 10_000);
        }
        if o.cpu_shares != 0 {
            cpu["shares"] = json!(o.cpu_shares);
        }
        resources["cpu"] = cpu;
    }
    if let Some(p) = o.pids_limit.filter(|p| *p != 0) {
        resources["pids"] = json!({"limit": if p < 0 { -1 } else { p }});
    }
    let mut devices = Vec::new();
    for d in &o.devices {
        let (dev, rule) = host_device(d)?;
        devices.push(dev);
        if let Some(v) = resources["devices"].as_array_mut() {
            v.push(rule);
        }
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": format!("/dray/{}", rec.id),
    });
    if !devices.is_empty() {
        linux["devices"] = Value::Array(devices);
    }
    if !o.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        match &sec.seccomp {
            None => linux["seccomp"] = seccomp::default_profile(&caps, &host.arch),
            Some(Value::Null) => {}
            Some(p) => linux["seccomp"] = p.clone(),
        }
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": o.read_only_rootfs},
        "hostname": r.hostname,
        "mounts": mounts,
        "linux": linux,
        "annotations": {"io.dray.container.name": rec.name},
    }))
}

/// `--device /dev/X[:/dev/Y[:rwm]]`: the host node's type and numbers, and its cgroup rule.
fn host_device(d: &super::record::DeviceOpt) -> Result<(Value, Value)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(&d.path_on_host).map_err(|e| {
        Error::InvalidArgument(format!(
            "error gathering device information while adding custom device {:?}: {e}",
            d.path_on_host
        ))
    })?;
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else {
        return Err(Error::InvalidArgument(format!(
            "{} is not a device node",
            d.path_on_host
        )));
    };
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let target = if d.path_in_container.is_empty() {
        d.path_on_host.clone()
    } else {
        d.path_in_container.clone()
    };
    let perms = if d.cgroup_permissions.is_empty() {
        "rwm".to_string()
    } else {
        d.cgroup_permissions.clone()
    };
    if perms.is_empty() || !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(Error::InvalidArgument(format!(
            "invalid device permissions {perms:?}: r, w and m"
        )));
    }
    Ok((
        json!({"path": target, "type": kind, "major": major, "minor": minor, "fileMode": meta.mode() & 0o7777, "uid": meta.uid(), "gid": meta.gid()}),
        json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": perms}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::record::{Options, Resolved};

    fn host() -> Host {
        Host {
            cgroup_v2: true,
            hostname_file: "/h/hostname".into(),
            hosts_file: "/h/hosts".into(),
            resolv_file: "/h/resolv.conf".into(),
            volume_sources: vec![],
            init_binary: None,
            arch: "x86_64".into(),
            netns: None,
        }
    }

    fn rec(o: Options) -> Record {
        Record {
            id: "abc".into(),
            name: "n".into(),
            resolved: Resolved {
                cmd: vec!["sh".into()],
                hostname: "abc".into(),
                env: vec!["PATH=/bin".into(), "A=1".into()],
                ..Resolved::default()
            },
            options: o,
            ..Record::default()
        }
    }

    fn ids() -> Ids {
        Ids {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            home: "/root".into(),
        }
    }

    #[test]
    fn docker_defaults() {
        let s = generate(&rec(Options::default()), &ids(), &host()).unwrap();
        let caps = s["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(caps.len(), 14);
        assert_eq!(
            s["process"]["env"],
            json!(["PATH=/bin", "HOSTNAME=abc", "A=1", "HOME=/root"])
        );
        assert_eq!(s["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(s["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .contains(&json!("/proc/kcore")));
        let ns: Vec<&str> = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "network", "cgroup"]);
        let dests: Vec<&str> = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert!(dests.contains(&"/dev/shm") && dests.contains(&"/etc/hosts"));
    }

    #[test]
    fn privileged_and_caps() {
        let s = generate(
            &rec(Options {
                privileged: true,
                ..Options::default()
            }),
            &ids(),
            &host(),
        )
        .unwrap();
        assert!(s["linux"].get("seccomp").is_none());
        assert!(s["linux"].get("maskedPaths").is_none());
        let c = capabilities(&["net_admin".into()], &["CHOWN".into()], false).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()) && !c.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(capabilities(&[], &["ALL".into()], false).unwrap().len(), 0);
        assert!(capabilities(&["bogus".into()], &[], false).is_err());
    }

    #[test]
    fn resources_are_validated() {
        let e = generate(
            &rec(Options {
                memory: 1024,
                ..Options::default()
            }),
            &ids(),
            &host(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("Minimum memory limit"));
        let s = generate(
            &rec(Options {
                memory: 64 << 20,
                nano_cpus: 1_500_000_000,
                pids_limit: Some(10),
                ..Options::default()
            }),
            &ids(),
            &host(),
        )
        .unwrap();
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 150_000);
        assert_eq!(s["linux"]["resources"]["pids"]["limit"], 10);
    }

    #[test]
    fn security_opt_forms() {
        assert!(security_opts(&["no-new-privileges".into()]).unwrap().no_new_privileges);
        assert!(
            security_opts(&["no-new-privileges:true".into()])
                .unwrap()
                .no_new_privileges
        );
        assert_eq!(
            security_opts(&["seccomp=unconfined".into()]).unwrap().seccomp,
            Some(Value::Null)
        );
        assert!(security_opts(&["bogus=1".into()]).is_err());
        let p = security_opts(&[
            r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#
                .into(),
        ])
        .unwrap()
        .seccomp
        .unwrap();
        assert_eq!(p["syscalls"][0]["names"], json!(["mkdir"]));
    }

    #[test]
    fn tmpfs_and_bind_mounts() {
        let h = host();
        let t = user_mount(
            &MountOpt {
                kind: "tmpfs".into(),
                target: "/t".into(),
                tmpfs_size: 1 << 20,
                options: vec!["exec".into()],
                ..MountOpt::default()
            },
            &h,
        )
        .unwrap();
        assert_eq!(
            t["options"],
            json!(["nosuid", "nodev", "size=1024k", "mode=1777", "rw"])
        );
        let b = user_mount(
            &MountOpt {
                kind: "bind".into(),
                source: "/src".into(),
                target: "/d".into(),
                read_only: true,
                ..MountOpt::default()
            },
            &h,
        )
        .unwrap();
        assert_eq!(b["options"], json!(["rbind", "rprivate", "ro"]));
    }
}
