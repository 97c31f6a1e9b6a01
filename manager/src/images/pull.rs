//! Pull: resolve the reference (index → the platform's manifest → config), then every layer at
//! once, each fetched (resuming a partial ingest with HTTP Range), verified, and unpacked into
//! its own snapshot; snapshots are committed in order by chain ID, and a layer whose chain ID
//! is already committed (from any image) is neither fetched nor unpacked. A lease keeps what
//! the pull made from garbage collection until the image record exists (or for a day after a
//! crash, so a later pull resumes).
//!
//! Order of events sent to the client: Resolving, per layer (Waiting | AlreadyExists),
//! Downloading…, Verifying, Downloaded, Extracting…, PullComplete; then Message lines
//! ("Digest: …", "Status: …") and Done.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use super::types::{self, Descriptor, Parsed, Platform};
use super::{Image, Store};
use crate::config::SnapshotterKind;
use crate::digest::{chain_ids, Digest};
use crate::error::{Error, Result};
use crate::meta::{now_nanos, ImageName, ResourceKind};
use crate::remote::{Credentials, Reference, Session};
use crate::snapshots::EXTRACT_PREFIX;
use crate::unpack::{self, Whiteouts};

/// The most layers an image may have (docker's overlay2 takes 125; deeper chains only cost).
pub const MAX_LAYERS: usize = 500;

/// A progress event (translated to the API's PullProgress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub action: Action,
    /// A layer's short digest, or empty.
    pub id: String,
    pub current: u64,
    pub total: u64,
    pub message: String,
}

/// What a progress event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Resolving,
    Resolved,
    Waiting,
    Downloading,
    Verifying,
    Downloaded,
    Extracting,
    PullComplete,
    AlreadyExists,
    Pushing,
    Pushed,
    Mounted,
    Message,
}

/// Where progress goes; a closed receiver cancels the pull (the client went away).
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::Sender<Progress>,
    cancelled: Arc<AtomicBool>,
}

impl Reporter {
    /// A reporter and the receiving end.
    pub fn new(buffer: usize) -> (Reporter, mpsc::Receiver<Progress>) {
        let (tx, rx) = mpsc::channel(buffer);
        (
            Reporter {
                tx,
                cancelled: Arc::new(AtomicBool::new(false)),
            },
            rx,
        )
    }

    pub(crate) fn send(&self, action: Action, id: &str, current: u64, total: u64, message: &str) {
        let p = Progress {
            action,
            id: id.to_string(),
            current,
            total,
            message: message.to_string(),
        };
        if let Err(mpsc::error::TrySendError::Closed(_)) = self.tx.try_send(p) {
            self.cancelled.store(true, Ordering::Relaxed);
        }
    }

    /// Sends an event that must not be dropped (waits for room).
    pub(crate) async fn send_sure(&self, action: Action, id: &str, message: &str) {
        let p = Progress {
            action,
            id: id.to_string(),
            current: 0,
            total: 0,
            message: message.to_string(),
        };
        if self.tx.send(p).await.is_err() {
            self.cancelled.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.cancelled.load(Ordering::Relaxed) || self.tx.is_closed() {
            return Err(Error::Cancelled);
        }
        Ok(())
    }
}

/// A pull's lease: created at the start, deleted when the image is recorded.
pub(crate) struct Lease {
    id: String,
    store: Arc<Store>,
}

impl Lease {
    pub(crate) fn new(store: &Arc<Store>) -> Result<Lease> {
        let id = format!("pull-{}-{}", now_nanos(), std::process::id());
        store
            .meta
            .create_lease(&id, now_nanos() + Duration::from_secs(24 * 3600).as_nanos() as i64)?;
        Ok(Lease {
            id,
            store: store.clone(),
        })
    }

    /// Leases `key`; call it before looking whether the thing exists (see `gc::collect`).
    pub(crate) fn add(&self, kind: ResourceKind, key: &str) -> Result<()> {
        let _gate = self.store.gc_gate.read().unwrap_or_else(|p| p.into_inner());
        self.store.meta.lease_add(&self.id, kind, key)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // What the pull committed stays leased only until the image references it; on failure
        // the lease goes too, and GC may take the blobs (ingests stay for a resume).
        let _ = self.store.meta.delete_lease(&self.id);
    }
}

/// Pulls `reference` for `platform`; returns the image as stored.
pub async fn pull(
    store: Arc<Store>,
    reference: &str,
    platform: &str,
    creds: Credentials,
    rep: Reporter,
) -> Result<Image> {
    let r = Reference::parse(reference)?;
    let platform = Platform::parse(platform)?;
    let session = store.registries.session(&r, creds, false)?;
    rep.send_sure(Action::Resolving, "", &r.to_string()).await;
    let top = session
        .manifest(&r.object(), types::MANIFEST_ACCEPT)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(format!(
                "manifest for {} not found: manifest unknown",
                r.familiar_name() + &tag_or_digest(&r)
            )),
            e => e,
        })?;
    let lease = Lease::new(&store)?;
    let (manifest_data, manifest_digest, manifest_type, index_digest) =
        match types::parse_manifest(&top.data, &top.media_type)? {
            Parsed::Index(idx) => {
                put_small(&store, &lease, &top.digest, &top.data).await?;
                let d = types::select_platform(&idx, &platform)?.clone();
                let m = session
                    .manifest(&d.digest.to_string(), &[types::OCI_MANIFEST, types::DOCKER_MANIFEST])
                    .await?;
                if m.data.len() as i64 != d.size {
                    return Err(Error::BadContent(format!(
                        "manifest {}: {} bytes, the index says {}",
                        d.digest,
                        m.data.len(),
                        d.size
                    )));
                }
                (
                    m.data,
                    d.digest,
                    if d.media_type.is_empty() {
                        m.media_type
                    } else {
                        d.media_type
                    },
                    Some(top.digest.clone()),
                )
            }
            Parsed::Manifest(_) => (top.data.clone(), top.digest.clone(), top.media_type.clone(), None),
        };
    let Parsed::Manifest(manifest) = types::parse_manifest(&manifest_data, &manifest_type)? else {
        return Err(Error::BadContent(format!(
            "{manifest_digest} is an index inside an index: not supported"
        )));
    };
    let manifest_type = if manifest.media_type.is_empty() {
        manifest_type
    } else {
        manifest.media_type.clone()
    };
    put_small(&store, &lease, &manifest_digest, &manifest_data).await?;
    rep.send_sure(
        Action::Resolved,
        "",
        &format!(
            "{}: Pulling from {}",
            tag_or_digest(&r).trim_start_matches([':', '@']),
            r.repository
        ),
    )
    .await;

    // The config.
    let config_data = fetch_small(&store, &session, &lease, &manifest.config).await?;
    let config = types::parse_config(&config_data)?;
    if !config.os.is_empty() && config.os != platform.os {
        return Err(Error::BadContent(format!(
            "image config is for {}, not {}",
            config.os, platform.os
        )));
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(Error::BadContent(format!(
            "manifest lists {} layers but the config {} diff IDs",
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    for l in &manifest.layers {
        if !types::is_layer(&l.media_type) {
            return Err(Error::Unsupported(format!(
                "layer {} has media type {:?}, which dray cannot unpack",
                l.digest, l.media_type
            )));
        }
    }
    if manifest.layers.len() > MAX_LAYERS {
        return Err(Error::BadContent(format!(
            "the image has {} layers; drayd takes at most {MAX_LAYERS}",
            manifest.layers.len()
        )));
    }
    let chains = chain_ids(&config.rootfs.diff_ids);
    check_space(&store, &manifest.layers, &chains)?;

    let (sizes, fresh) = stack_layers(
        &store,
        &manifest.layers,
        &config.rootfs.diff_ids,
        Some(&session),
        &rep,
        &lease,
    )
    .await?;
    rep.check()?;

    // The image record.
    let id = manifest.config.digest.clone();
    let existed = store.meta.image(&id)?.is_some();
    let record = super::image_record(
        &manifest,
        manifest_digest.clone(),
        manifest_type,
        index_digest.clone(),
        &config,
        config_data.len(),
        &sizes,
    );
    let repo_digest = index_digest.unwrap_or(manifest_digest);
    let mut names = vec![ImageName {
        name: r.with_digest(&repo_digest),
        image_id: id.clone(),
        is_digest: true,
    }];
    if let Some(t) = r.tagged() {
        names.push(ImageName {
            name: t,
            image_id: id.clone(),
            is_digest: false,
        });
    }
    let tag_was = match r.tagged() {
        Some(t) => store.meta.image_id_by_name(&t)?,
        None => None,
    };
    {
        let store = store.clone();
        let record = record.clone();
        store.meta.clone().run(move |m| m.put_image(&record, &names)).await?;
    }
    drop(lease);
    rep.send_sure(Action::Message, "", &format!("Digest: {repo_digest}"))
        .await;
    let shown = format!("{}{}", r.familiar_name(), tag_or_digest(&r));
    // By tag: up to date when the tag already named this image; by digest: when it was here.
    let up_to_date = match r.tagged() {
        Some(_) => tag_was.as_ref() == Some(&id),
        None => true,
    };
    let status = if !fresh && existed && up_to_date {
        format!("Status: Image is up to date for {shown}")
    } else {
        format!("Status: Downloaded newer image for {shown}")
    };
    rep.send_sure(Action::Message, "", &status).await;
    store
        .events
        .publish("image", "pull", &shown, &[("name", shown.as_str())]);
    store.resolve(&id.to_string())
}

fn tag_or_digest(r: &Reference) -> String {
    match (&r.tag, &r.digest) {
        (_, Some(d)) => format!("@{d}"),
        (Some(t), None) => format!(":{t}"),
        _ => String::new(),
    }
}

/// Refuses a pull whose layers cannot fit (a hostile or broken descriptor declaring a huge size).
fn check_space(store: &Store, layers: &[Descriptor], chains: &[Digest]) -> Result<()> {
    let need: u64 = layers
        .iter()
        .zip(chains)
        .filter(|(l, c)| {
            store.content.size(&l.digest).is_none()
                && !store
                    .meta
                    .snapshot(&c.to_string())
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.committed)
        })
        .try_fold(0u64, |acc, (l, _)| {
            acc.checked_add(u64::try_from(l.size).unwrap_or(u64::MAX))
        })
        .unwrap_or(u64::MAX);
    if let Ok(st) = nix::sys::statvfs::statvfs(store.root()) {
        let free = st.blocks_available() * st.fragment_size();
        if need > free {
            return Err(Error::BadContent(format!(
                "the image's layers declare {need} bytes, more than the {free} bytes free under {}",
                store.root().display()
            )));
        }
    }
    Ok(())
}

async fn put_small(store: &Arc<Store>, lease: &Lease, d: &Digest, data: &[u8]) -> Result<()> {
    lease.add(ResourceKind::Blob, &d.to_string())?;
    let (store2, d2, data) = (store.clone(), d.clone(), data.to_vec());
    tokio::task::spawn_blocking(move || store2.content.write_blob(&d2, &data))
        .await
        .map_err(|e| Error::io("writing a blob", std::io::Error::other(e.to_string())))?
}

/// Fetches a small blob (config) into the content store, or reads it from there.
async fn fetch_small(store: &Arc<Store>, session: &Session, lease: &Lease, desc: &Descriptor) -> Result<Vec<u8>> {
    lease.add(ResourceKind::Blob, &desc.digest.to_string())?;
    if desc.size as u64 > crate::content::MAX_METADATA_BLOB {
        return Err(Error::BadContent(format!(
            "config {} declares {} bytes: too large",
            desc.digest, desc.size
        )));
    }
    if store.content.size(&desc.digest).is_none() {
        let mut s = session.blob(&desc.digest, 0).await?;
        let mut data = Vec::new();
        while let Some(c) = s
            .response
            .chunk()
            .await
            .map_err(|e| Error::Remote(format!("fetching {}: {e}", desc.digest)))?
        {
            data.extend_from_slice(&c);
            if data.len() as i64 > desc.size {
                return Err(Error::BadContent(format!(
                    "blob {} is larger than its declared size {}",
                    desc.digest, desc.size
                )));
            }
        }
        put_small(store, lease, &desc.digest, &data).await?;
        if data.len() as i64 != desc.size {
            return Err(Error::BadContent(format!(
                "blob {}: {} bytes, the manifest says {}",
                desc.digest,
                data.len(),
                desc.size
            )));
        }
        return Ok(data);
    }
    store.content.read(&desc.digest)
}

async fn commit_layer(
    store: &Arc<Store>,
    key: &str,
    chain: &str,
    parent: Option<&str>,
    size: i64,
    lease: &Lease,
) -> Result<()> {
    lease.add(ResourceKind::Snapshot, chain)?;
    let (store, key, chain, parent) = (
        store.clone(),
        key.to_string(),
        chain.to_string(),
        parent.map(str::to_string),
    );
    tokio::task::spawn_blocking(move || {
        let rec = store.snapshots.stat(&key)?;
        let t = std::time::Instant::now();
        unpack::make_durable(&store.snapshots.fs_dir(&rec))?;
        tracing::info!(chain = %chain, sync_ms = t.elapsed().as_millis() as u64, "layer committed");
        match store.snapshots.commit(&chain, &key, size, parent.as_deref()) {
            Err(Error::AlreadyExists(_)) => {
                // Another pull committed the same layer first: keep theirs.
                store.snapshots.remove(&key)
            }
            r => r,
        }
    })
    .await
    .map_err(|e| Error::io("committing a layer", std::io::Error::other(e.to_string())))?
}

struct LayerJob {
    store: Arc<Store>,
    session: Option<Session>,
    layer: Descriptor,
    diff_id: Digest,
    key: String,
    lease: String,
    rep: Reporter,
    downloads: Arc<Semaphore>,
}

impl LayerJob {
    /// Fetches the layer, then (overlay) unpacks it into a new snapshot on no parent. Returns
    /// the snapshot key and the layer's size, or no size when the layer is left for the
    /// commit loop to unpack on its parent (native snapshots stack by copying, in order).
    async fn run(self) -> Result<(String, Option<u64>)> {
        {
            let _gate = self.store.gc_gate.read().unwrap_or_else(|p| p.into_inner());
            self.store
                .meta
                .lease_add(&self.lease, ResourceKind::Blob, &self.layer.digest.to_string())?;
        }
        let started = std::time::Instant::now();
        {
            let _slot = self.downloads.acquire().await.map_err(|_| Error::Cancelled)?;
            match &self.session {
                Some(session) => fetch_layer(&self.store, session, &self.layer, &self.rep).await?,
                None if self.store.content.size(&self.layer.digest).is_some() => {}
                None => return Err(Error::NotFound(format!("layer blob {} is missing", self.layer.digest))),
            }
        }
        self.rep.check()?;
        if self.store.snapshots.kind() == SnapshotterKind::Native {
            return Ok((self.key, None));
        }
        let fetched = started.elapsed();
        let size = unpack_into(&self.store, &self.key, None, &self.layer, &self.diff_id, &self.rep).await?;
        // Where the time goes (docs/performance.md, "Images"): fetch includes waiting for a
        // download slot; unpack is decompression, hashing and writing together.
        tracing::info!(
            layer = %self.layer.digest,
            bytes = self.layer.size,
            unpacked = size,
            fetch_ms = fetched.as_millis() as u64,
            unpack_ms = (started.elapsed() - fetched).as_millis() as u64,
            "layer unpacked"
        );
        Ok((self.key, Some(size)))
    }
}

/// Unpacks a fetched layer into a new snapshot `key` on `parent`, reporting progress; the
/// snapshot is removed again on failure or cancellation. Returns the layer's unpacked size.
async fn unpack_into(
    store: &Arc<Store>,
    key: &str,
    parent: Option<String>,
    layer: &Descriptor,
    diff_id: &Digest,
    rep: &Reporter,
) -> Result<u64> {
    let id = layer.digest.short().to_string();
    let total = layer.size as u64;
    let count = Arc::new(AtomicU64::new(0));
    let whiteouts = match store.snapshots.kind() {
        SnapshotterKind::Overlay => Whiteouts::Overlay,
        SnapshotterKind::Native => Whiteouts::Delete,
    };
    let (s2, k2, blob, d2, counter) = (
        store.clone(),
        key.to_string(),
        store.content.path(&layer.digest),
        diff_id.clone(),
        count.clone(),
    );
    let mut work = tokio::task::spawn_blocking(move || -> Result<u64> {
        let rec = s2.snapshots.prepare(&k2, parent.as_deref())?;
        let dest = s2.snapshots.fs_dir(&rec);
        match unpack::unpack_layer(&blob, &dest, &d2, whiteouts, counter) {
            Ok(applied) => Ok(applied.size),
            Err(e) => {
                let _ = s2.snapshots.remove(&k2);
                Err(e)
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let size = loop {
        tokio::select! {
            r = &mut work => break r.map_err(|e| Error::io("unpacking", std::io::Error::other(e.to_string())))??,
            _ = tick.tick() => rep.send(Action::Extracting, &id, count.load(Ordering::Relaxed), total, ""),
        }
    };
    rep.send(Action::Extracting, &id, total, total, "");
    if rep.check().is_err() {
        let _ = store.snapshots.remove(key);
        return Err(Error::Cancelled);
    }
    Ok(size)
}

/// Fetches one layer blob into the content store (resuming a partial ingest), unless it is
/// there; one fetch per digest at a time across all pulls.
pub async fn fetch_layer(store: &Arc<Store>, session: &Session, layer: &Descriptor, rep: &Reporter) -> Result<()> {
    let id = layer.digest.short().to_string();
    let total = layer.size as u64;
    let _writer = store.content.lock(&layer.digest).await;
    if store.content.size(&layer.digest) == Some(total) {
        rep.send(Action::Downloaded, &id, total, total, "");
        return Ok(());
    }
    let (store2, digest) = (store.clone(), layer.digest.clone());
    let mut ingest = tokio::task::spawn_blocking(move || store2.content.ingest(&digest, Some(total)))
        .await
        .map_err(|e| Error::io("ingest", std::io::Error::other(e.to_string())))??;
    let offset = ingest.offset();
    if offset < total {
        let mut stream = session.blob(&layer.digest, offset).await?;
        if !stream.resumed && offset > 0 {
            ingest.reset()?;
        }
        if stream.resumed {
            tracing::info!(digest = %layer.digest, offset, "resuming a download");
        }
        // Writes (and hashing) run on a blocking thread fed through a channel.
        let (tx, mut rx) = mpsc::channel::<bytes::Bytes>(32);
        let writer = tokio::task::spawn_blocking(move || -> Result<crate::content::Ingest> {
            while let Some(chunk) = rx.blocking_recv() {
                ingest.write(&chunk)?;
            }
            Ok(ingest)
        });
        let mut got = if stream.resumed { offset } else { 0 };
        let mut last = std::time::Instant::now();
        let mut fetch_err = None;
        loop {
            if rep.check().is_err() {
                fetch_err = Some(Error::Cancelled);
                break;
            }
            match stream.response.chunk().await {
                Ok(Some(c)) => {
                    got += c.len() as u64;
                    if tx.send(c).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                    if last.elapsed() >= Duration::from_millis(100) {
                        rep.send(Action::Downloading, &id, got, total, "");
                        last = std::time::Instant::now();
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    fetch_err = Some(Error::Remote(format!(
                        "fetching layer {}: {} (the download resumes where it stopped on the next pull)",
                        layer.digest,
                        crate::remote::client::error_chain(&e)
                    )));
                    break;
                }
            }
        }
        drop(tx);
        let ingest = writer
            .await
            .map_err(|e| Error::io("ingest", std::io::Error::other(e.to_string())))??;
        if let Some(e) = fetch_err {
            return Err(e);
        }
        rep.send(Action::Downloading, &id, got, total, "");
        rep.send(Action::Verifying, &id, got, total, "");
        tokio::task::spawn_blocking(move || ingest.commit())
            .await
            .map_err(|e| Error::io("ingest", std::io::Error::other(e.to_string())))??;
    } else {
        rep.send(Action::Verifying, &id, total, total, "");
        tokio::task::spawn_blocking(move || ingest.commit())
            .await
            .map_err(|e| Error::io("ingest", std::io::Error::other(e.to_string())))??;
    }
    rep.send(Action::Downloaded, &id, total, total, "");
    Ok(())
}

/// Unpacks `layers` (with their diff IDs) into snapshots and commits them in order by chain
/// ID, all at once: each layer is fetched through `session` first when given (bounded by
/// max-concurrent-downloads), else it must be in the content store. A layer whose chain ID is
/// committed already is skipped. Returns each layer's unpacked size and whether any layer was
/// new. Used by pull, load and import.
pub(crate) async fn stack_layers(
    store: &Arc<Store>,
    layers: &[Descriptor],
    diff_ids: &[Digest],
    session: Option<&Session>,
    rep: &Reporter,
    lease: &Lease,
) -> Result<(Vec<i64>, bool)> {
    let chains = chain_ids(diff_ids);
    // Every layer at once: fetch (bounded), then unpack.
    let downloads = Arc::new(Semaphore::new(store.config.max_concurrent_downloads));
    let mut tasks = Vec::new();
    let mut fresh = false;
    for (i, layer) in layers.iter().enumerate() {
        let chain = chains[i].to_string();
        // Leased before looking, so that a collection cannot take it between the two.
        lease.add(ResourceKind::Snapshot, &chain)?;
        if store.meta.snapshot(&chain)?.is_some_and(|s| s.committed) {
            rep.send(Action::AlreadyExists, layer.digest.short(), 0, 0, "");
            tasks.push(None);
            continue;
        }
        fresh = true;
        rep.send(Action::Waiting, layer.digest.short(), 0, layer.size as u64, "");
        let job = LayerJob {
            store: store.clone(),
            session: session.cloned(),
            layer: layer.clone(),
            diff_id: diff_ids[i].clone(),
            key: format!("{EXTRACT_PREFIX}{}-{i}", lease.id),
            lease: lease.id.clone(),
            rep: rep.clone(),
            downloads: downloads.clone(),
        };
        tasks.push(Some(tokio::spawn(job.run())));
    }

    // Commit in order; on the first failure the others are still awaited (their snapshots
    // removed) so that nothing is left half-made.
    let mut first_err: Option<Error> = None;
    let mut sizes = Vec::with_capacity(tasks.len());
    for (i, t) in tasks.into_iter().enumerate() {
        let chain = chains[i].to_string();
        let parent = if i == 0 { None } else { Some(chains[i - 1].to_string()) };
        let Some(t) = t else {
            sizes.push(store.meta.snapshot(&chain)?.map(|s| s.size).unwrap_or(0));
            continue;
        };
        let res = t
            .await
            .map_err(|e| Error::io("layer task", std::io::Error::other(e.to_string())))
            .and_then(|r| r);
        let res = match res {
            // Native: unpack onto a copy of the parent, now that the parent is committed.
            Ok((key, None)) if first_err.is_none() => {
                unpack_into(store, &key, parent.clone(), &layers[i], &diff_ids[i], rep)
                    .await
                    .map(|size| (key, Some(size)))
            }
            r => r,
        };
        match res {
            Ok((key, size)) if first_err.is_none() => {
                let size = size.unwrap_or(0);
                let committed = commit_layer(store, &key, &chain, parent.as_deref(), size as i64, lease).await;
                match committed {
                    Ok(()) => {
                        rep.send(Action::PullComplete, layers[i].digest.short(), 0, 0, "");
                        sizes.push(size as i64);
                    }
                    Err(e) => {
                        let _ = store.snapshots.remove(&key);
                        first_err = Some(e);
                    }
                }
            }
            Ok((key, Some(_))) => {
                let _ = store.snapshots.remove(&key);
            }
            Ok((_, None)) => {}
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok((sizes, fresh))
}
