//! The in-process queue keeps the semantics the job runner and the worker session rely on.

use std::time::Duration;

use super::*;

fn broker() -> (MemoryBroker, Topology) {
    let topology = Topology::new("t");
    (MemoryBroker::new(topology.clone()), topology)
}

async fn next(consumer: &mut Box<dyn Consumer>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), consumer.next()).await.expect("a delivery in time").expect("open").expect("ok")
}

async fn nothing(consumer: &mut Box<dyn Consumer>) -> bool {
    tokio::time::timeout(Duration::from_millis(50), consumer.next()).await.is_err()
}

#[tokio::test]
async fn confirmed_messages_are_delivered_in_order_within_the_prefetch() {
    let (broker, t) = broker();
    let broker: &dyn Broker = &broker;
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

#[tokio::test]
async fn rejected_messages_go_to_both_dead_letter_queues_with_their_reason() {
    let (broker, t) = broker();
    let broker: &dyn Broker = &broker;
    broker.declare(&["p"]).await.unwrap();
    broker.publish(&t.tasks("p"), "bad", 0).await.unwrap();
    let mut consumer = broker.consume(&t.tasks("p"), "w", 4).await.unwrap();
    next(&mut consumer).await.settle.reject().await.unwrap();
    for queue in [t.dead(), t.dead_watch()] {
        let mut dead = broker.consume(&queue, "d", 1).await.unwrap();
        let letter = next(&mut dead).await;
        let death = letter.death.expect("death");
        assert_eq!((death.reason.as_str(), death.queue.as_str()), ("rejected", t.tasks("p").as_str()));
    }
    assert!(nothing(&mut consumer).await);
}

#[tokio::test]
async fn what_a_dropped_consumer_held_is_redelivered_then_dead_lettered_at_the_limit() {
    let (broker, t) = broker();
    let broker: &dyn Broker = &broker;
    broker.declare(&["p"]).await.unwrap();
    broker.publish(&t.tasks("p"), "crashes every worker", 0).await.unwrap();
    broker.publish(&t.tasks("p"), "fine", 0).await.unwrap();
    for round in 0..DELIVERY_LIMIT {
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
    assert_eq!(next(&mut watch).await.death.unwrap().reason, "delivery_limit");
}

#[tokio::test]
async fn pipelined_publishes_come_back_confirmed_in_order_and_a_cancelled_consumer_ends() {
    let (broker, t) = broker();
    let mut out = Pipelined::new(&broker, t.events(), 0, 2);
    let mut confirmed = Vec::new();
    for i in 0..5 {
        confirmed.extend(out.send(i).await.unwrap());
    }
    confirmed.extend(out.flush().await.unwrap());
    assert_eq!(confirmed, [0, 1, 2, 3, 4]);
    let mut consumer = (&broker as &dyn Broker).consume(&t.events(), "c", 1).await.unwrap();
    assert!(consumer.set_prefetch(10).await.unwrap());
    let held = next(&mut consumer).await;
    consumer.cancel().await.unwrap();
    assert!(consumer.next().await.is_none());
    held.settle.ack().await.unwrap();
}
