//! The runtime options containerd passes with a task (`containerd.runc.v1.Options`): which
//! runtime binary, its state root, and the flags it is run with.

use crate::errors::status;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::Options;
use std::path::{Path, PathBuf};
use ttrpc::{Code, Error as TtrpcError};

/// Where the runtime keeps state when the options name no root (per namespace below it).
pub const DEFAULT_ROOT: &str = "/run/containerd/dray";
/// The runtime when the options name none.
pub const DEFAULT_BINARY: &str = "dray";

/// The options containerd passes for the runtime (`containerd.runc.v1.Options`), kept in
/// `options.json` in the bundle for the `delete` action after a crash.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RuntimeOptions {
    pub binary_name: String,
    pub root: String,
    pub systemd_cgroup: bool,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
    pub io_uid: u32,
    pub io_gid: u32,
    #[serde(default)]
    pub shim_cgroup: String,
}

impl RuntimeOptions {
    /// Decodes the task options; other option types (CRI's runtimeoptions) leave defaults.
    pub fn from_any(a: Option<&Any>) -> Result<RuntimeOptions, TtrpcError> {
        let mut o = RuntimeOptions::default();
        if let Some(a) = a.filter(|a| a.type_url.ends_with("containerd.runc.v1.Options")) {
            let p = Options::parse_from_bytes(&a.value)
                .map_err(|e| status(Code::INVALID_ARGUMENT, format!("runtime options: {e}")))?;
            o = RuntimeOptions {
                binary_name: p.binary_name,
                root: p.root,
                systemd_cgroup: p.systemd_cgroup,
                no_pivot_root: p.no_pivot_root,
                no_new_keyring: p.no_new_keyring,
                io_uid: p.io_uid,
                io_gid: p.io_gid,
                shim_cgroup: p.shim_cgroup,
            };
        }
        Ok(o)
    }

    pub fn binary(&self) -> &str {
        if self.binary_name.is_empty() {
            DEFAULT_BINARY
        } else {
            &self.binary_name
        }
    }

    pub fn root_for(&self, ns: &str) -> PathBuf {
        let r = if self.root.is_empty() { DEFAULT_ROOT } else { &self.root };
        Path::new(r).join(ns)
    }

    pub fn load(bundle: &Path) -> RuntimeOptions {
        std::fs::read(bundle.join("options.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }
}
