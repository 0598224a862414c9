//! The coordinator's JSON API as a stranger uses it: `curl` over HTTPS with bearer tokens
//! against the real coordinator, a real worker, the real RabbitMQ and a real S3 server
//! (Garage); `lamina submit/status/cancel --api`; and Schemathesis fuzzing the live
//! coordinator from the OpenAPI document it serves.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use image::ImageFormat;
use lamina_common::manifest::Manifest;
use lamina_common::store::S3Store;
use lamina_common::ObjectStore;
use lamina_tests::*;
use serde_json::Value;

const READ: &str = "read-token-0123456789abcdef";
const SUBMIT: &str = "submit-token-0123456789abcdef";

/// One `curl` exchange: status, response headers (lowercase names), JSON body.
struct Exchange {
    status: u16,
    headers: String,
    body: Value,
    text: String,
}

fn curl(base: &str, ca: &Path, method: &str, path: &str, token: Option<&str>, body: Option<&str>, headers: &[&str]) -> Exchange {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("headers");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--cacert"]).arg(ca).args(["-X", method, "-D"]).arg(&head).args(["-w", "\n%{http_code}"]);
    if let Some(token) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    if let Some(body) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", body]);
    }
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(format!("{base}{path}")).output().expect("run curl");
    assert!(out.status.success(), "curl {method} {path}: {}", explain(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (text, status) = stdout.rsplit_once('\n').unwrap();
    Exchange {
        status: status.trim().parse().unwrap(),
        headers: std::fs::read_to_string(head).unwrap().to_lowercase(),
        body: serde_json::from_str(text).unwrap_or_default(),
        text: text.to_owned(),
    }
}

/// Every error is one line of JSON with an `error`.
fn one_line_error(e: &Exchange, status: u16, says: &str) {
    assert_eq!(e.status, status, "{}", e.text);
    let error = e.body["error"].as_str().unwrap_or_else(|| panic!("not a JSON error: {}", e.text));
    assert!(!error.contains('\n') && error.contains(says), "{error:?} should say {says:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_submitted_over_https_is_decomposed_and_its_results_listed() {
    let settings = s3_settings();
    let bucket = new_bucket("api");
    let prefix = format!("lamina-test-{}-api", std::process::id());
    let _queues = Queues(prefix.clone());
    let logs = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let ca = certs.path().join("ca.pem");
    let http = format!("127.0.0.1:{}", free_port());
    let base = format!("https://{http}");
    let tokens = format!("read:{READ}\nsubmit:{SUBMIT}\n");
    let (cert, key) = (certs.path().join("server.pem").display().to_string(), certs.path().join("server.key").display().to_string());
    let coordinator = |log: &str| {
        spawn_with(
            "lamina-coordinator",
            &prefix,
            &logs.path().join(log),
            &[
                ("LAMINA_HTTP_ADDR", &http),
                ("LAMINA_API_TOKENS", &tokens),
                ("LAMINA_HTTP_TLS_CERT_FILE", &cert),
                ("LAMINA_HTTP_TLS_KEY_FILE", &key),
                ("LAMINA_API_RATE", "2"),
                ("LAMINA_API_BURST", "40"),
            ],
        )
    };
    let mut fleet = Fleet(vec![coordinator("coordinator.log"), spawn_service("lamina-worker", &prefix, &logs.path().join("worker.log"))]);
    let show_logs = || read_logs(logs.path(), &["coordinator.log", "worker.log"]);
    let input = S3Store::new(&settings, &bucket, "in").await;
    let originals = fleet_images(9, 24);
    for (k, img) in &originals {
        input.put(k, encode(img, ImageFormat::Png)).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    // Until it listens again, curl cannot connect at all: poll without asserting on that.
    let healthy = || {
        let out = Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"]).arg(&ca).arg(format!("{base}/health")).output();
        out.is_ok_and(|o| o.stdout == b"200")
    };
    while !healthy() {
        assert!(Instant::now() < deadline, "the coordinator did not serve HTTPS\n{}", show_logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let call = |method: &str, path: &str, token: Option<&str>, body: Option<&str>, headers: &[&str]| curl(&base, &ca, method, path, token, body, headers);

    // The document the coordinator serves is the one in the repository.
    let doc = call("GET", "/api/v1/openapi.json", None, None, &[]);
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(repo_root().join("docs/openapi.json")).unwrap()).unwrap();
    assert_eq!((doc.status, &doc.body), (200, &kept));

    // Refusals, each one line: no token, a read token submitting, a bad body, a bad page.
    let job = format!(r#"{{"input": "s3://{bucket}/in", "output": "s3://{bucket}/out", "model": "fscs", "render": {{"formats": ["png", "ora"]}}}}"#);
    let nobody = call("POST", "/api/v1/jobs", None, Some(&job), &[]);
    one_line_error(&nobody, 401, "bearer token");
    assert!(nobody.headers.contains("www-authenticate: bearer"), "{}", nobody.headers);
    one_line_error(&call("POST", "/api/v1/jobs", Some("not-a-token-at-all-here"), Some(&job), &[]), 401, "bearer token");
    one_line_error(&call("POST", "/api/v1/jobs", Some(READ), Some(&job), &[]), 403, "role (read)");
    one_line_error(&call("POST", "/api/v1/jobs", Some(SUBMIT), Some(r#"{"input": "s3://b/i", "output": "s3://b/o", "model": "fscs", "colour": 1}"#), &[]), 400, "unknown field `colour`");
    one_line_error(&call("POST", "/api/v1/jobs", Some(SUBMIT), Some(r#"{"input": 7}"#), &[]), 400, "invalid type");
    one_line_error(&call("POST", "/api/v1/jobs", Some(SUBMIT), Some("not json"), &[]), 400, "not a job request");
    let huge = format!(r#"{{"input": "{}"}}"#, "x".repeat(70_000));
    one_line_error(&call("POST", "/api/v1/jobs", Some(SUBMIT), Some(&huge), &[]), 413, "over 65536 bytes");
    let local = r#"{"input": "/etc", "output": "/tmp/out", "model": "fscs"}"#;
    one_line_error(&call("POST", "/api/v1/jobs", Some(SUBMIT), Some(local), &[]), 422, "s3:// locations only");
    let fscs9 = format!(r#"{{"input": "s3://{bucket}/in", "output": "s3://{bucket}/out", "model": "fscs", "params": {{"layers": 9}}}}"#);
    one_line_error(&call("POST", "/api/v1/jobs", Some(SUBMIT), Some(&fscs9), &[]), 422, "refuses the job's parameters");
    let nowhere = r#"{"input": "s3://no-such-bucket-here/in", "output": "s3://no-such-bucket-here/out", "model": "fscs"}"#;
    one_line_error(&call("POST", "/api/v1/jobs", Some(SUBMIT), Some(nowhere), &[]), 422, "cannot use the output");
    one_line_error(&call("GET", "/api/v1/jobs?limit=5000", Some(READ), None, &[]), 400, "limit must be");
    one_line_error(&call("GET", "/api/v1/jobs/no%20such", Some(READ), None, &[]), 400, "job id");
    one_line_error(&call("GET", "/api/v1/jobs/0000-missing", Some(READ), None, &[]), 404, "no job");

    // Submitted with an idempotency key, twice: one job.
    let first = call("POST", "/api/v1/jobs", Some(SUBMIT), Some(&job), &["Idempotency-Key: catalogue-2026-12"]);
    assert_eq!(first.status, 201, "{}\n{}", first.text, show_logs());
    let job_id = first.body["job_id"].as_str().unwrap().to_owned();
    assert!(first.headers.contains(&format!("location: /api/v1/jobs/{job_id}")), "{}", first.headers);
    let again = call("POST", "/api/v1/jobs", Some(SUBMIT), Some(&job), &["Idempotency-Key: catalogue-2026-12"]);
    assert_eq!((again.status, again.body["job_id"].as_str()), (200, Some(job_id.as_str())), "{}", again.text);
    assert!(again.headers.contains("idempotent-replayed: true"), "{}", again.headers);
    let other = job.replace("\"ora\"", "\"psd\"");
    one_line_error(&call("POST", "/api/v1/jobs", Some(SUBMIT), Some(&other), &["Idempotency-Key: catalogue-2026-12"]), 422, "different request");

    // Followed to the end with the read token.
    let deadline = Instant::now() + Duration::from_secs(300);
    let view = loop {
        let view = call("GET", &format!("/api/v1/jobs/{job_id}"), Some(READ), None, &[]);
        assert_eq!(view.status, 200, "{}", view.text);
        if view.body["state"] == "finished" {
            break view.body;
        }
        assert!(Instant::now() < deadline, "the job did not finish: {}\n{}", view.text, show_logs());
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!((view["images"].as_u64(), view["done"].as_u64(), view["failed"].as_u64()), (Some(9), Some(9), Some(0)), "{view}");
    let listed = call("GET", "/api/v1/jobs?limit=1", Some(READ), None, &[]);
    assert_eq!(listed.body["jobs"][0]["job_id"].as_str(), Some(job_id.as_str()), "{}", listed.text);

    // The results, four a page: every image once, with the locations of its files, which
    // decode and recomposite at the PSNR their manifest claims.
    let (mut seen, mut cursor, mut pages) = (BTreeSet::new(), String::new(), 0);
    let output = S3Store::new(&settings, &bucket, "out").await;
    let scratch = tempfile::tempdir().unwrap();
    let out_base = format!("s3://{bucket}/out/");
    loop {
        let page = call("GET", &format!("/api/v1/jobs/{job_id}/results?limit=4{cursor}"), Some(READ), None, &[]);
        assert_eq!(page.status, 200, "{}", page.text);
        pages += 1;
        for result in page.body["results"].as_array().unwrap() {
            let key = result["key"].as_str().unwrap().to_owned();
            assert_eq!(result["status"], "done", "{result}");
            let outputs: Vec<&str> = result["outputs"].as_array().unwrap().iter().map(|o| o.as_str().unwrap()).collect();
            assert!(outputs.iter().any(|o| o.ends_with("/layers.ora")) && outputs.last().unwrap().ends_with("/manifest.json"), "{result}");
            let manifest: Manifest = serde_json::from_slice(&output.get(outputs.last().unwrap().strip_prefix(&out_base).unwrap()).await.unwrap()).unwrap();
            assert_eq!(manifest.job_id, job_id);
            let dir = scratch.path().join(&key);
            std::fs::create_dir_all(&dir).unwrap();
            for layer in &manifest.layers {
                let location = format!("{out_base}{key}/{}", layer.png());
                assert!(outputs.contains(&location.as_str()), "{location} is not among the outputs listed");
                std::fs::write(dir.join(layer.png()), output.get(location.strip_prefix(&out_base).unwrap()).await.unwrap()).unwrap();
            }
            let psnr = recomposite_psnr(&dir, &manifest, &originals[&key]).unwrap();
            assert!((psnr - manifest.recomposite_psnr_db.unwrap()).abs() < 0.05, "{key}: {psnr:.2} dB");
            assert!(seen.insert(key), "an image listed twice");
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
        assert!(pages < 10, "the pages do not end");
    }
    assert_eq!(seen, originals.keys().cloned().collect::<BTreeSet<_>>());
    assert_eq!(pages, 3, "9 results, 4 a page");

    // The CLI over the API, with only the API's address and a token: a second submission
    // skips every image; status lists it; cancelling a finished job says so.
    let lamina = |args: &[&str], token: &str| {
        Command::new(binary("lamina")).args(args).env("LAMINA_API_TOKEN", token).env("SSL_CERT_FILE", &ca).env_remove("LAMINA_AMQP_URL").output().unwrap()
    };
    let (src, dst) = (format!("s3://{bucket}/in"), format!("s3://{bucket}/out"));
    let submitted = lamina(&["submit", "--api", &base, "--input", &src, "--output", &dst, "--formats", "png,ora", "--wait"], SUBMIT);
    assert!(submitted.status.success(), "{}\n{}", explain(&submitted), show_logs());
    let text = String::from_utf8_lossy(&submitted.stdout);
    assert!(text.contains("9 images: 0 done, 9 skipped (unchanged), 0 failed"), "{}", explain(&submitted));
    let second = text.lines().next().unwrap().trim().to_owned();
    let status = lamina(&["status", "--api", &base, &second], READ);
    assert!(String::from_utf8_lossy(&status.stdout).contains(&format!("{second}  finished 0 done, 9 skipped, 0 failed of 9")), "{}", explain(&status));
    let cancelled = lamina(&["cancel", "--api", &base, &job_id], SUBMIT);
    assert!(String::from_utf8_lossy(&cancelled.stdout).contains(&format!("{job_id}: finished")), "{}", explain(&cancelled));
    let refused = lamina(&["cancel", "--api", &base, &job_id], READ);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("403"), "{}", explain(&refused));

    // The coordinator restarts: the same request with the same key is still the same job,
    // known from its records as finished, and nothing is queued again.
    let _ = fleet.0[0].kill();
    let _ = fleet.0[0].wait();
    fleet.0[0] = coordinator("coordinator-2.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    // Until it listens again, curl cannot connect at all: poll without asserting on that.
    let healthy = || {
        let out = Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"]).arg(&ca).arg(format!("{base}/health")).output();
        out.is_ok_and(|o| o.stdout == b"200")
    };
    while !healthy() {
        assert!(Instant::now() < deadline, "the coordinator did not come back\n{}", show_logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = call("POST", "/api/v1/jobs", Some(SUBMIT), Some(&job), &["Idempotency-Key: catalogue-2026-12"]);
    assert_eq!((after.status, after.body["job_id"].as_str(), after.body["state"].as_str()), (200, Some(job_id.as_str()), Some("finished")), "{}", after.text);
    assert_eq!(after.body["done"].as_u64(), Some(9), "{}", after.text);
    std::thread::sleep(Duration::from_secs(2));
    let log2 = std::fs::read_to_string(logs.path().join("coordinator-2.log")).unwrap();
    assert!(!log2.contains("job received"), "the replayed job was queued again\n{log2}");

    // Too many requests from one token: 429 with Retry-After, and the other token is not held up.
    // The bucket holds 40 and refills 2 a second: well within 200 quick calls one is refused.
    let limited = (0..200)
        .map(|_| call("GET", "/api/v1/jobs?limit=1", Some(READ), None, &[]))
        .find(|e| e.status == 429)
        .expect("no call was refused with 429");
    one_line_error(&limited, 429, "too many requests");
    assert!(limited.headers.contains("retry-after: "), "{}", limited.headers);
    assert_eq!(call("GET", "/api/v1/jobs", Some(SUBMIT), None, &[]).status, 200);

    // Nothing of a token reaches the logs.
    let log = read_logs(logs.path(), &["coordinator.log", "coordinator-2.log"]);
    for secret in [READ, SUBMIT, "not-a-token-at-all-here"] {
        assert!(!log.contains(secret), "a token is in the coordinator's log");
    }
    assert!(log.contains("caller=submit#1"), "the log names the caller by role\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_response_outside_the_schema() {
    let st = std::env::var("LAMINA_SCHEMATHESIS")
        .expect("LAMINA_SCHEMATHESIS names Schemathesis: run the tests with ops/test.sh (or eval \"$(ops/api-tools.sh)\" first)");
    let _settings = s3_settings();
    let prefix = format!("lamina-test-{}-fuzz", std::process::id());
    let _queues = Queues(prefix.clone());
    let logs = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let tokens = format!("read:{READ} submit:{SUBMIT}");
    let _fleet = Fleet(vec![spawn_with(
        "lamina-coordinator",
        &prefix,
        &logs.path().join("coordinator.log"),
        &[("LAMINA_HTTP_ADDR", &http), ("LAMINA_API_TOKENS", &tokens), ("LAMINA_API_RATE", "100000"), ("LAMINA_API_BURST", "100000")],
    )]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_get(&http, "/health", None).ends_with("ok\n") {
        assert!(Instant::now() < deadline, "the coordinator did not start\n{}", read_logs(logs.path(), &["coordinator.log"]));
        std::thread::sleep(Duration::from_millis(200));
    }
    let report = tempfile::tempdir().unwrap();
    let schemathesis = |extra: &[&str]| {
        let out = Command::new(&st)
            .args(["run", &format!("http://{http}/api/v1/openapi.json")])
            .args(["--header", &format!("Authorization: Bearer {SUBMIT}")])
            .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,ignored_auth,unsupported_method"])
            // One worker: with two, Hypothesis parses lambdas' source with `ast.parse` on two
            // threads at once, which Python 3.11 can fail with a spurious "AST constructor
            // recursion depth mismatch" SystemError (CPython gh-106905), an error of the fuzzer
            // itself, not a finding about the API.
            .args(["--phases", "examples,coverage,fuzzing", "--max-examples", "60", "--seed", "20261206", "--workers", "1"])
            .args(extra)
            .env("NO_COLOR", "1")
            .current_dir(report.path())
            .output()
            .expect("run schemathesis");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // The figures for the record: operations and test cases.
        for line in text.lines().filter(|l| l.contains("generated") || l.contains("passed") || l.contains("failed") || l.contains("Missing")) {
            eprintln!("schemathesis: {}", line.trim());
        }
        assert!(out.status.success(), "Schemathesis found problems:\n{}\n{}", explain(&out), read_logs(logs.path(), &["coordinator.log"]));
        text
    };
    // Every operation, with the ids the fuzzer makes up (unknown jobs: 400 or 404).
    let text = schemathesis(&[]);
    assert!(text.contains("5 passed"), "not every operation was tested:\n{text}");
    // The operations on one job again, on a job that exists (an empty input: it finishes at
    // once), so the fuzzer reaches what lies behind the 404.
    let bucket = new_bucket("fuzz");
    let job = format!(r#"{{"input": "s3://{bucket}/in", "output": "s3://{bucket}/out", "model": "fscs"}}"#);
    let made = Command::new("curl")
        .args(["-sS", "-H", &format!("Authorization: Bearer {SUBMIT}"), "-H", "Content-Type: application/json", "--data-binary", &job])
        .arg(format!("http://{http}/api/v1/jobs"))
        .output()
        .unwrap();
    let made: Value = serde_json::from_slice(&made.stdout).unwrap_or_default();
    let job_id = made["job_id"].as_str().unwrap_or_else(|| panic!("no job made: {made}")).to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http_get(&http, &format!("/api/v1/jobs/{job_id}"), Some(READ)).contains(r#""state":"finished""#) {
        assert!(Instant::now() < deadline, "the empty job did not finish\n{}", read_logs(logs.path(), &["coordinator.log"]));
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::write(report.path().join("schemathesis.toml"), format!("[parameters]\n\"path.job_id\" = \"{job_id}\"\n")).unwrap();
    let text = schemathesis(&["--include-path-regex", "job_id"]);
    assert!(text.contains("3 passed") && !text.contains("Missing test data"), "the operations on one job were not tested on it:\n{text}");
    // The coordinator is still up after the run.
    assert!(http_get(&http, "/health", None).ends_with("ok\n"), "the coordinator died under the fuzzer");
}
