//! Helpers for Lamina's end-to-end tests: find and run the real binaries, make input images
//! of every kind (good and bad), and check outputs by decoding and recompositing them.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use std::sync::atomic::{AtomicUsize, Ordering};

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use lamina_common::config::S3Settings;
use lamina_common::manifest::Manifest;
use lamina_common::messages::TaskResult;

pub mod craft;
mod private;

pub use private::{make_certificates, PrivateBroker, PrivateGarage};

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// A binary of this workspace, built by `cargo test --workspace` next to the test executables.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(path.exists(), "{} not built: run the tests with `cargo test --workspace`", path.display());
    path
}

/// Runs `lamina ARGS` on the CPU with log-line progress and returns its output.
pub fn lamina(args: &[&str]) -> Output {
    Command::new(binary("lamina"))
        .args(args)
        .env("LAMINA_DEVICE", "cpu")
        .env("LAMINA_PROGRESS", "log")
        .env("RUST_LOG", "info")
        .output()
        .expect("run lamina")
}

/// Prints a command's output when a test fails, so the failure explains itself.
pub fn explain(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A bundled sample photo, shrunk so its longest side is `side` (tests stay fast on a CPU).
pub fn sample(name: &str, side: u32) -> DynamicImage {
    let img = image::open(repo_root().join("assets/samples").join(name)).expect("bundled sample");
    img.thumbnail(side, side)
}

pub fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

pub fn write(dir: &Path, key: &str, bytes: &[u8]) {
    let path = dir.join(key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

/// A JPEG carrying an EXIF orientation tag (6 = rotate 90 degrees clockwise to display).
pub fn jpeg_with_orientation(img: &DynamicImage, orientation: u16) -> Vec<u8> {
    let jpeg = encode(&DynamicImage::ImageRgb8(img.to_rgb8()), ImageFormat::Jpeg);
    let mut tiff = b"II*\0\x08\0\0\0\x01\0".to_vec();
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&u32::from(orientation).to_le_bytes());
    tiff.extend_from_slice(&0u32.to_le_bytes());
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A valid PNG whose header claims `width` x `height` pixels (a decompression bomb's shape).
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = encode(&DynamicImage::ImageRgb8(image::RgbImage::new(4, 4)), ImageFormat::Png);
    // Signature (8), IHDR length (4), "IHDR" (4), then width and height.
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// The CRC-32 of PNG chunks (and zip, gzip).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// The one job's records folder under `out`.
pub fn job_dir(out: &Path) -> PathBuf {
    let jobs: Vec<PathBuf> = std::fs::read_dir(out.join("_lamina/jobs"))
        .expect("job records")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(jobs.len(), 1, "expected one job folder, found {jobs:?}");
    jobs.into_iter().next().expect("one job")
}

pub fn results(job: &Path) -> Vec<TaskResult> {
    std::fs::read_to_string(job.join("results.jsonl"))
        .expect("results.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("result line"))
        .collect()
}

pub fn manifest(out: &Path, key: &str) -> Option<Manifest> {
    let bytes = std::fs::read(out.join(key).join("manifest.json")).ok()?;
    Some(serde_json::from_slice(&bytes).expect("manifest parses"))
}

/// Decodes every layer the manifest lists, composites them bottom to top with "over", and
/// returns the PSNR (dB) against `input` (premultiplied by its alpha), `None` if identical.
pub fn recomposite_psnr(dir: &Path, manifest: &Manifest, input: &DynamicImage) -> Option<f64> {
    let input = input.to_rgba32f();
    let (w, h) = (manifest.canvas.width, manifest.canvas.height);
    assert_eq!((input.width(), input.height()), (w, h), "canvas size differs from the input");
    let mut acc = vec![[0f32; 3]; (w * h) as usize];
    for layer in &manifest.layers {
        let img = image::open(dir.join(layer.png())).expect("layer decodes");
        assert_eq!(img.color(), image::ColorType::Rgba8, "{} is not 8-bit RGBA", layer.png());
        let img = img.to_rgba8();
        assert_eq!((img.width(), img.height()), (w, h), "{} has the wrong size", layer.png());
        for (px, out) in img.pixels().zip(acc.iter_mut()) {
            let a = f32::from(px[3]) / 255.0;
            for c in 0..3 {
                out[c] = f32::from(px[c]) / 255.0 * a + out[c] * (1.0 - a);
            }
        }
    }
    let mut se = 0f64;
    for (px, out) in input.pixels().zip(&acc) {
        for c in 0..3 {
            let d = f64::from(out[c]) - f64::from(px[c] * px[3]);
            se += d * d;
        }
    }
    let mse = se / f64::from(3 * w * h);
    (mse > 0.0).then(|| 10.0 * (1.0 / mse).log10())
}

/// The S3 settings of the test services (`LAMINA_S3_*`, exported by `ops/services.sh`).
pub fn s3_settings() -> S3Settings {
    let s = S3Settings::from_env().expect("LAMINA_S3_* settings");
    assert!(
        s.endpoint.is_some(),
        "S3 tests need the test services: run them with ops/test.sh (or eval \"$(ops/services.sh)\" first)"
    );
    s
}

/// Creates a fresh bucket with Garage's CLI and lets the test key use it, so tests running
/// in parallel never see each other's objects.
pub fn new_bucket(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let bucket = format!("lamina-{}-{}-{name}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let garage = std::env::var("LAMINA_TEST_GARAGE").expect("LAMINA_TEST_GARAGE (set by ops/services.sh)");
    let key = std::env::var("LAMINA_S3_ACCESS_KEY_ID").expect("LAMINA_S3_ACCESS_KEY_ID");
    let run = |args: &str| {
        let status = Command::new("sh").arg("-c").arg(format!("{garage} {args} > /dev/null")).status().expect("run garage");
        assert!(status.success(), "garage {args} failed");
    };
    run(&format!("bucket create {bucket}"));
    run(&format!("bucket allow --read --write --owner {bucket} --key {key}"));
    bucket
}

/// The logs `names` in `dir`, each under a `--- name` heading, for a failing test to show.
pub fn read_logs(dir: &Path, names: &[&str]) -> String {
    names.iter().map(|l| format!("--- {l}\n{}", std::fs::read_to_string(dir.join(l)).unwrap_or_default())).collect()
}

/// Child processes killed when the test ends, however it ends.
pub struct Fleet(pub Vec<Child>);

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a service binary with its own queues (`prefix`), on the CPU, logging to `log`;
/// a coordinator gets a free loopback port for its HTTP endpoints.
pub fn spawn_service(bin: &str, prefix: &str, log: &std::path::Path) -> Child {
    spawn_with(bin, prefix, log, &[("LAMINA_HTTP_ADDR", &format!("127.0.0.1:{}", free_port()))])
}

/// Like [`spawn_service`], with extra environment variables.
pub fn spawn_with(bin: &str, prefix: &str, log: &std::path::Path, env: &[(&str, &str)]) -> Child {
    let file = std::fs::File::create(log).unwrap();
    Command::new(binary(bin))
        // Each worker's metrics endpoint on a port of its own.
        .env("LAMINA_METRICS_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .env("LAMINA_AMQP_PREFIX", prefix)
        .env("LAMINA_DEVICE", "cpu")
        .env("LAMINA_HEARTBEAT_SECONDS", "1")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// `n` inputs: the bundled photos, small, and generated gradients of about `side` pixels,
/// over nested prefixes.
pub fn fleet_images(n: usize, side: u32) -> BTreeMap<String, DynamicImage> {
    let mut out = BTreeMap::new();
    for name in ["astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "logo.png", "retina.jpg", "rocket.jpg"] {
        out.insert(format!("photos/{name}.png"), sample(name, side + 16));
    }
    for i in 0..(n - out.len()) as u32 {
        let img = RgbImage::from_fn(side + i % 9, side - 4 + i % 7, |x, y| {
            Rgb([(x * 9 + i * 7) as u8, (y * 11 + i * 3) as u8, ((x + y) * 5 + i * 13) as u8])
        });
        out.insert(format!("generated/{}/{}/img-{i:03}.png", i % 5, i % 3), DynamicImage::ImageRgb8(img));
    }
    out
}

/// `lamina submit --wait` on the queues of `prefix`.
pub fn submit(input: &str, output: &str, prefix: &str) -> std::process::Output {
    submit_with(input, output, prefix, &[])
}

/// `lamina submit --wait` on the queues of `prefix`, with more options.
pub fn submit_with(input: &str, output: &str, prefix: &str, options: &[&str]) -> std::process::Output {
    Command::new(binary("lamina"))
        .args(["submit", "--input", input, "--output", output, "--wait"])
        .args(options)
        .env("LAMINA_AMQP_PREFIX", prefix)
        .output()
        .unwrap()
}

/// Runs the independent document readers (`tests/tools/check_documents.py`, psd-tools and
/// the OpenRaster spec, with the venv's python in `LAMINA_PYTHON`) over image folders and
/// returns their JSON reports; fails the test with their reason if a document is wrong. With
/// `gimp`, GIMP (installed by ops/test.sh) also opens every PSD and flattens it.
pub fn check_documents(dirs: &[&Path], gimp: bool) -> Vec<serde_json::Value> {
    let python = std::env::var("LAMINA_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut command = Command::new(python);
    command.arg(repo_root().join("tests/tools/check_documents.py"));
    if gimp {
        command.arg("--gimp");
    }
    let out = command.args(dirs).output().expect("run check_documents.py");
    assert!(out.status.success(), "independent readers refused a document:\n{}", explain(&out));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("report line")).collect()
}


/// A plain HTTP/1.1 GET, as a scraper would make it; returns the whole response.
pub fn http_get(addr: &str, path: &str, token: Option<&str>) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else { return String::new() };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let _ = write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// The JSON body of a coordinator endpoint (Null when it does not answer yet).
pub fn http_json(addr: &str, path: &str) -> serde_json::Value {
    let response = http_get(addr, path, None);
    response.split_once("\r\n\r\n").and_then(|(_, body)| serde_json::from_str(body).ok()).unwrap_or_default()
}

/// The queues and exchange of a test's AMQP prefix, deleted from the broker when the test
/// ends (declare it before the [`Fleet`], so the processes are gone first): quorum queues
/// left behind by every run would pile up on a development broker.
pub struct Queues(pub String);

impl Drop for Queues {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async move {
                use lamina_common::amqp;
                let url = std::env::var("LAMINA_AMQP_URL").unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".into());
                let settings = amqp::AmqpSettings::new(url, prefix);
                let connect = amqp::connect(&settings, "lamina-test-cleanup");
                let Ok(Ok(connection)) = tokio::time::timeout(std::time::Duration::from_secs(10), connect).await else { return };
                for queue in [settings.jobs(), settings.events(), settings.dead(), settings.dead_watch(), settings.tasks("default")] {
                    // A channel each: a failed delete closes its channel.
                    if let Ok(channel) = connection.create_channel().await {
                        let _ = channel.queue_delete(queue.as_str(), lapin::options::QueueDeleteOptions::default()).await;
                    }
                }
                if let Ok(channel) = connection.create_channel().await {
                    let exchange = settings.dead_letter_exchange();
                    let _ = channel.exchange_delete(exchange.as_str(), lapin::options::ExchangeDeleteOptions::default()).await;
                }
                let _ = connection.close(200, "cleaned up").await;
            });
        });
        let _ = cleanup.join();
    }
}
