//! The in-process queue: what `lamina run` runs the job runner and the worker session on.
//! It keeps RabbitMQ's semantics where the code above relies on them: a publish is
//! confirmed once the message is queued; a consumer holds at most `prefetch` unsettled
//! deliveries; an acked message is gone, a rejected one goes to the dead letters, and what
//! a consumer drops unsettled is delivered again, up to [`DELIVERY_LIMIT`] more times, then
//! dead-lettered (`delivery_limit`), like a quorum queue with `x-delivery-limit`.
//! Nothing is persisted: the process is the whole fleet, and the job's records are what
//! survives it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::{Broker, Confirm, Consumer, Death, DeathReason, Delivery, QueueError, Settle, Topology, DELIVERY_LIMIT};

/// An in-process broker; cloning shares the queues.
#[derive(Clone)]
pub struct MemoryBroker {
    topology: Topology,
    inner: Arc<Inner>,
}

struct Inner {
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    next_consumer: AtomicU64,
}

struct Queue {
    name: String,
    /// Messages that die here go to the dead-letter queues (jobs and task queues).
    dead_letters: Mutex<Option<Vec<String>>>,
    /// At most this many ready messages; the oldest are dropped past it.
    max_length: Mutex<Option<u32>>,
    state: Mutex<QueueState>,
    changed: Notify,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<Message>,
    /// Delivered and not settled: tag -> (consumer, message).
    unacked: HashMap<u64, (u64, Message)>,
    next_tag: u64,
}

#[derive(Clone)]
struct Message {
    body: Vec<u8>,
    /// Times it went back to the queue unsettled.
    returns: u32,
    death: Option<Death>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding this lock leaves plain data behind: keep using it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn dead_letter_queues(&self) -> Option<Vec<String>> {
        self.dead_letters.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The in-process brokers of this process by name (`memory://NAME`): one per name, shared.
static NAMED: Mutex<Option<HashMap<String, MemoryBroker>>> = Mutex::new(None);

/// The in-process broker called `name` (made on first use), with `topology`'s names.
pub(super) fn named(name: &str, topology: Topology) -> MemoryBroker {
    let mut named = NAMED.lock().unwrap_or_else(|p| p.into_inner());
    let broker = named.get_or_insert_with(HashMap::new).entry(name.to_owned()).or_insert_with(|| MemoryBroker::new(topology.clone()));
    MemoryBroker { topology, inner: broker.inner.clone() }
}

impl MemoryBroker {
    pub fn new(topology: Topology) -> MemoryBroker {
        MemoryBroker { topology, inner: Arc::new(Inner { queues: Mutex::default(), next_consumer: AtomicU64::new(1) }) }
    }

    fn queue(&self, name: &str) -> Arc<Queue> {
        self.inner.queue(name, None)
    }

    fn existing(&self, name: &str) -> Option<Arc<Queue>> {
        self.inner.queues.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }
}

impl Inner {
    fn queue(&self, name: &str, dead_letters: Option<Vec<String>>) -> Arc<Queue> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let queue = queues.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(Queue {
                name: name.to_owned(),
                dead_letters: Mutex::default(),
                max_length: Mutex::default(),
                state: Mutex::default(),
                changed: Notify::new(),
            })
        });
        if dead_letters.is_some() {
            // Declared with dead-lettering (perhaps after a publish or a consumer made it).
            *queue.dead_letters.lock().unwrap_or_else(|p| p.into_inner()) = dead_letters;
        }
        queue.clone()
    }

    fn push(&self, name: &str, message: Message) {
        let queue = self.queue(name, None);
        let max = *queue.max_length.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut state = queue.lock();
            state.ready.push_back(message);
            if let Some(max) = max {
                while state.ready.len() > max as usize {
                    state.ready.pop_front();
                }
            }
        }
        queue.changed.notify_waiters();
    }

    /// Sends a message that died in `queue` to its dead-letter queues, if it has them.
    fn dead_letter(&self, queue: &Queue, mut message: Message, reason: DeathReason) {
        let Some(dead_letter_queues) = queue.dead_letter_queues() else { return };
        message.death = Some(Death { reason, queue: queue.name.clone(), count: 1 });
        message.returns = 0;
        for dead in dead_letter_queues {
            self.push(&dead, message.clone());
        }
    }

    /// Puts an unsettled message back at the head of its queue, or dead-letters it once it
    /// has come back more than [`DELIVERY_LIMIT`] times (as a quorum queue does).
    fn give_back(&self, queue: &Queue, mut message: Message) {
        message.returns += 1;
        if message.returns > DELIVERY_LIMIT && queue.dead_letter_queues().is_some() {
            self.dead_letter(queue, message, DeathReason::DeliveryLimit);
        } else {
            queue.lock().ready.push_front(message);
        }
        queue.changed.notify_waiters();
    }
}

#[async_trait::async_trait]
impl Broker for MemoryBroker {
    fn topology(&self) -> &Topology {
        &self.topology
    }

    async fn declare(&self, pools: &[&str]) -> Result<(), QueueError> {
        let queues = self.topology.queues(pools);
        let dead_letter_queues: Vec<String> = queues.iter().filter(|q| q.dead_letter_queue).map(|q| q.name.clone()).collect();
        for decl in &queues {
            let queue = self.inner.queue(&decl.name, decl.dead_letters.then(|| dead_letter_queues.clone()));
            *queue.max_length.lock().unwrap_or_else(|p| p.into_inner()) = decl.max_length;
        }
        Ok(())
    }

    async fn send(&self, queue: &str, body: Vec<u8>, _priority: u8) -> Result<Confirm, QueueError> {
        self.inner.push(queue, Message { body, returns: 0, death: None });
        Ok(Box::pin(async { Ok(()) }))
    }

    async fn consume(&self, queue: &str, _tag: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        let id = self.inner.next_consumer.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(MemoryConsumer {
            inner: self.inner.clone(),
            queue: self.queue(queue),
            id,
            prefetch: usize::from(prefetch.max(1)),
            held: Arc::new(AtomicUsize::new(0)),
            cancelled: false,
        }))
    }

    async fn depth(&self, queue: &str) -> Result<Option<u64>, QueueError> {
        let queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
        Ok(queues.get(queue).map(|q| q.lock().ready.len() as u64))
    }

    async fn get(&self, queue: &str) -> Result<Option<Delivery>, QueueError> {
        let Some(queue) = self.existing(queue) else { return Ok(None) };
        let mut state = queue.lock();
        let Some(message) = state.ready.pop_front() else { return Ok(None) };
        state.next_tag += 1;
        let tag = state.next_tag;
        // Consumer 0: no consumer; what it holds goes back when the delivery is dropped.
        state.unacked.insert(tag, (0, message.clone()));
        drop(state);
        let settle = MemorySettle { inner: self.inner.clone(), queue: queue.clone(), tag, held: Arc::new(AtomicUsize::new(1)) };
        Ok(Some(Delivery { body: message.body, redelivered: message.returns > 0, death: message.death, settle: Box::new(Got(settle)) }))
    }

    async fn purge(&self, queue: &str) -> Result<u64, QueueError> {
        let Some(queue) = self.existing(queue) else { return Ok(0) };
        let purged = std::mem::take(&mut queue.lock().ready).len() as u64;
        Ok(purged)
    }

    async fn close(&self) {}
}

/// A message taken with [`Broker::get`]: settled like a delivery; dropped unsettled, it
/// goes back to its queue (as when RabbitMQ's channel closes).
struct Got(MemorySettle);

impl Drop for Got {
    fn drop(&mut self) {
        if let Some(message) = self.0.take() {
            self.0.inner.give_back(&self.0.queue, message);
        }
    }
}

#[async_trait::async_trait]
impl Settle for Got {
    async fn ack(&self) -> Result<(), QueueError> {
        self.0.ack().await
    }

    async fn reject(&self) -> Result<(), QueueError> {
        self.0.reject().await
    }

    async fn requeue(&self) -> Result<(), QueueError> {
        self.0.requeue().await
    }
}

struct MemoryConsumer {
    inner: Arc<Inner>,
    queue: Arc<Queue>,
    id: u64,
    prefetch: usize,
    held: Arc<AtomicUsize>,
    cancelled: bool,
}

#[async_trait::async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        loop {
            if self.cancelled {
                return None;
            }
            let changed = self.queue.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.held.load(Ordering::Acquire) < self.prefetch {
                let mut state = self.queue.lock();
                if let Some(message) = state.ready.pop_front() {
                    state.next_tag += 1;
                    let tag = state.next_tag;
                    state.unacked.insert(tag, (self.id, message.clone()));
                    drop(state);
                    self.held.fetch_add(1, Ordering::AcqRel);
                    let settle = MemorySettle { inner: self.inner.clone(), queue: self.queue.clone(), tag, held: self.held.clone() };
                    return Some(Ok(Delivery {
                        body: message.body,
                        redelivered: message.returns > 0,
                        death: message.death,
                        settle: Box::new(settle),
                    }));
                }
            }
            changed.await;
        }
    }

    async fn set_prefetch(&mut self, prefetch: u16) -> Result<bool, QueueError> {
        self.prefetch = usize::from(prefetch.max(1));
        self.queue.changed.notify_waiters();
        Ok(true)
    }

    async fn cancel(&mut self) -> Result<(), QueueError> {
        self.cancelled = true;
        Ok(())
    }
}

impl Drop for MemoryConsumer {
    /// What this consumer held unsettled goes back to the queue, as when a worker's
    /// connection to RabbitMQ closes.
    fn drop(&mut self) {
        let orphans: Vec<Message> = {
            let mut state = self.queue.lock();
            let tags: Vec<u64> = state.unacked.iter().filter(|(_, (c, _))| *c == self.id).map(|(t, _)| *t).collect();
            let mut orphans: Vec<(u64, Message)> =
                tags.into_iter().filter_map(|t| state.unacked.remove(&t).map(|(_, m)| (t, m))).collect();
            // Oldest delivery first at the head of the queue, as they were.
            orphans.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
            orphans.into_iter().map(|(_, m)| m).collect()
        };
        for message in orphans {
            self.inner.give_back(&self.queue, message);
        }
    }
}

struct MemorySettle {
    inner: Arc<Inner>,
    queue: Arc<Queue>,
    tag: u64,
    held: Arc<AtomicUsize>,
}

impl MemorySettle {
    /// The delivered message, if still unsettled (a dropped consumer gave it back already).
    fn take(&self) -> Option<Message> {
        let message = self.queue.lock().unacked.remove(&self.tag).map(|(_, m)| m);
        if message.is_some() {
            self.held.fetch_sub(1, Ordering::AcqRel);
        }
        message
    }
}

#[async_trait::async_trait]
impl Settle for MemorySettle {
    async fn ack(&self) -> Result<(), QueueError> {
        self.take();
        self.queue.changed.notify_waiters();
        Ok(())
    }

    async fn reject(&self) -> Result<(), QueueError> {
        if let Some(message) = self.take() {
            self.inner.dead_letter(&self.queue, message, DeathReason::Rejected);
        }
        self.queue.changed.notify_waiters();
        Ok(())
    }

    async fn requeue(&self) -> Result<(), QueueError> {
        if let Some(message) = self.take() {
            self.inner.give_back(&self.queue, message);
        }
        Ok(())
    }
}
