//! Real engines for the end-to-end tests: a busybox OCI image archive built locally, and a
//! private containerd (own root, state and socket) started and stopped by the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn sha256(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Writes an OCI image layout tar of the busybox fixture rootfs at `out` (one uncompressed
/// layer; the image's ref name is `tag`).
pub fn busybox_oci_archive(out: &Path, tag: &str) {
    let work = out.with_extension("d");
    let _ = std::fs::remove_dir_all(&work);
    let blobs = work.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let layer = work.join("layer.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(crate::template().join("rootfs"))
        .args(["--numeric-owner", "-cf"])
        .arg(&layer)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let layer_digest = sha256(&layer);
    let layer_size = std::fs::metadata(&layer).unwrap().len();
    std::fs::rename(&layer, blobs.join(&layer_digest)).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]}
    });
    let put = |v: &serde_json::Value| -> (String, u64) {
        let tmp = work.join("blob.json");
        std::fs::write(&tmp, serde_json::to_vec(v).unwrap()).unwrap();
        let d = sha256(&tmp);
        let size = std::fs::metadata(&tmp).unwrap().len();
        std::fs::rename(&tmp, blobs.join(&d)).unwrap();
        (d, size)
    };
    let (config_digest, config_size) = put(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_digest}"), "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{layer_digest}"), "size": layer_size}]
    });
    let (manifest_digest, manifest_size) = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{manifest_digest}"), "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag}, "platform": {"architecture": "amd64", "os": "linux"}}]
    });
    std::fs::write(work.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(work.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(&work)
        .arg("-cf")
        .arg(out)
        .args(["oci-layout", "index.json", "blobs"])
        .status()
        .unwrap();
    assert!(st.success());
    let _ = std::fs::remove_dir_all(&work);
}

/// A private containerd, stopped (and its state removed) on drop.
pub struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    path: String,
    child: Child,
}

impl Containerd {
    /// Starts containerd with its own root, state and socket under a new temporary directory.
    /// `path_prefix` goes first on its PATH (where it looks shims up).
    pub fn start(name: &str, path_prefix: Option<&Path>) -> Containerd {
        let dir = std::env::temp_dir().join(format!("dray-ctrd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[debug]\n  level = \"warn\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = socket.display()
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let mut path = std::env::var("PATH").unwrap_or_default();
        if let Some(p) = path_prefix {
            path = format!("{}:{path}", p.display());
        }
        let child = Self::spawn(&dir, &path);
        let c = Containerd {
            dir,
            socket,
            path,
            child,
        };
        c.wait_ready();
        c
    }

    fn spawn(dir: &Path, path: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("containerd.log"))
            .unwrap();
        Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd (apt-get install containerd)")
    }

    fn wait_ready(&self) {
        wait_until(
            Duration::from_secs(30),
            || self.ctr(&["version"]).status.success(),
            || format!("containerd did not start: {}", self.log()),
        );
    }

    /// [`Containerd::start`], then imports the busybox image as docker.io/dray/busybox:latest.
    pub fn with_busybox(name: &str, path_prefix: Option<&Path>) -> Containerd {
        let c = Containerd::start(name, path_prefix);
        let archive = c.dir.join("busybox.tar");
        busybox_oci_archive(&archive, "latest");
        let o = c.ctr(&[
            "images",
            "import",
            "--base-name",
            "docker.io/dray/busybox",
            archive.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "import: {}", String::from_utf8_lossy(&o.stderr));
        let o = c.ctr(&["images", "ls", "-q"]);
        assert!(String::from_utf8_lossy(&o.stdout).contains("docker.io/dray/busybox:latest"));
        c
    }

    /// Kills containerd with SIGKILL (its shims live on) and starts it again on the same
    /// root, state and socket.
    pub fn kill9_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(&self.dir, &self.path);
        self.wait_ready();
    }

    /// The bundle containerd made for task `id` in namespace `default`.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir.join("state/io.containerd.runtime.v2.task/default").join(id)
    }

    /// Runs `ctr --address SOCK args...` with a time limit.
    pub fn ctr(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(&self.socket).args(args);
        crate::run_with_timeout(cmd, Duration::from_secs(60))
    }

    /// containerd's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Unmount what containerd left (snapshots, shim mounts) before removing its files.
        remove_with_mounts(&self.dir);
    }
}

/// Podman with private storage, runroot and configuration (cgroupfs, file events, no network,
/// ulimits within this sandbox's hard limits), using dray as its OCI runtime.
pub struct Podman {
    pub dir: PathBuf,
}

impl Podman {
    /// Sets podman up in a new temporary directory and imports the busybox fixture as
    /// `localhost/dray-busybox:latest`.
    pub fn new(name: &str) -> Podman {
        let dir = std::env::temp_dir().join(format!("dray-podman-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        // podman asks for nofile and nproc of 1048576 by default, above this sandbox's hard
        // limits: give it values the host allows.
        let conf = format!(
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\nnetns = \"none\"\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nevents_logfile_path = \"{}\"\n",
            dir.join("events.log").display()
        );
        std::fs::write(dir.join("containers.conf"), conf).unwrap();
        let storage = format!(
            "[storage]\ndriver = \"overlay\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
            dir.join("run").display(),
            dir.join("storage").display()
        );
        std::fs::write(dir.join("storage.conf"), storage).unwrap();
        let p = Podman { dir };
        let tar = p.dir.join("rootfs.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(crate::template().join("rootfs"))
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let o = p.podman(&["import", tar.to_str().unwrap(), "localhost/dray-busybox:latest"]);
        assert!(
            o.status.success(),
            "podman import: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        p
    }

    /// Runs `podman --runtime <dray> args...` with this instance's configuration.
    pub fn podman(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .arg("--runtime")
            .arg(crate::dray_bin())
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(args);
        crate::run_with_timeout(cmd, Duration::from_secs(120))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
        let _ = self.podman(&["system", "reset", "-f"]);
        remove_with_mounts(&self.dir);
    }
}

/// A private dockerd 20.10 (its own data root, exec root and socket, no iptables, no bridge)
/// with dray registered as runtime `dray`; the busybox fixture is loaded as
/// `dray/busybox:latest` from a docker-archive built here.
pub struct Dockerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    child: Child,
}

impl Dockerd {
    /// Starts dockerd and loads the image.
    pub fn start(name: &str) -> Dockerd {
        let dir = std::env::temp_dir().join(format!("dray-dockerd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("docker.sock");
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let runtime = format!("dray={}", crate::dray_bin().display());
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--add-runtime",
                &runtime,
            ])
            // Docker's default ulimits would exceed this sandbox's hard limits.
            .args([
                "--default-ulimit",
                "nofile=1024:1024",
                "--default-ulimit",
                "nproc=4096:4096",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd (apt-get install docker.io)");
        let d = Dockerd { dir, socket, child };
        let log = d.dir.join("dockerd.log");
        wait_until(
            Duration::from_secs(60),
            || d.docker(&["version"]).status.success(),
            || {
                format!(
                    "dockerd did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            },
        );
        let archive = d.dir.join("busybox-docker.tar");
        docker_archive(&archive, &d.dir.join("archive"));
        let o = d.docker(&["load", "-i", archive.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "docker load: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        d
    }

    /// Runs `docker args...` against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .args(args);
        crate::run_with_timeout(cmd, Duration::from_secs(120))
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = self.docker(&["rm", "-f", "-v", "dk1"]);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let t = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_with_mounts(&self.dir);
    }
}

/// A docker-archive (what `docker save` writes) of the busybox fixture, tagged
/// `dray/busybox:latest`.
pub fn docker_archive(out: &Path, work: &Path) {
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work.join("l1")).unwrap();
    let layer = work.join("l1/layer.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(crate::template().join("rootfs"))
        .args(["--numeric-owner", "-cf"])
        .arg(&layer)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256(&layer))]}
    });
    let cfg = work.join("config.json.tmp");
    std::fs::write(&cfg, serde_json::to_vec(&config).unwrap()).unwrap();
    let name = format!("{}.json", sha256(&cfg));
    std::fs::rename(&cfg, work.join(&name)).unwrap();
    let manifest =
        serde_json::json!([{"Config": name, "RepoTags": ["dray/busybox:latest"], "Layers": ["l1/layer.tar"]}]);
    std::fs::write(work.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(work)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
}

/// Unmounts everything an engine left mounted below `dir` (deepest first), then removes it.
fn remove_with_mounts(dir: &Path) {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let d = dir.to_string_lossy().into_owned();
    let mut mps: Vec<&str> = mi
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&d))
        .collect();
    mps.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mps {
        let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The volume scenario every engine runs: a detached container `name` of `image` with
/// `dir`/vol as a read-write volume (logs, exec with its exit status, stop, rm, its write
/// reaching the host), then the same volume read-only, which refuses writes. `cli` runs the
/// engine's command line; `run_flags` follow `run` (docker's `--runtime dray`); `running`
/// checks more of the running container (podman's `top`).
pub fn volume_scenario(
    cli: &dyn Fn(&[&str]) -> Output,
    run_flags: &[&str],
    image: &str,
    name: &str,
    dir: &Path,
    running: &dyn Fn(),
) {
    use crate::{stderr, stdout};
    let vol = dir.join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("f"), "data1\n").unwrap();
    let run = |first: &[&str], volume: &str, script: &str| {
        let mut args: Vec<&str> = first.to_vec();
        args.extend_from_slice(run_flags);
        args.extend_from_slice(&["-v", volume, image, "sh", "-c", script]);
        cli(&args)
    };
    let v = format!("{}:/data", vol.display());
    let o = run(
        &["run", "-d", "--name", name],
        &v,
        "echo started; cat /data/f; echo w > /data/g; sleep 1000",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until(
        Duration::from_secs(20),
        || stdout(&cli(&["logs", name])).contains("data1"),
        || format!("logs: {}", stderr(&cli(&["logs", name]))),
    );
    assert_eq!(stdout(&cli(&["logs", name])), "started\ndata1\n");
    let o = cli(&["exec", name, "sh", "-c", "echo exec-ok; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o), "exec-ok\n");
    running();
    let o = cli(&["stop", "-t", "1", name]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(&["rm", name]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(vol.join("g")).unwrap(), "w\n");
    let v = format!("{}:/data:ro", vol.display());
    let o = run(&["run", "--rm"], &v, "touch /data/x 2>&1; cat /data/g");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "touch: /data/x: Read-only file system\nw\n");
}

/// Polls `ready` until it holds; fails the test with `why()` after `limit`.
pub fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool, why: impl Fn() -> String) {
    let t = Instant::now();
    while !ready() {
        assert!(t.elapsed() < limit, "{}", why());
        std::thread::sleep(Duration::from_millis(100));
    }
}
