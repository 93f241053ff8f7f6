//! The server side of `pagestream_v2` (see [`crate::pagestream`]): after
//! CopyBothResponse, one task reads requests in batches (every request
//! already complete in the read buffer joins the batch), the requests of a
//! batch whose LSN has arrived are read from the store together on one
//! blocking thread (a per-request blocking task would cost more than a hot
//! page read), a request for an LSN not reached yet waits in its own task,
//! at most [`MAX_IN_FLIGHT`] run at once, and one writer sends answers as
//! they complete, coalescing those that are ready into one write.
//!
//! Reading and writing run concurrently so a client can pipeline: it sends
//! a batch (or read-ahead) of requests without waiting, and the slowest
//! page does not hold back the others.
//!
//! A read that meets a corrupt layer file is answered with an error
//! response (SQLSTATE `XX001`, naming the file and the key) and recorded in
//! the [`CorruptionLog`] (counted, logged at ERROR, kept for the
//! timeline's status): the client never gets a page in its place.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use postgres_wal::record::{RelFileNode, BLCKSZ};
use postgres_wal::Lsn;
use storage::{GetError, Key, Timeline};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, Semaphore};

use crate::connection::ClientError;
use crate::corruption::CorruptionLog;
use crate::pagestream::{
    LazyBackup, RelSizeEntry, RelTag, Request, RequestKind, Response, ResponseKind, SegmentEntry,
};
use crate::proto::{self, Out, ProtocolError};

/// Requests served concurrently on one connection; more wait to be read.
pub const MAX_IN_FLIGHT: usize = 256;

/// Runs the stream until the client sends CopyDone/Terminate or closes.
/// Returns `Ok(true)` when the connection may continue with simple queries
/// (CopyDone), `Ok(false)` when it must close.
pub(crate) async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: &mut BufReader<S>,
    timeline: Arc<Timeline>,
    wait_timeout: Duration,
    corruption: Arc<CorruptionLog>,
) -> Result<bool, ProtocolError> {
    let mut out = Out::default();
    out.copy_both_response();
    out.flush_to(stream.get_mut()).await?;
    // Requests the client pipelined behind its query may already sit in the
    // connection's buffer: read them first.
    let leftover = stream.buffer().to_vec();
    stream.consume(leftover.len());
    let (rd, mut wr) = tokio::io::split(stream.get_mut());
    let mut rd = BufReader::with_capacity(READ_BUFFER, leftover.as_slice().chain(rd));
    let (tx, mut rx) = mpsc::channel::<Result<Response, String>>(MAX_IN_FLIGHT);
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let reader = async move {
        loop {
            let batch = match read_batch(&mut rd).await {
                Ok(Batch::Requests(batch)) => batch,
                Ok(Batch::End { more_queries }) => return Ok::<bool, ProtocolError>(more_queries),
                Err(BatchError::Client(message)) => {
                    let _ = tx.send(Err(message)).await;
                    return Ok(false);
                }
                Err(BatchError::Protocol(e)) => return Err(e),
            };
            let Ok(permits) = limit.clone().acquire_many_owned(batch.len() as u32).await else {
                return Ok(false);
            };
            dispatch(batch, &timeline, wait_timeout, &corruption, &tx, permits);
        }
    };
    let writer = async move {
        let mut buf = BytesMut::new();
        let mut out = Out::default();
        while let Some(first) = rx.recv().await {
            let mut next = Some(first);
            // Coalesce every answer already waiting into one write.
            while let Some(item) = next.take() {
                match item {
                    Ok(response) => {
                        buf.clear();
                        buf.reserve(response.encoded_len());
                        response.encode(&mut buf);
                        out.copy_data_raw(&buf);
                    }
                    Err(message) => {
                        out.error("ERROR", "08P01", &message);
                        wr.write_all(&out.buf).await?;
                        wr.flush().await?;
                        return Err(ProtocolError::Violation(message));
                    }
                }
                if out.buf.len() < 256 * 1024 {
                    next = rx.try_recv().ok();
                }
            }
            wr.write_all(&out.buf).await?;
            wr.flush().await?;
            out.buf.clear();
        }
        Ok::<(), ProtocolError>(())
    };
    let (read, written) = tokio::join!(reader, writer);
    written?;
    read
}

/// Bytes buffered from the client: many requests are read per syscall.
const READ_BUFFER: usize = 64 * 1024;
/// Most requests served by one blocking task.
const MAX_BATCH: usize = 64;

enum Batch {
    Requests(Vec<Request>),
    /// CopyDone (`more_queries`) or Terminate / end of input.
    End {
        more_queries: bool,
    },
}

enum BatchError {
    /// The client broke the framing: report it, then close.
    Client(String),
    Protocol(ProtocolError),
}

/// Reads one request, then every further one already complete in the
/// buffer (those cost no I/O), so a pipelining client is served in batches.
async fn read_batch<R: AsyncRead + Unpin>(rd: &mut BufReader<R>) -> Result<Batch, BatchError> {
    let mut batch = Vec::new();
    loop {
        let message = match proto::read_message(rd).await {
            Ok(Some(message)) => message,
            Ok(None) if batch.is_empty() => {
                return Ok(Batch::End {
                    more_queries: false,
                })
            }
            Ok(None) => return Ok(Batch::Requests(batch)),
            Err(e) => return Err(BatchError::Protocol(e)),
        };
        match message.tag {
            b'd' => {}
            // A CopyDone behind requests: they are answered before the
            // stream ends only if they came in an earlier batch; clients
            // wait for their answers before ending, so this is rare.
            b'c' => return Ok(Batch::End { more_queries: true }),
            b'X' => {
                return Ok(Batch::End {
                    more_queries: false,
                })
            }
            other => {
                return Err(BatchError::Client(format!(
                    "message type '{}' inside pagestream",
                    other.escape_ascii()
                )))
            }
        }
        let request =
            Request::decode(&message.body).map_err(|e| BatchError::Client(e.to_string()))?;
        batch.push(request);
        if batch.len() >= MAX_BATCH || !complete_message_buffered(rd.buffer()) {
            return Ok(Batch::Requests(batch));
        }
    }
}

/// Whether `buf` starts with a whole protocol message.
fn complete_message_buffered(buf: &[u8]) -> bool {
    match buf.get(1..5) {
        Some(len) => {
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            buf.len() > len
        }
        None => false,
    }
}

/// Runs a batch: requests whose LSN has arrived are read together on one
/// blocking thread; the others each wait for their LSN in their own task.
fn dispatch(
    batch: Vec<Request>,
    timeline: &Arc<Timeline>,
    wait_timeout: Duration,
    corruption: &Arc<CorruptionLog>,
    tx: &mpsc::Sender<Result<Response, String>>,
    mut permits: tokio::sync::OwnedSemaphorePermit,
) {
    let last_record_lsn = timeline.last_record_lsn();
    let (ready, waiting): (Vec<_>, Vec<_>) =
        batch.into_iter().partition(|r| r.lsn <= last_record_lsn);
    // (A lazy base backup at LSN 0/0 means "the last record": always ready.)
    for request in waiting {
        let permit = permits.split(1);
        let (tx, timeline, corruption) = (tx.clone(), timeline.clone(), corruption.clone());
        tokio::spawn(async move {
            let response = answer(timeline, request, wait_timeout, &corruption).await;
            let _ = tx.send(Ok(response)).await;
            drop(permit);
        });
    }
    if ready.is_empty() {
        return;
    }
    let (tx, timeline, corruption) = (tx.clone(), timeline.clone(), corruption.clone());
    tokio::task::spawn_blocking(move || {
        for request in ready {
            let kind = read(&timeline, request.lsn, request.kind)
                .unwrap_or_else(|e| error_kind(&timeline, &corruption, e));
            if tx
                .blocking_send(Ok(Response {
                    id: request.id,
                    kind,
                }))
                .is_err()
            {
                break;
            }
        }
        drop(permits);
    });
}

/// Answers one request: waits for its LSN (bounded), then reads on a
/// blocking thread.
async fn answer(
    timeline: Arc<Timeline>,
    request: Request,
    wait_timeout: Duration,
    corruption: &CorruptionLog,
) -> Response {
    let id = request.id;
    let result = match wait_for(&timeline, request.lsn, wait_timeout).await {
        Err(e) => Err(e),
        Ok(()) => {
            let reader = timeline.clone();
            tokio::task::spawn_blocking(move || read(&reader, request.lsn, request.kind))
                .await
                .unwrap_or_else(|e| {
                    Err(ClientError::new("XX000", format!("read task failed: {e}")))
                })
        }
    };
    let kind = result.unwrap_or_else(|e| error_kind(&timeline, corruption, e));
    Response { id, kind }
}

/// The error response for a failed request; corrupt data is recorded.
fn error_kind(timeline: &Timeline, corruption: &CorruptionLog, e: ClientError) -> ResponseKind {
    if e.code == crate::corruption::DATA_CORRUPTED {
        corruption.record(timeline.id(), &e.message);
    }
    ResponseKind::Error {
        sqlstate: e.code.to_owned(),
        message: e.message,
    }
}

async fn wait_for(timeline: &Timeline, lsn: Lsn, timeout: Duration) -> Result<(), ClientError> {
    if timeline.last_record_lsn() >= lsn {
        return Ok(());
    }
    match tokio::time::timeout(timeout, timeline.wait_lsn_async(lsn)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ClientError::new("57P01", e.to_string())),
        Err(_) => Err(ClientError::new(
            "22023",
            format!(
                "timed out after {timeout:?} waiting for LSN {lsn} (timeline {} is at {})",
                timeline.id(),
                timeline.last_record_lsn()
            ),
        )),
    }
}

/// The blocking read behind one request.
fn read(timeline: &Timeline, lsn: Lsn, kind: RequestKind) -> Result<ResponseKind, ClientError> {
    match kind {
        RequestKind::GetPage { tag, blkno } => {
            page(timeline, tag, blkno, lsn).map(ResponseKind::Page)
        }
        RequestKind::GetPageRange { tag, blkno, count } => (0..count)
            .map(|i| {
                let blkno = blkno.checked_add(i).ok_or_else(|| {
                    ClientError::new("22003", "block number out of range".to_owned())
                })?;
                page(timeline, tag, blkno, lsn)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(ResponseKind::Pages),
        RequestKind::RelSize { tag } => match rel_size(timeline, tag, lsn)? {
            Some(blocks) => Ok(ResponseKind::RelSize(blocks)),
            None => Err(no_relation(tag, lsn)),
        },
        RequestKind::RelExists { tag } => {
            rel_size(timeline, tag, lsn).map(|size| ResponseKind::RelExists(size.is_some()))
        }
        RequestKind::DbSize { spc_node, db_node } => {
            let mut blocks = 0u64;
            for (rel_node, fork) in rel_dir(timeline, spc_node, db_node, lsn)? {
                let tag = RelTag {
                    rel: RelFileNode {
                        spc_node,
                        db_node,
                        rel_node,
                    },
                    fork,
                };
                blocks += u64::from(rel_size(timeline, tag, lsn)?.unwrap_or(0));
            }
            Ok(ResponseKind::DbSize(blocks * BLCKSZ as u64))
        }
        RequestKind::ListRelations => list_relations(timeline, lsn).map(ResponseKind::Listing),
        RequestKind::LazyBasebackup => lazy_backup(timeline, lsn).map(ResponseKind::LazyBasebackup),
    }
}

fn no_relation(tag: RelTag, lsn: Lsn) -> ClientError {
    ClientError::new(
        "42P01",
        format!(
            "relation {}/{}/{} fork {:?} does not exist at LSN {lsn}",
            tag.rel.spc_node, tag.rel.db_node, tag.rel.rel_node, tag.fork
        ),
    )
}

fn get_optional(timeline: &Timeline, key: Key, lsn: Lsn) -> Result<Option<Bytes>, ClientError> {
    match timeline.get(key, lsn) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(GetError::KeyNotFound { .. }) => Ok(None),
        Err(e) if crate::corruption::is_corrupt_read(&e) => {
            // The layer error names the file; the operator also needs the key.
            let mut error = ClientError::from_get(&e);
            error.message = format!("reading key {key} at LSN {lsn}: {}", error.message);
            Err(error)
        }
        Err(e) => Err(ClientError::from_get(&e)),
    }
}

/// A page; a block the store has no version of (inside a fork, where
/// PostgreSQL's relation extension wrote zeros) is a zero page, exactly as
/// in a base backup.
fn page(timeline: &Timeline, tag: RelTag, blkno: u32, lsn: Lsn) -> Result<Bytes, ClientError> {
    match get_optional(timeline, Key::rel_block(tag.rel, tag.fork, blkno), lsn)? {
        None => Ok(Bytes::from(vec![0u8; BLCKSZ])),
        Some(page) if page.len() == BLCKSZ => Ok(page),
        Some(page) => Err(ClientError::new(
            "XX001",
            format!(
                "stored page {blkno} of relation {}/{}/{} has {} bytes, expected {BLCKSZ}",
                tag.rel.spc_node,
                tag.rel.db_node,
                tag.rel.rel_node,
                page.len()
            ),
        )),
    }
}

fn rel_dir(
    timeline: &Timeline,
    spc_node: u32,
    db_node: u32,
    lsn: Lsn,
) -> Result<Vec<(u32, postgres_wal::record::ForkNumber)>, ClientError> {
    match get_optional(timeline, Key::rel_dir(spc_node, db_node), lsn)? {
        None => Ok(Vec::new()),
        Some(bytes) => datadir::layout::decode_rel_dir(&bytes).ok_or_else(|| {
            ClientError::new(
                "XX001",
                format!("stored relation list of {spc_node}/{db_node} is malformed"),
            )
        }),
    }
}

/// The size of a fork, or `None` when the relation directory does not list
/// it at `lsn` (sizes of dropped relations stay in the store).
fn rel_size(timeline: &Timeline, tag: RelTag, lsn: Lsn) -> Result<Option<u32>, ClientError> {
    let listed = rel_dir(timeline, tag.rel.spc_node, tag.rel.db_node, lsn)?
        .contains(&(tag.rel.rel_node, tag.fork));
    if !listed {
        return Ok(None);
    }
    timeline
        .get_rel_size(tag.rel, tag.fork, lsn)
        .map(|size| Some(size.unwrap_or(0)))
        .map_err(|e| ClientError::from_get(&e))
}

fn list_relations(timeline: &Timeline, lsn: Lsn) -> Result<Vec<RelSizeEntry>, ClientError> {
    let mut dbs = vec![(datadir::layout::GLOBAL_TABLESPACE_OID, 0)];
    if let Some(bytes) = get_optional(timeline, Key::db_dir(), lsn)? {
        dbs.extend(
            datadir::layout::decode_db_dir(&bytes)
                .ok_or_else(|| ClientError::new("XX001", "stored database list is malformed"))?,
        );
    }
    let mut entries = Vec::new();
    for (spc_node, db_node) in dbs {
        for (rel_node, fork) in rel_dir(timeline, spc_node, db_node, lsn)? {
            let rel = RelFileNode {
                spc_node,
                db_node,
                rel_node,
            };
            let blocks = timeline
                .get_rel_size(rel, fork, lsn)
                .map_err(|e| ClientError::from_get(&e))?
                .unwrap_or(0);
            entries.push(RelSizeEntry {
                tag: RelTag { rel, fork },
                blocks,
            });
        }
    }
    Ok(entries)
}

/// Everything but relation contents, and the segments to create sparse.
fn lazy_backup(timeline: &Timeline, lsn: Lsn) -> Result<LazyBackup, ClientError> {
    let lsn = (lsn != Lsn::INVALID).then_some(lsn);
    let backup =
        datadir::Basebackup::prepare(timeline, lsn).map_err(|e| crate::backup::backup_error(&e))?;
    let mut tar = Vec::new();
    backup
        .write_lazy_tar(&mut tar)
        .map_err(|e| crate::backup::backup_error(&e))?;
    let segments = backup
        .lazy_segments()
        .into_iter()
        .map(|s| SegmentEntry {
            path: s.path,
            tag: RelTag {
                rel: s.rel,
                fork: s.fork,
            },
            first_blkno: s.first_blkno,
            blocks: s.blocks,
        })
        .collect();
    Ok(LazyBackup {
        lsn: backup.lsn(),
        segments,
        tar: Bytes::from(tar),
    })
}
