//! Object storage behind one narrow trait, so the coordinator and the workers do not care
//! whether images live in a local folder or in a bucket.
//!
//! Keys are `/`-separated and relative to the store's root; every implementation refuses keys
//! that could leave the root (see [`crate::keys::check_relative`]). `put` is atomic: a reader
//! sees the whole object or nothing, which is what makes "the manifest is written last" a
//! commit point.

mod cache;
mod local;
mod s3;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use cache::StoreCache;
pub use local::{sha256_etag, LocalStore};
pub use s3::S3Store;

use crate::config::S3Settings;
use crate::{Location, StoreError};

/// What a listing says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Key relative to the store's root.
    pub key: String,
    pub size: u64,
    /// A fingerprint of the content when the listing carries one for free (S3's ETag).
    pub etag: Option<String>,
}

/// Object storage: a local folder or an S3 bucket prefix.
#[async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Reads a whole object.
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError>;

    /// Reads a whole object, or `None` when it does not exist.
    async fn get_opt(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.get(key).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads at most `len` bytes of an object from byte `start` on: fewer at its end, none
    /// past it. Pages through a large object (a job's results) without reading it whole.
    async fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        let bytes = self.get(key).await?;
        let from = usize::try_from(start).unwrap_or(usize::MAX).min(bytes.len());
        let to = from.saturating_add(usize::try_from(len).unwrap_or(usize::MAX)).min(bytes.len());
        Ok(bytes[from..to].to_vec())
    }

    /// Writes a whole object atomically and durably: once this returns, the object survives a
    /// crash of this process or machine.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError>;

    /// [`ObjectStore::put`] from shared bytes, which a caller can keep for a retry without a
    /// copy; the local and S3 stores write them without copying either (S3 uploads a large
    /// object in parts that are slices of it).
    async fn put_shared(&self, key: &str, bytes: bytes::Bytes) -> Result<(), StoreError> {
        self.put(key, bytes.to_vec()).await
    }

    /// Appends to an object, creating it when missing. Used for job records only.
    async fn append(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;

    /// Whether [`ObjectStore::append`] costs only the bytes appended (a local file) rather
    /// than a rewrite of the whole object (S3, which has no append).
    fn appends_in_place(&self) -> bool {
        false
    }

    /// Deletes an object; a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Writes `key` as the concatenation of the objects `parts`, in order, without holding
    /// them all in memory where the store allows (S3: a multipart upload of bounded parts).
    async fn concat(&self, key: &str, parts: &[String]) -> Result<(), StoreError> {
        let mut all = Vec::new();
        for part in parts {
            all.extend_from_slice(&self.get(part).await?);
        }
        self.put(key, all).await
    }

    /// The content fingerprint of an object, the same value a listing puts in `etag`
    /// (computed when the listing does not carry it).
    async fn etag(&self, key: &str) -> Result<String, StoreError>;

    /// Streams every object under `prefix` (recursively) into `tx`, in key order, page by
    /// page: memory stays bounded by the channel's capacity, not by the number of objects.
    /// Returns when the listing is complete or the receiver is gone.
    async fn list(&self, prefix: &str, tx: mpsc::Sender<Result<ObjectMeta, StoreError>>);
}

/// Opens the store for a location: a local folder or an S3 bucket prefix.
pub async fn open(location: &Location, s3: &S3Settings) -> Arc<dyn ObjectStore> {
    match location {
        Location::Local(path) => Arc::new(LocalStore::new(path)),
        Location::S3 { bucket, prefix } => Arc::new(S3Store::new(s3, bucket, prefix).await),
    }
}

/// The input store; when the output lies inside the input, listings skip it, so a run never
/// decomposes its own layers.
pub async fn open_input(input: &Location, output: &Location, s3: &S3Settings) -> Arc<dyn ObjectStore> {
    match (input, output) {
        (Location::Local(i), Location::Local(o)) => {
            let store = LocalStore::new(i);
            match (i.canonicalize(), o.canonicalize()) {
                (Ok(i), Ok(o)) if o.starts_with(&i) => Arc::new(store.excluding(o)),
                _ => Arc::new(store),
            }
        }
        (Location::S3 { bucket, prefix }, Location::S3 { bucket: out_bucket, prefix: out_prefix }) if bucket == out_bucket => {
            let store = S3Store::new(s3, bucket, prefix).await;
            let inside = if prefix.is_empty() { Some(out_prefix.as_str()) } else { out_prefix.strip_prefix(&format!("{prefix}/")) };
            match inside {
                Some(rel) if !rel.is_empty() => Arc::new(store.excluding(rel)),
                _ => Arc::new(store),
            }
        }
        _ => open(input, s3).await,
    }
}

