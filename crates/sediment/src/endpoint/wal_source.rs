//! The pageserver side of a writable endpoint: pointing the timeline's WAL
//! receiver at the endpoint (`PUT …/wal_source`), waiting until the
//! pageserver has ingested everything the endpoint wrote, and detaching
//! (`DELETE …/wal_source`).

use std::time::{Duration, Instant};

use anyhow::bail;
use postgres_wal::Lsn;
use serde_json::json;

use crate::client::ApiClient;
use crate::workdir::Workdir;

/// How long `endpoint stop` waits for the pageserver to ingest the
/// endpoint's last WAL. Overridable for slow machines.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
const CATCH_UP_TIMEOUT_ENV: &str = "SEDIMENT_CATCH_UP_TIMEOUT_SECS";
const POLL_INTERVAL: Duration = Duration::from_millis(200);

fn path(tenant: &str, timeline: &str) -> String {
    format!("/v1/tenant/{tenant}/timeline/{timeline}/wal_source")
}

/// An endpoint the pageserver streams from.
pub struct Source<'a> {
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// The replication role's password (hex: no quoting needed).
    pub replication_password: &'a str,
}

/// The libpq connection string the pageserver uses to stream from `source`.
pub fn source_connstr(source: &Source<'_>) -> String {
    format!(
        "host=127.0.0.1 port={} user={} password={} dbname=postgres",
        source.port,
        super::passwords::REPLICATION_ROLE,
        source.replication_password
    )
}

/// Makes the pageserver stream the timeline's WAL from the endpoint on
/// `port`. The pageserver probes the source first and answers 400/404/409
/// with a reason, which becomes the error.
pub fn attach(
    client: &ApiClient,
    tenant: &str,
    timeline: &str,
    source: &Source<'_>,
) -> anyhow::Result<()> {
    put_source(client, tenant, timeline, source, false)
}

/// Like [`attach`], for an endpoint that kept running while its tenant was
/// attached again (from remote storage, after the pageserver lost its
/// disk): streaming continues at the timeline's recovered head, not at the
/// start position of a new endpoint.
pub fn resume(
    client: &ApiClient,
    tenant: &str,
    timeline: &str,
    source: &Source<'_>,
) -> anyhow::Result<()> {
    put_source(client, tenant, timeline, source, true)
}

fn put_source(
    client: &ApiClient,
    tenant: &str,
    timeline: &str,
    source: &Source<'_>,
    resume: bool,
) -> anyhow::Result<()> {
    client
        .put(
            &path(tenant, timeline),
            &json!({"connstr": source_connstr(source), "resume": resume}),
        )
        .map(drop)
}

/// Stops the pageserver's WAL receiver for the timeline.
pub fn detach(client: &ApiClient, tenant: &str, timeline: &str) -> anyhow::Result<()> {
    client.delete(&path(tenant, timeline)).map(drop)
}

/// How long `endpoint start` waits for the pageserver to connect and stream.
const STREAMING_TIMEOUT: Duration = Duration::from_secs(60);
/// How often `wait_streaming` looks: the pageserver usually connects within
/// tens of milliseconds, and every poll of 200 ms added up to that to the
/// start time (each look is one psql, ~20 ms).
const STREAMING_POLL: Duration = Duration::from_millis(25);

/// Waits until the endpoint on `port` shows the pageserver as a streaming
/// synchronous standby. Until then a commit would hang, and a stop would
/// leave WAL the pageserver never received.
pub fn wait_streaming(workdir: &Workdir, port: u16) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let state = super::pg::query(
            workdir,
            port,
            "SELECT state || '/' || sync_state FROM pg_stat_replication WHERE application_name = 'pageserver'",
        )?;
        if state.lines().any(|line| line == "streaming/sync") {
            return Ok(());
        }
        if started.elapsed() >= STREAMING_TIMEOUT {
            bail!(
                "the pageserver did not start streaming from the endpoint within {} s (replication state: {:?}); see the pageserver log",
                STREAMING_TIMEOUT.as_secs(),
                state
            );
        }
        std::thread::sleep(STREAMING_POLL);
    }
}

/// The timeline's ingested head.
fn last_record_lsn(client: &ApiClient, tenant: &str, timeline: &str) -> anyhow::Result<Lsn> {
    Ok(client.timeline_info(tenant, timeline)?.last_record_lsn)
}

/// How long `endpoint stop` waits for ingest (`SEDIMENT_CATCH_UP_TIMEOUT_SECS`).
pub fn catch_up_timeout() -> Duration {
    std::env::var(CATCH_UP_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(CATCH_UP_TIMEOUT, Duration::from_secs)
}

/// Waits until the pageserver has ingested the record that starts at
/// `record_start` (the endpoint's shutdown checkpoint) and returns its head;
/// `None` when `timeout` passed first. `last_record_lsn` is the *end* of the
/// last ingested record, and records do not overlap, so it is past
/// `record_start` exactly when that record is in.
pub fn wait_ingested(
    client: &ApiClient,
    tenant: &str,
    timeline: &str,
    record_start: Lsn,
    timeout: Duration,
) -> anyhow::Result<Option<Lsn>> {
    let started = Instant::now();
    loop {
        let head = last_record_lsn(client, tenant, timeline)?;
        if head > record_start {
            return Ok(Some(head));
        }
        if started.elapsed() >= timeout {
            return Ok(None);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The error for a stop that waited `timeout` in vain.
pub fn not_caught_up(head_hint: &str, record_start: Lsn, timeout: Duration) -> anyhow::Error {
    anyhow::anyhow!(
        "the pageserver has not ingested the endpoint's shutdown checkpoint at {record_start} ({head_hint}); \
         gave up after {} s (the WAL source stays attached: run `endpoint stop` again to keep waiting, \
         or raise {CATCH_UP_TIMEOUT_ENV})",
        timeout.as_secs()
    )
}
