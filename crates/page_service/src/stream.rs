//! The server side of `pagestream_v2` (see [`crate::pagestream`]): after
//! CopyBothResponse, one task reads requests, each request runs as its own
//! task (bounded by [`MAX_IN_FLIGHT`]) that waits for its LSN if needed
//! and reads the store on a blocking thread, and one writer sends answers
//! as they complete, coalescing those that are ready into one write.
//!
//! Reading and writing run concurrently so a client can pipeline: it sends
//! a batch (or read-ahead) of requests without waiting, and the slowest
//! page does not hold back the others.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use postgres_wal::record::{RelFileNode, BLCKSZ};
use postgres_wal::Lsn;
use storage::{GetError, Key, Timeline};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

use crate::connection::ClientError;
use crate::pagestream::{RelSizeEntry, RelTag, Request, RequestKind, Response, ResponseKind};
use crate::proto::{self, Out, ProtocolError};

/// Requests served concurrently on one connection; more wait to be read.
pub const MAX_IN_FLIGHT: usize = 256;

/// Runs the stream until the client sends CopyDone/Terminate or closes.
/// Returns `Ok(true)` when the connection may continue with simple queries
/// (CopyDone), `Ok(false)` when it must close.
pub(crate) async fn serve_stream(
    stream: &mut BufReader<TcpStream>,
    timeline: Arc<Timeline>,
    wait_timeout: Duration,
) -> Result<bool, ProtocolError> {
    let mut out = Out::default();
    out.copy_both_response();
    out.flush_to(stream.get_mut()).await?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Result<Response, String>>(MAX_IN_FLIGHT);
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let reader = async move {
        loop {
            let Some(message) = proto::read_message(&mut rd).await? else {
                return Ok::<bool, ProtocolError>(false);
            };
            match message.tag {
                b'd' => {}
                b'c' => return Ok(true),
                b'X' => return Ok(false),
                other => {
                    let _ = tx
                        .send(Err(format!(
                            "message type '{}' inside pagestream",
                            other.escape_ascii()
                        )))
                        .await;
                    return Ok(false);
                }
            }
            let request = match Request::decode(&message.body) {
                Ok(request) => request,
                Err(e) => {
                    let _ = tx.send(Err(e.to_string())).await;
                    return Ok(false);
                }
            };
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return Ok(false);
            };
            let (tx, timeline) = (tx.clone(), timeline.clone());
            tokio::spawn(async move {
                let response = answer(timeline, request, wait_timeout).await;
                let _ = tx.send(Ok(response)).await;
                drop(permit);
            });
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

/// Answers one request: waits for its LSN (bounded), then reads on a
/// blocking thread.
async fn answer(timeline: Arc<Timeline>, request: Request, wait_timeout: Duration) -> Response {
    let id = request.id;
    let kind = match wait_for(&timeline, request.lsn, wait_timeout).await {
        Err(e) => error_kind(e),
        Ok(()) => tokio::task::spawn_blocking(move || read(&timeline, request.lsn, request.kind))
            .await
            .unwrap_or_else(|e| Err(ClientError::new("XX000", format!("read task failed: {e}"))))
            .unwrap_or_else(error_kind),
    };
    Response { id, kind }
}

fn error_kind(e: ClientError) -> ResponseKind {
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
