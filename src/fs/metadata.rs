//! Metadata requests (HEAD and LIST), bounded together by one semaphore of
//! `--max-concurrency` permits, with at most one HEAD of a key in flight.
//!
//! A HEAD is shared by every caller that wants the same key while it is in
//! flight: the listing that resolves a page ahead of the kernel, a lookup of a
//! name on that page, a second listing of the same directory. Without this, a
//! lookup racing the listing (or two `ls` of one directory) doubles the HEADs
//! on exactly the workload where HEADs are the cost. Each HEAD runs in a task
//! of its own, so it completes, fills the header cache and leaves the
//! in-flight map even when every caller went away (a directory closed while
//! its next page was being resolved); a permit is never held by a future
//! nobody polls.
//!
//! Joining is a choice of the caller (`Sharing`): a HEAD sent a moment before
//! the caller asked is as good as its own for lookups and listings, which are
//! trusted for the metadata TTL anyway, but not for the revalidation at
//! `open`, which must see any change completed before it was called.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::Semaphore;

use crate::cache::block::BlockKey;
use crate::cache::disk::{DiskCache, headers_block};
use crate::cache::meta::{
    HeaderCache, PosixHeaders, decode_from_disk, encode_for_disk, whole_seconds,
};
use crate::store::{ListFrom, ListPage, ListedObject, ObjectMeta, ObjectStore, StoreError};

/// Header files read from the disk cache by one blocking task: a directory
/// of a hundred files takes one, a flat page of 1,000 keys spreads over the
/// cores.
const DISK_HEADERS_PER_TASK: usize = 128;

pub type HeadResult = Result<ObjectMeta, Arc<StoreError>>;
type SharedHead = Shared<BoxFuture<'static, HeadResult>>;

/// What `headers_or_head` found.
pub enum Known {
    Cached(PosixHeaders),
    Head(HeadResult),
}

/// Whether a HEAD already in flight for the key may answer a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Lookups, attributes and listings.
    JoinInFlight,
    /// Close-to-open: only a HEAD sent after the call may answer it. Later
    /// callers join this one.
    SendNew,
}

struct InFlight {
    /// Tells a finished HEAD whether the map still holds it or a newer one.
    serial: u64,
    head: SharedHead,
}

pub struct MetadataRequests<S> {
    store: Arc<S>,
    permits: Semaphore,
    max_concurrency: usize,
    headers: HeaderCache,
    in_flight: Mutex<InFlightHeads>,
    /// With `--cache-dir`: headers of files read are kept there too.
    disk: OnceLock<Arc<DiskCache>>,
}

#[derive(Default)]
struct InFlightHeads {
    by_key: HashMap<String, InFlight>,
    next_serial: u64,
}

impl<S: ObjectStore> MetadataRequests<S> {
    pub fn new(store: Arc<S>, max_concurrency: usize, headers: HeaderCache) -> Self {
        let max_concurrency = max_concurrency.max(1);
        MetadataRequests {
            store,
            permits: Semaphore::new(max_concurrency),
            max_concurrency,
            headers,
            in_flight: Mutex::new(InFlightHeads::default()),
            disk: OnceLock::new(),
        }
    }

    /// Keeps headers of files read in `disk` too, and looks there before a
    /// HEAD; see [`Self::keep_on_disk`].
    pub fn use_disk_cache(&self, disk: Arc<DiskCache>) {
        let _ = self.disk.set(disk);
    }

    /// Writes the headers of a file being opened for reading to the disk
    /// cache, beside the blocks the reads will put there, so that listing
    /// its directory after a remount costs no HEAD for it. Only files read:
    /// a walk over a million keys must not write a million files.
    pub fn keep_on_disk(
        &self,
        key: &str,
        etag: &str,
        last_modified: SystemTime,
        headers: &PosixHeaders,
    ) {
        let Some(disk) = self.disk.get() else { return };
        let block = headers_block(key, etag);
        if etag.is_empty() || disk.contains(&block) {
            return;
        }
        let Some(bytes) = encode_for_disk(headers, last_modified) else {
            return;
        };
        let Some(reservation) = disk.try_reserve_write(bytes.len() as u64) else {
            return;
        };
        // Far smaller than a block: written as one.
        super::read::write_to_disk(reservation, disk, block, vec![Bytes::from(bytes)]);
    }

    /// Moves into the memory cache the headers the disk cache kept for
    /// those of `objects` the memory cache lacks, in a few blocking tasks
    /// for the whole page. One at a time, each costs a trip through the
    /// blocking pool, with up to `--max-concurrency` of them starting
    /// threads at once: in a `tar` after a remount that made readdirplus
    /// take 2.3 ms a request (bench/fuse-ops.sh, docs/benchmarks.md).
    pub async fn load_headers_from_disk(&self, objects: &[ListedObject]) {
        let Some(disk) = self.disk.get() else { return };
        let wanted: Vec<(BlockKey, SystemTime)> = objects
            .iter()
            .filter(|object| {
                !object.etag.is_empty()
                    && !object.key.ends_with('/')
                    && !self
                        .headers
                        .holds(&object.key, &object.etag, Some(object.last_modified))
            })
            .map(|object| {
                let block = headers_block(&object.key, &object.etag);
                (block, object.last_modified)
            })
            .filter(|(block, _)| disk.contains(block))
            .collect();
        let reads = wanted.chunks(DISK_HEADERS_PER_TASK).map(|chunk| {
            let disk = Arc::clone(disk);
            let chunk = chunk.to_vec();
            tokio::task::spawn_blocking(move || {
                chunk
                    .into_iter()
                    .filter_map(|(block, listed_modified)| {
                        let (headers, last_modified) =
                            kept_headers(&disk, &block, listed_modified)?;
                        Some((block, headers, last_modified))
                    })
                    .collect::<Vec<_>>()
            })
        });
        for read in futures::future::join_all(reads).await {
            for (block, headers, last_modified) in read.unwrap_or_default() {
                self.headers
                    .insert(&block.key, &block.etag, headers, Some(last_modified));
            }
        }
    }

    /// The headers the disk cache kept for `key` at `etag`, if they were
    /// read for the version a listing shows as last modified at
    /// `listed_modified`; they go into the memory cache too.
    async fn headers_from_disk(
        &self,
        key: &str,
        etag: &str,
        listed_modified: SystemTime,
    ) -> Option<PosixHeaders> {
        let disk = self.disk.get()?;
        let block = headers_block(key, etag);
        if etag.is_empty() || !disk.contains(&block) {
            return None;
        }
        let disk = Arc::clone(disk);
        let (headers, last_modified) =
            tokio::task::spawn_blocking(move || kept_headers(&disk, &block, listed_modified))
                .await
                .ok()??;
        self.headers
            .insert(key, etag, headers.clone(), Some(last_modified));
        Some(headers)
    }

    /// Requests in flight at most, HEADs and LISTs together.
    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    /// POSIX headers of `key` at `etag`, read by an earlier HEAD or written
    /// by this mount.
    pub fn headers(&self) -> &HeaderCache {
        &self.headers
    }

    /// HeadObject of `key`, shared with other callers as `sharing` allows.
    /// Its headers are cached by key and ETag before it returns.
    pub async fn head(self: &Arc<Self>, key: &str, sharing: Sharing) -> HeadResult {
        let head = {
            let mut in_flight = self.in_flight.lock().unwrap();
            match in_flight.by_key.get(key) {
                Some(existing) if sharing == Sharing::JoinInFlight => existing.head.clone(),
                _ => self.start_head(&mut in_flight, key),
            }
        };
        head.await
    }

    /// The POSIX headers of `key` at `etag` if the memory cache or the disk
    /// cache knows them, else a HEAD of `key` (joined if in flight). A HEAD
    /// caches its headers before it leaves the in-flight map, and both are
    /// checked here under the map's lock, so a HEAD that has just finished is
    /// never sent again.
    pub async fn headers_or_head(
        self: &Arc<Self>,
        key: &str,
        etag: &str,
        listed_modified: SystemTime,
    ) -> Known {
        if let Some(headers) = self.headers.get(key, etag, Some(listed_modified)) {
            return Known::Cached(headers);
        }
        if let Some(headers) = self.headers_from_disk(key, etag, listed_modified).await {
            return Known::Cached(headers);
        }
        // Looked up again under the lock: a HEAD may have just finished.
        let head = {
            let mut in_flight = self.in_flight.lock().unwrap();
            if let Some(headers) = self.headers.get(key, etag, Some(listed_modified)) {
                return Known::Cached(headers);
            }
            match in_flight.by_key.get(key) {
                Some(existing) => existing.head.clone(),
                None => self.start_head(&mut in_flight, key),
            }
        };
        Known::Head(head.await)
    }

    fn start_head(self: &Arc<Self>, in_flight: &mut InFlightHeads, key: &str) -> SharedHead {
        in_flight.next_serial += 1;
        let serial = in_flight.next_serial;
        let head = self.spawn_head(key.to_owned(), serial);
        let entry = InFlight {
            serial,
            head: head.clone(),
        };
        in_flight.by_key.insert(key.to_owned(), entry);
        head
    }

    /// Starts the HEAD task. Called with the in-flight map locked, so the
    /// task cannot finish and look for its entry before the entry exists.
    fn spawn_head(self: &Arc<Self>, key: String, serial: u64) -> SharedHead {
        let this = Arc::clone(self);
        let task = tokio::spawn(async move {
            let result = {
                let _permit = this.permits.acquire().await.expect("never closed");
                this.store.head(&key).await.map_err(Arc::new)
            };
            // Cached before the entry leaves the map (see `headers_or_head`).
            if let Ok(meta) = &result {
                let headers = PosixHeaders::from_head(meta);
                this.headers
                    .insert(&key, &meta.etag, headers, Some(meta.last_modified));
            }
            let mut in_flight = this.in_flight.lock().unwrap();
            if in_flight
                .by_key
                .get(&key)
                .is_some_and(|e| e.serial == serial)
            {
                in_flight.by_key.remove(&key);
            }
            result
        });
        async move {
            task.await.unwrap_or_else(|join| {
                Err(Arc::new(StoreError::Other {
                    source: format!("HEAD task failed: {join}").into(),
                }))
            })
        }
        .boxed()
        .shared()
    }

    /// One ListObjectsV2 page under `prefix`: one directory level when
    /// `delimited`, every key at any depth otherwise.
    pub async fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        from: ListFrom<'_>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        let _permit = self.permits.acquire().await.expect("never closed");
        self.store
            .list_page(prefix, delimited, from, max_keys)
            .await
    }
}

/// The headers `block` keeps, if they were read for the version a listing
/// shows as last modified at `listed_modified`. Reads the disk: call from a
/// blocking task.
fn kept_headers(
    disk: &DiskCache,
    block: &BlockKey,
    listed_modified: SystemTime,
) -> Option<(PosixHeaders, SystemTime)> {
    let (headers, last_modified) = decode_from_disk(&disk.get(block)?)?;
    let is_listed_version = whole_seconds(last_modified) == whole_seconds(listed_modified);
    is_listed_version.then_some((headers, last_modified))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::memory::{MemoryStore, Verb};

    fn requests(store: &Arc<MemoryStore>) -> Arc<MetadataRequests<MemoryStore>> {
        Arc::new(MetadataRequests::new(
            Arc::clone(store),
            4,
            HeaderCache::new(16),
        ))
    }

    #[tokio::test]
    async fn concurrent_heads_of_one_key_send_one_request() {
        let store = Arc::new(MemoryStore::new());
        store.put("k", vec![0u8; 3]);
        store.set_latency(Verb::Head, Duration::from_millis(20));
        let requests = requests(&store);
        let (a, b, c) = tokio::join!(
            requests.head("k", Sharing::JoinInFlight),
            requests.head("k", Sharing::JoinInFlight),
            requests.head("k", Sharing::JoinInFlight),
        );
        assert_eq!(
            (a.unwrap().size, b.unwrap().size, c.unwrap().size),
            (3, 3, 3)
        );
        assert_eq!(store.head_count(), 1);

        // Finished HEADs are not joined: a later call sends its own.
        requests.head("k", Sharing::JoinInFlight).await.unwrap();
        assert_eq!(store.head_count(), 2);
    }

    #[tokio::test]
    async fn send_new_does_not_join_and_is_joined() {
        let store = Arc::new(MemoryStore::new());
        store.put("k", vec![0u8; 1]);
        store.set_latency(Verb::Head, Duration::from_millis(20));
        let requests = requests(&store);
        let (_, _, _) = tokio::join!(
            requests.head("k", Sharing::JoinInFlight),
            async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                requests.head("k", Sharing::SendNew).await
            },
            async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                requests.head("k", Sharing::JoinInFlight).await
            },
        );
        assert_eq!(store.head_count(), 2, "the third call joins the second");
        assert!(requests.in_flight.lock().unwrap().by_key.is_empty());
    }

    #[tokio::test]
    async fn a_head_nobody_awaits_completes_and_fills_the_cache() {
        let store = Arc::new(MemoryStore::new());
        let etag = store.put_with_metadata(
            "k",
            vec![0u8; 1],
            [("uid".to_owned(), "7".to_owned())].into(),
        );
        store.set_latency(Verb::Head, Duration::from_millis(10));
        let requests = requests(&store);
        // Polled once, so the HEAD is registered, then dropped.
        let mut head = Box::pin(requests.head("k", Sharing::JoinInFlight));
        assert!(futures::poll!(head.as_mut()).is_pending());
        drop(head);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(store.head_count(), 1);
        assert_eq!(
            requests.headers().get("k", &etag, None).and_then(|h| h.uid),
            Some(7)
        );
        assert!(requests.in_flight.lock().unwrap().by_key.is_empty());
    }

    #[tokio::test]
    async fn errors_are_shared_and_not_remembered() {
        let store = Arc::new(MemoryStore::new());
        let requests = requests(&store);
        let error = requests.head("missing", Sharing::JoinInFlight).await;
        assert!(matches!(error, Err(ref e) if matches!(**e, StoreError::NotFound { .. })));
        store.put("missing", vec![0u8; 1]);
        assert!(
            requests
                .head("missing", Sharing::JoinInFlight)
                .await
                .is_ok()
        );
    }
}
