//! The streaming-replication sub-protocol carried in CopyData messages once
//! `START_REPLICATION` switched the connection to CopyBoth (PostgreSQL docs,
//! "Streaming Replication Protocol"): parsing what the walsender sends and
//! encoding the standby status updates we send back. Pure: bytes in, values
//! out, so it is unit-tested without a server.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_wal::Lsn;

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;
/// 'w' header: start (8), end (8), send time (8).
const XLOG_DATA_HEADER_BYTES: usize = 24;
/// 'k' body: end (8), send time (8), reply requested (1).
const KEEPALIVE_BYTES: usize = 17;

/// One message from the walsender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplicationMessage {
    /// 'w': WAL bytes starting at `start`; `wal_end` is the server's end of WAL.
    XLogData {
        start: Lsn,
        wal_end: Lsn,
        data: Bytes,
    },
    /// 'k': the server's end of WAL, and whether it wants a status update now.
    Keepalive { wal_end: Lsn, reply_requested: bool },
}

/// Parses the payload of one CopyData message, or says why it is not one.
pub(crate) fn parse(mut payload: Bytes) -> Result<ReplicationMessage, String> {
    if payload.is_empty() {
        return Err("empty CopyData message".to_owned());
    }
    let tag = payload.get_u8();
    match tag {
        b'w' => {
            if payload.len() < XLOG_DATA_HEADER_BYTES {
                return Err(format!("XLogData of {} bytes is too short", payload.len()));
            }
            let start = Lsn(payload.get_u64());
            let wal_end = Lsn(payload.get_u64());
            let _send_time = payload.get_i64();
            if start.0.checked_add(payload.len() as u64).is_none() {
                return Err(format!("XLogData at {start} overflows the LSN space"));
            }
            Ok(ReplicationMessage::XLogData {
                start,
                wal_end,
                data: payload,
            })
        }
        b'k' => {
            if payload.len() < KEEPALIVE_BYTES {
                return Err(format!("keepalive of {} bytes is too short", payload.len()));
            }
            let wal_end = Lsn(payload.get_u64());
            let _send_time = payload.get_i64();
            let reply_requested = payload.get_u8() != 0;
            Ok(ReplicationMessage::Keepalive {
                wal_end,
                reply_requested,
            })
        }
        other => Err(format!("unknown replication message type {other:#04x}")),
    }
}

/// Positions reported in a standby status update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StandbyPositions {
    /// Written so that it survives a crash of this process.
    pub(crate) write: Lsn,
    /// Durable in the store.
    pub(crate) flush: Lsn,
    /// Consumed by the sink.
    pub(crate) apply: Lsn,
}

/// The payload of an 'r' standby status update (to be wrapped in CopyData).
pub(crate) fn standby_status_update(
    positions: StandbyPositions,
    now: SystemTime,
    reply_requested: bool,
) -> Bytes {
    let mut out = BytesMut::with_capacity(34);
    out.put_u8(b'r');
    out.put_u64(positions.write.0);
    out.put_u64(positions.flush.0);
    out.put_u64(positions.apply.0);
    out.put_i64(pg_timestamp(now));
    out.put_u8(u8::from(reply_requested));
    out.freeze()
}

/// Microseconds since 2000-01-01, as the protocol carries times.
fn pg_timestamp(now: SystemTime) -> i64 {
    let unix_us = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    unix_us - PG_EPOCH_OFFSET_US
}

/// Microseconds since the Unix epoch (for status reports).
pub(crate) fn unix_micros(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn parses_xlogdata_and_keepalive() {
        let mut w = BytesMut::new();
        w.put_u8(b'w');
        w.put_u64(0x1_0000_0100);
        w.put_u64(0x1_0000_0200);
        w.put_i64(12345);
        w.put_slice(b"walbytes");
        let parsed = parse(w.freeze()).unwrap();
        assert_eq!(
            parsed,
            ReplicationMessage::XLogData {
                start: Lsn(0x1_0000_0100),
                wal_end: Lsn(0x1_0000_0200),
                data: Bytes::from_static(b"walbytes"),
            }
        );

        let mut k = BytesMut::new();
        k.put_u8(b'k');
        k.put_u64(0x42);
        k.put_i64(0);
        k.put_u8(1);
        assert_eq!(
            parse(k.freeze()).unwrap(),
            ReplicationMessage::Keepalive {
                wal_end: Lsn(0x42),
                reply_requested: true
            }
        );
    }

    #[test]
    fn every_short_or_unknown_message_is_an_error() {
        let mut w = BytesMut::new();
        w.put_u8(b'w');
        w.put_bytes(0, XLOG_DATA_HEADER_BYTES);
        let full = w.freeze();
        for len in 0..full.len() {
            assert!(parse(full.slice(..len)).is_err(), "w prefix {len}");
        }
        assert!(parse(full).is_ok());
        let mut k = BytesMut::new();
        k.put_u8(b'k');
        k.put_bytes(0, KEEPALIVE_BYTES);
        let full = k.freeze();
        for len in 0..full.len() {
            assert!(parse(full.slice(..len)).is_err(), "k prefix {len}");
        }
        assert!(parse(Bytes::from_static(b"x123")).is_err());
        let mut overflow = BytesMut::new();
        overflow.put_u8(b'w');
        overflow.put_u64(u64::MAX);
        overflow.put_u64(0);
        overflow.put_i64(0);
        overflow.put_u8(0);
        assert!(parse(overflow.freeze()).is_err());
    }

    #[test]
    fn status_update_layout() {
        let now = UNIX_EPOCH + Duration::from_secs(946_684_800 + 1);
        let payload = standby_status_update(
            StandbyPositions {
                write: Lsn(3),
                flush: Lsn(2),
                apply: Lsn(1),
            },
            now,
            true,
        );
        assert_eq!(payload.len(), 34);
        assert_eq!(payload[0], b'r');
        assert_eq!(&payload[1..9], &3u64.to_be_bytes());
        assert_eq!(&payload[9..17], &2u64.to_be_bytes());
        assert_eq!(&payload[17..25], &1u64.to_be_bytes());
        assert_eq!(&payload[25..33], &1_000_000i64.to_be_bytes());
        assert_eq!(payload[33], 1);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_payload(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = parse(Bytes::from(bytes));
        }
    }
}
