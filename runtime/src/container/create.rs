//! `create`: the bundle's checks ([`crate::validate`]), then the container's set-up (see
//! [`crate::process`]).

use super::*;

/// Loads a bundle's config.json and checks its root (the rest is checked by `create`, with
/// [`crate::validate::spec`]). Returns the spec and the absolute rootfs path.
pub fn load_bundle(bundle: &Path) -> Result<(Spec, PathBuf)> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
    let spec: Spec =
        serde_json::from_slice(&data).map_err(|e| Error::spec(format!("parsing {}: {e}", path.display())))?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::spec("config.json has no root"))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    let meta = std::fs::metadata(&rootfs).ctx(|| format!("rootfs {}", rootfs.display()))?;
    if !meta.is_dir() {
        return Err(Error::spec(format!("rootfs {} is not a directory", rootfs.display())));
    }
    let rootfs = rootfs
        .canonicalize()
        .ctx(|| format!("resolving rootfs {}", rootfs.display()))?;
    Ok((spec, rootfs))
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
        // Everything the init will do is checked and parsed here, before any fork.
        let checked = crate::validate::spec(&spec)?;
        let (Some(process), Some(linux)) = (spec.process(), spec.linux()) else {
            return Err(Error::spec("config.json needs process and linux"));
        };
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
            checked,
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
        checked: crate::validate::Checked,
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
            own_pid_ns: checked.namespaces.own_pid_ns(),
            hooks: spec.hooks().clone(),
            process: spec.process().clone(),
            seccomp: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
            namespaces: checked
                .namespaces
                .new
                .iter()
                .copied()
                .chain(checked.namespaces.join.iter().map(|(t, _)| *t))
                .collect(),
            rootfs_mount: None,
            mount_ns_path: checked
                .namespaces
                .joins(oci_spec::runtime::LinuxNamespaceType::Mount)
                .cloned(),
            pid_ns: None,
        };
        self.store.save(&st)?;
        t.mark("state directory, exec.fifo, state");
        // Checked with the spec; written by `make_cgroups` below.
        let device_rules = checked.device_rules.clone();
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
            checked,
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
        let shared_mounts = !cfg
            .checked
            .namespaces
            .creates(oci_spec::runtime::LinuxNamespaceType::Mount);
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
