//! The coordinator's status page end to end: the real `lamina-coordinator` and one real
//! `lamina-worker` (a model that holds each image 400 ms, so the job is still running while
//! we look), the real RabbitMQ and a real S3 server (Garage), and Debian's Chromium in
//! headless mode as the browser. The page at `/` must show the running job with its
//! progress, the worker in the fleet table, no dead letters and no error; a screenshot of it
//! must render at 1280x800 (set `LAMINA_STATUS_SCREENSHOT=path.png` to keep it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use image::ImageFormat;
use lamina_common::store::S3Store;
use lamina_common::ObjectStore;
use lamina_tests::*;
use serde_json::Value;

/// A GET's status code and body, `None` while nothing answers.
fn get_status(addr: &str, path: &str) -> Option<(u16, String)> {
    let response = http_get(addr, path, None);
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// A JSON array endpoint (`/jobs`, `/fleet`); empty until the coordinator answers.
fn json_list(addr: &str, path: &str) -> Vec<Value> {
    match get_status(addr, path) {
        Some((200, body)) => serde_json::from_str(&body).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Polls `GET /jobs` until the job satisfies `ready`; on timeout, the last view seen.
async fn wait_for_job(addr: &str, job_id: &str, timeout: Duration, ready: impl Fn(&Value) -> bool) -> Result<Value, Option<Value>> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(job) = json_list(addr, "/jobs").into_iter().find(|j| j["job_id"].as_str() == Some(job_id)) {
            if ready(&job) {
                return Ok(job);
            }
            last = Some(job);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

/// Debian's Chromium, on PATH or where the package puts it.
fn chromium() -> PathBuf {
    let on_path =
        std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("chromium")).find(|p| p.is_file()));
    on_path.or_else(|| Some(PathBuf::from("/usr/bin/chromium")).filter(|p| p.is_file())).expect(
        "the status page test needs Debian's chromium as its browser: ops/test.sh installs it \
         (or: apt-get install chromium)",
    )
}

struct Browser {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs headless Chromium once on `url` with `args`, in a fresh profile under `scratch`;
/// killed if it takes over a minute.
fn headless(scratch: &Path, name: &str, args: &[String], url: &str) -> Browser {
    let out = scratch.join(format!("{name}.stdout"));
    let err = scratch.join(format!("{name}.stderr"));
    let mut child = Command::new(chromium())
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=6000",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", scratch.join(format!("{name}-profile")).display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    let success = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Browser {
        success,
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    }
}

/// Where the opening tag carrying `attr="value"` is: from its `<` to just after its `>`.
/// (Chromium serialises attributes in double quotes, with `&`, `"`, `<` and `>` escaped.)
fn find_tag(html: &str, attr: &str, value: &str) -> Option<(usize, usize)> {
    let at = html.find(&format!(" {attr}=\"{value}\""))?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')? + 1;
    Some((start, end))
}

/// An attribute's value in an opening tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!(" {name}=\"");
    let at = tag.find(&needle)? + needle.len();
    Some(&tag[at..at + tag[at..].find('"')?])
}

/// The text between the opening tag carrying `attr="value"` and the next tag.
fn text_after<'a>(html: &'a str, attr: &str, value: &str) -> Option<&'a str> {
    let (_, end) = find_tag(html, attr, value)?;
    Some(&html[end..end + html[end..].find('<')?])
}

/// The whole `<tr ...>...</tr>` whose opening tag carries `attr="value"`.
fn row<'a>(html: &'a str, attr: &str, value: &str) -> Option<&'a str> {
    let (start, _) = find_tag(html, attr, value)?;
    Some(&html[start..start + html[start..].find("</tr>")?])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_shows_a_running_job_and_the_fleet_in_a_real_browser() {
    let _browser = chromium(); // before anything starts: a missing browser fails at once
    let settings = s3_settings();
    let bucket = new_bucket("status");
    let prefix = format!("lamina-status-{}", std::process::id());
    let _queues = Queues(prefix.clone());
    let logs = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let _fleet = Fleet(vec![
        spawn_with("lamina-coordinator", &prefix, &logs.path().join("coordinator.log"), &[("LAMINA_HTTP_ADDR", &http)]),
        spawn_with("lamina-worker", &prefix, &logs.path().join("worker.log"), &[("LAMINA_MODEL", "capacity-test:400")]),
    ]);
    let show_logs = || {
        read_logs(logs.path(), &["coordinator.log", "worker.log"])
    };
    let input = S3Store::new(&settings, &bucket, "in").await;
    for (key, img) in &fleet_images(40, 24) {
        input.put(key, encode(img, ImageFormat::Png)).await.unwrap();
    }

    // Submit without waiting: the job id is the first line.
    let (src, dst) = (format!("s3://{bucket}/in"), format!("s3://{bucket}/out"));
    let p = prefix.clone();
    let submitted = tokio::task::spawn_blocking(move || {
        Command::new(binary("lamina"))
            .args(["submit", "--input", &src, "--output", &dst, "--model", "capacity-test:400"])
            .env("LAMINA_AMQP_PREFIX", &p)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(submitted.status.success(), "{}\n{}", explain(&submitted), show_logs());
    let job_id = String::from_utf8_lossy(&submitted.stdout).lines().next().unwrap_or_default().trim().to_owned();
    assert!(!job_id.is_empty(), "submit printed no job id\n{}", explain(&submitted));

    // Look once a few images are done and the whole input is listed.
    let running = wait_for_job(&http, &job_id, Duration::from_secs(30), |j| {
        j["state"] == "running" && j["done"].as_u64().unwrap_or(0) >= 3 && j["listing_complete"] == true
    })
    .await;
    if let Err(last) = &running {
        panic!("the job never showed 3 done images while running; last seen: {last:?}\n{}", show_logs());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fleet = json_list(&http, "/fleet");
    while fleet.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        fleet = json_list(&http, "/fleet");
    }
    assert_eq!(fleet.len(), 1, "{fleet:?}\n{}", show_logs());
    let worker = fleet[0]["worker"].as_str().unwrap_or_default().to_owned();
    assert!(worker.starts_with("lamina-worker-"), "{fleet:?}");

    // The page itself is served at `/`.
    let page = get_status(&http, "/");
    assert!(
        matches!(&page, Some((200, body)) if body.contains("<title>Lamina")),
        "GET / should serve the status page: {page:?}\n{}",
        show_logs()
    );

    // The DOM the browser built from `/overview`.
    let scratch = tempfile::tempdir().unwrap();
    let url = format!("http://{http}/");
    let (dir, u) = (scratch.path().to_path_buf(), url.clone());
    let args = vec!["--window-size=1280,800".to_owned(), "--dump-dom".to_owned()];
    let dump = tokio::task::spawn_blocking(move || headless(&dir, "dump", &args, &u)).await.unwrap();
    assert!(dump.success && dump.stdout.contains("</html>"), "chromium --dump-dom failed: {}\n{}", dump.stderr, show_logs());
    let dom = &dump.stdout;
    let explain_dom = || format!("--- DOM\n{dom}\n{}", show_logs());

    let job_row = row(dom, "data-job-id", &job_id).unwrap_or_else(|| panic!("no row for job {job_id}\n{}", explain_dom()));
    assert_eq!(attr(job_row, "data-state"), Some("running"), "{job_row}\n{}", explain_dom());
    let (start, end) = find_tag(job_row, "class", "progress").unwrap_or_else(|| panic!("no progress bar in {job_row}"));
    let progress = &job_row[start..end];
    let done: u64 = attr(progress, "data-done").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{progress}"));
    assert!(done >= 3, "{progress}\n{}", explain_dom());
    assert_eq!(attr(progress, "data-total"), Some("40"), "{progress}\n{}", explain_dom());

    let worker_row = row(dom, "data-worker", &worker).unwrap_or_else(|| panic!("no fleet row for {worker}\n{}", explain_dom()));
    assert_eq!(attr(worker_row, "data-pool"), Some("default"), "{worker_row}");
    assert!(worker_row.contains(">default</td>"), "{worker_row}");
    assert_eq!(attr(worker_row, "data-stale"), Some("false"), "{worker_row}");

    assert_eq!(text_after(dom, "id", "dead-letters").map(str::trim), Some("0"), "{}", explain_dom());
    let (start, end) = find_tag(dom, "id", "error").unwrap_or_else(|| panic!("no #error banner\n{}", explain_dom()));
    assert!(dom[start..end].contains(" hidden"), "the error banner is shown: {}\n{}", &dom[start..end], explain_dom());
    assert_eq!(text_after(dom, "id", "error").map(str::trim), Some(""), "{}", explain_dom());
    let updated = text_after(dom, "id", "updated").unwrap_or_default();
    assert!(updated.len() == 8 && updated.as_bytes()[2] == b':', "#updated should hold the refresh time, not {updated:?}");

    // What a person sees: a 1280x800 picture that is not blank.
    let png = scratch.path().join("status.png");
    let (dir, u) = (scratch.path().to_path_buf(), url);
    let args = vec![format!("--screenshot={}", png.display()), "--window-size=1280,800".to_owned()];
    let shot = tokio::task::spawn_blocking(move || headless(&dir, "screenshot", &args, &u)).await.unwrap();
    assert!(shot.success, "chromium --screenshot failed: {}", shot.stderr);
    let picture = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}\n{}", png.display(), shot.stderr)).to_rgb8();
    assert_eq!((picture.width(), picture.height()), (1280, 800));
    let corner = *picture.get_pixel(0, 0);
    assert!(picture.pixels().any(|p| *p != corner), "the screenshot is blank");
    if let Some(keep) = std::env::var_os("LAMINA_STATUS_SCREENSHOT") {
        std::fs::copy(&png, &keep).unwrap_or_else(|e| panic!("copy the screenshot to {keep:?}: {e}"));
    }

    // Let the job finish before the fleet goes away.
    match wait_for_job(&http, &job_id, Duration::from_secs(120), |j| j["state"] == "finished").await {
        Ok(job) => assert_eq!(job["done"].as_u64(), Some(40), "{job}\n{}", show_logs()),
        Err(last) => panic!("the job did not finish in 120 s; last seen: {last:?}\n{}", show_logs()),
    }
}
