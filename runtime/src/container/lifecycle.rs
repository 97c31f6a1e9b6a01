//! `start`, `state`, `kill`, `delete` and `list`.

use super::*;
use std::os::unix::fs::OpenOptionsExt;

/// Waits until the init has executed the user's process (runtime-spec "poststart": the hooks
/// run after the user-specified process is executed). The init holds exec.fifo open,
/// close-on-exec, until it executes the trampoline (after the startContainer hooks): its end of
/// file says that. The trampoline then executes the user's program at once; that is seen when
/// the init's executable is no longer the trampoline's memfd. Without a poststart hook nothing
/// waits.
fn wait_for_exec(fifo: &std::fs::File, pid: i32, pid_start: u64, deadline: std::time::Instant) -> Result<()> {
    // An init that is gone has nothing left to execute.
    let late = "the container's init did not execute its process within 60s";
    poll_fifo(fifo, pid, pid_start, deadline, FifoEvent::Eof, late)?;
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

/// What [`poll_fifo`] waits for on exec.fifo: the init's byte (it waits for `start`), or its
/// end of file (it executed, closing its close-on-exec end).
#[derive(Clone, Copy, PartialEq, Eq)]
enum FifoEvent {
    Byte,
    Eof,
}

/// Polls exec.fifo (opened non-blocking) until `want` happens (true), or the init is gone
/// (false), checking that it is alive between polls: no fixed sleeps. Past `deadline` it fails
/// with `late`.
fn poll_fifo(
    fifo: &std::fs::File,
    pid: i32,
    pid_start: u64,
    deadline: std::time::Instant,
    want: FifoEvent,
    late: &str,
) -> Result<bool> {
    loop {
        if std::time::Instant::now() > deadline {
            return Err(Error::msg(late));
        }
        if crate::sys::poll_readable(fifo.as_raw_fd(), Some(Duration::from_millis(100)))
            .ctx(|| "waiting on exec.fifo".into())?
        {
            let mut b = [0u8; 16];
            match nix::unistd::read(fifo.as_raw_fd(), &mut b) {
                Ok(0) if want == FifoEvent::Eof => return Ok(true),
                Ok(n) if n > 0 && want == FifoEvent::Byte => return Ok(true),
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(e).ctx(|| "reading exec.fifo".into()),
            }
        }
        if !crate::sys::process_alive(pid, Some(pid_start)) {
            return Ok(false);
        }
    }
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
    /// `start`: lets the created init exec the user's process, then runs poststart hooks.
    pub fn start(&self, id: &str) -> Result<()> {
        let mut t = crate::timing::Phases::new("start");
        let _lock = self.store.lock(id)?;
        let st = self.store.load(id)?;
        let dir = self.store.dir(id);
        match st.status(&dir) {
            Status::Created => {}
            s => return Err(Error::state(format!("cannot start a container in the {s} state"))),
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
        let late = "the container's init did not take the start signal within 60s";
        if !poll_fifo(&fifo, st.pid, st.pid_start, deadline, FifoEvent::Byte, late)? {
            return Err(Error::msg("the container's init exited before start"));
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
            return Err(Error::state("container not running"));
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
        let status = st.status(&self.store.dir(id));
        match status {
            Status::Stopped | Status::Created => {}
            s if !force => {
                return Err(Error::state(format!(
                    "cannot delete container {id:?} that is not stopped: {s}"
                )))
            }
            _ => {}
        }
        self.destroy(&st, status)
    }

    /// Kills whatever is left of a container and removes it: processes, cgroup, state; then
    /// runs the poststop hooks. `status` is what `delete` found under the container's lock (a
    /// stopped init cannot come back, and nothing can pause the container meanwhile).
    fn destroy(&self, st: &ContainerState, status: Status) -> Result<()> {
        let mut t = crate::timing::Phases::new("delete");
        if matches!(status, Status::Created | Status::Running | Status::Paused) {
            let _ = crate::sys::kill(st.pid, libc::SIGKILL);
            // A frozen container cannot die until it is thawed.
            if status == Status::Paused {
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
}
