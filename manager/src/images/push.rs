//! Push: the image's blobs (layers, then config) and its manifest to the registry its name
//! points at. A blob the repository has already is skipped; a blob another repository of the
//! same registry has (known from the names this store pulled it by) is mounted across
//! repositories instead of uploaded. Progress: per layer Pushing / Pushed / Mounted /
//! AlreadyExists, then "TAG: digest: DIGEST size: N".

use std::sync::Arc;

use super::pull::{Action, Reporter};
use super::Store;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::meta::ImageName;
use crate::remote::{Credentials, Reference};

/// Pushes the local image named `reference`; returns the manifest digest.
pub async fn push(store: Arc<Store>, reference: &str, creds: Credentials, rep: Reporter) -> Result<Digest> {
    let r = Reference::parse(reference)?;
    if r.digest.is_some() {
        return Err(Error::InvalidArgument(
            "push takes a name with a tag, not a digest".into(),
        ));
    }
    let img = {
        let s = store.clone();
        let name = r.tagged().unwrap_or_else(|| r.name());
        tokio::task::spawn_blocking(move || s.resolve(&name))
            .await
            .map_err(|e| Error::io("push", std::io::Error::other(e.to_string())))?
            .map_err(|_| {
                Error::NotFound(format!(
                    "An image does not exist locally with the tag: {}",
                    r.familiar_name()
                ))
            })?
    };
    rep.send_sure(
        Action::Message,
        "",
        &format!("The push refers to repository [{}]", r.name()),
    )
    .await;
    // Repositories of the same registry that hold this image's blobs (cross-repository mounts).
    let sources: Vec<String> = img
        .digests
        .iter()
        .chain(img.tags.iter())
        .filter_map(|n| Reference::parse(n).ok())
        .filter(|n| n.registry == r.registry && n.repository != r.repository)
        .map(|n| n.repository)
        .collect();
    let mut session = store.registries.session(&r, creds.clone(), true)?;
    if let Some(from) = sources.first() {
        session.mount_from = Some(from.clone());
    }
    let mut blobs: Vec<(Digest, String)> = img
        .record
        .layers
        .iter()
        .map(|l| (l.blob_digest.clone(), l.blob_digest.short().to_string()))
        .collect();
    blobs.push((img.record.id.clone(), String::new()));
    let uploads = Arc::new(tokio::sync::Semaphore::new(store.config.max_concurrent_uploads));
    let mut tasks = Vec::new();
    for (d, id) in blobs {
        let (session, store, rep, uploads, from) = (
            session.clone(),
            store.clone(),
            rep.clone(),
            uploads.clone(),
            sources.first().cloned(),
        );
        if !id.is_empty() {
            rep.send(Action::Waiting, &id, 0, 0, "");
        }
        tasks.push(tokio::spawn(async move {
            let _slot = uploads.acquire().await.map_err(|_| Error::Cancelled)?;
            if session.has_blob(&d).await? {
                if !id.is_empty() {
                    rep.send(Action::AlreadyExists, &id, 0, 0, "");
                }
                return Ok(());
            }
            if let Some(from) = &from {
                if session.mount_blob(&d, from).await? {
                    if !id.is_empty() {
                        rep.send(Action::Mounted, &id, 0, 0, from);
                    }
                    return Ok(());
                }
            }
            let path = store.content.path(&d);
            let f = tokio::fs::File::open(&path).await.ctx(|| format!("opening blob {d}"))?;
            let size = f.metadata().await.ctx(|| format!("stat of blob {d}"))?.len();
            if !id.is_empty() {
                rep.send(Action::Pushing, &id, 0, size, "");
            }
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 256 << 10));
            session.push_blob(&d, body, size).await?;
            if !id.is_empty() {
                rep.send(Action::Pushed, &id, size, size, "");
            }
            Ok::<(), Error>(())
        }));
    }
    let mut first_err = None;
    for t in tasks {
        let r = t
            .await
            .map_err(|e| Error::io("push task", std::io::Error::other(e.to_string())))
            .and_then(|r| r);
        if let (Err(e), None) = (r, &first_err) {
            first_err = Some(e);
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    rep.check()?;
    let manifest = store.content.read(&img.record.manifest_digest)?;
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    session
        .put_manifest(&tag, &img.record.manifest_media_type, &manifest)
        .await?;
    let digest = img.record.manifest_digest.clone();
    let name = ImageName {
        name: r.with_digest(&digest),
        image_id: img.record.id.clone(),
        is_digest: true,
    };
    store.meta.clone().run(move |m| m.set_name(&name)).await?;
    rep.send_sure(
        Action::Message,
        "",
        &format!("{tag}: digest: {digest} size: {}", manifest.len()),
    )
    .await;
    Ok(digest)
}
