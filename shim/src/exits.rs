//! The order of a shim's task events, as a pure state machine: no I/O, no clock, no runtime.
//! The task service ([`crate::task`]) feeds it what happened (a process was created, a start
//! began or ended, the reaper saw an exit) and publishes what it releases, in that order.
//!
//! A process goes Created → Running → Stopped. Its exit is released (TaskExit, and Wait
//! returns) exactly once, under these rules, which are containerd's (`containerd-shim-runc-v2`
//! keeps the same order):
//! * TaskStart / TaskExecStarted precede their TaskExit: an exit reaped while the start is in
//!   flight is held until the start is over.
//! * An exit whose pid is not known yet (an exec that ends before the runtime's `exec` returns
//!   its pid, an init that dies right after `create`) is kept while a create or start is in
//!   flight ("capture") and claimed once the pid is known.
//! * TaskOOM precedes the TaskExit it caused: the OOM counter is read right before init's exit.
//! * Init's TaskExit comes after the exits of its exec processes (they die with it).

use crate::reaper::Exit;
use std::collections::HashMap;

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Stopped,
}

/// One process, as far as its events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub state: State,
    /// Host pid, 0 until known.
    pub pid: i32,
    pub exit: Option<Exit>,
    /// A start is in flight: its exit waits for the start's event.
    pub starting: bool,
    /// TaskExit was released (or, for a start that failed, Wait was answered).
    pub exit_published: bool,
}

impl Proc {
    fn new(pid: i32) -> Proc {
        Proc {
            state: State::Created,
            pid,
            exit: None,
            starting: false,
            exit_published: false,
        }
    }
}

/// A container: its init and its exec processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub init: Proc,
    pub execs: HashMap<String, Proc>,
    pub paused: bool,
    /// Without its own pid namespace nothing kills the container's other processes when its
    /// init ends: the shim does (runc's shim does the same).
    pub kill_all_on_exit: bool,
}

impl Group {
    /// The process `exec_id` (the init for an empty id).
    pub fn proc(&self, exec_id: &str) -> Option<&Proc> {
        if exec_id.is_empty() {
            Some(&self.init)
        } else {
            self.execs.get(exec_id)
        }
    }

    /// As [`Group::proc`], mutable.
    pub fn proc_mut(&mut self, exec_id: &str) -> Option<&mut Proc> {
        if exec_id.is_empty() {
            Some(&mut self.init)
        } else {
            self.execs.get_mut(exec_id)
        }
    }
}

/// What the service must do, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Read the container's OOM counter and publish TaskOOM if it moved (right before its
    /// init's TaskExit).
    CheckOom { container: String },
    /// Publish TaskExit and answer Wait.
    Exit {
        container: String,
        exec_id: String,
        exit: Exit,
    },
    /// Answer Wait only: an exec whose start failed never ran, and has no TaskExit.
    WaitOnly {
        container: String,
        exec_id: String,
        exit: Exit,
    },
    /// Kill what is left in the container (see [`Group::kill_all_on_exit`]).
    KillAll { container: String },
}

/// The event order of every container of one shim.
#[derive(Debug, Default)]
pub struct Order {
    groups: HashMap<String, Group>,
    /// Creates and starts in flight: while any is, exits of unknown pids are kept.
    capture: usize,
    unclaimed: HashMap<i32, Exit>,
    by_pid: HashMap<i32, (String, String)>,
}

impl Order {
    pub fn group(&self, container: &str) -> Option<&Group> {
        self.groups.get(container)
    }

    pub fn group_mut(&mut self, container: &str) -> Option<&mut Group> {
        self.groups.get_mut(container)
    }

    /// The container and exec id of a known pid (empty exec id for an init).
    pub fn owner_of(&self, pid: i32) -> Option<&(String, String)> {
        self.by_pid.get(&pid)
    }

    /// A create or an exec's start begins: exits of pids not known yet are kept from now on.
    pub fn begin_capture(&mut self) {
        self.capture += 1;
    }

    /// A capture ends. Returns the kept exit of `pid`, the process it just learnt of; the
    /// others are dropped once no capture is left.
    pub fn end_capture(&mut self, pid: Option<i32>) -> Option<Exit> {
        let early = pid.and_then(|p| self.unclaimed.remove(&p));
        self.capture = self.capture.saturating_sub(1);
        if self.capture == 0 {
            self.unclaimed.clear();
        }
        early
    }

    /// A container was created with its init `pid`. A kept exit of that pid (see
    /// [`Order::end_capture`]) is given to [`Order::on_exit`] by the caller, after TaskCreate.
    pub fn add(&mut self, container: &str, pid: i32, kill_all_on_exit: bool) {
        self.by_pid.insert(pid, (container.to_string(), String::new()));
        self.groups.insert(
            container.to_string(),
            Group {
                init: Proc::new(pid),
                execs: HashMap::new(),
                paused: false,
                kill_all_on_exit,
            },
        );
    }

    /// A container was deleted. An init that never exited (deleted while created) is given
    /// `killed`, the exit the runtime's kill gave it.
    pub fn remove(&mut self, container: &str, killed: Exit) -> Option<Group> {
        self.by_pid.retain(|_, (c, _)| c != container);
        let mut g = self.groups.remove(container)?;
        if g.init.exit.is_none() {
            g.init.exit = Some(Exit {
                pid: g.init.pid,
                ..killed
            });
        }
        Some(g)
    }

    /// An exec process was added (not started yet).
    pub fn add_exec(&mut self, container: &str, exec_id: &str) {
        if let Some(g) = self.groups.get_mut(container) {
            g.execs.insert(exec_id.to_string(), Proc::new(0));
        }
    }

    /// A start begins: the exit of this process is held until [`Order::start_done`].
    pub fn start_begun(&mut self, container: &str, exec_id: &str) {
        if let Some(p) = self.groups.get_mut(container).and_then(|g| g.proc_mut(exec_id)) {
            p.starting = true;
        }
    }

    /// A start ended: `Some(pid)` if the process runs (an exec learns its pid here), None if
    /// the start failed. The caller publishes TaskStart / TaskExecStarted first, then the
    /// releases; an exec's kept exit (`early`, from [`Order::end_capture`]) is handled here.
    pub fn start_done(
        &mut self,
        container: &str,
        exec_id: &str,
        started: Option<i32>,
        early: Option<Exit>,
        failed_at: std::time::SystemTime,
    ) -> Vec<Release> {
        let Some(g) = self.groups.get_mut(container) else {
            return Vec::new();
        };
        let Some(p) = g.proc_mut(exec_id) else {
            return Vec::new();
        };
        p.starting = false;
        let mut out = Vec::new();
        match started {
            Some(pid) if !exec_id.is_empty() => {
                p.pid = pid;
                p.state = State::Running;
                self.by_pid.insert(pid, (container.to_string(), exec_id.to_string()));
                if let Some(e) = early {
                    return self.on_exit(e);
                }
            }
            // An init that exited during its start is Stopped already.
            Some(_) if p.state == State::Created => p.state = State::Running,
            None if !exec_id.is_empty() => {
                // It never ran: Wait returns 255 and the process can be deleted.
                let exit = Exit {
                    pid: 0,
                    status: 255,
                    at: failed_at,
                };
                p.state = State::Stopped;
                p.exit = Some(exit);
                p.exit_published = true;
                out.push(Release::WaitOnly {
                    container: container.to_string(),
                    exec_id: exec_id.to_string(),
                    exit,
                });
            }
            _ => {}
        }
        out.extend(self.release_init(container));
        out
    }

    /// The reaper saw an exit.
    pub fn on_exit(&mut self, e: Exit) -> Vec<Release> {
        let Some((cid, eid)) = self.by_pid.remove(&e.pid) else {
            if self.capture > 0 {
                self.unclaimed.insert(e.pid, e);
            }
            return Vec::new();
        };
        let Some(g) = self.groups.get_mut(&cid) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if eid.is_empty() {
            g.init.exit = Some(e);
            g.init.state = State::Stopped;
            g.paused = false;
            if g.kill_all_on_exit {
                out.push(Release::KillAll { container: cid.clone() });
            }
        } else if let Some(p) = g.execs.get_mut(&eid) {
            p.exit = Some(e);
            p.state = State::Stopped;
            if !p.starting {
                out.extend(publish_exit(&cid, &eid, p));
            }
        }
        out.extend(self.release_init(&cid));
        out
    }

    /// Releases init's exit once its start is over and its exec processes have exited.
    pub fn release_init(&mut self, container: &str) -> Vec<Release> {
        let Some(g) = self.groups.get_mut(container) else {
            return Vec::new();
        };
        if g.init.exit.is_none() || g.init.exit_published || g.init.starting {
            return Vec::new();
        }
        if g.execs.values().any(|p| p.state == State::Running || p.starting) {
            return Vec::new();
        }
        let mut out = vec![Release::CheckOom {
            container: container.to_string(),
        }];
        out.extend(publish_exit(container, "", &mut g.init));
        out
    }
}

/// A process's TaskExit, once.
fn publish_exit(container: &str, exec_id: &str, p: &mut Proc) -> Option<Release> {
    let exit = p.exit?;
    if p.exit_published {
        return None;
    }
    p.exit_published = true;
    Some(Release::Exit {
        container: container.to_string(),
        exec_id: exec_id.to_string(),
        exit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn exit(pid: i32, status: i32) -> Exit {
        Exit {
            pid,
            status,
            at: SystemTime::UNIX_EPOCH,
        }
    }

    fn exit_of(c: &str, e: &str, pid: i32, status: i32) -> Release {
        Release::Exit {
            container: c.into(),
            exec_id: e.into(),
            exit: exit(pid, status),
        }
    }

    fn oom(c: &str) -> Release {
        Release::CheckOom { container: c.into() }
    }

    /// A container "c" with a running init of pid 10.
    fn running() -> Order {
        let mut o = Order::default();
        o.begin_capture();
        o.add("c", 10, false);
        assert_eq!(o.end_capture(Some(10)), None);
        o.start_begun("c", "");
        assert!(o.start_done("c", "", Some(10), None, SystemTime::UNIX_EPOCH).is_empty());
        o
    }

    /// Exec "e" of "c" started with pid `pid`.
    fn start_exec(o: &mut Order, e: &str, pid: i32) -> Vec<Release> {
        o.add_exec("c", e);
        o.start_begun("c", e);
        o.begin_capture();
        let early = o.end_capture(Some(pid));
        o.start_done("c", e, Some(pid), early, SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn an_init_exit_is_released_once_after_the_oom_check() {
        let mut o = running();
        assert_eq!(o.on_exit(exit(10, 0)), vec![oom("c"), exit_of("c", "", 10, 0)]);
        assert_eq!(o.group("c").unwrap().init.state, State::Stopped);
        // A second report of the same pid is not the init's any more.
        assert!(o.on_exit(exit(10, 0)).is_empty());
        assert!(o.release_init("c").is_empty());
    }

    #[test]
    fn an_exit_during_the_start_waits_for_the_start_event() {
        let mut o = Order::default();
        o.add("c", 10, false);
        o.start_begun("c", "");
        // Reaped while `start` runs: nothing yet.
        assert!(o.on_exit(exit(10, 3)).is_empty());
        let r = o.start_done("c", "", Some(10), None, SystemTime::UNIX_EPOCH);
        assert_eq!(r, vec![oom("c"), exit_of("c", "", 10, 3)]);
        // Stopped, not Running: the exit came first.
        assert_eq!(o.group("c").unwrap().init.state, State::Stopped);
    }

    #[test]
    fn an_init_that_dies_before_create_returns_is_claimed() {
        let mut o = Order::default();
        o.begin_capture();
        // The exit comes before the shim knows the pid.
        assert!(o.on_exit(exit(10, 1)).is_empty());
        let early = o.end_capture(Some(10));
        assert_eq!(early, Some(exit(10, 1)));
        o.add("c", 10, false);
        assert_eq!(o.on_exit(early.unwrap()), vec![oom("c"), exit_of("c", "", 10, 1)]);
    }

    #[test]
    fn unknown_exits_are_kept_only_during_a_capture() {
        let mut o = running();
        assert!(o.on_exit(exit(99, 0)).is_empty());
        o.begin_capture();
        // Kept, but a start that learns another pid does not claim it.
        assert!(o.on_exit(exit(98, 0)).is_empty());
        assert_eq!(o.end_capture(Some(97)), None);
        // The capture is over: the kept exit is gone.
        o.begin_capture();
        assert_eq!(o.end_capture(Some(98)), None);
    }

    #[test]
    fn an_exec_that_ends_before_its_pid_is_known_is_released_after_exec_started() {
        let mut o = running();
        o.add_exec("c", "e");
        o.start_begun("c", "e");
        o.begin_capture();
        assert!(o.on_exit(exit(20, 7)).is_empty());
        let early = o.end_capture(Some(20));
        let r = o.start_done("c", "e", Some(20), early, SystemTime::UNIX_EPOCH);
        assert_eq!(r, vec![exit_of("c", "e", 20, 7)]);
        assert_eq!(o.group("c").unwrap().execs["e"].state, State::Stopped);
    }

    #[test]
    fn the_init_exit_comes_after_its_execs() {
        let mut o = running();
        assert!(start_exec(&mut o, "e1", 20).is_empty());
        assert!(start_exec(&mut o, "e2", 21).is_empty());
        // The init dies first: held while its execs run.
        assert!(o.on_exit(exit(10, 137)).is_empty());
        assert_eq!(o.on_exit(exit(20, 137)), vec![exit_of("c", "e1", 20, 137)]);
        assert_eq!(
            o.on_exit(exit(21, 137)),
            vec![exit_of("c", "e2", 21, 137), oom("c"), exit_of("c", "", 10, 137)]
        );
    }

    #[test]
    fn an_exec_start_that_fails_answers_wait_without_an_event() {
        let mut o = running();
        o.add_exec("c", "e");
        o.start_begun("c", "e");
        o.begin_capture();
        assert_eq!(o.end_capture(None), None);
        let r = o.start_done("c", "e", None, None, SystemTime::UNIX_EPOCH);
        assert_eq!(
            r,
            vec![Release::WaitOnly {
                container: "c".into(),
                exec_id: "e".into(),
                exit: exit(0, 255)
            }]
        );
        let p = &o.group("c").unwrap().execs["e"];
        assert_eq!((p.state, p.exit_published), (State::Stopped, true));
    }

    #[test]
    fn a_pending_exec_start_holds_the_init_exit() {
        let mut o = running();
        o.add_exec("c", "e");
        o.start_begun("c", "e");
        assert!(o.on_exit(exit(10, 0)).is_empty());
        // The exec's start fails: then the init's exit goes.
        let r = o.start_done("c", "e", None, None, SystemTime::UNIX_EPOCH);
        assert_eq!(r.len(), 3, "{r:?}");
        assert_eq!(r[1..], [oom("c"), exit_of("c", "", 10, 0)]);
    }

    #[test]
    fn without_a_pid_namespace_the_rest_is_killed_when_init_ends() {
        let mut o = Order::default();
        o.add("c", 10, true);
        o.start_begun("c", "");
        let _ = o.start_done("c", "", Some(10), None, SystemTime::UNIX_EPOCH);
        let r = o.on_exit(exit(10, 0));
        assert_eq!(r[0], Release::KillAll { container: "c".into() });
        assert_eq!(r[1..], [oom("c"), exit_of("c", "", 10, 0)]);
    }

    #[test]
    fn an_exit_unpauses_and_delete_gives_a_created_init_the_kill_status() {
        let mut o = running();
        o.group_mut("c").unwrap().paused = true;
        let _ = o.on_exit(exit(10, 0));
        assert!(!o.group("c").unwrap().paused);
        let mut o = Order::default();
        o.add("c", 10, false);
        let g = o.remove("c", exit(0, 137)).unwrap();
        assert_eq!(g.init.exit, Some(exit(10, 137)));
        assert!(o.owner_of(10).is_none());
        // Its pid is forgotten: a late exit is nobody's.
        assert!(o.on_exit(exit(10, 0)).is_empty());
    }
}
