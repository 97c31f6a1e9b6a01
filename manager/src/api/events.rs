//! `dray.v1.Events`: the event bus as a stream.

use std::collections::BTreeMap;
use std::sync::Arc;

use dray_proto::v1 as pb;
use dray_proto::v1::events_server::Events as EventsService;
use tonic::{Request, Response, Status};

use crate::containers::Containers;
use crate::events::{matches, Event};

/// The events service.
pub struct EventsApi {
    pub containers: Arc<Containers>,
}

fn message(e: Event) -> pb::EventMessage {
    pb::EventMessage {
        r#type: e.kind,
        action: e.action,
        id: e.id,
        attributes: e.attributes.into_iter().collect(),
        time: e.time,
    }
}

type EventStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::EventMessage, Status>> + Send>>;

#[tonic::async_trait]
impl EventsService for EventsApi {
    type SubscribeStream = EventStream;

    async fn subscribe(&self, req: Request<pb::EventsRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let r = req.into_inner();
        let filters: BTreeMap<String, Vec<String>> = r.filters.into_iter().map(|(k, v)| (k, v.values)).collect();
        for k in filters.keys() {
            if !matches!(
                k.as_str(),
                "type" | "event" | "container" | "image" | "volume" | "label"
            ) {
                return Err(Status::invalid_argument(format!("invalid filter '{k}'")));
            }
        }
        let (past, mut live) = self.containers.events().subscribe((r.since > 0).then_some(r.since));
        let until = r.until;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::EventMessage, Status>>(64);
        tokio::spawn(async move {
            let after_until = |e: &Event| until > 0 && e.time > until;
            for e in past {
                if after_until(&e) {
                    return;
                }
                if matches(&e, &filters) && tx.send(Ok(message(e))).await.is_err() {
                    return;
                }
            }
            let deadline = async {
                if until > 0 {
                    let now = crate::meta::now_nanos();
                    tokio::time::sleep(std::time::Duration::from_nanos((until - now).max(0) as u64)).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    e = live.recv() => match e {
                        Ok(e) => {
                            if after_until(&e) { return; }
                            if matches(&e, &filters) && tx.send(Ok(message(e))).await.is_err() { return; }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!("events: {n} skipped (slow client)");
                        }
                        Err(_) => return,
                    },
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
