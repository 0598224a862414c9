//! Sharing a pool's task queue between concurrent jobs.
//!
//! RabbitMQ's quorum queues (3.10) are FIFO and have no message priorities, so the order in
//! which jobs get served is decided here, before publishing: each pool has a window of tasks
//! that may be queued or in flight at once, and a job publishes a task only when it holds a
//! slot of that window. A slot comes back when the task's result arrives. Free slots go to
//! the waiting job of highest priority; among jobs of equal priority, to the one that has
//! waited longest, so concurrent jobs interleave task by task. Because the queue never holds
//! more than the window, a job submitted behind a million-image job starts within one window
//! of tasks, and a coordinator that dies leaves at most one window of tasks to be redone.
//!
//! The window is `max(base, 2 x the prefetch of the pool's live workers)`: enough to keep
//! every worker's prefetch full with the next tasks already queued, and no more.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use tokio::sync::oneshot;

#[derive(Debug, Default)]
struct Pool {
    in_use: usize,
    fleet_prefetch: usize,
    /// Waiting jobs by (priority, arrival): the first entry is served next.
    waiting: BTreeMap<(Reverse<u8>, u64), oneshot::Sender<()>>,
}

/// The windows of every pool.
#[derive(Debug)]
pub struct Scheduler {
    base: usize,
    inner: Mutex<(HashMap<String, Pool>, u64)>,
}

/// A pool's window right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowView {
    pub pool: String,
    pub in_use: usize,
    pub capacity: usize,
    pub waiting: usize,
}

impl Scheduler {
    pub fn new(base: usize) -> Scheduler {
        Scheduler { base: base.max(1), inner: Mutex::new((HashMap::new(), 0)) }
    }

    fn capacity(&self, pool: &Pool) -> usize {
        self.base.max(2 * pool.fleet_prefetch)
    }

    /// Waits for a slot of `pool`'s window for a job of `priority`.
    pub async fn acquire(&self, pool: &str, priority: u8) {
        let rx = {
            let Ok(mut guard) = self.inner.lock() else { return };
            let (pools, seq) = &mut *guard;
            *seq += 1;
            let ticket = *seq;
            let entry = pools.entry(pool.to_owned()).or_default();
            if entry.waiting.is_empty() && entry.in_use < self.capacity(entry) {
                entry.in_use += 1;
                return;
            }
            let (tx, rx) = oneshot::channel();
            entry.waiting.insert((Reverse(priority), ticket), tx);
            rx
        };
        // A sender dropped without a grant means the scheduler is gone: go ahead.
        let _ = rx.await;
    }

    /// Gives `n` slots of `pool` back and hands them to waiting jobs.
    pub fn release(&self, pool: &str, n: usize) {
        let Ok(mut guard) = self.inner.lock() else { return };
        let Some(entry) = guard.0.get_mut(pool) else { return };
        entry.in_use = entry.in_use.saturating_sub(n);
        self.grant(entry);
    }

    /// Records the total prefetch of the pool's live workers; a bigger fleet gets a bigger
    /// window.
    pub fn set_fleet_prefetch(&self, pool: &str, prefetch: usize) {
        let Ok(mut guard) = self.inner.lock() else { return };
        let entry = guard.0.entry(pool.to_owned()).or_default();
        entry.fleet_prefetch = prefetch;
        self.grant(entry);
    }

    fn grant(&self, entry: &mut Pool) {
        while entry.in_use < self.capacity(entry) {
            let Some((_, tx)) = entry.waiting.pop_first() else { break };
            // A job that stopped waiting (cancelled) has dropped its receiver.
            if tx.send(()).is_ok() {
                entry.in_use += 1;
            }
        }
    }

    pub fn windows(&self) -> Vec<WindowView> {
        let Ok(guard) = self.inner.lock() else { return Vec::new() };
        let mut out: Vec<WindowView> = guard
            .0
            .iter()
            .map(|(pool, p)| WindowView { pool: pool.clone(), in_use: p.in_use, capacity: self.capacity(p), waiting: p.waiting.len() })
            .collect();
        out.sort_by(|a, b| a.pool.cmp(&b.pool));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Runs `jobs` (name, priority, tasks) against a window of `window`, completing one task
    /// at a time in publishing order (a FIFO queue with one worker), and returns the order in
    /// which tasks were published.
    async fn served(window: usize, jobs: &[(&'static str, u8, usize)]) -> Vec<&'static str> {
        let scheduler = Arc::new(Scheduler::new(window));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // Fill the window first with a job that is already running.
        for _ in 0..window {
            scheduler.acquire("p", 0).await;
            tx.send("warm").unwrap();
        }
        let mut handles = Vec::new();
        for &(name, priority, tasks) in jobs {
            let (scheduler, tx) = (scheduler.clone(), tx.clone());
            handles.push(tokio::spawn(async move {
                for _ in 0..tasks {
                    scheduler.acquire("p", priority).await;
                    tx.send(name).unwrap();
                }
            }));
            // Let each job start waiting before the next arrives.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(tx);
        let mut order = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
                Ok(Some(name)) => {
                    order.push(name);
                    // The worker takes a while; meanwhile the job that published asks for its
                    // next slot. Then the oldest task finishes and its slot comes back.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    scheduler.release("p", 1);
                }
                _ => break,
            }
        }
        order.into_iter().filter(|n| *n != "warm").collect()
    }

    #[tokio::test]
    async fn jobs_of_equal_priority_interleave_task_by_task() {
        let order = served(2, &[("a", 0, 4), ("b", 0, 4)]).await;
        assert_eq!(order, ["a", "b", "a", "b", "a", "b", "a", "b"]);
    }

    #[tokio::test]
    async fn a_higher_priority_job_is_served_first_even_when_it_arrives_later() {
        let order = served(2, &[("low", 0, 3), ("high", 5, 3)]).await;
        // Both wait for the busy window; every slot that frees goes to "high" until it is done.
        assert_eq!(order, ["high", "high", "high", "low", "low", "low"]);
    }

    #[tokio::test]
    async fn the_window_grows_with_the_fleet_prefetch() {
        let scheduler = Scheduler::new(4);
        scheduler.set_fleet_prefetch("p", 10);
        for _ in 0..20 {
            tokio::time::timeout(Duration::from_millis(100), scheduler.acquire("p", 0)).await.expect("slot");
        }
        assert!(tokio::time::timeout(Duration::from_millis(50), scheduler.acquire("p", 0)).await.is_err());
        assert_eq!(scheduler.windows()[0], WindowView { pool: "p".into(), in_use: 20, capacity: 20, waiting: 1 });
    }
}
