//! Liveness of the agent's loops, for the systemd watchdog.
//!
//! Every long-lived loop (decision workers, device workers) owns a [`Heartbeat`]. An idle loop
//! beats at least every [`IDLE_BEAT`]; a loop doing a job declares how long the job may take.
//! [`Heartbeats::stuck`] names every loop that is silent while idle or overdue on a job, and
//! the watchdog task withholds `WATCHDOG=1` while any is, so systemd restarts a wedged agent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often an idle loop beats.
pub const IDLE_BEAT: Duration = Duration::from_millis(500);

/// An idle loop silent for longer than this is considered dead.
const IDLE_SILENCE: Duration = Duration::from_secs(5);

/// The liveness record of one loop.
#[derive(Debug)]
pub struct Heartbeat {
    name: String,
    epoch: Instant,
    last_beat_ms: AtomicU64,
    /// Milliseconds since epoch when the current job started, 0 when idle.
    job_started_ms: AtomicU64,
    job_limit_ms: AtomicU64,
}

impl Heartbeat {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Name of the loop (`decision-worker-0`, `device sim-fp`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records that the loop is alive and idle.
    pub fn beat(&self) {
        self.last_beat_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Records the start of a job that may take up to `limit`.
    pub fn start_job(&self, limit: Duration) {
        self.beat();
        self.job_limit_ms
            .store(limit.as_millis() as u64, Ordering::Relaxed);
        self.job_started_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Records the end of the current job.
    pub fn end_job(&self) {
        self.job_started_ms.store(0, Ordering::Relaxed);
        self.beat();
    }

    /// Why the loop is stuck, if it is.
    pub fn stuck(&self) -> Option<String> {
        let now = self.now_ms();
        let started = self.job_started_ms.load(Ordering::Relaxed);
        if started != 0 {
            let limit = self.job_limit_ms.load(Ordering::Relaxed);
            let busy = now.saturating_sub(started);
            return (busy > limit).then(|| {
                format!(
                    "{} has been on one job for {busy} ms (limit {limit} ms)",
                    self.name
                )
            });
        }
        let silent = now.saturating_sub(self.last_beat_ms.load(Ordering::Relaxed));
        (silent > IDLE_SILENCE.as_millis() as u64)
            .then(|| format!("{} has been silent for {silent} ms", self.name))
    }
}

/// Every registered loop.
#[derive(Debug, Default)]
pub struct Heartbeats {
    loops: Mutex<Vec<Arc<Heartbeat>>>,
}

impl Heartbeats {
    /// Registers a loop; it counts until [`Heartbeats::unregister`].
    pub fn register(&self, name: impl Into<String>) -> Arc<Heartbeat> {
        let hb = Arc::new(Heartbeat {
            name: name.into(),
            epoch: Instant::now(),
            last_beat_ms: AtomicU64::new(1),
            job_started_ms: AtomicU64::new(0),
            job_limit_ms: AtomicU64::new(0),
        });
        self.lock().push(hb.clone());
        hb
    }

    /// Removes a loop that ended on purpose.
    pub fn unregister(&self, hb: &Arc<Heartbeat>) {
        self.lock().retain(|h| !Arc::ptr_eq(h, hb));
    }

    /// Reasons for every stuck loop; empty when all are alive.
    pub fn stuck(&self) -> Vec<String> {
        self.lock().iter().filter_map(|h| h.stuck()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Heartbeat>>> {
        self.loops.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_past_its_limit_is_stuck_and_an_ended_job_is_not() {
        let hbs = Heartbeats::default();
        let hb = hbs.register("worker");
        hb.start_job(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(hbs.stuck().len(), 1);
        hb.end_job();
        assert!(hbs.stuck().is_empty());
        hbs.unregister(&hb);
        assert!(hbs.stuck().is_empty());
    }
}
