//! 16-byte identifiers for timelines and tenants, shown as 32 lowercase hex
//! characters (the form the management API and directory names use).

use std::fmt;
use std::str::FromStr;

/// Why a string is not a 32-hex-character id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid id {input:?}: expected 32 hexadecimal characters")]
pub struct IdParseError {
    /// The rejected text.
    pub input: String,
}

fn parse_hex_16(s: &str) -> Result<[u8; 16], IdParseError> {
    let error = || IdParseError {
        input: s.to_owned(),
    };
    if s.len() != 32 || !s.is_ascii() {
        return Err(error());
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| error())?;
    }
    Ok(out)
}

fn write_hex(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// A fresh random id. Uses the process's hash randomness and the
            /// clock, which is enough to avoid collisions between timelines of
            /// one tenant; callers wanting stronger guarantees generate their own.
            pub fn generate() -> Self {
                $name(random_16())
            }

            /// The id's bytes.
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex_16(s).map($name)
            }
        }

        impl From<[u8; 16]> for $name {
            fn from(bytes: [u8; 16]) -> Self {
                $name(bytes)
            }
        }
    };
}

define_id!(
    /// Identifies a timeline within a tenant.
    TimelineId
);
define_id!(
    /// Identifies a tenant (one repository of timelines).
    TenantId
);

/// 16 bytes that differ between calls: std's randomly keyed SipHash over the
/// clock and a process-wide counter. Avoids a dependency on a RNG crate.
fn random_16() -> [u8; 16] {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut out = [0u8; 16];
    for half in out.chunks_mut(8) {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(nanos);
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        half.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_hex() {
        let id = TimelineId([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(id.to_string().parse::<TimelineId>().unwrap(), id);
        let t: TenantId = "00112233445566778899aabbccddeeff".parse().unwrap();
        assert_eq!(t.0[15], 0xff);
    }

    #[test]
    fn rejects_bad_text() {
        for bad in ["", "00", &"g".repeat(32), &"0".repeat(33), &"é".repeat(16)] {
            assert!(bad.parse::<TimelineId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(TimelineId::generate(), TimelineId::generate());
    }
}
