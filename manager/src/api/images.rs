//! `dray.v1.Images`.

use std::pin::Pin;
use std::sync::Arc;

use dray_proto::v1 as pb;
use dray_proto::v1::images_server::Images;
use futures_util::Stream;
use tonic::{Request, Response, Status};

use super::stream::ChannelWriter;
use super::{blocking, status};
use crate::images::archive::{load, save, SaveFormat};
use crate::images::import::{import, ImportOptions};
use crate::images::pull::{self, Action, Progress, Reporter};
use crate::images::push::push;
use crate::images::{Image, Store};
use crate::remote::Credentials;

/// The image service.
pub struct ImagesApi {
    pub store: Arc<Store>,
}

type ProgressStream = Pin<Box<dyn Stream<Item = Result<pb::PullProgress, Status>> + Send>>;

/// The wire summary of an image.
pub fn summary(img: &Image) -> pb::ImageSummary {
    pb::ImageSummary {
        id: img.record.id.to_string(),
        repo_tags: img.repo_tags(),
        repo_digests: img.repo_digests(),
        created: img.record.created.clone(),
        size: img.record.size,
        shared_size: -1,
        labels: Default::default(),
        containers: 0,
        stored_at: img.record.stored_at,
    }
}

fn action(a: Action) -> pb::pull_progress::Action {
    use pb::pull_progress::Action as A;
    match a {
        Action::Resolving => A::Resolving,
        Action::Resolved => A::Resolved,
        Action::Waiting => A::Waiting,
        Action::Downloading => A::Downloading,
        Action::Verifying => A::Verifying,
        Action::Downloaded => A::Downloaded,
        Action::Extracting => A::Extracting,
        Action::PullComplete => A::PullComplete,
        Action::AlreadyExists => A::AlreadyExists,
        Action::Pushing => A::Pushing,
        Action::Pushed => A::Pushed,
        Action::Mounted => A::Mounted,
        Action::Message => A::Message,
    }
}

fn progress(p: Progress) -> pb::PullProgress {
    pb::PullProgress {
        action: action(p.action) as i32,
        id: p.id,
        current: p.current,
        total: p.total,
        message: p.message,
        image: None,
    }
}

/// Forwards progress events, then the task's result as a DONE event or an error status. The
/// client going away drops `rx`, which the task sees as a cancellation.
fn progress_stream(
    mut rx: tokio::sync::mpsc::Receiver<Progress>,
    task: tokio::task::JoinHandle<crate::Result<Option<pb::ImageSummary>>>,
) -> ProgressStream {
    let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Result<pb::PullProgress, Status>>(256);
    tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            if out_tx.send(Ok(progress(p))).await.is_err() {
                return;
            }
        }
        let last = match task.await {
            Ok(Ok(image)) => Ok(pb::PullProgress {
                action: pb::pull_progress::Action::Done as i32,
                image,
                ..Default::default()
            }),
            Ok(Err(e)) => Err(status(e)),
            Err(e) => Err(Status::internal(format!("task failed: {e}"))),
        };
        // A pull or push spreads its buffers over the blocking threads' arenas.
        crate::daemon::release_memory();
        let _ = out_tx.send(last).await;
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(out_rx))
}

fn creds(a: Option<pb::RegistryAuth>) -> Credentials {
    a.map(|a| Credentials {
        username: a.username,
        password: a.password,
        identity_token: a.identity_token,
    })
    .unwrap_or_default()
}

#[tonic::async_trait]
impl Images for ImagesApi {
    type PullStream = ProgressStream;
    type PushStream = ProgressStream;
    type SaveStream = Pin<Box<dyn Stream<Item = Result<pb::Chunk, Status>> + Send>>;
    type LoadStream = ProgressStream;

    async fn pull(&self, req: Request<pb::PullRequest>) -> Result<Response<Self::PullStream>, Status> {
        let req = req.into_inner();
        let (rep, rx) = Reporter::new(256);
        let store = self.store.clone();
        // The pull runs in its own task; the client going away closes `rx`, which cancels it.
        let task = tokio::spawn(async move {
            pull::pull(store, &req.reference, &req.platform, creds(req.auth), rep)
                .await
                .map(|img| Some(summary(&img)))
        });
        Ok(Response::new(progress_stream(rx, task)))
    }

    async fn push(&self, req: Request<pb::PushRequest>) -> Result<Response<Self::PushStream>, Status> {
        let req = req.into_inner();
        let (rep, rx) = Reporter::new(256);
        let store = self.store.clone();
        let task = tokio::spawn(async move { push(store, &req.reference, creds(req.auth), rep).await.map(|_| None) });
        Ok(Response::new(progress_stream(rx, task)))
    }

    async fn list(&self, req: Request<pb::ListImagesRequest>) -> Result<Response<pb::ListImagesResponse>, Status> {
        let req = req.into_inner();
        let store = self.store.clone();
        let images = blocking(move || store.list()).await?;
        let mut out = Vec::new();
        for img in &images {
            let dangling = img.tags.is_empty();
            // Without `all` docker hides intermediate build images; drayd has none yet.
            let labels = labels_of(&self.store, img);
            if !filters_match(&req.filters, img, dangling, &labels)? {
                continue;
            }
            let mut s = summary(img);
            s.labels = labels;
            out.push(s);
        }
        Ok(Response::new(pb::ListImagesResponse { images: out }))
    }

    async fn get(&self, req: Request<pb::GetImageRequest>) -> Result<Response<pb::ImageDetail>, Status> {
        let reference = req.into_inner().reference;
        let store = self.store.clone();
        let detail = blocking(move || {
            let img = store.resolve(&reference)?;
            let config = store.content.read(&img.record.id)?;
            let manifest = store.content.read(&img.record.manifest_digest)?;
            let mut layer_sizes = Vec::new();
            let mut graph = std::collections::HashMap::new();
            let mut lowers = Vec::new();
            for l in &img.record.layers {
                let snap = store.snapshots.stat(&l.chain_id.to_string())?;
                layer_sizes.push(snap.size);
                lowers.push(store.snapshots.fs_dir(&snap).display().to_string());
            }
            if store.snapshots.kind() == crate::config::SnapshotterKind::Native {
                // A native snapshot is the whole tree.
                if let Some(top) = lowers.pop() {
                    graph.insert("Dir".to_string(), top);
                }
                lowers.clear();
            }
            if let Some(top) = lowers.pop() {
                graph.insert("UpperDir".to_string(), top);
                lowers.reverse();
                if !lowers.is_empty() {
                    graph.insert("LowerDir".to_string(), lowers.join(":"));
                }
            }
            let mut s = summary(&img);
            s.labels = labels_of(&store, &img);
            Ok(pb::ImageDetail {
                summary: Some(s),
                config,
                manifest,
                manifest_digest: img.record.manifest_digest.to_string(),
                diff_ids: img.record.layers.iter().map(|l| l.diff_id.to_string()).collect(),
                chain_ids: img.record.layers.iter().map(|l| l.chain_id.to_string()).collect(),
                layer_sizes,
                graph_driver: graph,
                graph_driver_name: store.snapshots.name().to_string(),
            })
        })
        .await?;
        Ok(Response::new(detail))
    }

    async fn tag(&self, req: Request<pb::TagRequest>) -> Result<Response<pb::TagResponse>, Status> {
        let req = req.into_inner();
        let store = self.store.clone();
        let target = blocking(move || store.tag(&req.source, &req.target)).await?;
        Ok(Response::new(pb::TagResponse { target }))
    }

    async fn remove(&self, req: Request<pb::RemoveImageRequest>) -> Result<Response<pb::RemoveImageResponse>, Status> {
        let req = req.into_inner();
        let store = self.store.clone();
        let (untagged, deleted) = blocking(move || store.remove(&req.reference, req.force, !req.no_prune)).await?;
        Ok(Response::new(pb::RemoveImageResponse { untagged, deleted }))
    }

    async fn save(&self, req: Request<pb::SaveRequest>) -> Result<Response<Self::SaveStream>, Status> {
        let req = req.into_inner();
        let format = SaveFormat::parse(&req.format).map_err(status)?;
        // Resolve every name first, so that a bad name is an error before any byte is sent.
        {
            let (store, refs) = (self.store.clone(), req.references.clone());
            blocking(move || refs.iter().try_for_each(|r| store.resolve(r).map(drop))).await?;
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        let store = self.store.clone();
        let writer = tokio::task::spawn_blocking(move || save(&store, &req.references, format, ChannelWriter::new(tx)));
        Ok(Response::new(super::stream::chunk_stream(rx, writer)))
    }

    async fn load(
        &self,
        req: Request<tonic::Streaming<pb::LoadRequest>>,
    ) -> Result<Response<Self::LoadStream>, Status> {
        let reader = super::stream::forward(req.into_inner(), Vec::new(), |m: pb::LoadRequest| m.data);
        let (rep, rx) = Reporter::new(256);
        let store = self.store.clone();
        let task = tokio::spawn(async move { load(store, reader, rep).await.map(|_| None) });
        Ok(Response::new(progress_stream(rx, task)))
    }

    async fn import(
        &self,
        req: Request<tonic::Streaming<pb::ImportRequest>>,
    ) -> Result<Response<pb::ImportResponse>, Status> {
        let mut input = req.into_inner();
        let first = input
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("import: empty request stream"))?;
        let opts = ImportOptions {
            reference: first.reference.clone(),
            changes: first.changes.clone(),
            message: first.message.clone(),
            platform: first.platform.clone(),
            source: "-".into(),
            ..ImportOptions::default()
        };
        let reader = super::stream::forward(input, first.data, |m: pb::ImportRequest| m.data);
        let (rep, mut rx) = Reporter::new(256);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        // Its own task: a client that goes away mid-import does not leave half-made snapshots.
        let store = self.store.clone();
        let id = tokio::spawn(async move { import(store, reader, opts, rep).await })
            .await
            .map_err(|e| Status::internal(format!("import task failed: {e}")))?
            .map_err(status)?;
        Ok(Response::new(pb::ImportResponse { id: id.to_string() }))
    }

    async fn login(&self, req: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let req = req.into_inner();
        let host = if req.server.is_empty() {
            "docker.io".to_string()
        } else {
            normalise_server(&req.server)
        };
        let r = crate::remote::Reference {
            registry: host.clone(),
            repository: "library/dray-login-check".into(),
            tag: None,
            digest: None,
        };
        let session = self
            .store
            .registries
            .session(&r, creds(req.auth), false)
            .map_err(status)?;
        session.ping().await.map_err(status)?;
        Ok(Response::new(pb::LoginResponse {
            status: "Login Succeeded".into(),
            identity_token: String::new(),
        }))
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://host:5000/` → `host:5000`.
fn normalise_server(s: &str) -> String {
    let h = s.trim_start_matches("https://").trim_start_matches("http://");
    let h = h.split('/').next().unwrap_or(h);
    match h {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

fn labels_of(store: &Store, img: &Image) -> std::collections::HashMap<String, String> {
    store
        .content
        .read(&img.record.id)
        .ok()
        .and_then(|c| crate::images::types::parse_config(&c).ok())
        .and_then(|c| c.config.and_then(|r| r.labels))
        .map(|l| l.into_iter().collect())
        .unwrap_or_default()
}

/// docker's `images --filter`: dangling, reference (glob on familiar name:tag), label.
#[allow(clippy::result_large_err)] // tonic::Status is what the service returns anyway
fn filters_match(
    filters: &[String],
    img: &Image,
    dangling: bool,
    labels: &std::collections::HashMap<String, String>,
) -> Result<bool, Status> {
    for f in filters {
        let (k, v) = f.split_once('=').unwrap_or((f.as_str(), ""));
        let ok = match k {
            "dangling" => match v {
                "true" | "1" => dangling,
                "false" | "0" => !dangling,
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "invalid filter 'dangling={v}': expected true or false"
                    )))
                }
            },
            "reference" => img.repo_tags().iter().any(|t| {
                let slash = t.rfind('/').map(|i| i + 1).unwrap_or(0);
                let repo = t[slash..].rfind(':').map(|i| &t[..slash + i]).unwrap_or(t);
                glob(v, t) || glob(v, repo)
            }),
            "label" => {
                let (lk, lv) = v.split_once('=').map(|(a, b)| (a, Some(b))).unwrap_or((v, None));
                labels.get(lk).is_some_and(|have| lv.is_none_or(|want| want == have))
            }
            other => return Err(Status::invalid_argument(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A shell glob with `*` and `?` (docker's reference filter uses path.Match).
fn glob(pat: &str, s: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && go(p, &s[1..])),
            (Some(b'?'), Some(c)) if *c != b'/' => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    go(pat.as_bytes(), s.as_bytes())
}
