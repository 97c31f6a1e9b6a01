//! The container's processes: placing a process in the cgroup (or an `exec --cgroup`
//! sub-cgroup), listing and signalling them all.

use super::*;

impl CgroupPaths {
    /// Moves the calling thread into the container's v1 cgroups, by writing "0" to each
    /// hierarchy's `tasks` file: for a single-threaded process, the whole process.
    ///
    /// Why not `cgroup.procs`: a write there takes the kernel's global threadgroup rwsem for
    /// writing, whose first writer after a quiet period waits for an RCU grace period (several
    /// milliseconds on an idle host); moving the writing thread itself through `tasks` is the
    /// one migration the kernel does without that lock. Only the process itself can do this,
    /// so the init calls it (the runtime still moves processes it cannot move this way).
    ///
    /// The kernel's lock-free path for this exists since Linux 5.17 ("cgroup: Optimize single
    /// thread migration"); older kernels move the thread the same way, with the lock.
    pub fn enter_v1_self(&self) -> Result<()> {
        use std::io::Write;
        for d in self.dirs.iter().filter(|d| !d.v2) {
            // Never created or truncated: only the kernel's own file is written.
            std::fs::OpenOptions::new()
                .write(true)
                .open(d.path.join("tasks"))
                .and_then(|mut f| f.write_all(b"0"))
                .ctx(|| format!("entering cgroup {}", d.path.display()))?;
        }
        Ok(())
    }

    /// Moves process `pid` into the container's cgroup in the v1 hierarchies, the v2 one, or
    /// both (a process may have entered some itself, or have been born in the v2 one).
    pub fn add_to(&self, pid: i32, v1: bool, v2: bool) -> Result<()> {
        for d in self.dirs.iter().filter(|d| if d.v2 { v2 } else { v1 }) {
            crate::sys::write_file(d.path.join("cgroup.procs"), pid.to_string())
                .ctx(|| format!("placing pid {pid} in cgroup {}", d.path.display()))?;
        }
        Ok(())
    }

    /// The cgroup of an `exec --cgroup` process (runc 1.1): each `[CONTROLLERS:]PATH` names a
    /// directory below the container's own, in the v1 hierarchies of those controllers, or in
    /// every hierarchy (v2 included) without them. Nothing is created: the directory must
    /// exist, as the container made it.
    pub fn with_sub_cgroups(&self, subs: &[String]) -> Result<CgroupPaths> {
        let mut out = self.clone();
        for s in subs {
            let (ctrls, path) = match s.split_once(':') {
                Some((c, p)) => (Some(c.split(',').collect::<Vec<_>>()), p),
                None => (None, s.as_str()),
            };
            let rel = Path::new(path.trim_start_matches('/'));
            if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
                return Err(Error::msg(format!("--cgroup {s}: {path} is not a sub cgroup path")));
            }
            for c in ctrls.iter().flatten() {
                let known = self
                    .dirs
                    .iter()
                    .any(|d| !d.v2 && d.controllers.split(',').any(|x| x == *c));
                if !known {
                    return Err(Error::msg(format!("--cgroup {s}: unknown controller {c:?}")));
                }
            }
            for (d, base) in out.dirs.iter_mut().zip(&self.dirs) {
                let applies = match &ctrls {
                    None => true,
                    Some(cs) => !d.v2 && d.controllers.split(',').any(|x| cs.contains(&x)),
                };
                if applies {
                    d.path = base.path.join(rel);
                }
            }
        }
        Ok(out)
    }

    /// The v2 directory process `pid` is in (the `0::` line of /proc/PID/cgroup, under the
    /// v2 mount point), if the container has a v2 cgroup.
    pub fn v2_dir_of(&self, pid: i32) -> Option<PathBuf> {
        let d = self.dirs.iter().find(|d| d.v2)?;
        let text = crate::sys::read_text(format!("/proc/{pid}/cgroup")).ok()?;
        let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
        let rel = Path::new(rel.trim_start_matches('/'));
        if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return None;
        }
        Some(d.mountpoint.join(rel))
    }

    /// Moves process `pid` into the container's cgroup in every hierarchy.
    pub fn add(&self, pid: i32) -> Result<()> {
        self.add_to(pid, true, true)
    }

    /// Pids of every process in the container's cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        // Any hierarchy holds every process of the container (sub-cgroups included).
        let Some(d) = self.dirs.iter().find(|d| d.path.exists()) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        collect_pids(&d.path, &mut out)?;
        Ok(out)
    }

    /// Sends `sig` to every process in the cgroup. With SIGKILL, repeats until the cgroup is
    /// empty, so that processes forked meanwhile are caught too.
    pub fn signal_all(&self, sig: i32) -> Result<()> {
        for _ in 0..100 {
            let pids = self.pids()?;
            if pids.is_empty() {
                return Ok(());
            }
            for p in &pids {
                let _ = crate::sys::kill(*p, sig);
            }
            if sig != libc::SIGKILL {
                return Ok(());
            }
            for p in &pids {
                crate::sys::wait_exit(*p, Some(Duration::from_millis(100)));
            }
        }
        Ok(())
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    match crate::sys::read_text(dir.join("cgroup.procs")) {
        Ok(t) => out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx(|| format!("reading {}/cgroup.procs", dir.display())),
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&e.path(), out)?;
            }
        }
    }
    Ok(())
}
