//! The object store seen by the filesystem: a handful of S3 verbs with
//! store-neutral types. `s3.rs` is the only file that knows aws-sdk-s3;
//! `memory.rs` backs unit tests and can inject failures; `fault.rs` wraps any
//! store and injects failures by sequence or by seeded probability.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::time::SystemTime;

use bytes::Bytes;

pub mod fault;
pub mod memory;
pub mod s3;
pub mod stale_uploads;

/// Slices of `bytes`, `piece_bytes` each but the last (none when empty).
pub fn split_into_pieces(bytes: Bytes, piece_bytes: usize) -> Vec<Bytes> {
    let piece_bytes = piece_bytes.max(1);
    (0..bytes.len())
        .step_by(piece_bytes)
        .map(|start| bytes.slice(start..(start + piece_bytes).min(bytes.len())))
        .collect()
}

/// An object as HEAD reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    /// The ETag as the store sends it, quotes included; used only for equality.
    pub etag: String,
    pub last_modified: SystemTime,
    /// User metadata (`x-amz-meta-*`) with the prefix removed and names lower-cased.
    pub user_metadata: HashMap<String, String>,
    /// `None` when the store sends none.
    pub content_type: Option<String>,
}

impl ObjectMeta {
    /// What a copy of this object that replaces its metadata must carry to
    /// keep everything it did not mean to change.
    pub fn headers(&self) -> ObjectHeaders {
        ObjectHeaders {
            user_metadata: self.user_metadata.clone(),
            content_type: self.content_type.clone(),
        }
    }
}

/// What a new object carries besides its bytes. A copy that replaces
/// metadata replaces both, so both travel together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectHeaders {
    /// `x-amz-meta-*` names without the prefix.
    pub user_metadata: HashMap<String, String>,
    /// `None` leaves it to the store (S3: `binary/octet-stream`).
    pub content_type: Option<String>,
}

/// S3's limit on user metadata per object, counted as `user_metadata_bytes` does.
pub const MAX_USER_METADATA_BYTES: usize = 2048;

/// Size of user metadata as S3 counts it against its limit: the UTF-8 bytes
/// of every name and value.
pub fn user_metadata_bytes(metadata: &HashMap<String, String>) -> usize {
    metadata
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum()
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

/// Where a ListObjectsV2 page begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFrom<'a> {
    /// The first key under the prefix.
    Start,
    /// The first key after this one (StartAfter): a listing that begins in
    /// the middle of a prefix, as one of a walk's listings run side by side.
    After(&'a str),
    /// Where the page before ended: its continuation token.
    Continue(&'a str),
}

impl<'a> ListFrom<'a> {
    /// The page after the one that handed out `token`, or the first.
    pub fn continuing(token: Option<&'a str>) -> ListFrom<'a> {
        token.map_or(ListFrom::Start, ListFrom::Continue)
    }
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

impl From<HashMap<String, String>> for ObjectHeaders {
    /// User metadata alone; the store picks the Content-Type.
    fn from(user_metadata: HashMap<String, String>) -> Self {
        ObjectHeaders {
            user_metadata,
            content_type: None,
        }
    }
}

/// A multipart upload neither completed nor aborted, as ListMultipartUploads
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
    /// `None` when the store does not say.
    pub initiated: Option<SystemTime>,
}

/// One page of ListMultipartUploads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingUploadPage {
    pub uploads: Vec<PendingUpload>,
    /// More uploads exist than this page holds.
    pub is_truncated: bool,
}

/// The store requests, to count them or make them fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Head,
    Get,
    List,
    Put,
    CreateMultipart,
    UploadPart,
    UploadPartCopy,
    CompleteMultipart,
    AbortMultipart,
    Delete,
    Copy,
    ListMultipartUploads,
}

impl Verb {
    pub const ALL: [Verb; 12] = [
        Verb::Head,
        Verb::Get,
        Verb::List,
        Verb::Put,
        Verb::CreateMultipart,
        Verb::UploadPart,
        Verb::UploadPartCopy,
        Verb::CompleteMultipart,
        Verb::AbortMultipart,
        Verb::Delete,
        Verb::Copy,
        Verb::ListMultipartUploads,
    ];
}

impl std::fmt::Display for Verb {
    /// The S3 operation's name, as in logs and errors.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verb::Head => "HeadObject",
            Verb::Get => "GetObject",
            Verb::List => "ListObjectsV2",
            Verb::Put => "PutObject",
            Verb::CreateMultipart => "CreateMultipartUpload",
            Verb::UploadPart => "UploadPart",
            Verb::UploadPartCopy => "UploadPartCopy",
            Verb::CompleteMultipart => "CompleteMultipartUpload",
            Verb::AbortMultipart => "AbortMultipartUpload",
            Verb::Delete => "DeleteObject",
            Verb::Copy => "CopyObject",
            Verb::ListMultipartUploads => "ListMultipartUploads",
        })
    }
}

/// Which `StoreError` an injected failure produces. `StoreError` itself is
/// not `Clone` (it carries a boxed source), so failures are queued by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    NotFound,
    PreconditionFailed,
    NoSuchBucket,
    InvalidCredentials,
    AccessDenied,
    Timeout,
    Unreachable,
    Other,
}

impl FailureKind {
    /// The error a request about `key` fails with.
    pub fn into_error(self, key: &str) -> StoreError {
        let injected = |kind| Box::new(std::io::Error::new(kind, "injected failure"));
        match self {
            FailureKind::NotFound => StoreError::NotFound {
                key: key.to_owned(),
            },
            FailureKind::PreconditionFailed => StoreError::PreconditionFailed {
                key: key.to_owned(),
            },
            FailureKind::NoSuchBucket => StoreError::NoSuchBucket {
                bucket: "injected".to_owned(),
            },
            FailureKind::InvalidCredentials => StoreError::InvalidCredentials {
                message: "injected failure".to_owned(),
            },
            FailureKind::AccessDenied => StoreError::AccessDenied {
                message: "injected failure".to_owned(),
            },
            FailureKind::Timeout => StoreError::Timeout,
            FailureKind::Unreachable => StoreError::Unreachable {
                source: injected(std::io::ErrorKind::ConnectionRefused),
            },
            FailureKind::Other => StoreError::Other {
                source: injected(std::io::ErrorKind::Other),
            },
        }
    }
}

/// The messages of `error` and its sources, joined by ": ": one line for a
/// log or a user, without the `Debug` output that the SDK's
/// `DisplayErrorContext` appends (raw responses, provider internals).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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

    /// `get_range`, its bytes in pieces of `piece_bytes` from the range's
    /// start (the last may be shorter). A store that can gives each piece an
    /// allocation of its own, so that a reader done with the first pieces of
    /// a large GET frees them while it reads the rest, instead of keeping the
    /// whole range alive until its last byte is read.
    fn get_range_in_pieces(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        piece_bytes: usize,
    ) -> impl Future<Output = Result<Vec<Bytes>, StoreError>> + Send {
        async move {
            let bytes = self.get_range(key, range, if_match).await?;
            Ok(split_into_pieces(bytes, piece_bytes))
        }
    }

    /// One ListObjectsV2 page under `prefix`, with delimiter `/` when
    /// `delimited`, beginning `from`. `max_keys` caps the page.
    fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        from: ListFrom<'_>,
        max_keys: u32,
    ) -> impl Future<Output = Result<ListPage, StoreError>> + Send;

    /// PutObject: creates or replaces `key` with `body` and `headers`.
    /// Returns the new ETag. The object appears whole or not at all.
    fn put(
        &self,
        key: &str,
        body: Bytes,
        headers: &ObjectHeaders,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// CreateMultipartUpload; returns the upload id. The caller must end the
    /// upload with `complete_multipart` or `abort_multipart`.
    fn create_multipart(
        &self,
        key: &str,
        headers: &ObjectHeaders,
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

    /// CopyObject (single request: sources up to 5 GiB). With `headers` the
    /// copy's user metadata and Content-Type are replaced (directive
    /// REPLACE), else copied.
    /// With `source_etag`, fails with `PreconditionFailed` if the source
    /// changed. Returns the new object's ETag.
    fn copy(
        &self,
        source_key: &str,
        destination_key: &str,
        source_etag: Option<&str>,
        headers: Option<&ObjectHeaders>,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// One page (at most `max_uploads`) of ListMultipartUploads under
    /// `prefix`: uploads neither completed nor aborted, oldest key first.
    /// Only reports; nothing is aborted.
    fn list_multipart_uploads(
        &self,
        prefix: &str,
        max_uploads: u32,
    ) -> impl Future<Output = Result<PendingUploadPage, StoreError>> + Send;
}
