//! Metadata caches with bounded size: POSIX attributes parsed from the
//! s3fs/GeeseFS `x-amz-meta-*` headers, keyed by key and ETag (an unchanged
//! object is never HEADed twice by one mount), and negative lookups with a TTL.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lru::LruCache;

pub use crate::object_format::PosixHeaders;

/// Headers already read, so that listing a directory twice, or listing it
/// after a lookup, costs no HEAD for objects that did not change.
///
/// The ETag alone does not tell: a metadata-only copy (another host's chmod,
/// chown or touch) keeps the bytes and so, on S3, the ETag. Such a copy does
/// move Last-Modified, which every listing shows, so an entry also holds the
/// Last-Modified it was read at, in whole seconds (a HEAD says no more), and
/// a listing that shows another one misses. Headers this mount wrote carry
/// none until the first listing that shows the object supplies it. A change
/// elsewhere within the same second as the one before it is not seen.
pub struct HeaderCache {
    entries: Mutex<LruCache<(String, String), CachedHeaders>>,
}

struct CachedHeaders {
    headers: PosixHeaders,
    /// Seconds since the epoch; `None` until a listing or HEAD says.
    last_modified: Option<u64>,
}

impl HeaderCache {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity.max(1)).expect("non-zero");
        HeaderCache {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// The headers of `key` at `etag`, if they were read or written for the
    /// version a listing shows as last modified at `listed_modified`
    /// (`None`: any version with that ETag).
    pub fn get(
        &self,
        key: &str,
        etag: &str,
        listed_modified: Option<SystemTime>,
    ) -> Option<PosixHeaders> {
        if etag.is_empty() {
            // Without an ETag there is no way to tell versions apart.
            return None;
        }
        let mut entries = self.entries.lock().unwrap();
        let entry = entries.get_mut(&(key.to_owned(), etag.to_owned()))?;
        if let Some(listed) = listed_modified.map(whole_seconds) {
            match entry.last_modified {
                Some(cached) if cached != listed => return None,
                Some(_) => {}
                None => entry.last_modified = Some(listed),
            }
        }
        Some(entry.headers.clone())
    }

    /// Caches the headers of `key` at `etag`, last modified at
    /// `last_modified` as the store says (`None` when this mount wrote
    /// them and the store did not say when).
    pub fn insert(
        &self,
        key: &str,
        etag: &str,
        headers: PosixHeaders,
        last_modified: Option<SystemTime>,
    ) {
        if etag.is_empty() {
            return;
        }
        let mut entries = self.entries.lock().unwrap();
        entries.put(
            (key.to_owned(), etag.to_owned()),
            CachedHeaders {
                headers,
                last_modified: last_modified.map(whole_seconds),
            },
        );
    }
}

fn whole_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
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

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn mode(mode: u32) -> PosixHeaders {
        PosixHeaders {
            mode: Some(mode),
            ..PosixHeaders::default()
        }
    }

    #[test]
    fn a_listing_that_shows_another_last_modified_misses_though_the_etag_is_the_same() {
        let cache = HeaderCache::new(8);
        cache.insert("k", "e", mode(0o644), Some(at(100)));
        let listed_within_the_second = at(100) + Duration::from_millis(700);
        assert_eq!(
            cache.get("k", "e", Some(listed_within_the_second)),
            Some(mode(0o644)),
            "a HEAD's Last-Modified has whole seconds, a listing's milliseconds"
        );
        assert_eq!(
            cache.get("k", "e", Some(at(101))),
            None,
            "copied onto itself since"
        );
        assert_eq!(cache.get("k", "e", None), Some(mode(0o644)));
    }

    #[test]
    fn headers_this_mount_wrote_take_the_first_listings_last_modified() {
        let cache = HeaderCache::new(8);
        cache.insert("k", "e", mode(0o600), None);
        assert_eq!(cache.get("k", "e", Some(at(200))), Some(mode(0o600)));
        assert_eq!(cache.get("k", "e", Some(at(200))), Some(mode(0o600)));
        assert_eq!(
            cache.get("k", "e", Some(at(205))),
            None,
            "changed elsewhere since"
        );
    }

    #[test]
    fn negative_entries_expire() {
        let cache = NegativeCache::new(Duration::from_millis(20), 8);
        cache.insert(1, "x");
        assert!(cache.is_absent(1, "x"));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!cache.is_absent(1, "x"));
    }
}
