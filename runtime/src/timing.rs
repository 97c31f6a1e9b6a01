//! `--debug` phase timings of the start path: each phase logs how long it took, so that
//! docs/performance.md can say where `create`, `start` and `delete` spend their time.

use std::time::Instant;

/// A stopwatch that logs (at debug level) the time since the previous mark.
#[derive(Debug)]
pub struct Phases {
    last: Instant,
    what: &'static str,
}

impl Phases {
    /// Starts timing the phases of `what` (create, start, delete...).
    pub fn new(what: &'static str) -> Phases {
        Phases {
            last: Instant::now(),
            what,
        }
    }

    /// Logs the time spent since the last mark as phase `name`.
    pub fn mark(&mut self, name: &str) {
        let now = Instant::now();
        tracing::debug!(
            "timing {} {}: {} us",
            self.what,
            name,
            now.duration_since(self.last).as_micros()
        );
        self.last = now;
    }
}
