//! The one place where filesystem errors become errno, and where a failed
//! request is logged.

use fuser::Errno;

use crate::fs::Error;
use crate::store::{StoreError, error_chain};

pub fn errno(error: &Error) -> libc::c_int {
    match error {
        Error::NotFound => libc::ENOENT,
        Error::NotADirectory => libc::ENOTDIR,
        Error::IsADirectory => libc::EISDIR,
        // The object was replaced or deleted in the bucket while we had it open.
        Error::Stale { .. } => libc::ESTALE,
        Error::ReadOnly => libc::EROFS,
        Error::BadHandle { .. } => libc::EBADF,
        Error::AccessDenied { .. } => libc::EACCES,
        Error::NotEmpty => libc::ENOTEMPTY,
        Error::Exists => libc::EEXIST,
        Error::InvalidArgument => libc::EINVAL,
        Error::NameTooLong => libc::ENAMETOOLONG,
        // A commit that failed after retries: close() and fsync() report it.
        Error::Upload(_) => libc::EIO,
        // As Mountpoint answers an out-of-order write: the call, not the
        // system, is at fault, and retrying it cannot help before close.
        Error::AlreadyUploaded => libc::EINVAL,
        Error::TooLarge => libc::EFBIG,
        Error::NoAttribute => libc::ENODATA,
        // As ext4 answers when an inode's attribute space is full.
        Error::NoMetadataSpace => libc::ENOSPC,
        Error::Store(source) => match **source {
            // Reached only by races (an object deleted between two requests
            // of one operation); the name is gone, so ENOENT, not EIO.
            StoreError::NotFound { .. } => libc::ENOENT,
            StoreError::PreconditionFailed { .. } => libc::ESTALE,
            StoreError::AccessDenied { .. } | StoreError::InvalidCredentials { .. } => libc::EACCES,
            // Timeouts and 5xx arrive here only after the store's retries.
            StoreError::NoSuchBucket { .. }
            | StoreError::Timeout
            | StoreError::Unreachable { .. }
            | StoreError::Other { .. } => libc::EIO,
        },
    }
}

/// Whether a failure is routine (a missing name, or one no file can have)
/// rather than worth a warning.
pub fn is_routine(error: &Error) -> bool {
    matches!(
        error,
        Error::NotFound | Error::NameTooLong | Error::NoAttribute
    )
}

/// Logs a failed operation once and returns the errno to answer with.
pub fn failure(op: &str, ino: u64, error: &Error) -> Errno {
    let code = errno(error);
    if is_routine(error) {
        log::debug!("{op} ino={ino}: {error}");
    } else {
        log::warn!(
            "{op} ino={ino} failed (errno {code}): {}",
            error_chain(error)
        );
    }
    Errno::from_i32(code)
}
