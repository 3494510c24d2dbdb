//! Reading through an open handle: the block cache, sequential detection and
//! prefetch.
//!
//! Each read touches whole blocks (`BLOCK_SIZE_BYTES`). A reader whose reads
//! follow each other (within `SEQUENTIAL_SLACK_BYTES`, since the kernel sends
//! readahead requests concurrently and they may arrive out of order) is
//! streaming: its prefetch window starts at one block and doubles with every
//! read up to its share of the mount's read-ahead (`ReadStreams`), and the
//! blocks ahead are fetched in parallel ranged GETs of up to
//! `--read-part-size`. So `head -c 100` of a huge object fetches one block,
//! while `cp` soon has several parts in flight. A read elsewhere resets the
//! window; if its blocks are neither cached nor on their way it fetches just
//! the bytes it needs (in `ISOLATED_READ_ALIGN_BYTES` units) and caches
//! nothing in memory, so random reads cost a small GET each rather than a
//! block.
//!
//! With `--cache-dir`, a block missing from memory is looked for on disk
//! (`crate::cache::disk`) before the store, inside the same shared fetch,
//! and blocks fetched from the store are written there in the background.
//!
//! Every GET carries `If-Match` with the handle's ETag: a handle reads one
//! version of the object or fails with `Stale`, never a mix.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

use crate::cache::block::{BLOCK_SIZE_BYTES, BlockKey, Lookup, SharedFetch, share};
use crate::fs::{Error, Filesystem, Result};
use crate::store::{ObjectStore, StoreError, split_into_pieces};

mod fetch;

pub(super) use fetch::write_to_disk;
use fetch::{PendingFetch, get_exact};

/// How far a read may land from where the previous one ended and still count
/// as sequential: the kernel sends a streaming reader's readahead as several
/// requests at once (up to 4 MiB ahead with the readahead the FUSE adapter
/// sets), which arrive in any order. Twice that.
const SEQUENTIAL_SLACK_BYTES: u64 = 8 * 1024 * 1024;

/// What a streaming reader's blocks are kept for behind its latest read:
/// the kernel's readahead (4 MiB, set by the FUSE adapter) may still send
/// requests that far back, and each block dropped too early costs a GET.
const KEPT_BEHIND_BYTES: u64 = 4 * 1024 * 1024 + BLOCK_SIZE_BYTES;

/// How far a read may land from where the previous one ended and start a
/// stream: the kernel's first readahead requests are small and close
/// together, while random reads that happen to fall near each other should
/// not set a window going.
const STREAM_START_SLACK_BYTES: u64 = 2 * 1024 * 1024;

/// An isolated read fetches whole units of this many bytes around what it
/// asked for: a small GET costs little more than a one-byte one, and the
/// kernel's neighbouring pages usually come next.
const ISOLATED_READ_ALIGN_BYTES: u64 = 64 * 1024;

/// The smallest window a streaming reader gets however many share the
/// mount's read-ahead: two parts, so each still has one arriving while it
/// reads the other.
const MIN_SHARED_WINDOW_PARTS: u64 = 2;

/// Attempts to get a block that keeps vanishing between "missing" and
/// "registered" (evicted under heavy load); past this the read fails.
const MAX_BLOCK_ATTEMPTS: usize = 4;

pub struct FileHandle {
    ino: u64,
    is_writer: bool,
    key: Arc<str>,
    etag: Arc<str>,
    size: u64,
    stream: Mutex<StreamState>,
}

/// The read-ahead all streaming readers of a mount share. Each streaming
/// handle holds a `StreamMembership`; a reader's window is the mount's
/// read-ahead divided among them, so four `cp`s hold what one would rather
/// than four times as much.
pub struct ReadStreams {
    max_window_bytes: u64,
    min_window_bytes: u64,
    streaming: AtomicU64,
}

impl ReadStreams {
    pub fn new(max_window_bytes: u64, part_bytes: u64) -> Arc<Self> {
        Arc::new(ReadStreams {
            max_window_bytes,
            min_window_bytes: (MIN_SHARED_WINDOW_PARTS * part_bytes).min(max_window_bytes),
            streaming: AtomicU64::new(0),
        })
    }

    fn join(self: &Arc<Self>) -> StreamMembership {
        self.streaming.fetch_add(1, Ordering::AcqRel);
        StreamMembership {
            streams: Arc::clone(self),
        }
    }

    /// The largest window one streaming reader may have right now.
    fn window_share(&self) -> u64 {
        let readers = self.streaming.load(Ordering::Acquire).max(1);
        (self.max_window_bytes / readers).max(self.min_window_bytes)
    }
}

/// One streaming reader's claim on the shared read-ahead; given up on drop
/// (the handle closed, or its reads stopped following each other).
struct StreamMembership {
    streams: Arc<ReadStreams>,
}

impl Drop for StreamMembership {
    fn drop(&mut self) {
        self.streams.streaming.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
struct StreamState {
    /// Where the last read ended; `None` before the first read.
    next_offset: Option<u64>,
    window_bytes: u64,
    /// Prefetch has been requested up to here.
    prefetched_until: u64,
    /// Blocks before this one were dropped from the cache behind the reader.
    discarded_below: u64,
    /// Held while the reader streams.
    membership: Option<StreamMembership>,
}

/// What one read of a handle sets in motion besides itself.
struct StreamStep {
    /// The read does not follow the previous one.
    isolated: bool,
    /// Blocks `from..to` to fetch ahead, in requests of up to `chunk_bytes`.
    prefetch: Option<(u64, u64, u64)>,
    /// Blocks a streaming reader has left behind.
    discard: std::ops::Range<u64>,
}

impl FileHandle {
    pub fn new(ino: u64, key: String, etag: String, size: u64, is_writer: bool) -> Self {
        FileHandle {
            ino,
            is_writer,
            key: Arc::from(key),
            etag: Arc::from(etag),
            size,
            stream: Mutex::new(StreamState::default()),
        }
    }

    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// Opened for writing: holds a reference to the inode's `OpenWrite`.
    pub fn is_writer(&self) -> bool {
        self.is_writer
    }

    fn block(&self, index: u64) -> BlockKey {
        BlockKey {
            key: self.key.clone(),
            etag: self.etag.clone(),
            index,
        }
    }
}

impl<S: ObjectStore> Filesystem<S> {
    pub(super) async fn read_handle(
        &self,
        handle: &FileHandle,
        offset: u64,
        size: u64,
    ) -> Result<Bytes> {
        if offset >= handle.size || size == 0 {
            return Ok(Bytes::new());
        }
        let end = (offset + size).min(handle.size);
        let first = offset / BLOCK_SIZE_BYTES;
        let last = (end - 1) / BLOCK_SIZE_BYTES;

        let step = self.advance_stream(handle, offset, end);
        // Blocks on disk are as good as cached: an isolated read of them
        // costs no request through the block path.
        let is_cached = |index: u64| {
            let block = handle.block(index);
            self.blocks.is_present(&block) || self.disk_has(&block)
        };
        // A file of one block is fetched whole: through the blocks, the
        // kernel's first read and the readahead requests it sends beside it
        // share one GET, where isolated reads would each send their own.
        let is_small = handle.size <= BLOCK_SIZE_BYTES;
        if step.isolated && !is_small && !(first..=last).any(is_cached) {
            return self.read_isolated(handle, offset, end).await;
        }
        // What this read needs goes out first, then the window ahead.
        self.fetch_missing(handle, first, last + 1, self.config.read_part_size_bytes);
        if let Some((from, to, chunk_bytes)) = step.prefetch {
            self.fetch_missing(handle, from, to, chunk_bytes);
        }
        if !step.discard.is_empty() {
            self.blocks.discard(&handle.block(0), step.discard);
        }

        if first == last {
            let block = self.block_bytes(handle, first).await?;
            let start = (offset - first * BLOCK_SIZE_BYTES) as usize;
            let stop = ((end - first * BLOCK_SIZE_BYTES) as usize).min(block.len());
            return Ok(block.slice(start.min(stop)..stop));
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for index in first..=last {
            let block = self.block_bytes(handle, index).await?;
            let block_start = index * BLOCK_SIZE_BYTES;
            let start = offset.saturating_sub(block_start) as usize;
            let stop = ((end - block_start) as usize).min(block.len());
            if start < stop {
                out.extend_from_slice(&block[start..stop]);
            }
        }
        Ok(out.freeze())
    }

    /// Updates the handle's stream state with a read of `offset..end` and
    /// returns what to prefetch and what to drop behind the reader.
    fn advance_stream(&self, handle: &FileHandle, offset: u64, end: u64) -> StreamStep {
        let mut state = handle.stream.lock().unwrap();
        let slack = if state.membership.is_some() {
            SEQUENTIAL_SLACK_BYTES
        } else {
            STREAM_START_SLACK_BYTES
        };
        let is_sequential = state
            .next_offset
            .is_some_and(|next| offset.abs_diff(next) <= slack);
        if !is_sequential {
            state.window_bytes = 0;
            state.prefetched_until = end;
            state.next_offset = Some(end);
            state.discarded_below = 0;
            state.membership = None;
            return StreamStep {
                isolated: true,
                prefetch: None,
                discard: 0..0,
            };
        }
        if state.membership.is_none() {
            state.membership = Some(self.read_streams.join());
        }
        // Reads arrive slightly out of order (the kernel's readahead runs
        // several at once): keep what may still be asked for behind the reader.
        let behind = offset.saturating_sub(KEPT_BEHIND_BYTES) / BLOCK_SIZE_BYTES;
        let discard = state.discarded_below..behind.max(state.discarded_below);
        state.discarded_below = discard.end;
        StreamStep {
            isolated: false,
            prefetch: Self::next_prefetch(
                &mut state,
                self.read_streams.window_share(),
                self.config.read_part_size_bytes,
                handle.size,
                end,
            ),
            discard,
        }
    }

    fn next_prefetch(
        state: &mut StreamState,
        max_window_bytes: u64,
        part_bytes: u64,
        size: u64,
        end: u64,
    ) -> Option<(u64, u64, u64)> {
        state.window_bytes = if state.window_bytes == 0 {
            BLOCK_SIZE_BYTES
        } else {
            (state.window_bytes * 2).min(max_window_bytes)
        };
        state.next_offset = Some(state.next_offset.unwrap_or(0).max(end));
        // Small requests while the window is small (fast first bytes), whole
        // parts once it has grown.
        let chunk_bytes = (state.window_bytes / 2).clamp(BLOCK_SIZE_BYTES, part_bytes);
        // The window moves on in whole requests: sliding it by each read
        // (128 KiB from the kernel) would send one 1 MiB GET per block.
        let target = ((end + state.window_bytes) / chunk_bytes * chunk_bytes).min(size);
        let from = state.prefetched_until.max(end);
        if target <= from {
            return None;
        }
        state.prefetched_until = target;
        let first_block = from / BLOCK_SIZE_BYTES;
        let end_block = target.div_ceil(BLOCK_SIZE_BYTES);
        Some((first_block, end_block, chunk_bytes))
    }

    /// Starts GETs for the blocks in `from..to` that are neither cached nor in
    /// flight, grouping neighbours into requests of up to `chunk_bytes`,
    /// aligned to multiples of it.
    pub(super) fn fetch_missing(&self, handle: &FileHandle, from: u64, to: u64, chunk_bytes: u64) {
        let chunk_blocks = (chunk_bytes / BLOCK_SIZE_BYTES).max(1);
        let is_present = |index: u64| self.blocks.is_present(&handle.block(index));
        let mut index = from;
        while index < to {
            if is_present(index) {
                index += 1;
                continue;
            }
            let start = index;
            index += 1;
            while index < to && !index.is_multiple_of(chunk_blocks) && !is_present(index) {
                index += 1;
            }
            self.start_fetch(handle, start, index - start);
        }
    }

    /// Starts one ranged GET for `count` blocks from `first`, unless another
    /// reader already fetches one of them. Returns the fetch it registered.
    fn start_fetch(
        &self,
        handle: &FileHandle,
        first: u64,
        count: u64,
    ) -> Option<SharedFetch<StoreError>> {
        let start = first * BLOCK_SIZE_BYTES;
        let end = ((first + count) * BLOCK_SIZE_BYTES).min(handle.size);
        if start >= end {
            return None;
        }
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let fetch = share(async move {
            receiver.await.unwrap_or_else(|_| {
                Err(Arc::new(StoreError::Other {
                    source: "the fetch task ended without an answer".into(),
                }))
            })
        });
        let first_block = handle.block(first);
        if !self.blocks.register(&first_block, count, &fetch) {
            return None;
        }
        let pending = PendingFetch {
            store: Arc::clone(&self.store),
            blocks: Arc::clone(&self.blocks),
            requests: Arc::clone(&self.read_requests),
            disk: self.disk.clone(),
            first_block,
            count,
            range: start..end,
            sender,
        };
        let disk_holds_all = self.disk.as_ref().is_some_and(|disk| {
            !handle.etag.is_empty()
                && (first..first + count).all(|i| disk.contains(&handle.block(i)))
        });
        if !disk_holds_all {
            tokio::spawn(pending.run());
            return Some(fetch);
        }
        // From the blocking thread straight to the waiting readers: through
        // a task of its own, each small file read from the disk cache
        // crossed threads twice more, and on a VM thread switches were most
        // of the daemon's time in a `tar` of such files (perf, see
        // docs/benchmarks.md). A block missing or damaged on disk after all
        // goes the usual way.
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || match pending.read_from_disk() {
            Some(blocks) => pending.complete(Ok(blocks)),
            None => drop(runtime.spawn(pending.run())),
        });
        Some(fetch)
    }

    /// `offset..end` straight from the store, rounded out to whole
    /// `ISOLATED_READ_ALIGN_BYTES`; nothing is cached in memory, and only
    /// whole blocks on disk.
    async fn read_isolated(&self, handle: &FileHandle, offset: u64, end: u64) -> Result<Bytes> {
        let start = offset / ISOLATED_READ_ALIGN_BYTES * ISOLATED_READ_ALIGN_BYTES;
        let stop = end
            .div_ceil(ISOLATED_READ_ALIGN_BYTES)
            .saturating_mul(ISOLATED_READ_ALIGN_BYTES)
            .min(handle.size);
        let pieces = get_exact(
            &*self.store,
            &self.read_requests,
            &handle.key,
            &handle.etag,
            start..stop,
            usize::MAX,
        )
        .await
        .map_err(|error| Error::from_store(Arc::new(error), Some(&handle.key)))?;
        let bytes = pieces.into_iter().next().unwrap_or_default();
        self.keep_whole_blocks(handle, start..stop, &bytes);
        Ok(bytes.slice((offset - start) as usize..(end - start) as usize))
    }

    /// Writes the whole blocks within `range` (whose bytes are `bytes`) to
    /// the disk cache: an isolated read as large as a block (the kernel's
    /// first read of a file often is) would otherwise leave a hole there.
    fn keep_whole_blocks(&self, handle: &FileHandle, range: std::ops::Range<u64>, bytes: &Bytes) {
        let Some(disk) = self.disk.as_ref().filter(|_| !handle.etag.is_empty()) else {
            return;
        };
        let first = range.start.div_ceil(BLOCK_SIZE_BYTES);
        let end_block = if range.end == handle.size {
            range.end.div_ceil(BLOCK_SIZE_BYTES)
        } else {
            range.end / BLOCK_SIZE_BYTES
        };
        if first >= end_block {
            return;
        }
        let from = first * BLOCK_SIZE_BYTES - range.start;
        let to = (end_block * BLOCK_SIZE_BYTES).min(range.end) - range.start;
        let bytes = bytes.slice(from as usize..to as usize);
        // A read off the stream does not wait for the disk: it is small, and
        // keeping it is only a bonus.
        if let Some(reservation) = disk.try_reserve_write(bytes.len() as u64) {
            let blocks = split_into_pieces(bytes, BLOCK_SIZE_BYTES as usize);
            write_to_disk(reservation, disk, handle.block(first), blocks);
        }
    }

    /// Whether the disk cache's index has the block. Only blocks of a
    /// pinned version go to disk: without an ETag, no key names a version.
    fn disk_has(&self, block: &BlockKey) -> bool {
        !block.etag.is_empty() && self.disk.as_ref().is_some_and(|disk| disk.contains(block))
    }

    async fn block_bytes(&self, handle: &FileHandle, index: u64) -> Result<Bytes> {
        let block = handle.block(index);
        for _ in 0..MAX_BLOCK_ATTEMPTS {
            let (fetch, index_in_fetch) = match self.blocks.lookup(&block) {
                Lookup::Cached(bytes) => return Ok(bytes),
                Lookup::InFlight {
                    fetch,
                    index_in_fetch,
                } => (fetch, index_in_fetch),
                Lookup::Missing => match self.start_fetch(handle, index, 1) {
                    Some(fetch) => (fetch, 0),
                    None => continue,
                },
            };
            let blocks = fetch
                .await
                .map_err(|error| Error::from_store(error, Some(&handle.key)))?;
            // None past the object's end.
            return Ok(blocks.get(index_in_fetch).cloned().unwrap_or_default());
        }
        Err(Error::Store(Arc::new(StoreError::Other {
            source: format!(
                "block {index} of {} kept being evicted before it could be read",
                handle.key
            )
            .into(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn streaming_readers_split_the_read_ahead_down_to_two_parts_each() {
        let streams = ReadStreams::new(64 * MIB, 8 * MIB);
        assert_eq!(streams.window_share(), 64 * MIB);
        let first = streams.join();
        assert_eq!(streams.window_share(), 64 * MIB);
        let others: Vec<_> = (0..3).map(|_| streams.join()).collect();
        assert_eq!(streams.window_share(), 16 * MIB);
        let many: Vec<_> = (0..12).map(|_| streams.join()).collect();
        assert_eq!(streams.window_share(), 16 * MIB, "never below two parts");
        drop(many);
        drop(others);
        assert_eq!(streams.window_share(), 64 * MIB);
        drop(first);
        assert_eq!(streams.streaming.load(Ordering::Acquire), 0);
    }
}
