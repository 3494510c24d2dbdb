//! Metadata caches with bounded size: POSIX attributes parsed from the
//! s3fs/GeeseFS `x-amz-meta-*` headers, keyed by key and ETag (an unchanged
//! object is never HEADed twice by one mount), and negative lookups with a TTL.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

pub use crate::object_format::PosixHeaders;

/// Headers already read, so that listing a directory twice, or listing it
/// after a lookup, costs no HEAD for objects that did not change.
pub struct HeaderCache {
    entries: Mutex<LruCache<(String, String), PosixHeaders>>,
}

impl HeaderCache {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity.max(1)).expect("non-zero");
        HeaderCache {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub fn get(&self, key: &str, etag: &str) -> Option<PosixHeaders> {
        if etag.is_empty() {
            // Without an ETag there is no way to tell versions apart.
            return None;
        }
        let mut entries = self.entries.lock().unwrap();
        entries.get(&(key.to_owned(), etag.to_owned())).cloned()
    }

    pub fn insert(&self, key: &str, etag: &str, headers: PosixHeaders) {
        if etag.is_empty() {
            return;
        }
        let mut entries = self.entries.lock().unwrap();
        entries.put((key.to_owned(), etag.to_owned()), headers);
    }
}

/// Names recently found absent, trusted for the metadata TTL like positive
/// lookups, so that tools probing for files (`.git`, lock files, `stat` of a
/// missing path in a loop) do not cost two requests each time.
pub struct NegativeCache {
    ttl: Duration,
    entries: Mutex<LruCache<(u64, String), Instant>>,
}

impl NegativeCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity.max(1)).expect("non-zero");
        NegativeCache {
            ttl,
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub fn is_absent(&self, parent: u64, name: &str) -> bool {
        let mut entries = self.entries.lock().unwrap();
        let key = (parent, name.to_owned());
        match entries.get(&key) {
            Some(at) if at.elapsed() < self.ttl => true,
            Some(_) => {
                entries.pop(&key);
                false
            }
            None => false,
        }
    }

    pub fn insert(&self, parent: u64, name: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap();
        entries.put((parent, name.to_owned()), Instant::now());
    }

    pub fn remove(&self, parent: u64, name: &str) {
        let mut entries = self.entries.lock().unwrap();
        entries.pop(&(parent, name.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_entries_expire() {
        let cache = NegativeCache::new(Duration::from_millis(20), 8);
        cache.insert(1, "x");
        assert!(cache.is_absent(1, "x"));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!cache.is_absent(1, "x"));
    }
}
