//! `import`: a root file system tarball (plain, gzip or zstd) becomes a one-layer image, as
//! `docker import` does. The tar is recompressed with gzip into the content store while its
//! diff ID is computed, then unpacked like any pulled layer (so it gets the same checks).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::sync::Arc;

use serde_json::json;

use super::archive::apply_changes;
use super::pull::{self, Lease, Reporter};
use super::types::{self, Descriptor, Platform, RunConfig};
use super::Store;
use crate::digest::{chain_ids, Algorithm, Digest, Hasher};
use crate::error::{Error, IoContext, Result};
use crate::meta::{now_nanos, ImageName, ImageRecord, LayerRecord, ResourceKind};
use crate::remote::Reference;

/// What `import` was asked for.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub reference: String,
    pub changes: Vec<String>,
    pub message: String,
    pub platform: String,
    /// Where the tarball came from, for the history comment ("-" for stdin).
    pub source: String,
    /// `commit`: the image the layer goes on top of, and the run config of the new image
    /// (the container's, before `changes`); the history entry's `created_by`; the author.
    pub base: Option<Digest>,
    pub run: Option<RunConfig>,
    pub created_by: String,
    pub author: String,
}

struct Hashing<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Imports a tarball; returns the image ID.
pub async fn import(
    store: Arc<Store>,
    r: impl Read + Send + 'static,
    opts: ImportOptions,
    rep: Reporter,
) -> Result<Digest> {
    let platform = Platform::parse(&opts.platform)?;
    let reference = if opts.reference.is_empty() {
        None
    } else {
        Some(Reference::parse(&opts.reference)?)
    };
    if reference.as_ref().is_some_and(|r| r.digest.is_some()) {
        return Err(Error::InvalidArgument(
            "import: the image name cannot have a digest".into(),
        ));
    }
    let mut run = opts.run.clone().unwrap_or_default();
    apply_changes(&opts.changes, &mut run)?;
    // commit: the base image's layers and config come first.
    let base = match &opts.base {
        Some(id) => {
            let rec = store
                .meta
                .image(id)?
                .ok_or_else(|| Error::NotFound(format!("No such image: {id}")))?;
            let raw: serde_json::Value = serde_json::from_slice(&store.content.read(id)?)
                .map_err(|e| Error::BadContent(format!("image config {id}: {e}")))?;
            Some((rec, raw))
        }
        None => None,
    };
    let lease = Lease::new(&store)?;
    let s2 = store.clone();
    // Recompress into a scratch file while hashing both streams.
    let (tmp, diff_id, blob, size) =
        tokio::task::spawn_blocking(move || -> Result<(std::path::PathBuf, Digest, Digest, u64)> {
            let dir = s2.root().join("tmp");
            std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
            let tmp = dir.join(format!("import-{}", now_nanos()));
            let f = File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
            let compressed = Hashing {
                inner: BufWriter::new(f),
                hasher: Hasher::new(Algorithm::Sha256),
            };
            let gz = flate2::write::GzEncoder::new(compressed, flate2::Compression::fast());
            let mut plain = Hashing {
                inner: gz,
                hasher: Hasher::new(Algorithm::Sha256),
            };
            let mut input = crate::unpack::decompress(r)?;
            let res = io::copy(&mut input, &mut plain);
            if let Err(e) = res {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::BadContent(format!("reading the tarball: {e}")));
            }
            let diff_id = plain.hasher.finish();
            let mut compressed = plain.inner.finish().ctx(|| "compressing the layer".into())?;
            compressed.flush().ctx(|| "writing the layer".into())?;
            let blob = compressed.hasher.finish();
            let size = std::fs::metadata(&tmp).ctx(|| "stat".into())?.len();
            Ok((tmp, diff_id, blob, size))
        })
        .await
        .map_err(|e| Error::io("import", io::Error::other(e.to_string())))??;
    let s3 = store.clone();
    let (tmp2, blob2) = (tmp.clone(), blob.clone());
    lease.add(ResourceKind::Blob, &blob.to_string())?;
    let stored = tokio::task::spawn_blocking(move || s3.content.write_file(&tmp2, Some(&blob2)).map(drop))
        .await
        .map_err(|e| Error::io("import", io::Error::other(e.to_string())));
    let _ = std::fs::remove_file(&tmp);
    stored??;

    let layer = Descriptor {
        media_type: types::OCI_LAYER_GZIP.into(),
        digest: blob.clone(),
        size: size as i64,
        platform: None,
        annotations: None,
        urls: None,
    };
    let mut descriptors: Vec<Descriptor> = Vec::new();
    let mut diff_ids: Vec<Digest> = Vec::new();
    if let Some((rec, _)) = &base {
        for l in &rec.layers {
            descriptors.push(Descriptor {
                media_type: l.media_type.clone(),
                digest: l.blob_digest.clone(),
                size: l.blob_size,
                platform: None,
                annotations: None,
                urls: None,
            });
            diff_ids.push(l.diff_id.clone());
        }
    }
    descriptors.push(layer.clone());
    diff_ids.push(diff_id.clone());
    let (sizes, _) = pull::stack_layers(&store, &descriptors, &diff_ids, None, &rep, &lease).await?;

    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut comment = format!(
        "Imported from {}",
        if opts.source.is_empty() { "-" } else { &opts.source }
    );
    if !opts.message.is_empty() {
        comment = opts.message.clone();
    }
    let config = match &base {
        // commit: the base config, its run config replaced, one more layer and history entry.
        Some((_, raw)) => {
            let mut c = raw.clone();
            c["created"] = json!(created);
            c["config"] = serde_json::to_value(&run).map_err(|e| Error::BadContent(e.to_string()))?;
            c["rootfs"] =
                json!({"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()});
            if !opts.author.is_empty() {
                c["author"] = json!(opts.author);
            }
            let mut entry = json!({"created": created, "created_by": opts.created_by});
            if !opts.message.is_empty() {
                entry["comment"] = json!(opts.message);
            }
            if !opts.author.is_empty() {
                entry["author"] = json!(opts.author);
            }
            match c["history"].as_array_mut() {
                Some(h) => h.push(entry),
                None => c["history"] = json!([entry]),
            }
            c
        }
        None => json!({
            "created": created,
            "architecture": platform.architecture,
            "os": platform.os,
            "config": run,
            "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
            "history": [{"created": created, "comment": comment}],
        }),
    };
    let cb = serde_json::to_vec(&config).map_err(|e| Error::BadContent(e.to_string()))?;
    let id = Digest::sha256_of(&cb);
    lease.add(ResourceKind::Blob, &id.to_string())?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": types::OCI_MANIFEST,
        "config": {"mediaType": types::OCI_CONFIG, "digest": id.to_string(), "size": cb.len()},
        "layers": descriptors,
    });
    let mb = serde_json::to_vec(&manifest).map_err(|e| Error::BadContent(e.to_string()))?;
    let md = Digest::sha256_of(&mb);
    lease.add(ResourceKind::Blob, &md.to_string())?;
    {
        let (s4, id2, cb2, md2, mb2) = (store.clone(), id.clone(), cb.clone(), md.clone(), mb.clone());
        tokio::task::spawn_blocking(move || {
            s4.content
                .write_blob(&id2, &cb2)
                .and_then(|_| s4.content.write_blob(&md2, &mb2))
        })
        .await
        .map_err(|e| Error::io("import", io::Error::other(e.to_string())))??;
    }
    let record = ImageRecord {
        id: id.clone(),
        manifest_digest: md,
        manifest_media_type: types::OCI_MANIFEST.into(),
        index_digest: None,
        config_size: cb.len() as i64,
        created,
        stored_at: now_nanos(),
        size: sizes.iter().sum(),
        layers: descriptors
            .iter()
            .zip(diff_ids.iter().zip(chain_ids(&diff_ids)))
            .map(|(d, (diff_id, chain_id))| LayerRecord {
                diff_id: diff_id.clone(),
                chain_id,
                blob_digest: d.digest.clone(),
                blob_size: d.size,
                media_type: d.media_type.clone(),
            })
            .collect(),
    };
    let names: Vec<ImageName> = reference
        .and_then(|r| r.tagged())
        .map(|t| ImageName {
            name: t,
            image_id: id.clone(),
            is_digest: false,
        })
        .into_iter()
        .collect();
    store.meta.clone().run(move |m| m.put_image(&record, &names)).await?;
    drop(lease);
    // commit publishes its own event (on the container); an import is the image's.
    if opts.base.is_none() {
        store.events.publish("image", "import", &id.to_string(), &[]);
    }
    Ok(id)
}
