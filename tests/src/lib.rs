//! Helpers for the end-to-end tests: bundles made from the busybox fixture, running the dray
//! binary, and leak checks. Tests run as root against the real kernel.

pub mod engines;
pub mod manager;

use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The dray binary under test: $DRAY_BIN, else the workspace's release or debug build.
pub fn dray_bin() -> PathBuf {
    if let Ok(p) = std::env::var("DRAY_BIN") {
        return PathBuf::from(p);
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    for p in [
        "target/x86_64-unknown-linux-gnu/release/dray",
        "target/x86_64-unknown-linux-gnu/debug/dray",
    ] {
        if ws.join(p).exists() {
            return ws.join(p);
        }
    }
    panic!("dray binary not found: run `make build` or set DRAY_BIN");
}

/// Makes `cmd`'s child inherit `fd` as each of `targets` (without close-on-exec), to test
/// what the runtime does with fds it did not ask for.
pub fn inherit_fd_as(cmd: &mut Command, fd: std::os::fd::RawFd, targets: &'static [i32]) {
    use std::os::unix::process::CommandExt;
    // SAFETY: in the child between fork and exec, only async-signal-safe dup2 and fcntl on an
    // fd the parent keeps open until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            for t in targets {
                libc::dup2(fd, *t);
                libc::fcntl(*t, libc::F_SETFD, 0);
            }
            Ok(())
        });
    }
}

/// The shim binary, built beside dray (`containerd-shim-dray-v2`).
pub fn shim_bin() -> PathBuf {
    let p = dray_bin().with_file_name("containerd-shim-dray-v2");
    assert!(p.exists(), "{} not found: run `make build`", p.display());
    p
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The template bundle (busybox rootfs + default config), built once.
pub fn template() -> &'static Path {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        if let Ok(p) = std::env::var("DRAY_TEMPLATE") {
            if Path::new(&p).join("rootfs/bin/busybox").exists() {
                return PathBuf::from(p);
            }
        }
        let dir = std::env::temp_dir().join(format!("dray-e2e-template-{}", std::process::id()));
        let st = Command::new(workspace().join("tests/fixtures/mkbundle.sh"))
            .arg(&dir)
            .arg(dray_bin())
            .status()
            .unwrap();
        assert!(st.success(), "building the busybox fixture failed");
        dir
    })
}

/// A test bundle in its own directory, with its own state root.
pub struct Bundle {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub id: String,
    pub config: Value,
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Bundle {
    /// A new bundle running `args`, with a writable root and a host directory bound at /out.
    pub fn new(name: &str, args: &[&str]) -> Bundle {
        assert!(nix::unistd::geteuid().is_root(), "the end-to-end tests run as root");
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = format!("{name}-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join("dray-e2e").join(&id);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let st = Command::new("cp")
            .arg("-a")
            .arg(template().join("rootfs"))
            .arg(dir.join("rootfs"))
            .status()
            .unwrap();
        assert!(st.success());
        let out = dir.join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(template().join("config.json")).unwrap()).unwrap();
        config["process"]["args"] = json!(args);
        config["root"]["readonly"] = json!(false);
        config["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]
        }));
        let root = std::env::temp_dir().join("dray-e2e-state").join(&id);
        Bundle { dir, root, id, config }
    }

    /// The host side of /out.
    pub fn out(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// Writes config.json.
    pub fn save(&self) {
        std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// A dray command with this bundle's --root, run in the bundle directory.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.save();
        let mut c = Command::new(dray_bin());
        c.arg("--root").arg(&self.root).args(args).current_dir(&self.dir);
        c
    }

    /// Runs dray with `args` and returns its output (stdin closed). Output goes through files,
    /// not pipes: a created container inherits dray's stdio and would hold pipes open.
    pub fn dray(&self, args: &[&str]) -> Output {
        run_with_timeout(self.cmd(args), Duration::from_secs(60))
    }

    /// `dray run ID` in the foreground, with a time limit.
    pub fn run(&self) -> Output {
        let id = self.id.clone();
        run_with_timeout(self.cmd(&["run", &id]), Duration::from_secs(30))
    }

    /// `dray create ID` which must succeed.
    pub fn create(&self) {
        let o = self.dray(&["create", &self.id.clone()]);
        assert!(
            o.status.success(),
            "create failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// `dray exec --detach --pid-file F ID cmd...` which must succeed; returns the pid.
    pub fn exec_detached(&self, cmd: &[&str]) -> i32 {
        let pf = self.dir.join("exec.pid");
        let _ = std::fs::remove_file(&pf);
        let pfs = pf.to_string_lossy().into_owned();
        let mut args = vec!["exec", "--detach", "--pid-file", &pfs, &self.id];
        args.extend_from_slice(cmd);
        let o = self.dray(&args);
        assert!(
            o.status.success(),
            "exec failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::read_to_string(&pf).unwrap().trim().parse().unwrap()
    }

    /// The state JSON of the container.
    pub fn state(&self) -> Value {
        let o = self.dray(&["state", &self.id.clone()]);
        assert!(
            o.status.success(),
            "state failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// The status string of the container.
    pub fn status(&self) -> String {
        self.state()["status"].as_str().unwrap().to_string()
    }

    /// Waits until the status is `want`.
    pub fn wait_status(&self, want: &str) {
        let t = Instant::now();
        while self.status() != want {
            assert!(t.elapsed() < Duration::from_secs(20), "container never reached {want}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Deletes the container (forced) and checks that nothing of it is left.
    pub fn cleanup(&self) {
        let _ = self.dray(&["delete", "--force", &self.id.clone()]);
        assert_no_leaks(self);
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = Command::new(dray_bin())
            .arg("--root")
            .arg(&self.root)
            .args(["delete", "--force", &self.id])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Runs a command, killing it after `limit` (a hang fails the test instead of blocking it).
pub fn run_with_timeout(mut cmd: Command, limit: Duration) -> Output {
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let base = std::env::temp_dir().join(format!("dray-e2e-io-{}-{n}", std::process::id()));
    let (outp, errp) = (base.with_extension("out"), base.with_extension("err"));
    let out_f = std::fs::File::create(&outp).unwrap();
    let err_f = std::fs::File::create(&errp).unwrap();
    let mut child = cmd.stdin(Stdio::null()).stdout(out_f).stderr(err_f).spawn().unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    });
    let status = child.wait().unwrap();
    let _ = tx.send(());
    let out = Output {
        status,
        stdout: std::fs::read(&outp).unwrap(),
        stderr: std::fs::read(&errp).unwrap(),
    };
    let _ = std::fs::remove_file(&outp);
    let _ = std::fs::remove_file(&errp);
    out
}

/// Text of stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Text of stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every cgroup directory named after this container's id on the host.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    fn walk(dir: &Path, id: &str, depth: usize, found: &mut Vec<PathBuf>) {
        if depth > 6 {
            return;
        }
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if e.file_name() == id {
                    found.push(e.path());
                }
                walk(&e.path(), id, depth + 1, found);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), id, 0, &mut found);
    found
}

/// Pids of processes whose root directory is inside `dir` (a container's rootfs).
pub fn processes_in(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if st.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')) {
            continue;
        }
        if let Ok(root) = std::fs::read_link(format!("/proc/{pid}/root")) {
            if root.starts_with(dir) {
                out.push(pid);
            }
        }
    }
    out
}

/// Asserts that nothing of the container is left: state dir, cgroups, mounts, processes.
pub fn assert_no_leaks(b: &Bundle) {
    assert!(!b.root.join(&b.id).exists(), "state directory of {} left behind", b.id);
    let t = Instant::now();
    loop {
        let procs = processes_in(&b.dir);
        let cgs = cgroup_dirs(&b.id);
        if procs.is_empty() && cgs.is_empty() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "leaked processes {procs:?} or cgroups {cgs:?} of {}",
            b.id
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mi.contains(&*b.dir.to_string_lossy()),
        "mounts of {} left on the host",
        b.id
    );
}

/// Waits until `path` exists.
pub fn wait_for_file(path: &Path) {
    let t = Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True when this process has `cap` (a bit number) in its effective set.
pub fn have_cap(cap: u32) -> bool {
    let st = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = st
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_string();
    u64::from_str_radix(&hex, 16).unwrap() & (1 << cap) != 0
}

/// Receives one message with an fd (SCM_RIGHTS) on a unix socket: (payload, fd).
pub fn recv_with_fd(sock: std::os::fd::RawFd) -> (Vec<u8>, Option<std::os::fd::OwnedFd>) {
    use std::os::fd::FromRawFd;
    let mut buf = [0u8; 8192];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg =
        nix::sys::socket::recvmsg::<()>(sock, &mut iov, Some(&mut space), nix::sys::socket::MsgFlags::empty()).unwrap();
    let mut fd = None;
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel installed this fd in our table for us.
            fd = Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) });
        }
    }
    let n = msg.bytes;
    (buf[..n].to_vec(), fd)
}

/// Runs `dray <args>` for bundle `b` inside a private mount namespace that shows only a
/// cgroup2 hierarchy at /sys/fs/cgroup, as on a pure cgroup v2 host. `args` may use `{dray}`
/// and `{id}`; several commands can be joined with `&&`.
pub fn run_pure_v2(b: &Bundle, script: &str) -> Output {
    b.save();
    let d = format!("{} --root {}", dray_bin().display(), b.root.display());
    let body = script.replace("{dray}", &d).replace("{id}", &b.id);
    let full = format!(
        "mount --make-rprivate / && umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && {body}"
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", &full]).current_dir(&b.dir);
    run_with_timeout(cmd, Duration::from_secs(30))
}

/// True when a cgroup2 hierarchy can be mounted for [`run_pure_v2`].
pub fn cgroup2_available() -> bool {
    Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() || Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}
