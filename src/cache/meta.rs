//! Metadata caches with bounded size: POSIX attributes parsed from the
//! s3fs/GeeseFS `x-amz-meta-*` headers, keyed by key and ETag (an unchanged
//! object is never HEADed twice by one mount), and negative lookups with a TTL.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
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
///
/// Sized for million-key walks: an entry is named by a 128-bit keyed hash
/// of key and ETag instead of the strings, and an object without POSIX
/// headers (most of a bucket other tools wrote) stores none, so an entry
/// takes 86 bytes, one with headers 198 (measured from the allocator by
/// tests/metadata_memory.rs). The hash keys are random per mount, so no one who can name
/// objects in the bucket can make two of them collide on purpose.
pub struct HeaderCache {
    capacity: usize,
    identity: (RandomState, RandomState),
    entries: Mutex<LruCache<Identity, CachedHeaders>>,
}

/// Key and ETag, hashed twice with independent random keys.
type Identity = [u64; 2];

struct CachedHeaders {
    /// `None` when the object has no POSIX headers at all.
    headers: Option<Box<PosixHeaders>>,
    /// Seconds since the epoch; `None` until a listing or HEAD says.
    last_modified: Option<u64>,
}

impl HeaderCache {
    pub fn new(capacity: usize) -> Self {
        HeaderCache {
            capacity: capacity.max(1),
            identity: (RandomState::new(), RandomState::new()),
            // Grown as entries come rather than allocated for the capacity
            // up front: most mounts never list a million objects.
            entries: Mutex::new(LruCache::unbounded()),
        }
    }

    fn identity(&self, key: &str, etag: &str) -> Identity {
        [
            self.identity.0.hash_one((key, etag)),
            self.identity.1.hash_one((key, etag)),
        ]
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
        self.current(key, etag, listed_modified, |cached| {
            cached.headers.as_deref().cloned().unwrap_or_default()
        })
    }

    /// Whether `get` would find headers, without copying them.
    pub fn holds(&self, key: &str, etag: &str, listed_modified: Option<SystemTime>) -> bool {
        self.current(key, etag, listed_modified, |_| ()).is_some()
    }

    /// `read` of the entry `get` describes, if there is one.
    fn current<T>(
        &self,
        key: &str,
        etag: &str,
        listed_modified: Option<SystemTime>,
        read: impl FnOnce(&CachedHeaders) -> T,
    ) -> Option<T> {
        if etag.is_empty() {
            // Without an ETag there is no way to tell versions apart.
            return None;
        }
        let identity = self.identity(key, etag);
        let mut entries = self.entries.lock().unwrap();
        let entry = entries.get_mut(&identity)?;
        if let Some(listed) = listed_modified.map(whole_seconds) {
            match entry.last_modified {
                Some(cached) if cached != listed => return None,
                Some(_) => {}
                None => entry.last_modified = Some(listed),
            }
        }
        Some(read(entry))
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
        let identity = self.identity(key, etag);
        let cached = CachedHeaders {
            headers: (headers != PosixHeaders::default()).then(|| Box::new(headers)),
            last_modified: last_modified.map(whole_seconds),
        };
        let mut entries = self.entries.lock().unwrap();
        entries.put(identity, cached);
        while entries.len() > self.capacity {
            entries.pop_lru();
        }
    }

    /// Objects whose headers are cached.
    pub fn cached_objects(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

/// Version of the bytes `encode_for_disk` writes.
const DISK_FORMAT: u8 = 1;

/// `headers`, read for the version last modified at `last_modified`, as the
/// disk cache keeps them: the format version, the directory Content-Type
/// flag, Last-Modified in seconds, then the s3fs user metadata the headers
/// write (which reads back as the same headers), each name and value ended
/// by a NUL, which no HTTP header holds. `None` if one did.
pub fn encode_for_disk(headers: &PosixHeaders, last_modified: SystemTime) -> Option<Vec<u8>> {
    let mut bytes = vec![DISK_FORMAT, u8::from(headers.has_directory_content_type)];
    bytes.extend_from_slice(&whole_seconds(last_modified).to_le_bytes());
    for (name, value) in headers.to_user_metadata() {
        if name.contains('\0') || value.contains('\0') {
            return None;
        }
        for text in [name, value] {
            bytes.extend_from_slice(text.as_bytes());
            bytes.push(0);
        }
    }
    Some(bytes)
}

/// What `encode_for_disk` wrote: the headers and the Last-Modified (whole
/// seconds) they were read for.
pub fn decode_from_disk(bytes: &[u8]) -> Option<(PosixHeaders, SystemTime)> {
    let (&[version, directory_flag], rest) = bytes.split_first_chunk::<2>()?;
    if version != DISK_FORMAT || directory_flag > 1 {
        return None;
    }
    let (seconds, rest) = rest.split_first_chunk::<8>()?;
    let last_modified = UNIX_EPOCH + Duration::from_secs(u64::from_le_bytes(*seconds));
    let texts: Vec<&str> = match rest.strip_suffix(&[0]) {
        Some(rest) => rest
            .split(|&byte| byte == 0)
            .map(|text| std::str::from_utf8(text).ok())
            .collect::<Option<_>>()?,
        None if rest.is_empty() => Vec::new(),
        None => return None,
    };
    if !texts.len().is_multiple_of(2) {
        return None;
    }
    let metadata: HashMap<String, String> = texts
        .chunks(2)
        .map(|pair| (pair[0].to_owned(), pair[1].to_owned()))
        .collect();
    let headers = PosixHeaders {
        has_directory_content_type: directory_flag == 1,
        ..PosixHeaders::from_user_metadata(&metadata)
    };
    Some((headers, last_modified))
}

/// Last-Modified as a HEAD tells it: in whole seconds.
pub fn whole_seconds(time: SystemTime) -> u64 {
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
    use std::sync::Arc;

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
    fn headers_kept_on_disk_read_back_the_same() {
        let now = SystemTime::now();
        let mut headers = PosixHeaders::created(0o100_640, 7, 8, now);
        headers.rdev = Some(3);
        headers.has_directory_content_type = true;
        let mut xattrs = crate::object_format::Xattrs::new();
        xattrs.insert("user.k".to_owned(), b"v\0\xff".to_vec());
        headers.xattrs = Some(Arc::new(xattrs));
        let bytes = encode_for_disk(&headers, at(1_700_000_000)).unwrap();
        let (back, last_modified) = decode_from_disk(&bytes).unwrap();
        assert_eq!(back, headers);
        assert_eq!(last_modified, at(1_700_000_000));
        let (none, _) =
            decode_from_disk(&encode_for_disk(&PosixHeaders::default(), at(5)).unwrap()).unwrap();
        assert_eq!(none, PosixHeaders::default());
        for bad in [&bytes[..1], &bytes[..bytes.len() - 1], &[9u8; 12][..]] {
            assert!(decode_from_disk(bad).is_none(), "{bad:?}");
        }
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
