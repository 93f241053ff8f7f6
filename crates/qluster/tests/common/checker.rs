//! The split-brain checker: one task per node writes to that node's database directly
//! (not through the proxies) every few milliseconds and records when each attempt was
//! sent and answered, and whether the database accepted it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Cluster;

/// How long one write may take before it counts as "maybe accepted".
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
const PAUSE: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Refused,
    /// No answer in time: the write may have been accepted.
    Unknown,
}

#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub node: usize,
    pub sent: Instant,
    pub answered: Instant,
    pub outcome: Outcome,
}

impl Attempt {
    fn may_have_written(&self) -> bool {
        self.outcome != Outcome::Refused
    }
}

pub struct Checker {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Attempt>>>,
}

impl Checker {
    /// Starts writing to every node's database (table `probe` must exist).
    pub fn start(c: &Cluster) -> Checker {
        let rt = c.proxies.as_ref().expect("a proxied cluster").runtime();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..c.nodes.len())
            .map(|i| rt.spawn(probe(i, c.nodes[i].db_port, stop.clone())))
            .collect();
        Checker { stop, tasks }
    }

    /// Stops the probes and returns every attempt.
    pub fn stop(self, c: &Cluster) -> Vec<Attempt> {
        self.stop.store(true, Ordering::SeqCst);
        let rt = c.proxies.as_ref().expect("a proxied cluster").runtime();
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(rt.block_on(t).unwrap());
        }
        all
    }
}

async fn probe(node: usize, port: u16, stop: Arc<AtomicBool>) -> Vec<Attempt> {
    let conninfo = format!(
        "host=127.0.0.1 port={port} user=postgres password={} dbname=postgres \
         connect_timeout=1",
        super::SUPERUSER_PASSWORD
    );
    let mut out = Vec::new();
    let mut client: Option<tokio_postgres::Client> = None;
    let mut value = node as i32 * 1_000_000;
    while !stop.load(Ordering::SeqCst) {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
                Ok((cl, conn)) => {
                    tokio::spawn(conn);
                    Some(cl)
                }
                Err(_) => None,
            };
        }
        let Some(cl) = &client else {
            // Not accepting connections: not accepting writes.
            tokio::time::sleep(PAUSE).await;
            continue;
        };
        value += 1;
        let sent = Instant::now();
        let r = tokio::time::timeout(
            WRITE_TIMEOUT,
            cl.execute("INSERT INTO probe VALUES ($1)", &[&value]),
        )
        .await;
        let outcome = match r {
            Ok(Ok(_)) => Outcome::Accepted,
            Ok(Err(_)) => Outcome::Refused,
            Err(_) => Outcome::Unknown,
        };
        if outcome == Outcome::Unknown {
            client = None;
        }
        out.push(Attempt {
            node,
            sent,
            answered: Instant::now(),
            outcome,
        });
        tokio::time::sleep(PAUSE).await;
    }
    out
}

/// When node `i`'s last accepted (or maybe accepted) write was answered.
pub fn last_accepted(attempts: &[Attempt], i: usize) -> Option<Instant> {
    attempts
        .iter()
        .filter(|a| a.node == i && a.may_have_written())
        .map(|a| a.answered)
        .max()
}

/// Two writes on different nodes that may both have been accepted at one moment:
/// their send..answer intervals overlap.
pub fn overlapping_writers(attempts: &[Attempt]) -> Option<(Attempt, Attempt)> {
    let mut writes: Vec<Attempt> = attempts
        .iter()
        .filter(|a| a.may_have_written())
        .copied()
        .collect();
    writes.sort_by_key(|a| a.sent);
    // Sweep in send order, tracking the latest-answered write so far per node.
    let mut open: Vec<Attempt> = Vec::new();
    for w in writes {
        open.retain(|o| o.answered >= w.sent);
        if let Some(o) = open.iter().find(|o| o.node != w.node) {
            return Some((*o, w));
        }
        open.push(w);
    }
    None
}

/// A one-line account of the attempts per node.
pub fn summarize(attempts: &[Attempt], nodes: usize, since: Instant) -> String {
    (0..nodes)
        .map(|i| {
            let mine: Vec<_> = attempts.iter().filter(|a| a.node == i).collect();
            let count = |o: Outcome| mine.iter().filter(|a| a.outcome == o).count();
            let window = |o: Outcome| {
                let ts: Vec<_> = mine
                    .iter()
                    .filter(|a| a.outcome == o)
                    .map(|a| offset_ms(a.answered, since))
                    .collect();
                match (ts.iter().min(), ts.iter().max()) {
                    (Some(a), Some(b)) => format!("{a}..{b} ms"),
                    _ => "-".into(),
                }
            };
            format!(
                "node {}: {} accepted ({}), {} refused, {} unknown",
                i + 1,
                count(Outcome::Accepted),
                window(Outcome::Accepted),
                count(Outcome::Refused),
                count(Outcome::Unknown)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Milliseconds from `since` to `t`, negative when `t` is earlier.
fn offset_ms(t: Instant, since: Instant) -> i64 {
    if t >= since {
        (t - since).as_millis() as i64
    } else {
        -((since - t).as_millis() as i64)
    }
}
