//! Services of a test's own: a RabbitMQ node and a Garage S3 server on loopback ports of
//! their own, that a test may stop, kill and start again without touching the shared ones.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::free_port;

/// Sends `signal` (e.g. "TERM", "KILL") to a process group.
fn kill_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill").args([&format!("-{signal}"), "--", &format!("-{pgid}")]).status();
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), std::time::Duration::from_millis(300)).is_ok()
}

/// A RabbitMQ node of the test's own (Debian's rabbitmq-server, on loopback ports of its
/// own, its data in a temporary folder), so a test can stop and restart the broker without
/// touching the machine's.
pub struct PrivateBroker {
    pub port: u16,
    dist_port: u16,
    name: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
    tls: bool,
}

/// A CA and a server certificate for 127.0.0.1 / localhost, made with the openssl CLI.
pub fn make_certificates(dir: &Path) {
    let run = |args: &str| {
        let out = Command::new("sh").arg("-c").arg(format!("cd '{}' && openssl {args}", dir.display())).output().expect("openssl");
        assert!(out.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run("req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=lamina-test-ca");
    run("req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost");
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n").unwrap();
    run("x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext");
    // The broker must be able to read its key.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
}

impl PrivateBroker {
    pub fn start() -> PrivateBroker {
        PrivateBroker::start_with(false)
    }

    /// A node that accepts only TLS (`amqps://`), with a certificate for 127.0.0.1 signed
    /// by a CA made for the test ([`PrivateBroker::ca_file`]).
    pub fn start_tls() -> PrivateBroker {
        PrivateBroker::start_with(true)
    }

    /// The PEM file of the CA that signed a TLS node's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn start_with(tls: bool) -> PrivateBroker {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = tempfile::tempdir().expect("broker dir");
        let (port, dist_port) = (free_port(), free_port());
        let name = format!("lamina-test-{}-{}@localhost", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let conf = if tls {
            make_certificates(dir.path());
            let d = dir.path().display();
            format!(
                "listeners.tcp = none\nlisteners.ssl.default = 127.0.0.1:{port}\nssl_options.cacertfile = {d}/ca.pem\n\
                 ssl_options.certfile = {d}/server.pem\nssl_options.keyfile = {d}/server.key\nssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n"
            )
        } else {
            format!("listeners.tcp.default = 127.0.0.1:{port}\n")
        };
        std::fs::write(dir.path().join("rabbitmq.conf"), conf).unwrap();
        std::fs::write(dir.path().join("env.conf"), "").unwrap();
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        let mut broker = PrivateBroker { port, dist_port, name, dir, child: None, tls };
        broker.boot();
        broker
    }

    fn boot(&mut self) {
        let server = ["/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/sbin/rabbitmq-server"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("rabbitmq-server not installed: ops/services.sh installs it");
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("server.log")).unwrap();
        use std::os::unix::process::CommandExt;
        let child = Command::new(server)
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_CONF_ENV_FILE", d.join("env.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start rabbitmq-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        while !port_open(self.port) {
            assert!(std::time::Instant::now() < deadline, "private RabbitMQ did not start:\n{}", self.log());
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "amqps" } else { "amqp" };
        format!("{scheme}://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the node (SIGTERM: RabbitMQ shuts down cleanly) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(child.id(), "TERM");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            kill_group(child.id(), "KILL");
            let _ = child.wait();
            while port_open(self.port) || port_open(self.dist_port) {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    }

    /// Starts the node again on the same ports and data: durable queues and their messages
    /// come back.
    pub fn restart(&mut self) {
        self.stop();
        self.boot();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            kill_group(child.id(), "KILL");
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

/// A Garage S3 server of the test's own (same binary and credentials as the shared test
/// server, its own ports and data), so a test can take the object store down and back up.
pub struct PrivateGarage {
    pub s3_port: u16,
    admin_port: u16,
    pub bucket: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateGarage {
    pub fn start() -> PrivateGarage {
        let garage = std::env::var("LAMINA_TEST_GARAGE").expect("LAMINA_TEST_GARAGE (set by ops/services.sh)");
        let bin = garage.split_whitespace().next().expect("garage binary").to_owned();
        let dir = tempfile::tempdir().expect("garage dir");
        let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
        let d = dir.path().display();
        let region = std::env::var("LAMINA_S3_REGION").unwrap_or_else(|_| "us-east-1".into());
        std::fs::write(
            dir.path().join("garage.toml"),
            format!(
                "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\nrpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
                 rpc_secret = \"{}\"\n\n[s3_api]\ns3_region = \"{region}\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\n\
                 root_domain = \".s3.localhost\"\n\n[admin]\napi_bind_addr = \"127.0.0.1:{admin_port}\"\n",
                "7".repeat(64)
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("bin"), bin).unwrap();
        let mut garage = PrivateGarage { s3_port, admin_port, bucket: "lamina-private".into(), dir, child: None };
        garage.boot();
        garage
    }

    fn boot(&mut self) {
        let d = self.dir.path();
        let bin = std::fs::read_to_string(d.join("bin")).unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(d.join("garage.log")).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(d.join("garage.toml"))
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", std::env::var("LAMINA_S3_ACCESS_KEY_ID").expect("LAMINA_S3_ACCESS_KEY_ID"))
            .env("GARAGE_DEFAULT_SECRET_KEY", std::env::var("LAMINA_S3_SECRET_ACCESS_KEY").expect("LAMINA_S3_SECRET_ACCESS_KEY"))
            .env("GARAGE_DEFAULT_BUCKET", &self.bucket)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start garage");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let health = std::net::TcpStream::connect(("127.0.0.1", self.admin_port)).ok().and_then(|mut s| {
                use std::io::{Read, Write};
                write!(s, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
                let mut r = String::new();
                s.read_to_string(&mut r).ok()?;
                Some(r.starts_with("HTTP/1.1 200"))
            });
            if health == Some(true) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "private Garage did not start:\n{}", self.log());
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }

    /// Kills the server: every request fails until [`PrivateGarage::start_again`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn start_again(&mut self) {
        self.kill();
        self.boot();
    }
}

impl Drop for PrivateGarage {
    fn drop(&mut self) {
        self.kill();
    }
}

