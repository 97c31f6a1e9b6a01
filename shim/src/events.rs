//! Task events for containerd, published in the order they happen.
//!
//! Events are queued and one task forwards them, one at a time, through containerd's ttrpc
//! events service (`TTRPC_ADDRESS`, `containerd.services.events.ttrpc.v1.Events/Forward`);
//! when containerd is away (restarting after a crash) the task reconnects and retries, so
//! nothing is lost or reordered. Without `TTRPC_ADDRESS`, each event goes through the publish
//! binary instead (`BIN --address ADDR publish --topic T --namespace NS`, the event on stdin).

use crate::reaper::Reaper;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{Client, EventsClient};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// One event: its topic (`/tasks/exit`) and its payload as a typed Any.
#[derive(Debug, Clone)]
pub struct Event {
    pub topic: &'static str,
    pub any: Any,
    pub at: SystemTime,
}

pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = d.as_secs() as i64;
    ts.nanos = d.subsec_nanos() as i32;
    ts
}

fn any<M: Message>(type_url: &str, m: &M) -> Any {
    let mut a = Any::new();
    a.type_url = type_url.to_string();
    a.value = m.write_to_bytes().unwrap_or_default();
    a
}

/// The events a shim publishes, with containerd's topics and type names.
macro_rules! event_ctors {
    ($($fn:ident($ty:ident) => $topic:literal),* $(,)?) => {
        $(
            pub fn $fn(m: ev::$ty) -> Event {
                Event { topic: $topic, any: any(concat!("containerd.events.", stringify!($ty)), &m), at: SystemTime::now() }
            }
        )*
    };
}

event_ctors! {
    task_create(TaskCreate) => "/tasks/create",
    task_start(TaskStart) => "/tasks/start",
    task_exit(TaskExit) => "/tasks/exit",
    task_oom(TaskOOM) => "/tasks/oom",
    task_exec_added(TaskExecAdded) => "/tasks/exec-added",
    task_exec_started(TaskExecStarted) => "/tasks/exec-started",
    task_paused(TaskPaused) => "/tasks/paused",
    task_resumed(TaskResumed) => "/tasks/resumed",
    task_delete(TaskDelete) => "/tasks/delete",
}

enum Msg {
    Event(Event),
    /// Answered once every event queued before it has been delivered.
    Flush(oneshot::Sender<()>),
}

/// Where events go.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Publisher {
    /// Starts the forwarding task.
    pub fn start(
        namespace: String,
        ttrpc_address: Option<String>,
        address: String,
        publish_binary: String,
        reaper: Arc<Reaper>,
    ) -> Publisher {
        let (tx, rx) = mpsc::unbounded_channel();
        let binary = Binary {
            path: publish_binary,
            address,
            reaper,
        };
        tokio::spawn(forward(rx, namespace, ttrpc_address, binary));
        Publisher { tx }
    }

    pub fn publish(&self, e: Event) {
        tracing::debug!("event {}", e.topic);
        let _ = self.tx.send(Msg::Event(e));
    }

    /// Waits (at most `limit`) until the events published so far are delivered: the shim
    /// does not exit with events still queued.
    pub async fn flush(&self, limit: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = tokio::time::timeout(limit, rx).await;
        }
    }
}

async fn connect(addr: &str) -> Option<EventsClient> {
    let a = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("unix://{addr}")
    };
    Client::connect(&a).await.ok().map(EventsClient::new)
}

/// The publish binary containerd names with `-publish-binary`, for when there is no ttrpc
/// events address.
struct Binary {
    path: String,
    address: String,
    reaper: Arc<Reaper>,
}

async fn forward(mut rx: mpsc::UnboundedReceiver<Msg>, ns: String, ttrpc_address: Option<String>, binary: Binary) {
    let mut client: Option<EventsClient> = None;
    while let Some(m) = rx.recv().await {
        let e = match m {
            Msg::Event(e) => e,
            Msg::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let mut env = Envelope::new();
        env.timestamp = MessageField::some(timestamp(e.at));
        env.namespace = ns.clone();
        env.topic = e.topic.to_string();
        env.event = MessageField::some(e.any.clone());
        let Some(addr) = &ttrpc_address else {
            publish_with_binary(&binary, &ns, &e).await;
            continue;
        };
        let mut req = ForwardRequest::new();
        req.envelope = MessageField::some(env);
        // containerd may be restarting: keep trying for a while, in order.
        let mut delay = Duration::from_millis(20);
        for attempt in 0..200 {
            if client.is_none() {
                client = connect(addr).await;
            }
            if let Some(c) = &client {
                let ctx =
                    ttrpc::context::with_timeout(i64::try_from(Duration::from_secs(5).as_nanos()).unwrap_or(i64::MAX));
                match c.forward(ctx, &req).await {
                    Ok(_) => break,
                    Err(err) => {
                        tracing::warn!("publish {} (attempt {attempt}): {err}", e.topic);
                        client = None;
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
}

/// Runs the publish binary for one event and waits for it, so that events stay in order.
async fn publish_with_binary(b: &Binary, ns: &str, e: &Event) {
    if b.path.is_empty() {
        return;
    }
    let data = e.any.write_to_bytes().unwrap_or_default();
    let stdin = match crate::runtime::memfd_with("event", &data) {
        Ok(f) => f,
        Err(err) => return tracing::warn!("publish {}: {err}", e.topic),
    };
    let mut c = std::process::Command::new(&b.path);
    c.args([
        "--address",
        &b.address,
        "publish",
        "--topic",
        e.topic,
        "--namespace",
        ns,
    ])
    .stdin(stdin)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    match c.spawn() {
        Ok(child) => {
            let exit = b.reaper.subscribe(child.id() as i32);
            drop(c);
            match exit.await {
                Ok(x) if x.status != 0 => tracing::warn!("publish {}: exit status {}", e.topic, x.status),
                _ => {}
            }
        }
        Err(err) => tracing::warn!("publish {}: {err}", e.topic),
    }
}
