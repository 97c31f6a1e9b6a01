//! Container commands: run, create, start, stop, kill, restart, rm, ps, logs, wait, inspect,
//! rename, pause, unpause, top; with docker's flags, output and exit codes.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use anyhow::{bail, Context, Result};
use clap::Args;
use dray_proto::v1 as pb;
use serde_json::{json, Value};

use super::Exit;
use crate::client::Client;
use crate::format::{print, Format};
use crate::terminal::{self, RawMode};
use crate::units::{human_duration, human_size};
use crate::DaemonError;

/// The flags `create` and `run` share (docker's container config flags).
#[derive(Args, Debug, Default)]
pub struct CreateFlags {
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long)]
    pub env_file: Vec<String>,
    /// Bind mount a volume (SRC:DST[:OPTS])
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container (type=bind|tmpfs,source=,target=,readonly)
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory (PATH[:OPTS])
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Set meta data on a container
    #[arg(short, long = "label")]
    pub label: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Restart policy to apply when a container exits (no, always, on-failure[:N], unless-stopped)
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    pub read_only: bool,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Add Linux capabilities
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Security Options (no-new-privileges, seccomp=unconfined, seccomp=PROFILE.json)
    #[arg(long)]
    pub security_opt: Vec<String>,
    #[command(flatten)]
    pub resources: ResourceFlags,
    /// Ulimit options (NAME=SOFT[:HARD])
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Add a host device to the container (HOST[:CONTAINER[:PERMS]])
    #[arg(long)]
    pub device: Vec<String>,
    /// Size of /dev/shm
    #[arg(long)]
    pub shm_size: Option<String>,
    /// Signal to stop the container
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long)]
    pub stop_timeout: Option<i64>,
    /// Runtime to use for this container (a shim: io.containerd.runc.v2, a path)
    #[arg(long)]
    pub runtime: Option<String>,
    /// Connect a container to a network (bridge, host, none, container:NAME|ID, or a
    /// user-defined network)
    #[arg(long, visible_alias = "net")]
    pub network: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long, visible_alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long)]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", visible_alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long)]
    pub add_host: Vec<String>,
    /// Logging driver for the container (json-file)
    #[arg(long)]
    pub log_driver: Option<String>,
    /// Log driver options (max-size, max-file)
    #[arg(long)]
    pub log_opt: Vec<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Suppress the pull output
    #[arg(short, long)]
    pub quiet: bool,
    /// The image
    pub image: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Print help (-h is --hostname, as in docker)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Proxy received signals to the process
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long, default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    #[command(flatten)]
    pub flags: CreateFlags,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Print help (-h is --hostname, as in docker)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    #[command(flatten)]
    pub flags: CreateFlags,
}

/// The resource flags `run`/`create` and `update` share.
#[derive(Args, Debug, Default)]
pub struct ResourceFlags {
    /// Memory limit
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short, long)]
    pub cpu_shares: Option<i64>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long)]
    pub pids_limit: Option<i64>,
}

/// What the resource flags ask for, parsed: (memory, memory-swap, nano CPUs, shares, pids).
type Resources = (Option<i64>, Option<i64>, Option<i64>, Option<i64>, Option<i64>);

impl ResourceFlags {
    fn parse(&self) -> Result<Resources> {
        Ok((
            self.memory.as_deref().map(|m| parse_bytes(m, "memory")).transpose()?,
            self.memory_swap
                .as_deref()
                .map(|m| parse_bytes(m, "memory-swap"))
                .transpose()?,
            self.cpus.map(|c| (c * 1e9) as i64),
            self.cpu_shares,
            self.pids_limit,
        ))
    }
}

/// docker's sizes for --memory and friends: 512m, 1g, 100k, bytes.
fn parse_bytes(s: &str, what: &str) -> Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mul): (&str, i64) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid {what} {s:?}: expected a size like 512m or 1g"))?;
    Ok((n * mul as f64) as i64)
}

/// `-v SRC:DST[:ro|rw,...]`, `-v DST` (an anonymous volume).
fn parse_volume(v: &str) -> Result<pb::Mount> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [dst] => ("", *dst, ""),
        [src, dst] => (*src, *dst, ""),
        [src, dst, opts] => (*src, *dst, *opts),
        _ => bail!("invalid volume specification: '{v}'"),
    };
    if dst.is_empty() || !dst.starts_with('/') {
        bail!("invalid volume specification: '{v}': the container path must be absolute");
    }
    let options: Vec<String> = opts.split(',').filter(|o| !o.is_empty()).map(str::to_string).collect();
    for o in &options {
        if !matches!(
            o.as_str(),
            "ro" | "rw" | "z" | "Z" | "nocopy" | "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
        ) {
            bail!("invalid mode: {o}");
        }
    }
    let read_only = options.iter().any(|o| o == "ro");
    if src.is_empty() || !src.starts_with('/') {
        return Ok(pb::Mount {
            r#type: "volume".into(),
            source: src.into(),
            target: dst.into(),
            read_only,
            options,
            ..Default::default()
        });
    }
    Ok(pb::Mount {
        r#type: "bind".into(),
        source: src.into(),
        target: dst.into(),
        read_only,
        create_source: true,
        options: options.into_iter().filter(|o| o != "ro" && o != "rw").collect(),
        ..Default::default()
    })
}

/// `--mount type=bind,source=/a,target=/b,readonly`.
fn parse_mount(s: &str) -> Result<pb::Mount> {
    let mut m = pb::Mount {
        r#type: "volume".into(),
        ..Default::default()
    };
    for kv in s.split(',') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "type" => m.r#type = v.into(),
            "source" | "src" => m.source = v.into(),
            "target" | "destination" | "dst" => m.target = v.into(),
            "readonly" | "ro" => m.read_only = v.is_empty() || v == "true" || v == "1",
            "tmpfs-size" => m.tmpfs_size = parse_bytes(v, "tmpfs-size")?,
            "tmpfs-mode" => {
                m.tmpfs_mode = u32::from_str_radix(v, 8).map_err(|_| anyhow::anyhow!("invalid tmpfs-mode {v:?}"))?
            }
            "bind-propagation" => m.options.push(v.into()),
            _ => bail!("invalid field '{k}' must be a key=value pair"),
        }
    }
    if m.target.is_empty() {
        bail!("invalid argument \"{s}\" for \"--mount\" flag: target is required");
    }
    Ok(m)
}

/// `--tmpfs /path[:opts]`.
fn parse_tmpfs(s: &str) -> pb::Mount {
    let (path, opts) = s.split_once(':').unwrap_or((s, ""));
    pb::Mount {
        r#type: "tmpfs".into(),
        target: path.into(),
        read_only: opts.split(',').any(|o| o == "ro"),
        options: opts.split(',').filter(|o| !o.is_empty()).map(str::to_string).collect(),
        ..Default::default()
    }
}

/// `-e KEY` takes KEY from drayctl's environment (dropped when unset), as docker does.
fn env_entries(a: &CreateFlags) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in &a.env_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("open {f}"))?;
        for l in text.lines() {
            let l = l.trim_start();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            out.push(l.to_string());
        }
    }
    out.extend(a.env.iter().cloned());
    Ok(out
        .into_iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e)
            } else {
                std::env::var(&e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect())
}

fn request(a: &CreateFlags, auto_remove: bool) -> Result<pb::CreateContainerRequest> {
    let (memory, memory_swap, nano_cpus, cpu_shares, pids_limit) = a.resources.parse()?;
    let (policy, retries) = match a.restart.split_once(':') {
        Some((p, n)) => (
            p.to_string(),
            n.parse::<i32>().map_err(|_| {
                anyhow::anyhow!("invalid restart policy format: maximum retry count must be an integer")
            })?,
        ),
        None => (a.restart.clone(), 0),
    };
    let mut mounts = Vec::new();
    for v in &a.volume {
        mounts.push(parse_volume(v)?);
    }
    for m in &a.mount {
        mounts.push(parse_mount(m)?);
    }
    mounts.extend(a.tmpfs.iter().map(|t| parse_tmpfs(t)));
    let mut ulimits = Vec::new();
    for u in &a.ulimit {
        let (name, vals) = u
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("invalid ulimit argument: {u}"))?;
        let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
        let n = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| anyhow::anyhow!("invalid ulimit argument: {u}"))
        };
        ulimits.push(pb::Ulimit {
            name: name.into(),
            soft: n(soft)?,
            hard: n(hard)?,
        });
    }
    let devices = a
        .device
        .iter()
        .map(|d| {
            let p: Vec<&str> = d.split(':').collect();
            pb::Device {
                path_on_host: p[0].into(),
                path_in_container: p.get(1).copied().unwrap_or("").into(),
                cgroup_permissions: p.get(2).copied().unwrap_or("").into(),
            }
        })
        .collect();
    let mut log_opts = HashMap::new();
    for o in &a.log_opt {
        let (k, v) = o
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("invalid log opt {o:?}: expected KEY=VALUE"))?;
        log_opts.insert(k.to_string(), v.to_string());
    }
    let mut security_opt = Vec::new();
    for s in &a.security_opt {
        // A seccomp profile is read here: the file is on the client's side, as with docker.
        match s.split_once(['=', ':']) {
            Some(("seccomp", path)) if path != "unconfined" => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("opening seccomp profile ({path}) failed"))?;
                security_opt.push(format!("seccomp={text}"));
            }
            _ => security_opt.push(s.clone()),
        }
    }
    let labels = a
        .label
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect();
    let (entrypoint, entrypoint_set) = match &a.entrypoint {
        Some(e) if e.is_empty() => (vec![], true),
        Some(e) => (vec![e.clone()], true),
        None => (vec![], false),
    };
    Ok(pb::CreateContainerRequest {
        name: a.name.clone().unwrap_or_default(),
        config: Some(pb::ContainerConfig {
            image: a.image.clone(),
            cmd: a.command.clone(),
            entrypoint,
            entrypoint_set,
            env: env_entries(a)?,
            working_dir: a.workdir.clone().unwrap_or_default(),
            user: a.user.clone().unwrap_or_default(),
            hostname: a.hostname.clone().unwrap_or_default(),
            labels,
            tty: a.tty,
            open_stdin: a.interactive,
            stdin_once: a.interactive,
            stop_signal: a.stop_signal.clone().unwrap_or_default(),
            stop_timeout: a.stop_timeout,
            exposed_ports: a.expose.clone(),
        }),
        host_config: Some(pb::HostConfig {
            auto_remove,
            restart_policy: Some(pb::RestartPolicy {
                name: policy,
                maximum_retry_count: retries,
            }),
            read_only_rootfs: a.read_only,
            privileged: a.privileged,
            cap_add: a.cap_add.clone(),
            cap_drop: a.cap_drop.clone(),
            security_opt,
            memory: memory.unwrap_or(0),
            memory_swap: memory_swap.unwrap_or(0),
            nano_cpus: nano_cpus.unwrap_or(0),
            cpu_shares: cpu_shares.unwrap_or(0),
            pids_limit,
            ulimits,
            mounts,
            devices,
            shm_size: a
                .shm_size
                .as_deref()
                .map(|m| parse_bytes(m, "shm-size"))
                .transpose()?
                .unwrap_or(0),
            runtime: a.runtime.clone().unwrap_or_default(),
            init: a.init,
            network_mode: a.network.clone().unwrap_or_default(),
            publish: a.publish.clone(),
            publish_all_ports: a.publish_all,
            dns: a.dns.clone(),
            dns_search: a.dns_search.clone(),
            dns_options: a.dns_option.clone(),
            extra_hosts: a.add_host.clone(),
            network_aliases: a.network_alias.clone(),
            ipv4_address: a.ip.clone().unwrap_or_default(),
            log_driver: a.log_driver.clone().unwrap_or_default(),
            log_opts,
            console_size: if a.tty {
                terminal::size().map(|(w, h)| vec![h, w]).unwrap_or_default()
            } else {
                vec![]
            },
        }),
    })
}

fn is_no_such_image(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::NotFound && s.message().starts_with("No such image")
}

/// Creates the container, pulling a missing image first (`--pull`).
async fn create_container(c: &Client, a: &CreateFlags, auto_remove: bool) -> Result<String> {
    if !matches!(a.pull.as_str(), "missing" | "always" | "never") {
        return Err(DaemonError(format!(
            "invalid pull option: '{}': must be one of \"always\", \"missing\" or \"never\"",
            a.pull
        ))
        .into());
    }
    // Bad flag values are docker's exit 125, as the daemon's refusals are.
    let req = request(a, auto_remove).map_err(|e| DaemonError(format!("{e:#}")))?;
    if a.pull == "always" {
        pull(c, a).await?;
    }
    match c.containers().create(req.clone()).await {
        Ok(r) => {
            let r = r.into_inner();
            for w in r.warnings {
                eprintln!("WARNING: {w}");
            }
            Ok(r.id)
        }
        Err(s) if is_no_such_image(&s) && a.pull == "missing" => {
            eprintln!("Unable to find image '{}' locally", a.image);
            pull(c, a).await?;
            Ok(c.containers()
                .create(req)
                .await
                .map_err(DaemonError::from)?
                .into_inner()
                .id)
        }
        Err(s) => Err(DaemonError::from(s).into()),
    }
}

async fn pull(c: &Client, a: &CreateFlags) -> Result<()> {
    let code = super::images::pull(
        c,
        super::images::PullArgs {
            image: a.image.clone(),
            platform: None,
            quiet: a.quiet,
        },
    )
    .await?;
    if code != 0 {
        return Err(Exit(code).into());
    }
    Ok(())
}

pub async fn create(c: &Client, a: CreateArgs) -> Result<u8> {
    let id = create_container(c, &a.flags, a.rm).await?;
    println!("{id}");
    Ok(0)
}

/// docker's exit code for a start that failed: 126 (cannot invoke), 127 (not found), 125.
fn start_failure_code(msg: &str) -> u8 {
    let m = msg.to_ascii_lowercase();
    if m.contains("permission denied") {
        126
    } else if m.contains("executable file not found") || m.contains("no such file or directory") {
        127
    } else {
        125
    }
}

/// How an attached session ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The container's output ended.
    Ended,
    /// The user typed the detach keys.
    Detached,
}

/// Relays the container's streams until its output ends or the user detaches.
async fn attach_streams(
    c: &Client,
    id: &str,
    stdin: bool,
    tty: bool,
    detach_keys: Option<Vec<u8>>,
    started: impl std::future::Future<Output = Result<()>>,
) -> Result<Outcome> {
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::AttachRequest>(16);
    tx.send(pb::AttachRequest {
        id: id.to_string(),
        stdin,
        stdout: true,
        stderr: true,
        ..Default::default()
    })
    .await
    .ok();
    let mut out = c
        .containers()
        .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(DaemonError::from)?
        .into_inner();
    // The first (empty) answer: attached; now the container may start.
    out.message().await.map_err(DaemonError::from)?;
    started.await?;
    let _raw = if tty { RawMode::enable() } else { None };
    if tty {
        terminal::spawn_resizer(tx.clone(), |width, height| pb::AttachRequest {
            width,
            height,
            ..Default::default()
        });
    }
    let (detach_tx, mut detached) = tokio::sync::oneshot::channel();
    if stdin {
        terminal::spawn_stdin(
            tx.clone(),
            |d| pb::AttachRequest {
                stdin_data: d,
                ..Default::default()
            },
            || pb::AttachRequest {
                close_stdin: true,
                ..Default::default()
            },
            detach_keys,
            detach_tx,
        );
    }
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    loop {
        tokio::select! {
            m = out.message() => {
                let Some(m) = m.map_err(DaemonError::from)? else { break };
                if m.stream == "stderr" {
                    let _ = stderr.write_all(&m.data);
                    let _ = stderr.flush();
                } else {
                    let _ = stdout.write_all(&m.data);
                    let _ = stdout.flush();
                }
            }
            r = &mut detached => {
                if r.is_ok() {
                    return Ok(Outcome::Detached);
                }
                // stdin ended without detaching: keep relaying output.
                detached = futures_never();
            }
        }
    }
    drop(tx);
    Ok(Outcome::Ended)
}

/// A oneshot receiver that never fires (its sender is kept alive forever).
fn futures_never() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::mem::forget(tx);
    rx
}

pub async fn run(c: &Client, a: RunArgs) -> Result<u8> {
    let id = create_container(c, &a.flags, a.rm).await?;
    if a.detach {
        if let Err(s) = c.containers().start(pb::StartContainerRequest { id: id.clone() }).await {
            if a.rm {
                let _ = c
                    .containers()
                    .remove(pb::RemoveContainerRequest {
                        id: id.clone(),
                        force: true,
                        volumes: true,
                    })
                    .await;
            }
            eprintln!("Error: {}", s.message());
            return Ok(start_failure_code(s.message()));
        }
        println!("{id}");
        return Ok(0);
    }
    // Wait first (as docker does), so that an exit (or the removal of --rm) is not missed.
    let condition = if a.rm { "removed" } else { "next-exit" };
    let mut wc = c.containers();
    let wid = id.clone();
    let waiter = tokio::spawn(async move {
        wc.wait(pb::WaitContainerRequest {
            id: wid,
            condition: condition.into(),
        })
        .await
    });
    let cc = c.clone();
    let sid = id.clone();
    let start = async move {
        cc.containers()
            .start(pb::StartContainerRequest { id: sid })
            .await
            .map(|_| ())
            .map_err(|s| anyhow::Error::new(StartFailed(s.message().to_string())))
    };
    let sig_proxy = a.sig_proxy && !a.flags.tty;
    if sig_proxy {
        proxy_signals(c.clone(), id.clone());
    }
    let keys = terminal::parse_detach_keys(&a.detach_keys).map_err(|e| DaemonError(format!("{e:#}")))?;
    match attach_streams(c, &id, a.flags.interactive, a.flags.tty, Some(keys), start).await {
        Ok(Outcome::Detached) => {
            waiter.abort();
            return Ok(0);
        }
        Ok(Outcome::Ended) => {}
        Err(e) => {
            if let Some(StartFailed(msg)) = e.downcast_ref::<StartFailed>() {
                waiter.abort();
                if a.rm {
                    let _ = c
                        .containers()
                        .remove(pb::RemoveContainerRequest {
                            id: id.clone(),
                            force: true,
                            volumes: true,
                        })
                        .await;
                }
                eprintln!("drayctl: Error response from daemon: {msg}.");
                return Ok(start_failure_code(msg));
            }
            return Err(e);
        }
    }
    let code = match waiter.await {
        Ok(Ok(r)) => r.into_inner().status_code,
        Ok(Err(s)) => return Err(DaemonError::from(s).into()),
        Err(e) => bail!("wait: {e}"),
    };
    Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(255))
}

#[derive(Debug)]
struct StartFailed(String);

impl std::fmt::Display for StartFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartFailed {}

/// `--sig-proxy`: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2 go to the container.
fn proxy_signals(c: Client, id: String) {
    use tokio::signal::unix::{signal, SignalKind};
    for (kind, name) in [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
        (SignalKind::user_defined1(), "SIGUSR1"),
        (SignalKind::user_defined2(), "SIGUSR2"),
    ] {
        let Ok(mut s) = signal(kind) else { continue };
        let c = c.clone();
        let id = id.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                let _ = c
                    .containers()
                    .kill(pb::KillContainerRequest {
                        id: id.clone(),
                        signal: name.into(),
                    })
                    .await;
            }
        });
    }
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long, default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn start(c: &Client, a: StartArgs) -> Result<u8> {
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let id = a.containers[0].clone();
        let doc = inspect_doc(c, &id).await?;
        let tty = doc["Config"]["Tty"].as_bool().unwrap_or(false);
        let cc = c.clone();
        let sid = id.clone();
        let mut wc = c.containers();
        let wid = id.clone();
        let waiter = tokio::spawn(async move {
            wc.wait(pb::WaitContainerRequest {
                id: wid,
                condition: "next-exit".into(),
            })
            .await
        });
        let started = async move {
            cc.containers()
                .start(pb::StartContainerRequest { id: sid })
                .await
                .map(|_| ())
                .map_err(|s| anyhow::Error::new(DaemonError::from(s)))
        };
        let keys = terminal::parse_detach_keys(&a.detach_keys)?;
        if attach_streams(c, &id, a.interactive, tty, Some(keys), started).await? == Outcome::Detached {
            waiter.abort();
            return Ok(0);
        }
        let code = match waiter.await {
            Ok(Ok(r)) => r.into_inner().status_code,
            Ok(Err(s)) => return Err(DaemonError::from(s).into()),
            Err(e) => bail!("wait: {e}"),
        };
        return Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(255));
    }
    each(&a.containers, |id| {
        let c = c.clone();
        async move {
            c.containers()
                .start(pb::StartContainerRequest { id: id.clone() })
                .await
                .map(|_| ())
        }
    })
    .await
}

/// Runs `f` for each container, printing its name as docker does, or the error.
async fn each<F, Fut>(ids: &[String], f: F) -> Result<u8>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let mut failed = false;
    for id in ids {
        match f(id.clone()).await {
            Ok(()) => println!("{id}"),
            Err(s) => {
                eprintln!("Error response from daemon: {}", s.message());
                failed = true;
            }
        }
    }
    if failed {
        return Err(Exit(1).into());
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short, long)]
    pub time: Option<i64>,
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn stop(c: &Client, a: StopArgs) -> Result<u8> {
    let t = a.time;
    let sig = a.signal.clone().unwrap_or_default();
    each(&a.containers, |id| {
        let c = c.clone();
        let sig = sig.clone();
        async move {
            c.containers()
                .stop(pb::StopContainerRequest {
                    id,
                    timeout: t,
                    signal: sig,
                })
                .await
                .map(|_| ())
        }
    })
    .await
}

pub async fn restart(c: &Client, a: StopArgs) -> Result<u8> {
    let t = a.time;
    each(&a.containers, |id| {
        let c = c.clone();
        async move {
            c.containers()
                .restart(pb::RestartContainerRequest { id, timeout: t })
                .await
                .map(|_| ())
        }
    })
    .await
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn kill(c: &Client, a: KillArgs) -> Result<u8> {
    let sig = a.signal.clone();
    each(&a.containers, |id| {
        let c = c.clone();
        let sig = sig.clone();
        async move {
            c.containers()
                .kill(pb::KillContainerRequest { id, signal: sig })
                .await
                .map(|_| ())
        }
    })
    .await
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn rm(c: &Client, a: RmArgs) -> Result<u8> {
    let (force, volumes) = (a.force, a.volumes);
    each(&a.containers, |id| {
        let c = c.clone();
        async move {
            c.containers()
                .remove(pb::RemoveContainerRequest { id, force, volumes })
                .await
                .map(|_| ())
        }
    })
    .await
}

#[derive(Args, Debug)]
pub struct IdsArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn pause(c: &Client, a: IdsArgs, pause: bool) -> Result<u8> {
    each(&a.containers, |id| {
        let c = c.clone();
        async move {
            if pause {
                c.containers().pause(pb::PauseContainerRequest { id }).await.map(|_| ())
            } else {
                c.containers()
                    .unpause(pb::UnpauseContainerRequest { id })
                    .await
                    .map(|_| ())
            }
        }
    })
    .await
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn wait(c: &Client, a: WaitArgs) -> Result<u8> {
    let mut failed = false;
    for id in &a.containers {
        match c
            .containers()
            .wait(pb::WaitContainerRequest {
                id: id.clone(),
                condition: "not-running".into(),
            })
            .await
        {
            Ok(r) => println!("{}", r.into_inner().status_code),
            Err(s) => {
                eprintln!("Error response from daemon: {}", s.message());
                failed = true;
            }
        }
    }
    if failed {
        return Err(Exit(1).into());
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

pub async fn rename(c: &Client, a: RenameArgs) -> Result<u8> {
    c.containers()
        .rename(pb::RenameContainerRequest {
            id: a.container,
            new_name: a.new_name,
        })
        .await
        .map_err(DaemonError::from)?;
    Ok(0)
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs ("all")
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show logs since timestamp (2013-01-02T13:23:37Z) or relative (42m)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative (42m)
    #[arg(long)]
    pub until: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    pub container: String,
}

/// docker's time arguments: RFC 3339, a Unix time, or a duration back from now (10m, 1h30m).
pub fn parse_time(s: &str) -> Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_nanos_opt().unwrap_or(0));
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1e9) as i64);
    }
    let mut total = 0f64;
    let mut num = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() || ch == '.' {
            num.push(ch);
            continue;
        }
        let n: f64 = num.parse().map_err(|_| anyhow::anyhow!("invalid time {s:?}"))?;
        num.clear();
        total += n * match ch {
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => bail!("invalid time {s:?}: RFC 3339, Unix seconds or a duration like 10m"),
        };
    }
    if !num.is_empty() || total == 0.0 {
        bail!("invalid time {s:?}: RFC 3339, Unix seconds or a duration like 10m");
    }
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    Ok(now - (total * 1e9) as i64)
}

pub async fn logs(c: &Client, a: LogsArgs) -> Result<u8> {
    let tail = if a.tail == "all" {
        -1
    } else {
        a.tail
            .parse::<i64>()
            .map_err(|_| anyhow::anyhow!("invalid --tail {:?}: a number or \"all\"", a.tail))?
    };
    let mut s = c
        .containers()
        .logs(pb::LogsRequest {
            id: a.container,
            follow: a.follow,
            tail,
            since: a.since.as_deref().map(parse_time).transpose()?.unwrap_or(0),
            until: a.until.as_deref().map(parse_time).transpose()?.unwrap_or(0),
            stdout: true,
            stderr: true,
        })
        .await
        .map_err(DaemonError::from)?
        .into_inner();
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    while let Some(e) = s.message().await.map_err(DaemonError::from)? {
        let mut line = Vec::new();
        if a.timestamps {
            line.extend_from_slice(format_nanos(e.time).as_bytes());
            line.push(b' ');
        }
        line.extend_from_slice(&e.line);
        if e.stream == "stderr" {
            let _ = stderr.write_all(&line);
        } else {
            let _ = stdout.write_all(&line);
            let _ = stdout.flush();
        }
    }
    Ok(0)
}

/// docker's PORTS column: published ports as `IP:HOST->PORT/PROTO`, exposed ones as
/// `PORT/PROTO`, consecutive ports folded into ranges (`0.0.0.0:8000-8001->80-81/tcp`); only
/// while the container runs.
fn ports_text(ct: &pb::ContainerSummary) -> String {
    if ct.state != "running" && ct.state != "paused" {
        return String::new();
    }
    // (proto, ip, private, public); public 0: exposed only.
    let mut all: Vec<(String, String, u32, u32)> = ct
        .ports
        .iter()
        .map(|b| {
            let ip = if b.host_ip.is_empty() {
                "0.0.0.0".to_string()
            } else {
                b.host_ip.clone()
            };
            (b.protocol.clone(), ip, b.container_port, b.host_port)
        })
        .collect();
    for e in &ct.exposed_ports {
        let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let Ok(port) = port.parse::<u32>() else { continue };
        if !all.iter().any(|p| p.0 == proto && p.2 == port) {
            all.push((proto.to_string(), String::new(), port, 0));
        }
    }
    all.sort_by(|a, b| (a.1.is_empty(), &a.1, a.2, &a.0).cmp(&(b.1.is_empty(), &b.1, b.2, &b.0)));
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let (proto, ip, first_priv, first_pub) = all[i].clone();
        let mut j = i;
        while j + 1 < all.len() {
            let n = &all[j + 1];
            let step = (n.2 as i64 - all[j].2 as i64, n.3 as i64 - all[j].3 as i64);
            let same = n.0 == proto && n.1 == ip;
            if same && step.0 == 1 && (step.1 == 1 || first_pub == 0 && n.3 == 0) {
                j += 1;
            } else {
                break;
            }
        }
        let (last_priv, last_pub) = (all[j].2, all[j].3);
        let range = |a: u32, b: u32| if a == b { a.to_string() } else { format!("{a}-{b}") };
        if first_pub == 0 {
            out.push(format!("{}/{proto}", range(first_priv, last_priv)));
        } else {
            out.push(format!(
                "{ip}:{}->{}/{proto}",
                range(first_pub, last_pub),
                range(first_priv, last_priv)
            ));
        }
        i = j + 1;
    }
    out.join(", ")
}

pub(crate) fn format_nanos(n: i64) -> String {
    chrono::DateTime::from_timestamp(n.div_euclid(1_000_000_000), n.rem_euclid(1_000_000_000) as u32)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long)]
    pub last: Option<usize>,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Pretty-print containers using a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
}

/// docker's STATUS column.
pub fn status_text(state: &str, exit_code: i32, started: i64, finished: i64, now: i64) -> String {
    let ago = |t: i64| human_duration((now - t) / 1_000_000_000);
    match state {
        "running" => format!("Up {}", ago(started)),
        "paused" => format!("Up {} (Paused)", ago(started)),
        "restarting" => format!("Restarting ({exit_code}) {} ago", ago(finished)),
        "exited" if finished > 0 => format!("Exited ({exit_code}) {} ago", ago(finished)),
        "exited" => "Exited".into(),
        "created" => "Created".into(),
        "removing" => "Removal In Progress".into(),
        "dead" => "Dead".into(),
        other => other.to_string(),
    }
}

fn ellipsis(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

pub async fn ps(c: &Client, a: PsArgs) -> Result<u8> {
    let mut filters: HashMap<String, pb::FilterValues> = HashMap::new();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value)"))?;
        filters.entry(k.to_string()).or_default().values.push(v.to_string());
    }
    let all = a.all || a.last.is_some() || a.latest;
    let mut list = c
        .containers()
        .list(pb::ListContainersRequest {
            all,
            filters,
            size: a.size,
        })
        .await
        .map_err(DaemonError::from)?
        .into_inner()
        .containers;
    let keep = if a.latest { Some(1) } else { a.last };
    if let Some(n) = keep {
        list.truncate(n);
    }
    if a.quiet {
        for ct in &list {
            println!(
                "{}",
                if a.no_trunc {
                    ct.id.clone()
                } else {
                    ct.id[..12].to_string()
                }
            );
        }
        return Ok(0);
    }
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let objs: Vec<Value> = list
        .iter()
        .map(|ct| {
            let command = if a.no_trunc {
                ct.command.clone()
            } else {
                ellipsis(&ct.command, 20)
            };
            let created = format!("{} ago", human_duration(now / 1_000_000_000 - ct.created));
            let mut labels: Vec<String> = ct.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            json!({
                "ID": if a.no_trunc { ct.id.clone() } else { ct.id[..12].to_string() },
                "Image": ct.image,
                "Command": format!("\"{command}\""),
                "CreatedAt": format_nanos(ct.created * 1_000_000_000),
                "RunningFor": created,
                "Status": status_text(&ct.state, ct.exit_code, ct.started_at, ct.finished_at, now),
                "State": ct.state,
                "Ports": ports_text(ct),
                "Names": ct.name,
                "Labels": labels.join(","),
                "Size": if a.size { human_size(ct.size_rw) } else { String::new() },
                "Mounts": ct.mounts.iter().map(|m| m.source.clone()).collect::<Vec<_>>().join(","),
            })
        })
        .collect();
    let mut columns = vec![
        ("CONTAINER ID", "ID"),
        ("IMAGE", "Image"),
        ("COMMAND", "Command"),
        ("CREATED", "RunningFor"),
        ("STATUS", "Status"),
        ("PORTS", "Ports"),
        ("NAMES", "Names"),
    ];
    if a.size {
        columns.push(("SIZE", "Size"));
    }
    print(&Format::parse(a.format.as_deref()), &columns, &objs)?;
    Ok(0)
}

async fn inspect_doc(c: &Client, id: &str) -> Result<Value> {
    let r = c
        .containers()
        .inspect(pb::InspectContainerRequest {
            id: id.to_string(),
            size: false,
        })
        .await
        .map_err(DaemonError::from)?
        .into_inner();
    Ok(serde_json::from_str(&r.json)?)
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
    /// Return JSON for specified type (container, image)
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `inspect`: containers first, then images (docker's order), or one `--type`.
pub async fn inspect(c: &Client, a: InspectArgs) -> Result<u8> {
    let mut out = Vec::new();
    let mut failed = false;
    for n in &a.names {
        let ctr = if a.kind.as_deref() != Some("image") {
            c.containers()
                .inspect(pb::InspectContainerRequest {
                    id: n.clone(),
                    size: a.size,
                })
                .await
                .ok()
                .and_then(|r| serde_json::from_str::<Value>(&r.into_inner().json).ok())
        } else {
            None
        };
        if let Some(doc) = ctr {
            out.push(doc);
            continue;
        }
        if a.kind.as_deref() != Some("container") {
            if let Ok(d) = c.images().get(pb::GetImageRequest { reference: n.clone() }).await {
                out.push(super::images::inspect_json(&d.into_inner())?);
                continue;
            }
        }
        eprintln!("Error: No such object: {n}");
        failed = true;
    }
    super::print_documents(out, a.format.as_deref())?;
    if failed {
        return Err(Exit(1).into());
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `exec`: the process's output relayed, its exit code returned (126/127 when it cannot be
/// run; 1 when drayd refuses, as docker's exec).
pub async fn exec(c: &Client, a: ExecArgs) -> Result<u8> {
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ExecRequest>(16);
    let env = a
        .env
        .iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                std::env::var(e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect();
    let _ = tx
        .send(pb::ExecRequest {
            id: a.container.clone(),
            cmd: a.command.clone(),
            env,
            user: a.user.clone().unwrap_or_default(),
            working_dir: a.workdir.clone().unwrap_or_default(),
            tty: a.tty,
            stdin: a.interactive,
            privileged: a.privileged,
            detach: a.detach,
            width: if a.tty {
                terminal::size().map(|s| s.0).unwrap_or(0)
            } else {
                0
            },
            height: if a.tty {
                terminal::size().map(|s| s.1).unwrap_or(0)
            } else {
                0
            },
            ..Default::default()
        })
        .await;
    let failed = |msg: &str| -> Result<u8> {
        eprintln!("Error response from daemon: {msg}");
        let code = start_failure_code(msg);
        Ok(if code == 125 { 1 } else { code })
    };
    let mut out = match c
        .containers()
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Ok(s) => s.into_inner(),
        Err(s) => return failed(s.message()),
    };
    match out.message().await {
        Ok(Some(_)) => {}
        Ok(None) => bail!("drayd ended the exec without an answer"),
        Err(s) => return failed(s.message()),
    }
    if a.detach {
        return Ok(0);
    }
    let _raw = if a.tty { RawMode::enable() } else { None };
    if a.tty {
        terminal::spawn_resizer(tx.clone(), |width, height| pb::ExecRequest {
            width,
            height,
            ..Default::default()
        });
    }
    let (detach_tx, _detached) = tokio::sync::oneshot::channel();
    if a.interactive {
        terminal::spawn_stdin(
            tx.clone(),
            |d| pb::ExecRequest {
                stdin_data: d,
                ..Default::default()
            },
            || pb::ExecRequest {
                close_stdin: true,
                ..Default::default()
            },
            None,
            detach_tx,
        );
    }
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let mut code = 0;
    while let Some(m) = out.message().await.map_err(DaemonError::from)? {
        if let Some(c) = m.exit_code {
            code = c;
            break;
        }
        if m.stream == "stderr" {
            let _ = stderr.write_all(&m.data);
            let _ = stderr.flush();
        } else {
            let _ = stdout.write_all(&m.data);
            let _ = stdout.flush();
        }
    }
    Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(255))
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long)]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long, default_value = "ctrl-p,ctrl-q")]
    pub detach_keys: String,
    pub container: String,
}

/// `attach`: the running container's streams (its stdin when it was started with `-i`);
/// exits with its status when it stops, or 0 when the user detaches.
pub async fn attach(c: &Client, a: AttachArgs) -> Result<u8> {
    let doc = inspect_doc(c, &a.container).await?;
    if doc["State"]["Running"] != Value::Bool(true) {
        bail!("You cannot attach to a stopped container, start it first");
    }
    let id = doc["Id"].as_str().unwrap_or_default().to_string();
    let tty = doc["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = !a.no_stdin && doc["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let keys = terminal::parse_detach_keys(&a.detach_keys)?;
    if a.sig_proxy && !tty {
        proxy_signals(c.clone(), id.clone());
    }
    let mut wc = c.containers();
    let wid = id.clone();
    let waiter = tokio::spawn(async move {
        wc.wait(pb::WaitContainerRequest {
            id: wid,
            condition: "not-running".into(),
        })
        .await
    });
    if attach_streams(c, &id, stdin, tty, Some(keys), async { Ok(()) }).await? == Outcome::Detached {
        waiter.abort();
        return Ok(0);
    }
    let code = match waiter.await {
        Ok(Ok(r)) => r.into_inner().status_code,
        Ok(Err(s)) => return Err(DaemonError::from(s).into()),
        Err(e) => bail!("wait: {e}"),
    };
    Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(255))
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Pretty-print images using a Go template
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

/// docker's CPU %: the container's share of the host's CPU time between two samples,
/// times the number of CPUs.
pub fn cpu_percent(prev: &pb::StatsSample, cur: &pb::StatsSample) -> f64 {
    let cpu = cur.cpu_total.saturating_sub(prev.cpu_total) as f64;
    let sys = cur.system_cpu.saturating_sub(prev.system_cpu) as f64;
    if sys <= 0.0 || cpu <= 0.0 {
        return 0.0;
    }
    cpu / sys * f64::from(cur.online_cpus.max(1)) * 100.0
}

fn stats_row(prev: Option<&pb::StatsSample>, s: &pb::StatsSample, no_trunc: bool) -> Value {
    let cpu = prev.map(|p| cpu_percent(p, s)).unwrap_or(0.0);
    let mem_pct = if s.mem_limit > 0 {
        s.mem_usage as f64 / s.mem_limit as f64 * 100.0
    } else {
        0.0
    };
    json!({
        "Container": if no_trunc { s.id.clone() } else { s.id[..12].to_string() },
        "ID": if no_trunc { s.id.clone() } else { s.id[..12].to_string() },
        "Name": s.name,
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", crate::units::bytes_size(s.mem_usage), crate::units::bytes_size(s.mem_limit)),
        "MemPerc": format!("{mem_pct:.2}%"),
        "NetIO": format!("{} / {}", human_size(s.net_rx as i64), human_size(s.net_tx as i64)),
        "BlockIO": format!("{} / {}", human_size(s.blk_read as i64), human_size(s.blk_write as i64)),
        "PIDs": s.pids.to_string(),
    })
}

/// `stats`: live (redrawn every second on a terminal, appended otherwise) or `--no-stream`.
pub async fn stats(c: &Client, a: StatsArgs) -> Result<u8> {
    let ids: Vec<String> = if a.containers.is_empty() {
        c.containers()
            .list(pb::ListContainersRequest {
                all: a.all,
                ..Default::default()
            })
            .await
            .map_err(DaemonError::from)?
            .into_inner()
            .containers
            .into_iter()
            .filter(|ct| ct.state == "running")
            .map(|ct| ct.id)
            .collect()
    } else {
        a.containers.clone()
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, pb::StatsSample)>(64);
    for (i, id) in ids.iter().enumerate() {
        let mut s = c
            .containers()
            .stats(pb::StatsRequest {
                id: id.clone(),
                stream: !a.no_stream,
            })
            .await
            .map_err(DaemonError::from)?
            .into_inner();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(m)) = s.message().await {
                if tx.send((i, m)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let columns = [
        ("CONTAINER ID", "Container"),
        ("NAME", "Name"),
        ("CPU %", "CPUPerc"),
        ("MEM USAGE / LIMIT", "MemUsage"),
        ("MEM %", "MemPerc"),
        ("NET I/O", "NetIO"),
        ("BLOCK I/O", "BlockIO"),
        ("PIDS", "PIDs"),
    ];
    let mut last: Vec<(Option<pb::StatsSample>, Option<pb::StatsSample>)> = vec![(None, None); ids.len()];
    let tty = std::io::stdout().is_terminal();
    let format = Format::parse(a.format.as_deref());
    let render = |last: &[(Option<pb::StatsSample>, Option<pb::StatsSample>)]| -> Result<()> {
        let rows: Vec<Value> = last
            .iter()
            .filter_map(|(p, cur)| cur.as_ref().map(|s| stats_row(p.as_ref(), s, a.no_trunc)))
            .collect();
        if tty && !a.no_stream {
            print!("\x1b[2J\x1b[H");
        }
        print(&format, &columns, &rows)
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some((i, s)) => {
                    let slot = &mut last[i];
                    slot.0 = slot.1.take();
                    slot.1 = Some(s);
                }
                None => break,
            },
            _ = tick.tick(), if !a.no_stream => render(&last)?,
        }
    }
    // Without --stream: one table from the two samples; streaming: the last state.
    render(&last)?;
    Ok(0)
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub resources: ResourceFlags,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn update(c: &Client, a: UpdateArgs) -> Result<u8> {
    let restart_policy = match &a.restart {
        Some(r) => {
            let (name, n) = match r.split_once(':') {
                Some((p, n)) => (
                    p.to_string(),
                    n.parse::<i32>()
                        .map_err(|_| anyhow::anyhow!("invalid restart policy {r:?}"))?,
                ),
                None => (r.clone(), 0),
            };
            Some(pb::RestartPolicy {
                name,
                maximum_retry_count: n,
            })
        }
        None => None,
    };
    let (memory, memory_swap, nano_cpus, cpu_shares, pids_limit) = a.resources.parse()?;
    each(&a.containers, |id| {
        let c = c.clone();
        let restart_policy = restart_policy.clone();
        async move {
            c.containers()
                .update(pb::UpdateContainerRequest {
                    id,
                    memory,
                    memory_swap,
                    nano_cpus,
                    cpu_shares,
                    pids_limit,
                    restart_policy,
                })
                .await
                .map(|_| ())
        }
    })
    .await
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Show all events created since timestamp (RFC 3339, Unix seconds or a duration: 10m)
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided (type, event, container, image, volume, label)
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format the output using the given Go template
    #[arg(long)]
    pub format: Option<String>,
}

/// `events`: docker's line per event (`TIME TYPE ACTION ID (k=v, ...)`), or `--format`.
pub async fn events(c: &Client, a: EventsArgs) -> Result<u8> {
    let mut filters: HashMap<String, pb::FilterValues> = HashMap::new();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| DaemonError(format!("bad format of filter (expected name=value): {f}")))?;
        filters.entry(k.to_string()).or_default().values.push(v.to_string());
    }
    let since = a.since.as_deref().map(parse_time).transpose()?.unwrap_or(0);
    let until = a.until.as_deref().map(parse_time).transpose()?.unwrap_or(0);
    let mut s = c
        .events()
        .subscribe(pb::EventsRequest { since, until, filters })
        .await
        .map_err(DaemonError::from)?
        .into_inner();
    let mut out = std::io::stdout();
    while let Some(e) = s.message().await.map_err(DaemonError::from)? {
        let mut attrs: Vec<(&String, &String)> = e.attributes.iter().collect();
        attrs.sort();
        let line = match a.format.as_deref() {
            Some(f) => {
                let v = json!({
                    "Type": e.r#type, "Action": e.action, "ID": e.id, "id": e.id, "status": e.action,
                    "Actor": {"ID": e.id, "Attributes": e.attributes},
                    "time": e.time / 1_000_000_000, "timeNano": e.time,
                });
                crate::format::render(f, &v)?
            }
            None => {
                let a: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "{} {} {} {} ({})",
                    format_nanos(e.time),
                    e.r#type,
                    e.action,
                    e.id,
                    a.join(", ")
                )
            }
        };
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    pub container: String,
}

/// `diff`: `A /path`, `C /path`, `D /path`.
pub async fn diff(c: &Client, a: DiffArgs) -> Result<u8> {
    let r = c
        .containers()
        .diff(pb::DiffRequest { id: a.container })
        .await
        .map_err(DaemonError::from)?
        .into_inner();
    for ch in r.changes {
        println!("{} {}", ch.kind, ch.path);
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

/// `port`: the container's published ports (docker's `PRIVATE/PROTO -> HOST_IP:HOST_PORT`),
/// or the host addresses of one; a port not published is docker's error.
pub async fn port(c: &Client, a: PortArgs) -> Result<u8> {
    let doc = inspect_doc(c, &a.container).await?;
    let ports = doc["NetworkSettings"]["Ports"].as_object().cloned().unwrap_or_default();
    match a.port {
        None => {
            for (k, v) in &ports {
                for b in v.as_array().into_iter().flatten() {
                    println!(
                        "{k} -> {}:{}",
                        b["HostIp"].as_str().unwrap_or(""),
                        b["HostPort"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(0)
        }
        Some(p) => {
            let key = if p.contains('/') { p.clone() } else { format!("{p}/tcp") };
            match ports.get(&key).and_then(Value::as_array).filter(|v| !v.is_empty()) {
                Some(bs) => {
                    for b in bs {
                        println!(
                            "{}:{}",
                            b["HostIp"].as_str().unwrap_or(""),
                            b["HostPort"].as_str().unwrap_or("")
                        );
                    }
                    Ok(0)
                }
                None => {
                    let name = doc["Name"].as_str().unwrap_or("").trim_start_matches('/');
                    eprintln!("Error: No public port '{key}' published for {name}");
                    Err(Exit(1).into())
                }
            }
        }
    }
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    pub container: String,
}

/// `export`: the container's file system as a tar (to a file, or to a redirected stdout).
pub async fn export(c: &Client, a: ExportArgs) -> Result<u8> {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let s = c
        .containers()
        .export(pb::ExportRequest { id: a.container })
        .await
        .map_err(DaemonError::from)?
        .into_inner();
    super::archive::write_chunks(s, a.output.as_deref()).await?;
    Ok(0)
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pause: bool,
    pub container: String,
    /// REPOSITORY[:TAG]
    pub repository: Option<String>,
}

pub async fn commit(c: &Client, a: CommitArgs) -> Result<u8> {
    let r = c
        .containers()
        .commit(pb::CommitRequest {
            id: a.container,
            reference: a.repository.unwrap_or_default(),
            changes: a.change,
            message: a.message.unwrap_or_default(),
            author: a.author.unwrap_or_default(),
            pause: a.pause,
        })
        .await
        .map_err(DaemonError::from)?
        .into_inner();
    println!("{}", r.id);
    Ok(0)
}

#[derive(Args, Debug)]
pub struct TopArgs {
    pub container: String,
    /// ps options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

pub async fn top(c: &Client, a: TopArgs) -> Result<u8> {
    let r = c
        .containers()
        .top(pb::TopRequest {
            id: a.container,
            ps_args: a.ps_args,
        })
        .await
        .map_err(DaemonError::from)?
        .into_inner();
    let titles: Vec<&str> = r.titles.iter().map(String::as_str).collect();
    let rows: Vec<Vec<String>> = r.processes.into_iter().map(|p| p.columns).collect();
    print!("{}", crate::format::table(&titles, &rows));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_and_mounts() {
        let v = parse_volume("/src:/dst:ro").unwrap();
        assert_eq!((v.r#type.as_str(), v.read_only, v.create_source), ("bind", true, true));
        assert_eq!(parse_volume("/data").unwrap().r#type, "volume");
        assert!(parse_volume("/a:b").is_err());
        assert!(parse_volume("/a:/b:bogus").is_err());
        assert!(parse_volume("a:b:c:d").is_err());
        let m = parse_mount("type=bind,source=/a,target=/b,readonly").unwrap();
        assert!(m.read_only && !m.create_source);
        assert!(parse_mount("type=bind,source=/a").is_err());
        let t = parse_tmpfs("/run:size=64k,mode=1777");
        assert_eq!(t.options, vec!["size=64k", "mode=1777"]);
    }

    #[test]
    fn sizes_times_and_status() {
        assert_eq!(parse_bytes("512m", "m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1g", "m").unwrap(), 1 << 30);
        assert!(parse_bytes("lots", "m").is_err());
        assert!(parse_time("2013-01-02T13:23:37Z").unwrap() > 0);
        assert!(parse_time("10m").unwrap() > 0);
        assert!(parse_time("soon").is_err());
        let s = 1_000_000_000i64;
        assert_eq!(status_text("running", 0, 0, 0, 180 * s), "Up 3 minutes");
        assert_eq!(status_text("exited", 3, 0, 8 * s, 10 * s), "Exited (3) 2 seconds ago");
        assert_eq!(status_text("created", 0, 0, 0, 0), "Created");
        assert_eq!(ellipsis("sh -c 'sleep 1000; echo'", 20), "sh -c 'sleep 1000; …");
    }

    #[test]
    fn start_failures_map_to_docker_codes() {
        assert_eq!(
            start_failure_code("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(start_failure_code("exec /etc: permission denied"), 126);
        assert_eq!(start_failure_code("something else"), 125);
    }
}
