//! Image archives in and out.
//!
//! `save` writes one tar that is both an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/`) and, unless `oci-archive` is asked for, a docker-archive (`manifest.json`, as
//! docker 25 writes it): docker, podman and skopeo all read it. Blobs are written as stored,
//! so digests survive a round trip.
//!
//! `load` reads a docker-archive (legacy `<id>/layer.tar` directories or the combined form),
//! an oci-archive, or a tar of an OCI layout. The archive is first unpacked into a private
//! directory under `<data-root>/tmp` with the same name rules as layers (no `..`, no absolute
//! paths, links resolved within the archive only); every blob then enters the content store
//! through a verified ingest, and the layers are unpacked as a pull unpacks them.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use super::pull::{self, Lease, Reporter};
use super::types::{self, Descriptor, Parsed, Platform};
use super::{Image, Store};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::meta::{now_nanos, ImageName, ResourceKind};
use crate::remote::reference::familiar_full;
use crate::remote::Reference;
use dray_archive::apply::clean_name;
use dray_archive::writer::TarWriter;

/// What `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// docker-archive + OCI layout in one tar.
    Docker,
    /// OCI layout only.
    Oci,
}

impl SaveFormat {
    pub fn parse(s: &str) -> Result<SaveFormat> {
        match s {
            "" | "docker-archive" | "docker" => Ok(SaveFormat::Docker),
            "oci-archive" | "oci" => Ok(SaveFormat::Oci),
            other => Err(Error::InvalidArgument(format!(
                "unknown format {other:?}: expected docker-archive or oci-archive"
            ))),
        }
    }
}

/// Where an OCI layout keeps a blob.
fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().name(), d.hex())
}

/// Writes the named images as one archive to `out`.
pub fn save(store: &Store, refs: &[String], format: SaveFormat, out: impl Write) -> Result<()> {
    if refs.is_empty() {
        return Err(Error::InvalidArgument("save needs at least one image".into()));
    }
    let mut images: Vec<(Image, Vec<String>)> = Vec::new();
    for r in refs {
        let img = store.resolve(r)?;
        // A name saves that name; an ID saves the image without names (as docker does).
        let tags: Vec<String> = match Reference::parse(r) {
            Ok(parsed) if parsed.digest.is_none() && img.tags.iter().any(|t| Some(t) == parsed.tagged().as_ref()) => {
                parsed.tagged().into_iter().collect()
            }
            _ => Vec::new(),
        };
        match images.iter_mut().find(|(i, _)| i.record.id == img.record.id) {
            Some((_, t)) => t.extend(tags),
            None => images.push((img, tags)),
        }
    }
    let w = |e: io::Error| Error::io("writing the archive", e);
    let mut tar = TarWriter::new(out);
    tar.dir("blobs").map_err(w)?;
    tar.dir("blobs/sha256").map_err(w)?;
    let mut written = std::collections::HashSet::new();
    let mut written_dirs = std::collections::HashSet::new();
    let mut index = Vec::new();
    let mut docker_manifest = Vec::new();
    for (img, tags) in &images {
        let rec = &img.record;
        let mut blobs = vec![rec.id.clone(), rec.manifest_digest.clone()];
        blobs.extend(rec.layers.iter().map(|l| l.blob_digest.clone()));
        for d in blobs {
            if !written.insert(d.clone()) {
                continue;
            }
            let f = store.content.open_blob(&d)?;
            let size = f.metadata().ctx(|| format!("stat of blob {d}"))?.len();
            if d.algorithm() != crate::digest::Algorithm::Sha256 && written_dirs.insert(d.algorithm()) {
                tar.dir(&format!("blobs/{}", d.algorithm().name())).map_err(w)?;
            }
            tar.file_from(&blob_path(&d), size, f).map_err(w)?;
        }
        let msize = store.content.size(&rec.manifest_digest).unwrap_or(0);
        let names: Vec<Option<String>> = if tags.is_empty() {
            vec![None]
        } else {
            tags.iter().cloned().map(Some).collect()
        };
        for name in names {
            let mut d =
                json!({"mediaType": rec.manifest_media_type, "digest": rec.manifest_digest.to_string(), "size": msize});
            if let Some(n) = &name {
                let tag = n.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
                d["annotations"] = json!({"io.containerd.image.name": n, "org.opencontainers.image.ref.name": tag});
            }
            index.push(d);
        }
        docker_manifest.push(json!({
            "Config": blob_path(&rec.id),
            "RepoTags": if tags.is_empty() { Value::Null } else { json!(tags.iter().map(|t| familiar_full(t)).collect::<Vec<_>>()) },
            "Layers": rec.layers.iter().map(|l| blob_path(&l.blob_digest)).collect::<Vec<_>>(),
        }));
    }
    let idx = json!({"schemaVersion": 2, "mediaType": types::OCI_INDEX, "manifests": index});
    tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(w)?;
    tar.file("index.json", idx.to_string().as_bytes()).map_err(w)?;
    if format == SaveFormat::Docker {
        tar.file("manifest.json", Value::Array(docker_manifest).to_string().as_bytes())
            .map_err(w)?;
    }
    tar.finish().map_err(w)?;
    Ok(())
}

/// A private directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The unpacked archive: regular files on disk, symlinks as a map.
struct Unpacked {
    dir: Scratch,
    links: HashMap<PathBuf, PathBuf>,
}

impl Unpacked {
    /// Resolves an archive path (following the archive's own symlinks) to a file on disk.
    fn path(&self, name: &str) -> Result<PathBuf> {
        let mut rel =
            clean_name(name.as_bytes())?.ok_or_else(|| Error::BadContent(format!("archive path {name:?}")))?;
        for _ in 0..16 {
            match self.links.get(&rel) {
                Some(t) => rel = t.clone(),
                None => return Ok(self.dir.0.join(rel)),
            }
        }
        Err(Error::BadContent(format!("archive path {name:?}: too many links")))
    }

    fn read(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let p = self.path(name)?;
        let f = File::open(&p).map_err(|e| Error::BadContent(format!("the archive has no {name} ({e})")))?;
        let mut buf = Vec::new();
        f.take(limit + 1)
            .read_to_end(&mut buf)
            .ctx(|| format!("reading {name}"))?;
        if buf.len() as u64 > limit {
            return Err(Error::BadContent(format!(
                "{name} in the archive is larger than {limit} bytes"
            )));
        }
        Ok(buf)
    }
}

/// Unpacks the archive's files (no special files, no links on disk) into a scratch directory.
fn unpack_archive(store: &Store, r: impl Read) -> Result<Unpacked> {
    let tmp = store.root().join("tmp");
    fs::create_dir_all(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
    let dir = tmp.join(format!("load-{}", now_nanos()));
    fs::create_dir(&dir).ctx(|| format!("creating {}", dir.display()))?;
    let scratch = Scratch(dir);
    let mut links = HashMap::new();
    let mut a = tar::Archive::new(dray_archive::guard::TarGuard::new(r));
    let bad = |e: io::Error| Error::BadContent(format!("reading the archive: {e}"));
    for e in a.entries().map_err(bad)? {
        let mut e = e.map_err(bad)?;
        let raw = e.path_bytes().into_owned();
        let Some(rel) = clean_name(&raw)? else { continue };
        match e.header().entry_type() {
            tar::EntryType::Directory => {
                fs::create_dir_all(scratch.0.join(&rel)).ctx(|| format!("unpacking {}", rel.display()))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let p = scratch.0.join(&rel);
                if let Some(parent) = p.parent() {
                    fs::create_dir_all(parent).ctx(|| format!("unpacking {}", rel.display()))?;
                }
                let mut f = File::create(&p).ctx(|| format!("unpacking {}", rel.display()))?;
                io::copy(&mut e, &mut f).map_err(bad)?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| Error::BadContent("link without a target".into()))?;
                let t = if e.header().entry_type() == tar::EntryType::Symlink && !target.starts_with(b"/") {
                    let base = rel.parent().map(Path::to_path_buf).unwrap_or_default();
                    let mut joined = base.into_os_string().into_encoded_bytes();
                    joined.push(b'/');
                    joined.extend_from_slice(&target);
                    clean_name(&joined)?
                } else {
                    clean_name(&target)?
                };
                if let Some(t) = t {
                    links.insert(rel, t);
                }
            }
            _ => {}
        }
    }
    Ok(Unpacked { dir: scratch, links })
}

/// Stores a file of the archive as a blob, leased first; returns its digest and size.
fn store_file(store: &Store, lease: &Lease, path: &Path, expected: Option<&Digest>) -> Result<(Digest, i64)> {
    let digest = match expected {
        Some(d) => d.clone(),
        None => crate::content::digest_file(path)?,
    };
    lease.add(ResourceKind::Blob, &digest.to_string())?;
    let (digest, size) = store.content.write_file(path, Some(&digest))?;
    Ok((digest, size as i64))
}

/// One image found in an archive, its blobs already in the content store.
struct Found {
    manifest_digest: Digest,
    manifest_media_type: String,
    manifest: types::Manifest,
    config: Vec<u8>,
    names: Vec<String>,
}

fn media_type_of_layer(path: &Path) -> Result<&'static str> {
    let mut head = [0u8; 4];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .ctx(|| format!("reading {}", path.display()))?;
    Ok(match crate::unpack::sniff(&head[..n]) {
        crate::unpack::Compression::Gzip => types::DOCKER_LAYER_GZIP,
        crate::unpack::Compression::Zstd => types::OCI_LAYER_ZSTD,
        crate::unpack::Compression::None => "application/vnd.docker.image.rootfs.diff.tar",
    })
}

fn docker_archive(store: &Store, lease: &Lease, u: &Unpacked) -> Result<Vec<Found>> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "Config")]
        config: String,
        #[serde(rename = "RepoTags", default)]
        repo_tags: Option<Vec<String>>,
        #[serde(rename = "Layers")]
        layers: Vec<String>,
    }
    let entries: Vec<Entry> = serde_json::from_slice(&u.read("manifest.json", 16 << 20)?)
        .map_err(|e| Error::BadContent(format!("malformed manifest.json: {e}")))?;
    let mut out = Vec::new();
    for e in entries {
        let config = u.read(&e.config, crate::content::MAX_METADATA_BLOB)?;
        let config_digest = Digest::sha256_of(&config);
        lease.add(ResourceKind::Blob, &config_digest.to_string())?;
        store.content.write_blob(&config_digest, &config)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let p = u.path(l)?;
            let media_type = media_type_of_layer(&p)?;
            let (digest, size) = store_file(store, lease, &p, None)?;
            layers.push(Descriptor {
                media_type: media_type.into(),
                digest,
                size,
                platform: None,
                annotations: None,
                urls: None,
            });
        }
        // Docker's manifest types have no zstd layers: such an image gets OCI types throughout.
        let oci = layers.iter().any(|l| l.media_type == types::OCI_LAYER_ZSTD);
        if oci {
            for l in &mut layers {
                l.media_type = match l.media_type.as_str() {
                    types::DOCKER_LAYER_GZIP => types::OCI_LAYER_GZIP.into(),
                    types::OCI_LAYER_ZSTD => types::OCI_LAYER_ZSTD.into(),
                    _ => types::OCI_LAYER.into(),
                };
            }
        }
        let (manifest_type, config_type) = if oci {
            (types::OCI_MANIFEST, types::OCI_CONFIG)
        } else {
            (types::DOCKER_MANIFEST, types::DOCKER_CONFIG)
        };
        let manifest = types::Manifest {
            schema_version: 2,
            media_type: manifest_type.into(),
            config: Descriptor {
                media_type: config_type.into(),
                digest: config_digest,
                size: config.len() as i64,
                platform: None,
                annotations: None,
                urls: None,
            },
            layers,
            annotations: None,
        };
        let mb = serde_json::to_vec(&manifest).map_err(|e| Error::BadContent(e.to_string()))?;
        let md = Digest::sha256_of(&mb);
        lease.add(ResourceKind::Blob, &md.to_string())?;
        store.content.write_blob(&md, &mb)?;
        out.push(Found {
            manifest_digest: md,
            manifest_media_type: manifest_type.into(),
            manifest,
            config,
            names: e.repo_tags.unwrap_or_default(),
        });
    }
    Ok(out)
}

fn blob_of(u: &Unpacked, store: &Store, lease: &Lease, d: &Descriptor) -> Result<()> {
    let p = u.path(&blob_path(&d.digest))?;
    let (_, size) = store_file(store, lease, &p, Some(&d.digest))?;
    if size != d.size {
        return Err(Error::BadContent(format!(
            "blob {}: {size} bytes, its descriptor says {}",
            d.digest, d.size
        )));
    }
    Ok(())
}

fn oci_layout(store: &Store, lease: &Lease, u: &Unpacked) -> Result<Vec<Found>> {
    let index = u.read("index.json", crate::content::MAX_METADATA_BLOB)?;
    let Parsed::Index(idx) = types::parse_manifest(&index, types::OCI_INDEX)? else {
        return Err(Error::BadContent("index.json is not an image index".into()));
    };
    let host = Platform::host();
    let mut out = Vec::new();
    for d in &idx.manifests {
        let annotations = d.annotations.clone().unwrap_or_default();
        let name = annotations.get("io.containerd.image.name").cloned().or_else(|| {
            annotations
                .get("org.opencontainers.image.ref.name")
                .filter(|n| n.contains(['/', ':', '@']))
                .cloned()
        });
        blob_of(u, store, lease, d)?;
        let data = store.content.read(&d.digest)?;
        let (md, mdata) = match types::parse_manifest(&data, &d.media_type)? {
            Parsed::Index(inner) => {
                let m = types::select_platform(&inner, &host)?.clone();
                blob_of(u, store, lease, &m)?;
                let md = store.content.read(&m.digest)?;
                (m, md)
            }
            Parsed::Manifest(_) => (d.clone(), data),
        };
        let Parsed::Manifest(manifest) = types::parse_manifest(&mdata, &md.media_type)? else {
            return Err(Error::BadContent(format!("{} is an index inside an index", md.digest)));
        };
        blob_of(u, store, lease, &manifest.config)?;
        for l in &manifest.layers {
            blob_of(u, store, lease, l)?;
        }
        let config = store.content.read(&manifest.config.digest)?;
        let media_type = if manifest.media_type.is_empty() {
            md.media_type.clone()
        } else {
            manifest.media_type.clone()
        };
        out.push(Found {
            manifest_digest: md.digest.clone(),
            manifest_media_type: media_type,
            manifest: *manifest,
            config,
            names: name.into_iter().collect(),
        });
    }
    Ok(out)
}

/// Loads an archive from `r`; returns docker's lines ("Loaded image: …", "Loaded image ID: …").
pub async fn load(store: Arc<Store>, r: impl Read + Send + 'static, rep: Reporter) -> Result<Vec<String>> {
    let lease = Arc::new(Lease::new(&store)?);
    let (s2, l2) = (store.clone(), lease.clone());
    let found = tokio::task::spawn_blocking(move || -> Result<Vec<Found>> {
        let u = unpack_archive(&s2, r)?;
        // An OCI layout keeps the manifests as they were (same digests); a docker-archive
        // without one gets manifests made here.
        if u.path("index.json").map(|p| p.exists()).unwrap_or(false) {
            oci_layout(&s2, &l2, &u)
        } else if u.path("manifest.json").map(|p| p.exists()).unwrap_or(false) {
            docker_archive(&s2, &l2, &u)
        } else {
            Err(Error::BadContent(
                "not an image archive: it has neither manifest.json (docker-archive) nor index.json (OCI layout)"
                    .into(),
            ))
        }
    })
    .await
    .map_err(|e| Error::io("load", io::Error::other(e.to_string())))??;
    let mut lines = Vec::new();
    for f in found {
        let config = types::parse_config(&f.config)?;
        if config.rootfs.diff_ids.len() != f.manifest.layers.len() {
            return Err(Error::BadContent(format!(
                "image {}: {} layers but {} diff IDs",
                f.manifest.config.digest,
                f.manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let (sizes, _) =
            pull::stack_layers(&store, &f.manifest.layers, &config.rootfs.diff_ids, None, &rep, &lease).await?;
        let id = f.manifest.config.digest.clone();
        let record = super::image_record(
            &f.manifest,
            f.manifest_digest.clone(),
            f.manifest_media_type.clone(),
            None,
            &config,
            f.config.len(),
            &sizes,
        );
        let mut names = Vec::new();
        for n in &f.names {
            let r = Reference::parse(n)?;
            if let Some(t) = r.tagged() {
                names.push(ImageName {
                    name: t,
                    image_id: id.clone(),
                    is_digest: false,
                });
            }
        }
        let m = store.meta.clone();
        let (rec2, names2) = (record.clone(), names.clone());
        m.run(move |m| m.put_image(&rec2, &names2)).await?;
        store.events.publish("image", "load", &id.to_string(), &[]);
        if names.is_empty() {
            lines.push(format!("Loaded image ID: {id}"));
        } else {
            for n in &names {
                lines.push(format!("Loaded image: {}", familiar_full(&n.name)));
            }
        }
    }
    for l in &lines {
        rep.send_sure(pull::Action::Message, "", l).await;
    }
    drop(lease);
    Ok(lines)
}

/// Labels of docker's `import --change` instructions applied to a run config.
pub fn apply_changes(changes: &[String], cfg: &mut types::RunConfig) -> Result<()> {
    for c in changes {
        let c = c.trim();
        let (inst, rest) = c.split_once(char::is_whitespace).unwrap_or((c, ""));
        let rest = rest.trim();
        let list = |s: &str| -> Vec<String> {
            if s.starts_with('[') {
                serde_json::from_str::<Vec<String>>(s).unwrap_or_else(|_| vec![s.to_string()])
            } else {
                vec!["/bin/sh".into(), "-c".into(), s.to_string()]
            }
        };
        match inst.to_ascii_uppercase().as_str() {
            "CMD" => cfg.cmd = Some(list(rest)),
            "ENTRYPOINT" => cfg.entrypoint = Some(list(rest)),
            "ENV" => {
                let (k, v) = rest.split_once('=').or_else(|| rest.split_once(' ')).unwrap_or((rest, ""));
                let env = cfg.env.get_or_insert_with(Vec::new);
                env.retain(|e| e.split('=').next() != Some(k.trim()));
                env.push(format!("{}={}", k.trim(), v.trim().trim_matches('"')));
            }
            "WORKDIR" => cfg.working_dir = rest.to_string(),
            "USER" => cfg.user = rest.to_string(),
            "STOPSIGNAL" => cfg.stop_signal = rest.to_string(),
            "LABEL" => {
                let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
                cfg.labels.get_or_insert_with(BTreeMap::new).insert(k.trim().trim_matches('"').into(), v.trim().trim_matches('"').into());
            }
            "EXPOSE" => {
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') { p.to_string() } else { format!("{p}/tcp") };
                    cfg.exposed_ports.get_or_insert_with(BTreeMap::new).insert(p, json!({}));
                }
            }
            "VOLUME" => {
                let vols = if rest.starts_with('[') { list(rest) } else { rest.split_whitespace().map(str::to_string).collect() };
                for v in vols {
                    cfg.volumes.get_or_insert_with(BTreeMap::new).insert(v, json!({}));
                }
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "{other} is not a valid change command: expected CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME or WORKDIR"
                )))
            }
        }
    }
    Ok(())
}
