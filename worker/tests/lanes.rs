//! A worker with two inference lanes (as a machine with two GPUs, or two lanes on one, runs
//! them), simulated on the CPU with the capacity-test model (each forward pass holds its
//! thread for a fixed time, as a GPU's would): both lanes take tasks from the one queue,
//! every image is done once with layers that composite back, and an image over the memory
//! budget of a model that cannot tile is refused with the reason while the rest go on.

use std::sync::Arc;
use std::time::Duration;

use image::{DynamicImage, Rgb, RgbImage};
use lamina_common::messages::{FailureKind, Status, TaskResult};
use lamina_common::queue::{Broker, MemoryBroker, Topology};
use lamina_worker::metrics::METRICS;
use lamina_worker::runtime::calibrate::WarmUp;
use lamina_worker::runtime::{self, LaneSpec, PrecisionChoice};
use lamina_worker::pipeline::WorkerConfig;
use lamina_worker::service::serve;
use tokio_util::sync::CancellationToken;

mod common;

const MODEL: &str = "capacity-test:150";

#[tokio::test(flavor = "multi_thread")]
async fn two_lanes_share_one_queue_and_an_image_over_the_budget_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut keys = Vec::new();
    for i in 0..10u32 {
        // Mixed sizes, as an archive has them.
        let (w, h) = (24 + 4 * (i % 3), 16 + 2 * (i % 4));
        let img = RgbImage::from_fn(w, h, |x, y| Rgb([(x * 9) as u8, (y * 13) as u8, (i * 20) as u8]));
        let key = format!("photo-{i}.png");
        DynamicImage::ImageRgb8(img).save(input.join(&key)).unwrap();
        keys.push(key);
    }
    // 200x200 at the capacity model's 16 bytes a pixel is 640 KB: over the budget below.
    DynamicImage::ImageRgb8(RgbImage::from_pixel(200, 200, Rgb([9, 9, 9]))).save(input.join("huge.png")).unwrap();

    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new(Topology::new("l")));
    let topology = broker.topology().clone();
    broker.declare(&["default"]).await.unwrap();
    for key in keys.iter().chain(std::iter::once(&"huge.png".to_owned())) {
        broker.publish(&topology.tasks("default"), &common::task(dir.path(), key, Some(MODEL)), 0).await.unwrap();
    }
    // Two lanes on the device share the budget: 64 KiB each.
    let worker = WorkerConfig { max_pixels: 1_000_000, batch_size: 1, device: tch::Device::Cpu, memory_budget: 128 << 10 };
    let config = common::service_config(MODEL, worker, "lanes-test");
    let layout = LaneSpec { devices: vec![tch::Device::Cpu], per_device: 2, precision: PrecisionChoice::Auto, warm_up: WarmUp::Off };
    let lanes = Arc::new(runtime::load_lanes(MODEL, &layout).unwrap());
    assert_eq!(lanes.lanes().len(), 2);
    let stop = CancellationToken::new();
    let session = tokio::spawn({
        let (broker, stop) = (broker.clone(), stop.clone());
        async move { serve(&config, runtime::ModelSlot::loaded(lanes), broker, stop).await }
    });

    let results = common::results(&broker, 11, |_| {}).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), session).await.expect("the session stops").unwrap().unwrap();

    let huge = results.iter().find(|r| r.key == "huge.png").unwrap();
    assert_eq!((huge.status, huge.kind), (Status::Failed, Some(FailureKind::TooLarge)), "{huge:?}");
    let reason = huge.reason.as_deref().unwrap();
    assert!(reason.contains("memory budget") && reason.contains("cannot run in tiles") && !reason.contains('\n'), "{reason}");
    for key in &keys {
        let done: Vec<&TaskResult> = results.iter().filter(|r| &r.key == key).collect();
        assert_eq!(done.len(), 1, "{key}: one result");
        assert_eq!(done[0].status, Status::Done, "{:?}", done[0]);
        // The layers are real PNGs that composite back to the input (the top layer is the
        // image itself, opaque).
        let top = image::open(dir.path().join("out").join(key).join("layer-01.png")).unwrap().to_rgba8();
        let original = image::open(input.join(key)).unwrap().to_rgba8();
        assert_eq!(top, original, "{key}");
    }
    let per_lane = METRICS.lane_images();
    println!("images per lane: {per_lane:?}");
    assert_eq!(per_lane.len(), 2, "{per_lane:?}");
    assert!(per_lane.iter().all(|(_, device, n)| *n > 0 && device == "cpu"), "both lanes ran images: {per_lane:?}");
    assert_eq!(per_lane.iter().map(|(_, _, n)| n).sum::<u64>(), 10, "each image ran once (the refused one never ran)");
}
