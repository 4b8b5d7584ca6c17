//! `hubbub_tasks_alive`: the tasks alive that serve the engine's clients, so
//! that a soak can check that nothing is left behind once its clients are gone.
//!
//! Two kinds are counted. Tasks spawned with `tokio::spawn` (a session's
//! heartbeat, the Socket.IO connect timeout, handlers that wait on the store,
//! the chat's leave notices, the Redis adapter's work) are counted by tokio on
//! the runtime they run on: each actix-server worker runs a runtime of its
//! own, which [`crate::serve`] registers as the worker starts, and the binary
//! may add its main runtime. Tasks spawned on a worker's `LocalSet` (actix's
//! HTTP connections, hubbub's WebSocket connections) are not in tokio's count;
//! the WebSocket connections are added from the engine's own tracker. The
//! gauge is computed when `/metrics` is rendered; nothing is counted on any
//! hot path.

use std::sync::Arc;
use std::thread::ThreadId;

use parking_lot::Mutex;
use prometheus::IntGauge;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use tokio::runtime::Handle;
use tokio_util::task::TaskTracker;

/// The runtimes whose tasks are counted, and the gauge that shows the sum.
#[derive(Clone)]
pub struct RuntimeTasks {
    inner: Arc<Inner>,
}

struct Inner {
    /// One runtime per registering thread (a restarted worker replaces its entry).
    runtimes: Mutex<Vec<(ThreadId, Handle)>>,
    /// The engines' WebSocket connection tasks (spawned on a `LocalSet`).
    connections: Mutex<Vec<TaskTracker>>,
    gauge: IntGauge,
}

impl RuntimeTasks {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        Ok(RuntimeTasks {
            inner: Arc::new(Inner {
                runtimes: Mutex::new(Vec::new()),
                connections: Mutex::new(Vec::new()),
                gauge: IntGauge::new(
                    "hubbub_tasks_alive",
                    "Tasks alive on the runtimes serving the engine (workers and main)",
                )?,
            }),
        })
    }

    /// Counts the tasks of the runtime this thread runs on, if any.
    pub fn watch_current(&self) {
        let Ok(handle) = Handle::try_current() else {
            return;
        };
        let thread = std::thread::current().id();
        let mut runtimes = self.inner.runtimes.lock();
        runtimes.retain(|(t, _)| *t != thread);
        runtimes.push((thread, handle));
    }

    /// Counts the tasks `tracker` tracks as well.
    pub(crate) fn watch_tracker(&self, tracker: TaskTracker) {
        self.inner.connections.lock().push(tracker);
    }

    /// Tasks alive now: on every watched runtime, plus the tracked ones.
    pub fn alive(&self) -> usize {
        let spawned: usize = self
            .inner
            .runtimes
            .lock()
            .iter()
            .map(|(_, h)| h.metrics().num_alive_tasks())
            .sum();
        let tracked: usize = self.inner.connections.lock().iter().map(|t| t.len()).sum();
        spawned + tracked
    }
}

impl Collector for RuntimeTasks {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.inner.gauge.set(self.alive() as i64);
        self.inner.gauge.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn counts_the_tasks_of_watched_runtimes() {
        let tasks = RuntimeTasks::new().unwrap();
        assert_eq!(tasks.alive(), 0);
        tasks.watch_current();
        tasks.watch_current();
        let base = tasks.alive();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = rx.await;
        });
        assert_eq!(tasks.alive(), base + 1);
        let registry = prometheus::Registry::new();
        registry.register(Box::new(tasks.clone())).unwrap();
        let families = registry.gather();
        assert_eq!(families[0].name(), "hubbub_tasks_alive");
        assert_eq!(
            families[0].get_metric()[0].get_gauge().value(),
            (base + 1) as f64
        );
        tx.send(()).unwrap();
        task.await.unwrap();
        assert_eq!(tasks.alive(), base);
        let tracker = TaskTracker::new();
        tasks.watch_tracker(tracker.clone());
        let token = tracker.token();
        assert_eq!(tasks.alive(), base + 1);
        drop(token);
        assert_eq!(tasks.alive(), base);
    }
}
