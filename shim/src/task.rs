//! The task service (containerd's `containerd.task.v2.Task` / `v3.Task`): one shim serves
//! the containers of one group (a pod, or a single container).
//!
//! ## Process state and the order of events
//! A process goes Created → Running → Stopped (init also Paused). Exits come from the
//! reaper; an exit is matched to its process by pid and published as TaskExit exactly once,
//! when Wait also returns. Ordering rules, all decided under the one state lock:
//! * TaskStart / TaskExecStarted precede their TaskExit: an exit reaped while `start` is in
//!   flight is held until the start has been published.
//! * An exit whose pid is not known yet (an exec that ends before the runtime's `exec`
//!   returns its pid) is kept while a create or start is in flight and claimed afterwards.
//! * TaskOOM precedes the TaskExit it caused: the OOM counter is read before init's exit.
//! * Init's TaskExit comes after the exits of its exec processes (they die with it).

use crate::errors::{not_found, runtime_err, status};
use crate::events::{self, timestamp, Publisher};
use crate::mount;
use crate::oom::{self, OomCounter};
pub use crate::options::RuntimeOptions;
use crate::reaper::{Exit, Reaper};
use crate::runtime::RuntimeCli;
use crate::stdio::{self, ProcessIo, StdioSpec};
use async_trait::async_trait;
use containerd_shim_protos::api;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::{EnumOrUnknown, Message, MessageField};
use containerd_shim_protos::shim::oci::ProcessDetails;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::types::task::{ProcessInfo, Status};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use ttrpc::r#async::TtrpcContext;
use ttrpc::{Code, Error as TtrpcError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Running,
    Stopped,
}

struct Proc {
    exec_id: String,
    pid: i32,
    stdio: StdioSpec,
    state: State,
    exit: Option<Exit>,
    /// A start is in flight: its exit waits for the start event.
    starting: bool,
    exit_published: bool,
    waiters: watch::Sender<Option<Exit>>,
    io: ProcessIo,
    spec: Vec<u8>,
}

impl Proc {
    fn new(exec_id: &str, stdio: StdioSpec, spec: Vec<u8>) -> Proc {
        Proc {
            exec_id: exec_id.to_string(),
            pid: 0,
            stdio,
            state: State::Created,
            exit: None,
            starting: false,
            exit_published: false,
            waiters: watch::channel(None).0,
            io: ProcessIo::default(),
            spec,
        }
    }

    fn exit_status(
        &self,
    ) -> (
        u32,
        MessageField<containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp>,
    ) {
        match self.exit {
            Some(e) => (e.status as u32, MessageField::some(timestamp(e.at))),
            None => (0, MessageField::none()),
        }
    }
}

struct Container {
    id: String,
    bundle: PathBuf,
    runtime: RuntimeCli,
    rootfs_mounted: bool,
    init: Proc,
    paused: bool,
    busy: bool,
    execs: HashMap<String, Proc>,
    oom: Option<OomCounter>,
    oom_task: Option<JoinHandle<()>>,
    kill_all_on_exit: bool,
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(t) = self.oom_task.take() {
            t.abort();
        }
    }
}

#[derive(Default)]
struct Tasks {
    containers: HashMap<String, Container>,
    creating: HashSet<String>,
    /// Creates and starts in flight: while any is, exits of unknown pids are kept.
    capture: usize,
    unclaimed: HashMap<i32, Exit>,
    by_pid: HashMap<i32, (String, String)>,
}

/// State shared by the service, the exit loop and the OOM watchers.
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
#[derive(Clone)]
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
            self.on_exit(&mut t, e);
        }
    }

    fn on_exit(&self, t: &mut Tasks, e: Exit) {
        let Some((cid, eid)) = t.by_pid.remove(&e.pid) else {
            if t.capture > 0 {
                t.unclaimed.insert(e.pid, e);
            }
            return;
        };
        let Some(c) = t.containers.get_mut(&cid) else { return };
        if eid.is_empty() {
            c.init.exit = Some(e);
            c.init.state = State::Stopped;
            c.paused = false;
            if c.kill_all_on_exit {
                // Without its own pid namespace, nothing kills the container's other
                // processes when init ends: do it, as runc's shim does.
                let rt = c.runtime.clone();
                let id = c.id.clone();
                tokio::spawn(async move {
                    if let Err(e) = rt
                        .run(&["kill", "--all", &id, "9"], crate::runtime::Stdio3::null(), None)
                        .await
                    {
                        tracing::warn!("{id}: killing the processes left after init: {e}");
                    }
                });
            }
        } else if let Some(p) = c.execs.get_mut(&eid) {
            p.exit = Some(e);
            p.state = State::Stopped;
            if !p.starting {
                self.publish_exit(&cid, p);
            }
        }
        self.maybe_publish_init_exit(c);
    }

    fn publish_exit(&self, cid: &str, p: &mut Proc) {
        let Some(e) = p.exit else { return };
        if p.exit_published {
            return;
        }
        p.exit_published = true;
        self.publisher.publish(events::task_exit(ev::TaskExit {
            container_id: cid.to_string(),
            id: if p.exec_id.is_empty() {
                cid.to_string()
            } else {
                p.exec_id.clone()
            },
            pid: e.pid as u32,
            exit_status: e.status as u32,
            exited_at: MessageField::some(timestamp(e.at)),
            ..Default::default()
        }));
        p.waiters.send_replace(Some(e));
    }

    /// Publishes init's exit once its start is out and its exec processes have exited.
    fn maybe_publish_init_exit(&self, c: &mut Container) {
        if c.init.exit.is_none() || c.init.exit_published || c.init.starting {
            return;
        }
        if c.execs.values().any(|p| p.state == State::Running || p.starting) {
            return;
        }
        if let Some(o) = &mut c.oom {
            if o.take_new() {
                self.publisher.publish(events::task_oom(ev::TaskOOM {
                    container_id: c.id.clone(),
                    ..Default::default()
                }));
            }
        }
        self.publish_exit(&c.id.clone(), &mut c.init);
    }

    fn capture_done(t: &mut Tasks) {
        t.capture = t.capture.saturating_sub(1);
        if t.capture == 0 {
            t.unclaimed.clear();
        }
    }

    fn watch_oom(self: &Arc<Self>, cid: String, pid: i32) -> (Option<OomCounter>, Option<JoinHandle<()>>) {
        match oom::watch(pid) {
            Ok((counter, notifier)) => {
                let me = self.clone();
                let task = tokio::spawn(async move {
                    while notifier.wait().await.is_ok() {
                        let mut t = me.lock();
                        let Some(c) = t.containers.get_mut(&cid) else { return };
                        if c.init.exit.is_some() {
                            // The exit path reports an OOM that killed init.
                            continue;
                        }
                        if let Some(o) = &mut c.oom {
                            if o.take_new() {
                                me.publisher.publish(events::task_oom(ev::TaskOOM {
                                    container_id: cid.clone(),
                                    ..Default::default()
                                }));
                            }
                        }
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
    fn with<R>(&self, id: &str, f: impl FnOnce(&mut Tasks) -> Result<R, TtrpcError>) -> Result<R, TtrpcError> {
        let mut t = self.0.lock();
        if !t.containers.contains_key(id) {
            return Err(not_found(format!("container {id}")));
        }
        f(&mut t)
    }

    fn proc_mut<'a>(c: &'a mut Container, exec_id: &str) -> Result<&'a mut Proc, TtrpcError> {
        if exec_id.is_empty() {
            Ok(&mut c.init)
        } else {
            c.execs
                .get_mut(exec_id)
                .ok_or_else(|| not_found(format!("process {exec_id}")))
        }
    }

    async fn create_task(&self, req: api::CreateTaskRequest) -> Result<api::CreateTaskResponse, TtrpcError> {
        valid_id(&req.id)?;
        if !req.checkpoint.is_empty() {
            return Err(status(
                Code::UNIMPLEMENTED,
                "checkpoint restore is not supported (no CRIU)",
            ));
        }
        {
            let mut t = self.0.lock();
            if t.containers.contains_key(&req.id) || !t.creating.insert(req.id.clone()) {
                return Err(status(
                    Code::ALREADY_EXISTS,
                    format!("container {}: already exists", req.id),
                ));
            }
            t.capture += 1;
        }
        let r = self.create_inner(&req).await;
        let mut t = self.0.lock();
        t.creating.remove(&req.id);
        // An init that died as soon as it was created: claim its exit before the capture ends.
        let early = r.as_ref().ok().and_then(|c| t.unclaimed.remove(&c.init.pid));
        Shared::capture_done(&mut t);
        let mut c = r?;
        let pid = c.init.pid;
        let (oom, task) = self.0.watch_oom(req.id.clone(), pid);
        c.oom = oom;
        c.oom_task = task;
        t.by_pid.insert(pid, (req.id.clone(), String::new()));
        t.containers.insert(req.id.clone(), c);
        self.0.publisher.publish(events::task_create(ev::TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(ev::TaskIO {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                ..Default::default()
            }),
            checkpoint: req.checkpoint.clone(),
            pid: pid as u32,
            ..Default::default()
        }));
        if let Some(e) = early {
            self.0.on_exit(&mut t, e);
        }
        Ok(api::CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    async fn create_inner(&self, req: &api::CreateTaskRequest) -> Result<Container, TtrpcError> {
        let bundle = PathBuf::from(&req.bundle);
        let opts = RuntimeOptions::from_any(req.options.as_ref())?;
        if let Ok(j) = serde_json::to_vec(&opts) {
            let _ = std::fs::write(bundle.join("options.json"), j);
        }
        let runtime = RuntimeCli {
            binary: crate::runtime::resolve(opts.binary()),
            root: opts.root_for(&self.0.namespace),
            log: bundle.join("log.json"),
            systemd_cgroup: opts.systemd_cgroup,
            debug: self.0.debug,
            io_owner: (opts.io_uid != 0 || opts.io_gid != 0).then_some((opts.io_uid, opts.io_gid)),
            reaper: self.0.reaper.clone(),
        };
        let rootfs = bundle.join("rootfs");
        let mounted = !req.rootfs.is_empty();
        if mounted {
            let _ = std::fs::create_dir_all(&rootfs);
            mount::mount_all(&req.rootfs, &rootfs).map_err(|e| status(Code::UNKNOWN, e.to_string()))?;
        }
        let undo_mounts = || {
            if mounted {
                mount::unmount_all(&rootfs);
            }
        };
        let spec = StdioSpec {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let pid_file = bundle.join("init.pid");
        let mut args = vec![
            "create".to_string(),
            "--bundle".into(),
            bundle.to_string_lossy().into_owned(),
            "--pid-file".into(),
            pid_file.to_string_lossy().into_owned(),
        ];
        if opts.no_pivot_root {
            args.push("--no-pivot".into());
        }
        if opts.no_new_keyring {
            args.push("--no-new-keyring".into());
        }
        let (pid, io) = match self.spawn_process(&runtime, args, &spec, &req.id, &pid_file).await {
            Ok(v) => v,
            Err(e) => {
                // Whatever the runtime left of a half-made container goes.
                let _ = runtime
                    .run(&["delete", "--force", &req.id], crate::runtime::Stdio3::null(), None)
                    .await;
                undo_mounts();
                return Err(e);
            }
        };
        let mut init = Proc::new("", spec, Vec::new());
        init.pid = pid;
        init.io = io;
        Ok(Container {
            id: req.id.clone(),
            kill_all_on_exit: !has_own_pid_ns(&bundle),
            bundle,
            runtime,
            rootfs_mounted: mounted,
            init,
            paused: false,
            busy: false,
            execs: HashMap::new(),
            oom: None,
            oom_task: None,
        })
    }

    async fn start_init(&self, id: &str) -> Result<api::StartResponse, TtrpcError> {
        let (rt, pid) = self.with(id, |t| {
            let c = t.containers.get_mut(id).ok_or_else(|| not_found(id))?;
            if c.init.state != State::Created || c.init.starting || c.busy {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("container {id} is not in created state"),
                ));
            }
            c.init.starting = true;
            Ok((c.runtime.clone(), c.init.pid))
        })?;
        let r = rt.run(&["start", id], crate::runtime::Stdio3::null(), None).await;
        let mut t = self.0.lock();
        let Some(c) = t.containers.get_mut(id) else {
            return Err(not_found(id));
        };
        c.init.starting = false;
        if let Err(e) = r {
            self.0.maybe_publish_init_exit(c);
            return Err(runtime_err(e));
        }
        if c.init.state == State::Created {
            c.init.state = State::Running;
        }
        self.0.publisher.publish(events::task_start(ev::TaskStart {
            container_id: id.to_string(),
            pid: pid as u32,
            ..Default::default()
        }));
        self.0.maybe_publish_init_exit(c);
        Ok(api::StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    async fn start_exec(&self, id: &str, exec_id: &str) -> Result<api::StartResponse, TtrpcError> {
        let (rt, bundle, spec, stdio) = self.with(id, |t| {
            let c = t.containers.get_mut(id).ok_or_else(|| not_found(id))?;
            if c.init.state != State::Running || c.paused {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("container {id} is not running"),
                ));
            }
            let (rt, bundle) = (c.runtime.clone(), c.bundle.clone());
            let p = Self::proc_mut(c, exec_id)?;
            if p.state != State::Created || p.starting {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("process {exec_id} was already started"),
                ));
            }
            p.starting = true;
            let found = (rt, bundle, p.spec.clone(), p.stdio.clone());
            t.capture += 1;
            Ok(found)
        })?;
        let r = self.run_exec(id, exec_id, &rt, &bundle, &spec, &stdio).await;
        let mut t = self.0.lock();
        let early = match &r {
            Ok((pid, _)) => t.unclaimed.remove(pid),
            Err(_) => None,
        };
        Shared::capture_done(&mut t);
        let Some(c) = t.containers.get_mut(id) else {
            return Err(not_found(id));
        };
        let Some(p) = c.execs.get_mut(exec_id) else {
            return Err(not_found(format!("process {exec_id}")));
        };
        p.starting = false;
        let (pid, io) = match r {
            Ok(v) => v,
            Err(e) => {
                // It never ran: Wait returns 255 and the process can be deleted.
                p.state = State::Stopped;
                p.exit = Some(Exit {
                    pid: 0,
                    status: 255,
                    at: std::time::SystemTime::now(),
                });
                p.exit_published = true;
                p.waiters.send_replace(p.exit);
                self.0.maybe_publish_init_exit(c);
                return Err(e);
            }
        };
        p.pid = pid;
        p.io = io;
        p.state = State::Running;
        t.by_pid.insert(pid, (id.to_string(), exec_id.to_string()));
        self.0.publisher.publish(events::task_exec_started(ev::TaskExecStarted {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            pid: pid as u32,
            ..Default::default()
        }));
        if let Some(e) = early {
            self.0.on_exit(&mut t, e);
        } else if let Some(c) = t.containers.get_mut(id) {
            self.0.maybe_publish_init_exit(c);
        }
        Ok(api::StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    async fn run_exec(
        &self,
        id: &str,
        exec_id: &str,
        rt: &RuntimeCli,
        bundle: &Path,
        spec: &[u8],
        stdio: &StdioSpec,
    ) -> Result<(i32, ProcessIo), TtrpcError> {
        let spec_file = bundle.join(format!(".exec-{exec_id}.json"));
        let pid_file = bundle.join(format!(".exec-{exec_id}.pid"));
        std::fs::write(&spec_file, spec).map_err(|e| status(Code::UNKNOWN, format!("{}: {e}", spec_file.display())))?;
        let args = [
            "exec".to_string(),
            "--process".into(),
            spec_file.to_string_lossy().into_owned(),
            "--detach".into(),
            "--pid-file".into(),
            pid_file.to_string_lossy().into_owned(),
        ];
        let r = self.spawn_process(rt, args.to_vec(), stdio, id, &pid_file).await;
        let _ = std::fs::remove_file(&spec_file);
        let _ = std::fs::remove_file(&pid_file);
        r
    }

    /// Runs the runtime's `create` or `exec` (`args`) for a process with `stdio`: with a
    /// terminal the console socket is added, then the container id; the process's pid comes
    /// from `pid_file`. Returns the pid and the process's I/O, pumping.
    async fn spawn_process(
        &self,
        rt: &RuntimeCli,
        mut args: Vec<String>,
        stdio: &StdioSpec,
        id: &str,
        pid_file: &Path,
    ) -> Result<(i32, ProcessIo), TtrpcError> {
        let io_err = |e: stdio::IoError| status(Code::UNKNOWN, e.to_string());
        let mut prepared = stdio::prepare(stdio, id, &self.0.namespace, rt.io_owner)
            .await
            .map_err(io_err)?;
        if let Some(cs) = &prepared.console_socket {
            args.extend(["--console-socket".to_string(), cs.path.to_string_lossy().into_owned()]);
        }
        args.push(id.to_string());
        let child = std::mem::replace(&mut prepared.child, crate::runtime::Stdio3::null());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        rt.run(&argv, child, None).await.map_err(runtime_err)?;
        let pid = read_pid(pid_file)?;
        let io = prepared.finish(id).map_err(io_err)?;
        Ok((pid, io))
    }

    /// Pause (freeze) or resume the container, publishing TaskPaused / TaskResumed.
    async fn set_paused(&self, id: &str, pause: bool) -> Result<Empty, TtrpcError> {
        let rt = self.with(id, |t| {
            let c = &t.containers[id];
            if pause && (c.init.state != State::Running || c.paused) {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("container {id} is not running"),
                ));
            }
            if !pause && !c.paused {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("container {id} is not paused"),
                ));
            }
            Ok(c.runtime.clone())
        })?;
        let verb = if pause { "pause" } else { "resume" };
        rt.run(&[verb, id], crate::runtime::Stdio3::null(), None)
            .await
            .map_err(runtime_err)?;
        if let Some(c) = self.0.lock().containers.get_mut(id) {
            c.paused = pause;
        }
        let container_id = id.to_string();
        self.0.publisher.publish(if pause {
            events::task_paused(ev::TaskPaused {
                container_id,
                ..Default::default()
            })
        } else {
            events::task_resumed(ev::TaskResumed {
                container_id,
                ..Default::default()
            })
        });
        Ok(Empty::new())
    }

    async fn delete_task(&self, id: &str, exec_id: &str) -> Result<api::DeleteResponse, TtrpcError> {
        if !exec_id.is_empty() {
            let mut p = self
                .with(id, |t| {
                    let c = t.containers.get_mut(id).ok_or_else(|| not_found(id))?;
                    let p = Self::proc_mut(c, exec_id)?;
                    if p.state == State::Running || p.starting {
                        return Err(status(
                            Code::FAILED_PRECONDITION,
                            format!("process {exec_id} is running"),
                        ));
                    }
                    Ok(c.execs.remove(exec_id))
                })?
                .ok_or_else(|| not_found(exec_id))?;
            p.io.finish(Duration::from_secs(2)).await;
            let (exit_status, exited_at) = p.exit_status();
            return Ok(api::DeleteResponse {
                pid: p.pid as u32,
                exit_status,
                exited_at,
                ..Default::default()
            });
        }
        let (rt, created, mut io) = self.with(id, |t| {
            let c = t.containers.get_mut(id).ok_or_else(|| not_found(id))?;
            if c.busy {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("container {id} is being deleted"),
                ));
            }
            if c.init.state == State::Running || c.init.starting {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("container {id} is running: kill it first"),
                ));
            }
            if c.init.exit.is_some() && !c.init.exit_published {
                // Its exit waits for the exits of its exec processes.
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("container {id} is still stopping"),
                ));
            }
            c.busy = true;
            Ok((
                c.runtime.clone(),
                c.init.state == State::Created,
                std::mem::take(&mut c.init.io),
            ))
        })?;
        let args: &[&str] = if created {
            &["delete", "--force", id]
        } else {
            &["delete", id]
        };
        if let Err(e) = rt.run(args, crate::runtime::Stdio3::null(), None).await {
            // The state may be gone already (the runtime cleaned up); force is the fallback.
            if let Err(e2) = rt
                .run(&["delete", "--force", id], crate::runtime::Stdio3::null(), None)
                .await
            {
                if !crate::errors::container_is_gone(&e2) {
                    if let Some(c) = self.0.lock().containers.get_mut(id) {
                        c.busy = false;
                        // Still there: its stdio goes on.
                        c.init.io = io;
                    }
                    return Err(runtime_err(e));
                }
            }
        }
        io.finish(Duration::from_secs(2)).await;
        let mut t = self.0.lock();
        let Some(mut c) = t.containers.remove(id) else {
            return Err(not_found(id));
        };
        t.by_pid.retain(|_, (cid, _)| cid != id);
        if c.rootfs_mounted {
            mount::unmount_all(&c.bundle.join("rootfs"));
        }
        if c.init.exit.is_none() {
            // Deleted before it ran: the runtime killed it.
            c.init.exit = Some(Exit {
                pid: c.init.pid,
                status: 128 + libc::SIGKILL,
                at: std::time::SystemTime::now(),
            });
        }
        let (exit_status, exited_at) = c.init.exit_status();
        self.0.publisher.publish(events::task_delete(ev::TaskDelete {
            container_id: id.to_string(),
            pid: c.init.pid as u32,
            exit_status,
            exited_at: exited_at.clone(),
            id: id.to_string(),
            ..Default::default()
        }));
        Ok(api::DeleteResponse {
            pid: c.init.pid as u32,
            exit_status,
            exited_at,
            ..Default::default()
        })
    }
}

#[async_trait]
impl Task for Service {
    async fn state(&self, _ctx: &TtrpcContext, req: api::StateRequest) -> ttrpc::Result<api::StateResponse> {
        self.with(&req.id, |t| {
            let c = t.containers.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
            let (bundle, paused) = (c.bundle.to_string_lossy().into_owned(), c.paused);
            let p = Self::proc_mut(c, &req.exec_id)?;
            let st = match p.state {
                State::Created => Status::CREATED,
                State::Running if paused && p.exec_id.is_empty() => Status::PAUSED,
                State::Running => Status::RUNNING,
                State::Stopped => Status::STOPPED,
            };
            let (exit_status, exited_at) = p.exit_status();
            Ok(api::StateResponse {
                id: req.id.clone(),
                bundle,
                pid: p.pid as u32,
                status: EnumOrUnknown::new(st),
                stdin: p.stdio.stdin.clone(),
                stdout: p.stdio.stdout.clone(),
                stderr: p.stdio.stderr.clone(),
                terminal: p.stdio.terminal,
                exit_status,
                exited_at,
                exec_id: req.exec_id.clone(),
                ..Default::default()
            })
        })
    }

    async fn create(&self, _ctx: &TtrpcContext, req: api::CreateTaskRequest) -> ttrpc::Result<api::CreateTaskResponse> {
        tracing::debug!("create {}", req.id);
        let me = self.clone();
        detached(async move { me.create_task(req).await }).await
    }

    async fn start(&self, _ctx: &TtrpcContext, req: api::StartRequest) -> ttrpc::Result<api::StartResponse> {
        tracing::debug!("start {} {}", req.id, req.exec_id);
        let me = self.clone();
        detached(async move {
            if req.exec_id.is_empty() {
                me.start_init(&req.id).await
            } else {
                me.start_exec(&req.id, &req.exec_id).await
            }
        })
        .await
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: api::DeleteRequest) -> ttrpc::Result<api::DeleteResponse> {
        tracing::debug!("delete {} {}", req.id, req.exec_id);
        let me = self.clone();
        detached(async move { me.delete_task(&req.id, &req.exec_id).await }).await
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> ttrpc::Result<api::PidsResponse> {
        let rt = self.with(&req.id, |t| Ok(t.containers[&req.id].runtime.clone()))?;
        let pids = rt.pids(&req.id).await.map_err(runtime_err)?;
        let t = self.0.lock();
        let mut resp = api::PidsResponse::new();
        for pid in pids {
            let mut info = ProcessInfo::new();
            info.pid = pid as u32;
            if let Some((cid, eid)) = t.by_pid.get(&pid) {
                if cid == &req.id && !eid.is_empty() {
                    let d = ProcessDetails {
                        exec_id: eid.clone(),
                        ..Default::default()
                    };
                    let mut a = Any::new();
                    a.type_url = "containerd.runc.v1.ProcessDetails".into();
                    a.value = d.write_to_bytes().unwrap_or_default();
                    info.info = MessageField::some(a);
                }
            }
            resp.processes.push(info);
        }
        Ok(resp)
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> ttrpc::Result<Empty> {
        self.set_paused(&req.id, true).await
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> ttrpc::Result<Empty> {
        self.set_paused(&req.id, false).await
    }

    async fn checkpoint(&self, _ctx: &TtrpcContext, req: api::CheckpointTaskRequest) -> ttrpc::Result<Empty> {
        self.with(&req.id, |_| Ok(()))?;
        Err(status(
            Code::UNIMPLEMENTED,
            "checkpoint is not supported: dray has no CRIU support on this host",
        ))
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> ttrpc::Result<Empty> {
        tracing::debug!("kill {} {} {}", req.id, req.exec_id, req.signal);
        enum How {
            Runtime(RuntimeCli),
            Pid(i32),
        }
        let how = self.with(&req.id, |t| {
            let c = t.containers.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
            let rt = c.runtime.clone();
            let is_init = req.exec_id.is_empty();
            let p = Self::proc_mut(c, &req.exec_id)?;
            if p.exit.is_some() {
                return Err(status(Code::NOT_FOUND, "process already finished"));
            }
            if is_init {
                Ok(How::Runtime(rt))
            } else if p.state == State::Created {
                Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("process {} has not been started", req.exec_id),
                ))
            } else {
                Ok(How::Pid(p.pid))
            }
        })?;
        match how {
            How::Pid(pid) => {
                // SAFETY: kill takes a pid and a signal number only.
                if unsafe { libc::kill(pid, req.signal as i32) } < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::ESRCH) {
                        return Err(status(Code::NOT_FOUND, "process already finished"));
                    }
                    return Err(status(Code::UNKNOWN, format!("kill: {e}")));
                }
            }
            How::Runtime(rt) => {
                let sig = req.signal.to_string();
                let mut args = vec!["kill"];
                if req.all {
                    args.push("--all");
                }
                args.extend([req.id.as_str(), sig.as_str()]);
                if let Err(e) = rt.run(&args, crate::runtime::Stdio3::null(), None).await {
                    let gone = self
                        .0
                        .lock()
                        .containers
                        .get(&req.id)
                        .map(|c| c.init.exit.is_some())
                        .unwrap_or(true);
                    if gone {
                        return Err(status(Code::NOT_FOUND, "process already finished"));
                    }
                    return Err(runtime_err(e));
                }
            }
        }
        Ok(Empty::new())
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> ttrpc::Result<Empty> {
        tracing::debug!("exec {} {}", req.id, req.exec_id);
        valid_id(&req.exec_id)?;
        self.with(&req.id, |t| {
            let c = t.containers.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
            if c.execs.contains_key(&req.exec_id) {
                return Err(status(
                    Code::ALREADY_EXISTS,
                    format!("id {}: already exists", req.exec_id),
                ));
            }
            if c.init.exit.is_some() {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("container {} is stopped", req.id),
                ));
            }
            let spec = req.spec.as_ref().map(|a| a.value.clone()).unwrap_or_default();
            serde_json::from_slice::<serde_json::Value>(&spec)
                .map_err(|e| status(Code::INVALID_ARGUMENT, format!("exec process spec: {e}")))?;
            let stdio = StdioSpec {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            };
            c.execs
                .insert(req.exec_id.clone(), Proc::new(&req.exec_id, stdio, spec));
            Ok(())
        })?;
        self.0.publisher.publish(events::task_exec_added(ev::TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        }));
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: api::ResizePtyRequest) -> ttrpc::Result<Empty> {
        let console = self.with(&req.id, |t| {
            let c = t.containers.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
            Ok(Self::proc_mut(c, &req.exec_id)?.io.console.clone())
        })?;
        let console = console.ok_or_else(|| status(Code::FAILED_PRECONDITION, "the process has no terminal"))?;
        stdio::resize(&console, req.width, req.height).map_err(|e| status(Code::UNKNOWN, e.to_string()))?;
        Ok(Empty::new())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> ttrpc::Result<Empty> {
        self.with(&req.id, |t| {
            let c = t.containers.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
            let p = Self::proc_mut(c, &req.exec_id)?;
            if req.stdin {
                p.io.close_stdin();
            }
            Ok(())
        })?;
        Ok(Empty::new())
    }

    async fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> ttrpc::Result<Empty> {
        let rt = self.with(&req.id, |t| {
            let c = &t.containers[&req.id];
            if c.init.exit.is_some() {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("container {} is stopped", req.id),
                ));
            }
            Ok(c.runtime.clone())
        })?;
        let res = req.resources.as_ref().map(|a| a.value.clone()).unwrap_or_default();
        if res.is_empty() {
            return Ok(Empty::new());
        }
        rt.run(
            &["update", "--resources", "-", &req.id],
            crate::runtime::Stdio3::null(),
            Some(&res),
        )
        .await
        .map_err(runtime_err)?;
        Ok(Empty::new())
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> ttrpc::Result<api::WaitResponse> {
        let mut rx = self.with(&req.id, |t| {
            let c = t.containers.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
            Ok(Self::proc_mut(c, &req.exec_id)?.waiters.subscribe())
        })?;
        let e = rx
            .wait_for(|e| e.is_some())
            .await
            .map_err(|_| status(Code::NOT_FOUND, "the process was deleted"))?
            .unwrap_or(Exit {
                pid: 0,
                status: 255,
                at: std::time::SystemTime::now(),
            });
        Ok(api::WaitResponse {
            exit_status: e.status as u32,
            exited_at: MessageField::some(timestamp(e.at)),
            ..Default::default()
        })
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: api::StatsRequest) -> ttrpc::Result<api::StatsResponse> {
        let rt = self.with(&req.id, |t| Ok(t.containers[&req.id].runtime.clone()))?;
        let s = rt.stats(&req.id).await.map_err(runtime_err)?;
        Ok(api::StatsResponse {
            stats: MessageField::some(crate::metrics::to_any(&s, self.0.unified)),
            ..Default::default()
        })
    }

    async fn connect(&self, _ctx: &TtrpcContext, req: api::ConnectRequest) -> ttrpc::Result<api::ConnectResponse> {
        let t = self.0.lock();
        let task_pid = t.containers.get(&req.id).map(|c| c.init.pid as u32).unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, req: api::ShutdownRequest) -> ttrpc::Result<Empty> {
        tracing::debug!("shutdown {}", req.id);
        let t = self.0.lock();
        if !t.containers.is_empty() || !t.creating.is_empty() {
            tracing::debug!("shutdown {}: containers remain", req.id);
            return Ok(Empty::new());
        }
        self.0.shutdown.notify_one();
        Ok(Empty::new())
    }
}
