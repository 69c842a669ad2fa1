//! The decision workers: a fixed pool of threads that run engine work (quality, templates,
//! matching) off the async runtime, with a bounded queue and per-job time limits.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::heartbeat::{Heartbeats, IDLE_BEAT};

/// Why work could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkError {
    /// More requests are waiting than `performance.queue_size` allows.
    #[error("the agent is busy: {queued} requests are already waiting (performance.queue_size); try again shortly")]
    QueueFull {
        /// Queue capacity.
        queued: usize,
    },
    /// The job waited too long for a worker.
    #[error("no decision worker became free within {0:?} (performance.worker_timeout)")]
    QueueTimeout(Duration),
    /// The job ran past its limit.
    #[error("processing took longer than {0:?} (processing_timeout)")]
    Timeout(Duration),
    /// The job panicked; the worker survives.
    #[error("internal error in the engine: {0}")]
    Panicked(String),
    /// The agent is shutting down.
    #[error("the agent is shutting down")]
    ShuttingDown,
}

type Job = Box<dyn FnOnce() + Send>;

struct Queued {
    enqueued: Instant,
    limit: Duration,
    job: Job,
    abandon: Box<dyn FnOnce() + Send>,
}

/// The worker pool.
pub struct WorkerPool {
    tx: Mutex<Option<SyncSender<Queued>>>,
    capacity: usize,
    queue_timeout: Duration,
    closed: Arc<AtomicBool>,
    depth: Arc<AtomicUsize>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl WorkerPool {
    /// Starts `workers` threads (0: one per core) sharing a queue of `capacity` jobs.
    pub fn start(
        workers: usize,
        capacity: usize,
        queue_timeout: Duration,
        heartbeats: &Arc<Heartbeats>,
    ) -> Self {
        let workers = if workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            workers
        };
        let (tx, rx) = mpsc::sync_channel::<Queued>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        let closed = Arc::new(AtomicBool::new(false));
        let depth = Arc::new(AtomicUsize::new(0));
        let threads = (0..workers)
            .map(|i| {
                let rx = rx.clone();
                let depth = depth.clone();
                let hb = heartbeats.register(format!("decision-worker-{i}"));
                let heartbeats = heartbeats.clone();
                std::thread::Builder::new()
                    .name(format!("decision-{i}"))
                    .spawn(move || {
                        worker_loop(&rx, &hb, &depth, queue_timeout);
                        heartbeats.unregister(&hb);
                    })
                    .expect("spawning a worker thread")
            })
            .collect();
        Self {
            tx: Mutex::new(Some(tx)),
            capacity,
            queue_timeout,
            closed,
            depth,
            threads: Mutex::new(threads),
        }
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.depth.load(Ordering::SeqCst)
    }

    /// Runs `f` on a worker; fails when the queue is full, the wait or the work is too long.
    pub async fn run<T: Send + 'static>(
        &self,
        limit: Duration,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WorkError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(WorkError::ShuttingDown);
        }
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        let reply_tx = Arc::new(Mutex::new(Some(reply_tx)));
        let abandon_tx = reply_tx.clone();
        let queue_timeout = self.queue_timeout;
        let queued = Queued {
            enqueued: Instant::now(),
            limit,
            job: Box::new(move || {
                let result = std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
                    p.downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into())
                });
                if let Some(tx) = reply_tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = tx.send(result.map_err(WorkError::Panicked));
                }
            }),
            abandon: Box::new(move || {
                if let Some(tx) = abandon_tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = tx.send(Err(WorkError::QueueTimeout(queue_timeout)));
                }
            }),
        };
        {
            let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            let Some(tx) = guard.as_ref() else {
                return Err(WorkError::ShuttingDown);
            };
            self.depth.fetch_add(1, Ordering::SeqCst);
            let sent = tx.try_send(queued);
            if sent.is_err() {
                self.depth.fetch_sub(1, Ordering::SeqCst);
            }
            match sent {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    return Err(WorkError::QueueFull {
                        queued: self.capacity,
                    })
                }
                Err(TrySendError::Disconnected(_)) => return Err(WorkError::ShuttingDown),
            }
        }
        match tokio::time::timeout(queue_timeout + limit, reply_rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(WorkError::ShuttingDown),
            Err(_) => Err(WorkError::Timeout(limit)),
        }
    }

    /// Stops taking work; running jobs finish, queued ones are dropped.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Waits up to `deadline` for the workers to finish their current jobs.
    pub fn join(&self, deadline: Duration) -> bool {
        let start = Instant::now();
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        while threads.iter().any(|t| !t.is_finished()) {
            if start.elapsed() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        threads.drain(..).for_each(|t| drop(t.join()));
        true
    }
}

fn worker_loop(
    rx: &Mutex<Receiver<Queued>>,
    hb: &crate::heartbeat::Heartbeat,
    depth: &AtomicUsize,
    queue_timeout: Duration,
) {
    loop {
        hb.beat();
        let next = rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recv_timeout(IDLE_BEAT);
        if next.is_ok() {
            depth.fetch_sub(1, Ordering::SeqCst);
        }
        match next {
            Ok(q) if q.enqueued.elapsed() > queue_timeout => (q.abandon)(),
            Ok(q) => {
                // A job may overrun by a little while its caller gives up; the watchdog only
                // counts the worker stuck well past the limit.
                hb.start_job(q.limit * 2 + Duration::from_secs(2));
                (q.job)();
                hb.end_job();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(workers: usize, capacity: usize) -> WorkerPool {
        WorkerPool::start(
            workers,
            capacity,
            Duration::from_secs(5),
            &Arc::new(Heartbeats::default()),
        )
    }

    #[tokio::test]
    async fn work_runs_and_returns_its_value() {
        let p = pool(2, 4);
        assert_eq!(p.run(Duration::from_secs(1), || 6 * 7).await, Ok(42));
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_and_the_worker_survives() {
        let p = pool(1, 4);
        let err = p
            .run(Duration::from_secs(1), || -> u8 { panic!("bad input") })
            .await
            .unwrap_err();
        assert_eq!(err, WorkError::Panicked("bad input".into()));
        assert_eq!(p.run(Duration::from_secs(1), || 1).await, Ok(1));
    }

    // Multi-threaded: the test blocks its own thread on `started_rx` while the blocker runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_more_work() {
        let p = Arc::new(pool(1, 1));
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let blocker = tokio::spawn({
            let p = p.clone();
            async move {
                p.run(Duration::from_secs(10), move || {
                    started_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                })
                .await
            }
        });
        started_rx.recv().unwrap();
        let queued = tokio::spawn({
            let p = p.clone();
            async move { p.run(Duration::from_secs(10), || 1).await }
        });
        while p.queued() == 0 {
            tokio::task::yield_now().await;
        }
        let refused = p.run(Duration::from_secs(1), || 2).await;
        assert_eq!(refused, Err(WorkError::QueueFull { queued: 1 }));
        release_tx.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        assert_eq!(queued.await.unwrap(), Ok(1));
    }
}
