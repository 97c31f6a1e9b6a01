//! `create`: the bundle's checks, then the container's set-up (see [`crate::process`]).

use super::*;

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

impl Runtime {
    /// `create`: sets the container up and leaves its init waiting for `start`. Returns the
    /// init's pid. On failure nothing is left behind: no process, mount, cgroup or state.
    pub fn create(&self, o: &CreateOptions) -> Result<i32> {
        self.create_with(o, None, None)
    }

    /// `create`, with an already connected console socket instead of `o.console_socket` (used
    /// by a foreground `run` that proxies the terminal itself).
    pub(super) fn create_with(
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
        let mount_before = if shared_mounts {
            crate::sys::mount_id(&cfg.rootfs)
        } else {
            None
        };
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
}
