//! Record type names exactly as PostgreSQL 15's `*_identify` functions
//! (`src/backend/access/rmgrdesc/`) return them, and the record-type id
//! `pg_waldump --stats=record` groups by (`XLogRecStoreStats`).
//!
//! Kept as one table-like module so the names can be compared against the
//! C sources at a glance; the per-manager body parsers live beside it.

use super::RmgrId;

/// The resource manager's display name, including PostgreSQL's names for
/// custom managers (`custom128` …) and a placeholder for invalid ids.
pub fn rmgr_name(rmid: u8) -> String {
    match RmgrId::from_u8(rmid) {
        Some(r) => r.name().to_owned(),
        None if rmid >= 128 => format!("custom{rmid:03}"),
        None => format!("invalid{rmid}"),
    }
}

/// The record-type id `pg_waldump --stats=record` counts a record under:
/// the high nibble of `xl_info`, except for XACT where the top bit is a
/// flag (`XLOG_XACT_HAS_INFO`) and only the opcode counts.
pub fn stats_record_id(rmid: u8, info: u8) -> u8 {
    let recid = info >> 4;
    if rmid == RmgrId::Transaction as u8 {
        recid & 0x07
    } else {
        recid
    }
}

/// What `pg_waldump --stats=record` prints after the slash for a record
/// type id: `rm_identify(recid << 4)`, or `UNKNOWN (xx)`.
pub fn stats_record_type_name(rmid: u8, recid: u8) -> String {
    let info = recid << 4;
    match identify(rmid, info) {
        Some(name) => name.to_owned(),
        None => format!("UNKNOWN ({info:x})"),
    }
}

/// `rm_identify(info)` for the built-in managers; `None` where PostgreSQL
/// returns NULL (unknown record type, or custom manager).
pub fn identify(rmid: u8, info: u8) -> Option<&'static str> {
    let rm_info = info & 0xF0;
    match RmgrId::from_u8(rmid)? {
        RmgrId::Xlog => xlog(rm_info),
        RmgrId::Transaction => xact(info & 0x70),
        RmgrId::Storage => match rm_info {
            0x10 => Some("CREATE"),
            0x20 => Some("TRUNCATE"),
            _ => None,
        },
        RmgrId::Clog => match rm_info {
            0x00 => Some("ZEROPAGE"),
            0x10 => Some("TRUNCATE"),
            _ => None,
        },
        RmgrId::Database => match rm_info {
            0x00 => Some("CREATE_FILE_COPY"),
            0x10 => Some("CREATE_WAL_LOG"),
            0x20 => Some("DROP"),
            _ => None,
        },
        RmgrId::Tablespace => match rm_info {
            0x00 => Some("CREATE"),
            0x10 => Some("DROP"),
            _ => None,
        },
        RmgrId::MultiXact => match rm_info {
            0x00 => Some("ZERO_OFF_PAGE"),
            0x10 => Some("ZERO_MEM_PAGE"),
            0x20 => Some("CREATE_ID"),
            0x30 => Some("TRUNCATE_ID"),
            _ => None,
        },
        RmgrId::RelMap => (rm_info == 0x00).then_some("UPDATE"),
        RmgrId::Standby => match rm_info {
            0x00 => Some("LOCK"),
            0x10 => Some("RUNNING_XACTS"),
            0x20 => Some("INVALIDATIONS"),
            _ => None,
        },
        RmgrId::Heap2 => heap2(rm_info),
        RmgrId::Heap => heap(rm_info),
        RmgrId::Btree => btree(rm_info),
        RmgrId::Hash => hash(rm_info),
        RmgrId::Gin => gin(rm_info),
        RmgrId::Gist => gist(rm_info),
        RmgrId::Sequence => (rm_info == 0x00).then_some("LOG"),
        RmgrId::SpGist => spgist(rm_info),
        RmgrId::Brin => brin(rm_info),
        // These two switch on the whole info byte, flag bits included.
        RmgrId::CommitTs => match info {
            0x00 => Some("ZEROPAGE"),
            0x10 => Some("TRUNCATE"),
            _ => None,
        },
        RmgrId::ReplicationOrigin => match info {
            0x00 => Some("SET"),
            0x10 => Some("DROP"),
            _ => None,
        },
        RmgrId::Generic => Some("Generic"),
        RmgrId::LogicalMessage => (rm_info == 0x00).then_some("MESSAGE"),
    }
}

fn xlog(info: u8) -> Option<&'static str> {
    Some(match info {
        0x00 => "CHECKPOINT_SHUTDOWN",
        0x10 => "CHECKPOINT_ONLINE",
        0x20 => "NOOP",
        0x30 => "NEXTOID",
        0x40 => "SWITCH",
        0x50 => "BACKUP_END",
        0x60 => "PARAMETER_CHANGE",
        0x70 => "RESTORE_POINT",
        0x80 => "FPW_CHANGE",
        0x90 => "END_OF_RECOVERY",
        0xA0 => "FPI_FOR_HINT",
        0xB0 => "FPI",
        0xD0 => "OVERWRITE_CONTRECORD",
        _ => return None,
    })
}

fn xact(opcode: u8) -> Option<&'static str> {
    Some(match opcode {
        0x00 => "COMMIT",
        0x10 => "PREPARE",
        0x20 => "ABORT",
        0x30 => "COMMIT_PREPARED",
        0x40 => "ABORT_PREPARED",
        0x50 => "ASSIGNMENT",
        0x60 => "INVALIDATION",
        _ => return None,
    })
}

fn heap(info: u8) -> Option<&'static str> {
    Some(match info {
        0x00 => "INSERT",
        0x80 => "INSERT+INIT",
        0x10 => "DELETE",
        0x20 => "UPDATE",
        0xA0 => "UPDATE+INIT",
        0x40 => "HOT_UPDATE",
        0xC0 => "HOT_UPDATE+INIT",
        0x30 => "TRUNCATE",
        0x50 => "HEAP_CONFIRM",
        0x60 => "LOCK",
        0x70 => "INPLACE",
        _ => return None,
    })
}

fn heap2(info: u8) -> Option<&'static str> {
    Some(match info {
        0x10 => "PRUNE",
        0x20 => "VACUUM",
        0x30 => "FREEZE_PAGE",
        0x40 => "VISIBLE",
        0x50 => "MULTI_INSERT",
        0xD0 => "MULTI_INSERT+INIT",
        0x60 => "LOCK_UPDATED",
        0x70 => "NEW_CID",
        0x00 => "REWRITE",
        _ => return None,
    })
}

fn btree(info: u8) -> Option<&'static str> {
    Some(match info {
        0x00 => "INSERT_LEAF",
        0x10 => "INSERT_UPPER",
        0x20 => "INSERT_META",
        0x30 => "SPLIT_L",
        0x40 => "SPLIT_R",
        0x50 => "INSERT_POST",
        0x60 => "DEDUP",
        0x70 => "DELETE",
        0x80 => "UNLINK_PAGE",
        0x90 => "UNLINK_PAGE_META",
        0xA0 => "NEWROOT",
        0xB0 => "MARK_PAGE_HALFDEAD",
        0xC0 => "VACUUM",
        0xD0 => "REUSE_PAGE",
        0xE0 => "META_CLEANUP",
        _ => return None,
    })
}

fn hash(info: u8) -> Option<&'static str> {
    Some(match info {
        0x00 => "INIT_META_PAGE",
        0x10 => "INIT_BITMAP_PAGE",
        0x20 => "INSERT",
        0x30 => "ADD_OVFL_PAGE",
        0x40 => "SPLIT_ALLOCATE_PAGE",
        0x50 => "SPLIT_PAGE",
        0x60 => "SPLIT_COMPLETE",
        0x70 => "MOVE_PAGE_CONTENTS",
        0x80 => "SQUEEZE_PAGE",
        0x90 => "DELETE",
        0xA0 => "SPLIT_CLEANUP",
        0xB0 => "UPDATE_META_PAGE",
        0xC0 => "VACUUM_ONE_PAGE",
        _ => return None,
    })
}

fn gin(info: u8) -> Option<&'static str> {
    Some(match info {
        0x10 => "CREATE_PTREE",
        0x20 => "INSERT",
        0x30 => "SPLIT",
        0x40 => "VACUUM_PAGE",
        0x90 => "VACUUM_DATA_LEAF_PAGE",
        0x50 => "DELETE_PAGE",
        0x60 => "UPDATE_META_PAGE",
        0x70 => "INSERT_LISTPAGE",
        0x80 => "DELETE_LISTPAGE",
        _ => return None,
    })
}

fn gist(info: u8) -> Option<&'static str> {
    Some(match info {
        0x00 => "PAGE_UPDATE",
        0x10 => "DELETE",
        0x20 => "PAGE_REUSE",
        0x30 => "PAGE_SPLIT",
        0x60 => "PAGE_DELETE",
        0x70 => "ASSIGN_LSN",
        _ => return None,
    })
}

fn spgist(info: u8) -> Option<&'static str> {
    Some(match info {
        0x10 => "ADD_LEAF",
        0x20 => "MOVE_LEAFS",
        0x30 => "ADD_NODE",
        0x40 => "SPLIT_TUPLE",
        0x50 => "PICKSPLIT",
        0x60 => "VACUUM_LEAF",
        0x70 => "VACUUM_ROOT",
        0x80 => "VACUUM_REDIRECT",
        _ => return None,
    })
}

fn brin(info: u8) -> Option<&'static str> {
    Some(match info {
        0x00 => "CREATE_INDEX",
        0x10 => "INSERT",
        0x90 => "INSERT+INIT",
        0x20 => "UPDATE",
        0xA0 => "UPDATE+INIT",
        0x30 => "SAMEPAGE_UPDATE",
        0x40 => "REVMAP_EXTEND",
        0x50 => "DESUMMARIZE",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xact_stats_ignore_the_has_info_flag() {
        // COMMIT with XLOG_XACT_HAS_INFO (0x80) counts as COMMIT.
        let recid = stats_record_id(RmgrId::Transaction as u8, 0x80);
        assert_eq!(recid, 0);
        assert_eq!(
            stats_record_type_name(RmgrId::Transaction as u8, recid),
            "COMMIT"
        );
        assert_eq!(stats_record_id(RmgrId::Heap as u8, 0x80), 8);
    }

    #[test]
    fn init_page_variants_are_their_own_types() {
        let heap = RmgrId::Heap as u8;
        assert_eq!(stats_record_type_name(heap, 0x8), "INSERT+INIT");
        assert_eq!(stats_record_type_name(heap, 0x9), "UNKNOWN (90)");
        assert_eq!(
            stats_record_type_name(RmgrId::Heap2 as u8, 0xD),
            "MULTI_INSERT+INIT"
        );
        assert_eq!(identify(heap, 0x80 | 0x08), Some("INSERT+INIT"));
    }

    #[test]
    fn names_of_odd_managers() {
        assert_eq!(identify(RmgrId::Generic as u8, 0x30), Some("Generic"));
        assert_eq!(identify(RmgrId::CommitTs as u8, 0x01), None);
        assert_eq!(rmgr_name(130), "custom130");
        assert_eq!(identify(130, 0), None);
    }
}
