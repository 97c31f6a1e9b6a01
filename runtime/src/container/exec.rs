//! `exec`: a new process in a created or running container.

use super::*;

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
            Status::Paused => return Err(Error::state("cannot exec in a paused container")),
            s => return Err(Error::state(format!("cannot exec in a {s} container"))),
        };
        let p = &o.process;
        if p.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::spec("exec needs a command"));
        }
        crate::validate::process(p)?;
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
            explicit_cgroup: !o.sub_cgroups.is_empty(),
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
}
