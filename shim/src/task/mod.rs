//! The task service (containerd's `containerd.task.v2.Task` / `v3.Task`): one shim serves
//! the containers of one group (a pod, or a single container).
//!
//! - this file: the shared state, the exit loop, and how the releases of [`crate::exits`]
//!   become events and Wait answers;
//! - `lifecycle`: create, start, exec, pause/resume and delete, each driving the runtime;
//! - `service`: the ttrpc methods, which check a request and call the above.
//!
//! The order of events (TaskStart before TaskExit, TaskOOM before init's exit, init's exit
//! after its execs') is decided by [`crate::exits::Order`], a pure type with unit tests of its
//! own; every decision is taken under the one state lock. Errors map to ttrpc codes in
//! [`crate::errors`].

mod lifecycle;
mod service;

use crate::errors::status;
use crate::events::{self, timestamp, Publisher};
use crate::exits::{Order, Release};
use crate::oom::{self, OomCounter};
use crate::reaper::{Exit, Reaper};
use crate::runtime::RuntimeCli;
use crate::stdio::{ProcessIo, StdioSpec};
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::MessageField;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use ttrpc::{Code, Error as TtrpcError};

pub use crate::options::RuntimeOptions;

/// What the service keeps of a process besides the order of its events: its I/O, its spec
/// (an exec's, until it starts) and the Wait callers.
#[derive(Debug)]
struct ProcIo {
    stdio: StdioSpec,
    io: ProcessIo,
    spec: Vec<u8>,
    waiters: watch::Sender<Option<Exit>>,
}

impl ProcIo {
    fn new(stdio: StdioSpec, spec: Vec<u8>) -> ProcIo {
        ProcIo {
            stdio,
            io: ProcessIo::default(),
            spec,
            waiters: watch::channel(None).0,
        }
    }
}

/// A pid or an exit status as the API carries it (unsigned). Neither is ever negative; a
/// negative one would be a bug, shown as 0 rather than as a huge number.
fn wire(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// An exit as the API carries it: status and time, or zero and none while running.
fn exit_fields(exit: Option<Exit>) -> (u32, MessageField<Timestamp>) {
    match exit {
        Some(e) => (wire(e.status), MessageField::some(timestamp(e.at))),
        None => (0, MessageField::none()),
    }
}

#[derive(Debug)]
struct Container {
    bundle: PathBuf,
    runtime: RuntimeCli,
    rootfs_mounted: bool,
    /// A delete is in flight.
    busy: bool,
    init: ProcIo,
    execs: HashMap<String, ProcIo>,
    oom: Option<OomCounter>,
    oom_task: Option<JoinHandle<()>>,
}

impl Container {
    fn proc_io(&mut self, exec_id: &str) -> Option<&mut ProcIo> {
        if exec_id.is_empty() {
            Some(&mut self.init)
        } else {
            self.execs.get_mut(exec_id)
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(t) = self.oom_task.take() {
            t.abort();
        }
    }
}

#[derive(Debug, Default)]
struct Tasks {
    /// The order of every process's events.
    order: Order,
    containers: HashMap<String, Container>,
    creating: HashSet<String>,
}

/// State shared by the service, the exit loop and the OOM watchers.
#[derive(Debug)]
pub struct Shared {
    tasks: Mutex<Tasks>,
    publisher: Publisher,
    reaper: Arc<Reaper>,
    namespace: String,
    unified: bool,
    debug: bool,
    pub shutdown: Arc<Notify>,
    /// Wakes the memory trimmer after a request (see [`Shared::trim_loop`]).
    activity: Notify,
}

/// The ttrpc task service.
#[derive(Debug, Clone)]
pub struct Service(pub Arc<Shared>);

impl Shared {
    pub fn new(
        publisher: Publisher,
        reaper: Arc<Reaper>,
        namespace: String,
        debug: bool,
        shutdown: Arc<Notify>,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            tasks: Mutex::new(Tasks::default()),
            publisher,
            reaper,
            namespace,
            unified: crate::metrics::unified_host(),
            debug,
            shutdown,
            activity: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Tasks> {
        self.activity.notify_one();
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs forever: shortly after each burst of requests, gives back what an idle shim does
    /// not need ([`crate::trim`]). No timer runs while the shim is idle.
    pub async fn trim_loop(self: Arc<Self>) {
        loop {
            self.activity.notified().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            crate::trim::trim();
        }
    }

    /// Runs forever: matches every reaped exit to its process.
    pub async fn exit_loop(self: Arc<Self>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Exit>) {
        while let Some(e) = rx.recv().await {
            let mut t = self.lock();
            let r = t.order.on_exit(e);
            self.apply(&mut t, r);
        }
    }

    /// Carries out what the order released, in order (see [`crate::exits`]).
    fn apply(&self, t: &mut Tasks, releases: Vec<Release>) {
        for r in releases {
            match r {
                Release::CheckOom { container } => self.publish_new_oom(t, &container),
                Release::Exit {
                    container,
                    exec_id,
                    exit,
                } => {
                    self.publisher.publish(events::task_exit(ev::TaskExit {
                        container_id: container.clone(),
                        id: if exec_id.is_empty() {
                            container.clone()
                        } else {
                            exec_id.clone()
                        },
                        pid: wire(exit.pid),
                        exit_status: wire(exit.status),
                        exited_at: MessageField::some(timestamp(exit.at)),
                        ..Default::default()
                    }));
                    Self::answer_wait(t, &container, &exec_id, exit);
                }
                Release::WaitOnly {
                    container,
                    exec_id,
                    exit,
                } => Self::answer_wait(t, &container, &exec_id, exit),
                Release::KillAll { container } => {
                    let Some(rt) = t.containers.get(&container).map(|c| c.runtime.clone()) else {
                        continue;
                    };
                    tokio::spawn(async move {
                        if let Err(e) = rt
                            .run(
                                &["kill", "--all", &container, "9"],
                                crate::runtime::Stdio3::null(),
                                None,
                            )
                            .await
                        {
                            tracing::warn!("{container}: killing the processes left after init: {e}");
                        }
                    });
                }
            }
        }
    }

    /// Publishes TaskOOM if the container's OOM counter moved since it was last read.
    fn publish_new_oom(&self, t: &mut Tasks, container: &str) {
        let fired = t
            .containers
            .get_mut(container)
            .and_then(|c| c.oom.as_mut())
            .is_some_and(|o| o.take_new());
        if fired {
            self.publisher.publish(events::task_oom(ev::TaskOOM {
                container_id: container.to_string(),
                ..Default::default()
            }));
        }
    }

    fn answer_wait(t: &mut Tasks, container: &str, exec_id: &str, exit: Exit) {
        if let Some(p) = t.containers.get_mut(container).and_then(|c| c.proc_io(exec_id)) {
            p.waiters.send_replace(Some(exit));
        }
    }

    fn watch_oom(self: &Arc<Self>, cid: String, pid: i32) -> (Option<OomCounter>, Option<JoinHandle<()>>) {
        match oom::watch(pid) {
            Ok((counter, notifier)) => {
                let me = self.clone();
                let task = tokio::spawn(async move {
                    while notifier.wait().await.is_ok() {
                        let mut guard = me.lock();
                        let t = &mut *guard;
                        let Some(g) = t.order.group(&cid) else { return };
                        if g.init.exit.is_some() {
                            // The exit path reports an OOM that killed init.
                            continue;
                        }
                        me.publish_new_oom(t, &cid);
                    }
                });
                (Some(counter), Some(task))
            }
            Err(e) => {
                tracing::debug!("{cid}: no OOM notifications: {e}");
                (None, None)
            }
        }
    }
}

/// Runs a request's work as its own task: ttrpc drops a handler whose caller went away
/// (deadline passed, connection lost), and a create, start or delete stopped half-way would
/// leave the container's state inconsistent.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, TtrpcError>> + Send + 'static,
) -> Result<T, TtrpcError> {
    tokio::spawn(work)
        .await
        .map_err(|e| status(Code::INTERNAL, format!("request task failed: {e}")))?
}

fn valid_id(id: &str) -> Result<(), TtrpcError> {
    if id.is_empty() || id.len() > 1024 || id == "." || id == ".." || id.contains(['/', '\0']) {
        return Err(status(Code::INVALID_ARGUMENT, format!("invalid id {id:?}")));
    }
    Ok(())
}

/// Does the bundle's config give the container its own pid namespace?
fn has_own_pid_ns(bundle: &Path) -> bool {
    let Ok(b) = std::fs::read(bundle.join("config.json")) else {
        return true;
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b) else {
        return true;
    };
    v["linux"]["namespaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .any(|n| n["type"] == "pid" && n["path"].as_str().unwrap_or("").is_empty())
        })
        .unwrap_or(false)
}

fn read_pid(path: &Path) -> Result<i32, TtrpcError> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        // 0 or a negative pid would make kill(2) signal a process group or everything.
        .filter(|p: &i32| *p > 0)
        .ok_or_else(|| status(Code::UNKNOWN, format!("the runtime wrote no pid to {}", path.display())))
}

impl Service {
    /// Runs `f` under the state lock, for a container the shim knows.
    fn with<R>(&self, id: &str, f: impl FnOnce(&mut Tasks) -> Result<R, TtrpcError>) -> Result<R, TtrpcError> {
        let mut t = self.0.lock();
        if !t.containers.contains_key(id) || t.order.group(id).is_none() {
            return Err(crate::errors::not_found(format!("container {id}")));
        }
        f(&mut t)
    }
}
