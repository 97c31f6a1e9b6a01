//! The ttrpc methods of `containerd.task.v2.Task`: each checks its request, then reads the
//! state or calls the lifecycle (see the module above).

use super::*;
use crate::errors::{not_found, runtime_err};
use crate::exits::State;
use crate::stdio;
use async_trait::async_trait;
use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::{EnumOrUnknown, Message};
use containerd_shim_protos::shim::oci::ProcessDetails;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::types::task::{ProcessInfo, Status};
use ttrpc::r#async::TtrpcContext;

#[async_trait]
impl Task for Service {
    async fn state(&self, _ctx: &TtrpcContext, req: api::StateRequest) -> ttrpc::Result<api::StateResponse> {
        self.with(&req.id, |t| {
            let (Some(c), Some(g)) = (t.containers.get_mut(&req.id), t.order.group(&req.id)) else {
                return Err(not_found(&req.id));
            };
            let bundle = c.bundle.to_string_lossy().into_owned();
            let (Some(p), Some(pio)) = (g.proc(&req.exec_id), c.proc_io(&req.exec_id)) else {
                return Err(not_found(format!("process {}", req.exec_id)));
            };
            let st = match p.state {
                State::Created => Status::CREATED,
                State::Running if g.paused && req.exec_id.is_empty() => Status::PAUSED,
                State::Running => Status::RUNNING,
                State::Stopped => Status::STOPPED,
            };
            let (exit_status, exited_at) = exit_fields(p.exit);
            Ok(api::StateResponse {
                id: req.id.clone(),
                bundle,
                pid: wire(p.pid),
                status: EnumOrUnknown::new(st),
                stdin: pio.stdio.stdin.clone(),
                stdout: pio.stdio.stdout.clone(),
                stderr: pio.stdio.stderr.clone(),
                terminal: pio.stdio.terminal,
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
            info.pid = wire(pid);
            if let Some((cid, eid)) = t.order.owner_of(pid) {
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
            let (Some(c), Some(g)) = (t.containers.get(&req.id), t.order.group(&req.id)) else {
                return Err(not_found(&req.id));
            };
            let rt = c.runtime.clone();
            let is_init = req.exec_id.is_empty();
            let p = g
                .proc(&req.exec_id)
                .ok_or_else(|| not_found(format!("process {}", req.exec_id)))?;
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
                        .order
                        .group(&req.id)
                        .map(|g| g.init.exit.is_some())
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
            let (Some(c), Some(g)) = (t.containers.get_mut(&req.id), t.order.group(&req.id)) else {
                return Err(not_found(&req.id));
            };
            if c.execs.contains_key(&req.exec_id) || g.execs.contains_key(&req.exec_id) {
                return Err(status(
                    Code::ALREADY_EXISTS,
                    format!("id {}: already exists", req.exec_id),
                ));
            }
            if g.init.exit.is_some() {
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
            c.execs.insert(req.exec_id.clone(), ProcIo::new(stdio, spec));
            t.order.add_exec(&req.id, &req.exec_id);
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
            Ok(Self::proc_io(t, &req.id, &req.exec_id)?.io.console.clone())
        })?;
        let console = console.ok_or_else(|| status(Code::FAILED_PRECONDITION, "the process has no terminal"))?;
        stdio::resize(&console, req.width, req.height).map_err(|e| status(Code::UNKNOWN, e.to_string()))?;
        Ok(Empty::new())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> ttrpc::Result<Empty> {
        self.with(&req.id, |t| {
            let p = Self::proc_io(t, &req.id, &req.exec_id)?;
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
            if t.order.group(&req.id).is_none_or(|g| g.init.exit.is_some()) {
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
            Ok(Self::proc_io(t, &req.id, &req.exec_id)?.waiters.subscribe())
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
            exit_status: wire(e.status),
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
        let task_pid = t.order.group(&req.id).map(|g| wire(g.init.pid)).unwrap_or(0);
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

impl Service {
    /// The I/O side of process `exec_id` of container `id` (the init for an empty id).
    fn proc_io<'a>(t: &'a mut Tasks, id: &str, exec_id: &str) -> Result<&'a mut ProcIo, TtrpcError> {
        t.containers
            .get_mut(id)
            .ok_or_else(|| not_found(id))?
            .proc_io(exec_id)
            .ok_or_else(|| not_found(format!("process {exec_id}")))
    }
}
