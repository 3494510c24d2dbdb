//! Metadata caches with bounded size: POSIX attributes parsed from the
//! s3fs/GeeseFS `x-amz-meta-*` headers, keyed by key and ETag (an unchanged
//! object is never HEADed twice by one mount), and negative lookups with a TTL.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lru::LruCache;

/// POSIX attributes an object may carry in user metadata, as s3fs-fuse and
/// GeeseFS write them. Absent or unparsable headers are `None` and the mount
/// options apply instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PosixHeaders {
    /// Full `st_mode` (s3fs writes it in decimal, file-type bits included).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<SystemTime>,
}

impl PosixHeaders {
    /// Parses lower-cased user metadata names without the `x-amz-meta-` prefix.
    pub fn from_user_metadata(metadata: &HashMap<String, String>) -> Self {
        let number = |name: &str| {
            metadata
                .get(name)
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        PosixHeaders {
            mode: number("mode"),
            uid: number("uid"),
            gid: number("gid"),
            mtime: metadata.get("mtime").and_then(|v| parse_epoch(v)),
        }
    }
}

/// Epoch seconds with an optional fraction ("1600000000" or "1600000000.25").
fn parse_epoch(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let seconds: u64 = whole.parse().ok()?;
    let nanos = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().take(9).collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        format!("{digits:0<9}").parse::<u32>().ok()?
    };
    UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

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
        entries.get(&(key.to_owned(), etag.to_owned())).copied()
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
    fn parses_s3fs_headers() {
        let metadata: HashMap<String, String> = [
            ("mode", "33184"),
            ("uid", "1234"),
            ("gid", "4321"),
            ("mtime", "1600000000.5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let headers = PosixHeaders::from_user_metadata(&metadata);
        assert_eq!(headers.mode, Some(0o100640));
        assert_eq!(headers.uid, Some(1234));
        assert_eq!(headers.gid, Some(4321));
        assert_eq!(
            headers.mtime,
            Some(UNIX_EPOCH + Duration::new(1_600_000_000, 500_000_000))
        );
    }

    #[test]
    fn garbage_headers_are_ignored() {
        let metadata: HashMap<String, String> = [("mode", "rwx"), ("mtime", "soon")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            PosixHeaders::from_user_metadata(&metadata),
            PosixHeaders::default()
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
