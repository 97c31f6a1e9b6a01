//! The container lifecycle as the shim drives it through the runtime: create, start (init and
//! exec processes), pause/resume and delete. Each step takes the state lock only to check and
//! to record; the runtime runs without it.

use super::*;
use crate::errors::{not_found, runtime_err};
use crate::exits::State;
use crate::mount;
use crate::stdio;
use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use std::time::SystemTime;

fn precondition(msg: String) -> TtrpcError {
    status(Code::FAILED_PRECONDITION, msg)
}

impl Service {
    pub(super) async fn create_task(&self, req: api::CreateTaskRequest) -> Result<api::CreateTaskResponse, TtrpcError> {
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
            t.order.begin_capture();
        }
        let r = self.create_inner(&req).await;
        let mut guard = self.0.lock();
        let t = &mut *guard;
        t.creating.remove(&req.id);
        // An init that died as soon as it was created: claim its exit before the capture ends.
        let early = t.order.end_capture(r.as_ref().ok().map(|(_, pid, _)| *pid));
        let (mut c, pid, kill_all_on_exit) = r?;
        let (oom, task) = self.0.watch_oom(req.id.clone(), pid);
        c.oom = oom;
        c.oom_task = task;
        t.order.add(&req.id, pid, kill_all_on_exit);
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
            pid: wire(pid),
            ..Default::default()
        }));
        if let Some(e) = early {
            let r = t.order.on_exit(e);
            self.0.apply(t, r);
        }
        Ok(api::CreateTaskResponse {
            pid: wire(pid),
            ..Default::default()
        })
    }

    /// Runs the runtime's `create`. Returns the container, its init's pid and whether its
    /// other processes must be killed when the init ends (no pid namespace of its own).
    async fn create_inner(&self, req: &api::CreateTaskRequest) -> Result<(Container, i32, bool), TtrpcError> {
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
        let mut init = ProcIo::new(spec, Vec::new());
        init.io = io;
        let kill_all_on_exit = !has_own_pid_ns(&bundle);
        let c = Container {
            bundle,
            runtime,
            rootfs_mounted: mounted,
            busy: false,
            init,
            execs: HashMap::new(),
            oom: None,
            oom_task: None,
        };
        Ok((c, pid, kill_all_on_exit))
    }

    pub(super) async fn start_init(&self, id: &str) -> Result<api::StartResponse, TtrpcError> {
        let (rt, pid) = self.with(id, |t| {
            let (Some(c), Some(g)) = (t.containers.get(id), t.order.group(id)) else {
                return Err(not_found(id));
            };
            if g.init.state != State::Created || g.init.starting || c.busy {
                return Err(precondition(format!("container {id} is not in created state")));
            }
            let found = (c.runtime.clone(), g.init.pid);
            t.order.start_begun(id, "");
            Ok(found)
        })?;
        let r = rt.run(&["start", id], crate::runtime::Stdio3::null(), None).await;
        let mut guard = self.0.lock();
        let t = &mut *guard;
        if t.order.group(id).is_none() {
            return Err(not_found(id));
        }
        if let Err(e) = r {
            let rel = t.order.start_done(id, "", None, None, SystemTime::now());
            self.0.apply(t, rel);
            return Err(runtime_err(e));
        }
        self.0.publisher.publish(events::task_start(ev::TaskStart {
            container_id: id.to_string(),
            pid: wire(pid),
            ..Default::default()
        }));
        let rel = t.order.start_done(id, "", Some(pid), None, SystemTime::now());
        self.0.apply(t, rel);
        Ok(api::StartResponse {
            pid: wire(pid),
            ..Default::default()
        })
    }

    pub(super) async fn start_exec(&self, id: &str, exec_id: &str) -> Result<api::StartResponse, TtrpcError> {
        let (rt, bundle, spec, stdio) = self.with(id, |t| {
            let (Some(c), Some(g)) = (t.containers.get(id), t.order.group(id)) else {
                return Err(not_found(id));
            };
            if g.init.state != State::Running || g.paused {
                return Err(precondition(format!("container {id} is not running")));
            }
            let (Some(p), Some(pio)) = (g.execs.get(exec_id), c.execs.get(exec_id)) else {
                return Err(not_found(format!("process {exec_id}")));
            };
            if p.state != State::Created || p.starting {
                return Err(precondition(format!("process {exec_id} was already started")));
            }
            let found = (c.runtime.clone(), c.bundle.clone(), pio.spec.clone(), pio.stdio.clone());
            t.order.start_begun(id, exec_id);
            t.order.begin_capture();
            Ok(found)
        })?;
        let r = self.run_exec(id, exec_id, &rt, &bundle, &spec, &stdio).await;
        let mut guard = self.0.lock();
        let t = &mut *guard;
        let early = t.order.end_capture(r.as_ref().ok().map(|(pid, _)| *pid));
        if t.order.group(id).and_then(|g| g.execs.get(exec_id)).is_none() {
            return Err(not_found(format!("process {exec_id}")));
        }
        let (pid, io) = match r {
            Ok(v) => v,
            Err(e) => {
                let rel = t.order.start_done(id, exec_id, None, None, SystemTime::now());
                self.0.apply(t, rel);
                return Err(e);
            }
        };
        if let Some(p) = t.containers.get_mut(id).and_then(|c| c.execs.get_mut(exec_id)) {
            p.io = io;
        }
        self.0.publisher.publish(events::task_exec_started(ev::TaskExecStarted {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            pid: wire(pid),
            ..Default::default()
        }));
        let rel = t.order.start_done(id, exec_id, Some(pid), early, SystemTime::now());
        self.0.apply(t, rel);
        Ok(api::StartResponse {
            pid: wire(pid),
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
    pub(super) async fn set_paused(&self, id: &str, pause: bool) -> Result<Empty, TtrpcError> {
        let rt = self.with(id, |t| {
            let (Some(c), Some(g)) = (t.containers.get(id), t.order.group(id)) else {
                return Err(not_found(id));
            };
            if pause && (g.init.state != State::Running || g.paused) {
                return Err(precondition(format!("container {id} is not running")));
            }
            if !pause && !g.paused {
                return Err(precondition(format!("container {id} is not paused")));
            }
            Ok(c.runtime.clone())
        })?;
        let verb = if pause { "pause" } else { "resume" };
        rt.run(&[verb, id], crate::runtime::Stdio3::null(), None)
            .await
            .map_err(runtime_err)?;
        if let Some(g) = self.0.lock().order.group_mut(id) {
            g.paused = pause;
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

    pub(super) async fn delete_task(&self, id: &str, exec_id: &str) -> Result<api::DeleteResponse, TtrpcError> {
        if !exec_id.is_empty() {
            let (p, pio) = self.with(id, |t| {
                let g = t.order.group_mut(id).ok_or_else(|| not_found(id))?;
                let p = g
                    .execs
                    .get(exec_id)
                    .ok_or_else(|| not_found(format!("process {exec_id}")))?;
                if p.state == State::Running || p.starting {
                    return Err(precondition(format!("process {exec_id} is running")));
                }
                let p = g.execs.remove(exec_id);
                let pio = t.containers.get_mut(id).and_then(|c| c.execs.remove(exec_id));
                Ok((p, pio))
            })?;
            let p = p.ok_or_else(|| not_found(exec_id))?;
            if let Some(mut pio) = pio {
                pio.io.finish(Duration::from_secs(2)).await;
            }
            let (exit_status, exited_at) = exit_fields(p.exit);
            return Ok(api::DeleteResponse {
                pid: wire(p.pid),
                exit_status,
                exited_at,
                ..Default::default()
            });
        }
        let (rt, created, mut io) = self.with(id, |t| {
            let (Some(c), Some(g)) = (t.containers.get_mut(id), t.order.group(id)) else {
                return Err(not_found(id));
            };
            if c.busy {
                return Err(precondition(format!("container {id} is being deleted")));
            }
            if g.init.state == State::Running || g.init.starting {
                return Err(precondition(format!("container {id} is running: kill it first")));
            }
            if g.init.exit.is_some() && !g.init.exit_published {
                // Its exit waits for the exits of its exec processes.
                return Err(precondition(format!("container {id} is still stopping")));
            }
            c.busy = true;
            Ok((
                c.runtime.clone(),
                g.init.state == State::Created,
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
        let Some(c) = t.containers.remove(id) else {
            return Err(not_found(id));
        };
        // Deleted before it ran: the runtime killed it.
        let killed = Exit {
            pid: 0,
            status: 128 + libc::SIGKILL,
            at: SystemTime::now(),
        };
        let Some(g) = t.order.remove(id, killed) else {
            return Err(not_found(id));
        };
        if c.rootfs_mounted {
            mount::unmount_all(&c.bundle.join("rootfs"));
        }
        let (exit_status, exited_at) = exit_fields(g.init.exit);
        self.0.publisher.publish(events::task_delete(ev::TaskDelete {
            container_id: id.to_string(),
            pid: wire(g.init.pid),
            exit_status,
            exited_at: exited_at.clone(),
            id: id.to_string(),
            ..Default::default()
        }));
        Ok(api::DeleteResponse {
            pid: wire(g.init.pid),
            exit_status,
            exited_at,
            ..Default::default()
        })
    }
}
