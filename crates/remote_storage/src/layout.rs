//! Where every object of a tenant lives, and reading those names back (pure,
//! no I/O). See `docs/remote-storage.md`.
//!
//! ```text
//! tenants/<tenant>/generation-<gen>                           attachment marker
//! tenants/<tenant>/timelines/<timeline>/index_part.json-<gen> the timeline's index
//! tenants/<tenant>/timelines/<timeline>/<layer file>-<gen>    a layer file
//! tenants/<tenant>/timelines/<timeline>/wal_<start>_<end>-<gen> WAL bytes start..end
//! ```
//!
//! Ids are passed as strings (32 hex digits) so this crate does not depend
//! on the storage crate's types.

use std::collections::BTreeMap;

use crate::backend::RemotePath;
use crate::error::RemoteError;
use crate::generation::Generation;

/// Base name of the per-timeline index.
pub const INDEX_PART: &str = "index_part.json";
/// Base name of the per-tenant attachment markers.
pub const GENERATION_MARKER: &str = "generation";

/// `tenants/<tenant>`.
pub fn tenant_path(tenant_id: &str) -> Result<RemotePath, RemoteError> {
    RemotePath::new(format!("tenants/{tenant_id}"))
}

/// `tenants/<tenant>/timelines`.
pub fn timelines_path(tenant_id: &str) -> Result<RemotePath, RemoteError> {
    tenant_path(tenant_id)?.join("timelines")
}

/// `tenants/<tenant>/timelines/<timeline>`.
pub fn timeline_path(tenant_id: &str, timeline_id: &str) -> Result<RemotePath, RemoteError> {
    timelines_path(tenant_id)?.join(timeline_id)
}

/// The index of a timeline written by `generation`.
pub fn index_path(
    tenant_id: &str,
    timeline_id: &str,
    generation: Generation,
) -> Result<RemotePath, RemoteError> {
    timeline_path(tenant_id, timeline_id)?.join(&generation.suffixed(INDEX_PART))
}

/// A layer file uploaded by `generation`.
pub fn layer_path(
    tenant_id: &str,
    timeline_id: &str,
    layer_name: &str,
    generation: Generation,
) -> Result<RemotePath, RemoteError> {
    timeline_path(tenant_id, timeline_id)?.join(&generation.suffixed(layer_name))
}

/// A WAL object (see [`crate::wal`]) uploaded by `generation`.
pub fn wal_path(
    tenant_id: &str,
    timeline_id: &str,
    object: &crate::wal::WalObject,
) -> Result<RemotePath, RemoteError> {
    timeline_path(tenant_id, timeline_id)?.join(&object.generation.suffixed(&object.name()))
}

/// The attachment marker of `generation`.
pub fn generation_marker_path(
    tenant_id: &str,
    generation: Generation,
) -> Result<RemotePath, RemoteError> {
    tenant_path(tenant_id)?.join(&generation.suffixed(GENERATION_MARKER))
}

/// The highest attachment marker among the names of a tenant listing.
pub fn latest_marker<'a>(names: impl IntoIterator<Item = &'a RemotePath>) -> Option<Generation> {
    names
        .into_iter()
        .filter_map(|path| Generation::parse_suffixed(path.file_name()))
        .filter(|(base, _)| *base == GENERATION_MARKER)
        .map(|(_, generation)| generation)
        .max()
}

/// The generations of every index found in a listing of
/// `tenants/<tenant>/timelines`, per timeline id.
pub fn indexes_by_timeline<'a>(
    names: impl IntoIterator<Item = &'a RemotePath>,
) -> BTreeMap<String, Vec<Generation>> {
    let mut found: BTreeMap<String, Vec<Generation>> = BTreeMap::new();
    for path in names {
        let segments: Vec<&str> = path.as_str().split('/').collect();
        let [.., "timelines", timeline, file] = segments.as_slice() else {
            continue;
        };
        if let Some((INDEX_PART, generation)) = Generation::parse_suffixed(file) {
            found
                .entry((*timeline).to_owned())
                .or_default()
                .push(generation);
        }
    }
    for generations in found.values_mut() {
        generations.sort();
    }
    found
}

/// Which index an attachment of generation `mine` loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexChoice {
    /// The highest generation at or below ours.
    Load(Generation),
    /// A newer attachment exists: we are stale and must not proceed.
    Stale {
        /// The newest generation seen.
        newer: Generation,
    },
    /// No index at or below our generation.
    Missing,
}

/// Chooses the index to load from the generations present: the newest at or
/// below `mine`; any newer one means this attachment is stale.
pub fn choose_index(present: &[Generation], mine: Generation) -> IndexChoice {
    if let Some(newer) = present.iter().copied().filter(|g| *g > mine).max() {
        return IndexChoice::Stale { newer };
    }
    match present.iter().copied().filter(|g| *g <= mine).max() {
        Some(generation) => IndexChoice::Load(generation),
        None => IndexChoice::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: &str = "0123456789abcdef0123456789abcdef";
    const TL: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn names() {
        assert_eq!(
            index_path(T, TL, Generation(2)).unwrap().as_str(),
            format!("tenants/{T}/timelines/{TL}/index_part.json-00000002")
        );
        assert_eq!(
            layer_path(T, TL, "delta_x", Generation(0x1f))
                .unwrap()
                .as_str(),
            format!("tenants/{T}/timelines/{TL}/delta_x-0000001f")
        );
        assert!(tenant_path("../x").is_err());
    }

    #[test]
    fn listings_are_read_back() {
        let names: Vec<RemotePath> = [
            format!("tenants/{T}/generation-00000001"),
            format!("tenants/{T}/generation-00000003"),
            format!("tenants/{T}/timelines/{TL}/index_part.json-00000003"),
            format!("tenants/{T}/timelines/{TL}/index_part.json-00000001"),
            format!("tenants/{T}/timelines/{TL}/delta_x-00000001"),
            format!("tenants/{T}/timelines/{TL}/index_part.json"),
        ]
        .into_iter()
        .map(|n| RemotePath::new(n).unwrap())
        .collect();
        assert_eq!(latest_marker(&names), Some(Generation(3)));
        let indexes = indexes_by_timeline(&names);
        assert_eq!(indexes[TL], vec![Generation(1), Generation(3)]);
    }

    proptest! {
        /// The choice is the maximum at or below ours, unless a newer one exists.
        #[test]
        fn choice_matches_model(present in proptest::collection::vec(0u32..20, 0..8), mine in 0u32..20) {
            let present: Vec<Generation> = present.into_iter().map(Generation).collect();
            let choice = choose_index(&present, Generation(mine));
            let newest = present.iter().max().copied();
            match choice {
                IndexChoice::Stale { newer } => {
                    prop_assert!(newer.0 > mine);
                    prop_assert_eq!(Some(newer), newest);
                }
                IndexChoice::Load(g) => {
                    prop_assert_eq!(Some(g), newest);
                    prop_assert!(g.0 <= mine);
                }
                IndexChoice::Missing => prop_assert!(present.is_empty()),
            }
        }
    }
}
