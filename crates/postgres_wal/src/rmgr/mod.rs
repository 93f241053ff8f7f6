//! Resource managers: their ids and the typed bodies of their records.
//!
//! Each submodule parses the records of one resource manager (PG15 layouts)
//! from a [`crate::record::DecodedRecord`]'s main data and block data.

pub mod btree;
pub mod clog;
pub mod cursor;
pub mod dbase;
pub mod heap;
pub mod heap2;
pub mod identify;
pub mod logicalmsg;
pub mod multixact;
pub mod relmap;
pub mod sequence;
pub mod smgr;
pub mod standby;
pub mod tblspc;
pub mod xact;
pub mod xlog;

/// Resource manager ids of PostgreSQL 15 (`rmgrlist.h` order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum RmgrId {
    Xlog = 0,
    Transaction = 1,
    Storage = 2,
    Clog = 3,
    Database = 4,
    Tablespace = 5,
    MultiXact = 6,
    RelMap = 7,
    Standby = 8,
    Heap2 = 9,
    Heap = 10,
    Btree = 11,
    Hash = 12,
    Gin = 13,
    Gist = 14,
    Sequence = 15,
    SpGist = 16,
    Brin = 17,
    CommitTs = 18,
    ReplicationOrigin = 19,
    Generic = 20,
    LogicalMessage = 21,
}

impl RmgrId {
    /// All built-in resource managers, in id order.
    pub const ALL: [RmgrId; 22] = [
        RmgrId::Xlog,
        RmgrId::Transaction,
        RmgrId::Storage,
        RmgrId::Clog,
        RmgrId::Database,
        RmgrId::Tablespace,
        RmgrId::MultiXact,
        RmgrId::RelMap,
        RmgrId::Standby,
        RmgrId::Heap2,
        RmgrId::Heap,
        RmgrId::Btree,
        RmgrId::Hash,
        RmgrId::Gin,
        RmgrId::Gist,
        RmgrId::Sequence,
        RmgrId::SpGist,
        RmgrId::Brin,
        RmgrId::CommitTs,
        RmgrId::ReplicationOrigin,
        RmgrId::Generic,
        RmgrId::LogicalMessage,
    ];

    /// The manager for a raw `xl_rmid`, or `None` for custom/unknown ids.
    pub fn from_u8(value: u8) -> Option<RmgrId> {
        RmgrId::ALL.get(usize::from(value)).copied()
    }

    /// The name `pg_waldump` prints for this manager.
    pub fn name(self) -> &'static str {
        match self {
            RmgrId::Xlog => "XLOG",
            RmgrId::Transaction => "Transaction",
            RmgrId::Storage => "Storage",
            RmgrId::Clog => "CLOG",
            RmgrId::Database => "Database",
            RmgrId::Tablespace => "Tablespace",
            RmgrId::MultiXact => "MultiXact",
            RmgrId::RelMap => "RelMap",
            RmgrId::Standby => "Standby",
            RmgrId::Heap2 => "Heap2",
            RmgrId::Heap => "Heap",
            RmgrId::Btree => "Btree",
            RmgrId::Hash => "Hash",
            RmgrId::Gin => "Gin",
            RmgrId::Gist => "Gist",
            RmgrId::Sequence => "Sequence",
            RmgrId::SpGist => "SPGist",
            RmgrId::Brin => "BRIN",
            RmgrId::CommitTs => "CommitTs",
            RmgrId::ReplicationOrigin => "ReplicationOrigin",
            RmgrId::Generic => "Generic",
            RmgrId::LogicalMessage => "LogicalMessage",
        }
    }
}

/// A typed record body, for the managers whose bodies this module parses.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordBody {
    Xlog(xlog::XlogRecord),
    Xact(xact::XactRecord),
    Smgr(smgr::SmgrRecord),
    Clog(clog::ClogRecord),
    Dbase(dbase::DbaseRecord),
    Tblspc(tblspc::TblspcRecord),
    MultiXact(multixact::MultiXactRecord),
    RelMap(relmap::RelmapUpdate),
    Standby(standby::StandbyRecord),
    LogicalMessage(logicalmsg::LogicalMessage),
    /// A manager without a typed parser here: use the header, block
    /// references and raw main data.
    Raw,
}

/// Parses the typed body of `record` according to its resource manager.
/// Managers without a parser here yield [`RecordBody::Raw`]; a short or
/// garbage body yields an error, never a panic.
pub fn parse_body(record: &crate::record::DecodedRecord) -> Result<RecordBody, cursor::BodyError> {
    Ok(match RmgrId::from_u8(record.rmid) {
        Some(RmgrId::Xlog) => RecordBody::Xlog(xlog::parse(record)?),
        Some(RmgrId::Transaction) => RecordBody::Xact(xact::parse(record)?),
        Some(RmgrId::Storage) => RecordBody::Smgr(smgr::parse(record)?),
        Some(RmgrId::Clog) => RecordBody::Clog(clog::parse(record)?),
        Some(RmgrId::Database) => RecordBody::Dbase(dbase::parse(record)?),
        Some(RmgrId::Tablespace) => RecordBody::Tblspc(tblspc::parse(record)?),
        Some(RmgrId::MultiXact) => RecordBody::MultiXact(multixact::parse(record)?),
        Some(RmgrId::RelMap) => RecordBody::RelMap(relmap::parse(record)?),
        Some(RmgrId::Standby) => RecordBody::Standby(standby::parse(record)?),
        Some(RmgrId::LogicalMessage) => RecordBody::LogicalMessage(logicalmsg::parse(record)?),
        _ => RecordBody::Raw,
    })
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod body_tests;
