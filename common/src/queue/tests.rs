//! The broker contract: every case runs against the in-process queue and against the real
//! RabbitMQ (`LAMINA_AMQP_URL`, default `amqp://127.0.0.1:5672/%2f`; `ops/test.sh` starts
//! it), each on queues of its own prefix, so the code above the seam can rely on the same
//! semantics from both.

use std::sync::Arc;
use std::time::Duration;

use super::*;

static PREFIXES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn prefix(kind: &str) -> String {
    let n = PREFIXES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("contract-{kind}-{}-{n}-{}", std::process::id(), crate::time::now_rfc3339().replace([':', '-', '+'], ""))
}

async fn memory() -> Arc<dyn Broker> {
    let settings = AmqpSettings::new(format!("memory://{}", prefix("memory")), prefix("memory"));
    connect(&settings, "contract").await.expect("the in-process queue")
}

async fn rabbit() -> Arc<dyn Broker> {
    let url = std::env::var("LAMINA_AMQP_URL").unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".to_owned());
    let settings = AmqpSettings::new(url, prefix("rabbit"));
    connect(&settings, "contract").await.expect("RabbitMQ at LAMINA_AMQP_URL (ops/services.sh starts it)")
}

async fn next(consumer: &mut Box<dyn Consumer>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), consumer.next()).await.expect("a delivery in time").expect("open").expect("ok")
}

async fn nothing(consumer: &mut Box<dyn Consumer>) -> bool {
    tokio::time::timeout(Duration::from_millis(300), consumer.next()).await.is_err()
}

/// The depth of `queue` once it is `want`, or as it is after five seconds.
async fn depth_reaches(broker: &dyn Broker, queue: &str, want: u64) -> Option<u64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let depth = broker.depth(queue).await.unwrap();
        if depth == Some(want) || std::time::Instant::now() > deadline {
            return depth;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs every case against both brokers.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::memory().await).await
                }
            )*
        }
        mod rabbitmq {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::rabbit().await).await
                }
            )*
        }
    };
}

contract!(
    confirmed_messages_are_delivered_in_order_within_the_prefetch,
    rejected_messages_go_to_both_dead_letter_queues_with_their_reason,
    what_a_dropped_consumer_held_is_redelivered_then_dead_lettered_at_the_limit,
    pipelined_publishes_come_back_confirmed_in_order_and_a_cancelled_consumer_ends,
    a_message_taken_without_a_consumer_is_settled_or_handed_back_and_a_purge_empties_the_queue,
);

async fn confirmed_messages_are_delivered_in_order_within_the_prefetch(broker: Arc<dyn Broker>) {
    let t = broker.topology().clone();
    let broker: &dyn Broker = broker.as_ref();
    broker.declare(&["p"]).await.unwrap();
    for i in 0..3 {
        broker.publish(&t.tasks("p"), &i, 0).await.unwrap();
    }
    assert_eq!(broker.depth(&t.tasks("p")).await.unwrap(), Some(3));
    let mut consumer = broker.consume(&t.tasks("p"), "w", 2).await.unwrap();
    let (a, b) = (next(&mut consumer).await, next(&mut consumer).await);
    assert_eq!((a.body.as_slice(), b.body.as_slice()), (b"0".as_slice(), b"1".as_slice()));
    assert!(nothing(&mut consumer).await, "a third delivery would pass the prefetch of 2");
    a.settle.ack().await.unwrap();
    assert_eq!(next(&mut consumer).await.body, b"2");
    assert!(!b.redelivered);
    assert_eq!(broker.depth("t.nothing").await.unwrap(), None);
}

async fn rejected_messages_go_to_both_dead_letter_queues_with_their_reason(broker: Arc<dyn Broker>) {
    let t = broker.topology().clone();
    let broker: &dyn Broker = broker.as_ref();
    broker.declare(&["p"]).await.unwrap();
    broker.publish(&t.tasks("p"), "bad", 0).await.unwrap();
    let mut consumer = broker.consume(&t.tasks("p"), "w", 4).await.unwrap();
    next(&mut consumer).await.settle.reject().await.unwrap();
    for queue in [t.dead(), t.dead_watch()] {
        let mut dead = broker.consume(&queue, "d", 1).await.unwrap();
        let letter = next(&mut dead).await;
        let death = letter.death.expect("death");
        assert_eq!((death.reason, death.queue.as_str()), (DeathReason::Rejected, t.tasks("p").as_str()));
    }
    assert!(nothing(&mut consumer).await);
}

async fn what_a_dropped_consumer_held_is_redelivered_then_dead_lettered_at_the_limit(broker: Arc<dyn Broker>) {
    let t = broker.topology().clone();
    let broker: &dyn Broker = broker.as_ref();
    broker.declare(&["p"]).await.unwrap();
    broker.publish(&t.tasks("p"), "crashes every worker", 0).await.unwrap();
    broker.publish(&t.tasks("p"), "fine", 0).await.unwrap();
    for round in 0..MAX_DELIVERIES {
        let mut worker = broker.consume(&t.tasks("p"), "w", 1).await.unwrap();
        let d = next(&mut worker).await;
        assert_eq!(d.body, b"\"crashes every worker\"");
        assert_eq!(d.redelivered, round > 0);
        drop(worker); // the worker died holding it
    }
    let mut worker = broker.consume(&t.tasks("p"), "w", 1).await.unwrap();
    let d = next(&mut worker).await;
    assert_eq!(d.body, b"\"fine\"", "the poison message left the task queue");
    d.settle.requeue().await.unwrap();
    assert!(next(&mut worker).await.redelivered, "a requeued message comes back");
    let mut watch = broker.consume(&t.dead_watch(), "c", 1).await.unwrap();
    assert_eq!(next(&mut watch).await.death.unwrap().reason, DeathReason::DeliveryLimit);
}

async fn pipelined_publishes_come_back_confirmed_in_order_and_a_cancelled_consumer_ends(broker: Arc<dyn Broker>) {
    let t = broker.topology().clone();
    let broker: &dyn Broker = broker.as_ref();
    broker.declare(&[]).await.unwrap();
    let mut out = Pipelined::new(broker, t.events(), 0, 2);
    let mut confirmed = Vec::new();
    for i in 0..5 {
        confirmed.extend(out.send(i).await.unwrap());
    }
    confirmed.extend(out.flush().await.unwrap());
    assert_eq!(confirmed, [0, 1, 2, 3, 4]);
    let mut consumer = broker.consume(&t.events(), "c", 1).await.unwrap();
    assert!(consumer.set_prefetch(10).await.unwrap());
    let held = next(&mut consumer).await;
    consumer.cancel().await.unwrap();
    assert!(consumer.next().await.is_none());
    held.settle.ack().await.unwrap();
}

async fn a_message_taken_without_a_consumer_is_settled_or_handed_back_and_a_purge_empties_the_queue(broker: Arc<dyn Broker>) {
    let t = broker.topology().clone();
    let broker: &dyn Broker = broker.as_ref();
    broker.declare(&["p"]).await.unwrap();
    assert!(broker.get(&t.tasks("p")).await.unwrap().is_none(), "an empty queue gives nothing");
    for i in 0..3 {
        broker.publish(&t.tasks("p"), &i, 0).await.unwrap();
    }
    let first = broker.get(&t.tasks("p")).await.unwrap().expect("a message");
    assert_eq!(first.body, b"0");
    first.settle.ack().await.unwrap();
    let second = broker.get(&t.tasks("p")).await.unwrap().expect("a message");
    assert_eq!(second.body, b"1");
    second.settle.requeue().await.unwrap();
    let again = broker.get(&t.tasks("p")).await.unwrap().expect("the requeued message");
    assert_eq!((again.body.as_slice(), again.redelivered), (b"1".as_slice(), true));
    again.settle.requeue().await.unwrap();
    // Settling is not confirmed (in AMQP neither): the count catches up.
    assert_eq!(depth_reaches(broker, &t.tasks("p"), 2).await, Some(2));
    assert_eq!(broker.purge(&t.tasks("p")).await.unwrap(), 2);
    assert_eq!(broker.depth(&t.tasks("p")).await.unwrap(), Some(0));
}

#[test]
fn a_broker_url_of_another_scheme_is_refused_by_type_without_showing_the_url() {
    assert!(check_url("amqps://user:secret@broker:5671/%2f").is_ok());
    assert!(check_url("memory://run").is_ok());
    match check_url("http://user:secret@broker") {
        Err(e @ QueueError::Url { .. }) => assert!(!e.to_string().contains("secret") && e.to_string().contains("\"http\""), "{e}"),
        other => panic!("{other:?}"),
    }
}
