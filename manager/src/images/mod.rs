//! Images: the store that ties content, snapshots and metadata together, and the operations
//! on images (pull, list, resolve, tag, remove).

pub mod archive;
pub mod import;
pub mod pull;
pub mod push;
pub mod types;

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::content::ContentStore;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::meta::{ImageName, ImageRecord, Meta};
use crate::remote::reference::familiar_full;
use crate::remote::{Reference, Registries};
use crate::snapshots::Snapshotter;

/// Everything image operations need; one per daemon.
pub struct Store {
    pub config: Config,
    pub meta: Meta,
    pub content: ContentStore,
    pub snapshots: Snapshotter,
    pub registries: Registries,
    /// Garbage collection against operations in progress: the collector holds it exclusively
    /// while it re-checks and removes one item; leasing holds it shared (see `gc::collect`).
    pub gc_gate: std::sync::RwLock<()>,
    /// The daemon's event bus (images here; containers and volumes publish to it too).
    pub events: crate::events::Bus,
}

/// An image with its names, as listed.
#[derive(Debug, Clone)]
pub struct Image {
    pub record: ImageRecord,
    /// Full names (`docker.io/library/busybox:latest`).
    pub tags: Vec<String>,
    pub digests: Vec<String>,
}

impl Image {
    /// docker's RepoTags (familiar names).
    pub fn repo_tags(&self) -> Vec<String> {
        self.tags.iter().map(|t| familiar_full(t)).collect()
    }

    /// docker's RepoDigests (familiar names).
    pub fn repo_digests(&self) -> Vec<String> {
        self.digests.iter().map(|t| familiar_full(t)).collect()
    }
}

/// The record of an image made of `manifest`'s layers and `config`, with each layer's
/// unpacked size (pull, load and import all end here).
pub(crate) fn image_record(
    manifest: &types::Manifest,
    manifest_digest: Digest,
    manifest_media_type: String,
    index_digest: Option<Digest>,
    config: &types::ImageConfig,
    config_size: usize,
    sizes: &[i64],
) -> ImageRecord {
    let chains = crate::digest::chain_ids(&config.rootfs.diff_ids);
    ImageRecord {
        id: manifest.config.digest.clone(),
        manifest_digest,
        manifest_media_type,
        index_digest,
        config_size: config_size as i64,
        created: config.created.clone().unwrap_or_default(),
        stored_at: crate::meta::now_nanos(),
        size: sizes.iter().sum(),
        layers: manifest
            .layers
            .iter()
            .zip(config.rootfs.diff_ids.iter().zip(chains))
            .map(|(l, (diff_id, chain_id))| crate::meta::LayerRecord {
                diff_id: diff_id.clone(),
                chain_id,
                blob_digest: l.digest.clone(),
                blob_size: l.size,
                media_type: l.media_type.clone(),
            })
            .collect(),
    }
}

impl Store {
    /// Opens the data root: the database, the content store and the snapshots; removes what a
    /// crash left half-made.
    pub fn open(config: Config) -> Result<Arc<Store>> {
        let root = &config.data_root;
        std::fs::create_dir_all(root).ctx(|| format!("creating data root {}", root.display()))?;
        let meta = Meta::open(&root.join("meta.db"))?;
        let content = ContentStore::open(&root.join("content"))?;
        let kind = config.snapshotter.unwrap_or(crate::config::SnapshotterKind::Overlay);
        let snapshots = Snapshotter::open(&root.join("snapshots"), meta.clone(), kind)?;
        snapshots.recover()?;
        // Scratch space of loads and imports that a crash interrupted.
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).ctx(|| format!("removing {}", tmp.display()))?;
        }
        let registries = Registries::new(config.registries.clone());
        Ok(Arc::new(Store {
            config,
            meta,
            content,
            snapshots,
            registries,
            gc_gate: std::sync::RwLock::new(()),
            events: crate::events::Bus::default(),
        }))
    }

    /// The data root.
    pub fn root(&self) -> &Path {
        &self.config.data_root
    }

    /// Every image with its names, newest first.
    pub fn list(&self) -> Result<Vec<Image>> {
        let names = self.meta.names()?;
        Ok(self
            .meta
            .images()?
            .into_iter()
            .map(|record| {
                let mine = names.iter().filter(|n| n.image_id == record.id);
                let (digests, tags): (Vec<&ImageName>, Vec<&ImageName>) = mine.partition(|n| n.is_digest);
                Image {
                    tags: tags.into_iter().map(|n| n.name.clone()).collect(),
                    digests: digests.into_iter().map(|n| n.name.clone()).collect(),
                    record,
                }
            })
            .collect())
    }

    /// Finds a local image as docker does: a full or short image ID (with or without
    /// `sha256:`), a name with tag (default `latest`) or digest.
    pub fn resolve(&self, s: &str) -> Result<Image> {
        let id = self.resolve_id(s)?;
        self.list()?
            .into_iter()
            .find(|i| i.record.id == id)
            .ok_or_else(|| Error::NotFound(format!("No such image: {s}")))
    }

    fn resolve_id(&self, s: &str) -> Result<Digest> {
        let hexish = s.strip_prefix("sha256:").unwrap_or(s);
        let is_hex =
            !hexish.is_empty() && hexish.len() <= 64 && hexish.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if let Ok(d) = s.parse::<Digest>() {
            if self.meta.image(&d)?.is_some() {
                return Ok(d);
            }
        }
        if is_hex {
            let ids = self.meta.image_ids_by_prefix(hexish)?;
            match ids.len() {
                1 => return Ok(ids[0].clone()),
                n if n > 1 => {
                    return Err(Error::InvalidArgument(format!(
                        "{s}: the short ID matches {n} images: give more characters"
                    )))
                }
                _ if s.starts_with("sha256:") || hexish.len() == 64 => {
                    return Err(Error::NotFound(format!("No such image: {s}")))
                }
                _ => {}
            }
        }
        let r = Reference::parse(s)?;
        let key = match &r.digest {
            Some(d) => r.with_digest(d),
            None => r.tagged().unwrap_or_else(|| r.name()),
        };
        if let Some(id) = self.meta.image_id_by_name(&key)? {
            return Ok(id);
        }
        // A name@digest pulled by tag: match the stored manifest digest too.
        if let Some(d) = &r.digest {
            for img in self.meta.images()? {
                if &img.manifest_digest == d || img.index_digest.as_ref() == Some(d) {
                    return Ok(img.id);
                }
            }
        }
        Err(Error::NotFound(format!("No such image: {}", familiar_full(&key))))
    }

    /// docker's ImageDelete refuses to delete an image that containers use: a running one
    /// always (its image "cannot be forced" away by ID), a stopped one unless forced.
    fn check_not_in_use(&self, img: &Image, name: Option<&str>, force: bool) -> Result<()> {
        let users = self.meta.containers_of_image(&img.record.id.to_string())?;
        let short = img.record.id.short();
        if let Some((cid, _)) = users.iter().find(|(_, running)| *running) {
            if name.is_none() || !force {
                return Err(Error::Conflict(format!(
                    "conflict: unable to delete {short} (cannot be forced) - image is being used by running container {}",
                    &cid[..12.min(cid.len())]
                )));
            }
        }
        if let (Some((cid, _)), false) = (users.first(), force) {
            return Err(Error::Conflict(match name {
                Some(n) => format!(
                    "conflict: unable to remove repository reference \"{n}\" (must force) - container {} is using its referenced image {short}",
                    &cid[..12.min(cid.len())]
                ),
                None => format!(
                    "conflict: unable to delete {short} (must be forced) - image is being used by stopped container {}",
                    &cid[..12.min(cid.len())]
                ),
            }));
        }
        Ok(())
    }

    /// `tag SOURCE TARGET`: points TARGET (a name with tag) at SOURCE's image.
    pub fn tag(&self, source: &str, target: &str) -> Result<String> {
        let img = self.resolve(source)?;
        let r = Reference::parse(target)?;
        if r.digest.is_some() {
            return Err(Error::InvalidArgument(format!(
                "refusing to create a tag with a digest reference: {target}"
            )));
        }
        let name = r.tagged().unwrap_or_else(|| r.name());
        self.meta.set_name(&ImageName {
            name: name.clone(),
            image_id: img.record.id.clone(),
            is_digest: false,
        })?;
        let shown = familiar_full(&name);
        self.events
            .publish("image", "tag", &img.record.id.to_string(), &[("name", shown.as_str())]);
        Ok(shown)
    }

    /// `rmi`: removes a name, or the image when no name is left (docker's rules: an ID that
    /// several repositories name needs `force`). Returns docker's "Untagged:" and "Deleted:"
    /// lines; unreferenced layers and blobs go through garbage collection.
    pub fn remove(&self, s: &str, force: bool, prune: bool) -> Result<(Vec<String>, Vec<String>)> {
        let img = self.resolve(s)?;
        let mut untagged = Vec::new();
        let by_name = Reference::parse(s).ok().and_then(|r| {
            let key = match &r.digest {
                Some(d) => r.with_digest(d),
                None => r.tagged()?,
            };
            img.tags.iter().chain(img.digests.iter()).find(|n| **n == key).cloned()
        });
        let repos: std::collections::BTreeSet<String> = img
            .tags
            .iter()
            .filter_map(|t| Reference::parse(t).ok().map(|r| r.name()))
            .collect();
        let repo_of = |n: &str| Reference::parse(n).ok().map(|r| r.name());
        match by_name {
            // docker's ImageDelete by reference: that name goes; untagging a repository's last
            // tag takes that repository's digest references with it; the image goes only when
            // no name is left.
            Some(name) => {
                let mut gone = vec![name.clone()];
                let was_tag = img.tags.contains(&name);
                let repo = repo_of(&name);
                if was_tag && !img.tags.iter().any(|t| *t != name && repo_of(t) == repo) {
                    gone.extend(img.digests.iter().filter(|d| repo_of(d) == repo).cloned());
                }
                let left = img.tags.iter().chain(img.digests.iter()).any(|n| !gone.contains(n));
                if !left {
                    self.check_not_in_use(&img, Some(s), force)?;
                }
                for n in &gone {
                    self.meta.remove_name(n)?;
                    untagged.push(familiar_full(n));
                }
                if left {
                    for n in &untagged {
                        self.events
                            .publish("image", "untag", &img.record.id.to_string(), &[("name", n.as_str())]);
                    }
                    return Ok((untagged, Vec::new()));
                }
            }
            None if repos.len() > 1 && !force => {
                return Err(Error::Conflict(format!(
                    "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    img.record.id.short()
                )));
            }
            None => {
                self.check_not_in_use(&img, None, force)?;
                for n in img.tags.iter().chain(img.digests.iter()) {
                    self.meta.remove_name(n)?;
                    untagged.push(familiar_full(n));
                }
            }
        }
        self.meta.remove_image(&img.record.id)?;
        let id = img.record.id.to_string();
        for n in &untagged {
            self.events.publish("image", "untag", &id, &[("name", n.as_str())]);
        }
        self.events.publish("image", "delete", &id, &[]);
        let mut deleted = vec![id];
        if prune {
            let report = crate::gc::collect(self)?;
            deleted.extend(report.snapshots);
        }
        Ok((untagged, deleted))
    }
}
