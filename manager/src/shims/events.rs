//! drayd's ttrpc events service: where shims publish (`TTRPC_ADDRESS`,
//! `containerd.services.events.ttrpc.v1.Events/Forward`). Each envelope is decoded into a
//! [`ShimEvent`] and sent on a broadcast channel (the event bus's input). A shim retries an
//! event it could not deliver, so a drayd that was down gets the events on its return.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{create_events, Events};
use containerd_shim_protos::ttrpc;
use tokio::sync::broadcast;

use crate::error::{Error, Result};

/// What a shim told drayd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShimEvent {
    /// A process exited (`exec_id` is the container's id for its init process).
    Exit {
        container_id: String,
        exec_id: String,
        pid: u32,
        status: u32,
        exited_at: i64,
    },
    /// The kernel's OOM killer acted in the container's cgroup.
    Oom { container_id: String },
    /// Another task event (create, start, delete, exec, paused, resumed...), by topic.
    Other { topic: String, container_id: String },
}

/// Decodes one forwarded envelope; `None` for event types drayd does not use.
pub fn decode(req: &ForwardRequest) -> Option<ShimEvent> {
    let env = req.envelope.as_ref()?;
    let any = env.event.as_ref()?;
    let ty = any.type_url.rsplit('/').next().unwrap_or(&any.type_url);
    match ty {
        "containerd.events.TaskExit" => {
            let e = ev::TaskExit::parse_from_bytes(&any.value).ok()?;
            Some(ShimEvent::Exit {
                exec_id: e.id,
                pid: e.pid,
                status: e.exit_status,
                exited_at: super::unix_nanos(e.exited_at.as_ref()).unwrap_or(0),
                container_id: e.container_id,
            })
        }
        "containerd.events.TaskOOM" => {
            let e = ev::TaskOOM::parse_from_bytes(&any.value).ok()?;
            Some(ShimEvent::Oom {
                container_id: e.container_id,
            })
        }
        _ => {
            // Every task event starts with its container id (field 1).
            let e = ev::TaskCreate::parse_from_bytes(&any.value).ok();
            Some(ShimEvent::Other {
                topic: env.topic.clone(),
                container_id: e.map(|e| e.container_id).unwrap_or_default(),
            })
        }
    }
}

struct Service {
    tx: broadcast::Sender<ShimEvent>,
}

#[async_trait]
impl Events for Service {
    async fn forward(&self, _ctx: &ttrpc::r#async::TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        if let Some(e) = decode(&req) {
            tracing::debug!(?e, "shim event");
            // No receiver is not an error: nobody is interested right now.
            let _ = self.tx.send(e);
        }
        Ok(Empty::new())
    }
}

/// The running events server; dropping it stops listening.
pub struct EventsServer {
    server: ttrpc::r#async::Server,
}

impl EventsServer {
    /// Listens on `path` (a stale socket is replaced) and forwards events to `tx`.
    pub async fn start(path: &Path, tx: broadcast::Sender<ShimEvent>) -> Result<EventsServer> {
        let _ = std::fs::remove_file(path);
        let services = create_events(Arc::new(Service { tx }));
        let mut server = ttrpc::r#async::Server::new()
            .bind(&format!("unix://{}", path.display()))
            .map_err(|e| {
                Error::io(
                    format!("listening on {}", path.display()),
                    std::io::Error::other(e.to_string()),
                )
            })?
            .register_service(services);
        server
            .start()
            .await
            .map_err(|e| Error::io("starting the events service", std::io::Error::other(e.to_string())))?;
        Ok(EventsServer { server })
    }

    /// Stops accepting and closes the connections.
    pub async fn stop(mut self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.server.shutdown()).await;
    }
}
