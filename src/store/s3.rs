//! `ObjectStore` over aws-sdk-s3, the only file that knows the SDK.
//!
//! Configuration comes from the usual AWS chain (environment, profile files,
//! instance metadata) with `StoreConfig` taking precedence; the environment's
//! `AWS_ENDPOINT_URL` keeps working because only an explicit endpoint is
//! passed to the loader.
//!
//! Every request is bounded without bounding how long a moving transfer may
//! take (see `transport`): an attempt fails when no byte moves for the stall
//! timeout, in any phase, or when a connection takes longer than the connect
//! timeout; copies and multipart completions, on which the store works before
//! it answers, wait up to the server-work timeout for their answer. Attempts
//! are ours, not the SDK's (see `retry`): up to `max_attempts` failures in a
//! row, with jittered exponential back-off, and only for failures another
//! attempt may not meet. A GetObject body that breaks off resumes from the
//! last byte received, pinned to the ETag of the first response. Once the
//! endpoint leaves a request unanswered, every attempt probes it, and once a
//! probe is unanswered too requests fail fast until it answers again (see
//! `health`), so that a black-holed endpoint costs a FUSE call two stall
//! timeouts at most, not one per request and attempt.
//!
//! SDK errors become `StoreError` in one place, `errors::map_error`; nothing
//! of the SDK leaves this module except as an opaque error source. Copies
//! report their errors against the source key: a missing key or a failed
//! If-Match can only be the source's. S3 may answer a copy or a
//! CompleteMultipartUpload with 200 and an error in the body; the SDK turns
//! those into service errors.
//!
//! Write bodies are `Bytes` handed to the SDK as they are, so a retry resends
//! the same buffer without a copy.

mod errors;
mod get;
mod health;
mod resume;
mod retry;
mod send_queue;
mod transport;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::ProvideCredentials;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use bytes::Bytes;

use self::errors::{Subject, map_error};
use self::health::EndpointHealth;
use self::retry::{Attempts, classify};
use self::transport::Bounds;
use super::{
    ListFrom, ListPage, ListedObject, ObjectHeaders, ObjectMeta, ObjectStore, PendingUpload,
    PendingUploadPage, StoreError, Verb, error_chain,
};
use crate::buffers::BufferPool;
use crate::config::StoreConfig;

/// Used when neither `StoreConfig` nor the AWS chain names a region, so that
/// a local S3-compatible endpoint works without any AWS configuration.
/// us-east-1 is the region S3 assumes for unqualified requests.
const FALLBACK_REGION: &str = "us-east-1";

/// The delimiter that makes ListObjectsV2 roll keys up into directories.
const DELIMITER: &str = "/";

/// Idle GET body buffers kept for reuse, so that a streaming reader's next
/// blocks land in memory that is already mapped: the default read-ahead's
/// worth (see `crate::buffers` for what the bound buys and costs). Since a
/// GET's blocks are freed one by one, raising it from 32 MiB left the peak
/// RSS of bench/run.sh's reads where it was (89-98 MiB) and the sequential
/// read at 1,626-1,741 MB/s against 1,487 (one run each way).
const IDLE_BODY_BUFFER_BYTES: usize = 64 * 1024 * 1024;

/// Idle body buffers go back to the system after this long without a GET.
const IDLE_BODY_BUFFER_QUIET: Duration = Duration::from_secs(10);

pub struct S3Store {
    client: Client,
    bucket: String,
    max_attempts: u32,
    body_buffers: Arc<BufferPool>,
    /// Upload bodies go without a SHA-256 of the payload in the signature.
    unsigned_payload: bool,
}

impl S3Store {
    /// Loads the AWS configuration, resolves the credentials and builds the
    /// client. Fails with `InvalidCredentials` when no credentials can be
    /// found; a wrong bucket or rejected credentials show up on the first call.
    pub async fn new(config: &StoreConfig) -> Result<S3Store, StoreError> {
        let mut loader = aws_config::from_env();
        if let Some(profile) = &config.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &config.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        if config.no_sign_request {
            loader = loader.no_credentials();
        }
        let sdk_config = loader.load().await;

        // Resolved once here because, at request time, the SDK reports a
        // missing credential as a dispatch failure, indistinguishable from an
        // unreachable endpoint.
        if let Some(provider) = sdk_config.credentials_provider() {
            provider
                .provide_credentials()
                .await
                .map_err(|err| StoreError::InvalidCredentials {
                    message: format!("no usable credentials: {}", error_chain(&err)),
                })?;
        }

        // The connect timeout is the SDK's (hyper's); every other bound is
        // the transport's, and no attempt or operation has a total time limit.
        // A connection slower than the stall timeout would stall anyway.
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(config.connect_timeout.min(config.stall_timeout))
            .build();
        let bounds = Bounds {
            stall: config.stall_timeout,
            server_work: config.copy_timeout.max(config.stall_timeout),
        };
        let mut s3_config = aws_sdk_s3::config::Builder::from(&sdk_config)
            .force_path_style(config.force_path_style)
            .timeout_config(timeouts)
            // Attempts are counted in `send` and `get_range`.
            .retry_config(RetryConfig::disabled())
            // Its throughput check would cut what the stall timeout allows.
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .http_client(transport::http_client(
                bounds,
                Arc::new(EndpointHealth::new()),
            ));
        if sdk_config.region().is_none() {
            s3_config = s3_config.region(Region::from_static(FALLBACK_REGION));
        }
        let body_buffers = BufferPool::new(IDLE_BODY_BUFFER_BYTES);
        body_buffers.release_when_quiet(IDLE_BODY_BUFFER_QUIET);
        Ok(S3Store {
            client: Client::from_conf(s3_config.build()),
            bucket: config.bucket.clone(),
            max_attempts: config.max_attempts,
            body_buffers,
            unsigned_payload: !config.sign_payloads,
        })
    }

    /// Sends the request `attempt` builds until it succeeds, fails for good,
    /// or has failed `max_attempts` times in a row.
    async fn send<T, E, Fut>(
        &self,
        verb: Verb,
        key: &str,
        mut attempt: impl FnMut() -> Fut,
    ) -> Result<T, SdkError<E, HttpResponse>>
    where
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata,
    {
        let mut attempts = Attempts::new(self.max_attempts);
        loop {
            // Every request by name, for counting what a workload costs.
            log::trace!("{verb} {key:?}");
            let err = match attempt().await {
                Ok(output) => return Ok(output),
                Err(err) => err,
            };
            let retry = classify(&err);
            match attempts.after_failure(retry) {
                Some(wait) => {
                    log::debug!("{verb} {key:?} failed ({retry:?}); retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
                None => return Err(err),
            }
        }
    }
}

/// Whether requests go over TLS: to AWS (no endpoint given) or to an
/// `https://` endpoint. There TLS already protects the body, and the SDK's
/// CRC32 checksum catches corruption, so hashing every uploaded byte with
/// SHA-256 for the signature (a quarter of the daemon's CPU while writing)
/// buys nothing; over plain HTTP the signed hash is the only guard against
/// a body changed on the way, so it stays (as AWS's own SDKs do).
/// Applies `change` when `condition` holds; keeps one type either way.
trait MapIf: Sized {
    fn map_if(self, condition: bool, change: impl FnOnce(Self) -> Self) -> Self {
        if condition { change(self) } else { self }
    }
}

impl<T> MapIf for T {}

impl ObjectStore for S3Store {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let output = self
            .send(Verb::Head, key, || {
                self.client
                    .head_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send()
            })
            .await
            .map_err(|err| map_error(err, self.object(key)))?;
        let user_metadata = output
            .metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name.to_lowercase(), value))
            .collect::<HashMap<_, _>>();
        Ok(ObjectMeta {
            size: to_size(output.content_length),
            etag: output.e_tag.unwrap_or_default(),
            last_modified: to_system_time(output.last_modified.as_ref()),
            user_metadata,
            content_type: output.content_type,
        })
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        let pieces = self.get_pieces(key, range, if_match, usize::MAX).await?;
        Ok(pieces.into_iter().next().unwrap_or_default())
    }

    async fn get_range_in_pieces(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
        piece_bytes: usize,
    ) -> Result<Vec<Bytes>, StoreError> {
        self.get_pieces(key, range, if_match, piece_bytes).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        from: ListFrom<'_>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        let (start_after, continuation) = match from {
            ListFrom::Start => (None, None),
            ListFrom::After(key) => (Some(key), None),
            ListFrom::Continue(token) => (None, Some(token)),
        };
        let output = self
            .send(Verb::List, prefix, || {
                self.client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .set_prefix((!prefix.is_empty()).then(|| prefix.to_owned()))
                    .set_delimiter(delimited.then(|| DELIMITER.to_owned()))
                    .set_continuation_token(continuation.map(str::to_owned))
                    .set_start_after(start_after.map(str::to_owned))
                    .max_keys(i32::try_from(max_keys).unwrap_or(i32::MAX))
                    .send()
            })
            .await
            .map_err(|err| map_error(err, self.listing()))?;

        let objects = output
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|object| {
                Some(ListedObject {
                    size: to_size(object.size),
                    etag: object.e_tag.unwrap_or_default(),
                    last_modified: to_system_time(object.last_modified.as_ref()),
                    key: object.key?,
                })
            })
            .collect();
        let common_prefixes = output
            .common_prefixes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|common| common.prefix)
            .collect();
        let token = output.next_continuation_token;
        let next = match (output.is_truncated.unwrap_or(token.is_some()), token) {
            (true, Some(token)) => Some(token),
            // Stopping here would silently hide the rest of the directory.
            (true, None) => {
                return Err(StoreError::Other {
                    source: Box::new(MissingContinuationToken {
                        prefix: prefix.to_owned(),
                    }),
                });
            }
            (false, _) => None,
        };
        Ok(ListPage {
            objects,
            common_prefixes,
            next,
        })
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        headers: &ObjectHeaders,
    ) -> Result<String, StoreError> {
        let output = self
            .send(Verb::Put, key, || {
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .body(ByteStream::from(body.clone()))
                    .set_metadata(non_empty(&headers.user_metadata))
                    .set_content_type(headers.content_type.clone())
                    .customize()
                    .map_if(self.unsigned_payload, |put| put.disable_payload_signing())
                    .send()
            })
            .await
            .map_err(|err| map_error(err, self.object(key)))?;
        require_etag(output.e_tag, Verb::Put, key)
    }

    async fn create_multipart(
        &self,
        key: &str,
        headers: &ObjectHeaders,
    ) -> Result<String, StoreError> {
        let output = self
            .send(Verb::CreateMultipart, key, || {
                self.client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .set_metadata(non_empty(&headers.user_metadata))
                    .set_content_type(headers.content_type.clone())
                    .send()
            })
            .await
            .map_err(|err| map_error(err, self.object(key)))?;
        output.upload_id.ok_or_else(|| StoreError::Other {
            source: Box::new(MissingField {
                verb: Verb::CreateMultipart,
                field: "UploadId",
                key: key.to_owned(),
            }),
        })
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<String, StoreError> {
        let part_number = to_part_number(part_number)?;
        let output = self
            .send(Verb::UploadPart, key, || {
                self.client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(part_number)
                    .body(ByteStream::from(body.clone()))
                    .customize()
                    .map_if(self.unsigned_payload, |part| part.disable_payload_signing())
                    .send()
            })
            .await
            .map_err(|err| map_error(err, self.object(key)))?;
        require_etag(output.e_tag, Verb::UploadPart, key)
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        source_key: &str,
        source_range: Range<u64>,
        source_etag: Option<&str>,
    ) -> Result<String, StoreError> {
        // S3 has no empty byte range; "bytes=a-(a-1)" would be rejected as
        // malformed after a round trip.
        if source_range.is_empty() {
            return Err(StoreError::Other {
                source: Box::new(EmptyCopyRange {
                    source_key: source_key.to_owned(),
                    start: source_range.start,
                }),
            });
        }
        let part_number = to_part_number(part_number)?;
        let output = self
            .send(Verb::UploadPartCopy, source_key, || {
                self.client
                    .upload_part_copy()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(part_number)
                    .copy_source(copy_source(&self.bucket, source_key))
                    .copy_source_range(format!(
                        "bytes={}-{}",
                        source_range.start,
                        source_range.end - 1
                    ))
                    .set_copy_source_if_match(source_etag.map(str::to_owned))
                    .send()
            })
            .await
            .map_err(|err| map_error(err, self.object(source_key)))?;
        let etag = output.copy_part_result.and_then(|result| result.e_tag);
        require_etag(etag, Verb::UploadPartCopy, key)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<String, StoreError> {
        let completed = parts
            .iter()
            .map(|(number, etag)| {
                Ok(CompletedPart::builder()
                    .part_number(to_part_number(*number)?)
                    .e_tag(etag)
                    .build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(completed))
            .build();
        let output = self
            .send(Verb::CompleteMultipart, key, || {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .multipart_upload(completed.clone())
                    .send()
            })
            .await
            .map_err(|err| map_error(err, self.object(key)))?;
        require_etag(output.e_tag, Verb::CompleteMultipart, key)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.send(Verb::AbortMultipart, key, || {
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
        })
        .await
        .map_err(|err| map_error(err, self.object(key)))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.send(Verb::Delete, key, || {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
        })
        .await
        .map_err(|err| map_error(err, self.object(key)))?;
        Ok(())
    }

    async fn copy(
        &self,
        source_key: &str,
        destination_key: &str,
        source_etag: Option<&str>,
        headers: Option<&ObjectHeaders>,
    ) -> Result<String, StoreError> {
        let directive = match headers {
            Some(_) => MetadataDirective::Replace,
            None => MetadataDirective::Copy,
        };
        let output = self
            .send(Verb::Copy, source_key, || {
                self.client
                    .copy_object()
                    .bucket(&self.bucket)
                    .key(destination_key)
                    .copy_source(copy_source(&self.bucket, source_key))
                    .metadata_directive(directive.clone())
                    .set_metadata(headers.and_then(|headers| non_empty(&headers.user_metadata)))
                    .set_content_type(headers.and_then(|headers| headers.content_type.clone()))
                    .set_copy_source_if_match(source_etag.map(str::to_owned))
                    .send()
            })
            .await
            .map_err(|err| map_error(err, self.object(source_key)))?;
        let etag = output.copy_object_result.and_then(|result| result.e_tag);
        require_etag(etag, Verb::Copy, destination_key)
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        max_uploads: u32,
    ) -> Result<PendingUploadPage, StoreError> {
        let output = self
            .send(Verb::ListMultipartUploads, prefix, || {
                self.client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .set_prefix((!prefix.is_empty()).then(|| prefix.to_owned()))
                    .max_uploads(i32::try_from(max_uploads).unwrap_or(i32::MAX))
                    .send()
            })
            .await
            .map_err(|err| map_error(err, self.listing()))?;
        let uploads = output
            .uploads
            .unwrap_or_default()
            .into_iter()
            .filter_map(|upload| {
                Some(PendingUpload {
                    initiated: upload
                        .initiated
                        .and_then(|time| SystemTime::try_from(time).ok()),
                    key: upload.key?,
                    upload_id: upload.upload_id?,
                })
            })
            .collect();
        Ok(PendingUploadPage {
            uploads,
            is_truncated: output.is_truncated.unwrap_or(false),
        })
    }
}

impl S3Store {
    fn object<'a>(&'a self, key: &'a str) -> Subject<'a> {
        Subject::Object {
            bucket: &self.bucket,
            key,
        }
    }

    fn listing(&self) -> Subject<'_> {
        Subject::Bucket {
            bucket: &self.bucket,
        }
    }
}

/// An ETag is what later pins reads and completes uploads; a response without
/// one is malformed rather than "no ETag".
fn require_etag(etag: Option<String>, verb: Verb, key: &str) -> Result<String, StoreError> {
    etag.filter(|etag| !etag.is_empty())
        .ok_or_else(|| StoreError::Other {
            source: Box::new(MissingField {
                verb,
                field: "ETag",
                key: key.to_owned(),
            }),
        })
}

/// The SDK sends an empty metadata map as no headers anyway; `None` says so.
fn non_empty(user_metadata: &HashMap<String, String>) -> Option<HashMap<String, String>> {
    (!user_metadata.is_empty()).then(|| user_metadata.clone())
}

/// S3 part numbers run from 1 to 10,000, sent as an i32.
fn to_part_number(part_number: u32) -> Result<i32, StoreError> {
    i32::try_from(part_number).map_err(|_| StoreError::Other {
        source: Box::new(PartNumberOutOfRange { part_number }),
    })
}

/// The `x-amz-copy-source` value: `bucket/key`, URL-encoded as S3 requires.
/// The SDK sends the header as given, so the encoding is ours.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut source = String::with_capacity(bucket.len() + 1 + key.len() * 3);
    percent_encode_into(&mut source, bucket);
    source.push('/');
    percent_encode_into(&mut source, key);
    source
}

/// Percent-encodes every byte of `text` except RFC 3986 unreserved characters
/// and `/`, the set the AWS CLI and SDKs leave alone in a copy source. `+`
/// is encoded too: servers that decode the value as a form field would read
/// a literal one as a space.
fn percent_encode_into(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
}

fn to_size(content_length: Option<i64>) -> u64 {
    content_length
        .and_then(|len| u64::try_from(len).ok())
        .unwrap_or(0)
}

fn to_system_time(time: Option<&DateTime>) -> SystemTime {
    time.and_then(|time| SystemTime::try_from(*time).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

#[derive(Debug, thiserror::Error)]
#[error("listing of {prefix:?} is truncated but has no continuation token")]
struct MissingContinuationToken {
    prefix: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{verb} response for {key} has no {field}")]
struct MissingField {
    verb: Verb,
    field: &'static str,
    key: String,
}

#[derive(Debug, thiserror::Error)]
#[error("part number {part_number} is out of range")]
struct PartNumberOutOfRange {
    part_number: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("empty byte range at {start} of {source_key} cannot be copied as a part")]
struct EmptyCopyRange {
    source_key: String,
    start: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_is_percent_encoded_keeping_slashes() {
        assert_eq!(copy_source("bucket", "dir/file.txt"), "bucket/dir/file.txt");
        assert_eq!(
            copy_source("bucket", "a b/c+d%e#f?g&h=i"),
            "bucket/a%20b/c%2Bd%25e%23f%3Fg%26h%3Di"
        );
        assert_eq!(copy_source("bucket", "é/ü~_-."), "bucket/%C3%A9/%C3%BC~_-.");
    }
}
