//! `lamina dlq` against the real broker: dead letters made by RabbitMQ itself (messages
//! rejected from a task queue) are listed with their job, key and reason and left in place,
//! replayed by job to the queue they died in, and purged only after confirmation.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lamina_common::amqp::{self, AmqpSettings};
use lamina_common::messages::{Task, TASK_SCHEMA};
use lamina_common::params::DecomposeParams;
use lamina_tests::*;
use lapin::options::{BasicGetOptions, BasicRejectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};

fn dlq(prefix: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(binary("lamina"))
        .arg("dlq")
        .args(args)
        .env("LAMINA_AMQP_PREFIX", prefix)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

async fn depth(channel: &Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(queue, passive, FieldTable::default()).await.unwrap().message_count()
}

async fn wait_depth(channel: &Channel, queue: &str, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while depth(channel, queue).await != n {
        assert!(Instant::now() < deadline, "{queue} never held {n} messages (holds {})", depth(channel, queue).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn task(job: &str, key: &str) -> Task {
    Task {
        schema: TASK_SCHEMA.to_owned(),
        job_id: job.to_owned(),
        input: "s3://in/x".to_owned(),
        output: "s3://out/x".to_owned(),
        key: key.to_owned(),
        size: 10,
        etag: None,
        params: DecomposeParams::default(),
        render: Default::default(),
        step: Default::default(),
        model: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_listed_requeued_by_job_and_purged_only_after_confirmation() {
    let prefix = format!("lamina-dlq-{}", std::process::id());
    let _queues = Queues(prefix.clone());
    let url = std::env::var("LAMINA_AMQP_URL").unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".into());
    let settings = AmqpSettings::new(url, prefix.clone());
    let connection = amqp::connect(&settings, "dlq-test").await.unwrap();
    let channel = amqp::confirming(&connection).await.unwrap();
    amqp::declare(&channel, &settings, &["default"]).await.unwrap();
    let tasks = settings.tasks("default");
    amqp::publish(&channel, &tasks, &task("job-a", "a/1.png"), 0).await.unwrap();
    amqp::publish(&channel, &tasks, &task("job-b", "b/2.png"), 0).await.unwrap();
    amqp::publish_raw(&channel, &tasks, b"{not json", BasicProperties::default()).await.unwrap();
    // RabbitMQ dead-letters what a consumer rejects without requeue.
    for _ in 0..3 {
        let message = channel.basic_get(tasks.as_str(), BasicGetOptions { no_ack: false }).await.unwrap().expect("a task");
        message.delivery.acker.reject(BasicRejectOptions { requeue: false }).await.unwrap();
    }
    wait_depth(&channel, &settings.dead(), 3).await;

    let list = dlq(&prefix, &["list"], "");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{}", explain(&list));
    assert!(text.contains("3 dead letter(s)"), "{text}");
    assert!(text.contains("job job-a  key a/1.png  rejected as invalid"), "{text}");
    assert!(text.contains("job job-b  key b/2.png"), "{text}");
    assert!(text.contains("not a Lamina message, 9 bytes") && text.contains(&format!("died in {tasks}")), "{text}");
    wait_depth(&channel, &settings.dead(), 3).await; // listing removes nothing

    let requeue = dlq(&prefix, &["requeue", "--job", "job-a"], "");
    assert!(String::from_utf8_lossy(&requeue.stdout).contains("1 requeued, 2 left"), "{}", explain(&requeue));
    wait_depth(&channel, &tasks, 1).await;
    wait_depth(&channel, &settings.dead(), 2).await;
    let back = channel.basic_get(tasks.as_str(), BasicGetOptions { no_ack: true }).await.unwrap().expect("requeued task");
    let replayed: Task = serde_json::from_slice(&back.delivery.data).unwrap();
    assert_eq!(replayed, task("job-a", "a/1.png"));
    assert!(amqp::death(&back.delivery.properties).is_none(), "a replayed task starts with a fresh delivery count");

    let refused = dlq(&prefix, &["purge"], "no\n");
    assert_eq!(refused.status.code(), Some(1), "{}", explain(&refused));
    assert!(String::from_utf8_lossy(&refused.stdout).contains("nothing deleted"));
    wait_depth(&channel, &settings.dead(), 2).await;
    let purged = dlq(&prefix, &["purge"], "purge\n");
    assert!(String::from_utf8_lossy(&purged.stdout).contains("deleted 2 dead letter(s)"), "{}", explain(&purged));
    wait_depth(&channel, &settings.dead(), 0).await;
    let _ = connection.close(200, "done").await;
}
