//! Tenant and timeline identifiers: 16 random bytes written as 32 hex digits.
//!
//! Both ids share one representation but are distinct types so a tenant id can
//! never be passed where a timeline id is expected.

use std::fmt;
use std::str::FromStr;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {input:?}: expected 32 hexadecimal digits")]
pub struct IdParseError {
    /// Which kind of id was expected ("tenant" or "timeline").
    pub kind: &'static str,
    /// The rejected text (cut short if it was long).
    pub input: String,
}

fn parse_hex16(kind: &'static str, text: &str) -> Result<[u8; 16], IdParseError> {
    let error = || IdParseError {
        kind,
        // A hostile client could send a megabyte of path; echo only a prefix.
        input: text.chars().take(64).collect(),
    };
    if text.len() != 32 {
        return Err(error());
    }
    let mut bytes = [0u8; 16];
    hex::decode_to_slice(text, &mut bytes).map_err(|_| error())?;
    Ok(bytes)
}

macro_rules! define_id {
    ($name:ident, $kind:literal) => {
        #[doc = concat!("A ", $kind, " id: 16 bytes, shown as 32 lowercase hex digits.")]
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 16]);

        impl $name {
            #[doc = concat!("A fresh random ", $kind, " id.")]
            pub fn generate() -> Self {
                Self(rand::random())
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }

            /// Builds an id from raw bytes.
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(bytes)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                parse_hex16($kind, text).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

define_id!(TenantId, "tenant");
define_id!(TimelineId, "timeline");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let id = TenantId::generate();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<TenantId>().unwrap(), id);
    }

    #[test]
    fn accepts_uppercase_and_prints_lowercase() {
        let id: TimelineId = "0123456789ABCDEF0123456789abcdef".parse().unwrap();
        assert_eq!(id.to_string(), "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        for bad in [
            "",
            "abc",
            "0123456789abcdef0123456789abcdeg",
            &"a".repeat(33),
            "é",
        ] {
            let error = bad.parse::<TenantId>().unwrap_err();
            assert_eq!(error.kind, "tenant");
        }
    }
}
