//! The Kubernetes manifests (`infra/k8s`): the base and every overlay render with kustomize,
//! pass the Kubernetes JSON schemas (kubernetes-validate, strict), and keep what the fleet
//! relies on: workers that drain within their grace period, one coordinator with health
//! probes, one KEDA ScaledObject per worker Deployment that counts the tasks workers hold
//! (RabbitMQ's management API: over AMQP KEDA sees only ready messages and would scale busy
//! workers down), disruption budgets, GPUs in production, and no secret in the ConfigMap.
//!
//! The tools come from `ops/k8s-tools.sh` (`LAMINA_KUSTOMIZE`, `LAMINA_K8S_VALIDATE`,
//! `LAMINA_K8S_PYTHON`, `LAMINA_K8S_VERSION`), which ops/test.sh runs; without them the tests
//! fail, they never skip.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use lamina_tests::{explain, repo_root};
use serde_json::Value;

const BASE: &str = "base";
const DEV: &str = "overlays/dev";
const GPU_PRODUCTION: &str = "overlays/gpu-production";

/// Settings that hold credentials: they belong in the Secret, never in the ConfigMap.
const SECRET_SETTINGS: [&str; 5] = ["LAMINA_AMQP_URL", "LAMINA_S3_ACCESS_KEY_ID", "LAMINA_S3_SECRET_ACCESS_KEY", "LAMINA_HTTP_TOKEN", "LAMINA_API_TOKENS"];
/// Seconds a stopping worker needs beyond its drain grace: handing back what it did not
/// finish and closing its connection.
const STOP_MARGIN_SECONDS: i64 = 10;
/// HPA's scale-down stabilisation, at least: busy workers are removed only after minutes of
/// lower readings.
const MIN_SCALE_DOWN_WINDOW_SECONDS: i64 = 300;
/// The Kubernetes version checked against when `LAMINA_K8S_VERSION` is not set.
const DEFAULT_K8S_VERSION: &str = "1.30.0";
const KEDA_KINDS: [&str; 2] = ["ScaledObject", "TriggerAuthentication"];

// ---------------------------------------------------------------------------------------
// Rendering, validating, reading

fn tool(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "{var} is not set: run `eval \"$(ops/k8s-tools.sh)\"` first (ops/test.sh does); it installs kustomize and \
             kubernetes-validate and prints their paths"
        ),
    }
}

/// The venv's python, which has PyYAML (it comes with kubernetes-validate).
fn python() -> PathBuf {
    match std::env::var_os("LAMINA_K8S_PYTHON") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => tool("LAMINA_K8S_VALIDATE").with_file_name("python"),
    }
}

fn run(command: &mut Command, stdin: Option<&[u8]>) -> Output {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e} (ops/k8s-tools.sh installs it)"));
    let writer = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let bytes = bytes.to_vec();
        std::thread::spawn(move || pipe.write_all(&bytes))
    });
    let out = child.wait_with_output().expect("wait for the command");
    if let Some(writer) = writer {
        writer.join().expect("stdin writer").expect("write to the command's stdin");
    }
    out
}

fn render(tree: &str) -> String {
    let dir = repo_root().join("infra/k8s").join(tree);
    let out = run(Command::new(tool("LAMINA_KUSTOMIZE")).arg("build").arg(&dir), None);
    assert!(out.status.success(), "kustomize build {} failed\n{}", dir.display(), explain(&out));
    String::from_utf8(out.stdout).expect("kustomize prints UTF-8")
}

/// The rendered YAML stream as JSON objects (PyYAML in the tools' venv: the workspace has no
/// YAML parser).
fn parse(tree: &str, yaml: &str) -> Vec<Value> {
    const TO_JSON: &str = "import json, sys, yaml\njson.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)";
    let out = run(Command::new(python()).args(["-c", TO_JSON]), Some(yaml.as_bytes()));
    assert!(out.status.success(), "{tree}: cannot read the rendered YAML\n{}", explain(&out));
    match serde_json::from_slice::<Value>(&out.stdout).expect("PyYAML's JSON parses") {
        Value::Array(objects) => objects,
        other => panic!("{tree}: expected a list of objects, got {other}"),
    }
}

fn is_keda(object: &Value) -> bool {
    object["apiVersion"].as_str().is_some_and(|v| v.starts_with("keda.sh/"))
}

/// Strict schema validation of every built-in object; KEDA's custom resources have no schema
/// there and must at least be of the two kinds and the version these manifests use.
fn validate(tree: &str, yaml: &str, objects: &[Value]) {
    let version = std::env::var("LAMINA_K8S_VERSION").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| DEFAULT_K8S_VERSION.to_owned());
    let dir = tempfile::tempdir().expect("temporary folder");
    let file = dir.path().join(format!("{}.yaml", tree.replace('/', "-")));
    std::fs::write(&file, yaml).expect("write the rendered manifests");
    let out = run(Command::new(tool("LAMINA_K8S_VALIDATE")).args(["--strict", "-k", version.as_str()]).arg(&file), None);
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{tree} does not validate against Kubernetes {version}\n{report}");
    // An object whose apiVersion has no schema (a typo, an API removed from this version) is
    // only warned about: every built-in object must have been checked against one.
    let checked = report.lines().filter(|l| l.contains(" passed for resource ")).count();
    let builtin: Vec<String> = objects.iter().filter(|o| !is_keda(o)).map(id).collect();
    assert_eq!(checked, builtin.len(), "{tree}: {checked} objects were checked against a schema, expected all of {builtin:?}\n{report}");
    for object in objects.iter().filter(|o| is_keda(o)) {
        assert_eq!(object["apiVersion"].as_str(), Some("keda.sh/v1alpha1"), "{tree}: {}", id(object));
        assert!(KEDA_KINDS.contains(&kind(object)), "{tree}: unexpected KEDA object {}", id(object));
    }
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or("")
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

fn id(object: &Value) -> String {
    format!("{}/{}", kind(object), name(object))
}

fn strings(map: &Value) -> BTreeMap<String, String> {
    map.as_object()
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned()))).collect())
        .unwrap_or_default()
}

fn list(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

/// A Kubernetes quantity given as a number or a plain numeric string.
fn quantity(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The port of `host:port`.
fn port_of(address: &str) -> i64 {
    address.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or_else(|| panic!("{address:?} has no port"))
}

/// The container port an HTTP probe targets (a number or a port name).
fn probe_port(container: &Value, probe: &Value) -> Option<i64> {
    match &probe["httpGet"]["port"] {
        Value::Number(n) => n.as_i64(),
        Value::String(port) => list(&container["ports"]).find(|p| p["name"] == port.as_str())?["containerPort"].as_i64(),
        _ => None,
    }
}

/// Whether a URL carries a user or password (`scheme://user:pass@host/...`).
fn has_credentials(value: &str) -> bool {
    value.split_once("://").is_some_and(|(_, rest)| rest.split('/').next().unwrap_or("").contains('@'))
}

/// The Service an in-cluster URL points at: `scheme://[user:pass@]name[.namespace[.svc]]:port/...`
/// gives (name, namespace if named, port).
fn service_of(url: &str) -> (String, Option<String>, i64) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let (host, port) = host_port.rsplit_once(':').unwrap_or_else(|| panic!("{url}: no port"));
    let mut parts = host.split('.');
    let service = parts.next().unwrap_or("").to_owned();
    (service, parts.next().map(str::to_owned), port.parse().unwrap_or_else(|_| panic!("{url}: bad port")))
}

/// A number of seconds after `sleep ` in a hook's command, if any.
fn sleep_seconds(command: &str) -> Option<i64> {
    let after = command.split("sleep ").nth(1)?;
    after.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

// ---------------------------------------------------------------------------------------
// One rendered tree

struct Rendered {
    tree: &'static str,
    objects: Vec<Value>,
}

impl Rendered {
    fn load(tree: &'static str) -> Rendered {
        let yaml = render(tree);
        let objects = parse(tree, &yaml);
        assert!(!objects.is_empty(), "{tree} renders nothing");
        validate(tree, &yaml, &objects);
        Rendered { tree, objects }
    }

    fn all(&self, kind_: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| kind(o) == kind_).collect()
    }

    fn find(&self, kind_: &str, name_: &str) -> Option<&Value> {
        self.objects.iter().find(|o| kind(o) == kind_ && name(o) == name_)
    }

    /// The Deployments of one component (`app.kubernetes.io/component`).
    fn deployments(&self, component: &str) -> Vec<&Value> {
        self.all("Deployment").into_iter().filter(|d| d["metadata"]["labels"]["app.kubernetes.io/component"] == component).collect()
    }

    /// The settings ConfigMap (generated, so its name carries a hash).
    fn config(&self) -> &Value {
        let maps: Vec<&Value> = self.all("ConfigMap").into_iter().filter(|m| name(m).starts_with("lamina-config")).collect();
        assert_eq!(maps.len(), 1, "{}: expected one lamina-config ConfigMap, found {}", self.tree, maps.len());
        maps[0]
    }

    /// A Deployment's Lamina container: the one running `binary`.
    fn container<'a>(&self, deployment: &'a Value, binary: &str) -> &'a Value {
        list(&deployment["spec"]["template"]["spec"]["containers"])
            .find(|c| c["command"][0] == binary)
            .unwrap_or_else(|| panic!("{}: {} has no container running {binary}", self.tree, id(deployment)))
    }

    /// The settings a container starts with: its ConfigMaps (envFrom), then its own env.
    fn settings(&self, deployment: &Value, container: &Value) -> BTreeMap<String, String> {
        let mut settings = BTreeMap::new();
        for source in list(&container["envFrom"]) {
            if let Some(map) = source["configMapRef"]["name"].as_str() {
                let object = self
                    .find("ConfigMap", map)
                    .unwrap_or_else(|| panic!("{}: {} uses the ConfigMap {map}, which is not rendered", self.tree, id(deployment)));
                settings.extend(strings(&object["data"]));
            }
        }
        for var in list(&container["env"]) {
            if let (Some(k), Some(v)) = (var["name"].as_str(), var["value"].as_str()) {
                settings.insert(k.to_owned(), v.to_owned());
            }
        }
        settings
    }

    fn secret_names(&self, container: &Value) -> Vec<String> {
        list(&container["envFrom"]).filter_map(|s| s["secretRef"]["name"].as_str().map(str::to_owned)).collect()
    }

    fn assert_service(&self, url: &str, namespace: &str) {
        let (service, ns, port) = service_of(url);
        if let Some(ns) = &ns {
            assert_eq!(ns, namespace, "{}: {url} points at another namespace", self.tree);
        }
        let object = self.find("Service", &service).unwrap_or_else(|| panic!("{}: {url} points at a Service {service} that is not rendered", self.tree));
        assert!(list(&object["spec"]["ports"]).any(|p| p["port"] == port), "{}: the Service {service} has no port {port} (for {url})", self.tree);
    }
}

// ---------------------------------------------------------------------------------------
// What every tree keeps

/// A worker Deployment and what it was found to serve.
struct Pool<'a> {
    deployment: &'a Value,
    pool: String,
    settings: BTreeMap<String, String>,
}

/// Checks everything the base and the overlays share; returns the worker pools.
fn check_common(r: &Rendered, backlog_trigger: bool) -> Vec<Pool<'_>> {
    let tree = r.tree;

    // One namespace, declared, holding everything.
    let namespaces = r.all("Namespace");
    assert_eq!(namespaces.len(), 1, "{tree}: expected one Namespace");
    let namespace = name(namespaces[0]);
    for object in r.objects.iter().filter(|o| kind(o) != "Namespace") {
        assert_eq!(object["metadata"]["namespace"].as_str(), Some(namespace), "{tree}: {} is outside the namespace {namespace}", id(object));
    }

    // No secret in the ConfigMap.
    let config = strings(&r.config()["data"]);
    for (key, value) in &config {
        let looks_secret = SECRET_SETTINGS.contains(&key.as_str())
            || (["PASSWORD", "SECRET", "TOKEN"].iter().any(|word| key.contains(word)) && !key.ends_with("_FILE"));
        assert!(!looks_secret, "{tree}: {key} is a secret and belongs in the Secret lamina-credentials, not the ConfigMap");
        assert!(!has_credentials(value), "{tree}: the ConfigMap's {key} carries credentials in a URL");
    }
    let prefix = config.get("LAMINA_AMQP_PREFIX").cloned().unwrap_or_else(|| "lamina".to_owned());

    // One coordinator: one replica, stopped before its successor starts, probed on /health.
    let coordinators = r.deployments("coordinator");
    assert_eq!(coordinators.len(), 1, "{tree}: expected one coordinator Deployment");
    let coordinator = coordinators[0];
    assert_eq!(coordinator["spec"]["replicas"].as_i64(), Some(1), "{tree}: exactly one coordinator may run");
    assert_eq!(coordinator["spec"]["strategy"]["type"].as_str(), Some("Recreate"), "{tree}: a rollout must stop the old coordinator before starting the new one");
    let container = r.container(coordinator, "lamina-coordinator");
    let settings = r.settings(coordinator, container);
    let http_port = port_of(settings.get("LAMINA_HTTP_ADDR").map_or("127.0.0.1:9090", String::as_str));
    assert!(!settings.get("LAMINA_HTTP_ADDR").is_some_and(|a| a.starts_with("127.")), "{tree}: the coordinator must listen beyond loopback in a pod");
    for probe in ["readinessProbe", "livenessProbe"] {
        let p = &container[probe];
        assert_eq!(p["httpGet"]["path"].as_str(), Some("/health"), "{tree}: the coordinator's {probe} must GET /health");
        assert_eq!(probe_port(container, p), Some(http_port), "{tree}: the coordinator's {probe} must use LAMINA_HTTP_ADDR's port");
    }
    assert_hardened(tree, coordinator, container);
    assert!(r.secret_names(container).iter().any(|s| s == "lamina-credentials"), "{tree}: the coordinator must read the Secret lamina-credentials");
    let coordinator_labels = &coordinator["spec"]["template"]["metadata"]["labels"];
    assert!(
        r.all("Service").iter().any(|s| selects(&s["spec"]["selector"], coordinator_labels)
            && list(&s["spec"]["ports"]).any(|p| p["port"] == http_port)),
        "{tree}: no Service reaches the coordinator on port {http_port}"
    );

    // Workers: KEDA owns their count, they drain on SIGTERM within the grace period.
    let workers = r.deployments("worker");
    assert!(!workers.is_empty(), "{tree}: no worker Deployment");
    let mut pools = Vec::new();
    for worker in workers {
        let wid = id(worker);
        assert!(worker["spec"]["replicas"].is_null(), "{tree}: {wid} sets replicas, which every apply would force on KEDA's count");
        let pod = &worker["spec"]["template"]["spec"];
        let container = r.container(worker, "lamina-worker");
        let settings = r.settings(worker, container);
        let grace: i64 = settings.get("LAMINA_DRAIN_GRACE_SECONDS").map_or(Ok(25), |g| g.parse()).expect("LAMINA_DRAIN_GRACE_SECONDS is a number");
        let stop = pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
        assert!(
            stop >= grace + STOP_MARGIN_SECONDS,
            "{tree}: {wid}: terminationGracePeriodSeconds {stop} must exceed LAMINA_DRAIN_GRACE_SECONDS {grace} by at least \
             {STOP_MARGIN_SECONDS} s, or Kubernetes kills draining workers"
        );
        let pre_stop = &container["lifecycle"]["preStop"];
        assert!(pre_stop.is_object(), "{tree}: {wid} has no preStop hook to start the drain");
        let hook: Vec<&str> = list(&pre_stop["exec"]["command"]).filter_map(Value::as_str).collect();
        if let Some(sleep) = sleep_seconds(&hook.join(" ")) {
            assert!(sleep < stop, "{tree}: {wid}: the preStop hook sleeps {sleep} s, past terminationGracePeriodSeconds {stop}");
        }
        let metrics_port = port_of(settings.get("LAMINA_METRICS_ADDR").map_or("127.0.0.1:9091", String::as_str));
        assert!(!settings.get("LAMINA_METRICS_ADDR").is_some_and(|a| a.starts_with("127.")), "{tree}: {wid}: LAMINA_METRICS_ADDR must listen beyond loopback in a pod");
        let ready = &container["readinessProbe"];
        assert_eq!(ready["httpGet"]["path"].as_str(), Some("/health"), "{tree}: {wid}: the readiness probe must GET /health");
        assert_eq!(probe_port(container, ready), Some(metrics_port), "{tree}: {wid}: the readiness probe must use LAMINA_METRICS_ADDR's port");
        assert!(list(&pod["volumes"]).any(|v| v["emptyDir"].is_object()), "{tree}: {wid} needs an emptyDir for /tmp (read-only root)");
        assert_hardened(tree, worker, container);
        assert!(r.secret_names(container).iter().any(|s| s == "lamina-credentials"), "{tree}: {wid} must read the Secret lamina-credentials");
        let pool = settings.get("LAMINA_POOL").cloned().unwrap_or_else(|| "default".to_owned());
        assert_eq!(
            worker["spec"]["template"]["metadata"]["labels"]["lamina.io/pool"].as_str(),
            Some(pool.as_str()),
            "{tree}: {wid} serves the pool {pool} and its pods must say so (lamina.io/pool), or pools share a selector"
        );
        pools.push(Pool { deployment: worker, pool, settings });
    }
    let distinct: BTreeSet<&str> = pools.iter().map(|p| p.pool.as_str()).collect();
    assert_eq!(distinct.len(), pools.len(), "{tree}: two worker Deployments serve the same pool");

    // Disruption budgets for the coordinator and every pool.
    let budgets = r.all("PodDisruptionBudget");
    for deployment in std::iter::once(coordinator).chain(pools.iter().map(|p| p.deployment)) {
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let covering: Vec<&&Value> = budgets.iter().filter(|b| selects(&b["spec"]["selector"]["matchLabels"], labels)).collect();
        assert_eq!(covering.len(), 1, "{tree}: {} needs exactly one PodDisruptionBudget, found {}", id(deployment), covering.len());
        let spec = &covering[0]["spec"];
        assert!(!spec["maxUnavailable"].is_null() || !spec["minAvailable"].is_null(), "{tree}: {} sets no budget", id(covering[0]));
    }

    // KEDA: one ScaledObject per worker Deployment, counting the tasks workers hold.
    let scaled = r.all("ScaledObject");
    assert_eq!(scaled.len(), pools.len(), "{tree}: {} ScaledObjects for {} worker Deployments", scaled.len(), pools.len());
    let documented = std::fs::read_to_string(repo_root().join("docs/metrics.md")).expect("docs/metrics.md");
    for pool in &pools {
        let target = name(pool.deployment);
        let mine: Vec<&&Value> = scaled.iter().filter(|s| s["spec"]["scaleTargetRef"]["name"] == target).collect();
        assert_eq!(mine.len(), 1, "{tree}: the Deployment {target} needs exactly one ScaledObject naming it in scaleTargetRef");
        let so = mine[0];
        let sid = id(so);
        let spec = &so["spec"];
        assert_eq!(spec["scaleTargetRef"]["kind"].as_str().unwrap_or("Deployment"), "Deployment", "{tree}: {sid}");
        assert_eq!(spec["minReplicaCount"].as_i64(), Some(0), "{tree}: {sid}: an idle pool scales to zero (minReplicaCount 0)");
        let max = spec["maxReplicaCount"].as_i64().unwrap_or_else(|| panic!("{tree}: {sid} has no maxReplicaCount"));
        assert!(max >= 1, "{tree}: {sid}: maxReplicaCount {max}");
        let window = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"].as_i64().unwrap_or(0);
        assert!(window >= MIN_SCALE_DOWN_WINDOW_SECONDS, "{tree}: {sid}: scale-down stabilizationWindowSeconds {window} is under {MIN_SCALE_DOWN_WINDOW_SECONDS}");

        let triggers: Vec<&Value> = list(&spec["triggers"]).collect();
        let rabbit: Vec<&&Value> = triggers.iter().filter(|t| t["type"] == "rabbitmq").collect();
        assert!(!rabbit.is_empty(), "{tree}: {sid} has no rabbitmq trigger on its task queue");
        let batch: f64 = pool.settings.get("LAMINA_BATCH_SIZE").map_or(Ok(1.0), |b| b.parse()).expect("LAMINA_BATCH_SIZE is a number");
        for trigger in rabbit {
            let m = &trigger["metadata"];
            assert_eq!(
                m["protocol"].as_str(),
                Some("http"),
                "{tree}: {sid}: the rabbitmq trigger must read the management API (protocol: http): over AMQP KEDA counts only ready \
                 messages, misses the tasks busy workers hold, and scales them down mid-task"
            );
            let exclude = &m["excludeUnacknowledged"];
            assert!(!(exclude == "true" || *exclude == Value::Bool(true)), "{tree}: {sid}: excludeUnacknowledged hides the tasks busy workers hold");
            assert_eq!(m["mode"].as_str().unwrap_or("QueueLength"), "QueueLength", "{tree}: {sid}");
            assert_eq!(m["queueName"].as_str(), Some(format!("{prefix}.tasks.{}", pool.pool).as_str()), "{tree}: {sid} watches another pool's queue");
            let value = m["value"].as_str().and_then(|v| v.parse::<f64>().ok()).unwrap_or_else(|| panic!("{tree}: {sid}: no numeric value"));
            assert!(
                (1.0..=2.0 * batch).contains(&value),
                "{tree}: {sid}: value {value} must be at most two batches ({}): a busy worker holds at least that many tasks, and a \
                 larger value counts it as less than one replica",
                2.0 * batch
            );
            assert!(m["host"].is_null(), "{tree}: {sid}: the broker's address and password belong in a TriggerAuthentication");
            let auth = trigger["authenticationRef"]["name"].as_str().unwrap_or_else(|| panic!("{tree}: {sid}: no authenticationRef"));
            assert!(r.find("TriggerAuthentication", auth).is_some(), "{tree}: {sid} uses the TriggerAuthentication {auth}, which is not rendered");
        }
        let prometheus: Vec<&&Value> = triggers.iter().filter(|t| t["type"] == "prometheus").collect();
        for trigger in &prometheus {
            let m = &trigger["metadata"];
            let query = m["query"].as_str().unwrap_or("");
            assert!(query.contains(&format!("pool=\"{}\"", pool.pool)), "{tree}: {sid}: the query {query:?} must select its pool");
            for metric in query.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("lamina_")) {
                assert!(documented.contains(&format!("`{metric}`")), "{tree}: {sid}: {metric} is not in docs/metrics.md");
            }
            assert!(m["serverAddress"].as_str().is_some_and(|a| a.starts_with("http")), "{tree}: {sid}: no Prometheus serverAddress");
            assert!(quantity(&m["threshold"]).is_some_and(|t| t > 0.0), "{tree}: {sid}: the prometheus trigger needs a threshold");
        }
        if backlog_trigger {
            assert!(
                prometheus.iter().any(|t| t["metadata"]["query"].as_str().is_some_and(|q| q.contains("lamina_coordinator_images_pending"))),
                "{tree}: {sid} needs a prometheus trigger on lamina_coordinator_images_pending: the queue shows only a window of the backlog"
            );
        }
    }
    for auth in r.all("TriggerAuthentication") {
        for reference in list(&auth["spec"]["secretTargetRef"]) {
            assert!(reference["name"].as_str().is_some_and(|n| !n.is_empty()), "{tree}: {} names no Secret", id(auth));
        }
    }
    pools
}

/// Whether a label selector (a map) is non-empty and matches `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k.as_str()] == *v))
}

fn assert_hardened(tree: &str, deployment: &Value, container: &Value) {
    let did = id(deployment);
    let pod = &deployment["spec"]["template"]["spec"]["securityContext"];
    let own = &container["securityContext"];
    assert_eq!(own["runAsNonRoot"].as_bool().or(pod["runAsNonRoot"].as_bool()), Some(true), "{tree}: {did} must run as non-root");
    assert_eq!(own["readOnlyRootFilesystem"].as_bool(), Some(true), "{tree}: {did} needs a read-only root filesystem");
    assert_eq!(own["allowPrivilegeEscalation"].as_bool(), Some(false), "{tree}: {did} must not allow privilege escalation");
    assert!(list(&own["capabilities"]["drop"]).any(|c| c == "ALL"), "{tree}: {did} must drop all capabilities");
}

fn gpus(container: &Value) -> Option<f64> {
    quantity(&container["resources"]["limits"]["nvidia.com/gpu"])
}

fn images(workload: &Value) -> Vec<String> {
    list(&workload["spec"]["template"]["spec"]["containers"]).filter_map(|c| c["image"].as_str().map(str::to_owned)).collect()
}

// ---------------------------------------------------------------------------------------
// The trees

#[test]
fn base_renders_validates_and_keeps_the_fleet_safe() {
    let r = Rendered::load(BASE);
    check_common(&r, true);
    // The placeholder Secret lists every credential the services read.
    let secret = r.find("Secret", "lamina-credentials").expect("base: the placeholder Secret lamina-credentials");
    let keys = strings(&secret["stringData"]);
    for key in SECRET_SETTINGS {
        assert!(keys.contains_key(key), "base: the Secret lamina-credentials does not show {key}");
    }
    for auth in r.all("TriggerAuthentication") {
        for reference in list(&auth["spec"]["secretTargetRef"]) {
            let secret = reference["name"].as_str().unwrap_or("");
            assert!(r.find("Secret", secret).is_some(), "base: {} uses the Secret {secret}, which the base does not show", id(&auth));
        }
    }
}

#[test]
fn dev_overlay_runs_on_cpu_against_its_own_broker_and_store() {
    let r = Rendered::load(DEV);
    let pools = check_common(&r, false);
    let namespace = name(r.all("Namespace")[0]).to_owned();
    assert_ne!(namespace, "lamina", "dev: use a namespace of its own, beside a real deployment");
    for pool in &pools {
        let container = r.container(pool.deployment, "lamina-worker");
        assert_eq!(pool.settings.get("LAMINA_DEVICE").map(String::as_str), Some("cpu"), "dev: workers run on the CPU");
        assert!(gpus(container).is_none(), "dev: {} asks for a GPU", id(pool.deployment));
    }
    for so in r.all("ScaledObject") {
        let max = so["spec"]["maxReplicaCount"].as_i64().unwrap_or(0);
        assert!(max <= 4, "dev: {} may grow to {max} workers on a laptop", id(so));
    }
    for deployment in r.all("Deployment") {
        for image in images(deployment) {
            assert!(!image.starts_with("lamina") || image == "lamina:dev", "dev: {} runs {image}, not the local lamina:dev", id(deployment));
        }
    }
    // The credentials point at the broker and store this overlay runs.
    let secret = r.find("Secret", "lamina-credentials").expect("dev: the Secret lamina-credentials");
    let credentials = strings(&secret["stringData"]);
    for key in SECRET_SETTINGS {
        assert!(credentials.contains_key(key), "dev: the Secret lamina-credentials lacks {key}");
    }
    r.assert_service(&credentials["LAMINA_AMQP_URL"], &namespace);
    let config = strings(&r.config()["data"]);
    r.assert_service(config.get("LAMINA_S3_ENDPOINT").expect("dev: LAMINA_S3_ENDPOINT"), &namespace);
    for auth in r.all("TriggerAuthentication") {
        for reference in list(&auth["spec"]["secretTargetRef"]) {
            let secret_name = reference["name"].as_str().unwrap_or("");
            let key = reference["key"].as_str().unwrap_or("");
            let secret = r.find("Secret", secret_name).unwrap_or_else(|| panic!("dev: {} uses the Secret {secret_name}, not rendered", id(&auth)));
            let host = strings(&secret["stringData"]).remove(key).unwrap_or_else(|| panic!("dev: the Secret {secret_name} has no {key}"));
            assert!(host.starts_with("http://") || host.starts_with("https://"), "dev: KEDA's host {host} must be the management API");
            r.assert_service(&host, &namespace);
        }
    }
    let statefulsets: Vec<String> = r.all("StatefulSet").iter().flat_map(|s| images(s)).collect();
    assert!(statefulsets.iter().any(|i| i.starts_with("rabbitmq:") && i.contains("management")), "dev: no RabbitMQ with the management plugin: {statefulsets:?}");
}

#[test]
fn gpu_production_gives_every_worker_a_gpu_and_leaves_secrets_alone() {
    let r = Rendered::load(GPU_PRODUCTION);
    let pools = check_common(&r, true);
    assert!(pools.len() >= 2, "gpu-production: expected a second pool beside `default`");
    for pool in &pools {
        let wid = id(pool.deployment);
        let pod = &pool.deployment["spec"]["template"]["spec"];
        let container = r.container(pool.deployment, "lamina-worker");
        assert!(gpus(container).is_some_and(|n| n >= 1.0), "gpu-production: {wid} must ask for nvidia.com/gpu in its limits");
        assert!(
            list(&pod["tolerations"]).any(|t| t["key"] == "nvidia.com/gpu"),
            "gpu-production: {wid} must tolerate the nvidia.com/gpu taint of GPU nodes"
        );
        assert!(pod["nodeSelector"].as_object().is_some_and(|s| !s.is_empty()), "gpu-production: {wid} must select GPU nodes");
        let device = pool.settings.get("LAMINA_DEVICE").map(String::as_str).unwrap_or("auto");
        assert!(device.starts_with("cuda"), "gpu-production: {wid} runs on {device}, not CUDA");
    }
    for deployment in r.all("Deployment") {
        for image in images(deployment) {
            let tag = image.rsplit('/').next().unwrap_or("");
            assert!(
                image.contains('@') || tag.split_once(':').is_some_and(|(_, t)| !t.is_empty() && t != "latest"),
                "gpu-production: {} runs {image}: pin a tag or digest",
                id(deployment)
            );
        }
    }
    // The real credentials come from the cluster's secret store; an apply must never
    // overwrite them with placeholders.
    for secret in r.all("Secret") {
        let values = strings(&secret["stringData"]);
        assert!(!values.values().any(|v| v.contains("CHANGE-ME")), "gpu-production: {} carries placeholders", id(&secret));
    }
    assert!(r.find("Secret", "lamina-credentials").is_none(), "gpu-production must not apply the Secret lamina-credentials (it comes from the secret store)");
}
