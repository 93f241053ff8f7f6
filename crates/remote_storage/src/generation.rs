//! Generation numbers and the object-name suffix that carries them.
//!
//! Every attachment of a tenant to a pageserver has a generation, issued by
//! the control plane and strictly increasing per tenant. Every object a
//! pageserver writes ends in `-<generation as 8 hex digits>`, so two
//! pageservers attached at once (a migration, a split brain) never write the
//! same name; an index always names the exact objects it refers to. A tenant
//! created without a generation uses [`Generation::NONE`] (0), which every
//! real attachment outranks.

use serde::{Deserialize, Serialize};

/// An attachment generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Generation(pub u32);

impl Generation {
    /// The generation of a tenant created without one.
    pub const NONE: Generation = Generation(0);

    /// `name-<gen:08x>`.
    pub fn suffixed(self, name: &str) -> String {
        format!("{name}-{:08x}", self.0)
    }

    /// Splits `name-<gen:08x>` into `name` and the generation; `None` when
    /// the name carries no well-formed suffix.
    pub fn parse_suffixed(full: &str) -> Option<(&str, Generation)> {
        let (name, suffix) = full.rsplit_once('-')?;
        if suffix.len() != 8 || !suffix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let value = u32::from_str_radix(suffix, 16).ok()?;
        (!name.is_empty()).then_some((name, Generation(value)))
    }
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn suffix_round_trips(name in "[a-z0-9_.-]{1,40}", value: u32) {
            let full = Generation(value).suffixed(&name);
            prop_assert_eq!(Generation::parse_suffixed(&full), Some((name.as_str(), Generation(value))));
        }
    }

    #[test]
    fn malformed_suffixes_are_refused() {
        for bad in ["x", "x-1", "x-0000000g", "-00000001", "x-000000001"] {
            assert_eq!(Generation::parse_suffixed(bad), None, "{bad}");
        }
    }
}
