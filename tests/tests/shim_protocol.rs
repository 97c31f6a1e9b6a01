//! containerd-shim-dray-v2 driven directly over ttrpc, as containerd drives it: `start` with
//! the bundle as cwd, the task API on the printed address, and events received by a fake
//! containerd events service (`TTRPC_ADDRESS`). Checks the order of events, the error codes
//! containerd relies on, CloseIO, Wait for init and exec, and `BinaryName` driving runc.

use async_trait::async_trait;
use containerd_shim_protos::api;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim::oci::Options;
use containerd_shim_protos::shim_async::{create_events, Client, Events, TaskClient};
use dray_e2e::*;
use serde_json::json;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use ttrpc::r#async::TtrpcContext;

/// (topic, event payload) as the fake containerd received them.
type Log = Arc<Mutex<Vec<(String, Any)>>>;

struct FakeContainerd(Log);

#[async_trait]
impl Events for FakeContainerd {
    async fn forward(&self, _ctx: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        let env = req.envelope.unwrap_or_default();
        self.0
            .lock()
            .unwrap()
            .push((env.topic.clone(), env.event.unwrap_or_default()));
        Ok(Empty::new())
    }
}

struct Shim {
    dir: PathBuf,
    bundle: PathBuf,
    events: Log,
    client: TaskClient,
    _server: ttrpc::r#async::Server,
    id: String,
    _bundle: Bundle,
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(Duration::from_secs(30).as_nanos() as i64)
}

fn code(e: ttrpc::Error) -> ttrpc::Code {
    match e {
        ttrpc::Error::RpcStatus(s) => s.code(),
        o => panic!("not a status: {o:?}"),
    }
}

/// `containerd-shim-dray-v2 ... start` as containerd runs it: the bundle as cwd, the runtime
/// under test first on PATH, stdin empty.
fn start_cmd(bundle: &Path, id: &str, address: &str, publish_binary: &Path, flags: &[&str]) -> std::process::Command {
    start_cmd_in(false, bundle, id, address, publish_binary, flags)
}

/// [`start_cmd`], in a private mount namespace with a pure cgroup v1 view when `pure_v1`
/// (crun 1.8 refuses this host's hybrid layout); the shim server and the runtimes it runs
/// live in that namespace.
fn start_cmd_in(
    pure_v1: bool,
    bundle: &Path,
    id: &str,
    address: &str,
    publish_binary: &Path,
    flags: &[&str],
) -> std::process::Command {
    let mut c = if pure_v1 {
        let mut c = std::process::Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("umount /sys/fs/cgroup/unified 2>/dev/null; exec \"$0\" \"$@\"")
            .arg(shim_bin());
        c
    } else {
        std::process::Command::new(shim_bin())
    };
    c.args(["-namespace", "dray-test", "-address", address])
        .arg("-publish-binary")
        .arg(publish_binary)
        .args(["-id", id])
        .args(flags)
        .arg("start")
        .current_dir(bundle)
        .env(
            "PATH",
            format!(
                "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                dray_bin().parent().unwrap().display()
            ),
        )
        .stdin(std::process::Stdio::null());
    c
}

impl Shim {
    /// Starts a shim for a bundle running `args` (the template's config otherwise).
    async fn start(name: &str, args: &[&str]) -> Shim {
        Shim::start_in(false, name, args).await
    }

    async fn start_in(pure_v1: bool, name: &str, args: &[&str]) -> Shim {
        let mut b = Bundle::new(&format!("shim-{name}"), args);
        // Every runtime under test knows this version (crun 1.8 knows none later).
        b.config["ociVersion"] = json!("1.0.2");
        b.save();
        let dir = b.dir.clone();
        let events: Log = Arc::default();
        let ev_sock = dir.join("events.sock");
        let mut server = ttrpc::r#async::Server::new()
            .bind(&format!("unix://{}", ev_sock.display()))
            .unwrap()
            .register_service(create_events(Arc::new(FakeContainerd(events.clone()))));
        server.start().await.unwrap();
        let out = start_cmd_in(
            pure_v1,
            &dir,
            &b.id,
            &dir.join("fake.sock").to_string_lossy(),
            Path::new("/bin/false"),
            &[],
        )
        .env("TTRPC_ADDRESS", &ev_sock)
        .output()
        .unwrap();
        assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));
        let address = String::from_utf8(out.stdout).unwrap();
        assert!(address.starts_with("unix:///run/containerd/s/"), "{address}");
        assert_eq!(std::fs::read_to_string(dir.join("address")).unwrap(), address);
        let client = TaskClient::new(Client::connect(&address).await.unwrap());
        Shim {
            bundle: dir.clone(),
            dir,
            events,
            client,
            _server: server,
            id: b.id.clone(),
            _bundle: b,
        }
    }

    fn create_req(&self, stdout: &Path) -> api::CreateTaskRequest {
        api::CreateTaskRequest {
            id: self.id.clone(),
            bundle: self.bundle.to_string_lossy().into_owned(),
            stdout: stdout.to_string_lossy().into_owned(),
            ..Default::default()
        }
    }

    async fn start_proc(&self, exec_id: &str) -> api::StartResponse {
        let r = req_id(|r: &mut api::StartRequest| {
            r.id = self.id.clone();
            r.exec_id = exec_id.into();
        });
        self.client.start(ctx(), &r).await.unwrap()
    }

    async fn wait_proc(&self, exec_id: &str) -> u32 {
        let r = req_id(|r: &mut api::WaitRequest| {
            r.id = self.id.clone();
            r.exec_id = exec_id.into();
        });
        self.client.wait(ctx(), &r).await.unwrap().exit_status
    }

    async fn delete_proc(&self, exec_id: &str) -> ttrpc::Result<api::DeleteResponse> {
        let r = req_id(|r: &mut api::DeleteRequest| {
            r.id = self.id.clone();
            r.exec_id = exec_id.into();
        });
        self.client.delete(ctx(), &r).await
    }

    fn topics(&self) -> Vec<String> {
        self.events.lock().unwrap().iter().map(|(t, _)| t.clone()).collect()
    }

    async fn wait_events(&self, n: usize) {
        for _ in 0..200 {
            if self.events.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("expected {n} events, got {:?}", self.topics());
    }

    async fn shutdown(self) {
        let pid: i32 = std::fs::read_to_string(self.dir.join("shim.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let req = api::ShutdownRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        let _ = self.client.shutdown(ctx(), &req).await;
        for _ in 0..200 {
            // SAFETY: signal 0 only checks that the process exists.
            if unsafe { libc::kill(pid, 0) } != 0 {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the shim did not exit on Shutdown");
    }
}

impl Drop for Shim {
    /// Whatever a failed test left: the container (in the shim's default dray root) and the
    /// shim itself.
    fn drop(&mut self) {
        let _ = std::process::Command::new(dray_bin())
            .args([
                "--root",
                "/run/containerd/dray/dray-test",
                "delete",
                "--force",
                &self.id,
            ])
            .stderr(std::process::Stdio::null())
            .status();
        if let Some(pid) = std::fs::read_to_string(self.dir.join("shim.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            // SAFETY: plain kill(2) of the shim this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Ok(a) = std::fs::read_to_string(self.dir.join("address")) {
            let _ = std::fs::remove_file(a.trim_start_matches("unix://"));
        }
    }
}

fn exec_spec(args: &[&str]) -> MessageField<Any> {
    let p = json!({"args": args, "cwd": "/", "env": ["PATH=/bin:/usr/bin"], "user": {"uid": 0, "gid": 0}});
    let mut a = Any::new();
    a.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
    a.value = serde_json::to_vec(&p).unwrap();
    MessageField::some(a)
}

fn exec_req(id: &str, exec_id: &str, args: &[&str], stdout: &Path) -> api::ExecProcessRequest {
    api::ExecProcessRequest {
        id: id.into(),
        exec_id: exec_id.into(),
        stdout: stdout.to_string_lossy().into_owned(),
        spec: exec_spec(args),
        ..Default::default()
    }
}

fn req_id<T: Default>(f: impl FnOnce(&mut T)) -> T {
    let mut t = T::default();
    f(&mut t);
    t
}

#[tokio::test(flavor = "current_thread")]
async fn lifecycle_event_order_and_error_codes() {
    let s = Shim::start("life", &["sleep", "1000"]).await;
    let c = &s.client;
    let id = s.id.clone();
    let out = s.dir.join("stdout.log");
    let r = c.create(ctx(), &s.create_req(&out)).await.unwrap();
    assert!(r.pid > 0);
    assert_eq!(
        code(c.create(ctx(), &s.create_req(&out)).await.unwrap_err()),
        ttrpc::Code::ALREADY_EXISTS
    );
    let st = c
        .state(ctx(), &req_id(|r: &mut api::StateRequest| r.id = "nope".into()))
        .await;
    assert_eq!(code(st.unwrap_err()), ttrpc::Code::NOT_FOUND);
    let st = c
        .state(ctx(), &req_id(|r: &mut api::StateRequest| r.id = id.clone()))
        .await
        .unwrap();
    assert_eq!(st.status.unwrap(), containerd_shim_protos::types::task::Status::CREATED);
    s.start_proc("").await;

    // An exec: output, exit status through Wait, id reuse refused.
    let eout = s.dir.join("exec.log");
    c.exec(
        ctx(),
        &exec_req(&id, "e1", &["sh", "-c", "echo from-exec; exit 3"], &eout),
    )
    .await
    .unwrap();
    let again = c.exec(ctx(), &exec_req(&id, "e1", &["true"], &eout)).await;
    assert_eq!(code(again.unwrap_err()), ttrpc::Code::ALREADY_EXISTS);
    s.start_proc("e1").await;
    assert_eq!(s.wait_proc("e1").await, 3);
    assert_eq!(s.delete_proc("e1").await.unwrap().exit_status, 3);
    assert_eq!(std::fs::read_to_string(&eout).unwrap(), "from-exec\n");

    // A running container cannot be deleted; paused and resumed it runs on.
    assert_eq!(
        code(s.delete_proc("").await.unwrap_err()),
        ttrpc::Code::FAILED_PRECONDITION
    );
    c.pause(ctx(), &req_id(|r: &mut api::PauseRequest| r.id = id.clone()))
        .await
        .unwrap();
    let st = c
        .state(ctx(), &req_id(|r: &mut api::StateRequest| r.id = id.clone()))
        .await
        .unwrap();
    assert_eq!(st.status.unwrap(), containerd_shim_protos::types::task::Status::PAUSED);
    c.resume(ctx(), &req_id(|r: &mut api::ResumeRequest| r.id = id.clone()))
        .await
        .unwrap();
    let pids = c
        .pids(ctx(), &req_id(|r: &mut api::PidsRequest| r.id = id.clone()))
        .await
        .unwrap();
    assert_eq!(pids.processes.len(), 1);
    let stats = c
        .stats(ctx(), &req_id(|r: &mut api::StatsRequest| r.id = id.clone()))
        .await
        .unwrap();
    assert!(
        stats.stats.type_url.starts_with("io.containerd.cgroups.v"),
        "{}",
        stats.stats.type_url
    );

    let kill = req_id(|r: &mut api::KillRequest| {
        r.id = id.clone();
        r.signal = 9;
    });
    c.kill(ctx(), &kill).await.unwrap();
    assert_eq!(s.wait_proc("").await, 137);
    assert_eq!(code(c.kill(ctx(), &kill).await.unwrap_err()), ttrpc::Code::NOT_FOUND);
    let d = s.delete_proc("").await.unwrap();
    assert_eq!(d.exit_status, 137);
    assert_eq!(code(s.delete_proc("").await.unwrap_err()), ttrpc::Code::NOT_FOUND);

    s.wait_events(9).await;
    assert_eq!(
        s.topics(),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exec-added",
            "/tasks/exec-started",
            "/tasks/exit",
            "/tasks/paused",
            "/tasks/resumed",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    let evs = s.events.lock().unwrap().clone();
    let exit1 = ev::TaskExit::parse_from_bytes(&evs[4].1.value).unwrap();
    assert_eq!((exit1.id.as_str(), exit1.exit_status), ("e1", 3));
    let exit2 = ev::TaskExit::parse_from_bytes(&evs[7].1.value).unwrap();
    assert_eq!(
        (exit2.id.as_str(), exit2.exit_status, exit2.pid),
        (id.as_str(), 137, r.pid)
    );
    assert_eq!(evs[0].1.type_url, "containerd.events.TaskCreate");
    assert!(cgroup_dirs(&id).is_empty(), "cgroups left: {:?}", cgroup_dirs(&id));
    s.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn start_precedes_exit_of_instant_processes() {
    for round in 0..5 {
        let s = Shim::start(&format!("fast{round}"), &["true"]).await;
        let c = &s.client;
        c.create(ctx(), &s.create_req(Path::new(""))).await.unwrap();
        s.start_proc("").await;
        assert_eq!(s.wait_proc("").await, 0);
        s.delete_proc("").await.unwrap();
        s.wait_events(4).await;
        assert_eq!(
            s.topics(),
            ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
        );
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn close_io_ends_stdin_after_delivering_it() {
    let s = Shim::start("stdin", &["cat"]).await;
    let c = &s.client;
    let id = s.id.clone();
    let fifo = s.dir.join("stdin.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // The client's write end, opened read-write so the open does not wait for the shim.
    let w = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
    let out = s.dir.join("cat.log");
    let mut req = s.create_req(&out);
    req.stdin = fifo.to_string_lossy().into_owned();
    c.create(ctx(), &req).await.unwrap();
    s.start_proc("").await;
    use std::io::Write;
    (&w).write_all(b"line-one\nline-two\n").unwrap();
    let close = req_id(|r: &mut api::CloseIORequest| {
        r.id = id.clone();
        r.stdin = true;
    });
    c.close_io(ctx(), &close).await.unwrap();
    let wreq = req_id(|r: &mut api::WaitRequest| r.id = id.clone());
    let wait = c.wait(ctx(), &wreq);
    let w8 = tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("cat did not see EOF")
        .unwrap();
    assert_eq!(w8.exit_status, 0);
    s.delete_proc("").await.unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "line-one\nline-two\n");
    drop(w);
    s.shutdown().await;
}

/// The shim drives another runc-compatible runtime named by the options' BinaryName: the
/// container's state is in that runtime's root, in its own format.
async fn binary_name_drives(runtime: &str, pure_v1: bool) {
    let s = Shim::start_in(pure_v1, runtime, &["sh", "-c", "echo via-other-runtime"]).await;
    let c = &s.client;
    let id = s.id.clone();
    let root = s.dir.join("other-root");
    let opts = Options {
        binary_name: runtime.into(),
        root: root.to_string_lossy().into_owned(),
        ..Default::default()
    };
    let mut a = Any::new();
    a.type_url = "containerd.runc.v1.Options".into();
    a.value = opts.write_to_bytes().unwrap();
    let out = s.dir.join("out.log");
    let mut req = s.create_req(&out);
    req.options = MessageField::some(a);
    c.create(ctx(), &req).await.unwrap();
    let st = std::process::Command::new(runtime)
        .arg("--root")
        .arg(root.join("dray-test"))
        .args(["state", &id])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{runtime} does not know it: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    s.start_proc("").await;
    assert_eq!(s.wait_proc("").await, 0);
    s.delete_proc("").await.unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "via-other-runtime\n");
    s.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn binary_name_drives_runc() {
    assert!(which("runc").is_some(), "runc is not installed (make deps installs it)");
    binary_name_drives("runc", false).await;
}

#[tokio::test(flavor = "current_thread")]
async fn binary_name_drives_crun() {
    assert!(which("crun").is_some(), "crun is not installed (make deps installs it)");
    binary_name_drives("crun", true).await;
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.exists())
}

#[tokio::test(flavor = "current_thread")]
async fn binary_log_uri() {
    let s = Shim::start("logbin", &["sh", "-c", "echo to-out; echo to-err >&2"]).await;
    let c = &s.client;
    // containerd's logging-binary protocol: stdout on fd 3, stderr on fd 4, ready when fd 5
    // is closed; query parameters become arguments.
    let logger = s.dir.join("logger.sh");
    std::fs::write(
        &logger,
        "#!/bin/sh\nexec 5>&-\ncat <&3 > \"$2.out\" &\ncat <&4 > \"$2.err\" &\nwait\necho \"$CONTAINER_ID $CONTAINER_NAMESPACE\" > \"$2.env\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let base = s.dir.join("captured");
    let uri = format!("binary://{}?path={}", logger.display(), base.display());
    let mut req = s.create_req(Path::new(""));
    req.stdout = uri.clone();
    req.stderr = uri;
    c.create(ctx(), &req).await.unwrap();
    s.start_proc("").await;
    assert_eq!(s.wait_proc("").await, 0);
    s.delete_proc("").await.unwrap();
    let env = base.with_extension("env");
    // The logger writes the file after its copies end: wait for the whole line, not for the
    // file (`>` creates it empty before echo writes).
    for _ in 0..100 {
        if std::fs::read_to_string(&env).is_ok_and(|t| t.ends_with('\n')) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(std::fs::read_to_string(base.with_extension("out")).unwrap(), "to-out\n");
    assert_eq!(std::fs::read_to_string(base.with_extension("err")).unwrap(), "to-err\n");
    assert_eq!(std::fs::read_to_string(env).unwrap(), format!("{} dray-test\n", s.id));
    s.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn exec_with_terminal_and_resize() {
    let s = Shim::start("tty", &["sleep", "1000"]).await;
    let c = &s.client;
    let id = s.id.clone();
    c.create(ctx(), &s.create_req(Path::new(""))).await.unwrap();
    s.start_proc("").await;
    let out = s.dir.join("tty.log");
    let mut req = exec_req(&id, "t1", &["sh", "-c", "tty; sleep 1; stty size"], &out);
    // As containerd sends it: the terminal flag in the request and in the process spec.
    req.terminal = true;
    let mut p: serde_json::Value = serde_json::from_slice(&req.spec.value).unwrap();
    p["terminal"] = json!(true);
    req.spec.as_mut().unwrap().value = serde_json::to_vec(&p).unwrap();
    c.exec(ctx(), &req).await.unwrap();
    s.start_proc("t1").await;
    let resize = req_id(|r: &mut api::ResizePtyRequest| {
        r.id = id.clone();
        r.exec_id = "t1".into();
        r.width = 100;
        r.height = 40;
    });
    c.resize_pty(ctx(), &resize).await.unwrap();
    assert_eq!(s.wait_proc("t1").await, 0);
    s.delete_proc("t1").await.unwrap();
    let got = std::fs::read_to_string(&out).unwrap();
    assert!(got.starts_with("/dev/pts/"), "{got:?}");
    assert!(got.contains("40 100"), "{got:?}");
    // The init has no terminal: resizing it is refused.
    let mut r = resize.clone();
    r.exec_id = String::new();
    assert_eq!(
        code(c.resize_pty(ctx(), &r).await.unwrap_err()),
        ttrpc::Code::FAILED_PRECONDITION
    );
    let kill = req_id(|r: &mut api::KillRequest| {
        r.id = id.clone();
        r.signal = 9;
    });
    c.kill(ctx(), &kill).await.unwrap();
    assert_eq!(s.wait_proc("").await, 137);
    s.delete_proc("").await.unwrap();
    s.shutdown().await;
}

#[test]
fn version_flag() {
    let o = std::process::Command::new(shim_bin()).arg("-v").output().unwrap();
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Version:") && out.contains(env!("CARGO_PKG_VERSION")),
        "{out}"
    );
    let o = std::process::Command::new(shim_bin()).arg("-bogus").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[tokio::test(flavor = "current_thread")]
async fn update_applies_resources() {
    let s = Shim::start("update", &["sleep", "1000"]).await;
    let c = &s.client;
    let id = s.id.clone();
    let pid = c.create(ctx(), &s.create_req(Path::new(""))).await.unwrap().pid;
    s.start_proc("").await;
    let mut a = Any::new();
    a.type_url = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into();
    a.value = serde_json::to_vec(&json!({"pids": {"limit": 42}})).unwrap();
    let up = req_id(|r: &mut api::UpdateTaskRequest| {
        r.id = id.clone();
        r.resources = MessageField::some(a);
    });
    c.update(ctx(), &up).await.unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = cg
        .lines()
        .find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_string()))
        .expect("a pids cgroup");
    let max = std::fs::read_to_string(format!("/sys/fs/cgroup/pids{rel}/pids.max")).unwrap();
    assert_eq!(max.trim(), "42");
    let kill = req_id(|r: &mut api::KillRequest| {
        r.id = id.clone();
        r.signal = 9;
    });
    c.kill(ctx(), &kill).await.unwrap();
    s.wait_proc("").await;
    s.delete_proc("").await.unwrap();
    s.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn pod_containers_share_a_shim() {
    let s = Shim::start("pod", &["sleep", "1000"]).await;
    // A second container of the same sandbox: `start` answers with the running shim.
    let mut b = Bundle::new("shim-pod-member", &["sh", "-c", "echo member"]);
    b.config["annotations"] = json!({"io.kubernetes.cri.sandbox-id": s.id});
    b.save();
    let addr_of = |dir: &Path, id: &str| {
        let o = start_cmd(
            dir,
            id,
            &s.dir.join("fake.sock").to_string_lossy(),
            Path::new("/bin/false"),
            &[],
        )
        .output()
        .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let first = std::fs::read_to_string(s.dir.join("address")).unwrap();
    assert_eq!(addr_of(&b.dir, &b.id), first, "a pod member got its own shim");
    assert!(!b.dir.join("shim.pid").exists(), "a second shim was started");
    assert_eq!(std::fs::read_to_string(b.dir.join("address")).unwrap(), first);
    // The shared shim runs the member container too.
    let out = b.dir.join("member.log");
    let req = api::CreateTaskRequest {
        id: b.id.clone(),
        bundle: b.dir.to_string_lossy().into_owned(),
        stdout: out.to_string_lossy().into_owned(),
        ..Default::default()
    };
    s.client.create(ctx(), &req).await.unwrap();
    let st = req_id(|r: &mut api::StartRequest| r.id = b.id.clone());
    s.client.start(ctx(), &st).await.unwrap();
    let w = req_id(|r: &mut api::WaitRequest| r.id = b.id.clone());
    assert_eq!(s.client.wait(ctx(), &w).await.unwrap().exit_status, 0);
    let d = req_id(|r: &mut api::DeleteRequest| r.id = b.id.clone());
    s.client.delete(ctx(), &d).await.unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "member\n");
    s.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn debug_logs_reach_the_log_fifo() {
    let b = Bundle::new("shim-debuglog", &["true"]);
    b.save();
    let fifo = b.dir.join("log");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // containerd's side: the read end, opened before the shim starts.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let o = start_cmd(&b.dir, &b.id, "/nonexistent.sock", Path::new("/bin/false"), &["-debug"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let address = String::from_utf8(o.stdout).unwrap();
    let client = TaskClient::new(Client::connect(&address).await.unwrap());
    let st = req_id(|r: &mut api::StateRequest| r.id = "no-such".into());
    let _ = client.state(ctx(), &st).await;
    let sd = req_id(|r: &mut api::ShutdownRequest| r.id = b.id.clone());
    let _ = client.shutdown(ctx(), &sd).await;
    let mut got = String::new();
    for _ in 0..100 {
        let mut buf = [0u8; 4096];
        use std::io::Read;
        if let Ok(n) = reader.read(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        if got.contains("shutting down") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        got.contains("level=info msg=\"shim") && got.contains("serving"),
        "{got:?}"
    );
    assert!(got.contains("level=debug msg=\"shutdown"), "{got:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn publish_binary_without_ttrpc_address() {
    let b = Bundle::new("shim-publish", &["true"]);
    b.save();
    // containerd's publish binary: `BIN --address ADDR publish --topic T --namespace NS`, the
    // event (a protobuf Any) on stdin.
    let log = b.dir.join("published");
    let bin = b.dir.join("publish.sh");
    std::fs::write(
        &bin,
        format!("#!/bin/sh\necho \"$@ $(wc -c | tr -d ' ')\" >> {}\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = start_cmd(&b.dir, &b.id, "/run/fake.sock", &bin, &[])
        .env_remove("TTRPC_ADDRESS")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let client = TaskClient::new(Client::connect(&String::from_utf8(o.stdout).unwrap()).await.unwrap());
    let req = api::CreateTaskRequest {
        id: b.id.clone(),
        bundle: b.dir.to_string_lossy().into_owned(),
        ..Default::default()
    };
    client.create(ctx(), &req).await.unwrap();
    let d = req_id(|r: &mut api::DeleteRequest| r.id = b.id.clone());
    client.delete(ctx(), &d).await.unwrap();
    let sd = req_id(|r: &mut api::ShutdownRequest| r.id = b.id.clone());
    let _ = client.shutdown(ctx(), &sd).await;
    let mut got = String::new();
    for _ in 0..100 {
        got = std::fs::read_to_string(&log).unwrap_or_default();
        if got.lines().count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines: Vec<&str> = got.lines().collect();
    // Create, the exit of the init that Delete killed, Delete: in order, one at a time.
    assert_eq!(lines.len(), 3, "{got}");
    assert!(
        lines[0].starts_with("--address /run/fake.sock publish --topic /tasks/create --namespace dray-test "),
        "{got}"
    );
    assert!(lines[1].contains("--topic /tasks/exit"), "{got}");
    assert!(lines[2].contains("--topic /tasks/delete"), "{got}");
    // A non-empty protobuf Any came on stdin.
    assert!(
        lines[0].rsplit(' ').next().unwrap().parse::<usize>().unwrap() > 10,
        "{got}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn absent_stdio_is_dev_null() {
    let s = Shim::start("nullio", &["sleep", "1000"]).await;
    let pid = s.client.create(ctx(), &s.create_req(Path::new(""))).await.unwrap().pid;
    s.start_proc("").await;
    // Never a capture file the container could fill: /dev/null, as containerd's null IO.
    for fd in 0..3 {
        let l = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(l, Path::new("/dev/null"), "fd {fd}");
    }
    let kill = req_id(|r: &mut api::KillRequest| {
        r.id = s.id.clone();
        r.signal = 9;
    });
    s.client.kill(ctx(), &kill).await.unwrap();
    assert_eq!(s.wait_proc("").await, 137);
    s.delete_proc("").await.unwrap();
    s.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn shim_cgroup_option_moves_the_shim() {
    let b = Bundle::new("shim-cg", &["true"]);
    b.save();
    let cg = format!("dray-shim-test-{}", std::process::id());
    let dir = Path::new("/sys/fs/cgroup/pids").join(&cg);
    std::fs::create_dir_all(&dir).unwrap();
    // containerd writes the task options (a protobuf Any) on `start`'s stdin.
    let opts = Options {
        shim_cgroup: format!("/{cg}"),
        ..Default::default()
    };
    let mut a = Any::new();
    a.type_url = "containerd.runc.v1.Options".into();
    a.value = opts.write_to_bytes().unwrap();
    let input = b.dir.join("opts.bin");
    std::fs::write(&input, a.write_to_bytes().unwrap()).unwrap();
    let o = start_cmd(&b.dir, &b.id, "/run/fake.sock", Path::new("/bin/false"), &[])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pid = std::fs::read_to_string(b.dir.join("shim.pid")).unwrap();
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == pid.trim()), "shim {pid} not in {procs:?}");
    let client = TaskClient::new(Client::connect(&String::from_utf8(o.stdout).unwrap()).await.unwrap());
    let sd = req_id(|r: &mut api::ShutdownRequest| r.id = b.id.clone());
    let _ = client.shutdown(ctx(), &sd).await;
    for _ in 0..100 {
        if std::fs::remove_dir(&dir).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the shim did not leave {}", dir.display());
}

#[tokio::test(flavor = "current_thread")]
async fn a_deep_overlay_rootfs_is_mounted() {
    // 200 layers at long paths: their lowerdir option is far over the kernel's one page, so the
    // shim mounts them relative to their common parent.
    let s = Shim::start("deep", &["sh", "-c", "cat /layer-7 /layer-199 > /out/seen"]).await;
    let layers = s.dir.join("snapshots-of-a-deep-image-whose-paths-fill-the-mount-page");
    let mut lowers = Vec::new();
    for i in (0..200).rev() {
        let fs = layers.join(format!("{i}/fs"));
        std::fs::create_dir_all(&fs).unwrap();
        if i == 0 {
            let st = std::process::Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", s.bundle.join("rootfs").display()))
                .arg(&fs)
                .status()
                .unwrap();
            assert!(st.success());
        } else {
            std::fs::write(fs.join(format!("layer-{i}")), format!("{i}\n")).unwrap();
        }
        lowers.push(fs.display().to_string());
    }
    let (upper, work) = (s.dir.join("upper"), s.dir.join("work"));
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let lowerdir = format!("lowerdir={}", lowers.join(":"));
    assert!(lowerdir.len() > 4096);
    let mut m = containerd_shim_protos::types::mount::Mount::new();
    m.type_ = "overlay".into();
    m.source = "overlay".into();
    m.options = vec![
        format!("workdir={}", work.display()),
        format!("upperdir={}", upper.display()),
        lowerdir,
    ];
    let mut req = s.create_req(Path::new(""));
    req.rootfs = vec![m];
    s.client.create(ctx(), &req).await.unwrap();
    s.start_proc("").await;
    assert_eq!(s.wait_proc("").await, 0);
    let seen = std::fs::read_to_string(s.dir.join("out/seen")).unwrap();
    assert_eq!(seen, "7\n199\n");
    s.delete_proc("").await.unwrap();
    s.shutdown().await;
}
