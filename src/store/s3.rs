//! `ObjectStore` over aws-sdk-s3, the only file that knows the SDK.
//!
//! Configuration comes from the usual AWS chain (environment, profile files,
//! instance metadata) with `StoreConfig` taking precedence; the environment's
//! `AWS_ENDPOINT_URL` keeps working because only an explicit endpoint is
//! passed to the loader.
//!
//! Every request is bounded: each attempt by `request_timeout` (connect by at
//! most `MAX_CONNECT_TIMEOUT`), the whole request by `max_attempts` in the
//! SDK's standard retry mode, and a GetObject body by `request_timeout`
//! between two chunks. A closed port therefore fails within the retry backoff
//! (a few seconds), never hangs.
//!
//! SDK errors become `StoreError` in one place, [`map_error`]; nothing of the
//! SDK leaves this file except as an opaque error source. Copies report their
//! errors against the source key: a missing key or a failed If-Match can only
//! be the source's. S3 may answer a copy or a CompleteMultipartUpload with 200
//! and an error in the body; the SDK turns those into service errors.
//!
//! Write bodies are `Bytes` handed to the SDK as they are, so a retry resends
//! the same buffer without a copy.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::ProvideCredentials;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use bytes::{Bytes, BytesMut};

use super::{ListPage, ListedObject, ObjectMeta, ObjectStore, StoreError};
use crate::config::StoreConfig;

/// A closed port answers at once and a blackholed one never does; waiting
/// longer than this for a TCP/TLS handshake only delays the retry.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Used when neither `StoreConfig` nor the AWS chain names a region, so that
/// a local S3-compatible endpoint works without any AWS configuration.
/// us-east-1 is the region S3 assumes for unqualified requests.
const FALLBACK_REGION: &str = "us-east-1";

/// The delimiter that makes ListObjectsV2 roll keys up into directories.
const DELIMITER: &str = "/";

pub struct S3Store {
    client: Client,
    bucket: String,
    request_timeout: Duration,
}

impl S3Store {
    /// Loads the AWS configuration, resolves the credentials and builds the
    /// client. Fails with `InvalidCredentials` when no credentials can be
    /// found; a wrong bucket or rejected credentials show up on the first call.
    pub async fn new(config: &StoreConfig) -> Result<S3Store, StoreError> {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(config.request_timeout.min(MAX_CONNECT_TIMEOUT))
            .operation_attempt_timeout(config.request_timeout)
            .build();
        // The SDK rejects zero attempts; one attempt means no retries.
        let retries = RetryConfig::standard().with_max_attempts(config.max_attempts.max(1));

        let mut loader = aws_config::from_env()
            .timeout_config(timeouts)
            .retry_config(retries);
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
                    message: format!("no usable credentials: {}", display_chain(&err)),
                })?;
        }

        let mut s3_config = aws_sdk_s3::config::Builder::from(&sdk_config)
            .force_path_style(config.force_path_style);
        if sdk_config.region().is_none() {
            s3_config = s3_config.region(Region::from_static(FALLBACK_REGION));
        }
        Ok(S3Store {
            client: Client::from_conf(s3_config.build()),
            bucket: config.bucket.clone(),
            request_timeout: config.request_timeout,
        })
    }

    /// Reads a GetObject body into one buffer. The SDK bounds the attempt only
    /// until the headers arrive, so a stalled body is bounded here.
    async fn collect_body(
        &self,
        key: &str,
        mut body: ByteStream,
        expected_len: Option<u64>,
    ) -> Result<Bytes, StoreError> {
        let mut buffer = BytesMut::new();
        let mut first_chunk: Option<Bytes> = None;
        loop {
            let next = tokio::time::timeout(self.request_timeout, body.next())
                .await
                .map_err(|_| StoreError::Timeout)?;
            let chunk = match next {
                None => break,
                Some(chunk) => chunk.map_err(|source| StoreError::Other {
                    source: Box::new(source),
                })?,
            };
            // A body that arrives in one chunk is returned without a copy.
            if first_chunk.is_none() && buffer.is_empty() {
                first_chunk = Some(chunk);
                continue;
            }
            if let Some(first) = first_chunk.take() {
                let capacity = expected_len.map_or(0, |len| len as usize);
                buffer.reserve(capacity.max(first.len() + chunk.len()));
                buffer.extend_from_slice(&first);
            }
            buffer.extend_from_slice(&chunk);
        }
        let data = match first_chunk {
            Some(first) => first,
            None => buffer.freeze(),
        };
        match expected_len {
            Some(len) if len != data.len() as u64 => Err(StoreError::Other {
                source: Box::new(TruncatedBody {
                    key: key.to_owned(),
                    expected_len: len,
                    received_len: data.len() as u64,
                }),
            }),
            _ => Ok(data),
        }
    }
}

impl ObjectStore for S3Store {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let output = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
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
        })
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .set_if_match(if_match.map(str::to_owned))
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            // S3 answers 416 when the range starts at or past the end of the
            // object (or the object is empty); clamped, that range is empty.
            Err(err) if status_of(&err) == Some(416) => return Ok(Bytes::new()),
            Err(err) => return Err(map_error(err, self.object(key))),
        };
        let expected_len = output
            .content_length
            .and_then(|len| u64::try_from(len).ok());
        self.collect_body(key, output.body, expected_len).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        continuation: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        let output = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_prefix((!prefix.is_empty()).then(|| prefix.to_owned()))
            .set_delimiter(delimited.then(|| DELIMITER.to_owned()))
            .set_continuation_token(continuation.map(str::to_owned))
            .max_keys(i32::try_from(max_keys).unwrap_or(i32::MAX))
            .send()
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
        user_metadata: &HashMap<String, String>,
    ) -> Result<String, StoreError> {
        let output = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .set_metadata(non_empty(user_metadata))
            .send()
            .await
            .map_err(|err| map_error(err, self.object(key)))?;
        require_etag(output.e_tag, Verb::Put, key)
    }

    async fn create_multipart(
        &self,
        key: &str,
        user_metadata: &HashMap<String, String>,
    ) -> Result<String, StoreError> {
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_metadata(non_empty(user_metadata))
            .send()
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
        let output = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(to_part_number(part_number)?)
            .body(ByteStream::from(body))
            .send()
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
        let output = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(to_part_number(part_number)?)
            .copy_source(copy_source(&self.bucket, source_key))
            .copy_source_range(format!(
                "bytes={}-{}",
                source_range.start,
                source_range.end - 1
            ))
            .set_copy_source_if_match(source_etag.map(str::to_owned))
            .send()
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
        let output = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|err| map_error(err, self.object(key)))?;
        require_etag(output.e_tag, Verb::CompleteMultipart, key)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|err| map_error(err, self.object(key)))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|err| map_error(err, self.object(key)))?;
        Ok(())
    }

    async fn copy(
        &self,
        source_key: &str,
        destination_key: &str,
        source_etag: Option<&str>,
        user_metadata: Option<&HashMap<String, String>>,
    ) -> Result<String, StoreError> {
        let directive = match user_metadata {
            Some(_) => MetadataDirective::Replace,
            None => MetadataDirective::Copy,
        };
        let output = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(destination_key)
            .copy_source(copy_source(&self.bucket, source_key))
            .metadata_directive(directive)
            .set_metadata(user_metadata.and_then(non_empty))
            .set_copy_source_if_match(source_etag.map(str::to_owned))
            .send()
            .await
            .map_err(|err| map_error(err, self.object(source_key)))?;
        let etag = output.copy_object_result.and_then(|result| result.e_tag);
        require_etag(etag, Verb::Copy, destination_key)
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

/// What a request was about, which decides what a bare 404 means.
#[derive(Debug, Clone, Copy)]
enum Subject<'a> {
    /// HeadObject, GetObject: a 404 is a missing key unless S3 says NoSuchBucket.
    Object { bucket: &'a str, key: &'a str },
    /// ListObjectsV2 and other bucket-level calls: a 404 is a missing bucket.
    Bucket { bucket: &'a str },
}

impl Subject<'_> {
    fn bucket(&self) -> &str {
        match self {
            Subject::Object { bucket, .. } | Subject::Bucket { bucket } => bucket,
        }
    }
}

/// Error codes S3 (and compatible stores) return when the credentials, not
/// the policy, are at fault.
const CREDENTIAL_ERROR_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
];

/// The single translation from SDK errors to `StoreError`.
///
/// Only S3's code and message are kept for service errors, never the raw
/// response: a SignatureDoesNotMatch body echoes the canonical request.
fn map_error<E>(err: SdkError<E, HttpResponse>, subject: Subject<'_>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = status_of(&err);
    match err {
        SdkError::TimeoutError(_) => StoreError::Timeout,
        SdkError::DispatchFailure(ref failure) => {
            let is_user = failure.is_user();
            // The connector error alone reads better than "dispatch failure".
            let source = err.into_source().unwrap_or_else(|err| Box::new(err));
            if is_user {
                StoreError::Other { source }
            } else {
                // Connect timeouts land here too: no connection, unreachable.
                StoreError::Unreachable { source }
            }
        }
        SdkError::ServiceError(service) => {
            let status = status.unwrap_or_default();
            let err = service.into_err();
            map_service_error(status, err.code(), err.message(), subject).unwrap_or_else(|| {
                // Without a code, S3 sent no error at all: the SDK could not
                // parse a response (a 200 from a store that names the XML
                // root differently, for one), and says why in the source.
                let message = match (err.code(), err.message()) {
                    (_, Some(message)) => Some(message.to_owned()),
                    (None, None) => err.source().map(display_chain),
                    (Some(_), None) => None,
                };
                StoreError::Other {
                    source: Box::new(ServiceFailure {
                        status,
                        code: err.code().map(str::to_owned),
                        message,
                    }),
                }
            })
        }
        other => StoreError::Other {
            source: Box::new(other),
        },
    }
}

/// The service errors with a `StoreError` of their own; `None` for the rest.
fn map_service_error(
    status: u16,
    code: Option<&str>,
    message: Option<&str>,
    subject: Subject<'_>,
) -> Option<StoreError> {
    let message = || match message.or(code) {
        Some(message) => message.to_owned(),
        None => format!("HTTP {status} without a message"),
    };
    let no_such_bucket = || StoreError::NoSuchBucket {
        bucket: subject.bucket().to_owned(),
    };
    let error = match (code, status) {
        (Some("NoSuchBucket"), _) => no_such_bucket(),
        // The SDK fills in "NotFound" for a bodiless HEAD 404, which cannot
        // tell a missing key from a missing bucket; the key is the likely one.
        (Some("NoSuchKey" | "NotFound"), _) | (None, 404) => match subject {
            Subject::Object { key, .. } => StoreError::NotFound {
                key: key.to_owned(),
            },
            Subject::Bucket { .. } => no_such_bucket(),
        },
        (Some("PreconditionFailed"), _) | (_, 412) => match subject {
            Subject::Object { key, .. } => StoreError::PreconditionFailed {
                key: key.to_owned(),
            },
            Subject::Bucket { .. } => return None,
        },
        (Some(code), _) if CREDENTIAL_ERROR_CODES.contains(&code) => {
            StoreError::InvalidCredentials { message: message() }
        }
        // A HEAD 403 has no body, so bad credentials look like a denied
        // policy; AccessDenied is the honest answer.
        (Some("AccessDenied"), _) | (_, 403) => StoreError::AccessDenied { message: message() },
        _ => return None,
    };
    Some(error)
}

/// The write requests, named in errors about malformed responses.
#[derive(Debug, Clone, Copy)]
enum Verb {
    Put,
    CreateMultipart,
    UploadPart,
    UploadPartCopy,
    CompleteMultipart,
    Copy,
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verb::Put => "PutObject",
            Verb::CreateMultipart => "CreateMultipartUpload",
            Verb::UploadPart => "UploadPart",
            Verb::UploadPartCopy => "UploadPartCopy",
            Verb::CompleteMultipart => "CompleteMultipartUpload",
            Verb::Copy => "CopyObject",
        })
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

fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|raw| raw.status().as_u16())
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

/// The messages of `err` and its sources, without the `Debug` output that
/// `DisplayErrorContext` appends (raw responses, provider internals).
fn display_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        message.push_str(": ");
        message.push_str(&err.to_string());
        source = err.source();
    }
    message
}

/// An S3 error response without its raw body: status, code and message.
#[derive(Debug)]
struct ServiceFailure {
    status: u16,
    code: Option<String>,
    message: Option<String>,
}

impl fmt::Display for ServiceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServiceFailure {}

#[derive(Debug, thiserror::Error)]
#[error("body of {key} ended after {received_len} of {expected_len} bytes")]
struct TruncatedBody {
    key: String,
    expected_len: u64,
    received_len: u64,
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
    use std::error::Error as _;

    use aws_sdk_s3::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::operation::head_object::HeadObjectError;
    use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error;
    use aws_sdk_s3::primitives::SdkBody;

    use super::*;

    const OBJECT: Subject<'static> = Subject::Object {
        bucket: "bucket",
        key: "dir/file",
    };
    const BUCKET: Subject<'static> = Subject::Bucket { bucket: "bucket" };

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().unwrap(), SdkBody::empty())
    }

    fn metadata(code: Option<&str>, message: Option<&str>) -> ErrorMetadata {
        let mut builder = ErrorMetadata::builder();
        if let Some(code) = code {
            builder = builder.code(code);
        }
        if let Some(message) = message {
            builder = builder.message(message);
        }
        builder.build()
    }

    fn get_error(status: u16, code: Option<&str>, message: Option<&str>) -> StoreError {
        let err = GetObjectError::generic(metadata(code, message));
        map_error(SdkError::service_error(err, response(status)), OBJECT)
    }

    fn head_error(status: u16, code: Option<&str>) -> StoreError {
        let err = HeadObjectError::generic(metadata(code, None));
        map_error(SdkError::service_error(err, response(status)), OBJECT)
    }

    fn list_error(status: u16, code: Option<&str>) -> StoreError {
        let err = ListObjectsV2Error::generic(metadata(code, None));
        map_error(SdkError::service_error(err, response(status)), BUCKET)
    }

    #[test]
    fn missing_key_is_not_found() {
        assert!(matches!(
            get_error(404, Some("NoSuchKey"), None),
            StoreError::NotFound { key } if key == "dir/file"
        ));
        assert!(matches!(
            head_error(404, Some("NotFound")),
            StoreError::NotFound { .. }
        ));
        assert!(matches!(head_error(404, None), StoreError::NotFound { .. }));
    }

    #[test]
    fn missing_bucket_is_no_such_bucket() {
        assert!(matches!(
            get_error(404, Some("NoSuchBucket"), None),
            StoreError::NoSuchBucket { bucket } if bucket == "bucket"
        ));
        assert!(matches!(
            list_error(404, Some("NoSuchBucket")),
            StoreError::NoSuchBucket { .. }
        ));
        assert!(matches!(
            list_error(404, None),
            StoreError::NoSuchBucket { .. }
        ));
    }

    #[test]
    fn changed_object_is_precondition_failed() {
        assert!(matches!(
            get_error(412, Some("PreconditionFailed"), None),
            StoreError::PreconditionFailed { key } if key == "dir/file"
        ));
        assert!(matches!(
            get_error(412, None, None),
            StoreError::PreconditionFailed { .. }
        ));
    }

    #[test]
    fn credential_codes_are_invalid_credentials() {
        for code in [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "ExpiredToken",
            "InvalidToken",
        ] {
            let err = get_error(403, Some(code), Some("the key is wrong"));
            assert!(
                matches!(&err, StoreError::InvalidCredentials { message } if message == "the key is wrong"),
                "{code}: {err:?}"
            );
        }
    }

    #[test]
    fn forbidden_is_access_denied() {
        assert!(matches!(
            get_error(403, Some("AccessDenied"), Some("denied")),
            StoreError::AccessDenied { message } if message == "denied"
        ));
        assert!(matches!(
            head_error(403, None),
            StoreError::AccessDenied { .. }
        ));
    }

    #[test]
    fn transport_failures() {
        let timeout: SdkError<GetObjectError, HttpResponse> =
            SdkError::timeout_error("attempt timed out");
        assert!(matches!(map_error(timeout, OBJECT), StoreError::Timeout));

        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let dispatch: SdkError<GetObjectError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        assert!(matches!(
            map_error(dispatch, OBJECT),
            StoreError::Unreachable { .. }
        ));
    }

    #[test]
    fn other_errors_keep_status_and_code() {
        let err = get_error(
            503,
            Some("SlowDown"),
            Some("Please reduce your request rate."),
        );
        assert!(matches!(err, StoreError::Other { .. }));
        assert_eq!(
            err.source().unwrap().to_string(),
            "HTTP 503 SlowDown: Please reduce your request rate."
        );
        assert!(matches!(list_error(412, None), StoreError::Other { .. }));
    }

    #[test]
    fn copy_source_is_percent_encoded_keeping_slashes() {
        assert_eq!(copy_source("bucket", "dir/file.txt"), "bucket/dir/file.txt");
        assert_eq!(
            copy_source("bucket", "a b/c+d%e#f?g&h=i"),
            "bucket/a%20b/c%2Bd%25e%23f%3Fg%26h%3Di"
        );
        assert_eq!(copy_source("bucket", "é/ü~_-."), "bucket/%C3%A9/%C3%BC~_-.");
    }

    #[test]
    fn missing_source_of_a_copy_is_not_found() {
        use aws_sdk_s3::operation::copy_object::CopyObjectError;
        let source = Subject::Object {
            bucket: "bucket",
            key: "source",
        };
        let err = CopyObjectError::generic(metadata(Some("NoSuchKey"), None));
        assert!(matches!(
            map_error(SdkError::service_error(err, response(404)), source),
            StoreError::NotFound { key } if key == "source"
        ));
        let err = CopyObjectError::generic(metadata(Some("PreconditionFailed"), None));
        assert!(matches!(
            map_error(SdkError::service_error(err, response(412)), source),
            StoreError::PreconditionFailed { key } if key == "source"
        ));
    }
}
