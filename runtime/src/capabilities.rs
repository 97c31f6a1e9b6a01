//! `process.capabilities` (config.md "Linux process"): the five capability sets.
//!
//! Applied in two steps around the uid switch (see [`crate::user`]): the bounding set is
//! reduced while the init is still fully privileged, then after `setresuid` (with
//! PR_SET_KEEPCAPS) inheritable, effective, permitted and ambient are set.

use crate::error::{Error, Result};
use caps::{CapSet, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};
use std::str::FromStr;

/// Converts spec capabilities to the `caps` crate's type. Capabilities unknown to this kernel
/// are skipped with a warning, as runc does.
pub fn to_caps(set: Option<&Capabilities>) -> CapsHashSet {
    let mut out = CapsHashSet::new();
    let all = supported();
    for c in set.into_iter().flatten() {
        let name = format!("CAP_{c}");
        match caps::Capability::from_str(&name) {
            Ok(cap) if all.contains(&cap) => {
                out.insert(cap);
            }
            _ => tracing::warn!("capability {name} is not supported by this kernel; ignored"),
        }
    }
    out
}

/// The capabilities this kernel knows (from /proc/sys/kernel/cap_last_cap), read once. The
/// runtime reads them before it forks the init (the container's /proc may be masked).
pub fn supported() -> &'static CapsHashSet {
    static ALL: std::sync::OnceLock<CapsHashSet> = std::sync::OnceLock::new();
    ALL.get_or_init(|| caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all()))
}

/// Drops every capability outside the configured bounding set. The set is not read first:
/// dropping a capability that is not in it succeeds, and when it fails (a runtime without
/// CAP_SETPCAP, a capability this kernel lacks) it is an error only if the capability is there.
pub fn apply_bounding(c: &LinuxCapabilities) -> Result<()> {
    let want = to_caps(c.bounding().as_ref());
    for cap in supported().difference(&want) {
        if let Err(e) = caps::drop(None, CapSet::Bounding, *cap) {
            if caps::has_cap(None, CapSet::Bounding, *cap).unwrap_or(false) {
                return Err(Error::msg(format!("dropping {cap} from the bounding set: {e}")));
            }
        }
    }
    Ok(())
}

/// Sets the inheritable, effective, permitted and ambient sets (after the uid switch).
pub fn apply_sets(c: &LinuxCapabilities) -> Result<()> {
    let set = |s: CapSet, v: CapsHashSet, what: &str| {
        caps::set(None, s, &v).map_err(|e| Error::msg(format!("setting the {what} capability set: {e}")))
    };
    set(CapSet::Inheritable, to_caps(c.inheritable().as_ref()), "inheritable")?;
    let permitted = to_caps(c.permitted().as_ref());
    let effective = to_caps(c.effective().as_ref());
    if let Some(x) = effective.difference(&permitted).next() {
        return Err(Error::msg(format!(
            "effective capability {x} is not in the permitted set"
        )));
    }
    set(CapSet::Effective, effective, "effective")?;
    set(CapSet::Permitted, permitted, "permitted")?;
    // An ambient capability must also be permitted and inheritable; like runc, a capability
    // that cannot be raised is skipped with a warning.
    caps::clear(None, CapSet::Ambient).map_err(|e| Error::msg(format!("clearing the ambient set: {e}")))?;
    for cap in to_caps(c.ambient().as_ref()) {
        if let Err(e) = caps::raise(None, CapSet::Ambient, cap) {
            tracing::warn!("cannot raise ambient capability {cap}: {e}");
        }
    }
    Ok(())
}

/// No capabilities at all (every set empty), for a process without `capabilities`.
pub fn none() -> LinuxCapabilities {
    let mut c = LinuxCapabilities::default();
    c.set_bounding(Some(Capabilities::new()));
    c.set_effective(Some(Capabilities::new()));
    c.set_inheritable(Some(Capabilities::new()));
    c.set_permitted(Some(Capabilities::new()));
    c.set_ambient(Some(Capabilities::new()));
    c
}

/// Parses a capability name (`CAP_NET_ADMIN` or `NET_ADMIN`) into the spec's type.
pub fn parse(name: &str) -> Result<oci_spec::runtime::Capability> {
    let up = name.to_ascii_uppercase();
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    serde_json::from_value(serde_json::Value::String(full.clone()))
        .map_err(|_| Error::msg(format!("unknown capability {name:?}")))
}
