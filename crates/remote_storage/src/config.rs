//! Where the remote storage is: `s3://bucket[/prefix]` or a local directory
//! (a plain path or `file:///path`), and opening the backend for it.
//!
//! S3 settings come from the usual environment variables (`AWS_REGION`,
//! `AWS_ENDPOINT_URL`/`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, ...). Plain `http://` endpoints are allowed so
//! tests can use a local S3 server. With no access key in the environment,
//! requests go unsigned rather than hanging on a cloud metadata endpoint.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{ObjectStorage, ObjectStoreBackend};

/// Why a remote storage location was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL names no usable location.
    #[error("invalid remote storage {url:?}: {reason}")]
    Invalid {
        /// What was given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The backend refused to start.
    #[error("cannot open remote storage {url:?}: {reason}")]
    Open {
        /// What was given.
        url: String,
        /// Why.
        reason: String,
    },
}

/// S3 settings that override the `AWS_*` environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// Endpoint URL, e.g. `http://127.0.0.1:8333`.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
}

/// A remote storage location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteConfig {
    /// A local directory (created if missing).
    Local(PathBuf),
    /// An S3 bucket and key prefix.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix (may be empty).
        prefix: String,
    },
}

impl RemoteConfig {
    /// Parses `s3://bucket[/prefix]`, `file:///abs/path` or a plain path.
    pub fn parse(url: &str) -> Result<RemoteConfig, ConfigError> {
        let invalid = |reason: &str| ConfigError::Invalid {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("the bucket name is empty"));
            }
            return Ok(RemoteConfig::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        if path.is_empty() {
            return Err(invalid("the path is empty"));
        }
        if path.contains("://") {
            return Err(invalid("only s3:// URLs and local paths are supported"));
        }
        Ok(RemoteConfig::Local(PathBuf::from(path)))
    }

    /// The URL form (what `parse` accepts).
    pub fn url(&self) -> String {
        match self {
            RemoteConfig::Local(path) => path.display().to_string(),
            RemoteConfig::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            RemoteConfig::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }

    /// Opens the backend with S3 settings from the process environment.
    pub fn open(&self) -> Result<Arc<dyn ObjectStorage>, ConfigError> {
        self.open_with(&S3Settings::default())
    }

    /// Opens the backend; `settings` override the environment (tests pass
    /// their server's endpoint and keys without touching the process
    /// environment). Needs a tokio runtime only when used, not here.
    pub fn open_with(&self, settings: &S3Settings) -> Result<Arc<dyn ObjectStorage>, ConfigError> {
        let failed = |reason: String| ConfigError::Open {
            url: self.url(),
            reason,
        };
        match self {
            RemoteConfig::Local(path) => {
                std::fs::create_dir_all(path).map_err(|e| failed(e.to_string()))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| failed(e.to_string()))?
                    .with_automatic_cleanup(true);
                Ok(Arc::new(ObjectStoreBackend::new(Arc::new(store), "")))
            }
            RemoteConfig::S3 { bucket, prefix } => {
                let options = object_store::ClientOptions::new()
                    .with_allow_http(true)
                    .with_timeout(Duration::from_secs(30))
                    .with_connect_timeout(Duration::from_secs(5));
                let retry = object_store::RetryConfig {
                    max_retries: 0,
                    ..Default::default()
                };
                let unsigned = settings.access_key_id.is_none()
                    && std::env::var_os("AWS_ACCESS_KEY_ID").is_none();
                let mut builder = object_store::aws::AmazonS3Builder::from_env();
                if let Some(endpoint) = &settings.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(region) = &settings.region {
                    builder = builder.with_region(region);
                }
                if let (Some(key), Some(secret)) =
                    (&settings.access_key_id, &settings.secret_access_key)
                {
                    builder = builder
                        .with_access_key_id(key)
                        .with_secret_access_key(secret);
                }
                let store = builder
                    .with_bucket_name(bucket)
                    .with_client_options(options)
                    .with_retry(retry)
                    .with_skip_signature(unsigned)
                    .build()
                    .map_err(|e| failed(e.to_string()))?;
                Ok(Arc::new(ObjectStoreBackend::new(Arc::new(store), prefix)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        assert_eq!(
            RemoteConfig::parse("s3://bucket/a/b/").unwrap(),
            RemoteConfig::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            RemoteConfig::parse("s3://bucket").unwrap().url(),
            "s3://bucket"
        );
        assert_eq!(
            RemoteConfig::parse("file:///tmp/x").unwrap(),
            RemoteConfig::Local("/tmp/x".into())
        );
        assert!(RemoteConfig::parse("s3:///x").is_err());
        assert!(RemoteConfig::parse("gs://b").is_err());
        assert!(RemoteConfig::parse("").is_err());
    }
}
