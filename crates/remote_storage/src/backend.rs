//! The small trait all object I/O goes through, and its implementation over
//! the `object_store` crate (a local directory or any S3 API).
//!
//! The trait is deliberately narrow (whole-object put, get, ranged get,
//! list by prefix, delete, head) so that wrappers — retries in
//! [`crate::remote`], fault injection in [`crate::faulty`] — stay simple.
//! Retrying is *not* done here: the backend's own client retries are turned
//! off so that one layer decides.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;

use crate::error::RemoteError;

/// An object name relative to the storage root: `/`-separated, non-empty
/// segments, no `.`/`..`, no leading or trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RemotePath(String);

impl RemotePath {
    /// Validates a relative object name.
    pub fn new(path: impl Into<String>) -> Result<RemotePath, RemoteError> {
        let path = path.into();
        let valid = !path.is_empty()
            && path
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\\'));
        if valid {
            Ok(RemotePath(path))
        } else {
            Err(RemoteError::InvalidPath(path))
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A child of this path (`self/segment`).
    pub fn join(&self, segment: &str) -> Result<RemotePath, RemoteError> {
        RemotePath::new(format!("{}/{segment}", self.0))
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl std::fmt::Display for RemotePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a listing or a head returns about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object name, relative to the storage root.
    pub path: RemotePath,
    /// Its size.
    pub size_bytes: u64,
}

/// All object I/O. Implementations map "no such object" to
/// [`RemoteError::NotFound`] and classify other failures as transient or
/// permanent; they never retry.
#[async_trait::async_trait]
pub trait ObjectStorage: Send + Sync + std::fmt::Debug {
    /// Writes a whole object, replacing any previous one.
    async fn put(&self, path: &RemotePath, data: Bytes) -> Result<(), RemoteError>;
    /// Reads a whole object.
    async fn get(&self, path: &RemotePath) -> Result<Bytes, RemoteError>;
    /// Reads `range` of an object.
    async fn get_range(&self, path: &RemotePath, range: Range<u64>) -> Result<Bytes, RemoteError>;
    /// Every object whose name starts with `prefix/` (recursively).
    async fn list(&self, prefix: &RemotePath) -> Result<Vec<ObjectMeta>, RemoteError>;
    /// Deletes an object; deleting a missing object succeeds.
    async fn delete(&self, path: &RemotePath) -> Result<(), RemoteError>;
    /// The size of an object.
    async fn head(&self, path: &RemotePath) -> Result<ObjectMeta, RemoteError>;
}

/// [`ObjectStorage`] over any `object_store` implementation, under an
/// optional key prefix.
#[derive(Debug, Clone)]
pub struct ObjectStoreBackend {
    store: Arc<dyn object_store::ObjectStore>,
    /// Prepended to every name (`""` or `"a/b"`).
    prefix: String,
}

impl ObjectStoreBackend {
    /// Wraps a store; every object name gets `prefix/` in front.
    pub fn new(store: Arc<dyn object_store::ObjectStore>, prefix: &str) -> ObjectStoreBackend {
        ObjectStoreBackend {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    fn full(&self, path: &RemotePath) -> object_store::path::Path {
        if self.prefix.is_empty() {
            object_store::path::Path::from(path.as_str())
        } else {
            object_store::path::Path::from(format!("{}/{}", self.prefix, path.as_str()))
        }
    }

    fn strip(&self, location: &object_store::path::Path) -> Result<RemotePath, RemoteError> {
        let name = location.as_ref();
        let relative = if self.prefix.is_empty() {
            name
        } else {
            name.strip_prefix(self.prefix.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .ok_or_else(|| RemoteError::InvalidPath(name.to_owned()))?
        };
        RemotePath::new(relative)
    }
}

fn mapped(path: &RemotePath) -> impl FnOnce(object_store::Error) -> RemoteError + '_ {
    move |error| RemoteError::from_object_store(path.as_str(), error)
}

#[async_trait::async_trait]
impl ObjectStorage for ObjectStoreBackend {
    async fn put(&self, path: &RemotePath, data: Bytes) -> Result<(), RemoteError> {
        self.store
            .put(&self.full(path), data.into())
            .await
            .map_err(mapped(path))?;
        Ok(())
    }

    async fn get(&self, path: &RemotePath) -> Result<Bytes, RemoteError> {
        let result = self
            .store
            .get(&self.full(path))
            .await
            .map_err(mapped(path))?;
        result.bytes().await.map_err(mapped(path))
    }

    async fn get_range(&self, path: &RemotePath, range: Range<u64>) -> Result<Bytes, RemoteError> {
        self.store
            .get_range(&self.full(path), range)
            .await
            .map_err(mapped(path))
    }

    async fn list(&self, prefix: &RemotePath) -> Result<Vec<ObjectMeta>, RemoteError> {
        let full = self.full(prefix);
        let found: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&full))
            .try_collect()
            .await
            .or_else(|error| match error {
                // A local directory that does not exist lists as empty, like S3.
                object_store::Error::NotFound { .. } => Ok(Vec::new()),
                other => Err(other),
            })
            .map_err(mapped(prefix))?;
        let mut objects = Vec::with_capacity(found.len());
        for meta in found {
            objects.push(ObjectMeta {
                path: self.strip(&meta.location)?,
                size_bytes: meta.size,
            });
        }
        objects.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(objects)
    }

    async fn delete(&self, path: &RemotePath) -> Result<(), RemoteError> {
        match self.store.delete(&self.full(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(RemoteError::from_object_store(path.as_str(), error)),
        }
    }

    async fn head(&self, path: &RemotePath) -> Result<ObjectMeta, RemoteError> {
        let meta = self
            .store
            .head(&self.full(path))
            .await
            .map_err(mapped(path))?;
        Ok(ObjectMeta {
            path: path.clone(),
            size_bytes: meta.size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_validated() {
        assert!(RemotePath::new("a/b/c-00000001").is_ok());
        for bad in ["", "/a", "a/", "a//b", "a/../b", "./a", "a\\b"] {
            assert!(RemotePath::new(bad).is_err(), "{bad:?}");
        }
        let path = RemotePath::new("a/b").unwrap();
        assert_eq!(path.join("c").unwrap().as_str(), "a/b/c");
        assert_eq!(path.file_name(), "b");
    }
}
