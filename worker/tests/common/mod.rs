//! What the worker's session tests share: tasks for files in a folder, a service
//! configuration over local folders, and the results a session publishes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lamina_common::config::S3Settings;
use lamina_common::messages::{Event, Task, TaskResult, TASK_SCHEMA};
use lamina_common::params::DecomposeParams;
use lamina_common::queue::Broker;
use lamina_worker::pipeline::WorkerConfig;
use lamina_worker::service::ServiceConfig;

/// A task for `dir/in/key`, written to `dir/out`.
pub fn task(dir: &Path, key: &str, model: Option<&str>) -> Task {
    Task {
        schema: TASK_SCHEMA.into(),
        job_id: "job".into(),
        input: dir.join("in").display().to_string(),
        output: dir.join("out").display().to_string(),
        key: key.into(),
        size: std::fs::metadata(dir.join("in").join(key)).map_or(0, |m| m.len()),
        etag: None,
        params: DecomposeParams::default(),
        render: Default::default(),
        step: Default::default(),
        model: model.map(str::to_owned),
    }
}

/// A session of the pool `default` running `model`, local folders only.
pub fn service_config(model: &str, worker: WorkerConfig, name: &str) -> ServiceConfig {
    ServiceConfig {
        s3: S3Settings { endpoint: None, region: "us-east-1".into(), path_style: false, credentials: None, max_attempts: 1 },
        pool: "default".into(),
        model: model.into(),
        worker,
        prefetch: 16,
        grace: Duration::from_secs(10),
        heartbeat: Duration::from_secs(1),
        name: name.into(),
        abort_on_key: None,
        clock: Default::default(),
    }
}

/// The first `n` task results the session publishes, each passed to `check` as it arrives.
pub async fn results(broker: &Arc<dyn Broker>, n: usize, mut check: impl FnMut(&TaskResult)) -> Vec<TaskResult> {
    let mut events = broker.consume(&broker.topology().events(), "coordinator", 64).await.unwrap();
    let mut results = Vec::new();
    while results.len() < n {
        let delivery = tokio::time::timeout(Duration::from_secs(60), events.next()).await.expect("results in time").unwrap().unwrap();
        let event: Event = serde_json::from_slice(&delivery.body).unwrap();
        delivery.settle.ack().await.unwrap();
        if let Some(result) = event.result {
            check(&result);
            results.push(result);
        }
    }
    results
}
