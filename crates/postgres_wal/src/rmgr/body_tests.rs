//! Tests of the smaller body parsers on hand-built PG15 layouts: every
//! field lands where the C struct puts it, and short bodies are errors.

use super::*;
use crate::record::{DecodedRecord, ForkNumber, RelFileNode};
use crate::Lsn;

fn record(rmgr: RmgrId, info: u8, main_data: Vec<u8>) -> DecodedRecord {
    DecodedRecord {
        start_lsn: Lsn(0x100_0028),
        end_lsn: Lsn(0x100_0100),
        total_len: 0,
        xid: 0,
        prev: Lsn::INVALID,
        info,
        rmid: rmgr as u8,
        origin: None,
        toplevel_xid: None,
        blocks: vec![],
        main_data,
    }
}

fn le(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Every proper prefix of a valid body must be rejected, never panic.
fn prefixes_fail(rmgr: RmgrId, info: u8, body: &[u8]) {
    for cut in 0..body.len() {
        let r = record(rmgr, info, body[..cut].to_vec());
        assert!(
            parse_body(&r).is_err(),
            "{rmgr:?} {info:#x} accepted {cut} bytes"
        );
    }
}

#[test]
fn running_xacts_with_subxids() {
    // xcnt 2, subxcnt 1, overflow true (+3 pad), next 900, oldest 800, latest 899.
    let mut d = le(&[2, 1]);
    d.extend([1, 0, 0, 0]);
    d.extend(le(&[900, 800, 899, 801, 802, 803]));
    let RecordBody::Standby(standby::StandbyRecord::RunningXacts(r)) =
        parse_body(&record(RmgrId::Standby, 0x10, d.clone())).unwrap()
    else {
        panic!("wrong body");
    };
    assert!(r.subxid_overflow);
    assert_eq!(
        (r.next_xid, r.oldest_running_xid, r.latest_completed_xid),
        (900, 800, 899)
    );
    assert_eq!((r.xids, r.subxids), (vec![801, 802], vec![803]));
    prefixes_fail(RmgrId::Standby, 0x10, &d);
}

#[test]
fn smgr_create_and_truncate() {
    let d = le(&[1663, 5, 16384, 2]);
    assert_eq!(
        parse_body(&record(RmgrId::Storage, 0x10, d.clone())).unwrap(),
        RecordBody::Smgr(smgr::SmgrRecord::Create {
            rel: RelFileNode {
                spc_node: 1663,
                db_node: 5,
                rel_node: 16384
            },
            fork: ForkNumber::VisibilityMap
        })
    );
    prefixes_fail(RmgrId::Storage, 0x10, &d);
    let d = le(&[10, 1663, 5, 16384, smgr::SMGR_TRUNCATE_ALL]);
    let RecordBody::Smgr(smgr::SmgrRecord::Truncate { blkno, flags, .. }) =
        parse_body(&record(RmgrId::Storage, 0x20, d)).unwrap()
    else {
        panic!("wrong body");
    };
    assert_eq!((blkno, flags), (10, 7));
    assert!(parse_body(&record(RmgrId::Storage, 0x10, le(&[1, 2, 3, 9]))).is_err());
}

#[test]
fn relmap_update_carries_the_map() {
    let mut d = le(&[0, 1664, 512]);
    d.extend(vec![0xAB; 512]);
    let RecordBody::RelMap(m) = parse_body(&record(RmgrId::RelMap, 0x00, d.clone())).unwrap()
    else {
        panic!("wrong body");
    };
    assert_eq!((m.db_id, m.ts_id, m.data.len()), (0, 1664, 512));
    prefixes_fail(RmgrId::RelMap, 0x00, &d);
}

#[test]
fn logical_message_prefix_and_payload() {
    let mut d = le(&[5]);
    d.extend([1, 0, 0, 0]); // transactional, padded to 8
    d.extend(4u64.to_le_bytes());
    d.extend(3u64.to_le_bytes());
    d.extend(b"abc\0xyz");
    let RecordBody::LogicalMessage(m) =
        parse_body(&record(RmgrId::LogicalMessage, 0x00, d.clone())).unwrap()
    else {
        panic!("wrong body");
    };
    assert!(m.transactional);
    assert_eq!(
        (m.prefix.as_str(), m.message.as_slice()),
        ("abc", &b"xyz"[..])
    );
    prefixes_fail(RmgrId::LogicalMessage, 0x00, &d);
}

#[test]
fn dbase_multixact_clog_tblspc() {
    let d = le(&[16400, 2, 1663, 16500]);
    assert_eq!(
        parse_body(&record(RmgrId::Database, 0x20, d.clone())).unwrap(),
        RecordBody::Dbase(dbase::DbaseRecord::Drop {
            db_id: 16400,
            tablespace_ids: vec![1663, 16500]
        })
    );
    prefixes_fail(RmgrId::Database, 0x20, &d);
    let d = le(&[7, 20, 2, 700, 1, 701, 5]);
    let RecordBody::MultiXact(multixact::MultiXactRecord::Create {
        mid,
        offset,
        members,
    }) = parse_body(&record(RmgrId::MultiXact, 0x20, d.clone())).unwrap()
    else {
        panic!("wrong body");
    };
    assert_eq!(
        (mid, offset, members.len(), members[1].status),
        (7, 20, 2, 5)
    );
    prefixes_fail(RmgrId::MultiXact, 0x20, &d);
    let d = le(&[3, 700, 1]);
    assert_eq!(
        parse_body(&record(RmgrId::Clog, 0x10, d.clone())).unwrap(),
        RecordBody::Clog(clog::ClogRecord::Truncate {
            pageno: 3,
            oldest_xact: 700,
            oldest_xact_db: 1
        })
    );
    prefixes_fail(RmgrId::Clog, 0x10, &d);
    let mut d = le(&[16600]);
    d.extend(b"/tmp/ts\0");
    assert_eq!(
        parse_body(&record(RmgrId::Tablespace, 0x00, d.clone())).unwrap(),
        RecordBody::Tblspc(tblspc::TblspcRecord::Create {
            ts_id: 16600,
            path: "/tmp/ts".into()
        })
    );
    prefixes_fail(RmgrId::Tablespace, 0x00, &d);
}

#[test]
fn unknown_types_and_wrong_managers_are_errors() {
    assert!(matches!(
        parse_body(&record(RmgrId::Clog, 0x70, le(&[1]))),
        Err(cursor::BodyError::UnknownType { .. })
    ));
    assert!(matches!(
        xlog::parse(&record(RmgrId::Clog, 0x00, vec![])),
        Err(cursor::BodyError::WrongRmgr { .. })
    ));
    // Managers without a parser here decode to Raw.
    assert_eq!(
        parse_body(&record(RmgrId::Gin, 0x10, vec![1, 2])).unwrap(),
        RecordBody::Raw
    );
}
