//! Containers: the record and its lifecycle, driven through a runtime-v2 shim.
//!
//! - `record`: what is stored (options, what the image resolved to, state);
//! - `spec`: image config + options → OCI spec (docker's defaults); `seccomp`: docker's
//!   default profile; `user`: `--user` through the image's passwd and group;
//! - `io`: the task's FIFOs, drained into the json-file log and to attached clients;
//! - this file: create / start / stop / kill / remove / wait / logs / attach, exits (one
//!   `Task.Wait` per running task, answered when the process ends), restart policies, and
//!   recovery when drayd starts (reconnect to live shims, record exits that happened while
//!   drayd was down, clean up after dead shims).
//!
//! Locking: `Ctr::op` (async) serialises the operations that change a container's task
//! (start, stop, remove, exit handling); `Ctr::rec` (sync) guards the record for short reads
//! and writes and is never held across an await.

pub mod copy;
pub mod inspect;
pub mod io;
pub mod net;
pub mod record;
pub mod seccomp;
pub mod spec;
pub mod stats;
pub mod user;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::error::{Error, IoContext, Result};
use crate::images::Store;
use crate::logs::{self, LogWriter, Rotation};
use crate::shims::{self, Launcher, Shim};
use io::{Fifos, Output, Pumps};
use record::{Options, Record, Resolved, Status};

/// `update`: the resources to change (unset: unchanged).
#[derive(Debug, Clone, Default)]
pub struct ResourceUpdate {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub pids_limit: Option<i64>,
    pub restart_policy: Option<record::RestartPolicy>,
}

/// What `exec` runs.
#[derive(Debug, Clone, Default)]
pub struct ExecConfig {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub working_dir: String,
    pub tty: bool,
    pub stdin: bool,
    pub privileged: bool,
    /// (height, width) of the client's terminal.
    pub console_size: Option<(u32, u32)>,
}

/// A running exec: its output, its stdin, and its exit code when it ends (after its output).
pub struct ExecSession {
    pub exec_id: String,
    pub output: broadcast::Receiver<Output>,
    pub stdin: Option<tokio::net::unix::pipe::Sender>,
    pub exit: tokio::sync::oneshot::Receiver<i64>,
}

/// Output chunks (up to 32 KiB each) kept for an attached client that reads slowly.
const ATTACH_BACKLOG: usize = 128;

/// docker's default stop timeout.
pub const DEFAULT_STOP_TIMEOUT: i64 = 10;

/// What the daemon's configuration says about containers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The runtime (shim) used when a container names none.
    pub default_runtime: String,
    /// The binary `--init` runs as pid 1 (tini).
    pub init_binary: Option<PathBuf>,
}

/// A container in memory.
struct Ctr {
    id: String,
    rec: Mutex<Record>,
    op: tokio::sync::Mutex<()>,
    shim: Mutex<Option<Shim>>,
    /// drayd's writer of the log, for shims that do not write it themselves.
    log: Option<LogWriter>,
    log_path: PathBuf,
    rotation: Rotation,
    attach: broadcast::Sender<Output>,
    stdin: tokio::sync::Mutex<Option<tokio::net::unix::pipe::Sender>>,
    pumps: Arc<Pumps>,
    /// Bumped on every state change; watchers (wait, logs -f) re-read the record.
    changed: watch::Sender<u64>,
}

impl Ctr {
    fn record(&self) -> Record {
        self.rec.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update<T>(&self, f: impl FnOnce(&mut Record) -> T) -> T {
        let mut r = self.rec.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut r)
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    fn shim(&self) -> Option<Shim> {
        self.shim.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The containers service; one per daemon.
pub struct Containers {
    store: Arc<Store>,
    launcher: Launcher,
    settings: Settings,
    /// `<data-root>/containers/<id>`: log, hostname, hosts, resolv.conf.
    data_dir: PathBuf,
    /// `<exec-root>/tasks/<id>`: bundles (config.json, rootfs, FIFOs, the shim's address).
    run_dir: PathBuf,
    table: Mutex<HashMap<String, Arc<Ctr>>>,
    cgroup_v2: bool,
    /// Sends the id of each container removed (for `wait --condition removed`).
    removed: broadcast::Sender<String>,
    /// The volume store (the only owner of volume directories).
    pub volumes: crate::volumes::Volumes,
    /// Networks and the containers' attachments.
    pub networks: Arc<crate::network::Networks>,
}

/// docker's container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `bytes` random bytes in hex (container, exec and anonymous volume names).
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| Error::io("reading /dev/urandom", e))?;
    Ok(hex::encode(buf))
}

/// A docker-like name: `adjective_scientist`.
fn random_name(seed: &str) -> String {
    const LEFT: &[&str] = &[
        "admiring", "bold", "brave", "calm", "clever", "eager", "elated", "focused", "gallant", "happy", "jolly",
        "keen", "kind", "lucid", "modest", "nifty", "quirky", "serene", "sharp", "stoic", "tender", "vibrant",
        "wizardly", "zealous",
    ];
    const RIGHT: &[&str] = &[
        "babbage", "curie", "darwin", "einstein", "fermi", "galileo", "hopper", "hypatia", "kepler", "lovelace",
        "meitner", "newton", "noether", "pasteur", "ritchie", "shannon", "thompson", "torvalds", "turing", "wozniak",
    ];
    let n = u64::from_str_radix(&seed[..12.min(seed.len())], 16).unwrap_or(0);
    format!(
        "{}_{}",
        LEFT[(n % LEFT.len() as u64) as usize],
        RIGHT[((n / 97) % RIGHT.len() as u64) as usize]
    )
}

/// Signal names and numbers as docker's `--signal`/StopSignal take them.
pub fn parse_signal(s: &str) -> Result<i32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Error::InvalidArgument(format!("Invalid signal: {s}")));
    }
    let up = t.to_ascii_uppercase();
    let name = if up.starts_with("SIG") { up } else { format!("SIG{up}") };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| Error::InvalidArgument(format!("Invalid signal: {s}")))
}

fn is_cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The image's exposed ports with `--expose` added ("80" means 80/tcp; ranges expand), in
/// docker's "PORT/PROTO" form, sorted and without duplicates.
fn exposed_ports(image: impl Iterator<Item = String>, expose: &[String]) -> Result<Vec<String>> {
    let mut out: std::collections::BTreeSet<(u16, String)> = std::collections::BTreeSet::new();
    for e in image {
        if let Ok(p) = crate::network::ports::parse_exposed(&e) {
            out.insert(p);
        }
    }
    for e in expose {
        let (range, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let bad = || Error::InvalidArgument(format!("invalid range format for --expose: {e}"));
        let a: u16 = a.parse().map_err(|_| bad())?;
        let b: u16 = b.parse().map_err(|_| bad())?;
        if a == 0 || b < a || !matches!(proto, "tcp" | "udp" | "sctp") {
            return Err(bad());
        }
        for p in a..=b {
            out.insert((p, proto.to_string()));
        }
    }
    Ok(out.into_iter().map(|(p, proto)| format!("{p}/{proto}")).collect())
}

/// docker's exit codes for a process that could not be started.
fn start_error_code(msg: &str) -> i64 {
    let m = msg.to_ascii_lowercase();
    if m.contains("permission denied") {
        126
    } else if m.contains("no such file") || m.contains("not found") {
        127
    } else {
        128
    }
}

impl Containers {
    /// Opens the containers of the data root and recovers their tasks (see the module doc).
    pub async fn open(store: Arc<Store>, launcher: Launcher, settings: Settings) -> Result<Arc<Containers>> {
        let data_dir = store.config.data_root.join("containers");
        let run_dir = store.config.exec_root.join("tasks");
        for d in [&data_dir, &run_dir] {
            std::fs::create_dir_all(d).ctx(|| format!("creating {}", d.display()))?;
        }
        let me = Arc::new(Containers {
            store: store.clone(),
            launcher,
            settings,
            data_dir,
            run_dir,
            table: Mutex::new(HashMap::new()),
            cgroup_v2: is_cgroup_v2(),
            removed: broadcast::channel(256).0,
            volumes: {
                let v = crate::volumes::Volumes::open(&store.config.data_root.join("volumes"), store.meta.clone())?;
                v.recover()?;
                v
            },
            networks: Arc::new(crate::network::Networks::open(
                store.meta.clone(),
                &store.config.data_root,
                &store.config.exec_root,
                store.config.network.clone(),
            )?),
        });
        let records = store.meta.run(|m| m.containers()).await?;
        for json in records {
            let rec: Record = match serde_json::from_str(&json) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("unreadable container record: {e}");
                    continue;
                }
            };
            let c = me.load(rec)?;
            me.table_lock().insert(c.id.clone(), c);
        }
        let all: Vec<Arc<Ctr>> = me.table_lock().values().cloned().collect();
        for c in all {
            let me2 = me.clone();
            me2.recover(c).await;
        }
        // Attachments in the CNI cache of containers that no longer have a network (removed
        // while drayd died half-way through a teardown).
        let live: std::collections::HashSet<String> = me
            .table_lock()
            .values()
            .filter(|c| !c.record().state.network.netns.is_empty())
            .map(|c| c.id.clone())
            .collect();
        me.networks.sweep(&|id| live.contains(id)).await;
        Ok(me)
    }

    /// The daemon's event bus.
    pub fn events(&self) -> &crate::events::Bus {
        &self.store.events
    }

    /// Publishes a container event with docker's attributes (image, name, labels).
    fn event(&self, rec: &Record, action: &str, extra: &[(&str, &str)]) {
        let mut attrs: Vec<(&str, &str)> = vec![("image", rec.image.as_str()), ("name", rec.name.as_str())];
        attrs.extend(rec.resolved.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        attrs.extend_from_slice(extra);
        self.store.events.publish("container", action, &rec.id, &attrs);
    }

    /// Follows the shims' own events: an OOM kill is recorded and published.
    pub fn watch_shim_events(self: &Arc<Self>, mut rx: broadcast::Receiver<crate::shims::events::ShimEvent>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(crate::shims::events::ShimEvent::Oom { container_id }) => {
                        if let Ok(c) = me.find(&container_id) {
                            let rec = c.update(|r| {
                                r.state.oom_killed = true;
                                r.clone()
                            });
                            let _ = me.persist(&c).await;
                            me.event(&rec, "oom", &[]);
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    fn table_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Ctr>>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load(&self, rec: Record) -> Result<Arc<Ctr>> {
        let rotation = Rotation::from_opts(rec.options.log_opts.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(Error::InvalidArgument)?;
        let log_path = self.log_path(&rec.id);
        let log = if rec.resolved.shim_writes_log {
            None
        } else {
            Some(LogWriter::open(&log_path, rotation)?)
        };
        Ok(Arc::new(Ctr {
            id: rec.id.clone(),
            rec: Mutex::new(rec),
            op: tokio::sync::Mutex::new(()),
            shim: Mutex::new(None),
            log,
            log_path,
            rotation,
            // Chunks for attached clients: a slow one lags (and skips) rather than holding
            // memory; every slot is allocated up front, so the ring stays small.
            attach: broadcast::channel(ATTACH_BACKLOG).0,
            stdin: tokio::sync::Mutex::new(None),
            pumps: Arc::new(Pumps::default()),
            changed: watch::channel(0).0,
        }))
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.data_dir.join(id).join(format!("{id}-json.log"))
    }

    fn bundle(&self, id: &str) -> PathBuf {
        self.run_dir.join(id)
    }

    async fn persist(&self, c: &Ctr) -> Result<()> {
        let rec = c.record();
        let json = serde_json::to_string(&rec).map_err(|e| Error::io("encoding a record", std::io::Error::other(e)))?;
        self.store
            .meta
            .run(move |m| m.update_container(&rec.id, &rec.name, &json))
            .await
    }

    /// Finds a container by id, name or unique id prefix (docker's lookup order).
    fn find(&self, key: &str) -> Result<Arc<Ctr>> {
        let key = key.strip_prefix('/').unwrap_or(key);
        let t = self.table_lock();
        if let Some(c) = t.get(key) {
            return Ok(c.clone());
        }
        if let Some(c) = t.values().find(|c| c.record().name == key) {
            return Ok(c.clone());
        }
        let hits: Vec<&Arc<Ctr>> = t
            .values()
            .filter(|c| !key.is_empty() && c.id.starts_with(key))
            .collect();
        match hits.len() {
            1 => Ok(hits[0].clone()),
            0 => Err(Error::NotFound(format!("No such container: {key}"))),
            _ => Err(Error::InvalidArgument(format!(
                "multiple IDs found with provided prefix: {key}"
            ))),
        }
    }

    /// Every container record.
    pub fn list(&self) -> Vec<Record> {
        let mut v: Vec<Record> = self.table_lock().values().map(|c| c.record()).collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.created));
        v
    }

    /// One record.
    pub fn get(&self, key: &str) -> Result<Record> {
        Ok(self.find(key)?.record())
    }

    /// docker's inspect document.
    pub fn inspect(&self, key: &str, size: bool) -> Result<serde_json::Value> {
        let c = self.find(key)?;
        let rec = c.record();
        let size = size.then(|| self.size_rw(&rec));
        let mut doc = inspect::document(&rec, &c.log_path.display().to_string(), size);
        let dir = self.data_dir.join(&rec.id);
        for (k, f) in [
            ("ResolvConfPath", "resolv.conf"),
            ("HostnamePath", "hostname"),
            ("HostsPath", "hosts"),
        ] {
            doc[k] = serde_json::Value::String(dir.join(f).display().to_string());
        }
        doc["Driver"] = serde_json::Value::String(self.store.snapshots.name().to_string());
        if let Some(ms) = doc["Mounts"].as_array_mut() {
            for m in ms.iter_mut().filter(|m| m["Type"] == "volume") {
                let name = m["Source"].as_str().unwrap_or("").to_string();
                m["Name"] = serde_json::Value::String(name.clone());
                m["Source"] = serde_json::Value::String(self.volumes.mountpoint(&name));
                m["Driver"] = serde_json::Value::String("local".into());
            }
        }
        Ok(doc)
    }

    /// The log file of a container.
    pub fn log_file(&self, key: &str) -> Result<PathBuf> {
        Ok(self.find(key)?.log_path.clone())
    }

    /// Bytes in the container's read-write layer (docker's SizeRw).
    pub fn size_rw(&self, rec: &Record) -> i64 {
        self.store
            .snapshots
            .stat(&rec.snapshot_key)
            .map(|s| du(&self.store.snapshots.fs_dir(&s)))
            .unwrap_or(0)
    }

    // ---- create ----

    /// `create`: resolves the image and options, reserves the name, prepares the read-write
    /// snapshot and the container's files. Nothing runs yet.
    pub async fn create(self: &Arc<Self>, name: Option<String>, opts: Options) -> Result<(String, Vec<String>)> {
        let me = self.clone();
        let c = tokio::task::spawn_blocking(move || me.create_blocking(name, opts))
            .await
            .map_err(|e| Error::io("create", std::io::Error::other(e.to_string())))??;
        let id = c.id.clone();
        let rec = c.record();
        self.table_lock().insert(id.clone(), c);
        self.event(&rec, "create", &[]);
        Ok((id, Vec::new()))
    }

    fn resolve(&self, id: &str, opts: &Options) -> Result<(crate::images::Image, Resolved)> {
        let img = self.store.resolve(&opts.image)?;
        let cfg_blob = self.store.content.read(&img.record.id)?;
        let cfg = crate::images::types::parse_config(&cfg_blob)?;
        let ic = cfg.config.unwrap_or_default();
        let (entrypoint, cmd) = match &opts.entrypoint {
            Some(e) => (e.clone(), opts.cmd.clone()),
            None if !opts.cmd.is_empty() => (ic.entrypoint.clone().unwrap_or_default(), opts.cmd.clone()),
            None => (
                ic.entrypoint.clone().unwrap_or_default(),
                ic.cmd.clone().unwrap_or_default(),
            ),
        };
        let mut env: Vec<String> = ic.env.clone().unwrap_or_default();
        for e in &opts.env {
            let key = e.split('=').next().unwrap_or("");
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        let working_dir = if opts.working_dir.is_empty() {
            ic.working_dir.clone()
        } else {
            opts.working_dir.clone()
        };
        if !working_dir.is_empty() && !working_dir.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "the working directory '{working_dir}' is invalid, it needs to be an absolute path"
            )));
        }
        let mut labels = ic.labels.clone().unwrap_or_default();
        labels.extend(opts.labels.clone());
        let stop_signal = [opts.stop_signal.as_str(), ic.stop_signal.as_str()]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or("SIGTERM")
            .to_string();
        parse_signal(&stop_signal)?;
        let runtime = if opts.runtime.is_empty() {
            self.settings.default_runtime.clone()
        } else {
            opts.runtime.clone()
        };
        let shim = shims::shim_binary(&runtime)?;
        let resolved = Resolved {
            entrypoint,
            cmd,
            env,
            working_dir,
            user: if opts.user.is_empty() {
                ic.user.clone()
            } else {
                opts.user.clone()
            },
            hostname: if opts.hostname.is_empty() {
                id[..12].to_string()
            } else {
                opts.hostname.clone()
            },
            labels,
            stop_signal,
            stop_timeout: opts.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
            exposed_ports: exposed_ports(ic.exposed_ports.clone().unwrap_or_default().into_keys(), &opts.expose)?,
            volumes: ic.volumes.clone().unwrap_or_default().into_keys().collect(),
            shim_writes_log: shim.file_name().is_some_and(|n| n == "containerd-shim-dray-v2"),
            shim: shim.display().to_string(),
            runtime,
        };
        Ok((img, resolved))
    }

    fn validate(&self, opts: &Options, resolved: &Resolved) -> Result<()> {
        opts.restart_policy.validate()?;
        if opts.auto_remove && !opts.restart_policy.is_none() {
            return Err(Error::InvalidArgument("Conflicting options: --restart and --rm".into()));
        }
        if !(opts.log_driver.is_empty() || opts.log_driver == "json-file") {
            return Err(Error::Unsupported(format!(
                "logging driver {:?} is not supported: drayd writes json-file logs",
                opts.log_driver
            )));
        }
        Rotation::from_opts(opts.log_opts.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(Error::InvalidArgument)?;
        if resolved.args().is_empty() {
            return Err(Error::InvalidArgument("No command specified".into()));
        }
        for m in &opts.mounts {
            if !m.target.starts_with('/') {
                return Err(Error::InvalidArgument(format!(
                    "invalid mount target {:?}: it must be an absolute path",
                    m.target
                )));
            }
            match m.kind.as_str() {
                "bind" => {
                    if !m.source.starts_with('/') {
                        return Err(Error::InvalidArgument(format!(
                            "invalid mount source {:?}: a bind mount's source must be an absolute path",
                            m.source
                        )));
                    }
                    if !m.create_source && !Path::new(&m.source).exists() {
                        return Err(Error::InvalidArgument(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {}",
                            m.source
                        )));
                    }
                }
                "tmpfs" => {}
                "volume" => {
                    if !m.source.is_empty() && !crate::volumes::valid_name(&m.source) {
                        return Err(Error::InvalidArgument(format!(
                            "create {0}: \"{0}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path",
                            m.source
                        )));
                    }
                }
                k => return Err(Error::InvalidArgument(format!("invalid mount type {k:?}"))),
            }
        }
        // The spec generator's own checks (capabilities, resources, security options,
        // devices), before anything is made.
        let probe = Record {
            id: "0".repeat(64),
            options: opts.clone(),
            resolved: resolved.clone(),
            ..Record::default()
        };
        let ids = user::Ids {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            home: "/".into(),
        };
        spec::generate(&probe, &ids, &self.spec_host(&probe))?;
        Ok(())
    }

    fn spec_host(&self, rec: &Record) -> spec::Host {
        let dir = self.data_dir.join(&rec.id);
        spec::Host {
            cgroup_v2: self.cgroup_v2,
            hostname_file: dir.join("hostname").display().to_string(),
            hosts_file: dir.join("hosts").display().to_string(),
            resolv_file: dir.join("resolv.conf").display().to_string(),
            volume_sources: rec
                .options
                .mounts
                .iter()
                .filter(|m| m.kind == "volume")
                .map(|m| (m.target.clone(), self.volumes.mountpoint(&m.source)))
                .collect(),
            init_binary: self.settings.init_binary.as_ref().map(|p| p.display().to_string()),
            arch: std::env::consts::ARCH.to_string(),
            netns: self.netns_to_join(rec),
        }
    }

    fn create_blocking(&self, name: Option<String>, opts: Options) -> Result<Arc<Ctr>> {
        if let Some(n) = &name {
            if !valid_name(n.strip_prefix('/').unwrap_or(n)) {
                return Err(Error::InvalidArgument(format!(
                    "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
        }
        if opts.init && self.settings.init_binary.is_none() {
            return Err(Error::Unsupported(
                "--init needs tini (Debian's tini package) on drayd's PATH, or init-path in the config".into(),
            ));
        }
        let id = random_hex(32)?;
        let (img, resolved) = self.resolve(&id, &opts)?;
        self.validate(&opts, &resolved)?;
        self.network_mode(&opts)?;
        let mut opts = opts;
        // The image's VOLUMEs not covered by the user's mounts get anonymous volumes; every
        // anonymous volume gets its name now (docker: 64 hex digits).
        for v in &resolved.volumes {
            let target = format!("/{}", v.trim_matches('/'));
            if !opts.mounts.iter().any(|m| m.target.trim_end_matches('/') == target) {
                opts.mounts.push(record::MountOpt {
                    kind: "volume".into(),
                    target,
                    ..record::MountOpt::default()
                });
            }
        }
        let mut anonymous = Vec::new();
        for m in opts.mounts.iter_mut().filter(|m| m.kind == "volume") {
            if m.source.is_empty() {
                m.source = random_hex(32)?;
                anonymous.push(m.source.clone());
            }
        }
        let top = img
            .record
            .layers
            .last()
            .map(|l| l.chain_id.to_string())
            .ok_or_else(|| Error::BadContent(format!("image {} has no layers", opts.image)))?;
        let snapshot_key = format!("container-{id}");
        let named = name.is_some();
        let mut name = name
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_else(|| random_name(&id));
        let mut rec = Record {
            id: id.clone(),
            name: name.clone(),
            created: crate::meta::now_nanos(),
            image: opts.image.clone(),
            image_id: img.record.id.to_string(),
            options: opts,
            resolved,
            snapshot_key: snapshot_key.clone(),
            state: record::State::default(),
        };
        // The record is stored first (it is the GC root of the snapshot), under the GC gate
        // so that the collector cannot take the image's layers in between.
        let _gate = self.store.gc_gate.read().unwrap_or_else(|p| p.into_inner());
        for attempt in 0.. {
            let json =
                serde_json::to_string(&rec).map_err(|e| Error::io("encoding a record", std::io::Error::other(e)))?;
            match self.store.meta.insert_container(&id, &name, &snapshot_key, &json) {
                Ok(()) => break,
                Err(Error::AlreadyExists(_)) if !named && attempt < 20 => {
                    name = format!("{}{}", random_name(&id), attempt + 2);
                    rec.name = name.clone();
                }
                Err(e) => return Err(e),
            }
        }
        let mut new_volumes: Vec<String> = Vec::new();
        let made = (|| -> Result<()> {
            self.store.snapshots.prepare(&snapshot_key, Some(&top))?;
            let mut copy = Vec::new();
            for m in rec.options.mounts.iter().filter(|m| m.kind == "volume") {
                let anon = anonymous.contains(&m.source);
                let (_, new) = self.volumes.create(&m.source, Default::default(), anon)?;
                if new {
                    self.events()
                        .publish("volume", "create", &m.source, &[("driver", "local")]);
                    new_volumes.push(m.source.clone());
                    copy.push((m.source.clone(), m.target.clone()));
                }
            }
            if !copy.is_empty() {
                self.copy_up(&top, &copy)?;
            }
            self.store
                .snapshots
                .ensure_dir(&snapshot_key, &rec.resolved.working_dir)?;
            let dir = self.data_dir.join(&id);
            std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
            let host_net = rec.options.network_mode == "host";
            let hostname = if host_net {
                nix::sys::utsname::uname()
                    .map(|u| u.nodename().to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                rec.resolved.hostname.clone()
            };
            std::fs::write(dir.join("hostname"), format!("{hostname}\n")).ctx(|| "writing hostname".to_string())?;
            // What the container sees until it starts (each start writes them again).
            let (hosts, resolv) = net::default_files(&rec, host_net);
            std::fs::write(dir.join("hosts"), hosts).ctx(|| "writing hosts".to_string())?;
            std::fs::write(dir.join("resolv.conf"), resolv).ctx(|| "writing resolv.conf".to_string())?;
            Ok(())
        })();
        drop(_gate);
        if let Err(e) = made {
            for v in &new_volumes {
                let _ = self.volumes.remove(v);
            }
            let _ = self.store.snapshots.remove(&snapshot_key);
            let _ = std::fs::remove_dir_all(self.data_dir.join(&id));
            let _ = self.store.meta.remove_container(&id);
            return Err(e);
        }
        match self.load(rec) {
            Ok(c) => Ok(c),
            Err(e) => {
                let _ = self.store.snapshots.remove(&snapshot_key);
                let _ = std::fs::remove_dir_all(self.data_dir.join(&id));
                let _ = self.store.meta.remove_container(&id);
                Err(e)
            }
        }
    }

    /// docker's copy-up: the image's content at each new volume's mount point is copied
    /// into the volume, from a read-only view of the image mounted for the copy.
    fn copy_up(&self, top: &str, items: &[(String, String)]) -> Result<()> {
        use std::os::fd::AsFd;
        let mnt = self.run_dir.join(format!("copyup-{}", random_hex(8)?));
        std::fs::create_dir_all(&mnt).ctx(|| format!("creating {}", mnt.display()))?;
        let mounted = (|| -> Result<()> {
            let ms = self.store.snapshots.mounts(top)?;
            let m = ms
                .first()
                .ok_or_else(|| Error::BadContent("the image has no layers".into()))?;
            let (src, fstype, flags, data) = if m.kind == "overlay" {
                (
                    Some("overlay"),
                    Some("overlay"),
                    nix::mount::MsFlags::MS_RDONLY,
                    Some(m.options.join(",")),
                )
            } else {
                (
                    Some(m.source.as_str()),
                    None,
                    nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
                    None,
                )
            };
            nix::mount::mount(src, &mnt, fstype, flags, data.as_deref())
                .map_err(|e| Error::io(format!("mounting the image at {}", mnt.display()), e.into()))
        })();
        if let Err(e) = mounted {
            let _ = std::fs::remove_dir(&mnt);
            return Err(e);
        }
        let copied = (|| -> Result<()> {
            let root = std::fs::File::open(&mnt).ctx(|| format!("opening {}", mnt.display()))?;
            for (name, target) in items {
                let rel = target.trim_start_matches('/');
                let c = dray_archive::sys::cstr(std::ffi::OsStr::new(rel)).map_err(|e| Error::io("path", e))?;
                // Beneath the image's root, no symlink followed: nothing outside is copied.
                let dir = match dray_archive::sys::open_beneath(root.as_fd(), &c, libc::O_RDONLY | libc::O_DIRECTORY) {
                    Ok(fd) => std::fs::File::from(fd),
                    Err(_) => continue,
                };
                let dst = self.volumes.data_dir(name);
                let empty = std::fs::read_dir(&dst).map(|mut d| d.next().is_none()).unwrap_or(false);
                if empty {
                    crate::volumes::copy_up(&dir, &dst)?;
                }
            }
            Ok(())
        })();
        let _ = nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&mnt);
        copied
    }

    // ---- volumes ----

    /// The containers that use volume `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.table_lock()
            .values()
            .filter(|c| {
                c.record()
                    .options
                    .mounts
                    .iter()
                    .any(|m| m.kind == "volume" && m.source == name)
            })
            .map(|c| c.id.clone())
            .collect()
    }

    /// `volume rm`: refused while a container uses it.
    pub fn volume_remove(&self, name: &str) -> Result<()> {
        let users = self.volume_users(name);
        if !users.is_empty() {
            return Err(Error::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        self.volumes.remove(name)?;
        self.store
            .events
            .publish("volume", "destroy", name, &[("driver", "local")]);
        Ok(())
    }

    /// `volume prune`: every volume no container uses (that `keep` does not keep); returns
    /// the names and the bytes freed.
    pub fn volume_prune(&self, keep: impl Fn(&crate::volumes::Volume) -> bool) -> Result<(Vec<String>, i64)> {
        let mut deleted = Vec::new();
        let mut bytes = 0;
        for v in self.volumes.list()? {
            if keep(&v) || !self.volume_users(&v.name).is_empty() {
                continue;
            }
            let size = self.volumes.size(&v.name);
            if self.volume_remove(&v.name).is_ok() {
                bytes += size;
                deleted.push(v.name);
            }
        }
        Ok((deleted, bytes))
    }

    // ---- start ----

    /// `start`: runs the container's task. Starting a running container does nothing.
    pub async fn start(self: &Arc<Self>, key: &str) -> Result<()> {
        let c = self.find(key)?;
        let _op = c.op.lock().await;
        let st = c.record().state.status;
        match st {
            Status::Running => return Ok(()),
            Status::Paused => {
                return Err(Error::Conflict(
                    "cannot start a paused container, try unpause instead".to_string(),
                ))
            }
            Status::Removing | Status::Dead => {
                return Err(Error::Conflict(format!(
                    "container {} is marked for removal and cannot be started",
                    c.id
                )))
            }
            _ => {}
        }
        c.update(|r| {
            r.state.manually_stopped = false;
        });
        self.start_task(&c).await
    }

    async fn start_task(self: &Arc<Self>, c: &Arc<Ctr>) -> Result<()> {
        let started = match self.setup_network(c).await {
            Ok(()) => self.try_start_task(c).await,
            Err(e) => Err(e),
        };
        match started {
            Ok(()) => Ok(()),
            Err(e) => {
                // The task is gone (or never was): its network goes too.
                self.teardown_network(c).await;
                let msg = e.to_string();
                c.update(|r| {
                    r.state.error = msg.clone();
                    r.state.exit_code = start_error_code(&msg);
                    if r.state.status == Status::Restarting || r.state.status == Status::Running {
                        r.state.status = Status::Exited;
                    }
                    r.state.pid = 0;
                });
                let _ = self.persist(c).await;
                c.notify();
                Err(e)
            }
        }
    }

    async fn try_start_task(self: &Arc<Self>, c: &Arc<Ctr>) -> Result<()> {
        let rec = c.record();
        let bundle = self.bundle(&rec.id);
        let me = self.clone();
        let rec2 = rec.clone();
        let bundle2 = bundle.clone();
        // Blocking preparation: the bundle, the user's identity, config.json, the FIFOs.
        let (mounts, mut fifos) = tokio::task::spawn_blocking(move || me.prepare_bundle(&rec2, &bundle2))
            .await
            .map_err(|e| Error::io("prepare", std::io::Error::other(e.to_string())))??;
        let cleanup_bundle = |b: &Path| {
            let _ = std::fs::remove_dir_all(b);
        };
        if let Err(e) = fifos.pump(c.log.as_ref(), &c.attach, &c.pumps) {
            fifos.release();
            cleanup_bundle(&bundle);
            return Err(e);
        }
        if let Some(p) = &fifos.stdin {
            match tokio::net::unix::pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(p)
            {
                Ok(s) => *c.stdin.lock().await = Some(s),
                Err(e) => {
                    fifos.release();
                    cleanup_bundle(&bundle);
                    return Err(Error::io("opening stdin", e));
                }
            }
        }
        let shim_bin = PathBuf::from(&rec.resolved.shim);
        let shim = match self.launcher.start(&shim_bin, &rec.id, &bundle).await {
            Ok(s) => s,
            Err(e) => {
                fifos.release();
                *c.stdin.lock().await = None;
                shims::release_shim_log(&bundle);
                cleanup_bundle(&bundle);
                return Err(e);
            }
        };
        let (stdin, mut stdout, mut stderr) = fifos.paths();
        if rec.resolved.shim_writes_log {
            stdout = shims::log_uri(&stdout, &c.log_path, c.rotation.max_size, c.rotation.max_file);
            if !stderr.is_empty() {
                stderr = shims::log_uri(&stderr, &c.log_path, c.rotation.max_size, c.rotation.max_file);
            }
        }
        let stdio = shims::Stdio {
            stdin,
            stdout,
            stderr,
            terminal: rec.options.tty,
        };
        let started = async {
            // The keep-alive writers go once the shim holds the FIFOs: some shims open them
            // at Create, others at Start.
            shim.create(&rec.id, &bundle, &mounts, &stdio).await?;
            shim.start(&rec.id, "").await
        }
        .await;
        fifos.release();
        let pid = match started {
            Ok(pid) => pid,
            Err(e) => {
                let _ = shim.delete(&rec.id, "").await;
                let _ = shim.shutdown(&rec.id).await;
                *c.stdin.lock().await = None;
                c.pumps.wait(Duration::from_secs(2)).await;
                if self.launcher.delete(&shim_bin, &rec.id, &bundle).await.is_err() {
                    tracing::debug!(id = %rec.id, "shim delete after a failed start");
                }
                shims::release_shim_log(&bundle);
                cleanup_bundle(&bundle);
                return Err(e);
            }
        };
        *c.shim.lock().unwrap_or_else(|p| p.into_inner()) = Some(shim.clone());
        c.update(|r| {
            r.state.status = Status::Running;
            r.state.pid = pid;
            r.state.started_at = crate::meta::now_nanos();
            r.state.finished_at = 0;
            r.state.exit_code = 0;
            r.state.error.clear();
            r.state.oom_killed = false;
        });
        self.persist(c).await?;
        c.notify();
        self.event(&c.record(), "start", &[]);
        self.monitor(c.clone(), shim);
        Ok(())
    }

    /// Writes the bundle (config.json, rootfs dir, FIFOs) and returns the rootfs mounts.
    fn prepare_bundle(&self, rec: &Record, bundle: &Path) -> Result<(Vec<shims::RootfsMount>, Fifos)> {
        if bundle.exists() {
            let _ = nix::mount::umount2(&bundle.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
            std::fs::remove_dir_all(bundle).ctx(|| format!("removing {}", bundle.display()))?;
        }
        std::fs::create_dir_all(bundle.join("rootfs")).ctx(|| format!("creating {}", bundle.display()))?;
        let made = (|| {
            let key = &rec.snapshot_key;
            let passwd = self.store.snapshots.read_file(key, "etc/passwd", 4 << 20)?;
            let group = self.store.snapshots.read_file(key, "etc/group", 4 << 20)?;
            let ids = user::resolve(
                &rec.resolved.user,
                passwd.as_deref().map(String::from_utf8_lossy).as_deref(),
                group.as_deref().map(String::from_utf8_lossy).as_deref(),
            )?;
            for m in rec
                .options
                .mounts
                .iter()
                .filter(|m| m.kind == "bind" && m.create_source)
            {
                std::fs::create_dir_all(&m.source).ctx(|| format!("creating bind source {}", m.source))?;
            }
            let spec = spec::generate(rec, &ids, &self.spec_host(rec))?;
            let data = serde_json::to_vec_pretty(&spec)
                .map_err(|e| Error::io("encoding the spec", std::io::Error::other(e)))?;
            std::fs::write(bundle.join("config.json"), data).ctx(|| "writing config.json".to_string())?;
            let mounts = self
                .store
                .snapshots
                .mounts(key)?
                .into_iter()
                .map(|m| shims::RootfsMount {
                    kind: m.kind,
                    source: m.source,
                    options: m.options,
                })
                .collect();
            let fifos = Fifos::create(bundle, "init", rec.options.open_stdin, rec.options.tty)?;
            Ok((mounts, fifos))
        })();
        if made.is_err() {
            let _ = std::fs::remove_dir_all(bundle);
        }
        made
    }

    /// Waits for the task's exit (Task.Wait answers when the process ends) and handles it.
    fn monitor(self: &Arc<Self>, c: Arc<Ctr>, shim: Shim) {
        let me = self.clone();
        tokio::spawn(async move {
            let status = match shim.wait(&c.id, "").await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(id = %c.id, "lost the shim while waiting: {e}");
                    shims::ExitStatus {
                        code: 255,
                        exited_at: crate::meta::now_nanos(),
                    }
                }
            };
            me.on_exit(c, status).await;
        });
    }

    /// Records an exit, removes the task, then applies --rm or the restart policy.
    async fn on_exit(self: Arc<Self>, c: Arc<Ctr>, status: shims::ExitStatus) {
        let op = c.op.lock().await;
        // Every byte the process wrote reaches the log before the exit is recorded.
        if !c.pumps.wait(Duration::from_secs(10)).await {
            tracing::warn!(id = %c.id, "the container's output did not end 10 s after its exit");
        }
        self.delete_task(&c).await;
        let removing = c.update(|r| {
            let removing = r.state.status == Status::Removing;
            if !removing {
                r.state.status = Status::Exited;
            }
            r.state.exit_code = i64::from(status.code);
            r.state.finished_at = status.exited_at;
            r.state.pid = 0;
            removing
        });
        if let Err(e) = self.persist(&c).await {
            tracing::error!(id = %c.id, "recording the exit: {e}");
        }
        c.notify();
        drop(op);
        let code = status.code.to_string();
        self.event(&c.record(), "die", &[("exitCode", code.as_str())]);
        crate::daemon::release_memory();
        if removing {
            return;
        }
        let rec = c.record();
        if rec.options.auto_remove {
            if let Err(e) = self.remove(&c.id, false, true).await {
                tracing::warn!(id = %c.id, "--rm: {e}");
            }
            return;
        }
        self.maybe_restart(c, rec).await;
    }

    /// docker's restart policies: never after a manual stop; on-failure counts; the delay
    /// doubles from 100 ms (up to a minute) and starts over after 10 s of running.
    async fn maybe_restart(self: Arc<Self>, c: Arc<Ctr>, rec: Record) {
        let p = &rec.options.restart_policy;
        let st = &rec.state;
        let want = !st.manually_stopped
            && match p.name.as_str() {
                "always" | "unless-stopped" => true,
                "on-failure" => {
                    st.exit_code != 0
                        && (p.maximum_retry_count == 0 || st.restart_count < i64::from(p.maximum_retry_count))
                }
                _ => false,
            };
        if !want {
            return;
        }
        let ran = (st.finished_at - st.started_at).max(0);
        let delay = if ran > 10_000_000_000 {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(100u64.saturating_mul(1u64 << st.restart_count.clamp(0, 10) as u32))
                .min(Duration::from_secs(60))
        };
        c.update(|r| r.state.status = Status::Restarting);
        let _ = self.persist(&c).await;
        c.notify();
        tokio::time::sleep(delay).await;
        let _op = c.op.lock().await;
        let go = c.update(|r| {
            if r.state.status == Status::Restarting && !r.state.manually_stopped {
                r.state.restart_count += 1;
                true
            } else {
                false
            }
        });
        if !go {
            return;
        }
        if let Err(e) = self.start_task(&c).await {
            tracing::warn!(id = %c.id, "restart failed: {e}");
        }
    }

    /// Task.Delete + Shutdown, then the bundle goes (the shim unmounted the rootfs).
    async fn delete_task(&self, c: &Ctr) {
        let shim = c.shim.lock().unwrap_or_else(|p| p.into_inner()).take();
        *c.stdin.lock().await = None;
        let bundle = self.bundle(&c.id);
        let rec = c.record();
        let deleted = match shim {
            Some(s) => match s.delete(&c.id, "").await {
                Ok(_) => {
                    let _ = s.shutdown(&c.id).await;
                    true
                }
                Err(e) => {
                    tracing::debug!(id = %c.id, "task delete: {e}");
                    false
                }
            },
            None => false,
        };
        if !deleted {
            // The shim is gone (killed, crashed): its `delete` action kills what is left of
            // the container and removes the runtime's state, cgroup and rootfs mount.
            if let Err(e) = self
                .launcher
                .delete(Path::new(&rec.resolved.shim), &c.id, &bundle)
                .await
            {
                tracing::warn!(id = %c.id, "cleaning up after the shim: {e}");
            }
        }
        shims::release_shim_log(&bundle);
        let _ = nix::mount::umount2(&bundle.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&bundle);
        self.teardown_network(c).await;
    }

    /// drayd started: reconnect to the shim of each live container, or record its end.
    async fn recover(self: Arc<Self>, c: Arc<Ctr>) {
        let rec = c.record();
        match rec.state.status {
            Status::Running | Status::Paused => {}
            Status::Restarting => {
                // A start that a killed drayd left half-done is undone first.
                self.teardown_network(&c).await;
                c.update(|r| r.state.status = Status::Exited);
                let _ = self.persist(&c).await;
                tokio::spawn(self.clone().maybe_restart(c.clone(), c.record()));
                return;
            }
            Status::Removing => {
                if let Err(e) = self.remove(&c.id, true, false).await {
                    tracing::warn!(id = %c.id, "finishing a removal: {e}");
                }
                return;
            }
            _ => {
                // A setup that a killed drayd left half-done is undone first.
                self.teardown_network(&c).await;
                // Containers that were running when the host went down come back as their
                // policy says (docker starts always and unless-stopped ones).
                let p = rec.options.restart_policy.name.as_str();
                if (p == "always" || p == "unless-stopped")
                    && !rec.state.manually_stopped
                    && rec.state.started_at > 0
                    && rec.state.finished_at == 0
                {
                    let me = self.clone();
                    tokio::spawn(async move {
                        let _op = c.op.lock().await;
                        if let Err(e) = me.start_task(&c).await {
                            tracing::warn!(id = %c.id, "starting after a restart: {e}");
                        }
                    });
                }
                return;
            }
        }
        let bundle = self.bundle(&c.id);
        let address = std::fs::read_to_string(bundle.join("address")).unwrap_or_default();
        let shim = if address.trim().is_empty() {
            None
        } else {
            Shim::connect(address.trim()).await.ok()
        };
        let alive = match &shim {
            Some(s) => s.state(&c.id, "").await.ok(),
            None => None,
        };
        match (shim, alive) {
            (Some(shim), Some(_)) => {
                // The output pumps start again on the FIFOs the shim still writes.
                match Fifos::reopen(&bundle, "init") {
                    Ok(mut f) => {
                        if let Err(e) = f.pump(c.log.as_ref(), &c.attach, &c.pumps) {
                            tracing::warn!(id = %c.id, "reattaching output: {e}");
                        }
                        if let Some(p) = &f.stdin {
                            if let Ok(s) = tokio::net::unix::pipe::OpenOptions::new()
                                .read_write(true)
                                .open_sender(p)
                            {
                                *c.stdin.lock().await = Some(s);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(id = %c.id, "reopening the FIFOs: {e}"),
                }
                if let Err(e) = shims::follow_shim_log(&bundle, &c.id, false) {
                    tracing::debug!(id = %c.id, "shim log: {e}");
                }
                *c.shim.lock().unwrap_or_else(|p| p.into_inner()) = Some(shim.clone());
                self.restore_network(&c.record());
                tracing::info!(id = %c.id, "reconnected to the container's shim");
                self.monitor(c, shim);
            }
            _ => {
                tracing::warn!(id = %c.id, "the container's shim is gone: recording its exit");
                c.update(|r| r.state.error = "the container's shim died".into());
                self.on_exit(
                    c,
                    shims::ExitStatus {
                        code: 255,
                        exited_at: crate::meta::now_nanos(),
                    },
                )
                .await;
            }
        }
    }

    // ---- stop, kill, pause ----

    /// `stop`: the stop signal, SIGKILL after `timeout` seconds (negative: wait forever).
    pub async fn stop(self: &Arc<Self>, key: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let c = self.find(key)?;
        let rec = c.update(|r| {
            r.state.manually_stopped = true;
            r.clone()
        });
        self.persist(&c).await?;
        if rec.state.status == Status::Restarting {
            c.update(|r| r.state.status = Status::Exited);
            self.persist(&c).await?;
            c.notify();
            return Ok(());
        }
        if !rec.state.status.is_live() {
            return Ok(());
        }
        let sig = parse_signal(signal.filter(|s| !s.is_empty()).unwrap_or(&rec.resolved.stop_signal))?;
        let timeout = timeout.unwrap_or(rec.resolved.stop_timeout);
        let mut rx = c.changed.subscribe();
        if let Some(shim) = c.shim() {
            self.event(&rec, "kill", &[("signal", sig.to_string().as_str())]);
            if let Err(e) = shim.kill(&c.id, "", sig as u32, false).await {
                tracing::debug!(id = %c.id, "stop signal: {e}");
            }
            if rec.state.status == Status::Paused {
                let _ = shim.pause(&c.id, false).await;
            }
        }
        let exited = |c: &Ctr| !c.record().state.status.is_live();
        let wait = async {
            while !exited(&c) {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        let done = if timeout < 0 {
            wait.await;
            true
        } else {
            tokio::time::timeout(Duration::from_secs(timeout as u64), wait)
                .await
                .is_ok()
        };
        if !done {
            if let Some(shim) = c.shim() {
                self.event(&rec, "kill", &[("signal", "9")]);
                let _ = shim.kill(&c.id, "", libc::SIGKILL as u32, true).await;
            }
            let wait = async {
                while !exited(&c) {
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(30), wait).await.is_err() {
                return Err(Error::Remote(format!(
                    "container {} did not exit 30 s after SIGKILL",
                    c.id
                )));
            }
        }
        self.event(&c.record(), "stop", &[]);
        Ok(())
    }

    /// `kill`: a signal to the container's main process.
    pub async fn kill(self: &Arc<Self>, key: &str, signal: &str) -> Result<()> {
        let c = self.find(key)?;
        let sig = parse_signal(if signal.is_empty() { "SIGKILL" } else { signal })?;
        let rec = c.record();
        if !rec.state.status.is_live() {
            return Err(Error::Conflict(format!(
                "Cannot kill container: {}: Container {} is not running",
                key, rec.id
            )));
        }
        if sig == libc::SIGKILL || parse_signal(&rec.resolved.stop_signal).ok() == Some(sig) {
            c.update(|r| r.state.manually_stopped = true);
            self.persist(&c).await?;
        }
        let shim = c
            .shim()
            .ok_or_else(|| Error::Conflict(format!("Container {} is not running", rec.id)))?;
        shim.kill(&c.id, "", sig as u32, false).await
    }

    /// `pause` / `unpause`.
    pub async fn pause(self: &Arc<Self>, key: &str, pause: bool) -> Result<()> {
        let c = self.find(key)?;
        let _op = c.op.lock().await;
        let st = c.record().state.status;
        match (pause, st) {
            (true, Status::Running) | (false, Status::Paused) => {}
            (true, Status::Paused) => return Err(Error::Conflict(format!("Container {} is already paused", c.id))),
            (false, _) => return Err(Error::Conflict(format!("Container {} is not paused", c.id))),
            (true, _) => return Err(Error::Conflict(format!("Container {} is not running", c.id))),
        }
        let shim = c
            .shim()
            .ok_or_else(|| Error::Conflict(format!("Container {} is not running", c.id)))?;
        shim.pause(&c.id, pause).await?;
        c.update(|r| r.state.status = if pause { Status::Paused } else { Status::Running });
        self.persist(&c).await?;
        c.notify();
        self.event(&c.record(), if pause { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    // ---- remove, rename ----

    /// `rm`: a live container only with `force` (killed first); `volumes` also removes its
    /// anonymous volumes that no other container uses (`rm -v`, and `--rm`).
    pub async fn remove(self: &Arc<Self>, key: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.find(key)?;
        let rec = c.record();
        if rec.state.status.is_live() || rec.state.status == Status::Restarting {
            if !force {
                let what = if rec.state.status == Status::Paused {
                    "paused"
                } else {
                    "running"
                };
                return Err(Error::Conflict(format!(
                    "You cannot remove a {what} container {}. Stop the container before attempting removal or force remove",
                    rec.id
                )));
            }
            c.update(|r| {
                r.state.manually_stopped = true;
                r.state.status = if r.state.status == Status::Restarting {
                    Status::Exited
                } else {
                    r.state.status
                };
            });
            let mut rx = c.changed.subscribe();
            if let Some(shim) = c.shim() {
                let _ = shim.kill(&c.id, "", libc::SIGKILL as u32, true).await;
                if rec.state.status == Status::Paused {
                    let _ = shim.pause(&c.id, false).await;
                }
            }
            let wait = async {
                while c.record().state.status.is_live() {
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(30), wait).await.is_err() {
                return Err(Error::Remote(format!("could not kill container {}", c.id)));
            }
        }
        let _op = c.op.lock().await;
        if !self.table_lock().contains_key(&c.id) {
            return Ok(());
        }
        c.update(|r| r.state.status = Status::Removing);
        let _ = self.persist(&c).await;
        let me = self.clone();
        let c2 = c.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            match me.store.snapshots.remove(&c2.record().snapshot_key) {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            let dir = me.data_dir.join(&c2.id);
            crate::snapshots::remove_tree(&dir)?;
            let _ = std::fs::remove_dir_all(me.bundle(&c2.id));
            me.store.meta.remove_container(&c2.id)
        })
        .await
        .map_err(|e| Error::io("remove", std::io::Error::other(e.to_string())))??;
        self.table_lock().remove(&c.id);
        c.update(|r| r.state.status = Status::Dead);
        c.notify();
        let _ = self.removed.send(c.id.clone());
        self.event(&rec, "destroy", &[]);
        // A removal ends a burst of work (bundle, spec, pumps): heap pages go back.
        crate::daemon::release_memory();
        if volumes {
            for m in rec.options.mounts.iter().filter(|m| m.kind == "volume") {
                let anonymous = self.volumes.get(&m.source).ok().flatten().is_some_and(|v| v.anonymous);
                if anonymous && self.volume_users(&m.source).is_empty() {
                    match self.volumes.remove(&m.source) {
                        Ok(()) => self
                            .events()
                            .publish("volume", "destroy", &m.source, &[("driver", "local")]),
                        Err(e) => tracing::warn!(volume = %m.source, "removing an anonymous volume: {e}"),
                    }
                }
            }
        }
        Ok(())
    }

    /// `rename`.
    pub async fn rename(self: &Arc<Self>, key: &str, new_name: &str) -> Result<()> {
        let c = self.find(key)?;
        let n = new_name.trim_start_matches('/');
        if !valid_name(n) {
            return Err(Error::InvalidArgument(format!(
                "Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let old = c.record().name;
        if old == n {
            return Err(Error::InvalidArgument(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        c.update(|r| r.name = n.to_string());
        if let Err(e) = self.persist(&c).await {
            c.update(|r| r.name = old);
            return Err(e);
        }
        // Its new name answers in DNS at once (restore_network registers every endpoint's
        // names again; the ports it holds stay held).
        let rec = c.record();
        for ep in &rec.state.network.endpoints {
            if let Ok(net) = self.networks.get(&ep.network_id) {
                if let Err(e) = self.register_names(&rec, ep, &net) {
                    tracing::warn!(id = %rec.id, "DNS names after a rename: {e}");
                }
            }
        }
        self.event(&rec, "rename", &[("oldName", format!("/{old}").as_str())]);
        Ok(())
    }

    // ---- wait, logs, attach ----

    /// `wait`: "not-running" (default), "next-exit" or "removed"; returns the exit code.
    pub async fn wait(self: &Arc<Self>, key: &str, condition: &str) -> Result<i64> {
        let c = self.find(key)?;
        let mut rx = c.changed.subscribe();
        let mut removed = self.removed.subscribe();
        match condition {
            "" | "not-running" => loop {
                let st = c.record().state;
                if !st.status.is_live() && st.status != Status::Restarting && st.status != Status::Removing {
                    return Ok(st.exit_code);
                }
                if rx.changed().await.is_err() {
                    return Ok(c.record().state.exit_code);
                }
            },
            "next-exit" => {
                let start = c.record().state.finished_at;
                loop {
                    if rx.changed().await.is_err() {
                        return Ok(c.record().state.exit_code);
                    }
                    let st = c.record().state;
                    if st.finished_at != start && !st.status.is_live() {
                        return Ok(st.exit_code);
                    }
                }
            }
            "removed" => loop {
                if !self.table_lock().contains_key(&c.id) {
                    return Ok(c.record().state.exit_code);
                }
                tokio::select! {
                    r = removed.recv() => {
                        if matches!(r, Ok(ref id) if *id == c.id) || r.is_err() {
                            continue;
                        }
                    }
                    _ = rx.changed() => {}
                }
            },
            other => Err(Error::InvalidArgument(format!(
                "invalid condition: {other:?}: not-running, next-exit or removed"
            ))),
        }
    }

    /// `logs`: the entries that pass `filter`, then (with `follow`) new ones until the
    /// container stops.
    pub fn logs(
        self: &Arc<Self>,
        key: &str,
        filter: logs::Filter,
        follow: bool,
    ) -> Result<tokio::sync::mpsc::Receiver<logs::Entry>> {
        let c = self.find(key)?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (path, max_file) = (c.log_path.clone(), c.rotation.max_file);
        let s2 = stopped.clone();
        std::thread::Builder::new()
            .name("logs".into())
            .stack_size(256 * 1024)
            .spawn(move || logs::follow(path, max_file, filter, follow, s2, tx))
            .map_err(|e| Error::io("starting a log reader", e))?;
        if follow {
            // The follower ends once the container stops (after what its output left).
            tokio::spawn(async move {
                let mut changed = c.changed.subscribe();
                loop {
                    let st = c.record().state.status;
                    if !(st.is_live() || st == Status::Restarting) {
                        break;
                    }
                    if changed.changed().await.is_err() {
                        break;
                    }
                }
                stopped.store(true, std::sync::atomic::Ordering::SeqCst);
            });
        }
        Ok(rx)
    }

    /// Attaches to a container's live output; returns the output receiver and whether the
    /// container takes stdin.
    pub fn attach_output(&self, key: &str) -> Result<(String, broadcast::Receiver<Output>, watch::Receiver<u64>)> {
        let c = self.find(key)?;
        Ok((c.id.clone(), c.attach.subscribe(), c.changed.subscribe()))
    }

    /// True while the container runs (or restarts).
    pub fn is_running(&self, key: &str) -> bool {
        self.find(key)
            .map(|c| {
                let s = c.record().state.status;
                s.is_live() || s == Status::Restarting
            })
            .unwrap_or(false)
    }

    /// Writes to the container's stdin (`None`: close it).
    pub async fn write_stdin(&self, key: &str, data: Option<&[u8]>) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let c = self.find(key)?;
        let mut g = c.stdin.lock().await;
        match data {
            Some(d) => {
                let Some(s) = g.as_mut() else {
                    return Err(Error::Conflict(format!(
                        "container {} does not take stdin (run it with -i)",
                        c.id
                    )));
                };
                s.write_all(d).await.map_err(|e| Error::io("writing to stdin", e))
            }
            None => {
                *g = None;
                if let Some(shim) = c.shim() {
                    shim.close_stdin(&c.id, "").await?;
                }
                Ok(())
            }
        }
    }

    /// `resize`: the container's terminal size.
    pub async fn resize(&self, key: &str, width: u32, height: u32) -> Result<()> {
        let c = self.find(key)?;
        let shim = c
            .shim()
            .ok_or_else(|| Error::Conflict(format!("Container {} is not running", c.id)))?;
        shim.resize_pty(&c.id, "", width, height).await
    }

    /// `update`: new limits, checked as at create, applied to the running task through
    /// Task.Update (the cgroup only: device rules are not touched) and kept in the record.
    pub async fn update(self: &Arc<Self>, key: &str, u: ResourceUpdate) -> Result<()> {
        let c = self.find(key)?;
        let _op = c.op.lock().await;
        let mut rec = c.record();
        let o = &mut rec.options;
        if let Some(v) = u.memory {
            o.memory = v;
        }
        if let Some(v) = u.memory_swap {
            o.memory_swap = v;
        }
        if let Some(v) = u.nano_cpus {
            o.nano_cpus = v;
        }
        if let Some(v) = u.cpu_shares {
            o.cpu_shares = v;
        }
        if let Some(v) = u.pids_limit {
            o.pids_limit = Some(v);
        }
        if let Some(p) = u.restart_policy.filter(|p| !p.name.is_empty()) {
            p.validate()?;
            if o.auto_remove && !p.is_none() {
                return Err(Error::InvalidArgument(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container".into(),
                ));
            }
            o.restart_policy = p;
        }
        let ids = user::Ids {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            home: "/".into(),
        };
        let spec = spec::generate(&rec, &ids, &self.spec_host(&rec))?;
        let mut resources = spec["linux"]["resources"].clone();
        if let Some(r) = resources.as_object_mut() {
            r.remove("devices");
        }
        if rec.state.status.is_live() {
            let shim = c
                .shim()
                .ok_or_else(|| Error::Conflict(format!("Container {} is not running", c.id)))?;
            let data = serde_json::to_vec(&resources)
                .map_err(|e| Error::io("encoding resources", std::io::Error::other(e)))?;
            shim.update(&c.id, &data).await?;
        }
        c.update(|r| r.options = rec.options.clone());
        self.persist(&c).await?;
        self.event(&c.record(), "update", &[]);
        Ok(())
    }

    /// Runs `f` on a read-only view of the container's whole file system: for overlay, a
    /// private overlay mount whose lowest layers are the image's and whose top is the
    /// container's writable layer (read as a lower layer, so nothing is written).
    fn with_view<T>(&self, rec: &Record, f: impl FnOnce(&std::fs::File) -> Result<T>) -> Result<T> {
        let ms = self.store.snapshots.mounts(&rec.snapshot_key)?;
        let m = ms
            .first()
            .ok_or_else(|| Error::BadContent("the container has no root file system".into()))?;
        if m.kind != "overlay" {
            let root = std::fs::File::open(&m.source).ctx(|| format!("opening {}", m.source))?;
            return f(&root);
        }
        let opt = |k: &str| {
            m.options
                .iter()
                .find_map(|o| o.strip_prefix(k))
                .unwrap_or("")
                .to_string()
        };
        let (upper, lower) = (opt("upperdir="), opt("lowerdir="));
        let data = if upper.is_empty() {
            format!("lowerdir={lower}")
        } else {
            format!("lowerdir={upper}:{lower}")
        };
        let mnt = self.run_dir.join(format!("view-{}", random_hex(8)?));
        std::fs::create_dir_all(&mnt).ctx(|| format!("creating {}", mnt.display()))?;
        let mounted = nix::mount::mount(
            Some("overlay"),
            &mnt,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(data.as_str()),
        );
        if let Err(e) = mounted {
            let _ = std::fs::remove_dir(&mnt);
            return Err(Error::io("mounting the container's file system", e.into()));
        }
        let res = std::fs::File::open(&mnt)
            .ctx(|| format!("opening {}", mnt.display()))
            .and_then(|root| f(&root));
        let _ = nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&mnt);
        res
    }

    /// `export`: the container's file system as a tar, written to `out`.
    pub async fn export<W: std::io::Write + Send + 'static>(self: &Arc<Self>, key: &str, out: W) -> Result<()> {
        let rec = self.find(key)?.record();
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            me.with_view(&rec, |root| {
                dray_archive::pack::write_tree(root, dray_archive::pack::Mode::Tree, out)
                    .map(drop)
                    .map_err(|e| Error::io("writing the export", e))
            })
        })
        .await
        .map_err(|e| Error::io("export", std::io::Error::other(e.to_string())))?
    }

    /// `commit`: the container's changes (its overlay upper directory, whiteouts as `.wh.`
    /// files) become one more layer on its image; the new image's config is the container's
    /// with `changes` applied. A running container is paused meanwhile unless `pause` is off.
    pub async fn commit(
        self: &Arc<Self>,
        key: &str,
        reference: String,
        changes: Vec<String>,
        message: String,
        author: String,
        pause: bool,
    ) -> Result<crate::digest::Digest> {
        let c = self.find(key)?;
        let rec = c.record();
        if self.store.snapshots.kind() != crate::config::SnapshotterKind::Overlay {
            return Err(Error::Unsupported("commit needs the overlay snapshotter".into()));
        }
        let paused = pause && rec.state.status == Status::Running;
        if paused {
            self.pause(&c.id, true).await?;
        }
        let result = self.commit_inner(&rec, reference, changes, message, author).await;
        if paused {
            if let Err(e) = self.pause(&c.id, false).await {
                tracing::warn!(id = %c.id, "unpausing after commit: {e}");
            }
        }
        let id = result?;
        self.event(&rec, "commit", &[]);
        Ok(id)
    }

    async fn commit_inner(
        self: &Arc<Self>,
        rec: &Record,
        reference: String,
        changes: Vec<String>,
        message: String,
        author: String,
    ) -> Result<crate::digest::Digest> {
        let snap = self.store.snapshots.stat(&rec.snapshot_key)?;
        let upper =
            std::fs::File::open(self.store.snapshots.fs_dir(&snap)).ctx(|| "opening the writable layer".to_string())?;
        let (reader, writer) = std::io::pipe().map_err(|e| Error::io("pipe", e))?;
        let walker = tokio::task::spawn_blocking(move || {
            dray_archive::pack::write_tree(&upper, dray_archive::pack::Mode::OverlayUpper, writer).map(drop)
        });
        let r = &rec.resolved;
        let run = crate::images::types::RunConfig {
            user: r.user.clone(),
            exposed_ports: (!r.exposed_ports.is_empty()).then(|| {
                r.exposed_ports
                    .iter()
                    .map(|p| (p.clone(), serde_json::json!({})))
                    .collect()
            }),
            env: Some(r.env.clone()),
            entrypoint: (!r.entrypoint.is_empty()).then(|| r.entrypoint.clone()),
            cmd: Some(r.cmd.clone()),
            volumes: (!r.volumes.is_empty())
                .then(|| r.volumes.iter().map(|v| (v.clone(), serde_json::json!({}))).collect()),
            working_dir: r.working_dir.clone(),
            labels: (!r.labels.is_empty()).then(|| r.labels.clone()),
            stop_signal: if r.stop_signal == "SIGTERM" {
                String::new()
            } else {
                r.stop_signal.clone()
            },
        };
        let opts = crate::images::import::ImportOptions {
            reference,
            changes,
            message,
            base: Some(rec.image_id.parse()?),
            run: Some(run),
            created_by: rec.command(),
            author,
            ..Default::default()
        };
        let (rep, mut rx) = crate::images::pull::Reporter::new(64);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let imported = crate::images::import::import(self.store.clone(), reader, opts, rep).await;
        let walked = walker
            .await
            .map_err(|e| Error::io("commit", std::io::Error::other(e.to_string())))?;
        let id = imported?;
        walked.map_err(|e| Error::io("reading the container's changes", e))?;
        Ok(id)
    }

    /// `diff`: what changed in the container's file system (docker's A/C/D list), without
    /// the mount points the runtime made for drayd's own mounts (docker's init layer).
    pub async fn diff(&self, key: &str) -> Result<Vec<(char, String)>> {
        let rec = self.find(key)?.record();
        let store = self.store.clone();
        let all = tokio::task::spawn_blocking(move || store.snapshots.changes(&rec.snapshot_key))
            .await
            .map_err(|e| Error::io("diff", std::io::Error::other(e.to_string())))??;
        const INIT: &[&str] = &[
            "/etc/hosts",
            "/etc/hostname",
            "/etc/resolv.conf",
            "/dev",
            "/proc",
            "/sys",
            "/dev/shm",
            "/dev/pts",
            "/dev/mqueue",
            "/.dockerenv",
            "/dray-init",
        ];
        let kept: Vec<(char, String)> = all
            .iter()
            .filter(|(k, p)| !(*k == 'A' && (INIT.contains(&p.as_str()) || p.starts_with("/dev/"))))
            .cloned()
            .collect();
        // A changed directory stays listed only when something under it is.
        let out = kept
            .iter()
            .filter(|(k, p)| {
                *k != 'C'
                    || !all.iter().any(|(_, q)| q.starts_with(&format!("{p}/")))
                    || kept.iter().any(|(_, q)| q.starts_with(&format!("{p}/")))
            })
            .cloned()
            .collect();
        Ok(out)
    }

    /// One resource sample of a running container (`stats`).
    pub async fn stats(&self, key: &str) -> Result<stats::Sample> {
        let c = self.find(key)?;
        let shim = c
            .shim()
            .ok_or_else(|| Error::Conflict(format!("Container {} is not running", c.id)))?;
        let any = shim.stats(&c.id).await?;
        let (cpus, mem) = stats::host();
        let mut s = stats::decode(&any, mem)?;
        s.system_cpu = stats::system_cpu();
        s.online_cpus = cpus;
        let pid = c.record().state.pid;
        if pid > 0 {
            if let Ok(dev) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) {
                (s.net_rx, s.net_tx) = stats::net_io(&dev);
            }
        }
        s.read = crate::meta::now_nanos();
        Ok(s)
    }

    /// The pids of the container's processes (`top`).
    pub async fn pids(&self, key: &str) -> Result<Vec<u32>> {
        let c = self.find(key)?;
        let shim = c
            .shim()
            .ok_or_else(|| Error::Conflict(format!("Container {} is not running", c.id)))?;
        shim.pids(&c.id).await
    }

    // ---- exec ----

    /// `exec`: runs a process in the running container (docker's ExecCreate + ExecStart).
    /// The process is the container's own (capabilities, rlimits, no-new-privileges) with the
    /// exec's command, environment, user, working directory and terminal.
    pub async fn exec(self: &Arc<Self>, key: &str, cfg: ExecConfig) -> Result<ExecSession> {
        let c = self.find(key)?;
        let rec = c.record();
        match rec.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(Error::Conflict(format!(
                    "Container {} is paused, unpause the container before exec",
                    rec.id
                )))
            }
            _ => return Err(Error::Conflict(format!("Container {} is not running", rec.id))),
        }
        if cfg.cmd.is_empty() {
            return Err(Error::InvalidArgument("No exec command specified".into()));
        }
        let shim = c
            .shim()
            .ok_or_else(|| Error::Conflict(format!("Container {} is not running", rec.id)))?;
        let exec_id = random_hex(32)?;
        let bundle = self.bundle(&rec.id);
        let me = self.clone();
        let (eid, b2, cfg2) = (exec_id.clone(), bundle.clone(), cfg.clone());
        let (process, mut fifos) = tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, Fifos)> {
            let process = me.exec_process(&rec, &b2, &cfg2)?;
            let fifos = Fifos::create(&b2, &format!("exec-{eid}"), cfg2.stdin, cfg2.tty)?;
            Ok((process, fifos))
        })
        .await
        .map_err(|e| Error::io("exec", std::io::Error::other(e.to_string())))??;
        let (tx, output) = broadcast::channel(ATTACH_BACKLOG);
        let pumps = Arc::new(Pumps::default());
        if let Err(e) = fifos.pump(None, &tx, &pumps) {
            fifos.release();
            fifos.remove();
            return Err(e);
        }
        let stdin = match &fifos.stdin {
            Some(p) => Some(
                tokio::net::unix::pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(p)
                    .map_err(|e| Error::io("opening the exec's stdin", e))?,
            ),
            None => None,
        };
        let (i, o, e) = fifos.paths();
        let stdio = shims::Stdio {
            stdin: i,
            stdout: o,
            stderr: e,
            terminal: cfg.tty,
        };
        let started = async {
            shim.exec(&c.id, &exec_id, &process, &stdio).await?;
            shim.start(&c.id, &exec_id).await
        }
        .await;
        fifos.release();
        if let Err(e) = started {
            let _ = shim.delete(&c.id, &exec_id).await;
            pumps.wait(Duration::from_secs(2)).await;
            fifos.remove();
            return Err(e);
        }
        let cmdline = cfg.cmd.join(" ");
        self.event(
            &c.record(),
            &format!("exec_create: {cmdline}"),
            &[("execID", exec_id.as_str())],
        );
        self.event(
            &c.record(),
            &format!("exec_start: {cmdline}"),
            &[("execID", exec_id.as_str())],
        );
        let (exit_tx, exit) = tokio::sync::oneshot::channel();
        let (cid, eid) = (c.id.clone(), exec_id.clone());
        let me = self.clone();
        let rec_for_event = c.record();
        tokio::spawn(async move {
            let code = match shim.wait(&cid, &eid).await {
                Ok(s) => i64::from(s.code),
                Err(e) => {
                    tracing::warn!(id = %cid, exec = %eid, "waiting for an exec: {e}");
                    255
                }
            };
            pumps.wait(Duration::from_secs(10)).await;
            let _ = shim.delete(&cid, &eid).await;
            fifos.remove();
            let code_s = code.to_string();
            me.event(
                &rec_for_event,
                "exec_die",
                &[("execID", eid.as_str()), ("exitCode", code_s.as_str())],
            );
            let _ = exit_tx.send(code);
        });
        Ok(ExecSession {
            exec_id,
            output,
            stdin,
            exit,
        })
    }

    /// The OCI process of an exec, from the container's config.json.
    fn exec_process(&self, rec: &Record, bundle: &Path, cfg: &ExecConfig) -> Result<Vec<u8>> {
        let spec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(bundle.join("config.json")).ctx(|| "reading the container's config.json".to_string())?,
        )
        .map_err(|e| Error::BadContent(format!("the container's config.json: {e}")))?;
        let mut p = spec["process"].clone();
        let user = if cfg.user.is_empty() {
            rec.resolved.user.as_str()
        } else {
            cfg.user.as_str()
        };
        let key = &rec.snapshot_key;
        let passwd = self.store.snapshots.read_file(key, "etc/passwd", 4 << 20)?;
        let group = self.store.snapshots.read_file(key, "etc/group", 4 << 20)?;
        let ids = user::resolve(
            user,
            passwd.as_deref().map(String::from_utf8_lossy).as_deref(),
            group.as_deref().map(String::from_utf8_lossy).as_deref(),
        )?;
        p["user"] = serde_json::json!({"uid": ids.uid, "gid": ids.gid, "additionalGids": ids.additional_gids});
        p["args"] = serde_json::json!(cfg.cmd);
        p["terminal"] = serde_json::json!(cfg.tty);
        match cfg.console_size {
            Some((h, w)) if cfg.tty => p["consoleSize"] = serde_json::json!({"height": h, "width": w}),
            _ => {
                if let Some(o) = p.as_object_mut() {
                    o.remove("consoleSize");
                }
            }
        }
        if !cfg.working_dir.is_empty() {
            p["cwd"] = serde_json::json!(cfg.working_dir);
        }
        let mut env: Vec<String> = p["env"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if cfg.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        for e in &cfg.env {
            let k = e.split('=').next().unwrap_or("");
            match env.iter_mut().find(|x| x.split('=').next() == Some(k)) {
                Some(slot) => *slot = e.clone(),
                None => env.push(e.clone()),
            }
        }
        if !cfg.user.is_empty() {
            env.retain(|e| !e.starts_with("HOME="));
            env.push(format!("HOME={}", ids.home));
        }
        p["env"] = serde_json::json!(env);
        if cfg.privileged {
            let all = spec::ALL_CAPABILITIES;
            p["capabilities"] = serde_json::json!({"bounding": all, "effective": all, "permitted": all});
        }
        serde_json::to_vec(&p).map_err(|e| Error::io("encoding the exec's process", std::io::Error::other(e)))
    }

    /// The terminal size of an exec.
    pub async fn resize_exec(&self, key: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let c = self.find(key)?;
        let shim = c
            .shim()
            .ok_or_else(|| Error::Conflict(format!("Container {} is not running", c.id)))?;
        shim.resize_pty(&c.id, exec_id, width, height).await
    }

    /// Closes an exec's stdin (the shim closes the process's end).
    pub async fn close_exec_stdin(&self, key: &str, exec_id: &str) -> Result<()> {
        let c = self.find(key)?;
        let shim = c
            .shim()
            .ok_or_else(|| Error::Conflict(format!("Container {} is not running", c.id)))?;
        shim.close_stdin(&c.id, exec_id).await
    }

    /// Stops the watchers before drayd exits; running containers keep running.
    pub fn shutdown(&self) {
        self.table_lock().clear();
    }
}

/// Bytes used by the files under `dir` (not following symlinks, hardlinks once).
pub fn du(dir: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0i64;
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.nlink() <= 1 || seen.insert(m.ino()) {
                total += m.len() as i64;
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_signals() {
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a b"));
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert!(random_name("0123456789abcdef").contains('_'));
    }

    #[test]
    fn start_errors_map_to_docker_codes() {
        assert_eq!(
            start_error_code("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(start_error_code("exec /x: permission denied"), 126);
        assert_eq!(start_error_code("cgroup: invalid argument"), 128);
    }
}
