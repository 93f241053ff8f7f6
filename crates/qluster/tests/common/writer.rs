//! A client as an application would run it: one connection through a multi-host
//! connection string with `target_session_attrs=read-write` (libpq semantics, as
//! tokio-postgres implements them), committing one row every [`INTERVAL`] and recording
//! which rows were acknowledged and when.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Cluster;

pub const INTERVAL: Duration = Duration::from_millis(50);
const COMMIT_TIMEOUT: Duration = Duration::from_secs(3);

/// What the writer saw.
#[derive(Debug, Default, Clone)]
pub struct Record {
    /// Values whose commit was acknowledged, with the time of the acknowledgement.
    pub acked: Vec<(i32, Instant)>,
}

impl Record {
    /// The largest time between two consecutive acknowledgements within `[from, to]`.
    pub fn largest_gap(&self, from: Instant, to: Instant) -> Duration {
        let times: Vec<Instant> = self
            .acked
            .iter()
            .map(|(_, t)| *t)
            .filter(|t| *t >= from && *t <= to)
            .collect();
        times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

pub struct Writer {
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<Record>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Starts committing into table `acked (v int primary key)`.
    pub fn start(c: &Cluster) -> Writer {
        let hosts: Vec<String> = c.nodes.iter().map(|_| "127.0.0.1".to_string()).collect();
        let ports: Vec<String> = c.nodes.iter().map(|n| n.db_port.to_string()).collect();
        let conninfo = format!(
            "host={} port={} user=postgres password={} dbname=postgres connect_timeout=1 \
             target_session_attrs=read-write",
            hosts.join(","),
            ports.join(","),
            super::SUPERUSER_PASSWORD
        );
        let rt = c.proxies.as_ref().expect("a proxied cluster").runtime();
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new(Mutex::new(Record::default()));
        let task = rt.spawn(write_loop(conninfo, stop.clone(), record.clone()));
        Writer { stop, record, task }
    }

    /// What was acknowledged so far.
    pub fn snapshot(&self) -> Record {
        self.record.lock().unwrap().clone()
    }

    pub fn stop(self, c: &Cluster) -> Record {
        self.stop.store(true, Ordering::SeqCst);
        let rt = c.proxies.as_ref().expect("a proxied cluster").runtime();
        let _ = rt.block_on(self.task);
        let r = self.record.lock().unwrap().clone();
        r
    }
}

async fn write_loop(conninfo: String, stop: Arc<AtomicBool>, record: Arc<Mutex<Record>>) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut value = 0i32;
    let mut next = tokio::time::Instant::now();
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep_until(next).await;
        next += INTERVAL;
        if tokio::time::Instant::now() > next {
            next = tokio::time::Instant::now();
        }
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
                Ok((cl, conn)) => {
                    tokio::spawn(conn);
                    Some(cl)
                }
                Err(_) => None,
            };
        }
        let Some(cl) = &client else { continue };
        value += 1;
        let r = tokio::time::timeout(
            COMMIT_TIMEOUT,
            cl.execute("INSERT INTO acked VALUES ($1)", &[&value]),
        )
        .await;
        match r {
            Ok(Ok(_)) => record.lock().unwrap().acked.push((value, Instant::now())),
            _ => client = None,
        }
    }
}
