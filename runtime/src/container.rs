//! The container lifecycle (runtime.md "Operations"): create, start, state, kill, delete, plus
//! runc's run and list. This is the library API the CLI, the shim and tests call.

use crate::cgroups::CgroupPaths;
use crate::error::{Context, Error, Result};
use crate::namespaces::Plan;
use crate::process::{self, InitConfig};
use crate::state::{ContainerState, OciState, Status, Store, EXEC_FIFO};
use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of `create` (and `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    /// The bundle directory (holds config.json).
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
    /// Which of the fds 3..3+preserve_fds the caller really passed, found before the runtime
    /// opened any fd of its own (the CLI does this first thing). None: look now.
    pub inherited_fds: Option<Vec<i32>>,
}

/// A runtime rooted at a state directory (`--root`).
#[derive(Debug, Clone)]
pub struct Runtime {
    pub store: Store,
}

/// Loads and checks a bundle's config.json. Returns the spec and the absolute rootfs path.
pub fn load_bundle(bundle: &Path) -> Result<(Spec, PathBuf)> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
    let spec: Spec =
        serde_json::from_slice(&data).map_err(|e| Error::msg(format!("parsing {}: {e}", path.display())))?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::msg("config.json has no root"))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    let meta = std::fs::metadata(&rootfs).ctx(|| format!("rootfs {}", rootfs.display()))?;
    if !meta.is_dir() {
        return Err(Error::msg(format!("rootfs {} is not a directory", rootfs.display())));
    }
    let rootfs = rootfs
        .canonicalize()
        .ctx(|| format!("resolving rootfs {}", rootfs.display()))?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::msg("config.json has no process"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::msg("process.args must not be empty"));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::msg(format!(
            "process.cwd {} must be an absolute path",
            process.cwd().display()
        )));
    }
    if spec.linux().is_none() {
        return Err(Error::msg("config.json has no linux section"));
    }
    check_supported(&spec)?;
    Ok((spec, rootfs))
}

/// Refuses spec fields that dray does not apply yet: silently ignoring a resource limit, a
/// seccomp profile or an LSM label would run the container with less isolation than asked.
pub fn check_supported(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    if let Some(l) = linux {
        if l.time_offsets().as_ref().is_some_and(|m| !m.is_empty())
            && !l
                .namespaces()
                .iter()
                .flatten()
                .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Time && n.path().is_none())
        {
            return Err(Error::msg("linux.timeOffsets needs a new time namespace"));
        }
        let no_resctrl = || !std::path::Path::new("/sys/fs/resctrl/info").exists();
        for (name, present) in [
            (
                if l.intel_rdt().is_some() && no_resctrl() {
                    "linux.intelRdt (this host has no resctrl file system)"
                } else {
                    "linux.intelRdt"
                },
                l.intel_rdt().is_some(),
            ),
            (
                "linux.mountLabel (SELinux is enabled on this host and dray cannot apply labels)",
                selinux_enabled() && l.mount_label().as_ref().is_some_and(|m| !m.is_empty()),
            ),
        ] {
            if present {
                return unsupported(name);
            }
        }
    }
    match spec.process() {
        Some(p) => check_process(p),
        None => Ok(()),
    }
}

/// Whether SELinux is enabled here (its file system is mounted, as libselinux's
/// `is_selinux_enabled` checks). Where it is not, nothing could enforce a label: SELinux labels
/// are ignored, as crun and runc do; where it is, a label dray cannot apply is refused.
fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// Waits until the init has executed the user's process (runtime-spec "poststart": the hooks
/// run after the user-specified process is executed). The init holds exec.fifo open,
/// close-on-exec, until it executes the trampoline (after the startContainer hooks): its end of
/// file says that. The trampoline then executes the user's program at once; that is seen when
/// the init's executable is no longer the trampoline's memfd. Without a poststart hook nothing
/// waits.
fn wait_for_exec(fifo: &std::fs::File, pid: i32, pid_start: u64, deadline: std::time::Instant) -> Result<()> {
    loop {
        if std::time::Instant::now() > deadline {
            return Err(Error::msg(
                "the container's init did not execute its process within 60s",
            ));
        }
        if crate::sys::poll_readable(fifo.as_raw_fd(), Some(Duration::from_millis(100)))
            .ctx(|| "waiting on exec.fifo".into())?
        {
            let mut b = [0u8; 16];
            match nix::unistd::read(fifo.as_raw_fd(), &mut b) {
                Ok(0) => break,
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(e).ctx(|| "reading exec.fifo".into()),
            }
        }
        if !crate::sys::process_alive(pid, Some(pid_start)) {
            return Ok(());
        }
    }
    for _ in 0..1000 {
        match std::fs::read_link(format!("/proc/{pid}/exe")) {
            Ok(exe) if exe.to_string_lossy().contains("memfd:") => {
                std::thread::sleep(Duration::from_micros(100));
            }
            _ => break,
        }
    }
    Ok(())
}

/// Refuses process fields dray does not apply (for the container's process and for `exec
/// --process`).
pub fn check_process(p: &oci_spec::runtime::Process) -> Result<()> {
    for (name, present) in [
        (
            "process.apparmorProfile (AppArmor)",
            p.apparmor_profile().as_ref().is_some_and(|m| !m.is_empty()),
        ),
        (
            "process.selinuxLabel (SELinux is enabled on this host and dray cannot apply labels)",
            selinux_enabled() && p.selinux_label().as_ref().is_some_and(|m| !m.is_empty()),
        ),
        ("process.execCPUAffinity", p.exec_cpu_affinity().is_some()),
    ] {
        if present {
            return unsupported(name);
        }
    }
    Ok(())
}

fn unsupported(what: &str) -> Result<()> {
    Err(Error::msg(format!("{what} is not supported by dray yet")))
}

/// `list`'s OWNER: the name of the user owning the container's state directory (as runc;
/// `state` leaves the field empty, which spares `create` a user database lookup).
fn owner_of(dir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(dir) else {
        return String::new();
    };
    let uid = nix::unistd::Uid::from_raw(m.uid());
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

impl Runtime {
    /// A runtime keeping its state under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Runtime {
            store: Store::new(root),
        }
    }

    /// `create`: sets the container up and leaves its init waiting for `start`. Returns the
    /// init's pid. On failure nothing is left behind: no process, mount, cgroup or state.
    pub fn create(&self, o: &CreateOptions) -> Result<i32> {
        self.create_with(o, None, None)
    }

    /// `create`, with an already connected console socket instead of `o.console_socket` (used
    /// by a foreground `run` that proxies the terminal itself).
    fn create_with(
        &self,
        o: &CreateOptions,
        console: Option<UnixStream>,
        loaded: Option<(Spec, PathBuf)>,
    ) -> Result<i32> {
        let mut t = crate::timing::Phases::new("create");
        crate::state::validate_id(&o.id)?;
        let bundle = o
            .bundle
            .canonicalize()
            .ctx(|| format!("bundle {}", o.bundle.display()))?;
        let (spec, rootfs) = match loaded {
            Some(l) => l,
            None => load_bundle(&bundle)?,
        };
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::msg("config.json has no process"))?;
        let linux = spec
            .linux()
            .as_ref()
            .ok_or_else(|| Error::msg("config.json has no linux section"))?;
        let terminal = process.terminal().unwrap_or(false);
        let has_console = o.console_socket.is_some() || console.is_some();
        if terminal && !has_console {
            return Err(Error::msg(
                "process.terminal is true: a --console-socket is needed to receive the pty",
            ));
        }
        if !terminal && has_console {
            return Err(Error::msg("--console-socket given but process.terminal is false"));
        }
        let plan = Plan::from_spec(linux.namespaces().as_deref().unwrap_or(&[]))?;
        for k in linux.sysctl().iter().flat_map(|m| m.keys()) {
            crate::sysctl::validate(k, &plan)?;
        }
        let cgroup = CgroupPaths::for_container(linux.cgroups_path().as_deref(), &o.id)?;
        // runc 1.1: a cgroup that already holds processes is used, with a warning; a frozen
        // one is refused (the container's init could never run).
        if cgroup.frozen() {
            return Err(Error::msg("container's cgroup unexpectedly frozen"));
        }
        let present = cgroup.pids().map(|p| p.len()).unwrap_or(0);
        if present > 0 {
            tracing::warn!("container's cgroup is not empty: {present} process(es) found");
        }

        t.mark("load and check the bundle");
        let dir = self.store.create_dir(&o.id)?;
        let mut made_cgroups: Vec<PathBuf> = Vec::new();
        let res = self.create_in(
            o,
            &dir,
            &bundle,
            spec,
            rootfs,
            plan,
            cgroup,
            console,
            &mut made_cgroups,
            &mut t,
        );
        if res.is_err() {
            for d in made_cgroups.iter().rev() {
                let _ = crate::cgroups::remove_dir(d);
            }
            let _ = self.store.remove(&o.id);
        }
        res
    }

    #[allow(clippy::too_many_arguments)]
    fn create_in(
        &self,
        o: &CreateOptions,
        dir: &Path,
        bundle: &Path,
        spec: Spec,
        rootfs: PathBuf,
        plan: Plan,
        cgroup: CgroupPaths,
        console: Option<UnixStream>,
        made_cgroups: &mut Vec<PathBuf>,
        t: &mut crate::timing::Phases,
    ) -> Result<i32> {
        // 0622 whatever the umask: the init may have dropped to any uid before it opens the fifo.
        let fifo = dir.join(EXEC_FIFO);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
            .ctx(|| "creating exec.fifo".into())?;
        std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
            .ctx(|| "chmod exec.fifo".into())?;
        let mut st = ContainerState {
            id: o.id.clone(),
            pid: 0,
            pid_start: 0,
            bundle: bundle.to_path_buf(),
            rootfs: rootfs.clone(),
            created: crate::time::now(),
            owner: String::new(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            cgroup: cgroup.clone(),
            cgroup_owned: Vec::new(),
            own_pid_ns: plan.own_pid_ns(),
            hooks: spec.hooks().clone(),
            process: spec.process().clone(),
            seccomp: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
            namespaces: plan
                .new
                .iter()
                .copied()
                .chain(plan.join.iter().map(|(t, _)| *t))
                .collect(),
            rootfs_mount: None,
            mount_ns_path: plan.joins(oci_spec::runtime::LinuxNamespaceType::Mount).cloned(),
            pid_ns: None,
        };
        self.store.save(&st)?;
        t.mark("state directory, exec.fifo, state");
        // Checked before the fork; written by `make_cgroups` below.
        let device_rules = crate::cgroups::devices::rules(&spec)?;
        let console = match (&o.console_socket, console) {
            (_, Some(c)) => Some(c),
            (Some(p), None) => Some(crate::console::connect(p)?),
            (None, None) => None,
        };
        t.mark("console");
        let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(s) => Some(crate::seccomp::compile_cached(s, &self.store.root.join(".cache"))?),
            None => None,
        };
        let cfg = InitConfig {
            id: o.id.clone(),
            spec,
            bundle: bundle.to_path_buf(),
            rootfs,
            plan,
            cgroup,
            state_dir: dir.to_path_buf(),
            no_pivot: o.no_pivot,
            inherited_fds: o
                .inherited_fds
                .clone()
                .unwrap_or_else(|| crate::sys::open_fds(3, o.preserve_fds)),
            console,
            no_new_keyring: o.no_new_keyring,
            seccomp,
        };
        let netdevs = cfg
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.net_devices().clone())
            .filter(|d| !d.is_empty());
        if netdevs.is_some() && !cfg.plan.creates(oci_spec::runtime::LinuxNamespaceType::Network) {
            return Err(Error::msg("linux.netDevices needs a new network namespace"));
        }
        let mut run_hooks = |pid: i32| -> Result<(String, String)> {
            let mut s = st.clone();
            s.pid = pid;
            let json = state_json(&s.oci(Status::Creating))?;
            if let Some(d) = netdevs.as_ref() {
                crate::netdev::move_all(d, pid)?;
            }
            if let Some(h) = &s.hooks {
                crate::hooks::run_all(h.prestart().as_ref(), &json, "prestart")?;
                crate::hooks::run_all(h.create_runtime().as_ref(), &json, "createRuntime")?;
            }
            Ok((json, state_json(&s.oci(Status::Created))?))
        };
        let mut make_cgroups = |step: process::CgroupStep| -> Result<()> {
            if step == process::CgroupStep::V2Dirs {
                return cfg.cgroup.create_where(made_cgroups, |d| d.v2);
            }
            cfg.cgroup.create(made_cgroups)?;
            if let Some(rules) = &device_rules {
                cfg.cgroup.apply_devices(rules)?;
            }
            if let Some(r) = cfg.spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
                for w in cfg.cgroup.apply_resources(r, false)? {
                    tracing::warn!("{w}");
                }
            }
            Ok(())
        };
        t.mark("seccomp, hooks set-up");
        // Without a mount namespace of its own, the init binds the rootfs on itself in the
        // namespace it shares or joins; the bind is told apart by its mount id.
        let shared_mounts = !cfg.plan.creates(oci_spec::runtime::LinuxNamespaceType::Mount);
        let mount_before = crate::sys::mount_id(&cfg.rootfs);
        let pid = process::spawn(&cfg, &mut make_cgroups, &mut run_hooks);
        match &pid {
            // The init's root is the bind (in the namespace it shares or joined).
            Ok(p) if shared_mounts => st.rootfs_mount = crate::sys::mount_id(Path::new(&format!("/proc/{p}/root"))),
            // An init that failed detached its bind itself, unless it was killed first.
            Err(_) if shared_mounts && st.mount_ns_path.is_none() => {
                let now = crate::sys::mount_id(&cfg.rootfs);
                if now != mount_before {
                    detach_rootfs(&cfg.rootfs, now);
                }
            }
            _ => {}
        }
        // The container's directories, and the parents made for a nested cgroupsPath.
        st.cgroup_owned = made_cgroups.clone();
        let pid = pid?;
        t.mark("init (fork, cgroups, namespaces, mounts, pivot_root, process set-up)");
        st.pid = pid;
        st.pid_start = crate::sys::process_start_time(pid).unwrap_or(0);
        if st.own_pid_ns {
            st.pid_ns = pid_namespace(pid);
        }
        let finish = || -> Result<()> {
            self.store.save(&st)?;
            if let Some(pf) = &o.pid_file {
                write_pid_file(pf, pid)?;
            }
            Ok(())
        };
        if let Err(e) = finish() {
            process::kill_and_reap(pid);
            detach_container_rootfs(&st);
            return Err(e);
        }
        t.mark("save state, pid file");
        Ok(pid)
    }

    /// `start`: lets the created init exec the user's process, then runs poststart hooks.
    pub fn start(&self, id: &str) -> Result<()> {
        let mut t = crate::timing::Phases::new("start");
        let _lock = self.store.lock(id)?;
        let st = self.store.load(id)?;
        let dir = self.store.dir(id);
        match st.status(&dir) {
            Status::Created => {}
            s => return Err(Error::msg(format!("cannot start a container in the {s} state"))),
        }
        let fifo_path = dir.join(EXEC_FIFO);
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&fifo_path)
            .ctx(|| "opening exec.fifo".into())?;
        // The init opens the fifo for writing as soon as we hold it for reading, and writes one
        // byte; until then poll, checking that the init is still alive (no fixed sleeps).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if std::time::Instant::now() > deadline {
                return Err(Error::msg(
                    "the container's init did not take the start signal within 60s",
                ));
            }
            if crate::sys::poll_readable(fifo.as_raw_fd(), Some(Duration::from_millis(100)))
                .ctx(|| "waiting on exec.fifo".into())?
            {
                let mut b = [0u8; 1];
                match nix::unistd::read(fifo.as_raw_fd(), &mut b) {
                    Ok(1) => break,
                    Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
                    Err(e) => return Err(e).ctx(|| "reading exec.fifo".into()),
                }
            }
            if !crate::sys::process_alive(st.pid, Some(st.pid_start)) {
                return Err(Error::msg("the container's init exited before start"));
            }
        }
        t.mark("fifo handshake");
        let _ = std::fs::remove_file(&fifo_path);
        if st
            .hooks
            .as_ref()
            .is_some_and(|h| h.poststart().as_ref().is_some_and(|p| !p.is_empty()))
        {
            wait_for_exec(&fifo, st.pid, st.pid_start, deadline)?;
        }
        if let Some(h) = st.hooks.as_ref().and_then(|h| h.poststart().as_ref()) {
            let json = state_json(&st.oci(Status::Running))?;
            crate::hooks::run_all_warn(Some(h), &json, "poststart");
        }
        Ok(())
    }

    /// `state`: the OCI state of a container.
    pub fn state(&self, id: &str) -> Result<OciState> {
        let st = self.store.load(id)?;
        let status = st.status(&self.store.dir(id));
        Ok(st.oci(status))
    }

    /// `kill`: sends a signal to the init, or with `all` to every process of the container.
    pub fn kill(&self, id: &str, sig: i32, all: bool) -> Result<()> {
        let st = self.store.load(id)?;
        let status = st.status(&self.store.dir(id));
        // Signal 0 delivers nothing: `kill ID 0` only checks that the init (or, with --all,
        // the processes) can be signalled, as runc's does.
        if !(0..=libc::SIGRTMAX()).contains(&sig) {
            return Err(Error::msg(format!("invalid signal {sig}")));
        }
        // With --all, processes may outlive the init (no pid namespace of its own).
        if all {
            return st.cgroup.signal_all(sig);
        }
        if !matches!(status, Status::Created | Status::Running | Status::Paused) {
            return Err(Error::msg("container not running"));
        }
        crate::sys::kill(st.pid, sig).ctx(|| format!("sending signal {sig} to pid {}", st.pid))?;
        // A frozen process cannot act on SIGKILL until it is thawed (runc thaws too).
        if status == Status::Paused && sig == libc::SIGKILL {
            st.cgroup.set_frozen(false)?;
        }
        Ok(())
    }

    /// `delete`: removes a stopped (or created) container; with `force` kills a running one
    /// first. Runs the poststop hooks.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        crate::state::validate_id(id)?;
        if force && !self.store.dir(id).exists() {
            // runc: deleting a missing container with --force succeeds.
            return Ok(());
        }
        let lock = self.store.lock(id);
        let st = match self.store.load(id) {
            Ok(st) => st,
            Err(e) => {
                // A directory without a readable state (a crashed create) is removed with force.
                if force && self.store.dir(id).exists() {
                    drop(lock);
                    return self.store.remove(id);
                }
                return Err(e);
            }
        };
        let _lock = lock?;
        match st.status(&self.store.dir(id)) {
            Status::Stopped | Status::Created => {}
            s if !force => {
                return Err(Error::msg(format!(
                    "cannot delete container {id:?} that is not stopped: {s}"
                )))
            }
            _ => {}
        }
        self.destroy(&st)
    }

    /// Kills whatever is left of a container and removes it: processes, cgroup, state; then
    /// runs the poststop hooks.
    fn destroy(&self, st: &ContainerState) -> Result<()> {
        let mut t = crate::timing::Phases::new("delete");
        if crate::sys::process_alive(st.pid, Some(st.pid_start)) {
            let _ = crate::sys::kill(st.pid, libc::SIGKILL);
            // A frozen container cannot die until it is thawed.
            if st.cgroup.frozen() {
                let _ = st.cgroup.set_frozen(false);
            }
            crate::sys::wait_exit(st.pid, Some(Duration::from_secs(10)));
        }

        // Without a pid namespace of its own, the container's other processes outlive its
        // init; with one, the kernel kills them all with it.
        if !st.own_pid_ns {
            if st.cgroup.frozen() {
                let _ = st.cgroup.set_frozen(false);
            }
            st.cgroup.signal_all(libc::SIGKILL)?;
        }

        t.mark("stop processes");
        detach_container_rootfs(st);
        // A cgroup that other processes still use (containers created into the same cgroup,
        // as runc allows with a warning) stays for them; the container goes anyway.
        if let Err(e) = st.cgroup.remove(&st.cgroup_owned) {
            // Only processes of another pid namespace than the container's (which died with its
            // init) count as someone else's; one of the container's own still there is an error.
            let others = match (&st.pid_ns, st.cgroup.pids()) {
                (Some(ours), Ok(p)) if !p.is_empty() => p.iter().all(|p| pid_namespace(*p).is_some_and(|n| n != *ours)),
                _ => false,
            };
            if !others {
                return Err(e);
            }
            tracing::warn!("cgroup left in place for the other processes that use it: {e}");
        }
        t.mark("remove cgroups");
        let json = state_json(&st.oci(Status::Stopped))?;
        if let Some(h) = st.hooks.as_ref().and_then(|h| h.poststop().as_ref()) {
            crate::hooks::run_all_warn(Some(h), &json, "poststop");
        }
        self.store.remove(&st.id)
    }

    /// `list`: the state of every container.
    pub fn list(&self) -> Result<Vec<OciState>> {
        let mut out = Vec::new();
        for id in self.store.ids()? {
            if let Ok(st) = self.store.load(&id) {
                let dir = self.store.dir(&id);
                let mut oci = st.oci(st.status(&dir));
                oci.owner = owner_of(&dir);
                out.push(oci);
            }
        }
        Ok(out)
    }

    /// `run`: create + start; in the foreground waits for the container's process, forwarding
    /// signals to it, deletes the container, and returns the exit status (128+n for a signal).
    /// With `detach`, returns 0 once the container runs.
    pub fn run(&self, o: &CreateOptions, detach: bool, keep: bool) -> Result<i32> {
        if detach {
            self.create(o)?;
            if let Err(e) = self.start(&o.id) {
                let _ = self.delete(&o.id, true);
                return Err(e);
            }
            return Ok(0);
        }
        // Block every forwardable signal and SIGCHLD before the fork: they queue on the
        // signalfd, so the exit of a fast container can never be missed.
        let set = forwarded_signals();
        let old = crate::sys::block_signals(&set)?;
        let res = self.run_foreground(o, &set, keep);
        let _ = crate::sys::set_signal_mask(&old);
        res
    }

    fn run_foreground(&self, o: &CreateOptions, set: &nix::sys::signal::SigSet, keep: bool) -> Result<i32> {
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        // Inits forked by an intermediate process are re-parented to us.
        crate::sys::set_child_subreaper()?;
        let sfd = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC).ctx(|| "creating a signalfd".into())?;
        // With a terminal and no console socket, dray allocates the pty itself (through a
        // socket pair) and relays it to its own stdio, as `runc run` does.
        // The bundle is loaded once, here, and handed to create.
        let bundle = o
            .bundle
            .canonicalize()
            .ctx(|| format!("bundle {}", o.bundle.display()))?;
        let loaded = load_bundle(&bundle)?;
        let own_tty =
            o.console_socket.is_none() && loaded.0.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
        let (pid, mut relay) = if own_tty {
            let (ours, theirs) = UnixStream::pair().ctx(|| "creating the console socket pair".into())?;
            let pid = self.create_with(o, Some(theirs), Some(loaded))?;
            match crate::console::recv_fd(ours.as_raw_fd()).and_then(crate::console::Relay::new) {
                Ok(r) => (pid, Some(r)),
                Err(e) => {
                    let _ = self.delete(&o.id, true);
                    return Err(e);
                }
            }
        } else {
            (self.create_with(o, None, Some(loaded))?, None)
        };
        if let Err(e) = self.start(&o.id) {
            drop(relay);
            let _ = self.delete(&o.id, true);
            return Err(e);
        }
        let waited = Self::wait_foreground(pid, &sfd, relay.as_mut());
        if let Some(r) = relay.as_mut() {
            r.drain();
        }
        drop(relay);
        // runc's --keep: the stopped container stays (state, cgroup) until `delete`.
        let deleted = if keep { Ok(()) } else { self.delete(&o.id, true) };
        let code = waited?;
        deleted?;
        Ok(code)
    }

    /// Waits for the init of a foreground `run`, forwarding signals and relaying the terminal.
    fn wait_foreground(
        pid: i32,
        sfd: &nix::sys::signalfd::SignalFd,
        mut relay: Option<&mut crate::console::Relay>,
    ) -> Result<i32> {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        let code = 'outer: loop {
            if let Some(r) = relay.as_mut() {
                r.pump_until_readable(sfd.as_raw_fd())?;
            }
            let Some(info) = sfd.read_signal().ctx(|| "reading signals".into())? else {
                continue;
            };
            let signo = info.ssi_signo as i32;
            if signo == libc::SIGCHLD {
                loop {
                    match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::Exited(p, c)) if p.as_raw() == pid => break 'outer c,
                        Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == pid => break 'outer 128 + s as i32,
                        Ok(WaitStatus::StillAlive) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            } else if signo == libc::SIGWINCH && relay.is_some() {
                if let Some(r) = relay.as_ref() {
                    r.resize();
                }
            } else if signo != libc::SIGURG {
                let _ = crate::sys::kill(pid, signo);
            }
        };
        Ok(code)
    }
}

/// Options of `exec`.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The process to run (from `--process`, or the container's process with CLI overrides).
    pub process: oci_spec::runtime::Process,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
    /// As [`CreateOptions::inherited_fds`].
    pub inherited_fds: Option<Vec<i32>>,
    /// `--ignore-paused`: exec into a paused container (the process starts frozen with it).
    pub ignore_paused: bool,
    /// `--cgroup [CONTROLLERS:]PATH`: sub-cgroups to run the process in.
    pub sub_cgroups: Vec<String>,
}

impl Runtime {
    /// The container's own process, the base of `exec`'s defaults (runc takes them from the
    /// container's config).
    pub fn container_process(&self, id: &str) -> Result<oci_spec::runtime::Process> {
        let st = self.store.load(id)?;
        st.process
            .ok_or_else(|| Error::msg("the container's state has no process"))
    }

    /// `exec`: runs a new process in a created or running container. In the foreground waits for
    /// it (forwarding signals, relaying a terminal) and returns its exit status; with `detach`
    /// returns 0 once it runs.
    pub fn exec(&self, id: &str, o: &ExecOptions) -> Result<i32> {
        // Held until the process runs, so that a concurrent pause cannot freeze it half-way.
        let lock = self.store.lock(id)?;
        let st = self.store.load(id)?;
        let lock = match st.status(&self.store.dir(id)) {
            Status::Created | Status::Running => Some(lock),
            // The process freezes as soon as it joins the cgroup and goes on with `resume`,
            // which needs the lock.
            Status::Paused if o.ignore_paused => {
                drop(lock);
                None
            }
            Status::Paused => return Err(Error::msg("cannot exec in a paused container")),
            s => return Err(Error::msg(format!("cannot exec in a {s} container"))),
        };
        let p = &o.process;
        if p.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::msg("exec needs a command"));
        }
        let terminal = p.terminal().unwrap_or(false);
        if terminal && o.detach && o.console_socket.is_none() {
            return Err(Error::msg(
                "exec --tty --detach needs a --console-socket to receive the pty",
            ));
        }
        if !terminal && o.console_socket.is_some() {
            return Err(Error::msg("--console-socket given but the process has no terminal"));
        }
        let seccomp = match &st.seccomp {
            Some(s) => Some((
                crate::seccomp::compile_cached(s, &self.store.root.join(".cache"))?,
                s.clone(),
            )),
            None => None,
        };
        let state_json = state_json(&st.oci(Status::Running))?;
        let mut cfg = crate::process::exec::ExecConfig {
            seccomp,
            state_json,
            id: id.to_string(),
            init_pid: st.pid,
            init_start: st.pid_start,
            namespaces: st.namespaces.clone(),
            process: o.process.clone(),
            cgroup: st.cgroup.with_sub_cgroups(&o.sub_cgroups)?,
            inherited_fds: o
                .inherited_fds
                .clone()
                .unwrap_or_else(|| crate::sys::open_fds(3, o.preserve_fds)),
            console: None,
            lock_fd: lock.as_ref().map(|l| l.fd()),
            chroot: st.mount_ns_path.is_some()
                || !st.namespaces.contains(&oci_spec::runtime::LinuxNamespaceType::Mount),
        };
        if o.detach {
            if let Some(p) = &o.console_socket {
                cfg.console = Some(crate::console::connect(p)?);
            }
            let pid = crate::process::exec::spawn(&cfg)?;
            drop(lock);
            if let Some(pf) = &o.pid_file {
                write_pid_file(pf, pid)?;
            }
            return Ok(0);
        }
        let set = forwarded_signals();
        let old = crate::sys::block_signals(&set)?;
        let res = (|| -> Result<i32> {
            use nix::sys::signalfd::{SfdFlags, SignalFd};
            // The process is forked by a helper that exits: it is re-parented to us.
            crate::sys::set_child_subreaper()?;
            let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).ctx(|| "creating a signalfd".into())?;
            let mut ours = None;
            if terminal {
                match &o.console_socket {
                    Some(p) => cfg.console = Some(crate::console::connect(p)?),
                    None => {
                        let (a, b) = UnixStream::pair().ctx(|| "creating the console socket pair".into())?;
                        cfg.console = Some(b);
                        ours = Some(a);
                    }
                }
            }
            let pid = crate::process::exec::spawn(&cfg)?;
            drop(lock);
            cfg.console = None;
            if let Some(pf) = &o.pid_file {
                write_pid_file(pf, pid)?;
            }
            let mut relay = match ours {
                Some(sock) => Some(crate::console::recv_fd(sock.as_raw_fd()).and_then(crate::console::Relay::new)?),
                None => None,
            };
            let code = Self::wait_foreground(pid, &sfd, relay.as_mut());
            if let Some(r) = relay.as_mut() {
                r.drain();
            }
            code
        })();
        let _ = crate::sys::set_signal_mask(&old);
        res
    }

    /// `update`: applies new resource limits to a created, running or paused container.
    pub fn update(&self, id: &str, r: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let _lock = self.store.lock(id)?;
        let st = self.store.load(id)?;
        if matches!(st.status(&self.store.dir(id)), Status::Stopped | Status::Creating) {
            return Err(Error::msg("container not running"));
        }
        // New device rules replace the old ones (followed by the defaults, as at create). On
        // v1 the list is replayed after a deny-all, on v2 the new program is attached before
        // the old one goes: either way nothing denied is let through meanwhile.
        if let Some(list) = r.devices().as_deref().filter(|d| !d.is_empty()) {
            st.cgroup.apply_devices(&crate::cgroups::devices::rules_from(list)?)?;
        }
        for w in st.cgroup.apply_resources(r, true)? {
            tracing::warn!("{w}");
        }
        Ok(())
    }

    /// `events --stats`: one statistics event, as runc prints it.
    pub fn stats_event(&self, id: &str) -> Result<Event> {
        let st = self.store.load(id)?;
        if matches!(st.status(&self.store.dir(id)), Status::Stopped) {
            return Err(Error::msg("container is not running"));
        }
        Ok(Event::stats(id, st.cgroup.stats()))
    }

    /// `events`: calls `emit` with a stats event every `interval` and an `oom` event whenever
    /// the OOM killer kills one of the container's processes, until the container stops.
    pub fn events(&self, id: &str, interval: Duration, emit: &mut dyn FnMut(Event)) -> Result<()> {
        let st = self.store.load(id)?;
        let dir = self.store.dir(id);
        let mut ooms = st.cgroup.oom_kills();
        let mut next = std::time::Instant::now();
        // OOM kills are polled more often than stats are printed, so they are reported promptly.
        let tick = Duration::from_millis(100).min(interval);
        loop {
            if matches!(st.status(&dir), Status::Stopped) {
                return Ok(());
            }
            let n = st.cgroup.oom_kills();
            if n > ooms {
                ooms = n;
                emit(Event {
                    typ: "oom",
                    id: id.to_string(),
                    data: None,
                });
            }
            if std::time::Instant::now() >= next {
                emit(Event::stats(id, st.cgroup.stats()));
                next = next
                    .checked_add(interval)
                    .ok_or_else(|| Error::msg("events interval too large"))?;
            }
            std::thread::sleep(tick);
        }
    }

    /// `pause`: freezes every process of the container.
    pub fn pause(&self, id: &str) -> Result<()> {
        let _lock = self.store.lock(id)?;
        let st = self.store.load(id)?;
        match st.status(&self.store.dir(id)) {
            Status::Running | Status::Created => st.cgroup.set_frozen(true),
            s => Err(Error::msg(format!("cannot pause a {s} container"))),
        }
    }

    /// `resume`: thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let _lock = self.store.lock(id)?;
        let st = self.store.load(id)?;
        match st.status(&self.store.dir(id)) {
            Status::Paused => st.cgroup.set_frozen(false),
            s => Err(Error::msg(format!("cannot resume a {s} container: it is not paused"))),
        }
    }

    /// `ps`: the host pids of the container's processes.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let st = self.store.load(id)?;
        let mut p = st.cgroup.pids()?;
        p.sort_unstable();
        p.dedup();
        Ok(p)
    }
}

/// The signals a foreground `run`/`exec` blocks before the fork and forwards to the
/// container (plus SIGCHLD, read from a signalfd): all but the ones that cannot be caught
/// and the synchronous fault signals.
fn forwarded_signals() -> nix::sys::signal::SigSet {
    let mut set = nix::sys::signal::SigSet::all();
    for s in [
        Signal::SIGKILL,
        Signal::SIGSTOP,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGTRAP,
        Signal::SIGABRT,
    ] {
        set.remove(s);
    }
    set
}

/// The OCI state as JSON text.
pub fn state_json(s: &OciState) -> Result<String> {
    serde_json::to_string(s).map_err(|e| Error::msg(format!("encoding state: {e}")))
}

/// Writes the pid file atomically (runc writes it without a newline).
/// One line of `events`, in runc's layout: `{"type":"stats","id":"...","data":{...}}` (keys in
/// that order), or `{"type":"oom","id":"..."}`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub typ: &'static str,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl Event {
    fn stats(id: &str, data: serde_json::Value) -> Event {
        Event {
            typ: "stats",
            id: id.to_string(),
            data: Some(data),
        }
    }

    /// The JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The pid namespace of a process, as its /proc link reads (`pid:[4026532...]`).
fn pid_namespace(pid: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|l| l.to_string_lossy().into_owned())
}

/// Detaches the rootfs bind of a container without a mount namespace of its own, in the
/// namespace it shared or joined.
fn detach_container_rootfs(st: &ContainerState) {
    match &st.mount_ns_path {
        Some(ns) if st.rootfs_mount.is_some() => detach_rootfs_in(ns, &st.rootfs, st.rootfs_mount),
        None if st.rootfs_mount.is_some() => detach_rootfs(&st.rootfs, st.rootfs_mount),
        _ => {}
    }
}

/// Detaches the rootfs bind of a container that shared the runtime's mount namespace (and with
/// it every mount the container made under it), if it is still the one dray made.
fn detach_rootfs(rootfs: &Path, id: Option<u64>) {
    if id.is_some() && crate::sys::mount_id(rootfs) == id {
        if let Err(e) = crate::rootfs::detach_shared_bind(rootfs) {
            tracing::warn!("detaching the rootfs bind {}: {e}", rootfs.display());
        }
    }
}

/// [`detach_rootfs`] in the mount namespace at `ns` (one the container joined by path), from a
/// child process: setns into a mount namespace needs a single-threaded caller, and the runtime
/// stays where it is. A namespace that is gone took the mounts with it.
fn detach_rootfs_in(ns: &Path, rootfs: &Path, id: Option<u64>) {
    let Ok(f) = std::fs::File::open(ns) else {
        return;
    };
    // SAFETY: the CLI is single-threaded; the child only makes syscalls and exits.
    match unsafe { crate::sys::clone_fork(0) } {
        Ok(0) => {
            let ok = nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNS).is_ok();
            if ok {
                detach_rootfs(rootfs, id);
            }
            // SAFETY: _exit skips the destructors of the forked copy of the runtime.
            unsafe { libc::_exit(i32::from(!ok)) }
        }
        Ok(pid) => {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
        Err(e) => tracing::warn!("detaching the rootfs bind in {}: {e}", ns.display()),
    }
}

fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    crate::sys::write_file_atomic(path, ".dray-tmp", pid.to_string())
        .ctx(|| format!("writing pid file {}", path.display()))
}

use std::os::unix::fs::OpenOptionsExt;
