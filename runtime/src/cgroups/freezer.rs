//! `pause` and `resume`: the v1 freezer, or cgroup v2's `cgroup.freeze`.

use super::*;

impl CgroupPaths {
    /// The directory that freezes the container: the v1 freezer, else the v2 cgroup (which has
    /// cgroup.freeze).
    fn freezer(&self) -> Option<&CgroupDir> {
        self.dirs
            .iter()
            .find(|d| !d.v2 && d.controllers.split(',').any(|c| c == "freezer"))
            .or_else(|| self.dirs.iter().find(|d| d.v2 && d.path.join("cgroup.freeze").exists()))
    }

    /// True when the container's cgroup is frozen or being frozen (`pause`): a half-frozen
    /// container counts as paused, so that `resume` and `delete` still thaw it.
    pub fn frozen(&self) -> bool {
        match self.freezer() {
            Some(d) if d.v2 => crate::sys::read_text(d.path.join("cgroup.freeze"))
                .map(|t| t.trim() == "1")
                .unwrap_or(false),
            Some(d) => crate::sys::read_text(d.path.join("freezer.state"))
                .map(|t| matches!(t.trim(), "FROZEN" | "FREEZING"))
                .unwrap_or(false),
            None => false,
        }
    }

    /// True when every process of the container is frozen (not merely asked to be).
    fn fully_frozen(&self) -> bool {
        match self.freezer() {
            Some(d) if d.v2 => crate::sys::read_text(d.path.join("cgroup.events"))
                .map(|t| t.lines().any(|l| l == "frozen 1"))
                .unwrap_or(false),
            Some(d) => crate::sys::read_text(d.path.join("freezer.state"))
                .map(|t| t.trim() == "FROZEN")
                .unwrap_or(false),
            None => false,
        }
    }

    /// Freezes (`pause`) or thaws (`resume`) the container and waits until the kernel reports
    /// the new state (v1 passes through FREEZING; v2 reports it in cgroup.events).
    pub fn set_frozen(&self, freeze: bool) -> Result<()> {
        let d = self
            .freezer()
            .ok_or_else(|| Error::msg("no freezer on this host (v1 freezer or cgroup v2 cgroup.freeze)"))?;
        let (file, value) = match (d.v2, freeze) {
            (true, f) => ("cgroup.freeze", if f { "1" } else { "0" }),
            (false, true) => ("freezer.state", "FROZEN"),
            (false, false) => ("freezer.state", "THAWED"),
        };
        let mut delay = Duration::from_micros(100);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            // v1 may need the write repeated while tasks are still freezing.
            crate::sys::write_file(d.path.join(file), value)?;
            let done = if freeze { self.fully_frozen() } else { !self.frozen() };
            if done {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                if freeze {
                    // Never leave a container half-frozen (runc thaws on failure too).
                    let _ = self.set_frozen(false);
                }
                return Err(Error::msg(format!(
                    "the container did not {} within 10s",
                    if freeze { "freeze" } else { "thaw" }
                )));
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(10));
        }
    }
}
