//! Test harness: real `qluster` processes on loopback with free ports in temp dirs,
//! optionally behind partitionable TCP proxies ([`proxy`]).
#![allow(dead_code)]

pub mod checker;
pub mod proxy;
pub mod writer;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A free TCP port on 127.0.0.1 ([`testkit::free_port`]).
pub fn free_port() -> u16 {
    testkit::free_port().expect("no free port")
}

pub struct NodeProc {
    pub id: u64,
    /// Address the daemon listens on (its own loopback address when proxied).
    pub ip: IpAddr,
    /// The daemon's and the database's real ports (the test talks to these directly;
    /// peers go through the proxies when there are any).
    pub api_port: u16,
    pub db_port: u16,
    /// The ports peers (and the cluster map) use: the proxies' when proxied.
    pub peer_api_port: u16,
    pub peer_db_port: u16,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub child: Option<Child>,
}

pub struct Cluster {
    pub nodes: Vec<NodeProc>,
    pub root: tempfile::TempDir,
    pub http: reqwest::blocking::Client,
    pub proxies: Option<proxy::Proxies>,
}

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The cluster's API token (`api-token`), which mutating requests carry.
pub const API_TOKEN: &str = "test-token-5f2a9c81d4e7b036";
/// Password of the Postgres superuser `postgres` on every node.
pub const SUPERUSER_PASSWORD: &str = "su-pw-8c1e4b7d2f";
/// Password of the replication role `qluster_replication` on every node.
pub const REPLICATION_PASSWORD: &str = "repl-pw-3a9d6e0c5b";

/// The secrets every node's YAML carries.
pub fn secrets_yaml() -> String {
    format!(
        "api-token: {API_TOKEN}\nsuperuser-password: {SUPERUSER_PASSWORD}\n\
         replication-password: {REPLICATION_PASSWORD}\n"
    )
}

impl Cluster {
    /// `n` founding nodes; `extra` is appended to every node's YAML.
    pub fn new(n: u64, manage_pg: bool, extra: &str) -> Cluster {
        Self::build(n, manage_pg, extra, false)
    }

    /// Like [`Cluster::new`], but every node has its own loopback address and peers
    /// reach its API and database only through proxies that [`Cluster::partition`] can
    /// cut.
    pub fn with_proxies(n: u64, manage_pg: bool, extra: &str) -> Cluster {
        Self::build(n, manage_pg, extra, true)
    }

    fn build(n: u64, manage_pg: bool, extra: &str, proxied: bool) -> Cluster {
        let mut root = tempfile::tempdir().unwrap();
        // QLUSTER_KEEP=1 keeps the node directories (logs, data) for post-mortems.
        if std::env::var_os("QLUSTER_KEEP").is_some() {
            root.disable_cleanup(true);
            eprintln!("cluster dir: {}", root.path().display());
        }
        // Postgres runs as another OS user and must traverse the directories.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let n = n as usize;
        let ips: Vec<IpAddr> = (0..n)
            .map(|i| {
                if proxied {
                    proxy::node_ip(i)
                } else {
                    IpAddr::from([127, 0, 0, 1])
                }
            })
            .collect();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        // What peers are told: the proxies' ports when proxied.
        let advertised: Vec<(u16, u16)> = if proxied {
            (0..n).map(|_| (free_port(), free_port())).collect()
        } else {
            ports.clone()
        };
        let peers: String = advertised
            .iter()
            .enumerate()
            .map(|(i, (api, db))| {
                format!(
                    "  - {{id: {}, ip: {}, api-port: {api}, db-port: {db}}}\n",
                    i + 1,
                    ips[i]
                )
            })
            .collect();
        let proxies = proxied.then(|| {
            let p = proxy::Proxies::new();
            let sources: HashMap<IpAddr, usize> =
                ips.iter().enumerate().map(|(i, ip)| (*ip, i)).collect();
            let sources = std::sync::Arc::new(sources);
            let localhost = IpAddr::from([127, 0, 0, 1]);
            for i in 0..n {
                let (api, db) = ports[i];
                let (papi, pdb) = advertised[i];
                let api_up = SocketAddr::new(ips[i], api);
                p.add(i, SocketAddr::new(ips[i], papi), api_up, sources.clone());
                // Postgres listens on localhost only.
                let db_up = SocketAddr::new(localhost, db);
                p.add(i, SocketAddr::new(ips[i], pdb), db_up, sources.clone());
            }
            p
        });
        let source_binding = if proxied {
            "bind-source-address: true\n"
        } else {
            ""
        };
        let mut nodes = Vec::new();
        for (i, (api, db)) in ports.iter().enumerate() {
            let id = i as u64 + 1;
            let dir = root.path().join(format!("node{id}"));
            std::fs::create_dir_all(&dir).unwrap();
            let config = dir.join("qluster.yaml");
            let yaml = format!(
                "node-id: {id}\nip: {}\napi-port: {api}\ndb-port: {db}\ndata-dir: {}\n\
                 manage-postgres: {manage_pg}\nreadonly-scan-interval: 1s\n{source_binding}\
                 {}peers:\n{peers}{extra}",
                ips[i],
                dir.display(),
                secrets_yaml()
            );
            write_config(&config, &yaml);
            nodes.push(NodeProc {
                id,
                ip: ips[i],
                api_port: *api,
                db_port: *db,
                peer_api_port: advertised[i].0,
                peer_db_port: advertised[i].1,
                dir,
                config,
                child: None,
            });
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let mut c = Cluster {
            nodes,
            root,
            http,
            proxies,
        };
        for i in 0..n {
            c.start(i);
        }
        c
    }

    pub fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("qluster.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_qluster"))
            .arg("--config")
            .arg(&node.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        node.child = Some(child);
    }

    /// `kill -9` the node's qluster and its postmaster (and the postmaster's children).
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let pidfile = self.nodes[i].dir.join("pgdata").join("postmaster.pid");
        if let Ok(text) = std::fs::read_to_string(pidfile) {
            if let Some(pid) = text
                .lines()
                .next()
                .and_then(|l| l.trim().parse::<i32>().ok())
            {
                let children = children_of(pid);
                // Children may already be gone: kill's complaints are noise.
                for p in std::iter::once(pid).chain(children) {
                    let _ = Command::new("kill")
                        .arg("-9")
                        .arg(p.to_string())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
    }

    /// Sends `signal` to node `i`'s daemon only (its Postgres is left alone).
    pub fn signal_daemon(&self, i: usize, signal: nix::sys::signal::Signal) {
        let pid = self.nodes[i].child.as_ref().expect("a running daemon").id();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
    }

    /// Ends node `i`'s daemon with `signal` and reaps it; its Postgres is not touched.
    pub fn end_daemon(&mut self, i: usize, signal: nix::sys::signal::Signal) {
        self.signal_daemon(i, signal);
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.wait();
        }
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        let addr = SocketAddr::new(self.nodes[i].ip, self.nodes[i].api_port);
        format!("http://{addr}{path}")
    }

    /// Cuts node `i`'s links to every other node (Raft, API and Postgres replication).
    pub fn partition(&self, i: usize) {
        self.proxies.as_ref().expect("a proxied cluster").cut(i);
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.proxies.as_ref().expect("a proxied cluster").heal();
    }

    pub fn get(&self, i: usize, path: &str) -> (u16, Value) {
        match self.http.get(self.url(i, path)).send() {
            Ok(r) => {
                let code = r.status().as_u16();
                (code, r.json().unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// A request carrying the API token (as every operator's would).
    pub fn send(&self, method: &str, i: usize, path: &str, body: Option<&str>) -> (u16, Value) {
        self.send_as(Some(API_TOKEN), method, i, path, body)
    }

    /// A request with `Authorization: Bearer <token>`, or without the header (`None`).
    pub fn send_as(
        &self,
        token: Option<&str>,
        method: &str,
        i: usize,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, self.url(i, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        match req.send() {
            Ok(r) => {
                let code = r.status().as_u16();
                (code, r.json().unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// Indices of nodes answering 200 on `/is-leader`.
    pub fn leaders(&self) -> Vec<usize> {
        self.leaders_except(None)
    }

    /// Like [`Cluster::leaders`], without asking node `skip` (a frozen daemon would
    /// hold each request until the client's timeout).
    pub fn leaders_except(&self, skip: Option<usize>) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| Some(*i) != skip)
            .filter(|i| self.nodes[*i].child.is_some() && self.get(*i, "/is-leader").0 == 200)
            .collect()
    }

    pub fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let [l] = self.leaders()[..] {
                return l;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no single leader within {timeout:?}; {}", self.dump());
    }

    pub fn dump(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let rpc = self
                .http
                .get(self.url(i, "/rpc"))
                .send()
                .ok()
                .and_then(|r| r.text().ok())
                .unwrap_or_default();
            let rpc: String = rpc.lines().take(1).collect();
            let log = std::fs::read_to_string(n.dir.join("qluster.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            out.push_str(&format!(
                "\n--- node {} rpc: {rpc}\n{}",
                n.id,
                tail.join("\n")
            ));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
        // A failing test keeps its node directories (logs, data) for the post-mortem.
        if std::thread::panicking() {
            self.root.disable_cleanup(true);
            eprintln!(
                "test failed; node logs kept in {}",
                self.root.path().display()
            );
        }
    }
}

fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // Field 4 (after the parenthesised command) is the parent pid.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let ppid = rest
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<i32>().ok());
            if ppid == Some(pid) {
                out.push(p);
            }
        }
    }
    out
}

/// Writes a node's config file, mode 0600 as it holds the cluster's secrets.
pub fn write_config(path: &std::path::Path, yaml: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, yaml.as_bytes()).unwrap();
}

/// Runs SQL on a node's database over TCP as the superuser (with its password); `Err`
/// when it does not accept it.
pub fn sql(port: u16, query: &str) -> Result<Vec<String>, String> {
    let out = Command::new(format!("{PG_BIN}/psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", query])
        .env("PGCONNECT_TIMEOUT", "2")
        .env("PGPASSWORD", SUPERUSER_PASSWORD)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

pub fn wait_until<F: FnMut() -> bool>(timeout: Duration, what: &str, mut f: F) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}
