//! The S3 object store (aws-sdk-s3): AWS S3 and S3-compatible servers (Garage, MinIO, Ceph).
//!
//! Non-AWS servers differ from AWS in small ways that matter: they need path-style
//! addressing, and several reject or mis-handle the CRC checksums recent SDKs send by default,
//! so checksums are only sent and validated where the API requires them. Throttling and 5xx
//! answers are retried by the SDK's standard retry mode (exponential backoff, full jitter);
//! what still fails is reported as retryable, for the caller's own retry loop.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use tokio::sync::mpsc;

use super::{ObjectMeta, ObjectStore};
use crate::config::S3Settings;
use crate::keys::{check_relative, printable};
use crate::{ServiceCause, StoreError};

/// Objects above this size are uploaded in parts of this size.
const PART_SIZE: usize = 16 << 20;
/// Keys per listing page (S3's maximum).
const PAGE_SIZE: i32 = 1000;

/// A bucket prefix seen as an object store.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Key prefix without a trailing `/` (may be empty).
    prefix: String,
    page_size: i32,
    /// A folder (relative key prefix) that listings skip.
    exclude: Option<String>,
}

impl S3Store {
    /// A store for `bucket`/`prefix` with the given settings. Credentials come from the
    /// settings when given, from the standard AWS chain otherwise.
    pub async fn new(settings: &S3Settings, bucket: &str, prefix: &str) -> S3Store {
        let mut config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .force_path_style(settings.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(settings.max_attempts)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(10)),
            );
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        match &settings.credentials {
            Some((key, secret)) => {
                config = config.credentials_provider(Credentials::new(key, secret.expose(), None, None, "lamina"));
            }
            None => {
                let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
                if let Some(provider) = shared.credentials_provider() {
                    config = config.credentials_provider(provider);
                }
            }
        }
        S3Store {
            client: Client::from_conf(config.build()),
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            page_size: PAGE_SIZE,
            exclude: None,
        }
    }

    /// Lists `n` keys per request instead of S3's maximum (tests use it to see pagination).
    pub fn with_page_size(mut self, n: i32) -> S3Store {
        self.page_size = n.clamp(1, PAGE_SIZE);
        self
    }

    /// Skips the folder `rel` (relative to this store's prefix) in listings: the output
    /// prefix when it lies inside the input prefix.
    pub fn excluding(mut self, rel: &str) -> S3Store {
        self.exclude = Some(format!("{}/", rel.trim_matches('/')));
        self
    }

    fn full_key(&self, key: &str) -> Result<String, StoreError> {
        check_relative(key)?;
        Ok(if self.prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.prefix) })
    }

    /// Starts a multipart upload; its id.
    async fn start_upload(&self, full: &str, key: &str) -> Result<String, StoreError> {
        let created = self.client.create_multipart_upload().bucket(&self.bucket).key(full).send().await;
        Ok(created.map_err(|e| sdk_err(key, e))?.upload_id().unwrap_or_default().to_owned())
    }

    /// Completes a multipart upload from its parts, in order.
    async fn complete_upload(&self, full: &str, key: &str, id: &str, parts: Vec<CompletedPart>) -> Result<(), StoreError> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| sdk_err(key, e))?;
        Ok(())
    }

    /// Aborts a failed multipart upload, so no parts are left to bill (best effort: the
    /// upload's own error is the one reported).
    async fn abort_upload(&self, full: &str, id: &str) {
        let _ = self.client.abort_multipart_upload().bucket(&self.bucket).key(full).upload_id(id).send().await;
    }

    /// Uploads one part of a multipart upload.
    async fn upload_part(&self, full: &str, key: &str, id: &str, number: i32, bytes: Bytes) -> Result<CompletedPart, StoreError> {
        let sent = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(id)
            .part_number(number)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| sdk_err(key, e))?;
        Ok(CompletedPart::builder().part_number(number).set_e_tag(sent.e_tag().map(str::to_owned)).build())
    }

    /// Writes `chunks` (in order) as one object through a multipart upload, holding at most
    /// one upload part (PART_SIZE) in memory; a total under one part is a single put. A
    /// failed upload is aborted, so no parts are left to bill.
    async fn put_streamed<F, Fut>(&self, key: &str, count: usize, mut chunk: F) -> Result<(), StoreError>
    where
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>, StoreError>>,
    {
        let full = self.full_key(key)?;
        let mut buffer = Vec::new();
        let mut upload: Option<(String, Vec<CompletedPart>)> = None;
        let result = async {
            for i in 0..count {
                buffer.extend_from_slice(&chunk(i).await?);
                while buffer.len() >= PART_SIZE {
                    if upload.is_none() {
                        upload = Some((self.start_upload(&full, key).await?, Vec::new()));
                    }
                    let Some((id, done)) = upload.as_mut() else { break };
                    let rest = buffer.split_off(PART_SIZE);
                    let part = std::mem::replace(&mut buffer, rest);
                    done.push(self.upload_part(&full, key, id, done.len() as i32 + 1, part.into()).await?);
                }
            }
            let Some((id, mut done)) = upload.clone() else {
                return self.put_object(&full, key, std::mem::take(&mut buffer).into()).await;
            };
            if !buffer.is_empty() {
                done.push(self.upload_part(&full, key, &id, done.len() as i32 + 1, std::mem::take(&mut buffer).into()).await?);
            }
            self.complete_upload(&full, key, &id, done).await
        }
        .await;
        if let (Err(_), Some((id, _))) = (&result, &upload) {
            self.abort_upload(&full, id).await;
        }
        result
    }

    async fn put_object(&self, full: &str, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(full)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| sdk_err(key, e))?;
        Ok(())
    }
}

/// Maps an SDK error to a store error: missing keys are `NotFound`, 4xx are permanent,
/// everything else (5xx, throttling, timeouts, connection errors) is retryable. The message
/// carries the service's error code, never credentials or signed URLs.
fn sdk_err<E: ProvideErrorMetadata>(key: &str, err: SdkError<E, HttpResponse>) -> StoreError {
    let key = printable(key);
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().unwrap_or("").to_owned();
    if status == Some(404) || code == "NoSuchKey" || code == "NotFound" {
        return StoreError::NotFound { key };
    }
    let throttled = matches!(status, Some(429 | 503)) || code.contains("SlowDown") || code.contains("Throttl");
    let (what, cause) = match (&err, status) {
        (SdkError::ServiceError(_), Some(s)) => {
            let cause = match s {
                _ if throttled => ServiceCause::Throttled,
                408 => ServiceCause::Timeout,
                500..=599 => ServiceCause::Server,
                400..=499 => ServiceCause::Client,
                _ => ServiceCause::Response,
            };
            (format!("S3 answered {s} {code}"), cause)
        }
        (SdkError::TimeoutError(_), _) => ("S3 request timed out".to_owned(), ServiceCause::Timeout),
        (SdkError::DispatchFailure(_), _) => ("cannot reach S3".to_owned(), ServiceCause::Network),
        (SdkError::ResponseError(_), _) => ("bad response from S3".to_owned(), ServiceCause::Response),
        _ => (format!("S3 request failed {code}"), ServiceCause::Response),
    };
    StoreError::Service { key, what: what.trim_end().to_owned(), cause, status, code }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let full = self.full_key(key)?;
        let out = self.client.get_object().bucket(&self.bucket).key(&full).send().await.map_err(|e| sdk_err(key, e))?;
        let body = out.body.collect().await.map_err(|e| StoreError::Service {
            key: printable(key),
            what: format!("S3 body interrupted: {e}"),
            cause: ServiceCause::Network,
            status: None,
            code: String::new(),
        })?;
        Ok(body.into_bytes().to_vec())
    }

    async fn get_range(&self, key: &str, start: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let full = self.full_key(key)?;
        let range = format!("bytes={start}-{}", start.saturating_add(len - 1));
        let out = match self.client.get_object().bucket(&self.bucket).key(&full).range(range).send().await {
            Ok(out) => out,
            // 416: the range starts at or past the end.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => return Ok(Vec::new()),
            Err(e) => return Err(sdk_err(key, e)),
        };
        let body = out.body.collect().await.map_err(|e| StoreError::Service {
            key: printable(key),
            what: format!("S3 body interrupted: {e}"),
            cause: ServiceCause::Network,
            status: None,
            code: String::new(),
        })?;
        Ok(body.into_bytes().to_vec())
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.put_shared(key, bytes.into()).await
    }

    /// One request up to a part's size; above it a multipart upload whose parts are slices
    /// of `bytes` (no copies), aborted if it fails.
    async fn put_shared(&self, key: &str, bytes: Bytes) -> Result<(), StoreError> {
        let full = self.full_key(key)?;
        if bytes.len() <= PART_SIZE {
            return self.put_object(&full, key, bytes).await;
        }
        let id = self.start_upload(&full, key).await?;
        let result = async {
            let mut done = Vec::new();
            for (i, start) in (0..bytes.len()).step_by(PART_SIZE).enumerate() {
                let part = bytes.slice(start..(start + PART_SIZE).min(bytes.len()));
                done.push(self.upload_part(&full, key, &id, i as i32 + 1, part).await?);
            }
            self.complete_upload(&full, key, &id, done).await
        }
        .await;
        if result.is_err() {
            self.abort_upload(&full, &id).await;
        }
        result
    }

    async fn append(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        // S3 has no append: read, extend, write back. Only job records use this, in chunks.
        let mut current = self.get_opt(key).await?.unwrap_or_default();
        current.extend_from_slice(bytes);
        self.put(key, current).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let full = self.full_key(key)?;
        self.client.delete_object().bucket(&self.bucket).key(&full).send().await.map_err(|e| sdk_err(key, e))?;
        Ok(())
    }

    /// A multipart upload fed part by part: memory holds one upload part (PART_SIZE), not
    /// the object. Small totals are written with a single put.
    async fn concat(&self, key: &str, parts: &[String]) -> Result<(), StoreError> {
        self.put_streamed(key, parts.len(), |i| self.get(&parts[i])).await
    }

    async fn etag(&self, key: &str) -> Result<String, StoreError> {
        let full = self.full_key(key)?;
        let head = self.client.head_object().bucket(&self.bucket).key(&full).send().await.map_err(|e| sdk_err(key, e))?;
        Ok(head.e_tag().unwrap_or_default().trim_matches('"').to_owned())
    }

    async fn list(&self, prefix: &str, tx: mpsc::Sender<Result<ObjectMeta, StoreError>>) {
        let base = match (self.prefix.is_empty(), prefix.is_empty()) {
            (true, _) => prefix.to_owned(),
            (false, true) => format!("{}/", self.prefix),
            (false, false) => format!("{}/{prefix}", self.prefix),
        };
        let strip = if self.prefix.is_empty() { 0 } else { self.prefix.len() + 1 };
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&base)
            .max_keys(self.page_size)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    let _ = tx.send(Err(sdk_err(&base, e))).await;
                    return;
                }
            };
            for object in page.contents() {
                let Some(full) = object.key() else { continue };
                let key = full.get(strip..).unwrap_or(full).to_owned();
                let excluded = self.exclude.as_deref().is_some_and(|x| key.starts_with(x));
                if key.is_empty() || key.ends_with('/') || excluded {
                    continue;
                }
                let meta = ObjectMeta {
                    key,
                    size: object.size().unwrap_or(0).max(0) as u64,
                    etag: object.e_tag().map(|e| e.trim_matches('"').to_owned()),
                };
                if tx.send(Ok(meta)).await.is_err() {
                    return;
                }
            }
        }
    }
}
