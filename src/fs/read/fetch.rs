//! One fetch of consecutive blocks for the block cache: from the disk cache
//! where it holds them whole and sound, the rest in one ranged GET pinned to
//! the handle's ETag, written to disk in the background.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::cache::block::{BLOCK_SIZE_BYTES, BlockCache, BlockKey, FetchResult};
use crate::cache::disk::{DiskCache, WriteReservation};
use crate::store::{ObjectStore, StoreError};

/// A fetch registered with the block cache, and what completing it needs.
pub(super) struct PendingFetch<S> {
    pub store: Arc<S>,
    pub blocks: Arc<BlockCache<StoreError>>,
    pub requests: Arc<Semaphore>,
    pub disk: Option<Arc<DiskCache>>,
    pub first_block: BlockKey,
    pub count: u64,
    pub range: std::ops::Range<u64>,
    pub sender: tokio::sync::oneshot::Sender<FetchResult<StoreError>>,
}

impl<S: ObjectStore> PendingFetch<S> {
    pub async fn run(self) {
        let result = fetch_blocks(
            &*self.store,
            self.disk.clone(),
            &self.requests,
            &self.first_block,
            self.count,
            self.range.clone(),
        )
        .await
        .map(Arc::from)
        .map_err(Arc::new);
        self.complete(result);
    }

    /// Every block of the fetch from the disk cache, or `None` if one is
    /// not there whole. Blocking: call off the runtime's threads.
    pub fn read_from_disk(&self) -> Option<Arc<[Bytes]>> {
        let disk = self.disk.as_ref()?;
        blocks_on_disk(disk, &self.first_block, self.count, self.range.end)
            .into_iter()
            .collect()
    }

    pub fn complete(self, result: FetchResult<StoreError>) {
        self.blocks.complete(&self.first_block, self.count, &result);
        let _ = self.sender.send(result);
    }
}

/// The `count` blocks from `first`, covering `range` of the object: those
/// the disk cache holds (and that pass its checks) from disk, the rest in one
/// ranged GET, which is then written to disk in the background.
async fn fetch_blocks<S: ObjectStore>(
    store: &S,
    disk: Option<Arc<DiskCache>>,
    requests: &Semaphore,
    first: &BlockKey,
    count: u64,
    range: std::ops::Range<u64>,
) -> std::result::Result<Vec<Bytes>, StoreError> {
    let block_bytes = BLOCK_SIZE_BYTES as usize;
    let Some(disk) = disk.filter(|_| !first.etag.is_empty()) else {
        return get_exact(store, requests, &first.key, &first.etag, range, block_bytes).await;
    };
    let block = |i: u64| first.nth_after(i);
    let mut blocks: Vec<Option<Bytes>> = vec![None; count as usize];
    if (0..count).any(|i| disk.contains(&block(i))) {
        let disk = Arc::clone(&disk);
        let first = first.clone();
        let read =
            tokio::task::spawn_blocking(move || blocks_on_disk(&disk, &first, count, range.end));
        if let Ok(read) = read.await {
            blocks = read;
        }
    }
    let missing_first = blocks.iter().position(Option::is_none);
    let missing_last = blocks.iter().rposition(Option::is_none);
    if let (Some(from), Some(to)) = (missing_first, missing_last) {
        let start = (first.index + from as u64) * BLOCK_SIZE_BYTES;
        let end = ((first.index + to as u64 + 1) * BLOCK_SIZE_BYTES).min(range.end);
        // Room on the way to disk is claimed before the GET: a reader
        // waits for the writer rather than reading past what it keeps.
        let reservation = disk.reserve_write(end - start).await;
        let fetched = get_exact(
            store,
            requests,
            &first.key,
            &first.etag,
            start..end,
            block_bytes,
        )
        .await?;
        match reservation {
            Some(reservation) => {
                write_to_disk(reservation, &disk, block(from as u64), fetched.clone())
            }
            None => log::debug!(
                "disk cache: writes behind, not keeping blocks of {}",
                first.key
            ),
        }
        // One GET covers every block missing from disk; blocks on disk
        // between two missing ones come with it and are taken from it.
        for (slot, fetched) in blocks[from..=to].iter_mut().zip(fetched) {
            *slot = Some(fetched);
        }
    }
    blocks
        .into_iter()
        .enumerate()
        .map(|(i, block)| {
            block.ok_or_else(|| StoreError::Other {
                source: format!(
                    "block {} of {} was neither on disk nor fetched",
                    first.index + i as u64,
                    first.key
                )
                .into(),
            })
        })
        .collect()
}

/// What block `index` of a range ending at `range_end` holds: a whole
/// block, but the last, which ends with the range.
fn block_len(index: u64, range_end: u64) -> u64 {
    range_end
        .saturating_sub(index * BLOCK_SIZE_BYTES)
        .min(BLOCK_SIZE_BYTES)
}

/// The `count` blocks from `first` of a range ending at `range_end`, each
/// as the disk cache holds it if it does, whole (the last block ends with
/// the range). Blocking.
fn blocks_on_disk(
    disk: &DiskCache,
    first: &BlockKey,
    count: u64,
    range_end: u64,
) -> Vec<Option<Bytes>> {
    (0..count)
        .map(|i| {
            let block = first.nth_after(i);
            disk.get(&block)
                .filter(|bytes| bytes.len() as u64 == block_len(block.index, range_end))
        })
        .collect()
}

/// Writes `blocks`, the first of which is block `first`, to disk off the
/// runtime's threads, in the room `reservation` holds until they are.
pub(in crate::fs) fn write_to_disk(
    reservation: WriteReservation,
    disk: &Arc<DiskCache>,
    first: BlockKey,
    blocks: Vec<Bytes>,
) {
    let disk = Arc::clone(disk);
    tokio::task::spawn_blocking(move || {
        let _reservation = reservation;
        for (i, block) in blocks.iter().enumerate() {
            disk.put(&first.nth_after(i as u64), block);
        }
    });
}

/// One ranged GET of `range` in pieces of `piece_bytes`, pinned to `etag`
/// when there is one, within the mount's bound on GETs in flight. An answer
/// of any other length is an error: an object that changed size under its
/// ETag is not one version.
pub(super) async fn get_exact<S: ObjectStore>(
    store: &S,
    requests: &Semaphore,
    key: &str,
    etag: &str,
    range: std::ops::Range<u64>,
    piece_bytes: usize,
) -> std::result::Result<Vec<Bytes>, StoreError> {
    let _permit = requests.acquire().await.expect("never closed");
    let if_match = (!etag.is_empty()).then_some(etag);
    let wanted = range.end - range.start;
    log::debug!("GET {key:?} bytes {}..{}", range.start, range.end);
    let pieces = store
        .get_range_in_pieces(key, range, if_match, piece_bytes)
        .await?;
    let received: usize = pieces.iter().map(Bytes::len).sum();
    if received as u64 != wanted {
        return Err(StoreError::Other {
            source: format!("short read of {key}: {received} bytes of {wanted}").into(),
        });
    }
    Ok(pieces)
}
