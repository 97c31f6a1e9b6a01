//! Shims: the only code that speaks ttrpc. drayd drives containers as containerd does, through
//! a runtime-v2 shim per container:
//!
//! 1. launch: `<shim> -namespace dray -address <drayd.sock> -publish-binary <drayd> -id ID
//!    start`, run in the bundle directory with `TTRPC_ADDRESS` naming drayd's events socket;
//!    the shim prints its ttrpc address (a plain address, or containerd 1.7's JSON form) and
//!    keeps running on its own (it outlives drayd);
//! 2. the Task API (`containerd.task.v2.Task`, which every shim serves) with a deadline on
//!    every call but `Wait`;
//! 3. events: shims publish TaskExit, TaskOOM, ... to drayd's ttrpc events service
//!    (`containerd.services.events.ttrpc.v1.Events/Forward`), which feeds the event bus;
//! 4. recovery: after a restart drayd reconnects through the `address` file the shim left in
//!    the bundle; a shim that is gone is cleaned up with `<shim> ... delete`.

pub mod events;

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::ttrpc;

use crate::error::{Error, Result};

/// The namespace drayd's containers live in (shims put it in their socket names and in the
/// runtime's state directory: `/run/dray/dray`, `/run/containerd/runc/dray`).
pub const NAMESPACE: &str = "dray";

/// The Task service name every shim answers to (containerd 1.6 and later).
const TASK_SERVICE: &str = "containerd.task.v2.Task";

/// Deadline of ordinary Task calls (Create and Start run the runtime: they get longer).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CREATE_TIMEOUT: Duration = Duration::from_secs(120);

/// Where and how drayd's shims are started.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// drayd's API socket, passed as `-address` (shims hash it into their socket names).
    pub address: String,
    /// drayd's events socket (`TTRPC_ADDRESS`).
    pub ttrpc_address: PathBuf,
    /// `-publish-binary`: drayd's own executable.
    pub publish_binary: PathBuf,
}

/// The exit status of a process, as a shim reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: u32,
    /// Unix nanoseconds.
    pub exited_at: i64,
}

/// A protobuf timestamp in Unix nanoseconds.
pub fn unix_nanos(t: Option<&containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp>) -> Option<i64> {
    t.map(|t| t.seconds * 1_000_000_000 + i64::from(t.nanos))
}

/// The standard streams of a task: FIFO paths (or log URIs) the shim opens.
#[derive(Debug, Clone, Default)]
pub struct Stdio {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// A mount of the task's root file system (containerd's `types.Mount`).
#[derive(Debug, Clone)]
pub struct RootfsMount {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Percent-encodes the characters that would break a URI's path or query.
fn uri_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | '&' | '?' | '#' | '=' | ' ' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The stdio URI that asks the dray shim to write the json-file log itself and to copy the
/// output to the FIFO for attached clients: `dray-log:///FIFO?log=LOG&max-size=N&max-file=M`.
/// Other shims get the plain FIFO path.
pub fn log_uri(fifo: &str, log: &Path, max_size: u64, max_file: u32) -> String {
    format!(
        "dray-log://{}?log={}&max-size={max_size}&max-file={max_file}",
        uri_escape(fifo),
        uri_escape(&log.display().to_string())
    )
}

/// Finds the shim binary of a runtime name as containerd does: `io.containerd.runc.v2` →
/// `containerd-shim-runc-v2` on PATH; a path or a `containerd-shim-*` name is taken as is.
pub fn shim_binary(runtime: &str) -> Result<PathBuf> {
    let name = if runtime.contains('/') || runtime.starts_with("containerd-shim-") {
        runtime.to_string()
    } else {
        let parts: Vec<&str> = runtime.split('.').collect();
        match parts.as_slice() {
            ["io", "containerd", name, version] => format!("containerd-shim-{name}-{version}"),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown runtime {runtime:?}: name a shim (io.containerd.NAME.VERSION, containerd-shim-NAME-VERSION or a path)"
                )))
            }
        }
    };
    if name.contains('/') {
        let p = PathBuf::from(&name);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::NotFound(format!("runtime shim {name} not found")))
        };
    }
    // containerd looks next to its own binary first, then on PATH.
    let own_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let path = std::env::var_os("PATH").unwrap_or_default();
    own_dir
        .into_iter()
        .chain(std::env::split_paths(&path))
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::NotFound(format!(
                "runtime shim {name} not found in PATH: install it or name another --runtime"
            ))
        })
}

/// Reads the address a shim's `start` printed: a plain `unix://...` (containerd 1.6) or
/// containerd 1.7's `{"version":2,"address":...,"protocol":"ttrpc"}`.
pub fn parse_start_output(out: &str) -> Result<String> {
    let out = out.trim();
    if out.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(out)
            .map_err(|e| Error::Remote(format!("shim start printed bad JSON {out:?}: {e}")))?;
        if v["protocol"].as_str().is_some_and(|p| p != "ttrpc") {
            return Err(Error::Unsupported(format!(
                "shim protocol {} (drayd speaks ttrpc)",
                v["protocol"]
            )));
        }
        return v["address"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Remote(format!("shim start printed no address: {out}")));
    }
    if out.is_empty() {
        return Err(Error::Remote("the shim's start printed no address".into()));
    }
    Ok(out.to_string())
}

impl Launcher {
    fn command(&self, binary: &Path, id: &str, bundle: &Path, action: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(binary);
        cmd.arg("-namespace")
            .arg(NAMESPACE)
            .arg("-address")
            .arg(&self.address)
            .arg("-publish-binary")
            .arg(&self.publish_binary)
            .arg("-id")
            .arg(id)
            .arg(action)
            .current_dir(bundle)
            .env("TTRPC_ADDRESS", &self.ttrpc_address)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Starts the shim of container `id` whose bundle is `bundle` and connects to it.
    pub async fn start(&self, binary: &Path, id: &str, bundle: &Path) -> Result<Shim> {
        // containerd's shims write their log to the FIFO `log` in the bundle (and refuse to
        // run without it); drayd reads it into its own log.
        follow_shim_log(bundle, id, true)?;
        let out = self
            .command(binary, id, bundle, "start")
            .output()
            .await
            .map_err(|e| Error::io(format!("running {} start", binary.display()), e))?;
        if !out.status.success() {
            return Err(Error::Remote(format!(
                "{} start: {}",
                binary.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let address = parse_start_output(&String::from_utf8_lossy(&out.stdout))?;
        // containerd keeps the address in the bundle so that it finds the shim after a restart;
        // the shims write it too, but not all of them.
        let _ = std::fs::write(bundle.join("address"), &address);
        Shim::connect(&address).await
    }

    /// Cleans up after a shim that died: `<shim> delete` removes the runtime's state and
    /// unmounts the rootfs; it returns the exit status the shim reports.
    pub async fn delete(&self, binary: &Path, id: &str, bundle: &Path) -> Result<()> {
        let run = self.command(binary, id, bundle, "delete").output();
        let out = tokio::time::timeout(CREATE_TIMEOUT, run)
            .await
            .map_err(|_| Error::Remote(format!("{} delete timed out", binary.display())))?
            .map_err(|e| Error::io(format!("running {} delete", binary.display()), e))?;
        if !out.status.success() {
            return Err(Error::Remote(format!(
                "{} delete: {}",
                binary.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}

/// Reads a shim's `log` FIFO (made here when `create`) into drayd's log, on a small thread,
/// until the shim closes it. Called again after a restart of drayd for live shims.
pub fn follow_shim_log(bundle: &Path, id: &str, create: bool) -> Result<()> {
    use std::io::BufRead;
    let path = bundle.join("log");
    if create {
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| Error::io(format!("mkfifo {}", path.display()), e.into()))?;
    } else if !path.exists() {
        return Ok(());
    }
    // The thread's blocking open meets the shim's open for writing (a shim that never
    // opens the log is released by `release_shim_log`); it reads until the shim exits.
    let id = id.to_string();
    std::thread::Builder::new()
        .name("shim-log".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let Ok(f) = std::fs::File::open(&path) else { return };
            for line in std::io::BufReader::new(f).lines() {
                match line {
                    Ok(l) if !l.trim().is_empty() => tracing::info!(target: "shim", %id, "{l}"),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        })
        .map_err(|e| Error::io("starting the shim log thread", e))?;
    Ok(())
}

/// Ends a `follow_shim_log` thread still waiting for a shim that never opened its log.
pub fn release_shim_log(bundle: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(bundle.join("log"));
}

/// A connection to one shim's Task service.
#[derive(Clone)]
pub struct Shim {
    client: ttrpc::r#async::Client,
    pub address: String,
}

impl std::fmt::Debug for Shim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shim").field("address", &self.address).finish()
    }
}

fn ttrpc_error(what: &str, e: ttrpc::Error) -> Error {
    match e {
        ttrpc::Error::RpcStatus(s) => {
            let msg = format!("{what}: {}", s.message);
            match s.code() {
                ttrpc::Code::NOT_FOUND => Error::NotFound(msg),
                ttrpc::Code::ALREADY_EXISTS => Error::AlreadyExists(msg),
                ttrpc::Code::FAILED_PRECONDITION => Error::Conflict(msg),
                ttrpc::Code::INVALID_ARGUMENT => Error::InvalidArgument(msg),
                ttrpc::Code::UNIMPLEMENTED => Error::Unsupported(msg),
                _ => Error::Remote(msg),
            }
        }
        other => Error::Remote(format!("{what}: {other}")),
    }
}

impl Shim {
    /// Connects to a shim's ttrpc address (`unix:///run/containerd/s/...`).
    pub async fn connect(address: &str) -> Result<Shim> {
        let a = if address.contains("://") {
            address.to_string()
        } else {
            format!("unix://{address}")
        };
        let client = ttrpc::r#async::Client::connect(&a)
            .await
            .map_err(|e| Error::Remote(format!("connecting to the shim at {address}: {e}")))?;
        Ok(Shim {
            client,
            address: address.to_string(),
        })
    }

    /// One unary call of the Task service.
    async fn call<Q: Message, R: Message>(&self, method: &str, req: &Q, timeout: Option<Duration>) -> Result<R> {
        let mut r = ttrpc::Request::new();
        r.service = TASK_SERVICE.to_string();
        r.method = method.to_string();
        r.timeout_nano = timeout.map(|t| t.as_nanos() as i64).unwrap_or(0);
        let mut ns = ttrpc::proto::KeyValue::new();
        ns.key = "containerd-namespace-ttrpc".into();
        ns.value = NAMESPACE.into();
        r.metadata.push(ns);
        r.payload = req
            .write_to_bytes()
            .map_err(|e| Error::InvalidArgument(format!("encoding {method}: {e}")))?;
        let res = self
            .client
            .request(r)
            .await
            .map_err(|e| ttrpc_error(&format!("shim {method}"), e))?;
        if let Some(st) = res.status.as_ref().filter(|s| s.code() != ttrpc::Code::OK) {
            return Err(ttrpc_error(
                &format!("shim {method}"),
                ttrpc::Error::RpcStatus(st.clone()),
            ));
        }
        R::parse_from_bytes(&res.payload)
            .map_err(|e| Error::Remote(format!("decoding the shim's {method} answer: {e}")))
    }

    /// Task.Create: the runtime creates the container; returns its pid.
    pub async fn create(&self, id: &str, bundle: &Path, rootfs: &[RootfsMount], stdio: &Stdio) -> Result<u32> {
        let mut req = api::CreateTaskRequest::new();
        req.id = id.to_string();
        req.bundle = bundle.display().to_string();
        req.stdin = stdio.stdin.clone();
        req.stdout = stdio.stdout.clone();
        req.stderr = stdio.stderr.clone();
        req.terminal = stdio.terminal;
        for m in rootfs {
            let mut pm = api::Mount::new();
            pm.type_ = m.kind.clone();
            pm.source = m.source.clone();
            pm.options = m.options.clone();
            req.rootfs.push(pm);
        }
        let r: api::CreateTaskResponse = self.call("Create", &req, Some(CREATE_TIMEOUT)).await?;
        Ok(r.pid)
    }

    /// Task.Exec: registers a process (an OCI `process` object) to run in container `id`.
    pub async fn exec(&self, id: &str, exec_id: &str, process: &[u8], stdio: &Stdio) -> Result<()> {
        let mut req = api::ExecProcessRequest::new();
        req.id = id.to_string();
        req.exec_id = exec_id.to_string();
        req.stdin = stdio.stdin.clone();
        req.stdout = stdio.stdout.clone();
        req.stderr = stdio.stderr.clone();
        req.terminal = stdio.terminal;
        let mut any = containerd_shim_protos::protobuf::well_known_types::any::Any::new();
        any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
        any.value = process.to_vec();
        req.spec = containerd_shim_protos::protobuf::MessageField::some(any);
        let _: api::Empty = self.call("Exec", &req, Some(CALL_TIMEOUT)).await?;
        Ok(())
    }

    /// Task.Start of the init (`exec_id` empty) or of an exec.
    pub async fn start(&self, id: &str, exec_id: &str) -> Result<u32> {
        let mut req = api::StartRequest::new();
        req.id = id.to_string();
        req.exec_id = exec_id.to_string();
        let r: api::StartResponse = self.call("Start", &req, Some(CREATE_TIMEOUT)).await?;
        Ok(r.pid)
    }

    /// Task.Wait: blocks (no deadline) until the process exits.
    pub async fn wait(&self, id: &str, exec_id: &str) -> Result<ExitStatus> {
        let mut req = api::WaitRequest::new();
        req.id = id.to_string();
        req.exec_id = exec_id.to_string();
        let r: api::WaitResponse = self.call("Wait", &req, None).await?;
        Ok(ExitStatus {
            code: r.exit_status,
            exited_at: unix_nanos(r.exited_at.as_ref()).unwrap_or_else(crate::meta::now_nanos),
        })
    }

    /// Task.State: the process's status ("created", "running", "stopped", "paused", ...).
    pub async fn state(&self, id: &str, exec_id: &str) -> Result<(String, u32, u32)> {
        let mut req = api::StateRequest::new();
        req.id = id.to_string();
        req.exec_id = exec_id.to_string();
        let r: api::StateResponse = self.call("State", &req, Some(CALL_TIMEOUT)).await?;
        let status = match r.status.enum_value_or_default() {
            api::Status::CREATED => "created",
            api::Status::RUNNING => "running",
            api::Status::STOPPED => "stopped",
            api::Status::PAUSED => "paused",
            api::Status::PAUSING => "pausing",
            _ => "unknown",
        };
        Ok((status.to_string(), r.pid, r.exit_status))
    }

    /// Task.Kill.
    pub async fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let mut req = api::KillRequest::new();
        req.id = id.to_string();
        req.exec_id = exec_id.to_string();
        req.signal = signal;
        req.all = all;
        let _: api::Empty = self.call("Kill", &req, Some(CALL_TIMEOUT)).await?;
        Ok(())
    }

    /// Task.Delete: removes the container (or the exec's record) and returns its exit status.
    pub async fn delete(&self, id: &str, exec_id: &str) -> Result<ExitStatus> {
        let mut req = api::DeleteRequest::new();
        req.id = id.to_string();
        req.exec_id = exec_id.to_string();
        let r: api::DeleteResponse = self.call("Delete", &req, Some(CREATE_TIMEOUT)).await?;
        Ok(ExitStatus {
            code: r.exit_status,
            exited_at: unix_nanos(r.exited_at.as_ref()).unwrap_or(0),
        })
    }

    /// Task.Pids: the container's processes.
    pub async fn pids(&self, id: &str) -> Result<Vec<u32>> {
        let mut req = api::PidsRequest::new();
        req.id = id.to_string();
        let r: api::PidsResponse = self.call("Pids", &req, Some(CALL_TIMEOUT)).await?;
        Ok(r.processes.iter().map(|p| p.pid).collect())
    }

    /// Task.Stats: the cgroup metrics of the container (an Any of containerd's types).
    pub async fn stats(&self, id: &str) -> Result<containerd_shim_protos::protobuf::well_known_types::any::Any> {
        let mut req = api::StatsRequest::new();
        req.id = id.to_string();
        let r: api::StatsResponse = self.call("Stats", &req, Some(CALL_TIMEOUT)).await?;
        r.stats
            .into_option()
            .ok_or_else(|| Error::Remote("the shim's Stats answer has no metrics".into()))
    }

    /// Task.Update: new resources (an OCI `linux.resources` object) for the container.
    pub async fn update(&self, id: &str, resources: &[u8]) -> Result<()> {
        let mut req = api::UpdateTaskRequest::new();
        req.id = id.to_string();
        let mut any = containerd_shim_protos::protobuf::well_known_types::any::Any::new();
        any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into();
        any.value = resources.to_vec();
        req.resources = containerd_shim_protos::protobuf::MessageField::some(any);
        let _: api::Empty = self.call("Update", &req, Some(CALL_TIMEOUT)).await?;
        Ok(())
    }

    /// Task.Pause / Task.Resume.
    pub async fn pause(&self, id: &str, pause: bool) -> Result<()> {
        if pause {
            let mut req = api::PauseRequest::new();
            req.id = id.to_string();
            let _: api::Empty = self.call("Pause", &req, Some(CALL_TIMEOUT)).await?;
        } else {
            let mut req = api::ResumeRequest::new();
            req.id = id.to_string();
            let _: api::Empty = self.call("Resume", &req, Some(CALL_TIMEOUT)).await?;
        }
        Ok(())
    }

    /// Task.ResizePty.
    pub async fn resize_pty(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let mut req = api::ResizePtyRequest::new();
        req.id = id.to_string();
        req.exec_id = exec_id.to_string();
        req.width = width;
        req.height = height;
        let _: api::Empty = self.call("ResizePty", &req, Some(CALL_TIMEOUT)).await?;
        Ok(())
    }

    /// Task.CloseIO: closes the process's stdin.
    pub async fn close_stdin(&self, id: &str, exec_id: &str) -> Result<()> {
        let mut req = api::CloseIORequest::new();
        req.id = id.to_string();
        req.exec_id = exec_id.to_string();
        req.stdin = true;
        let _: api::Empty = self.call("CloseIO", &req, Some(CALL_TIMEOUT)).await?;
        Ok(())
    }

    /// Task.Shutdown: the shim exits once it serves no container.
    pub async fn shutdown(&self, id: &str) -> Result<()> {
        let mut req = api::ShutdownRequest::new();
        req.id = id.to_string();
        let r: Result<api::Empty> = self.call("Shutdown", &req, Some(CALL_TIMEOUT)).await;
        match r {
            // The shim may exit before it answers.
            Err(Error::Remote(_)) | Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_output_forms() {
        assert_eq!(
            parse_start_output("unix:///run/containerd/s/abc\n").unwrap(),
            "unix:///run/containerd/s/abc"
        );
        assert_eq!(
            parse_start_output(r#"{"version":2,"address":"unix:///x","protocol":"ttrpc"}"#).unwrap(),
            "unix:///x"
        );
        assert!(parse_start_output(r#"{"version":2,"address":"unix:///x","protocol":"grpc"}"#).is_err());
        assert!(parse_start_output("  ").is_err());
    }

    #[test]
    fn runtime_names() {
        assert!(shim_binary("io.containerd").is_err());
        assert!(matches!(shim_binary("/nonexistent/shim"), Err(Error::NotFound(_))));
        assert!(
            matches!(shim_binary("io.containerd.nosuch.v9"), Err(Error::NotFound(m)) if m.contains("containerd-shim-nosuch-v9"))
        );
    }
}
