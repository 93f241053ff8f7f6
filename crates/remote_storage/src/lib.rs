//! Remote storage: where layer files and per-timeline indexes are uploaded.
//! A local directory by default, or any S3 API.
