//! A file written sequentially from empty is uploaded while it is written:
//! each full part becomes an UploadPart in the background as soon as the
//! writer has passed it, so the commit at `close()` only sends the last part
//! and completes the upload. Writing a 10 GiB file this way needs neither
//! 10 GiB of memory (parts in flight come from the `WriteBudget`) nor of
//! staging disk: uploaded parts are dropped from the staging file, oldest
//! first, keeping the last `stream_retain_bytes` written.
//!
//! Dropped bytes cannot be read back or rewritten until the commit has made
//! them an object; the caller refuses those calls (see `released_through`).
//! Any other change behind the parts already cut makes the caller abandon the
//! stream while nothing has been dropped, and fall back to uploading the
//! whole staged file at commit.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::{MIB, MIN_PART_SIZE_BYTES, Staging, UploadConfig, UploadError, abort_quietly};
use crate::store::{ObjectHeaders, ObjectStore, StoreError};

/// S3's largest part.
const MAX_PART_SIZE_BYTES: u64 = 5 * 1024 * MIB;

/// Parts per size step: the part size doubles every this many parts.
const PARTS_PER_SIZE_STEP: u32 = 1000;

/// The size of part `number` (from 1) of a streamed upload. The final size
/// is unknown while streaming, so parts grow instead: the configured size,
/// doubled every 1,000 parts, reaches past 5 TiB within 10,000 parts.
pub fn streamed_part_size(number: u32, preferred: u64) -> u64 {
    let doublings = (number.saturating_sub(1) / PARTS_PER_SIZE_STEP).min(16);
    (preferred.max(MIN_PART_SIZE_BYTES) << doublings).min(MAX_PART_SIZE_BYTES)
}

struct MultipartUpload {
    /// The key the upload was created for; a rename does not move it.
    key: String,
    id: String,
    created_with: ObjectHeaders,
}

struct PartInFlight {
    number: u32,
    range: Range<u64>,
    task: JoinHandle<Result<String, StoreError>>,
}

struct UploadedPart {
    range: Range<u64>,
    etag: String,
}

#[derive(Default)]
pub struct StreamingUpload {
    upload: Option<MultipartUpload>,
    /// Bytes before this offset are in parts handed to the store.
    cut_through: u64,
    next_number: u32,
    in_flight: VecDeque<PartInFlight>,
    uploaded: BTreeMap<u32, UploadedPart>,
    /// Parts whose upload failed; their bytes stay staged for the retry.
    failed: BTreeMap<u32, Range<u64>>,
    /// The short last part sent by a commit that did not complete: it is cut
    /// again if the file grows, since only the last part may be short.
    short_tail: Option<u32>,
    /// Bytes before this offset are gone from the staging file.
    released_through: u64,
    next_release: u32,
}

impl StreamingUpload {
    pub fn new() -> Self {
        StreamingUpload {
            next_number: 1,
            next_release: 1,
            ..StreamingUpload::default()
        }
    }

    /// Whether a multipart upload exists, i.e. whether `finish` must commit.
    pub fn has_upload(&self) -> bool {
        self.upload.is_some()
    }

    /// The key the multipart upload writes, once there is one.
    pub fn upload_key(&self) -> Option<&str> {
        self.upload.as_ref().map(|upload| upload.key.as_str())
    }

    /// The user metadata the upload was created with.
    pub fn created_with(&self) -> Option<&ObjectHeaders> {
        self.upload.as_ref().map(|upload| &upload.created_with)
    }

    /// Bytes before this offset can be neither read back nor changed until
    /// the upload is complete.
    pub fn released_through(&self) -> u64 {
        self.released_through
    }

    /// Whether bytes from `offset` on can change without touching a part
    /// already cut; the file must also have no hole before `offset`.
    pub fn accepts_change_at(&self, offset: u64, size: u64) -> bool {
        let writable_from = self
            .short_tail_range()
            .map_or(self.cut_through, |range| range.start);
        writable_from <= offset && offset <= size
    }

    /// Where the short last part sent by an unfinished commit lies, whether
    /// its upload succeeded or failed. A part still in flight is not
    /// rewritable: only `finish` leaves a short tail, and it waits for it.
    fn short_tail_range(&self) -> Option<Range<u64>> {
        let number = self.short_tail?;
        self.uploaded
            .get(&number)
            .map(|part| part.range.clone())
            .or_else(|| self.failed.get(&number).cloned())
    }

    /// After the staged file grew or changed at its end to `size` bytes:
    /// starts uploads of the parts it has completed, and drops uploaded parts
    /// from the staging file beyond the retained amount. Waits when the
    /// file's parts in flight or the mount's write budget are at their bound.
    pub async fn after_write<S: ObjectStore>(
        &mut self,
        staging: &Staging,
        store: &Arc<S>,
        key: &str,
        metadata: &ObjectHeaders,
        size: u64,
        config: &UploadConfig,
    ) -> Result<(), UploadError> {
        self.recut_short_tail();
        while self
            .in_flight
            .front()
            .is_some_and(|part| part.task.is_finished())
        {
            self.wait_for_oldest().await;
        }
        loop {
            let len = streamed_part_size(self.next_number, config.part_size_bytes);
            if size - self.cut_through.min(size) < len {
                break;
            }
            while self.in_flight.len() >= config.max_parts_in_flight.max(1) {
                self.wait_for_oldest().await;
            }
            self.start_part(staging, store, key, metadata, len, config)
                .await?;
        }
        self.release_uploaded(staging, size, config.stream_retain_bytes)
            .await;
        Ok(())
    }

    /// Uploads what is left (the last part, and any part that failed) and
    /// completes the upload; returns the object's ETag. On error the state
    /// is kept, so calling it again retries only what is missing.
    pub async fn finish<S: ObjectStore>(
        &mut self,
        staging: &Staging,
        store: &Arc<S>,
        size: u64,
        config: &UploadConfig,
    ) -> Result<String, UploadError> {
        let Some(upload) = self.upload.as_ref() else {
            return Err(UploadError::Staging(std::io::Error::other(
                "no multipart upload to finish",
            )));
        };
        let key = upload.key.clone();
        if self.cut_through < size {
            let len = size - self.cut_through;
            self.short_tail = Some(self.next_number);
            self.start_part(staging, store, &key, &ObjectHeaders::default(), len, config)
                .await?;
        }
        while !self.in_flight.is_empty() {
            self.wait_for_oldest().await;
        }
        let mut last_error = None;
        for (number, range) in std::mem::take(&mut self.failed) {
            let upload = self.upload.as_ref().expect("checked above");
            let _memory = config.budget.reserve(range.end - range.start).await;
            let result = async {
                let body = staging
                    .read_exact_at(range.start, (range.end - range.start) as usize)
                    .await?;
                Ok::<_, UploadError>(store.upload_part(&key, &upload.id, number, body).await?)
            }
            .await;
            match result {
                Ok(etag) => {
                    self.uploaded.insert(number, UploadedPart { range, etag });
                }
                Err(error) => {
                    self.failed.insert(number, range);
                    last_error = Some(error);
                }
            }
        }
        if let Some(error) = last_error {
            return Err(error);
        }
        let parts: Vec<(u32, String)> = self
            .uploaded
            .iter()
            .map(|(number, part)| (*number, part.etag.clone()))
            .collect();
        let upload = self.upload.as_ref().expect("checked above");
        Ok(store.complete_multipart(&key, &upload.id, &parts).await?)
    }

    /// Gives the upload up: its parts are aborted in S3 once the ones in
    /// flight have finished, in the background.
    pub fn abandon<S: ObjectStore>(mut self, store: &Arc<S>) {
        let in_flight = std::mem::take(&mut self.in_flight);
        let Some(upload) = self.upload.take() else {
            return;
        };
        let store = Arc::clone(store);
        tokio::spawn(async move {
            // A part still arriving after the abort would be left behind.
            for part in in_flight {
                let _ = part.task.await;
            }
            log::debug!("{}: abandoned streamed upload aborted", upload.key);
            abort_quietly(&*store, &upload.key, &upload.id).await;
        });
    }

    /// Takes back the short last part of an unfinished commit, uploaded or
    /// failed, so that it is cut again at its full size as the file grows:
    /// only the last part of an upload may be short.
    fn recut_short_tail(&mut self) {
        let Some(number) = self.short_tail else {
            return;
        };
        let range = match self.uploaded.remove(&number) {
            Some(part) => Some(part.range),
            None => self.failed.remove(&number),
        };
        // A tail still in flight is taken back by a later call, once
        // `wait_for_oldest` has filed it.
        if let Some(range) = range {
            self.short_tail = None;
            self.cut_through = range.start;
            self.next_number = number;
        }
    }

    async fn start_part<S: ObjectStore>(
        &mut self,
        staging: &Staging,
        store: &Arc<S>,
        key: &str,
        metadata: &ObjectHeaders,
        len: u64,
        config: &UploadConfig,
    ) -> Result<(), UploadError> {
        let number = self.next_number;
        if u64::from(number) > super::MAX_PARTS {
            return Err(UploadError::TooLarge);
        }
        if self.upload.is_none() {
            let id = store.create_multipart(key, metadata).await?;
            log::debug!("{key}: streaming upload started");
            self.upload = Some(MultipartUpload {
                key: key.to_owned(),
                id,
                created_with: metadata.clone(),
            });
        }
        let upload = self.upload.as_ref().expect("created above");
        let range = self.cut_through..self.cut_through + len;
        let memory = config.budget.reserve(len).await;
        let body = staging.read_exact_at(range.start, len as usize).await?;
        let (store, key, id) = (Arc::clone(store), upload.key.clone(), upload.id.clone());
        let task = tokio::spawn(async move {
            let etag = store.upload_part(&key, &id, number, body).await;
            drop(memory);
            etag
        });
        self.in_flight.push_back(PartInFlight {
            number,
            range,
            task,
        });
        self.cut_through += len;
        self.next_number += 1;
        Ok(())
    }

    async fn wait_for_oldest(&mut self) {
        let Some(part) = self.in_flight.pop_front() else {
            return;
        };
        match part.task.await {
            Ok(Ok(etag)) => {
                self.uploaded.insert(
                    part.number,
                    UploadedPart {
                        range: part.range,
                        etag,
                    },
                );
            }
            Ok(Err(error)) => {
                log::warn!("part {} failed, retried at commit: {error}", part.number);
                self.failed.insert(part.number, part.range);
            }
            Err(join) => {
                log::warn!("part {} upload task failed: {join}", part.number);
                self.failed.insert(part.number, part.range);
            }
        }
    }

    /// Drops uploaded parts, in file order, as long as the last `retain`
    /// bytes stay staged. A failed part stops it: its bytes are needed for
    /// the retry.
    async fn release_uploaded(&mut self, staging: &Staging, size: u64, retain: u64) {
        while let Some(part) = self.uploaded.get(&self.next_release)
            && size.saturating_sub(part.range.end) >= retain
            && Some(self.next_release) != self.short_tail
        {
            let range = part.range.clone();
            staging.release(range.clone()).await;
            self.released_through = range.end;
            self.next_release += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_parts_reach_5_tib_within_10000_parts() {
        let total: u64 = (1..=10_000)
            .map(|number| streamed_part_size(number, 8 * MIB))
            .sum();
        assert!(total >= 5 * 1024 * 1024 * MIB, "only {total} bytes");
        assert_eq!(streamed_part_size(1, 8 * MIB), 8 * MIB);
        assert_eq!(streamed_part_size(1000, 8 * MIB), 8 * MIB);
        assert_eq!(streamed_part_size(1001, 8 * MIB), 16 * MIB);
        assert!(streamed_part_size(10_000, 8 * MIB) <= MAX_PART_SIZE_BYTES);
        assert_eq!(streamed_part_size(1, MIB), MIN_PART_SIZE_BYTES);
    }
}
