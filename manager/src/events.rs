//! The event bus: what happens to containers and volumes (docker's event types and actions),
//! published in order to live subscribers and kept in a bounded history for `--since`.
//! Subscribers that fall behind skip events rather than slow anyone down.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::broadcast;

/// Events kept for `events --since` (docker keeps 256 in memory).
const HISTORY: usize = 1024;

/// One event (docker's `events` message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// "container", "volume", "image".
    pub kind: String,
    /// "create", "start", "die", "stop", "kill", "destroy", "pause", "unpause", "rename",
    /// "exec_create", "exec_start", "exec_die", "oom", "restart", "update", "mount", ...
    pub action: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    /// Unix nanoseconds.
    pub time: i64,
}

/// The bus; one per daemon.
pub struct Bus {
    tx: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            tx: broadcast::channel(256).0,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }
}

impl Bus {
    /// Publishes an event now.
    pub fn publish(&self, kind: &str, action: &str, id: &str, attributes: &[(&str, &str)]) {
        let e = Event {
            kind: kind.into(),
            action: action.into(),
            id: id.into(),
            attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            time: crate::meta::now_nanos(),
        };
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(e.clone());
        // Sent under the history lock: a subscriber sees each event once, in order.
        let _ = self.tx.send(e);
    }

    /// The kept events since `since` (unix nanoseconds) and a receiver of the next ones,
    /// atomically with respect to publishing.
    pub fn subscribe(&self, since: Option<i64>) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        let past = match since {
            Some(t) => h.iter().filter(|e| e.time >= t).cloned().collect(),
            None => Vec::new(),
        };
        (past, rx)
    }
}

/// docker's `--filter` for events: type, event (action), container (id or name), image,
/// volume, label.
pub fn matches(e: &Event, filters: &BTreeMap<String, Vec<String>>) -> bool {
    filters.iter().all(|(k, vals)| {
        vals.is_empty()
            || vals.iter().any(|v| match k.as_str() {
                "type" => e.kind == *v,
                "event" => e.action == *v || e.action.split(':').next() == Some(v.as_str()),
                "container" => {
                    e.kind == "container" && (e.id.starts_with(v.as_str()) || e.attributes.get("name") == Some(v))
                }
                "image" => e.attributes.get("image") == Some(v),
                "volume" => e.kind == "volume" && e.id == *v,
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => e.attributes.get(lk).map(String::as_str) == Some(lv),
                    None => e.attributes.contains_key(v.as_str()),
                },
                _ => false,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_then_live_in_order() {
        let bus = Bus::default();
        bus.publish("container", "create", "a", &[("name", "web")]);
        let t = crate::meta::now_nanos();
        bus.publish("container", "start", "a", &[("name", "web")]);
        let (past, mut rx) = bus.subscribe(Some(t));
        assert_eq!(past.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["start"]);
        bus.publish("container", "die", "a", &[("exitCode", "0")]);
        assert_eq!(rx.try_recv().unwrap().action, "die");
        let f = BTreeMap::from([("event".to_string(), vec!["start".to_string()])]);
        assert!(matches(&past[0], &f));
        let f = BTreeMap::from([("container".to_string(), vec!["web".to_string()])]);
        assert!(matches(&past[0], &f));
        let f = BTreeMap::from([("type".to_string(), vec!["volume".to_string()])]);
        assert!(!matches(&past[0], &f));
    }
}
