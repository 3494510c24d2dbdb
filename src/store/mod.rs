//! The object store seen by the filesystem: a handful of S3 verbs with
//! store-neutral types. `s3.rs` is the only file that knows aws-sdk-s3;
//! `memory.rs` backs unit tests and can inject failures.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::time::SystemTime;

use bytes::Bytes;

pub mod memory;
pub mod s3;

/// An object as HEAD reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// The ETag as the store sends it, quotes included; used only for equality.
    pub etag: String,
    pub last_modified: SystemTime,
    /// User metadata (`x-amz-meta-*`) with the prefix removed and names lower-cased.
    pub user_metadata: HashMap<String, String>,
}

/// An object as a listing reports it: no user metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    /// Empty when the store lists no ETag (some S3-compatible stores).
    pub etag: String,
    pub last_modified: SystemTime,
}

/// One page of ListObjectsV2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    /// Full prefixes, each ending in the delimiter.
    pub common_prefixes: Vec<String>,
    /// Continuation token for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// What any object store can report. SDK detail stays in the opaque `source`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such key: {key}")]
    NotFound { key: String },
    /// The object no longer has the ETag the caller pinned (S3 answered 412).
    #[error("object {key} changed (ETag no longer matches)")]
    PreconditionFailed { key: String },
    #[error("bucket {bucket} does not exist")]
    NoSuchBucket { bucket: String },
    /// The credentials are unknown or the signature does not verify.
    #[error("the store rejected the credentials: {message}")]
    InvalidCredentials { message: String },
    #[error("access denied: {message}")]
    AccessDenied { message: String },
    #[error("request timed out")]
    Timeout,
    /// No HTTP response at all (connection refused, DNS, TLS).
    #[error("cannot reach the endpoint: {source}")]
    Unreachable {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Anything else after retries: 5xx, malformed responses.
    #[error("store request failed: {source}")]
    Other {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The S3 verbs the filesystem needs. Every method is bounded in time by the
/// implementation (timeouts and retries are its business) and safe to call
/// concurrently; callers bound concurrency themselves.
pub trait ObjectStore: Send + Sync + 'static {
    /// HeadObject. `NotFound` when the key does not exist.
    fn head(&self, key: &str) -> impl Future<Output = Result<ObjectMeta, StoreError>> + Send;

    /// GetObject of `range` (end exclusive, clamped by the store at the object's
    /// end). With `if_match`, a changed object fails with `PreconditionFailed`
    /// instead of returning bytes of another version.
    fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<Bytes, StoreError>> + Send;

    /// One ListObjectsV2 page under `prefix`, with delimiter `/` when
    /// `delimited`, resuming at `continuation`. `max_keys` caps the page.
    fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        continuation: Option<&str>,
        max_keys: u32,
    ) -> impl Future<Output = Result<ListPage, StoreError>> + Send;

    /// PutObject: creates or replaces `key` with `body` and user metadata
    /// (names without the `x-amz-meta-` prefix). Returns the new ETag. The
    /// object appears whole or not at all.
    fn put(
        &self,
        key: &str,
        body: Bytes,
        user_metadata: &HashMap<String, String>,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// CreateMultipartUpload; returns the upload id. The caller must end the
    /// upload with `complete_multipart` or `abort_multipart`.
    fn create_multipart(
        &self,
        key: &str,
        user_metadata: &HashMap<String, String>,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// UploadPart (numbers from 1); returns the part's ETag.
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// UploadPartCopy of `source_range` (end exclusive) of `source_key`,
    /// failing with `PreconditionFailed` if the source no longer has
    /// `source_etag` (when given). Returns the part's ETag.
    fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        source_key: &str,
        source_range: Range<u64>,
        source_etag: Option<&str>,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// CompleteMultipartUpload with `(part number, ETag)` in ascending order;
    /// returns the object's ETag. Only now does the object change.
    fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// AbortMultipartUpload: drops the parts uploaded so far.
    fn abort_multipart(
        &self,
        key: &str,
        upload_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// DeleteObject. Deleting a missing key succeeds, as in S3.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// CopyObject (single request: sources up to 5 GiB). With `user_metadata`
    /// the copy's metadata is replaced (directive REPLACE), else copied.
    /// With `source_etag`, fails with `PreconditionFailed` if the source
    /// changed. Returns the new object's ETag.
    fn copy(
        &self,
        source_key: &str,
        destination_key: &str,
        source_etag: Option<&str>,
        user_metadata: Option<&HashMap<String, String>>,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;
}
