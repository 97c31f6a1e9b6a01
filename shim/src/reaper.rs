//! The shim is the child subreaper of its containers: every process under it (the runtime it
//! runs, the containers' init and exec processes once the runtime has exited, hooks, log
//! drivers) is reaped here, in one place, so that no `waitpid` elsewhere can steal an exit.
//!
//! Runtime invocations register their pid *before* the loop can run (the server runs on one
//! thread and `spawn` does not yield), and receive their exit through a oneshot; every other
//! exit goes to the task service, which matches it to a container process.

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// One reaped process: its pid, exit status in the shell's encoding (128+signal for a
/// signalled process) and when it was reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: i32,
    pub status: i32,
    pub at: std::time::SystemTime,
}

#[derive(Debug, Default)]
pub struct Reaper {
    waiters: Mutex<HashMap<i32, oneshot::Sender<Exit>>>,
}

impl Reaper {
    /// Registers interest in `pid`'s exit. Call right after spawning, before any `.await`.
    pub fn subscribe(&self, pid: i32) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiters.lock() {
            w.insert(pid, tx);
        }
        rx
    }

    /// Reaps every exited child; each exit goes to its waiter or, if none, to `others`.
    pub fn reap_all(&self, others: &mpsc::UnboundedSender<Exit>) {
        loop {
            let st = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(st) => st,
            };
            let (pid, status) = match st {
                WaitStatus::Exited(p, c) => (p.as_raw(), c),
                WaitStatus::Signaled(p, s, _) => (p.as_raw(), 128 + s as i32),
                _ => continue,
            };
            let exit = Exit {
                pid,
                status,
                at: std::time::SystemTime::now(),
            };
            let waiter = self.waiters.lock().ok().and_then(|mut w| w.remove(&pid));
            match waiter {
                Some(tx) => {
                    let _ = tx.send(exit);
                }
                None => {
                    let _ = others.send(exit);
                }
            }
        }
    }

    /// Runs forever: reaps on every SIGCHLD. The server makes itself a subreaper first.
    pub async fn run(self: Arc<Self>, others: mpsc::UnboundedSender<Exit>) {
        let mut sig = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot watch SIGCHLD: {e}");
                return;
            }
        };
        loop {
            self.reap_all(&others);
            if sig.recv().await.is_none() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // The reaper under test is what waits for these children.
    #[allow(clippy::zombie_processes)]
    fn waiter_gets_its_exit_and_others_go_to_the_channel() {
        let _ = dray_runtime::sys::set_child_subreaper();
        let r = Reaper::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let a = std::process::Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
        let b = std::process::Command::new("sh")
            .args(["-c", "kill -TERM $$"])
            .spawn()
            .unwrap();
        let mut wa = r.subscribe(a.id() as i32);
        let mut seen_b = None;
        for _ in 0..500 {
            r.reap_all(&tx);
            if let Ok(e) = rx.try_recv() {
                seen_b = Some(e);
            }
            if seen_b.is_some() {
                if let Ok(e) = wa.try_recv() {
                    assert_eq!(e.status, 7);
                    break;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let b_exit = seen_b.expect("exit of the unregistered child");
        assert_eq!(b_exit.pid, b.id() as i32);
        assert_eq!(b_exit.status, 128 + libc::SIGTERM);
    }
}
