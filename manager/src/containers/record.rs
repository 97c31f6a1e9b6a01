//! The container record: what the user asked for ([`Options`], docker's Config + HostConfig),
//! what drayd resolved from the image ([`Resolved`]) and the lifecycle [`State`]. It is stored
//! whole, as JSON, in the database's `containers` table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `--restart`: docker's policies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// "no" (or empty), "always", "on-failure", "unless-stopped".
    pub name: String,
    pub maximum_retry_count: i32,
}

impl RestartPolicy {
    pub fn is_none(&self) -> bool {
        self.name.is_empty() || self.name == "no"
    }

    /// Validates docker's policy names and the retry count (only on-failure takes one).
    pub fn validate(&self) -> crate::Result<()> {
        match self.name.as_str() {
            "" | "no" | "always" | "unless-stopped" if self.maximum_retry_count != 0 => {
                Err(crate::Error::InvalidArgument(format!(
                    "maximum retry count cannot be used with restart policy '{}'",
                    self.name
                )))
            }
            "" | "no" | "always" | "unless-stopped" | "on-failure" => {
                if self.maximum_retry_count < 0 {
                    return Err(crate::Error::InvalidArgument(
                        "maximum retry count cannot be negative".into(),
                    ));
                }
                Ok(())
            }
            other => Err(crate::Error::InvalidArgument(format!(
                "invalid restart policy '{other}'"
            ))),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountOpt {
    /// "bind", "volume" or "tmpfs".
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub create_source: bool,
    pub tmpfs_size: i64,
    pub tmpfs_mode: u32,
    pub options: Vec<String>,
}

/// A network a container joins, with its names and fixed address there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkOpt {
    pub name: String,
    pub aliases: Vec<String>,
    pub ip: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceOpt {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

/// What the user asked for (docker's ContainerCreate body, flattened).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    pub image: String,
    pub cmd: Vec<String>,
    /// `Some` when `--entrypoint` was given (an empty list clears the image's).
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub stop_signal: String,
    pub stop_timeout: Option<i64>,
    /// `--expose`, beside the image's ExposedPorts.
    pub expose: Vec<String>,
    pub auto_remove: bool,
    pub restart_policy: RestartPolicy,
    pub read_only_rootfs: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub memory: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub pids_limit: Option<i64>,
    pub ulimits: Vec<Ulimit>,
    pub mounts: Vec<MountOpt>,
    pub devices: Vec<DeviceOpt>,
    pub shm_size: i64,
    pub runtime: String,
    pub init: bool,
    /// docker's NetworkMode: "" (the default bridge), "bridge", "host", "none",
    /// "container:NAME|ID" or a user-defined network's name.
    pub network_mode: String,
    /// `--network-alias` and `--ip` on the network of `network_mode`.
    pub network_aliases: Vec<String>,
    pub ip: String,
    /// Networks joined later (`network connect`), after the one of `network_mode`.
    pub extra_networks: Vec<NetworkOpt>,
    /// `-p` (host port 0: a free one at start) and `-P`.
    pub ports: Vec<crate::network::Binding>,
    pub publish_all: bool,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    /// `--add-host NAME:IP`.
    pub extra_hosts: Vec<String>,
    pub log_driver: String,
    pub log_opts: BTreeMap<String, String>,
    /// [height, width] of the terminal at creation.
    pub console_size: Vec<u32>,
}

/// The image's defaults merged with the options: what the container runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resolved {
    /// Entrypoint + Cmd as docker merges them.
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: String,
    pub stop_timeout: i64,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    /// The shim binary.
    pub shim: String,
    /// The runtime name as given or defaulted (docker's HostConfig.Runtime).
    pub runtime: String,
    /// The shim writes the json-file log itself (the dray shim); otherwise drayd does, from
    /// the FIFOs.
    pub shim_writes_log: bool,
}

impl Resolved {
    /// The process's argv.
    pub fn args(&self) -> Vec<String> {
        self.entrypoint.iter().chain(self.cmd.iter()).cloned().collect()
    }
}

/// docker's container states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// A task exists (the shim holds a process).
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

/// The lifecycle state (docker's `State`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub status: Status,
    pub pid: u32,
    pub exit_code: i64,
    pub error: String,
    pub oom_killed: bool,
    /// Unix nanoseconds; 0: never.
    pub started_at: i64,
    pub finished_at: i64,
    pub restart_count: i64,
    /// Stopped by the user (`stop`, `kill`): restart policies do not apply (docker's
    /// HasBeenManuallyStopped).
    pub manually_stopped: bool,
    /// What is set up for the container's network while it runs; recorded before the setup
    /// begins, so that a restart of drayd tears down exactly this.
    pub network: NetState,
}

/// A running container's network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetState {
    /// The namespace file (empty: none made by drayd).
    pub netns: String,
    pub endpoints: Vec<crate::network::Endpoint>,
    /// The published ports as bound.
    pub ports: Vec<crate::network::Binding>,
}

/// One container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    pub id: String,
    pub name: String,
    /// Unix nanoseconds.
    pub created: i64,
    /// The image as the user named it, and its ID.
    pub image: String,
    pub image_id: String,
    pub options: Options,
    pub resolved: Resolved,
    /// The read-write snapshot.
    pub snapshot_key: String,
    pub state: State,
}

impl Record {
    /// docker's `Command` column: the argv joined, quoted as docker does for display.
    pub fn command(&self) -> String {
        self.resolved.args().join(" ")
    }
}
