//! `BASE_BACKUP` as the PostgreSQL 15 walsender answers it, so that stock
//! `pg_basebackup` can fetch a branch:
//!
//! 1. a result set with the start LSN and timeline id;
//! 2. a result set listing the tablespaces (just the data directory, with
//!    its size in kB);
//! 3. one CopyOut stream of typed CopyData messages: `n` (new archive
//!    `base.tar`), `d` (tar bytes), `p` (progress, when asked for);
//!    then, if asked for, `m` (manifest follows) and the manifest in `d`
//!    messages;
//! 4. CopyDone, a result set with the end LSN, and CommandComplete.
//!
//! The tar is produced by [`datadir::Basebackup`] on a blocking thread and
//! handed over through a small bounded channel, so a slow client slows the
//! producer instead of filling memory; if the client goes away or the
//! service shuts down, the channel closes and the producer stops.

use std::io::Write;
use std::sync::Arc;

use datadir::{Basebackup, BasebackupError};
use postgres_wal::Lsn;
use storage::{GetError, Timeline};
use tokio::sync::{mpsc, oneshot};

use crate::command::BaseBackupOptions;
use crate::connection::{ClientError, Connection, Outcome};
use crate::proto::{ProtocolError, INT8_OID, OID_OID, TEXT_OID};

/// Bytes of tar per CopyData message.
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks in flight between the producer and the socket.
const CHANNEL_CHUNKS: usize = 4;
/// Minimum bytes between two progress messages.
const PROGRESS_EVERY_BYTES: u64 = 4 << 20;

/// What the producer reports once the backup is planned.
struct Planned {
    start: Lsn,
    end: Lsn,
    pg_timeline_id: u32,
    total_bytes: u64,
}

/// Serves one `BASE_BACKUP` command. Errors before the COPY starts are
/// returned for a normal ErrorResponse; errors during it are sent as an
/// ErrorResponse inside the COPY, which libpq reports to pg_basebackup.
pub(crate) async fn send_base_backup(
    conn: &mut Connection,
    timeline: Arc<Timeline>,
    lsn: Option<Lsn>,
    options: BaseBackupOptions,
) -> Result<Outcome, ClientError> {
    if let Some(lsn) = lsn {
        wait_for_lsn(conn, &timeline, lsn).await?;
    }
    let timeline_id = timeline.id();
    let (planned_tx, planned_rx) = oneshot::channel();
    let (data_tx, mut data_rx) = mpsc::channel::<Vec<u8>>(CHANNEL_CHUNKS);
    let with_manifest = options.manifest;
    let producer = tokio::task::spawn_blocking(move || {
        produce(&timeline, lsn, with_manifest, planned_tx, data_tx)
    });
    let corruption = conn.shared.config.corruption.clone();
    let note = |error: &BasebackupError| {
        if crate::corruption::is_corrupt_backup(error) {
            corruption.record(timeline_id, &error.to_string());
        }
        backup_error(error)
    };
    let planned = match planned_rx.await {
        Ok(Ok(planned)) => planned,
        Ok(Err(error)) => return Err(note(&error)),
        Err(_) => return Err(producer_failed(producer.await)),
    };
    let result = stream(conn, &planned, &options, &mut data_rx).await;
    drop(data_rx);
    if let Err(error) = result {
        return Ok(io_failure(error));
    }
    match producer.await {
        Ok(Ok(manifest)) => {
            let out = &mut conn.out;
            if let Some(manifest) = manifest {
                out.copy_data(b'm', &[]);
                for chunk in manifest.chunks(CHUNK_BYTES) {
                    out.copy_data(b'd', chunk);
                }
            }
            out.copy_done();
            lsn_result(out, planned.end, planned.pg_timeline_id);
            out.command_complete("BASE_BACKUP");
            Ok(Outcome::Done)
        }
        Ok(Err(error)) => {
            let error = note(&error);
            conn.out.error("ERROR", error.code, &error.message);
            Ok(Outcome::Done)
        }
        Err(join) => {
            let message = format!("base backup task failed: {join}");
            conn.out.error("ERROR", "XX000", &message);
            Ok(Outcome::Done)
        }
    }
}

/// Waits (bounded) for ingest to reach `lsn`, so a backup of a branch that
/// is still streaming in does not fail spuriously.
pub(crate) async fn wait_for_lsn(
    conn: &Connection,
    timeline: &Arc<Timeline>,
    lsn: Lsn,
) -> Result<(), ClientError> {
    if timeline.last_record_lsn() >= lsn {
        return Ok(());
    }
    let timeout = conn.shared.config.wait_lsn_timeout;
    let timeline = timeline.clone();
    tokio::task::spawn_blocking(move || timeline.wait_lsn(lsn, timeout))
        .await
        .map_err(|e| ClientError::new("XX000", format!("wait task failed: {e}")))?
        .map_err(|e| ClientError::new("22023", format!("LSN {lsn} is not in this timeline: {e}")))
}

/// The blocking half: plan, report, then write the tar into the channel;
/// returns the manifest when one was asked for.
fn produce(
    timeline: &Timeline,
    lsn: Option<Lsn>,
    with_manifest: bool,
    planned_tx: oneshot::Sender<Result<Planned, BasebackupError>>,
    data_tx: mpsc::Sender<Vec<u8>>,
) -> Result<Option<Vec<u8>>, BasebackupError> {
    let backup = match Basebackup::prepare(timeline, lsn) {
        Ok(backup) => backup,
        Err(error) => {
            let _ = planned_tx.send(Err(error));
            return Ok(None);
        }
    };
    let planned = Planned {
        start: backup.lsn(),
        end: backup.end_lsn(),
        pg_timeline_id: backup.pg_timeline_id(),
        total_bytes: backup.total_size_bytes(),
    };
    if planned_tx.send(Ok(planned)).is_err() {
        return Err(BasebackupError::Cancelled);
    }
    let mut writer = ChannelWriter {
        tx: data_tx,
        buf: Vec::with_capacity(CHUNK_BYTES),
    };
    if with_manifest {
        backup.write_tar_with_manifest(&mut writer).map(Some)
    } else {
        backup.write_tar(&mut writer).map(|()| None)
    }
}

/// Sends the result sets and the COPY stream; returns when the producer
/// has closed the channel (finished or failed).
async fn stream(
    conn: &mut Connection,
    planned: &Planned,
    options: &BaseBackupOptions,
    data_rx: &mut mpsc::Receiver<Vec<u8>>,
) -> Result<(), ProtocolError> {
    let out = &mut conn.out;
    lsn_result(out, planned.start, planned.pg_timeline_id);
    out.row_description(&[
        ("spcoid", OID_OID, 4),
        ("spclocation", TEXT_OID, -1),
        ("size", INT8_OID, 8),
    ]);
    let size_kb = planned.total_bytes.div_ceil(1024).to_string();
    out.data_row(&[None, None, Some(&size_kb)]);
    out.command_complete("SELECT");
    out.copy_out_response();
    out.copy_data(b'n', b"base.tar\0\0");
    out.flush_to(conn.stream.get_mut()).await?;
    let mut sent = 0u64;
    let mut reported = 0u64;
    while let Some(chunk) = data_rx.recv().await {
        sent += chunk.len() as u64;
        conn.out.copy_data(b'd', &chunk);
        if options.progress && sent - reported >= PROGRESS_EVERY_BYTES {
            conn.out.copy_data(b'p', &sent.to_be_bytes());
            reported = sent;
        }
        conn.out.flush_to(conn.stream.get_mut()).await?;
    }
    if options.progress {
        conn.out.copy_data(b'p', &sent.to_be_bytes());
    }
    Ok(())
}

/// A one-row result set `(recptr text, tli int8)`.
fn lsn_result(out: &mut crate::proto::Out, lsn: Lsn, tli: u32) {
    out.row_description(&[("recptr", TEXT_OID, -1), ("tli", INT8_OID, 8)]);
    let (lsn, tli) = (lsn.to_string(), tli.to_string());
    out.data_row(&[Some(&lsn), Some(&tli)]);
    out.command_complete("SELECT");
}

pub(crate) fn backup_error(error: &BasebackupError) -> ClientError {
    let code = match error {
        BasebackupError::LsnNotAvailable { .. } | BasebackupError::Missing { .. } => "22023",
        BasebackupError::Read {
            source: GetError::ShuttingDown,
            ..
        }
        | BasebackupError::Cancelled => "57P01",
        _ if crate::corruption::is_corrupt_backup(error) => crate::corruption::DATA_CORRUPTED,
        _ => "XX000",
    };
    ClientError::new(code, error.to_string())
}

type ProducerResult = Result<Result<Option<Vec<u8>>, BasebackupError>, tokio::task::JoinError>;

fn producer_failed(join: ProducerResult) -> ClientError {
    match join {
        Ok(Err(error)) => backup_error(&error),
        Ok(Ok(_)) => ClientError::new("XX000", "base backup ended before it was planned"),
        Err(join) => ClientError::new("XX000", format!("base backup task failed: {join}")),
    }
}

/// The client connection failed mid-stream: nothing more can be sent.
fn io_failure(error: ProtocolError) -> Outcome {
    tracing::info!(%error, "base backup stream to client failed");
    Outcome::Close
}

/// A `Write` that ships fixed-size chunks through the channel.
struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn ship(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK_BYTES - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_BYTES {
            self.ship()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.ship()
    }
}
