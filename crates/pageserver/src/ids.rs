//! Tenant and timeline ids: the `storage` crate's types (16 bytes, shown as
//! 32 lowercase hex digits), plus the serde adapters the API types use and
//! parsers whose errors say which kind of id was malformed.

pub use storage::{TenantId, TimelineId};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {input:?}: expected 32 hexadecimal digits")]
pub struct IdParseError {
    /// Which kind of id was expected ("tenant" or "timeline").
    pub kind: &'static str,
    /// The rejected text (cut short if it was long).
    pub input: String,
}

fn error(kind: &'static str, text: &str) -> IdParseError {
    // A hostile client could send a megabyte of path; echo only a prefix.
    IdParseError {
        kind,
        input: text.chars().take(64).collect(),
    }
}

/// Parses a tenant id.
pub fn parse_tenant_id(text: &str) -> Result<TenantId, IdParseError> {
    text.parse().map_err(|_| error("tenant", text))
}

/// Parses a timeline id.
pub fn parse_timeline_id(text: &str) -> Result<TimelineId, IdParseError> {
    text.parse().map_err(|_| error("timeline", text))
}

/// Serde as a hex string, for any id type (`#[serde(with = "ids::hex")]`).
pub mod hex {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the id as its hex string.
    pub fn serialize<T: Display, S: Serializer>(id: &T, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    /// Reads the id from its hex string.
    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde for an optional id as a hex string or null.
pub mod optional_hex {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the id as its hex string, or null.
    pub fn serialize<T: Display, S: Serializer>(
        id: &Option<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => serializer.collect_str(id),
            None => serializer.serialize_none(),
        }
    }

    /// Reads an id from a hex string, or null.
    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        Option::<String>::deserialize(deserializer)?
            .map(|text| text.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_kind() {
        assert_eq!(parse_tenant_id("xyz").unwrap_err().kind, "tenant");
        assert_eq!(
            parse_timeline_id(&"g".repeat(32)).unwrap_err().kind,
            "timeline"
        );
        let long = "a".repeat(5000);
        assert!(parse_tenant_id(&long).unwrap_err().input.len() <= 64);
        let id = TimelineId::generate();
        assert_eq!(parse_timeline_id(&id.to_string()).unwrap(), id);
    }
}
