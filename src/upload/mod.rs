//! The write-back buffer: a file's new contents are staged locally and
//! become an object only at a commit point (`flush`, i.e. every `close()`,
//! and `fsync`).
//!
//! Staging (`staging.rs`) is memory for small files and otherwise an
//! anonymous temporary file in a private directory (mode 0700), never a path
//! derived from a key: the kernel's page cache holds what fits in memory and
//! the disk the rest, and the daemon's own memory stays bounded by the small
//! files and the parts in flight. A commit uploads the staged bytes with one
//! PutObject, or a multipart upload from the file in parallel parts; either
//! way the object changes whole, at once, and a failed multipart upload is
//! aborted so no parts are left behind. A file written sequentially from
//! empty does not wait for the commit: `stream` uploads its parts while it is
//! being written.
//!
//! Every byte this module holds in memory (parts on their way to or from the
//! store) is reserved from one `WriteBudget` first, so all writers together
//! stay within `--max-write-buffer`; when it is spent, writers wait.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::store::{ObjectHeaders, ObjectStore, StoreError};

mod copy;
mod segmented;
mod staging;
mod streaming;
pub use copy::{CopySource, DirtyRanges, Unchanged, copy_object};
pub use staging::{Staging, StagingArea};
pub use streaming::StreamingUpload;

const MIB: u64 = 1024 * 1024;

/// S3 allows at most this many parts in one multipart upload.
const MAX_PARTS: u64 = 10_000;

/// S3 rejects parts under 5 MiB (all but the last), only at completion.
const MIN_PART_SIZE_BYTES: u64 = 5 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("staging file I/O failed: {0}")]
    Staging(#[from] io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("file too large for a multipart upload of 10,000 parts")]
    TooLarge,
}

impl UploadError {
    /// The object the upload built on (its committed version, a copy
    /// source) was replaced or removed by someone else meanwhile.
    pub fn object_is_gone(&self) -> bool {
        matches!(
            self,
            UploadError::Store(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. })
        )
    }
}

/// How commits upload.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Preferred multipart part size; grown for huge files (see `part_size_for`).
    pub part_size_bytes: u64,
    /// Parts uploaded at once by one file.
    pub max_parts_in_flight: usize,
    /// A streamed file keeps at most about this many uploaded bytes staged
    /// (for reading back before close); older uploaded parts are dropped
    /// from the staging file.
    pub stream_retain_bytes: u64,
    /// Largest object one CopyObject may copy (S3: 5 GiB); larger ones are
    /// copied part by part.
    pub max_single_copy_bytes: u64,
    pub budget: WriteBudget,
}

/// Memory for parts in flight, shared by every file of the mount, in whole MiB.
#[derive(Debug, Clone)]
pub struct WriteBudget {
    permits: Arc<Semaphore>,
    capacity_mib: u32,
}

impl WriteBudget {
    pub fn new(bytes: u64) -> Self {
        let capacity_mib = bytes.div_ceil(MIB).clamp(1, u64::from(u32::MAX >> 3)) as u32;
        WriteBudget {
            permits: Arc::new(Semaphore::new(capacity_mib as usize)),
            capacity_mib,
        }
    }

    /// Waits until `bytes` fit. A single part larger than the whole budget
    /// takes all of it rather than waiting forever.
    pub async fn reserve(&self, bytes: u64) -> OwnedSemaphorePermit {
        let mib = bytes.div_ceil(MIB).clamp(1, u64::from(self.capacity_mib)) as u32;
        Arc::clone(&self.permits)
            .acquire_many_owned(mib)
            .await
            .expect("the budget's semaphore is never closed")
    }

    /// MiB not reserved right now.
    pub fn available_mib(&self) -> usize {
        self.permits.available_permits()
    }
}

/// The part size for an object of `size` bytes: the configured size, grown
/// so that a 5 TiB object still fits in 10,000 parts, in whole MiB.
pub fn part_size_for(size: u64, preferred: u64) -> u64 {
    let least = size.div_ceil(MAX_PARTS);
    let mib = 1024 * 1024;
    preferred
        .max(least.div_ceil(mib) * mib)
        .max(MIN_PART_SIZE_BYTES)
}

impl Staging {
    /// Exactly `len` bytes at `offset`: the staged file must reach that far.
    pub async fn read_exact_at(&self, offset: u64, len: usize) -> Result<Bytes, UploadError> {
        let body = self.read_at(offset, len).await?;
        if body.len() != len {
            return Err(UploadError::Staging(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "staging file shorter than the file size",
            )));
        }
        Ok(body)
    }

    /// Fills the staging file with `size` bytes of an existing object, in
    /// parallel ranged GETs pinned to `etag`.
    pub async fn fill_from<S: ObjectStore>(
        &self,
        store: &S,
        key: &str,
        etag: &str,
        size: u64,
        config: &UploadConfig,
    ) -> Result<(), UploadError> {
        self.fill_range(store, key, etag, 0..size, config).await?;
        self.set_len(size).await?;
        Ok(())
    }

    /// Writes `range` of an existing object into the same range of the
    /// staging file, in parallel ranged GETs pinned to `etag`.
    pub async fn fill_range<S: ObjectStore>(
        &self,
        store: &S,
        key: &str,
        etag: &str,
        range: std::ops::Range<u64>,
        config: &UploadConfig,
    ) -> Result<(), UploadError> {
        let whole = range.clone();
        let part = part_size_for(range.end, config.part_size_bytes);
        let if_match = (!etag.is_empty()).then_some(etag);
        let count = (range.end - range.start).div_ceil(part);
        let mut parts = stream::iter((0..count).map(|index| {
            let start = range.start + index * part;
            let end = (start + part).min(range.end);
            async move {
                let _memory = config.budget.reserve(end - start).await;
                let bytes = store.get_range(key, start..end, if_match).await?;
                self.write_at(start, bytes).await?;
                Ok::<(), UploadError>(())
            }
        }))
        .buffer_unordered(config.max_parts_in_flight.max(1));
        while let Some(result) = parts.next().await {
            result?;
        }
        self.restaged(whole);
        Ok(())
    }

    /// Uploads `size` staged bytes as `key` with `headers`; returns the
    /// new ETag. The object changes only if this succeeds.
    pub async fn commit<S: ObjectStore>(
        &self,
        store: &S,
        key: &str,
        size: u64,
        headers: &ObjectHeaders,
        unchanged: Option<Unchanged<'_>>,
        config: &UploadConfig,
    ) -> Result<String, UploadError> {
        let part = part_size_for(size, config.part_size_bytes);
        if size <= part {
            let _memory = config.budget.reserve(size).await;
            let body = self.read_at(0, size as usize).await?;
            return Ok(store.put(key, body, headers).await?);
        }
        let upload_id = store.create_multipart(key, headers).await?;
        let parts = self.upload_parts(store, key, &upload_id, size, unchanged, config);
        complete_or_abort(store, key, &upload_id, parts).await
    }

    async fn upload_parts<S: ObjectStore>(
        &self,
        store: &S,
        key: &str,
        upload_id: &str,
        size: u64,
        unchanged: Option<Unchanged<'_>>,
        config: &UploadConfig,
    ) -> Result<Vec<(u32, String)>, UploadError> {
        let part = part_size_for(size, config.part_size_bytes);
        let count = size.div_ceil(part);
        let unchanged = unchanged.as_ref();
        let mut uploads = stream::iter((0..count).map(|index| {
            let start = index * part;
            let len = part.min(size - start) as usize;
            async move {
                let number = index as u32 + 1;
                let range = start..start + len as u64;
                if let Some(unchanged) = unchanged.filter(|u| u.covers(&range)) {
                    let source = unchanged.source;
                    let copied = store
                        .upload_part_copy(
                            key,
                            upload_id,
                            number,
                            &source.key,
                            range,
                            Some(&source.etag),
                        )
                        .await;
                    match copied {
                        Ok(etag) => return Ok::<_, UploadError>((number, etag)),
                        // The bytes are staged as well: upload them instead.
                        Err(error) => log::debug!("{key}: part {number} not copied: {error}"),
                    }
                }
                let _memory = config.budget.reserve(len as u64).await;
                let body = self.read_exact_at(start, len).await?;
                let etag = store.upload_part(key, upload_id, number, body).await?;
                Ok::<_, UploadError>((number, etag))
            }
        }))
        .buffer_unordered(config.max_parts_in_flight.max(1));
        let mut parts = Vec::with_capacity(count as usize);
        while let Some(result) = uploads.next().await {
            parts.push(result?);
        }
        parts.sort_by_key(|(number, _)| *number);
        Ok(parts)
    }
}

/// Completes the multipart upload `upload_id` with the parts that `parts`
/// sends; if sending or completing fails, aborts it, so that no parts are
/// left behind, and returns the error.
async fn complete_or_abort<S: ObjectStore>(
    store: &S,
    key: &str,
    upload_id: &str,
    parts: impl Future<Output = Result<Vec<(u32, String)>, UploadError>>,
) -> Result<String, UploadError> {
    let completed = match parts.await {
        Ok(parts) => store
            .complete_multipart(key, upload_id, &parts)
            .await
            .map_err(UploadError::from),
        Err(error) => Err(error),
    };
    if completed.is_err() {
        abort_quietly(store, key, upload_id).await;
    }
    completed
}

async fn abort_quietly<S: ObjectStore>(store: &S, key: &str, upload_id: &str) {
    if let Err(error) = store.abort_multipart(key, upload_id).await {
        // The bucket's AbortIncompleteMultipartUpload rule is the backstop.
        log::warn!("could not abort the failed multipart upload of {key}: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_grows_so_5_tib_fits_in_10000_parts() {
        let mib = 1024 * 1024;
        assert_eq!(part_size_for(100 * mib, 8 * mib), 8 * mib);
        let five_tib = 5 * 1024 * 1024 * mib;
        let part = part_size_for(five_tib, 8 * mib);
        assert!(five_tib.div_ceil(part) <= MAX_PARTS);
        assert_eq!(part % mib, 0);
    }
}
