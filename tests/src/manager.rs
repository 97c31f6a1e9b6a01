//! Helpers for the manager's end-to-end tests: a private drayd (its own data and exec roots),
//! drayctl bound to it, and a real registry (Debian's docker-registry) on a free loopback port
//! holding the images that `tests/fixtures/mkimage.py` built, pushed with skopeo.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin(var: &str, name: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
            root.join("target/x86_64-unknown-linux-gnu/release").join(name)
        }
    }
}

/// The drayd binary under test (`DRAYD_BIN`, default the release build).
pub fn drayd_bin() -> PathBuf {
    bin("DRAYD_BIN", "drayd")
}

/// The drayctl binary under test (`DRAYCTL_BIN`).
pub fn drayctl_bin() -> PathBuf {
    bin("DRAYCTL_BIN", "drayctl")
}

/// The OCI layouts built by mkimage.py (`DRAY_IMAGES`).
pub fn images_dir() -> PathBuf {
    match std::env::var_os("DRAY_IMAGES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("root")
            .join("target/fixtures/images"),
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits until `f` holds, up to `limit`.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A docker-registry on 127.0.0.1, stopped (and its storage removed) on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    dir: tempdir::Dir,
    /// The token server of a token-auth registry.
    token_server: Option<Child>,
    creds: Option<(String, String)>,
    /// Files the registry needs beside its storage (TLS keys).
    extra: Option<tempdir::Dir>,
}

/// How a test registry authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryAuth {
    None,
    /// htpasswd (bcrypt) basic auth for user `dray`, password `s3cret`.
    Basic,
    /// Bearer tokens from tests/fixtures/token_server.py for the same user.
    Token,
}

/// The user and password of authenticating test registries.
pub const REGISTRY_USER: (&str, &str) = ("dray", "s3cret");

mod tempdir {
    use std::path::{Path, PathBuf};

    /// A directory removed on drop.
    pub struct Dir(pub PathBuf);

    impl Dir {
        pub fn new(prefix: &str) -> Dir {
            let p = std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), super::free_port()));
            std::fs::create_dir_all(&p).expect("mkdir");
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub use tempdir::Dir as TempDir;

impl Registry {
    /// Starts a registry and pushes the named fixture images to `test/<name>:latest`.
    pub fn start(images: &[&str]) -> Registry {
        Registry::start_with(images, RegistryAuth::None)
    }

    /// Starts a registry that serves TLS with a certificate for 127.0.0.1 from a CA of its
    /// own; returns the registry and the CA certificate's path.
    pub fn start_tls(images: &[&str]) -> (Registry, PathBuf) {
        let dir = tempdir::Dir::new("dray-tls");
        let ca = dir.path().join("ca.pem");
        let ca_key = dir.path().join("ca.key");
        let key = dir.path().join("key.pem");
        let csr = dir.path().join("leaf.csr");
        let cert = dir.path().join("cert.pem");
        let ext = dir.path().join("san.ext");
        std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\n").expect("ext");
        self_signed(&ca_key, &ca, "/CN=dray-test-ca");
        // The leaf: a key and a request signed by the CA, for the IP the tests dial.
        let run = |cmd: &mut Command| {
            let o = cmd.output().expect("openssl");
            assert!(o.status.success(), "openssl: {}", String::from_utf8_lossy(&o.stderr));
        };
        run(Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&csr));
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "1", "-CAcreateserial", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert));
        let tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        );
        let mut reg = Registry::start_inner(images, RegistryAuth::None, &tls);
        reg.extra = Some(dir);
        (reg, ca)
    }

    /// Starts a registry that authenticates as `auth` says.
    pub fn start_with(images: &[&str], auth: RegistryAuth) -> Registry {
        Registry::start_inner(images, auth, "")
    }

    fn start_inner(images: &[&str], auth: RegistryAuth, http_extra: &str) -> Registry {
        let dir = tempdir::Dir::new("dray-registry");
        let port = free_port();
        let cfg = dir.path().join("config.yml");
        let (user, pass) = REGISTRY_USER;
        let mut token_server = None;
        let auth_cfg = match auth {
            RegistryAuth::None => String::new(),
            RegistryAuth::Basic => {
                let hash = Command::new("python3")
                    .args([
                        "-W",
                        "ignore",
                        "-c",
                        "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
                        pass,
                    ])
                    .output()
                    .expect("python3");
                assert!(
                    hash.status.success(),
                    "bcrypt: {}",
                    String::from_utf8_lossy(&hash.stderr)
                );
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(
                    &htpasswd,
                    format!("{user}:{}", String::from_utf8_lossy(&hash.stdout).trim()),
                )
                .expect("htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: dray-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
            RegistryAuth::Token => {
                let key = dir.path().join("key.pem");
                let cert = dir.path().join("cert.pem");
                self_signed(&key, &cert, "/CN=dray-test-token");
                let tport = free_port();
                let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/token_server.py");
                let child = Command::new("python3")
                    .arg(script)
                    .arg(tport.to_string())
                    .arg(&key)
                    .arg(&cert)
                    .args([user, pass])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("token server");
                token_server = Some(child);
                assert!(
                    wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
                        "127.0.0.1",
                        tport
                    ))
                    .is_ok()),
                    "token server did not start"
                );
                format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{tport}/token\n    service: dray-test-registry\n    issuer: dray-test-issuer\n    rootcertbundle: {}\n",
                    cert.display()
                )
            }
        };
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{http_extra}{auth_cfg}",
                dir.path().join("data").display()
            ),
        )
        .expect("registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry) must be installed");
        let creds = (auth != RegistryAuth::None).then(|| (user.to_string(), pass.to_string()));
        let reg = Registry {
            child,
            port,
            dir,
            token_server,
            creds,
            extra: None,
        };
        assert!(
            wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "registry did not start"
        );
        for name in images {
            reg.push_fixture(name);
        }
        reg
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes a fixture layout as `test/<name>:latest`.
    pub fn push_fixture(&self, name: &str) {
        let src = format!("oci:{}:latest", images_dir().join(name).display());
        let dst = format!("docker://{}/test/{name}:latest", self.host());
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "-q", "--all", "--dest-tls-verify=false"]);
        if let Some((u, p)) = &self.creds {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        let o = cmd.args([&src, &dst]).output().expect("skopeo");
        assert!(
            o.status.success(),
            "skopeo copy {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Where the registry keeps the blob with sha256 `hex`.
    pub fn blob_dir(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut t) = self.token_server.take() {
            let _ = t.kill();
            let _ = t.wait();
        }
    }
}

/// A private drayd, killed (SIGTERM, then SIGKILL) and its roots removed on drop.
pub struct Daemon {
    pub child: Option<Child>,
    pub dir: tempdir::Dir,
    pub config: Option<PathBuf>,
    /// The network namespace drayd runs in (`ip netns` name), made for it and removed on
    /// drop: its bridges, addresses and packet filter rules never touch the host's network.
    pub netns: Option<String>,
}

/// A command's standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A new named network namespace with loopback up (`ip netns add`).
pub fn new_netns() -> String {
    let mut b = [0u8; 6];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .expect("urandom");
    let name = format!("dray-e2e-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>());
    for args in [
        vec!["netns", "add", &name],
        vec!["-n", &name, "link", "set", "lo", "up"],
    ] {
        let st = Command::new("ip").args(&args).status().expect("ip");
        assert!(st.success(), "ip {args:?}");
    }
    name
}

/// Runs `cmd` in the network namespace `ns` (its mount namespace stays the caller's).
pub fn in_netns(ns: &str, program: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}")).arg("--").arg(program);
    c
}

impl Daemon {
    /// Starts drayd with its own roots under a temporary directory.
    pub fn start() -> Daemon {
        let dir = tempdir::Dir::new("drayd");
        let mut d = Daemon {
            child: None,
            dir,
            config: None,
            netns: None,
        };
        d.spawn();
        d
    }

    /// Starts drayd in a network namespace of its own (every test that runs containers on
    /// bridge networks).
    pub fn start_isolated() -> Daemon {
        let dir = tempdir::Dir::new("drayd");
        let mut d = Daemon {
            child: None,
            dir,
            config: None,
            netns: Some(new_netns()),
        };
        d.spawn();
        d
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn exec_root(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn socket(&self) -> PathBuf {
        self.exec_root().join("drayd.sock")
    }

    /// The drayd command line of this daemon (for starting a second one on the same roots).
    pub fn command(&self) -> Command {
        let drayd = drayd_bin();
        let mut c = match &self.netns {
            Some(ns) => in_netns(ns, &drayd.display().to_string()),
            None => Command::new(drayd),
        };
        c.arg("--data-root")
            .arg(self.data_root())
            .arg("--exec-root")
            .arg(self.exec_root());
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        // The shim finds `dray` on PATH (drayd finds the shim next to itself).
        let mut path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect::<Vec<_>>();
        if let Some(d) = crate::dray_bin().parent() {
            path.insert(0, d.to_path_buf());
        }
        c.env("PATH", std::env::join_paths(path).expect("PATH"));
        c
    }

    /// Loads the `multi` fixture (busybox from Debian's busybox-static) as `busybox`.
    pub fn load_busybox(&self) {
        let tar = self.dir.path().join("busybox.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(images_dir().join("multi"))
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("tar");
        assert!(st.success());
        let out = self.ok(&["load", "-i", tar.to_str().expect("path")]);
        let id = out.trim().rsplit(' ').next().expect("id").to_string();
        self.ok(&["tag", &id, "busybox"]);
    }

    /// Removes every container (drop does it too: shims outlive drayd).
    pub fn remove_all_containers(&self) {
        let ids = self.run(&["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.run(&["rm", "-f", id]);
        }
    }

    /// (Re)starts the process and waits for its socket.
    pub fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("drayd.log"))
            .expect("log");
        let child = self.command().stdout(Stdio::null()).stderr(log).spawn().expect("drayd");
        self.child = Some(child);
        let sock = self.socket();
        assert!(
            wait_until(Duration::from_secs(20), || sock.exists()),
            "drayd did not start: {}",
            self.log()
        );
    }

    /// drayd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("drayd.log")).unwrap_or_default()
    }

    /// SIGKILL, no cleanup.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A drayctl command bound to this daemon.
    pub fn ctl(&self) -> Command {
        let mut c = Command::new(drayctl_bin());
        c.env("DRAY_HOST", format!("unix://{}", self.socket().display()));
        c.env("DOCKER_CONFIG", self.dir.path().join("docker-config"));
        c
    }

    /// Runs drayctl with `args`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.ctl().args(args).stdin(Stdio::null()).output().expect("drayctl")
    }

    /// Runs drayctl and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "drayctl {args:?} failed ({:?}): {}{}\ndrayd log:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Snapshot directories present.
    pub fn snapshot_dirs(&self) -> Vec<String> {
        list(&self.data_root().join("snapshots"))
    }

    /// Blobs present.
    pub fn blobs(&self) -> Vec<String> {
        list(&self.data_root().join("content/blobs/sha256"))
    }
}

fn list(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.remove_all_containers();
        }
        self.stop();
        if let Some(ns) = self.netns.take() {
            let _ = Command::new("ip").args(["netns", "delete", &ns]).status();
        }
    }
}

/// Mounts a read-only overlay of `lowers` (top first) on a new directory; unmounted on drop.
pub struct OverlayView {
    pub path: PathBuf,
    _dir: tempdir::Dir,
}

impl OverlayView {
    pub fn new(lowers: &str) -> OverlayView {
        let dir = tempdir::Dir::new("dray-view");
        let path = dir.path().join("m");
        std::fs::create_dir_all(&path).expect("mkdir");
        let opts = if lowers.contains(':') {
            format!("ro,lowerdir={lowers}")
        } else {
            format!("ro,lowerdir={lowers}:{lowers}")
        };
        let o = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&path)
            .output()
            .expect("mount");
        assert!(
            o.status.success(),
            "mount overlay: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        OverlayView { path, _dir: dir }
    }
}

impl Drop for OverlayView {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Every entry below `root` as one line: path, type, mode, owner, size, link target, xattrs
/// and a content hash (what an unpacked image must agree on).
pub fn tree_listing(root: &Path) -> Vec<String> {
    let script = r#"
import hashlib, os, stat, sys
root = sys.argv[1]
out = []
for dirpath, dirs, files in os.walk(root):
    for n in sorted(dirs + files):
        p = os.path.join(dirpath, n)
        st = os.lstat(p)
        rel = os.path.relpath(p, root)
        kind = stat.S_IFMT(st.st_mode)
        extra = ""
        if stat.S_ISLNK(st.st_mode):
            extra = "-> " + os.readlink(p)
        elif stat.S_ISREG(st.st_mode):
            extra = "size=%d sha=%s" % (st.st_size, hashlib.sha256(open(p, "rb").read()).hexdigest()[:16])
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            extra = "dev=%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
        try:
            xs = sorted((k, os.getxattr(p, k, follow_symlinks=False).hex()) for k in os.listxattr(p, follow_symlinks=False)
                        if k.startswith("user.") or k == "security.capability")
        except OSError:
            xs = []
        mtime = "" if stat.S_ISDIR(st.st_mode) else " mtime=%d" % int(st.st_mtime)
        out.append("%s %o %o %d:%d %s %s%s" % (rel, kind >> 12, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra, xs, mtime))
print("\n".join(sorted(out)))
"#;
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(root)
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "listing {}: {}",
        root.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()
}

/// A TCP proxy on 127.0.0.1 that forwards to `target` and throttles what flows back to the
/// client (a slow registry, for interrupted downloads). Stops accepting on drop.
pub struct SlowProxy {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SlowProxy {
    pub fn start(target: u16, bytes_per_sec: usize) -> SlowProxy {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let (client, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (mut c_in, mut s_out) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(std::net::Shutdown::Write);
                });
                let (mut s_in, mut c_out) = (server, client);
                let stop3 = stop2.clone();
                std::thread::spawn(move || {
                    let chunk = (bytes_per_sec / 20).max(1);
                    let mut buf = vec![0u8; chunk];
                    loop {
                        if stop3.load(Ordering::Relaxed) {
                            break;
                        }
                        match s_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if c_out.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    let _ = c_out.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        SlowProxy { port, stop }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What umoci unpacks from `image` (pulled from its registry with skopeo): the temporary
/// directory (removed on drop) and the rootfs in it.
pub fn umoci_rootfs(image: &str) -> (TempDir, PathBuf) {
    let tmp = TempDir::new("umoci");
    let layout = tmp.path().join("layout");
    let o = Command::new("skopeo")
        .args(["copy", "-q", "--src-tls-verify=false", &format!("docker://{image}")])
        .arg(format!("oci:{}:latest", layout.display()))
        .output()
        .expect("skopeo");
    assert!(o.status.success(), "skopeo: {}", String::from_utf8_lossy(&o.stderr));
    let bundle = tmp.path().join("bundle");
    let o = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:latest", layout.display()))
        .arg(&bundle)
        .output()
        .expect("umoci");
    assert!(o.status.success(), "umoci: {}", String::from_utf8_lossy(&o.stderr));
    let rootfs = bundle.join("rootfs");
    (tmp, rootfs)
}

/// A self-signed certificate (a CA too) with its key.
pub fn self_signed(key: &Path, cert: &Path, subject: &str) {
    let o = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", subject,
        ])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "openssl: {}", String::from_utf8_lossy(&o.stderr));
}

/// True when an ingest under `ingest_dir` holds more than 1 MiB (a download under way).
pub fn partial_download(ingest_dir: &Path) -> bool {
    std::fs::read_dir(ingest_dir)
        .map(|r| {
            r.flatten().any(|e| {
                std::fs::metadata(e.path().join("data"))
                    .map(|m| m.len() > (1 << 20))
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false)
}

/// The manifest (bytes and JSON) of a single-image fixture layout built by mkimage.py.
pub fn fixture_manifest(name: &str) -> (Vec<u8>, serde_json::Value) {
    let layout = images_dir().join(name);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json")).expect("index JSON");
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("manifest digest")
        .trim_start_matches("sha256:")
        .to_string();
    let bytes = std::fs::read(layout.join("blobs/sha256").join(digest)).expect("manifest blob");
    let json = serde_json::from_slice(&bytes).expect("manifest JSON");
    (bytes, json)
}
