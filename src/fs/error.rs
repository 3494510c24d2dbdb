//! What the filesystem core's calls fail with; the FUSE adapter turns each
//! into an errno (`crate::fuse::errno`).

use std::sync::Arc;

use super::MAX_NAME_BYTES;
use crate::store::StoreError;
use crate::upload::UploadError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotADirectory,
    #[error("is a directory")]
    IsADirectory,
    #[error("object {key} changed or disappeared while open")]
    Stale { key: String },
    #[error("read-only file system")]
    ReadOnly,
    #[error("unknown handle {fh}")]
    BadHandle { fh: u64 },
    #[error("access denied")]
    AccessDenied {
        #[source]
        source: Arc<StoreError>,
    },
    #[error(transparent)]
    Store(Arc<StoreError>),
    #[error("directory not empty")]
    NotEmpty,
    #[error("file exists")]
    Exists,
    #[error("invalid argument")]
    InvalidArgument,
    #[error("file name longer than {MAX_NAME_BYTES} bytes")]
    NameTooLong,
    #[error("upload failed")]
    Upload(#[source] Arc<UploadError>),
    /// Bytes of a file streamed to the store that left the staging file and
    /// are not an object yet.
    #[error("range already uploaded; readable and writable again after close")]
    AlreadyUploaded,
    #[error("file too large for S3")]
    TooLarge,
    #[error("no such extended attribute")]
    NoAttribute,
    /// S3 keeps at most `MAX_USER_METADATA_BYTES` of user metadata per object.
    #[error("the object's metadata would exceed S3's 2 KiB limit")]
    NoMetadataSpace,
}

impl Error {
    /// Classifies a store failure. `pinned_key` is set for reads through an
    /// open handle, where a vanished or replaced object means the handle is
    /// stale rather than the name missing.
    pub(super) fn from_store(error: Arc<StoreError>, pinned_key: Option<&str>) -> Self {
        match (&*error, pinned_key) {
            (StoreError::PreconditionFailed { key }, _) => Error::Stale { key: key.clone() },
            (StoreError::NotFound { .. }, Some(key)) => Error::Stale {
                key: key.to_owned(),
            },
            (StoreError::NotFound { .. }, None) => Error::NotFound,
            (StoreError::AccessDenied { .. } | StoreError::InvalidCredentials { .. }, _) => {
                Error::AccessDenied { source: error }
            }
            (
                StoreError::NoSuchBucket { .. }
                | StoreError::Timeout
                | StoreError::Unreachable { .. }
                | StoreError::Other { .. },
                _,
            ) => Error::Store(error),
        }
    }
}

impl From<UploadError> for Error {
    fn from(error: UploadError) -> Self {
        match error {
            UploadError::Store(store) => Error::from_store(Arc::new(store), None),
            staging @ UploadError::Staging(_) => Error::Upload(Arc::new(staging)),
            UploadError::TooLarge => Error::TooLarge,
        }
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        Error::from_store(Arc::new(error), None)
    }
}

impl From<Arc<StoreError>> for Error {
    fn from(error: Arc<StoreError>) -> Self {
        Error::from_store(error, None)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
