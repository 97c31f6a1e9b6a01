//! drayd's configuration: command-line flags named as dockerd names them, and a TOML file
//! (`--config`) whose every key is optional. Flags win over the file.
//!
//! ```toml
//! data-root = "/var/lib/dray"          # blobs, snapshots, the database
//! exec-root = "/run/drayd"             # socket, lock, per-run state
//! host = "unix:///run/drayd/drayd.sock"
//! log-level = "info"                   # error, warn, info, debug, trace
//! max-concurrent-downloads = 3         # layers fetched at once per pull (docker's default)
//! max-concurrent-uploads = 5
//! insecure-registries = ["myhost:5000"] # plain HTTP (loopback hosts always are)
//! registry-mirrors = ["http://127.0.0.1:5001"]  # mirrors of docker.io, tried first
//! snapshotter = "overlayfs"            # or "native" (plain copies; the default where
//!                                      # overlayfs cannot be mounted on the data root)
//!
//! [registry."myhost:5000"]             # per registry host
//! mirrors = ["http://mirror:5000"]
//! insecure = true
//! ca-file = "/etc/dray/certs/myhost.pem"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The default data root (dockerd: /var/lib/docker).
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/dray";
/// The default exec root (dockerd: /var/run/docker); distinct from the runtime's /run/dray.
pub const DEFAULT_EXEC_ROOT: &str = "/run/drayd";

/// The file as written: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub data_root: Option<PathBuf>,
    pub exec_root: Option<PathBuf>,
    pub host: Option<String>,
    pub log_level: Option<String>,
    pub max_concurrent_downloads: Option<usize>,
    pub max_concurrent_uploads: Option<usize>,
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    #[serde(default)]
    pub registry_mirrors: Vec<String>,
    pub snapshotter: Option<String>,
    #[serde(default)]
    pub registry: BTreeMap<String, RegistryHost>,
    /// The runtime (shim) of containers that name none (dockerd's default-runtime).
    pub default_runtime: Option<String>,
    /// The init binary of `--init` (dockerd's init-path).
    pub init_path: Option<PathBuf>,
    /// The default network's Linux bridge (dockerd's bridge; default dray0).
    pub bridge: Option<String>,
    /// The default network's subnet (dockerd's bip; default 172.29.0.0/16).
    pub bridge_subnet: Option<String>,
    /// Directories of the CNI plugins (default /usr/lib/cni, /opt/cni/bin, /usr/libexec/cni).
    pub cni_plugin_dirs: Option<Vec<PathBuf>>,
}

/// Settings of one registry host.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistryHost {
    /// Endpoints (`http[s]://host[:port]`) tried before the host itself.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Plain HTTP instead of HTTPS.
    #[serde(default)]
    pub insecure: bool,
    /// A PEM file of CA certificates trusted for this host (beside the system's).
    pub ca_file: Option<PathBuf>,
}

/// Which snapshotter unpacks layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotterKind {
    /// overlayfs: one directory per layer, stacked at mount time.
    Overlay,
    /// plain copies: each snapshot is a full copy of its parent (where overlayfs is missing).
    Native,
}

/// The resolved configuration drayd runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// The unix socket path the API listens on.
    pub socket: PathBuf,
    pub log_level: String,
    pub max_concurrent_downloads: usize,
    pub max_concurrent_uploads: usize,
    /// Per registry host ("docker.io", "localhost:5000").
    pub registries: BTreeMap<String, RegistryHost>,
    /// None: overlayfs where it works, else native.
    pub snapshotter: Option<SnapshotterKind>,
    /// A shim name (`io.containerd.dray.v2`, `io.containerd.runc.v2`) or path.
    pub default_runtime: String,
    /// `--init`'s binary, when there is one.
    pub init_path: Option<PathBuf>,
    pub network: crate::network::Settings,
}

/// The default runtime: dray's own shim.
pub const DEFAULT_RUNTIME: &str = "io.containerd.dray.v2";

/// docker's init (tini, statically linked so that it runs in any image).
fn find_init() -> Option<PathBuf> {
    [
        "/usr/bin/docker-init",
        "/usr/bin/tini-static",
        "/usr/libexec/docker/docker-init",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// Flags given on the command line (None: not given).
#[derive(Debug, Default)]
pub struct Flags {
    pub data_root: Option<PathBuf>,
    pub exec_root: Option<PathBuf>,
    pub host: Option<String>,
    pub config: Option<PathBuf>,
    pub log_level: Option<String>,
}

impl Config {
    /// Reads the config file (if named) and lays the flags over it.
    pub fn load(flags: Flags) -> Result<Config> {
        let file = match &flags.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        Config::resolve(file, flags)
    }

    /// Combines a parsed file with the flags; checks every value.
    pub fn resolve(file: FileConfig, flags: Flags) -> Result<Config> {
        let data_root = flags
            .data_root
            .or(file.data_root)
            .unwrap_or_else(|| DEFAULT_DATA_ROOT.into());
        let exec_root = flags
            .exec_root
            .or(file.exec_root)
            .unwrap_or_else(|| DEFAULT_EXEC_ROOT.into());
        for (what, p) in [("data-root", &data_root), ("exec-root", &exec_root)] {
            if !p.is_absolute() {
                return Err(Error::InvalidArgument(format!(
                    "{what} {} must be an absolute path",
                    p.display()
                )));
            }
        }
        if exec_root == Path::new("/run/dray") {
            return Err(Error::InvalidArgument(
                "exec-root /run/dray is the dray runtime's state directory: choose another".into(),
            ));
        }
        let socket = match flags.host.or(file.host) {
            Some(h) => parse_host(&h)?,
            None => exec_root.join("drayd.sock"),
        };
        let log_level = flags.log_level.or(file.log_level).unwrap_or_else(|| "info".into());
        if !matches!(log_level.as_str(), "error" | "warn" | "info" | "debug" | "trace") {
            return Err(Error::InvalidArgument(format!(
                "log level {log_level:?}: expected error, warn, info, debug or trace"
            )));
        }
        let positive = |what: &str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(Error::InvalidArgument(format!("{what} must be at least 1"))),
            Some(n) => Ok(n),
            None => Ok(default),
        };
        let mut registries = file.registry;
        for host in &file.insecure_registries {
            registries.entry(host.clone()).or_default().insecure = true;
        }
        if !file.registry_mirrors.is_empty() {
            let hub = registries.entry("docker.io".into()).or_default();
            for m in &file.registry_mirrors {
                if !hub.mirrors.contains(m) {
                    hub.mirrors.push(m.clone());
                }
            }
        }
        for (host, r) in &registries {
            for m in &r.mirrors {
                if !(m.starts_with("http://") || m.starts_with("https://")) {
                    return Err(Error::InvalidArgument(format!(
                        "mirror {m:?} of {host}: expected http://HOST[:PORT] or https://HOST[:PORT]"
                    )));
                }
            }
        }
        let snapshotter = match file.snapshotter.as_deref() {
            None => None,
            Some("overlayfs") | Some("overlay") => Some(SnapshotterKind::Overlay),
            Some("native") => Some(SnapshotterKind::Native),
            Some(other) => {
                return Err(Error::InvalidArgument(format!(
                    "snapshotter {other:?}: expected overlayfs or native"
                )))
            }
        };
        Ok(Config {
            data_root,
            exec_root,
            socket,
            log_level,
            max_concurrent_downloads: positive("max-concurrent-downloads", file.max_concurrent_downloads, 3)?,
            max_concurrent_uploads: positive("max-concurrent-uploads", file.max_concurrent_uploads, 5)?,
            registries,
            snapshotter,
            default_runtime: file.default_runtime.unwrap_or_else(|| DEFAULT_RUNTIME.into()),
            init_path: file.init_path.or_else(find_init),
            network: {
                let d = crate::network::Settings::default();
                let bridge = file.bridge.unwrap_or(d.bridge_name);
                if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ', ':']) {
                    return Err(Error::InvalidArgument(format!(
                        "bridge {bridge:?}: an interface name of 1 to 15 characters"
                    )));
                }
                let subnet = file.bridge_subnet.unwrap_or(d.bridge_subnet);
                crate::network::Cidr::parse(&subnet)?;
                crate::network::Settings {
                    bridge_name: bridge,
                    bridge_subnet: subnet,
                    plugin_dirs: file.cni_plugin_dirs.unwrap_or(d.plugin_dirs),
                }
            },
        })
    }
}

impl FileConfig {
    /// Parses a TOML config file.
    pub fn read(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading config file {}", path.display()), e))?;
        toml::from_str(&text)
            .map_err(|e| Error::InvalidArgument(format!("config file {}: {}", path.display(), e.message())))
    }
}

/// `unix:///path` (or a bare absolute path) → the socket path. TCP is refused: the API has no
/// authentication, so it is only offered on a root-owned unix socket.
pub fn parse_host(h: &str) -> Result<PathBuf> {
    let path = h.strip_prefix("unix://").unwrap_or(h);
    if h.starts_with("tcp://") || h.starts_with("fd://") {
        return Err(Error::InvalidArgument(format!(
            "host {h:?}: drayd listens only on unix sockets (unix:///PATH)"
        )));
    }
    if !path.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "host {h:?}: expected unix:///ABSOLUTE/PATH"
        )));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::resolve(FileConfig::default(), Flags::default()).unwrap();
        assert_eq!(c.data_root, Path::new("/var/lib/dray"));
        assert_eq!(c.socket, Path::new("/run/drayd/drayd.sock"));
        assert_eq!(c.max_concurrent_downloads, 3);
        assert_eq!(c.log_level, "info");
    }

    #[test]
    fn file_and_flags() {
        let file: FileConfig = toml::from_str(
            r#"
            data-root = "/d"
            insecure-registries = ["reg:5000"]
            registry-mirrors = ["http://127.0.0.1:5001"]
            [registry."reg:5000"]
            ca-file = "/ca.pem"
            "#,
        )
        .unwrap();
        let flags = Flags {
            data_root: Some("/flag".into()),
            host: Some("unix:///s.sock".into()),
            ..Flags::default()
        };
        let c = Config::resolve(file, flags).unwrap();
        assert_eq!(c.data_root, Path::new("/flag"));
        assert_eq!(c.socket, Path::new("/s.sock"));
        assert!(c.registries["reg:5000"].insecure);
        assert_eq!(c.registries["reg:5000"].ca_file.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(
            c.registries["docker.io"].mirrors,
            vec!["http://127.0.0.1:5001".to_string()]
        );
    }

    #[test]
    fn bad_values() {
        assert!(toml::from_str::<FileConfig>("unknown-key = 1").is_err());
        let bad = |f: Flags| Config::resolve(FileConfig::default(), f).is_err();
        assert!(bad(Flags {
            exec_root: Some("/run/dray".into()),
            ..Flags::default()
        }));
        assert!(bad(Flags {
            data_root: Some("rel".into()),
            ..Flags::default()
        }));
        assert!(bad(Flags {
            host: Some("tcp://0.0.0.0:2375".into()),
            ..Flags::default()
        }));
        assert!(bad(Flags {
            log_level: Some("loud".into()),
            ..Flags::default()
        }));
    }
}
