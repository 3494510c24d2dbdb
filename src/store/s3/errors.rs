//! The single translation from SDK errors to `StoreError`, and what a
//! request was about, which decides what a bare 404 means.

use std::fmt;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::transport::Stalled;
use crate::store::{StoreError, error_chain};

/// What a request was about, which decides what a bare 404 means.
#[derive(Debug, Clone, Copy)]
pub(super) enum Subject<'a> {
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
pub(super) fn map_error<E>(err: SdkError<E, HttpResponse>, subject: Subject<'_>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = status_of(&err);
    match err {
        SdkError::TimeoutError(_) => StoreError::Timeout,
        SdkError::DispatchFailure(ref failure) => {
            let (is_user, is_timeout) = (failure.is_user(), failure.is_timeout());
            // The connector error alone reads better than "dispatch failure".
            let source = err.into_source().unwrap_or_else(|err| Box::new(err));
            if is_timeout {
                // A connect timeout, or no byte moved for the stall timeout.
                StoreError::Timeout
            } else if is_user {
                StoreError::Other { source }
            } else {
                // Refused, reset, or not sent while the endpoint is silent
                // (`EndpointSilent`): no HTTP response at all.
                StoreError::Unreachable { source }
            }
        }
        // The response broke off or stalled while the SDK read it.
        SdkError::ResponseError(_) if has_source::<Stalled>(&err) => StoreError::Timeout,
        SdkError::ServiceError(service) => {
            let status = status.unwrap_or_default();
            let err = service.into_err();
            map_service_error(status, err.code(), err.message(), subject).unwrap_or_else(|| {
                // Without a code, S3 sent no error at all: the SDK could not
                // parse a response (a 200 from a store that names the XML
                // root differently, for one), and says why in the source.
                let message = match (err.code(), err.message()) {
                    (_, Some(message)) => Some(message.to_owned()),
                    (None, None) => err.source().map(error_chain),
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

/// Whether `T` is somewhere in the source chain of `err`.
pub(super) fn has_source<T: std::error::Error + 'static>(
    err: &(dyn std::error::Error + 'static),
) -> bool {
    let mut source = Some(err);
    while let Some(error) = source {
        if error.is::<T>() {
            return true;
        }
        source = error.source();
    }
    false
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

pub(super) fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|raw| raw.status().as_u16())
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
