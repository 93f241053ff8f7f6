//! `pg_control` (`ControlFileData`, PG15, 64-bit little-endian layout) and the
//! `CheckPoint` record body it embeds.
//!
//! The file is 8192 bytes; the structure occupies the first 296 of them and
//! ends with a CRC-32C of the 288 bytes before it. Every field is parsed into
//! a named struct member and written back at the same offset, so
//! `serialize(parse(file)) == file` for any file PostgreSQL wrote (padding is
//! zero in files PostgreSQL writes because it `memset`s the struct first).
//!
//! `CheckPoint` lives here (the XLOG resource manager's checkpoint record body
//! is the same 88 bytes) because base backup needs both in one place.

/// Size of the `pg_control` file on disk (`PG_CONTROL_FILE_SIZE`).
pub const PG_CONTROL_FILE_SIZE: usize = 8192;
/// `PG_CONTROL_VERSION` of PostgreSQL 15.
pub const PG_CONTROL_VERSION: u32 = 1300;
/// `CATALOG_VERSION_NO` of PostgreSQL 15.
pub const CATALOG_VERSION_NO: u32 = 202209061;
/// `sizeof(CheckPoint)`.
pub const CHECKPOINT_SIZE: usize = 88;
/// `offsetof(ControlFileData, crc)`: the CRC covers the bytes before it.
pub const CONTROL_CRC_OFFSET: usize = 288;
/// `sizeof(ControlFileData)`.
pub const CONTROL_STRUCT_SIZE: usize = 296;
/// `FLOATFORMAT_VALUE`, stored so a server can detect a foreign float format.
pub const FLOAT_FORMAT_VALUE: f64 = 1234567.0;

/// Why bytes are not a usable `pg_control` or checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error("pg_control too short: {len} bytes, need at least {CONTROL_STRUCT_SIZE}")]
    TooShort { len: usize },
    #[error("pg_control CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("pg_control version {found}, expected {PG_CONTROL_VERSION} (PostgreSQL 15)")]
    WrongVersion { found: u32 },
    #[error("checkpoint body is {len} bytes, expected {CHECKPOINT_SIZE}")]
    BadCheckpointLength { len: usize },
    #[error("unknown database state {0} in pg_control")]
    BadState(u32),
}

/// `DBState` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum DbState {
    Startup = 0,
    Shutdowned = 1,
    ShutdownedInRecovery = 2,
    Shutdowning = 3,
    InCrashRecovery = 4,
    InArchiveRecovery = 5,
    InProduction = 6,
}

impl DbState {
    fn from_u32(value: u32) -> Result<DbState, ControlError> {
        Ok(match value {
            0 => DbState::Startup,
            1 => DbState::Shutdowned,
            2 => DbState::ShutdownedInRecovery,
            3 => DbState::Shutdowning,
            4 => DbState::InCrashRecovery,
            5 => DbState::InArchiveRecovery,
            6 => DbState::InProduction,
            other => return Err(ControlError::BadState(other)),
        })
    }
}

/// The body of a checkpoint record, and its copy in `pg_control`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckPoint {
    pub redo: u64,
    pub this_timeline_id: u32,
    pub prev_timeline_id: u32,
    pub full_page_writes: bool,
    /// `FullTransactionId`: epoch in the high 32 bits.
    pub next_xid: u64,
    pub next_oid: u32,
    pub next_multi: u32,
    pub next_multi_offset: u32,
    pub oldest_xid: u32,
    pub oldest_xid_db: u32,
    pub oldest_multi: u32,
    pub oldest_multi_db: u32,
    /// `pg_time_t`: seconds since the Unix epoch.
    pub time: i64,
    pub oldest_commit_ts_xid: u32,
    pub newest_commit_ts_xid: u32,
    pub oldest_active_xid: u32,
}

/// Little-endian reads at fixed offsets of a buffer whose length was checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u32(&self, at: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[at..at + 4]);
        u32::from_le_bytes(b)
    }
    fn u64(&self, at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[at..at + 8]);
        u64::from_le_bytes(b)
    }
    fn i32(&self, at: usize) -> i32 {
        self.u32(at) as i32
    }
    fn i64(&self, at: usize) -> i64 {
        self.u64(at) as i64
    }
    fn bool(&self, at: usize) -> bool {
        self.0[at] != 0
    }
}

/// Little-endian writes at fixed offsets.
struct Writer<'a>(&'a mut [u8]);

impl Writer<'_> {
    fn u32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, at: usize, v: u64) {
        self.0[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn bool(&mut self, at: usize, v: bool) {
        self.0[at] = u8::from(v);
    }
}

impl CheckPoint {
    /// Parses the 88-byte body.
    pub fn parse(bytes: &[u8]) -> Result<CheckPoint, ControlError> {
        if bytes.len() != CHECKPOINT_SIZE {
            return Err(ControlError::BadCheckpointLength { len: bytes.len() });
        }
        let r = Reader(bytes);
        Ok(CheckPoint {
            redo: r.u64(0),
            this_timeline_id: r.u32(8),
            prev_timeline_id: r.u32(12),
            full_page_writes: r.bool(16),
            next_xid: r.u64(24),
            next_oid: r.u32(32),
            next_multi: r.u32(36),
            next_multi_offset: r.u32(40),
            oldest_xid: r.u32(44),
            oldest_xid_db: r.u32(48),
            oldest_multi: r.u32(52),
            oldest_multi_db: r.u32(56),
            time: r.i64(64),
            oldest_commit_ts_xid: r.u32(72),
            newest_commit_ts_xid: r.u32(76),
            oldest_active_xid: r.u32(80),
        })
    }

    /// The 88-byte body, padding zeroed.
    pub fn serialize(&self) -> [u8; CHECKPOINT_SIZE] {
        let mut out = [0u8; CHECKPOINT_SIZE];
        let mut w = Writer(&mut out);
        w.u64(0, self.redo);
        w.u32(8, self.this_timeline_id);
        w.u32(12, self.prev_timeline_id);
        w.bool(16, self.full_page_writes);
        w.u64(24, self.next_xid);
        w.u32(32, self.next_oid);
        w.u32(36, self.next_multi);
        w.u32(40, self.next_multi_offset);
        w.u32(44, self.oldest_xid);
        w.u32(48, self.oldest_xid_db);
        w.u32(52, self.oldest_multi);
        w.u32(56, self.oldest_multi_db);
        w.u64(64, self.time as u64);
        w.u32(72, self.oldest_commit_ts_xid);
        w.u32(76, self.newest_commit_ts_xid);
        w.u32(80, self.oldest_active_xid);
        out
    }

    /// The 32-bit xid part of `next_xid`.
    pub fn next_xid32(&self) -> u32 {
        self.next_xid as u32
    }
}

/// `ControlFileData` of PostgreSQL 15.
#[derive(Clone, Debug, PartialEq)]
pub struct ControlFile {
    pub system_identifier: u64,
    pub pg_control_version: u32,
    pub catalog_version_no: u32,
    pub state: DbState,
    pub time: i64,
    pub checkpoint: u64,
    pub checkpoint_copy: CheckPoint,
    pub unlogged_lsn: u64,
    pub min_recovery_point: u64,
    pub min_recovery_point_tli: u32,
    pub backup_start_point: u64,
    pub backup_end_point: u64,
    pub backup_end_required: bool,
    pub wal_level: i32,
    pub wal_log_hints: bool,
    pub max_connections: i32,
    pub max_worker_processes: i32,
    pub max_wal_senders: i32,
    pub max_prepared_xacts: i32,
    pub max_locks_per_xact: i32,
    pub track_commit_timestamp: bool,
    pub max_align: u32,
    pub float_format: f64,
    pub blcksz: u32,
    pub relseg_size: u32,
    pub xlog_blcksz: u32,
    pub xlog_seg_size: u32,
    pub name_data_len: u32,
    pub index_max_keys: u32,
    pub toast_max_chunk_size: u32,
    pub loblksize: u32,
    pub float8_by_val: bool,
    pub data_checksum_version: u32,
    pub mock_authentication_nonce: [u8; 32],
}

impl ControlFile {
    /// Parses and checks the CRC and version. Accepts the 8192-byte file or
    /// just the structure.
    pub fn parse(bytes: &[u8]) -> Result<ControlFile, ControlError> {
        if bytes.len() < CONTROL_STRUCT_SIZE {
            return Err(ControlError::TooShort { len: bytes.len() });
        }
        let r = Reader(bytes);
        let stored = r.u32(CONTROL_CRC_OFFSET);
        let computed = crc32c::crc32c(&bytes[..CONTROL_CRC_OFFSET]);
        if stored != computed {
            return Err(ControlError::BadCrc { stored, computed });
        }
        let version = r.u32(8);
        if version != PG_CONTROL_VERSION {
            return Err(ControlError::WrongVersion { found: version });
        }
        let mut nonce = [0u8; 32];
        nonce.copy_from_slice(&bytes[256..288]);
        Ok(ControlFile {
            system_identifier: r.u64(0),
            pg_control_version: version,
            catalog_version_no: r.u32(12),
            state: DbState::from_u32(r.u32(16))?,
            time: r.i64(24),
            checkpoint: r.u64(32),
            checkpoint_copy: CheckPoint::parse(&bytes[40..40 + CHECKPOINT_SIZE])?,
            unlogged_lsn: r.u64(128),
            min_recovery_point: r.u64(136),
            min_recovery_point_tli: r.u32(144),
            backup_start_point: r.u64(152),
            backup_end_point: r.u64(160),
            backup_end_required: r.bool(168),
            wal_level: r.i32(172),
            wal_log_hints: r.bool(176),
            max_connections: r.i32(180),
            max_worker_processes: r.i32(184),
            max_wal_senders: r.i32(188),
            max_prepared_xacts: r.i32(192),
            max_locks_per_xact: r.i32(196),
            track_commit_timestamp: r.bool(200),
            max_align: r.u32(204),
            float_format: f64::from_bits(r.u64(208)),
            blcksz: r.u32(216),
            relseg_size: r.u32(220),
            xlog_blcksz: r.u32(224),
            xlog_seg_size: r.u32(228),
            name_data_len: r.u32(232),
            index_max_keys: r.u32(236),
            toast_max_chunk_size: r.u32(240),
            loblksize: r.u32(244),
            float8_by_val: r.bool(248),
            data_checksum_version: r.u32(252),
            mock_authentication_nonce: nonce,
        })
    }

    /// The full 8192-byte file with a fresh CRC.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = vec![0u8; PG_CONTROL_FILE_SIZE];
        let mut w = Writer(&mut out);
        w.u64(0, self.system_identifier);
        w.u32(8, self.pg_control_version);
        w.u32(12, self.catalog_version_no);
        w.u32(16, self.state as u32);
        w.u64(24, self.time as u64);
        w.u64(32, self.checkpoint);
        w.u64(128, self.unlogged_lsn);
        w.u64(136, self.min_recovery_point);
        w.u32(144, self.min_recovery_point_tli);
        w.u64(152, self.backup_start_point);
        w.u64(160, self.backup_end_point);
        w.bool(168, self.backup_end_required);
        w.u32(172, self.wal_level as u32);
        w.bool(176, self.wal_log_hints);
        w.u32(180, self.max_connections as u32);
        w.u32(184, self.max_worker_processes as u32);
        w.u32(188, self.max_wal_senders as u32);
        w.u32(192, self.max_prepared_xacts as u32);
        w.u32(196, self.max_locks_per_xact as u32);
        w.bool(200, self.track_commit_timestamp);
        w.u32(204, self.max_align);
        w.u64(208, self.float_format.to_bits());
        w.u32(216, self.blcksz);
        w.u32(220, self.relseg_size);
        w.u32(224, self.xlog_blcksz);
        w.u32(228, self.xlog_seg_size);
        w.u32(232, self.name_data_len);
        w.u32(236, self.index_max_keys);
        w.u32(240, self.toast_max_chunk_size);
        w.u32(244, self.loblksize);
        w.bool(248, self.float8_by_val);
        w.u32(252, self.data_checksum_version);
        out[40..40 + CHECKPOINT_SIZE].copy_from_slice(&self.checkpoint_copy.serialize());
        out[256..288].copy_from_slice(&self.mock_authentication_nonce);
        let crc = crc32c::crc32c(&out[..CONTROL_CRC_OFFSET]);
        out[CONTROL_CRC_OFFSET..CONTROL_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ControlFile {
        ControlFile {
            system_identifier: 0x7300_1122_3344_5566,
            pg_control_version: PG_CONTROL_VERSION,
            catalog_version_no: CATALOG_VERSION_NO,
            state: DbState::Shutdowned,
            time: 1_700_000_000,
            checkpoint: 0x0151_2A80,
            checkpoint_copy: CheckPoint {
                redo: 0x0151_2A80,
                this_timeline_id: 1,
                prev_timeline_id: 1,
                full_page_writes: true,
                next_xid: (1 << 32) | 735,
                next_oid: 13_000,
                next_multi: 1,
                next_multi_offset: 0,
                oldest_xid: 716,
                oldest_xid_db: 1,
                oldest_multi: 1,
                oldest_multi_db: 1,
                time: 1_700_000_000,
                oldest_commit_ts_xid: 0,
                newest_commit_ts_xid: 0,
                oldest_active_xid: 0,
            },
            unlogged_lsn: 1000,
            min_recovery_point: 0,
            min_recovery_point_tli: 0,
            backup_start_point: 0,
            backup_end_point: 0,
            backup_end_required: false,
            wal_level: 1,
            wal_log_hints: false,
            max_connections: 100,
            max_worker_processes: 8,
            max_wal_senders: 10,
            max_prepared_xacts: 0,
            max_locks_per_xact: 64,
            track_commit_timestamp: false,
            max_align: 8,
            float_format: FLOAT_FORMAT_VALUE,
            blcksz: 8192,
            relseg_size: 131072,
            xlog_blcksz: 8192,
            xlog_seg_size: 16 * 1024 * 1024,
            name_data_len: 64,
            index_max_keys: 32,
            toast_max_chunk_size: 1996,
            loblksize: 2048,
            float8_by_val: true,
            data_checksum_version: 0,
            mock_authentication_nonce: [7u8; 32],
        }
    }

    #[test]
    fn round_trips_and_checks_crc() {
        let control = sample();
        let bytes = control.serialize();
        assert_eq!(bytes.len(), PG_CONTROL_FILE_SIZE);
        assert_eq!(ControlFile::parse(&bytes).unwrap(), control);

        let mut corrupt = bytes.clone();
        corrupt[100] ^= 1;
        assert!(matches!(
            ControlFile::parse(&corrupt),
            Err(ControlError::BadCrc { .. })
        ));
        assert_eq!(
            ControlFile::parse(&bytes[..100]),
            Err(ControlError::TooShort { len: 100 })
        );
    }

    #[test]
    fn checkpoint_is_88_bytes_at_fixed_offsets() {
        let cp = sample().checkpoint_copy;
        let bytes = cp.serialize();
        assert_eq!(&bytes[24..32], &((1u64 << 32) | 735).to_le_bytes());
        assert_eq!(CheckPoint::parse(&bytes).unwrap(), cp);
        assert_eq!(cp.next_xid32(), 735);
        assert!(CheckPoint::parse(&bytes[..87]).is_err());
    }
}
