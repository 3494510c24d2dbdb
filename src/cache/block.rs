//! Fixed-size blocks of object contents, keyed by key, ETag and block index,
//! in an LRU bounded by bytes: a small file's one short block counts for its
//! length, so a tree of small files fits by what it weighs, not as if each
//! file took a whole block.
//!
//! Keying by ETag means a block can never be served for another version of
//! the object: a reader that pinned an ETag either finds blocks of exactly
//! that version or fetches them with `If-Match`.
//!
//! Fetches in flight are registered beside the LRU under the same lock, so a
//! block is requested from the store at most once however many readers want
//! it, and a reader never misses a block between "fetch finished" and
//! "block inserted".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use lru::LruCache;

/// One block of an object. 1 MiB: large enough that a streaming reader needs
/// few cache operations per second, small enough that `head -c 100` of a huge
/// object fetches little, and the unit of Mountpoint's first request too.
pub const BLOCK_SIZE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub key: Arc<str>,
    pub etag: Arc<str>,
    pub index: u64,
}

impl BlockKey {
    /// The block `n` after this one in the same object version.
    pub fn nth_after(&self, n: u64) -> BlockKey {
        BlockKey {
            index: self.index + n,
            ..self.clone()
        }
    }
}

/// The outcome of one ranged GET covering one or more blocks, shared by every
/// reader waiting on any of them: the blocks in order, each its own
/// allocation where the store allows it (so a block read and dropped frees
/// its memory while the rest of the fetch is still read), the last shorter
/// where the object ends, none past the end. The error is shared too, so it
/// is an `Arc`.
pub type FetchResult<E> = Result<Arc<[Bytes]>, Arc<E>>;
pub type SharedFetch<E> = Shared<BoxFuture<'static, FetchResult<E>>>;

/// Where a wanted block is right now.
pub enum Lookup<E> {
    Cached(Bytes),
    /// Being fetched: the block is the fetch's `index_in_fetch`th.
    InFlight {
        fetch: SharedFetch<E>,
        index_in_fetch: usize,
    },
    Missing,
}

struct State<E> {
    lru: LruCache<BlockKey, Bytes>,
    /// What the blocks in `lru` weigh, by `weight`.
    held_bytes: u64,
    capacity_bytes: u64,
    in_flight: HashMap<BlockKey, (SharedFetch<E>, usize)>,
}

/// What a cached block counts for: its bytes and its key. A block's buffer
/// may be up to twice its length when it came from the body pool, which
/// lends a buffer of up to twice the size asked for; a short block is only
/// ever the last of an object, one per object.
fn weight(block: &BlockKey, bytes: &Bytes) -> u64 {
    const ENTRY_OVERHEAD_BYTES: u64 = 128;
    bytes.len() as u64 + block.key.len() as u64 + block.etag.len() as u64 + ENTRY_OVERHEAD_BYTES
}

impl<E> State<E> {
    fn put(&mut self, block: BlockKey, bytes: Bytes) {
        self.held_bytes += weight(&block, &bytes);
        if let Some((old_block, old_bytes)) = self.lru.push(block, bytes) {
            self.held_bytes -= weight(&old_block, &old_bytes);
        }
        // The block just put stays, whatever it weighs.
        while self.held_bytes > self.capacity_bytes && self.lru.len() > 1 {
            match self.lru.pop_lru() {
                Some((old_block, old_bytes)) => self.held_bytes -= weight(&old_block, &old_bytes),
                None => break,
            }
        }
    }

    fn pop(&mut self, block: &BlockKey) {
        if let Some(bytes) = self.lru.pop(block) {
            self.held_bytes -= weight(block, &bytes);
        }
    }
}

pub struct BlockCache<E> {
    state: Mutex<State<E>>,
}

impl<E: Send + Sync + 'static> BlockCache<E> {
    /// A cache holding at most `capacity_bytes` of blocks (at least one block).
    pub fn new(capacity_bytes: u64) -> Self {
        BlockCache {
            state: Mutex::new(State {
                lru: LruCache::unbounded(),
                held_bytes: 0,
                capacity_bytes,
                in_flight: HashMap::new(),
            }),
        }
    }

    pub fn lookup(&self, block: &BlockKey) -> Lookup<E> {
        let mut state = self.state.lock().unwrap();
        if let Some(bytes) = state.lru.get(block) {
            return Lookup::Cached(bytes.clone());
        }
        match state.in_flight.get(block) {
            Some((fetch, index)) => Lookup::InFlight {
                fetch: fetch.clone(),
                index_in_fetch: *index,
            },
            None => Lookup::Missing,
        }
    }

    /// Whether the block is cached or being fetched, without touching LRU order.
    pub fn is_present(&self, block: &BlockKey) -> bool {
        let state = self.state.lock().unwrap();
        state.lru.contains(block) || state.in_flight.contains_key(block)
    }

    /// Registers a fetch of `count` consecutive blocks starting at `first`,
    /// unless one of them is already present (another reader got there first);
    /// returns whether it was registered. The caller must later call
    /// `complete` for the same blocks, success or not.
    pub fn register(&self, first: &BlockKey, count: u64, fetch: &SharedFetch<E>) -> bool {
        let mut state = self.state.lock().unwrap();
        let blocks: Vec<BlockKey> = (0..count)
            .map(|i| BlockKey {
                index: first.index + i,
                ..first.clone()
            })
            .collect();
        if blocks
            .iter()
            .any(|b| state.lru.contains(b) || state.in_flight.contains_key(b))
        {
            return false;
        }
        for (i, block) in blocks.into_iter().enumerate() {
            state.in_flight.insert(block, (fetch.clone(), i));
        }
        true
    }

    /// Ends a fetch registered with `register`: on success its blocks are
    /// cached (shared, no copy).
    pub fn complete(&self, first: &BlockKey, count: u64, result: &FetchResult<E>) {
        let mut state = self.state.lock().unwrap();
        for i in 0..count {
            let block = BlockKey {
                index: first.index + i,
                ..first.clone()
            };
            state.in_flight.remove(&block);
            // Past the object's end there is nothing to cache.
            if let Ok(blocks) = result
                && let Some(bytes) = blocks.get(i as usize)
            {
                state.put(block, bytes.clone());
            }
        }
    }
}

impl<E> BlockCache<E> {
    /// Drops the cached blocks `from..to` of one version of an object: a
    /// streaming reader has read past them and will not come back, so they
    /// must not push out blocks that other readers may want again.
    pub fn discard(&self, object: &BlockKey, blocks: std::ops::Range<u64>) {
        let mut state = self.state.lock().unwrap();
        for index in blocks {
            state.pop(&BlockKey {
                index,
                ..object.clone()
            });
        }
    }
}

/// Wraps a future so that it can be registered as a shared fetch.
pub fn share<E, F>(future: F) -> SharedFetch<E>
where
    E: Send + Sync + 'static,
    F: std::future::Future<Output = FetchResult<E>> + Send + 'static,
{
    future.boxed().shared()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: u64) -> BlockKey {
        BlockKey {
            key: Arc::from("k"),
            etag: Arc::from("\"e\""),
            index,
        }
    }

    #[tokio::test]
    async fn a_completed_fetch_caches_each_of_its_blocks() {
        let cache: BlockCache<std::io::Error> = BlockCache::new(4 * BLOCK_SIZE_BYTES);
        let data: Arc<[Bytes]> = Arc::from(vec![
            Bytes::from(vec![7u8; BLOCK_SIZE_BYTES as usize]),
            Bytes::from(vec![8u8; 10]),
        ]);
        let fetch = share(futures::future::ready(Ok(data.clone())));
        assert!(cache.register(&key(0), 3, &fetch));
        assert!(!cache.register(&key(1), 1, &fetch), "block 1 is in flight");
        match cache.lookup(&key(1)) {
            Lookup::InFlight { index_in_fetch, .. } => assert_eq!(index_in_fetch, 1),
            _ => panic!("block 1 should be in flight"),
        }
        cache.complete(&key(0), 3, &Ok(data));
        match cache.lookup(&key(1)) {
            Lookup::Cached(b) => assert_eq!(b, Bytes::from(vec![8u8; 10])),
            _ => panic!("block 1 should be cached"),
        }
        assert!(
            matches!(cache.lookup(&key(2)), Lookup::Missing),
            "past the object's end nothing is cached"
        );
    }

    fn put_block(cache: &BlockCache<std::io::Error>, block: &BlockKey, len: usize) {
        let bytes: Arc<[Bytes]> = Arc::from(vec![Bytes::from(vec![0u8; len])]);
        let fetch = share(futures::future::ready(Ok(bytes.clone())));
        assert!(cache.register(block, 1, &fetch));
        cache.complete(block, 1, &Ok(bytes));
    }

    fn is_cached(cache: &BlockCache<std::io::Error>, block: &BlockKey) -> bool {
        matches!(cache.lookup(block), Lookup::Cached(_))
    }

    #[tokio::test]
    async fn capacity_bounds_the_bytes_held_least_recently_used_first() {
        let whole = BLOCK_SIZE_BYTES as usize;
        let cache: BlockCache<std::io::Error> = BlockCache::new(2 * BLOCK_SIZE_BYTES);
        put_block(&cache, &key(0), whole);
        put_block(&cache, &key(1), whole - 4096);
        assert!(is_cached(&cache, &key(0)), "touched: now the most recent");
        put_block(&cache, &key(2), whole - 4096);
        assert!(!is_cached(&cache, &key(1)), "the least recently used went");
        assert!(is_cached(&cache, &key(0)) && is_cached(&cache, &key(2)));
        // A block larger than the whole capacity is still kept, alone.
        put_block(&cache, &key(3), 3 * whole);
        assert!(is_cached(&cache, &key(3)));
        assert!(!is_cached(&cache, &key(0)) && !is_cached(&cache, &key(2)));
    }

    #[tokio::test]
    async fn small_blocks_count_for_their_length_not_a_whole_block() {
        // Where a cache of two whole blocks held two small files, it holds
        // a hundred of 16 KiB.
        let cache: BlockCache<std::io::Error> = BlockCache::new(2 * BLOCK_SIZE_BYTES);
        let files: Vec<BlockKey> = (0..100)
            .map(|n| BlockKey {
                key: Arc::from(format!("dir/file-{n}")),
                etag: Arc::from("\"e\""),
                index: 0,
            })
            .collect();
        for file in &files {
            put_block(&cache, file, 16 * 1024);
        }
        assert!(files.iter().all(|file| is_cached(&cache, file)));
        // A whole block pushes out the oldest files, only as many as it needs.
        put_block(&cache, &key(0), BLOCK_SIZE_BYTES as usize);
        let kept = files.iter().filter(|file| is_cached(&cache, file)).count();
        assert!((50..70).contains(&kept), "{kept} small files kept");
        assert!(
            files[100 - kept..]
                .iter()
                .all(|file| is_cached(&cache, file))
        );
        // Discarding it gives its bytes back: as many files fit again.
        cache.discard(&key(0), 0..1);
        for file in &files[..100 - kept] {
            put_block(&cache, file, 16 * 1024);
        }
        assert!(files.iter().all(|file| is_cached(&cache, file)));
    }

    #[tokio::test]
    async fn discarded_blocks_are_gone_and_others_stay() {
        let cache: BlockCache<std::io::Error> = BlockCache::new(8 * BLOCK_SIZE_BYTES);
        for i in 0..4 {
            let block: Arc<[Bytes]> = Arc::from(vec![Bytes::from(vec![0u8; 16])]);
            let fetch = share(futures::future::ready(Ok(block.clone())));
            assert!(cache.register(&key(i), 1, &fetch));
            cache.complete(&key(i), 1, &Ok(block));
        }
        cache.discard(&key(0), 1..3);
        assert!(matches!(cache.lookup(&key(0)), Lookup::Cached(_)));
        assert!(matches!(cache.lookup(&key(1)), Lookup::Missing));
        assert!(matches!(cache.lookup(&key(2)), Lookup::Missing));
        assert!(matches!(cache.lookup(&key(3)), Lookup::Cached(_)));
    }

    #[tokio::test]
    async fn failed_fetch_leaves_nothing_behind() {
        let cache: BlockCache<std::io::Error> = BlockCache::new(2 * BLOCK_SIZE_BYTES);
        let err = Arc::new(std::io::Error::other("boom"));
        let fetch = share(futures::future::ready(Err(err.clone())));
        assert!(cache.register(&key(0), 1, &fetch));
        cache.complete(&key(0), 1, &Err(err));
        assert!(matches!(cache.lookup(&key(0)), Lookup::Missing));
    }
}
