//! `dray.v1.Containers`: wire types ↔ `containers` domain types.

use std::pin::Pin;
use std::sync::Arc;

use dray_proto::v1 as pb;
use dray_proto::v1::containers_server::Containers as ContainersService;
use futures_util::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::status;
use crate::containers::record::{DeviceOpt, MountOpt, Options, Record, RestartPolicy, Ulimit};
use crate::containers::{Containers, ExecConfig, ExecSession};
use crate::logs::{self, Stream as LogStream};

/// The containers service.
pub struct ContainersApi {
    pub containers: Arc<Containers>,
}

fn options(c: pb::ContainerConfig, h: pb::HostConfig) -> Result<Options, Box<Status>> {
    let rp = h.restart_policy.unwrap_or_default();
    let mut ports = Vec::new();
    for p in &h.publish {
        ports.extend(crate::network::ports::parse(p).map_err(|e| Box::new(status(e)))?);
    }
    Ok(Options {
        image: c.image,
        cmd: c.cmd,
        entrypoint: c.entrypoint_set.then_some(c.entrypoint),
        env: c.env,
        working_dir: c.working_dir,
        user: c.user,
        hostname: c.hostname,
        labels: c.labels.into_iter().collect(),
        tty: c.tty,
        open_stdin: c.open_stdin,
        stdin_once: c.stdin_once,
        stop_signal: c.stop_signal,
        stop_timeout: c.stop_timeout,
        expose: c.exposed_ports,
        auto_remove: h.auto_remove,
        restart_policy: RestartPolicy {
            name: rp.name,
            maximum_retry_count: rp.maximum_retry_count,
        },
        read_only_rootfs: h.read_only_rootfs,
        privileged: h.privileged,
        cap_add: h.cap_add,
        cap_drop: h.cap_drop,
        security_opt: h.security_opt,
        memory: h.memory,
        memory_swap: h.memory_swap,
        nano_cpus: h.nano_cpus,
        cpu_shares: h.cpu_shares,
        pids_limit: h.pids_limit,
        ulimits: h
            .ulimits
            .into_iter()
            .map(|u| Ulimit {
                name: u.name,
                soft: u.soft,
                hard: u.hard,
            })
            .collect(),
        mounts: h.mounts.into_iter().map(mount_in).collect(),
        devices: h
            .devices
            .into_iter()
            .map(|d| DeviceOpt {
                path_on_host: d.path_on_host,
                path_in_container: d.path_in_container,
                cgroup_permissions: d.cgroup_permissions,
            })
            .collect(),
        shm_size: h.shm_size,
        runtime: h.runtime,
        init: h.init,
        network_mode: h.network_mode,
        network_aliases: h.network_aliases,
        ip: h.ipv4_address,
        extra_networks: Vec::new(),
        ports,
        publish_all: h.publish_all_ports,
        dns: h.dns,
        dns_search: h.dns_search,
        dns_options: h.dns_options,
        extra_hosts: h.extra_hosts,
        log_driver: h.log_driver,
        log_opts: h.log_opts.into_iter().collect(),
        console_size: h.console_size,
    })
}

fn mount_in(m: pb::Mount) -> MountOpt {
    MountOpt {
        kind: m.r#type,
        source: m.source,
        target: m.target,
        read_only: m.read_only,
        create_source: m.create_source,
        tmpfs_size: m.tmpfs_size,
        tmpfs_mode: m.tmpfs_mode,
        options: m.options,
    }
}

fn mount_out(m: &MountOpt) -> pb::Mount {
    pb::Mount {
        r#type: m.kind.clone(),
        source: m.source.clone(),
        target: m.target.clone(),
        read_only: m.read_only,
        create_source: m.create_source,
        tmpfs_size: m.tmpfs_size,
        tmpfs_mode: m.tmpfs_mode,
        options: m.options.clone(),
    }
}

fn summary(r: &Record, size: Option<i64>) -> pb::ContainerSummary {
    pb::ContainerSummary {
        id: r.id.clone(),
        name: r.name.clone(),
        image: r.image.clone(),
        image_id: r.image_id.clone(),
        command: r.command(),
        created: r.created / 1_000_000_000,
        state: r.state.status.as_str().to_string(),
        started_at: r.state.started_at,
        finished_at: r.state.finished_at,
        exit_code: r.state.exit_code as i32,
        labels: r.resolved.labels.clone().into_iter().collect(),
        size_rw: size.unwrap_or(0),
        size_root_fs: 0,
        runtime: r.resolved.runtime.clone(),
        mounts: r.options.mounts.iter().map(mount_out).collect(),
        ports: r
            .state
            .network
            .ports
            .iter()
            .map(|b| pb::PortBinding {
                host_ip: b.host_ip.clone(),
                host_port: u32::from(b.host_port),
                container_port: u32::from(b.container_port),
                protocol: b.proto.clone(),
            })
            .collect(),
        exposed_ports: r.resolved.exposed_ports.clone(),
        networks: r.state.network.endpoints.iter().map(|e| e.network.clone()).collect(),
    }
}

/// docker's `ps --filter`: id, name, label, status, exited, ancestor, before, since
/// (`created_of` gives the creation time of the container a before/since names).
fn matches(
    r: &Record,
    filters: &std::collections::HashMap<String, pb::FilterValues>,
    created_of: &dyn Fn(&str) -> Option<i64>,
) -> Result<bool, String> {
    for (k, vals) in filters {
        let vals = &vals.values;
        if vals.is_empty() {
            continue;
        }
        let ok = match k.as_str() {
            "id" => vals.iter().any(|v| r.id.starts_with(v.as_str())),
            "name" => vals.iter().any(|v| r.name.contains(v.trim_start_matches('/'))),
            "status" => vals.iter().any(|v| v == r.state.status.as_str()),
            "exited" => vals
                .iter()
                .any(|v| r.state.status.as_str() == "exited" && v.parse::<i64>().ok() == Some(r.state.exit_code)),
            "label" => vals.iter().all(|v| match v.split_once('=') {
                Some((k, val)) => r.resolved.labels.get(k).map(String::as_str) == Some(val),
                None => r.resolved.labels.contains_key(v.as_str()),
            }),
            "ancestor" => vals.iter().any(|v| {
                r.image == *v
                    || r.image_id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:"))
            }),
            "before" | "since" => {
                let mut all = true;
                for v in vals {
                    let t = created_of(v).ok_or_else(|| format!("No such container: {v}"))?;
                    all &= if k == "before" { r.created < t } else { r.created > t };
                }
                all
            }
            other => return Err(format!("invalid filter '{other}'")),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// One item of the Logs stream (tonic's item type is `Result<_, Status>`).
#[allow(clippy::result_large_err)]
fn log_item(e: logs::Entry) -> Result<pb::LogEntry, Status> {
    Ok(pb::LogEntry {
        stream: e.stream.as_str().to_string(),
        line: e.line,
        time: e.time,
    })
}

#[tonic::async_trait]
impl ContainersService for ContainersApi {
    async fn create(
        &self,
        req: Request<pb::CreateContainerRequest>,
    ) -> Result<Response<pb::CreateContainerResponse>, Status> {
        let r = req.into_inner();
        let opts = options(r.config.unwrap_or_default(), r.host_config.unwrap_or_default()).map_err(|e| *e)?;
        let name = (!r.name.is_empty()).then_some(r.name);
        let (id, warnings) = self.containers.create(name, opts).await.map_err(status)?;
        Ok(Response::new(pb::CreateContainerResponse { id, warnings }))
    }

    async fn start(
        &self,
        req: Request<pb::StartContainerRequest>,
    ) -> Result<Response<pb::StartContainerResponse>, Status> {
        self.containers.start(&req.into_inner().id).await.map_err(status)?;
        Ok(Response::new(pb::StartContainerResponse {}))
    }

    async fn stop(
        &self,
        req: Request<pb::StopContainerRequest>,
    ) -> Result<Response<pb::StopContainerResponse>, Status> {
        let r = req.into_inner();
        self.containers
            .stop(&r.id, r.timeout, Some(r.signal.as_str()))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::StopContainerResponse {}))
    }

    async fn restart(
        &self,
        req: Request<pb::RestartContainerRequest>,
    ) -> Result<Response<pb::RestartContainerResponse>, Status> {
        let r = req.into_inner();
        self.containers.stop(&r.id, r.timeout, None).await.map_err(status)?;
        self.containers.start(&r.id).await.map_err(status)?;
        Ok(Response::new(pb::RestartContainerResponse {}))
    }

    async fn kill(
        &self,
        req: Request<pb::KillContainerRequest>,
    ) -> Result<Response<pb::KillContainerResponse>, Status> {
        let r = req.into_inner();
        self.containers.kill(&r.id, &r.signal).await.map_err(status)?;
        Ok(Response::new(pb::KillContainerResponse {}))
    }

    async fn pause(
        &self,
        req: Request<pb::PauseContainerRequest>,
    ) -> Result<Response<pb::PauseContainerResponse>, Status> {
        self.containers
            .pause(&req.into_inner().id, true)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PauseContainerResponse {}))
    }

    async fn unpause(
        &self,
        req: Request<pb::UnpauseContainerRequest>,
    ) -> Result<Response<pb::UnpauseContainerResponse>, Status> {
        self.containers
            .pause(&req.into_inner().id, false)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UnpauseContainerResponse {}))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveContainerRequest>,
    ) -> Result<Response<pb::RemoveContainerResponse>, Status> {
        let r = req.into_inner();
        self.containers
            .remove(&r.id, r.force, r.volumes)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RemoveContainerResponse {}))
    }

    async fn rename(
        &self,
        req: Request<pb::RenameContainerRequest>,
    ) -> Result<Response<pb::RenameContainerResponse>, Status> {
        let r = req.into_inner();
        self.containers.rename(&r.id, &r.new_name).await.map_err(status)?;
        Ok(Response::new(pb::RenameContainerResponse {}))
    }

    async fn list(
        &self,
        req: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        let r = req.into_inner();
        let me = self.containers.clone();
        let containers = tokio::task::spawn_blocking(move || -> Result<Vec<pb::ContainerSummary>, String> {
            let mut out = Vec::new();
            for rec in me.list() {
                let shown = r.all || rec.state.status.is_live() || rec.state.status.as_str() == "restarting";
                let created_of = |k: &str| me.get(k).ok().map(|c| c.created);
                if !shown || !matches(&rec, &r.filters, &created_of)? {
                    continue;
                }
                let size = r.size.then(|| me.size_rw(&rec));
                out.push(summary(&rec, size));
            }
            Ok(out)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(Status::invalid_argument)?;
        Ok(Response::new(pb::ListContainersResponse { containers }))
    }

    async fn inspect(
        &self,
        req: Request<pb::InspectContainerRequest>,
    ) -> Result<Response<pb::InspectContainerResponse>, Status> {
        let r = req.into_inner();
        let me = self.containers.clone();
        let doc = tokio::task::spawn_blocking(move || me.inspect(&r.id, r.size))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status)?;
        Ok(Response::new(pb::InspectContainerResponse {
            json: serde_json::to_string(&doc).unwrap_or_default(),
        }))
    }

    async fn wait(
        &self,
        req: Request<pb::WaitContainerRequest>,
    ) -> Result<Response<pb::WaitContainerResponse>, Status> {
        let r = req.into_inner();
        let code = self.containers.wait(&r.id, &r.condition).await.map_err(status)?;
        Ok(Response::new(pb::WaitContainerResponse {
            status_code: code,
            error: String::new(),
        }))
    }

    type LogsStream = BoxStream<pb::LogEntry>;

    async fn logs(&self, req: Request<pb::LogsRequest>) -> Result<Response<Self::LogsStream>, Status> {
        let r = req.into_inner();
        let filter = logs::Filter {
            tail: (r.tail >= 0).then_some(r.tail as usize),
            since: r.since,
            until: r.until,
            stdout: r.stdout,
            stderr: r.stderr,
        };
        let rx = self.containers.logs(&r.id, filter, r.follow).map_err(status)?;
        let s = tokio_stream::wrappers::ReceiverStream::new(rx);
        let s = futures_util::StreamExt::map(s, log_item);
        Ok(Response::new(Box::pin(s)))
    }

    type AttachStream = BoxStream<pb::AttachResponse>;

    async fn attach(&self, req: Request<Streaming<pb::AttachRequest>>) -> Result<Response<Self::AttachStream>, Status> {
        let mut input = req.into_inner();
        let first = input
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("attach: the first message names the container"))?;
        let (id, mut output, mut changed) = self.containers.attach_output(&first.id).map_err(status)?;
        let started_at = self.containers.get(&id).map(|r| r.state.started_at).unwrap_or(0);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::AttachResponse, Status>>(64);
        // An empty first answer tells the client it is attached (it may start the container).
        let _ = tx.send(Ok(pb::AttachResponse::default())).await;
        let me = self.containers.clone();
        {
            // Later messages: stdin (when attached) and terminal sizes, until the client ends.
            let (id, me, with_stdin) = (id.clone(), me.clone(), first.stdin);
            tokio::spawn(async move {
                let mut stdin_open = with_stdin;
                while let Ok(Some(m)) = input.message().await {
                    if stdin_open && !m.stdin_data.is_empty() && me.write_stdin(&id, Some(&m.stdin_data)).await.is_err()
                    {
                        stdin_open = false;
                    }
                    if m.width > 0 && m.height > 0 {
                        let _ = me.resize(&id, m.width, m.height).await;
                    }
                    if stdin_open && m.close_stdin {
                        let _ = me.write_stdin(&id, None).await;
                        stdin_open = false;
                    }
                }
            });
        }
        let (want_out, want_err) = (first.stdout, first.stderr);
        // The stream ends when the container stops after having run during the attach (a
        // created container is waited for: the client starts it after this answer).
        tokio::spawn(async move {
            let mut ran = me.is_running(&id);
            loop {
                let running = me.is_running(&id);
                ran |= running || me.get(&id).map(|r| r.state.started_at != started_at).unwrap_or(true);
                let running = running || !ran;
                tokio::select! {
                    o = output.recv() => match o {
                        Ok(o) => {
                            let wanted = match o.stream { LogStream::Stdout => want_out, LogStream::Stderr => want_err };
                            if wanted && tx.send(Ok(pb::AttachResponse { stream: o.stream.as_str().into(), data: o.data.to_vec() })).await.is_err() {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(%id, "attach: {n} chunks of output skipped (slow client)");
                        }
                        Err(_) => return,
                    },
                    r = changed.changed(), if running => { if r.is_err() { return; } }
                    _ = tx.closed() => return,
                    _ = std::future::ready(()), if !running => {
                        // The pumps finished before the exit was recorded: drain and end.
                        while let Ok(o) = output.try_recv() {
                            let wanted = match o.stream { LogStream::Stdout => want_out, LogStream::Stderr => want_err };
                            if wanted && tx.send(Ok(pb::AttachResponse { stream: o.stream.as_str().into(), data: o.data.to_vec() })).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn resize(&self, req: Request<pb::ResizeRequest>) -> Result<Response<pb::ResizeResponse>, Status> {
        let r = req.into_inner();
        if r.exec_id.is_empty() {
            self.containers.resize(&r.id, r.width, r.height).await.map_err(status)?;
        } else {
            self.containers
                .resize_exec(&r.id, &r.exec_id, r.width, r.height)
                .await
                .map_err(status)?;
        }
        Ok(Response::new(pb::ResizeResponse {}))
    }

    type ExecStream = BoxStream<pb::ExecResponse>;

    async fn exec(&self, req: Request<Streaming<pb::ExecRequest>>) -> Result<Response<Self::ExecStream>, Status> {
        use tokio::io::AsyncWriteExt;
        let mut input = req.into_inner();
        let first = input
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("exec: the first message names the container and the command"))?;
        let cfg = ExecConfig {
            cmd: first.cmd,
            env: first.env,
            user: first.user,
            working_dir: first.working_dir,
            tty: first.tty,
            stdin: first.stdin && !first.detach,
            privileged: first.privileged,
            console_size: (first.width > 0 && first.height > 0).then_some((first.height, first.width)),
        };
        let id = first.id;
        let session = self.containers.exec(&id, cfg).await.map_err(status)?;
        let ExecSession {
            exec_id,
            mut output,
            stdin,
            mut exit,
        } = session;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::ExecResponse, Status>>(64);
        let _ = tx
            .send(Ok(pb::ExecResponse {
                exec_id: exec_id.clone(),
                ..Default::default()
            }))
            .await;
        if first.detach {
            return Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))));
        }
        let me = self.containers.clone();
        {
            let (id, exec_id) = (id.clone(), exec_id.clone());
            let mut stdin = stdin;
            tokio::spawn(async move {
                while let Ok(Some(m)) = input.message().await {
                    if !m.stdin_data.is_empty() {
                        if let Some(s) = stdin.as_mut() {
                            if s.write_all(&m.stdin_data).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    if m.width > 0 && m.height > 0 {
                        let _ = me.resize_exec(&id, &exec_id, m.width, m.height).await;
                    }
                    if m.close_stdin {
                        stdin = None;
                        let _ = me.close_exec_stdin(&id, &exec_id).await;
                    }
                }
            });
        }
        tokio::spawn(async move {
            let out = |o: crate::containers::io::Output| pb::ExecResponse {
                stream: o.stream.as_str().into(),
                data: o.data.to_vec(),
                ..Default::default()
            };
            let mut open = true;
            loop {
                tokio::select! {
                    o = output.recv(), if open => match o {
                        Ok(o) => { if tx.send(Ok(out(o))).await.is_err() { return; } }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!("exec: {n} chunks of output skipped (slow client)");
                        }
                        Err(_) => open = false,
                    },
                    code = &mut exit => {
                        while let Ok(o) = output.try_recv() {
                            if tx.send(Ok(out(o))).await.is_err() { return; }
                        }
                        let _ = tx.send(Ok(pb::ExecResponse { exit_code: Some(code.unwrap_or(255)), ..Default::default() })).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    type StatsStream = BoxStream<pb::StatsSample>;

    async fn stats(&self, req: Request<pb::StatsRequest>) -> Result<Response<Self::StatsStream>, Status> {
        let r = req.into_inner();
        let rec = self.containers.get(&r.id).map_err(status)?;
        let me = self.containers.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::StatsSample, Status>>(4);
        // The first sample now: a stopped container is an error the client sees at once.
        let first = me.stats(&rec.id).await.map_err(status)?;
        tokio::spawn(async move {
            let mut sample = first;
            let mut sent = 0;
            loop {
                let msg = pb::StatsSample {
                    id: rec.id.clone(),
                    name: rec.name.clone(),
                    cpu_total: sample.cpu_total,
                    system_cpu: sample.system_cpu,
                    online_cpus: sample.online_cpus,
                    mem_usage: sample.mem_usage,
                    mem_limit: sample.mem_limit,
                    pids: sample.pids,
                    blk_read: sample.blk_read,
                    blk_write: sample.blk_write,
                    net_rx: sample.net_rx,
                    net_tx: sample.net_tx,
                    read: sample.read,
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
                sent += 1;
                if !r.stream && sent == 2 {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                sample = match me.stats(&rec.id).await {
                    Ok(s) => s,
                    // Stopped or removed: the stream ends.
                    Err(_) => return,
                };
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateContainerRequest>,
    ) -> Result<Response<pb::UpdateContainerResponse>, Status> {
        let r = req.into_inner();
        let u = crate::containers::ResourceUpdate {
            memory: r.memory,
            memory_swap: r.memory_swap,
            nano_cpus: r.nano_cpus,
            cpu_shares: r.cpu_shares,
            pids_limit: r.pids_limit,
            restart_policy: r.restart_policy.map(|p| RestartPolicy {
                name: p.name,
                maximum_retry_count: p.maximum_retry_count,
            }),
        };
        self.containers.update(&r.id, u).await.map_err(status)?;
        Ok(Response::new(pb::UpdateContainerResponse { warnings: vec![] }))
    }

    async fn diff(&self, req: Request<pb::DiffRequest>) -> Result<Response<pb::DiffResponse>, Status> {
        let changes = self
            .containers
            .diff(&req.into_inner().id)
            .await
            .map_err(status)?
            .into_iter()
            .map(|(k, p)| pb::Change {
                kind: k.to_string(),
                path: p,
            })
            .collect();
        Ok(Response::new(pb::DiffResponse { changes }))
    }

    type ExportStream = BoxStream<pb::Chunk>;

    async fn export(&self, req: Request<pb::ExportRequest>) -> Result<Response<Self::ExportStream>, Status> {
        let id = self.containers.get(&req.into_inner().id).map_err(status)?.id;
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        let me = self.containers.clone();
        let writer = tokio::spawn(async move { me.export(&id, super::stream::ChannelWriter::new(tx)).await });
        Ok(Response::new(super::stream::chunk_stream(rx, writer)))
    }

    async fn commit(&self, req: Request<pb::CommitRequest>) -> Result<Response<pb::CommitResponse>, Status> {
        let r = req.into_inner();
        let id = self
            .containers
            .commit(&r.id, r.reference, r.changes, r.message, r.author, r.pause)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CommitResponse { id: id.to_string() }))
    }

    async fn stat_path(&self, req: Request<pb::StatPathRequest>) -> Result<Response<pb::PathStat>, Status> {
        let r = req.into_inner();
        let st = self.containers.stat_path(&r.id, &r.path).await.map_err(status)?;
        Ok(Response::new(pb::PathStat {
            name: st.name,
            size: st.size,
            mode: st.mode,
            mtime: st.mtime,
            link_target: st.link_target,
        }))
    }

    type CopyFromStream = BoxStream<pb::Chunk>;

    async fn copy_from(&self, req: Request<pb::CopyFromRequest>) -> Result<Response<Self::CopyFromStream>, Status> {
        let r = req.into_inner();
        let id = self.containers.get(&r.id).map_err(status)?.id;
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        let me = self.containers.clone();
        let writer = tokio::spawn(async move {
            me.copy_from(
                &id,
                &r.path,
                &r.name,
                r.contents,
                r.follow_link,
                super::stream::ChannelWriter::new(tx),
            )
            .await
        });
        Ok(Response::new(super::stream::chunk_stream(rx, writer)))
    }

    async fn copy_to(
        &self,
        req: Request<Streaming<pb::CopyToRequest>>,
    ) -> Result<Response<pb::CopyToResponse>, Status> {
        let mut input = req.into_inner();
        let first = input
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("cp: empty request stream"))?;
        let reader = super::stream::forward(input, first.data, |m: pb::CopyToRequest| m.data);
        // Its own task: a client that goes away mid-copy ends the copy with an error, and the
        // copy's mounts and locks are released in order.
        let me = self.containers.clone();
        tokio::spawn(async move { me.copy_to(&first.id, &first.path, reader, first.copy_uid_gid).await })
            .await
            .map_err(|e| Status::internal(format!("cp task failed: {e}")))?
            .map_err(status)?;
        Ok(Response::new(pb::CopyToResponse {}))
    }

    async fn top(&self, req: Request<pb::TopRequest>) -> Result<Response<pb::TopResponse>, Status> {
        let r = req.into_inner();
        let pids = self.containers.pids(&r.id).await.map_err(status)?;
        let args = if r.ps_args.is_empty() {
            vec!["-ef".to_string()]
        } else {
            r.ps_args
        };
        let out = tokio::process::Command::new("ps")
            .args(&args)
            .output()
            .await
            .map_err(|e| Status::internal(format!("running ps: {e}")))?;
        if !out.status.success() {
            return Err(Status::invalid_argument(format!(
                "ps {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header = lines.next().unwrap_or("");
        let titles: Vec<String> = header.split_whitespace().map(str::to_string).collect();
        let pid_col = titles
            .iter()
            .position(|t| t == "PID")
            .ok_or_else(|| Status::invalid_argument("Couldn't find PID field in ps output"))?;
        let processes = lines
            .filter_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                let pid: u32 = cols.get(pid_col)?.parse().ok()?;
                if !pids.contains(&pid) {
                    return None;
                }
                // The last column (the command) keeps its spaces.
                let n = titles.len();
                let mut row: Vec<String> = cols.iter().take(n - 1).map(|s| s.to_string()).collect();
                row.push(cols.iter().skip(n - 1).cloned().collect::<Vec<_>>().join(" "));
                Some(pb::ProcessRow { columns: row })
            })
            .collect();
        Ok(Response::new(pb::TopResponse { titles, processes }))
    }
}
