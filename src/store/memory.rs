//! An in-memory bucket with S3's semantics, for tests of the layers above.
//!
//! Listing follows ListObjectsV2: keys in byte order, `/` rolling keys up into
//! common prefixes, `max_keys` counting objects and prefixes together. The
//! continuation token is the last entry (key or common prefix) of the page;
//! the next page starts strictly after it. This works because a key's entry
//! never sorts before the entry of a smaller key.
//!
//! Tests change the bucket behind the filesystem's back with [`MemoryStore::put`]
//! and [`MemoryStore::delete`], count requests per [`Verb`], and make the next
//! requests fail with [`MemoryStore::fail_next`]. A request is counted before
//! an injected failure is applied, as S3 would have received it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::{Bound, Range};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;

use super::{ListPage, ListedObject, ObjectMeta, ObjectStore, StoreError};

const DELIMITER: char = '/';

/// The store requests a test can count or make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Head,
    Get,
    List,
}

/// Which `StoreError` an injected failure produces. `StoreError` itself is
/// not `Clone` (it carries a boxed source), so failures are queued by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    NotFound,
    PreconditionFailed,
    NoSuchBucket,
    InvalidCredentials,
    AccessDenied,
    Timeout,
    Unreachable,
    Other,
}

impl FailureKind {
    fn into_error(self, key: &str) -> StoreError {
        let injected = |kind| Box::new(std::io::Error::new(kind, "injected failure"));
        match self {
            FailureKind::NotFound => StoreError::NotFound {
                key: key.to_owned(),
            },
            FailureKind::PreconditionFailed => StoreError::PreconditionFailed {
                key: key.to_owned(),
            },
            FailureKind::NoSuchBucket => StoreError::NoSuchBucket {
                bucket: "memory".to_owned(),
            },
            FailureKind::InvalidCredentials => StoreError::InvalidCredentials {
                message: "injected failure".to_owned(),
            },
            FailureKind::AccessDenied => StoreError::AccessDenied {
                message: "injected failure".to_owned(),
            },
            FailureKind::Timeout => StoreError::Timeout,
            FailureKind::Unreachable => StoreError::Unreachable {
                source: injected(std::io::ErrorKind::ConnectionRefused),
            },
            FailureKind::Other => StoreError::Other {
                source: injected(std::io::ErrorKind::Other),
            },
        }
    }
}

#[derive(Debug, Clone)]
struct StoredObject {
    data: Bytes,
    etag: String,
    last_modified: SystemTime,
    user_metadata: HashMap<String, String>,
}

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<String, StoredObject>,
    /// Source of ETags; bumped on every put so that no two versions share one.
    puts: u64,
    requests: HashMap<Verb, u64>,
    failures: HashMap<Verb, VecDeque<FailureKind>>,
}

impl State {
    /// Counts the request, then consumes the next injected failure, if any.
    fn begin(&mut self, verb: Verb, key: &str) -> Result<(), StoreError> {
        *self.requests.entry(verb).or_default() += 1;
        match self.failures.get_mut(&verb).and_then(VecDeque::pop_front) {
            Some(kind) => Err(kind.into_error(key)),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Default)]
pub struct MemoryStore {
    // Never held across an await: every method works synchronously inside.
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Creates or replaces `key` without user metadata; returns the new ETag.
    pub fn put(&self, key: &str, data: impl Into<Bytes>) -> String {
        self.put_with_metadata(key, data, HashMap::new())
    }

    /// Creates or replaces `key`; metadata names are lower-cased as S3 does.
    /// Returns the new ETag.
    pub fn put_with_metadata(
        &self,
        key: &str,
        data: impl Into<Bytes>,
        user_metadata: HashMap<String, String>,
    ) -> String {
        let mut state = self.lock();
        state.puts += 1;
        let etag = format!("\"{:032x}\"", state.puts);
        let object = StoredObject {
            data: data.into(),
            etag: etag.clone(),
            last_modified: SystemTime::now(),
            user_metadata: user_metadata
                .into_iter()
                .map(|(name, value)| (name.to_lowercase(), value))
                .collect(),
        };
        state.objects.insert(key.to_owned(), object);
        etag
    }

    /// Removes `key`; returns whether it existed.
    pub fn delete(&self, key: &str) -> bool {
        self.lock().objects.remove(key).is_some()
    }

    /// Requests of `verb` received so far, failed ones included. An empty
    /// `get_range` is not a request, as with S3Store.
    pub fn request_count(&self, verb: Verb) -> u64 {
        self.lock().requests.get(&verb).copied().unwrap_or(0)
    }

    pub fn head_count(&self) -> u64 {
        self.request_count(Verb::Head)
    }

    pub fn get_count(&self) -> u64 {
        self.request_count(Verb::Get)
    }

    pub fn list_count(&self) -> u64 {
        self.request_count(Verb::List)
    }

    /// Makes the next `count` requests of `verb` fail with `kind`, after any
    /// failures already queued for that verb.
    pub fn fail_next(&self, verb: Verb, kind: FailureKind, count: usize) {
        let mut state = self.lock();
        let queue = state.failures.entry(verb).or_default();
        queue.extend(std::iter::repeat_n(kind, count));
    }

    /// Drops every queued failure.
    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock left consistent state:
        // every mutation is a single map operation.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ObjectStore for MemoryStore {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let mut state = self.lock();
        state.begin(Verb::Head, key)?;
        let object = state.objects.get(key).ok_or_else(|| StoreError::NotFound {
            key: key.to_owned(),
        })?;
        Ok(ObjectMeta {
            size: object.data.len() as u64,
            etag: object.etag.clone(),
            last_modified: object.last_modified,
            user_metadata: object.user_metadata.clone(),
        })
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let mut state = self.lock();
        state.begin(Verb::Get, key)?;
        let object = state.objects.get(key).ok_or_else(|| StoreError::NotFound {
            key: key.to_owned(),
        })?;
        // S3 checks If-Match before the range, and `*` matches any version.
        if let Some(etag) = if_match
            && etag != "*"
            && etag != object.etag
        {
            return Err(StoreError::PreconditionFailed {
                key: key.to_owned(),
            });
        }
        let len = object.data.len() as u64;
        let start = range.start.min(len) as usize;
        let end = range.end.min(len) as usize;
        Ok(object.data.slice(start..end))
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        continuation: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        let mut state = self.lock();
        state.begin(Verb::List, prefix)?;
        let lower = match continuation {
            Some(token) if token >= prefix => Bound::Excluded(token),
            _ => Bound::Included(prefix),
        };
        let mut page = ListPage::default();
        let mut last_entry: Option<&str> = None;
        let mut entries = 0;
        for (key, object) in state
            .objects
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
        {
            let common_prefix = delimited
                .then(|| {
                    key[prefix.len()..]
                        .find(DELIMITER)
                        .map(|at| &key[..prefix.len() + at + DELIMITER.len_utf8()])
                })
                .flatten();
            let entry = common_prefix.unwrap_or(key);
            // Keys under a prefix already returned, on this page or before.
            if last_entry.is_some_and(|last| entry <= last)
                || continuation.is_some_and(|token| entry <= token)
            {
                continue;
            }
            if entries == max_keys {
                page.next = last_entry.map(str::to_owned);
                break;
            }
            match common_prefix {
                Some(common) => page.common_prefixes.push(common.to_owned()),
                None => page.objects.push(ListedObject {
                    key: key.clone(),
                    size: object.data.len() as u64,
                    etag: object.etag.clone(),
                    last_modified: object.last_modified,
                }),
            }
            last_entry = Some(entry);
            entries += 1;
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    fn store_with(keys: &[&str]) -> MemoryStore {
        let store = MemoryStore::new();
        for key in keys {
            store.put(key, Bytes::from(key.to_string()));
        }
        store
    }

    /// Lists every page of size `max_keys`; returns (objects, prefixes, pages).
    fn list_all(
        store: &MemoryStore,
        prefix: &str,
        delimited: bool,
        max_keys: u32,
    ) -> (Vec<String>, Vec<String>, usize) {
        let mut objects = Vec::new();
        let mut prefixes = Vec::new();
        let mut token = None;
        let mut pages = 0;
        loop {
            let page =
                block_on(store.list_page(prefix, delimited, token.as_deref(), max_keys)).unwrap();
            pages += 1;
            assert!(page.objects.len() + page.common_prefixes.len() <= max_keys as usize);
            objects.extend(page.objects.into_iter().map(|object| object.key));
            prefixes.extend(page.common_prefixes);
            match page.next {
                Some(next) => token = Some(next),
                None => return (objects, prefixes, pages),
            }
        }
    }

    const TREE: &[&str] = &[
        "a-b",
        "a/",
        "a/x",
        "a/y/z",
        "a0",
        "b",
        "dir/",
        "dir/f1",
        "dir/f2",
        "dir/sub/g",
        "dir/sub/h",
        "dir/sub2/i",
        "dir0",
    ];

    #[test]
    fn delimited_listing_rolls_up_directories() {
        let store = store_with(TREE);
        let (objects, prefixes, _) = list_all(&store, "", true, 1000);
        assert_eq!(objects, ["a-b", "a0", "b", "dir0"]);
        assert_eq!(prefixes, ["a/", "dir/"]);

        let (objects, prefixes, _) = list_all(&store, "dir/", true, 1000);
        assert_eq!(objects, ["dir/", "dir/f1", "dir/f2"]);
        assert_eq!(prefixes, ["dir/sub/", "dir/sub2/"]);
    }

    #[test]
    fn pagination_returns_every_entry_once() {
        let store = store_with(TREE);
        let full = list_all(&store, "", true, 1000);
        for max_keys in 1..=7 {
            let (objects, prefixes, pages) = list_all(&store, "", true, max_keys);
            assert_eq!(
                (&objects, &prefixes),
                (&full.0, &full.1),
                "max_keys {max_keys}"
            );
            assert_eq!(
                pages,
                6_usize.div_ceil(max_keys as usize),
                "max_keys {max_keys}"
            );
        }
        let (objects, _, pages) = list_all(&store, "dir/", false, 2);
        assert_eq!(
            objects,
            [
                "dir/",
                "dir/f1",
                "dir/f2",
                "dir/sub/g",
                "dir/sub/h",
                "dir/sub2/i"
            ]
        );
        assert_eq!(pages, 3);
    }

    #[test]
    fn prefix_need_not_end_at_a_delimiter() {
        let store = store_with(TREE);
        let (objects, prefixes, _) = list_all(&store, "dir", true, 1000);
        assert_eq!(objects, ["dir0"]);
        assert_eq!(prefixes, ["dir/"]);
    }

    #[test]
    fn listing_reports_size_and_etag() {
        let store = MemoryStore::new();
        let etag = store.put("k", "hello");
        let page = block_on(store.list_page("", true, None, 10)).unwrap();
        assert_eq!(page.objects[0].size, 5);
        assert_eq!(page.objects[0].etag, etag);
        assert_eq!(page.next, None);
    }

    #[test]
    fn ranges_are_clamped_at_the_end() {
        let store = MemoryStore::new();
        store.put("k", "0123456789");
        let get = |range| block_on(store.get_range("k", range, None)).unwrap();
        assert_eq!(get(2..5), "234");
        assert_eq!(get(8..100), "89");
        assert_eq!(get(10..20), "");
        assert_eq!(get(3..3), "");
        assert_eq!(store.get_count(), 3, "an empty range sends no request");
    }

    #[test]
    fn if_match_detects_a_replaced_object() {
        let store = MemoryStore::new();
        let first = store.put("k", "old");
        assert_eq!(
            block_on(store.get_range("k", 0..3, Some(&first))).unwrap(),
            "old"
        );
        let second = store.put("k", "new");
        assert_ne!(first, second);
        assert!(matches!(
            block_on(store.get_range("k", 0..3, Some(&first))),
            Err(StoreError::PreconditionFailed { key }) if key == "k"
        ));
        assert_eq!(
            block_on(store.get_range("k", 0..3, Some("*"))).unwrap(),
            "new"
        );
    }

    #[test]
    fn head_reports_metadata_and_missing_keys() {
        let store = MemoryStore::new();
        let metadata = HashMap::from([("Mode".to_owned(), "0644".to_owned())]);
        let etag = store.put_with_metadata("k", "abc", metadata);
        let meta = block_on(store.head("k")).unwrap();
        assert_eq!((meta.size, meta.etag), (3, etag));
        assert_eq!(meta.user_metadata["mode"], "0644");

        assert!(store.delete("k"));
        assert!(matches!(
            block_on(store.head("k")),
            Err(StoreError::NotFound { key }) if key == "k"
        ));
        assert_eq!(store.head_count(), 2);
    }

    #[test]
    fn injected_failures_hit_only_the_next_requests() {
        let store = store_with(&["k"]);
        store.fail_next(Verb::Head, FailureKind::Timeout, 2);
        assert!(matches!(
            block_on(store.head("k")),
            Err(StoreError::Timeout)
        ));
        assert!(matches!(
            block_on(store.head("k")),
            Err(StoreError::Timeout)
        ));
        assert!(block_on(store.head("k")).is_ok());
        assert!(block_on(store.list_page("", true, None, 10)).is_ok());
        assert_eq!((store.head_count(), store.list_count()), (3, 1));

        store.fail_next(Verb::Get, FailureKind::NotFound, 1);
        assert!(matches!(
            block_on(store.get_range("k", 0..1, None)),
            Err(StoreError::NotFound { key }) if key == "k"
        ));
    }
}
