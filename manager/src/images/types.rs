//! The image formats drayd reads: OCI image index / manifest / config (image-spec 1.1) and
//! their Docker schema 2 equivalents, which share the layout. Parsed leniently (unknown fields
//! ignored, as the spec asks) but checked strictly where a wrong value would do harm: digests
//! are validated, sizes non-negative, and schema 1 is refused with a clear error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What a pull asks a registry for, best first.
pub const MANIFEST_ACCEPT: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

/// An OS/architecture pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
    #[serde(default, rename = "os.version", skip_serializing_if = "String::is_empty")]
    pub os_version: String,
}

impl Platform {
    /// The host's platform (what a pull selects by default).
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        let variant = if architecture == "arm64" { "v8" } else { "" };
        Platform {
            architecture: architecture.into(),
            os: "linux".into(),
            variant: variant.into(),
            os_version: String::new(),
        }
    }

    /// Parses `os/arch[/variant]` (docker's --platform); empty means the host's.
    pub fn parse(s: &str) -> Result<Platform> {
        if s.is_empty() {
            return Ok(Platform::host());
        }
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || {
            Error::InvalidArgument(format!(
                "invalid platform {s:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64"
            ))
        };
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        let mut architecture = parts[1].to_ascii_lowercase();
        let mut variant = parts.get(2).map(|v| v.to_ascii_lowercase()).unwrap_or_default();
        // containerd's normalisation of common aliases.
        match architecture.as_str() {
            "x86_64" | "x86-64" => architecture = "amd64".into(),
            "aarch64" => {
                architecture = "arm64".into();
            }
            "armhf" => {
                architecture = "arm".into();
                variant = "v7".into();
            }
            _ => {}
        }
        if architecture == "arm64" && variant.is_empty() {
            variant = "v8".into();
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture,
            variant,
            os_version: String::new(),
        })
    }

    /// True when a manifest of platform `p` runs here as `self` asks.
    pub fn matches(&self, p: &Platform) -> bool {
        let norm_variant = |arch: &str, v: &str| -> String {
            if arch == "arm64" && v.is_empty() {
                "v8".into()
            } else {
                v.to_string()
            }
        };
        self.os == p.os
            && self.architecture == p.architecture
            && (self.variant.is_empty()
                || norm_variant(&self.architecture, &self.variant) == norm_variant(&p.architecture, &p.variant))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The parts of an image config drayd uses; the stored blob keeps every other field.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

/// `config.config`: the defaults a container of this image runs with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "User", default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(rename = "ExposedPorts", default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "Volumes", default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(rename = "WorkingDir", default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "StopSignal", default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
}

/// `config.rootfs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

/// One `config.history` entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// What a manifest-or-index blob turned out to be.
#[derive(Debug, Clone)]
pub enum Parsed {
    Index(Index),
    Manifest(Box<Manifest>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: i64,
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// Parses a manifest or an index, using the HTTP `Content-Type` and the body's own
/// `mediaType` (which must agree when both are set).
pub fn parse_manifest(data: &[u8], content_type: &str) -> Result<Parsed> {
    let bad = |why: String| Error::BadContent(format!("malformed manifest: {why}"));
    let probe: Probe = serde_json::from_slice(data).map_err(|e| bad(e.to_string()))?;
    let ct = content_type.split(';').next().unwrap_or("").trim();
    if [DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED].contains(&ct) || probe.schema_version == 1 {
        return Err(Error::Unsupported(
            "this image uses Docker's schema 1 manifest, which dray does not support (deprecated since 2017): push it again with a current docker or skopeo".into(),
        ));
    }
    if probe.schema_version != 2 {
        return Err(bad(format!("schemaVersion {} (expected 2)", probe.schema_version)));
    }
    let mt = if probe.media_type.is_empty() {
        ct.to_string()
    } else {
        probe.media_type.clone()
    };
    if !probe.media_type.is_empty()
        && !ct.is_empty()
        && ct != "application/json"
        && ct != "application/octet-stream"
        && ct != probe.media_type
    {
        return Err(bad(format!(
            "the registry says {ct:?} but the manifest says {:?}",
            probe.media_type
        )));
    }
    let is_index = match mt.as_str() {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        _ => probe.manifests.is_some() && probe.config.is_none(),
    };
    if is_index {
        let idx: Index = serde_json::from_slice(data).map_err(|e| bad(e.to_string()))?;
        for d in &idx.manifests {
            check_descriptor(d)?;
        }
        Ok(Parsed::Index(idx))
    } else {
        let m: Manifest = serde_json::from_slice(data).map_err(|e| bad(e.to_string()))?;
        check_descriptor(&m.config)?;
        for l in &m.layers {
            check_descriptor(l)?;
        }
        Ok(Parsed::Manifest(Box::new(m)))
    }
}

fn check_descriptor(d: &Descriptor) -> Result<()> {
    if d.size < 0 {
        return Err(Error::BadContent(format!(
            "descriptor {} has a negative size",
            d.digest
        )));
    }
    Ok(())
}

/// Parses an image config and checks what unpacking relies on.
pub fn parse_config(data: &[u8]) -> Result<ImageConfig> {
    let c: ImageConfig =
        serde_json::from_slice(data).map_err(|e| Error::BadContent(format!("malformed image config: {e}")))?;
    if c.rootfs.kind != "layers" {
        return Err(Error::BadContent(format!(
            "image config rootfs.type {:?} (expected \"layers\")",
            c.rootfs.kind
        )));
    }
    Ok(c)
}

/// How a layer blob is compressed, by media type (the unpacker also sniffs magic bytes).
pub fn is_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_LAYER | OCI_LAYER_GZIP | OCI_LAYER_ZSTD | DOCKER_LAYER_GZIP | DOCKER_FOREIGN_LAYER | ""
    ) || media_type.starts_with("application/vnd.oci.image.layer.")
}

/// Selects the manifest for `want` from an index: an exact variant match first, then any
/// variant of the architecture.
pub fn select_platform<'a>(idx: &'a Index, want: &Platform) -> Result<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = idx
        .manifests
        .iter()
        .filter(|d| matches!(d.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST | ""))
        .collect();
    if let Some(d) = candidates
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
    {
        return Ok(d);
    }
    let loose = Platform {
        variant: String::new(),
        ..want.clone()
    };
    if let Some(d) = candidates
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| loose.matches(p)))
    {
        return Ok(d);
    }
    let have: Vec<String> = candidates
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
        .collect();
    Err(Error::NotFound(format!(
        "no matching manifest for {want} in the manifest list entries (it has: {})",
        have.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    #[test]
    fn parses_manifests_and_indexes() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","digest":"{D}","size":7}},"layers":[{{"mediaType":"{DOCKER_LAYER_GZIP}","digest":"{D}","size":3}}]}}"#
        );
        assert!(matches!(
            parse_manifest(m.as_bytes(), DOCKER_MANIFEST).unwrap(),
            Parsed::Manifest(_)
        ));
        let i = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1,"platform":{{"architecture":"arm64","os":"linux"}}}},{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":2,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        let Parsed::Index(idx) = parse_manifest(i.as_bytes(), OCI_INDEX).unwrap() else {
            panic!()
        };
        assert_eq!(
            select_platform(&idx, &Platform::parse("linux/amd64").unwrap())
                .unwrap()
                .size,
            2
        );
        assert_eq!(
            select_platform(&idx, &Platform::parse("linux/arm64/v8").unwrap())
                .unwrap()
                .size,
            1
        );
        assert!(select_platform(&idx, &Platform::parse("linux/s390x").unwrap()).is_err());
    }

    #[test]
    fn refuses_bad_manifests() {
        assert!(matches!(
            parse_manifest(br#"{"schemaVersion":1,"fsLayers":[]}"#, ""),
            Err(Error::Unsupported(_))
        ));
        assert!(parse_manifest(b"not json", "").is_err());
        let neg = format!(r#"{{"schemaVersion":2,"config":{{"digest":"{D}","size":-1}},"layers":[]}}"#);
        assert!(parse_manifest(neg.as_bytes(), OCI_MANIFEST).is_err());
        let baddigest = r#"{"schemaVersion":2,"config":{"digest":"sha256:../../x","size":1},"layers":[]}"#;
        assert!(parse_manifest(baddigest.as_bytes(), OCI_MANIFEST).is_err());
        assert!(Platform::parse("linux").is_err());
        assert!(parse_config(br#"{"rootfs":{"type":"other","diff_ids":[]}}"#).is_err());
    }
}
