//! The worker's session over the in-process queue, without RabbitMQ: it decomposes the
//! tasks it is given (the capacity-test model: real layers, no weights), publishes each
//! result only once the image's manifest is written and acknowledges the task after that,
//! reports a broken image and a task for another model as failed (never running the latter),
//! dead-letters a message that is not a task, and stops cleanly with nothing left unsettled.

use std::sync::Arc;
use std::time::Duration;

use image::{DynamicImage, Rgb, RgbImage};
use lamina_common::messages::Status;
use lamina_common::queue::{Broker, MemoryBroker, Topology};
use lamina_worker::runtime;
use lamina_worker::pipeline::WorkerConfig;
use lamina_worker::service::serve;
use tokio_util::sync::CancellationToken;

mod common;

const MODEL: &str = "capacity-test:1";

#[tokio::test(flavor = "multi_thread")]
async fn the_session_reports_after_the_manifest_acks_after_the_report_and_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for (i, key) in ["a.png", "b.png", "other-model.png"].iter().enumerate() {
        let img = RgbImage::from_fn(24, 16, |x, y| Rgb([(x * 9) as u8, (y * 13) as u8, (i * 80) as u8]));
        DynamicImage::ImageRgb8(img).save(input.join(key)).unwrap();
    }
    std::fs::write(input.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();

    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new(Topology::new("s")));
    let topology = broker.topology().clone();
    broker.declare(&["default"]).await.unwrap();
    for t in [common::task(dir.path(), "a.png", Some(MODEL)), common::task(dir.path(), "b.png", None), common::task(dir.path(), "broken.png", Some(MODEL))] {
        broker.publish(&topology.tasks("default"), &t, 0).await.unwrap();
    }
    broker.publish(&topology.tasks("default"), &common::task(dir.path(), "other-model.png", Some("fscs")), 0).await.unwrap();
    broker.publish(&topology.tasks("default"), "not a task", 0).await.unwrap();

    let mut config = common::service_config(MODEL, WorkerConfig { max_pixels: 1_000_000, batch_size: 2, device: tch::Device::Cpu, memory_budget: 2 << 30 }, "session-test");
    config.prefetch = 8;
    let model = runtime::shared(runtime::load(MODEL, tch::Device::Cpu).unwrap());
    let stop = CancellationToken::new();
    let session = tokio::spawn({
        let (broker, stop) = (broker.clone(), stop.clone());
        async move { serve(&config, runtime::ModelSlot::loaded(model), broker, stop).await }
    });

    let dir_path = dir.path().to_owned();
    let mut results = common::results(&broker, 4, |result| {
        if result.status == Status::Done {
            // Reported only once durable: the manifest is there when the result arrives.
            assert!(dir_path.join("out").join(&result.key).join("manifest.json").exists(), "{result:?}");
            assert_eq!(result.layers, Some(2));
        }
    })
    .await;
    results.sort_by(|a, b| a.key.cmp(&b.key));
    let status: Vec<(&str, Status)> = results.iter().map(|r| (r.key.as_str(), r.status)).collect();
    assert_eq!(status, [("a.png", Status::Done), ("b.png", Status::Done), ("broken.png", Status::Failed), ("other-model.png", Status::Failed)]);
    assert!(results[3].reason.as_deref().unwrap().contains("asks for model fscs"), "{:?}", results[3]);
    assert!(!dir.path().join("out/other-model.png").exists(), "a task for another model is never run");

    let mut dead = broker.consume(&topology.dead(), "ops", 1).await.unwrap();
    let letter = tokio::time::timeout(Duration::from_secs(5), dead.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(letter.body, b"\"not a task\"");
    assert_eq!(letter.death.unwrap().reason, lamina_common::queue::DeathReason::Rejected);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), session).await.expect("the session stops").unwrap().unwrap();
    // Every task was acknowledged: nothing went back to the queue when the session ended.
    assert_eq!(broker.depth(&topology.tasks("default")).await.unwrap(), Some(0));
}
