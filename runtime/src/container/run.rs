//! `run`: create + start, and in the foreground the wait for the container's process.

use super::*;

impl Runtime {
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
    pub(super) fn wait_foreground(
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
