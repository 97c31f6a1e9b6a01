//! `update`, `events`, `pause`/`resume` and `ps` on a running container.

use super::*;

impl Runtime {
    /// `update`: applies new resource limits to a created, running or paused container.
    pub fn update(&self, id: &str, r: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let _lock = self.store.lock(id)?;
        let st = self.store.load(id)?;
        if matches!(st.status(&self.store.dir(id)), Status::Stopped | Status::Creating) {
            return Err(Error::state("container not running"));
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
            return Err(Error::state("container is not running"));
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
            s => Err(Error::state(format!("cannot pause a {s} container"))),
        }
    }

    /// `resume`: thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let _lock = self.store.lock(id)?;
        let st = self.store.load(id)?;
        match st.status(&self.store.dir(id)) {
            Status::Paused => st.cgroup.set_frozen(false),
            s => Err(Error::state(format!("cannot resume a {s} container: it is not paused"))),
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
