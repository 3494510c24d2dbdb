//! A store that answers out of spec (issue 10, section 6): the filesystem
//! core, driven without FUSE, must log a warning and give a sane answer,
//! never panic or loop.
//!
//! `Hostile` wraps the in-memory store and corrupts what it answers. Keys
//! that are not UTF-8 cannot be tested here: `ObjectStore` keys are `String`,
//! so no store can hand the filesystem one (the S3 store's listing fails as a
//! whole when the response is not UTF-8; see the report of issue 10).

use std::ops::Range;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, SystemTime};

#[path = "common/core.rs"]
mod core_fs;

use bucketfs::config::{FsConfig, PosixMetadata};
use bucketfs::fs::{Error, FileKind, Filesystem, OpenIntent, ROOT_INO};
use bucketfs::store::memory::MemoryStore;
use bucketfs::store::{
    ListFrom, ListPage, ListedObject, ObjectHeaders, ObjectMeta, ObjectStore, StoreError,
};
use bytes::Bytes;
use core_fs::fs_config;

/// How the store misbehaves.
#[derive(Debug, Clone, Default)]
struct Hostility {
    /// Adds these keys (and common prefixes, ending in `/`) to every
    /// listing page, whatever prefix was asked for.
    extra_entries: Vec<String>,
    /// Each page after the first starts again with this many entries of the
    /// page before, and lists its first object twice.
    repeated_entries: usize,
    /// Leaves these keys out of listings.
    dropped_keys: Vec<String>,
    /// Answers every page with the continuation token it was asked with.
    same_token_forever: bool,
    /// Answers every page with a fresh token and the first page's entries.
    first_page_forever: bool,
    /// GETs return this many bytes fewer (negative: more) than asked.
    get_shortfall: i64,
}

struct Hostile {
    inner: MemoryStore,
    hostility: Mutex<Hostility>,
    pages_served: Mutex<u64>,
}

impl Hostile {
    fn new(hostility: Hostility) -> Arc<Hostile> {
        Arc::new(Hostile {
            inner: MemoryStore::new(),
            hostility: Mutex::new(hostility),
            pages_served: Mutex::new(0),
        })
    }

    fn hostility(&self) -> Hostility {
        self.hostility.lock().unwrap().clone()
    }
}

fn listed(key: &str) -> ListedObject {
    ListedObject {
        key: key.to_owned(),
        size: 1,
        etag: "\"hostile\"".to_owned(),
        last_modified: SystemTime::UNIX_EPOCH,
    }
}

impl ObjectStore for Hostile {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        self.inner.head(key).await
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        let shortfall = self.hostility().get_shortfall;
        let bytes = self.inner.get_range(key, range, if_match).await?;
        Ok(if shortfall >= 0 {
            bytes.slice(..bytes.len().saturating_sub(shortfall as usize))
        } else {
            let mut longer = bytes.to_vec();
            longer.resize(bytes.len() + shortfall.unsigned_abs() as usize, b'!');
            Bytes::from(longer)
        })
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        from: ListFrom<'_>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        let hostility = self.hostility();
        let continuation = match from {
            ListFrom::Continue(token) => Some(token),
            ListFrom::Start | ListFrom::After(_) => None,
        };
        let served = {
            let mut served = self.pages_served.lock().unwrap();
            *served += 1;
            *served
        };
        let asked = if hostility.first_page_forever {
            ListFrom::Start
        } else {
            from
        };
        let mut page = self
            .inner
            .list_page(prefix, delimited, asked, max_keys)
            .await?;
        if hostility.repeated_entries > 0
            && let Some(token) = continuation
        {
            // The page before ended at `token` (the memory store's tokens
            // are the last entry): list up to it again and take its tail.
            let before = self
                .inner
                .list_page(prefix, delimited, ListFrom::Start, u32::MAX)
                .await?;
            let end = before
                .objects
                .iter()
                .position(|object| object.key == token)
                .map_or(0, |at| at + 1);
            let start = end.saturating_sub(hostility.repeated_entries);
            let mut objects = before.objects[start..end].to_vec();
            objects.append(&mut page.objects);
            if let Some(first) = objects.first().cloned() {
                objects.insert(0, first);
            }
            page.objects = objects;
        }
        page.objects
            .retain(|object| !hostility.dropped_keys.contains(&object.key));
        for extra in &hostility.extra_entries {
            if extra.ends_with('/') {
                page.common_prefixes.push(extra.clone());
            } else {
                page.objects.push(listed(extra));
            }
        }
        if hostility.same_token_forever {
            page.next = Some(continuation.unwrap_or("loop").to_owned());
        }
        if hostility.first_page_forever {
            page.next = Some(format!("fresh-{served}"));
        }
        Ok(page)
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        headers: &ObjectHeaders,
    ) -> Result<String, StoreError> {
        ObjectStore::put(&self.inner, key, body, headers).await
    }

    async fn create_multipart(
        &self,
        key: &str,
        headers: &ObjectHeaders,
    ) -> Result<String, StoreError> {
        self.inner.create_multipart(key, headers).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<String, StoreError> {
        self.inner
            .upload_part(key, upload_id, part_number, body)
            .await
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        source_key: &str,
        source_range: Range<u64>,
        source_etag: Option<&str>,
    ) -> Result<String, StoreError> {
        self.inner
            .upload_part_copy(
                key,
                upload_id,
                part_number,
                source_key,
                source_range,
                source_etag,
            )
            .await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<String, StoreError> {
        self.inner.complete_multipart(key, upload_id, parts).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.inner.abort_multipart(key, upload_id).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        ObjectStore::delete(&self.inner, key).await
    }

    async fn copy(
        &self,
        source_key: &str,
        destination_key: &str,
        source_etag: Option<&str>,
        headers: Option<&ObjectHeaders>,
    ) -> Result<String, StoreError> {
        self.inner
            .copy(source_key, destination_key, source_etag, headers)
            .await
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        max_uploads: u32,
    ) -> Result<bucketfs::store::PendingUploadPage, StoreError> {
        self.inner.list_multipart_uploads(prefix, max_uploads).await
    }
}

/// Warnings logged by any test of this binary.
static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            WARNINGS.lock().unwrap().push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

fn capture_warnings() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Capture).expect("logger");
        log::set_max_level(log::LevelFilter::Warn);
    });
}

fn warned_about(text: &str) -> bool {
    WARNINGS
        .lock()
        .unwrap()
        .iter()
        .any(|line| line.contains(text))
}

fn config() -> FsConfig {
    FsConfig {
        posix_metadata: PosixMetadata::ListingOnly,
        ..fs_config()
    }
}

fn mount(store: &Arc<Hostile>) -> Filesystem<Hostile> {
    capture_warnings();
    Filesystem::new(Arc::clone(store), config(), 16).expect("staging directory")
}

/// Every name in a directory, or the error that ended the listing; bounded
/// in time, so that a looping listing fails the test instead of hanging it.
async fn list(fs: &Filesystem<Hostile>, ino: u64) -> Result<Vec<String>, Error> {
    let listing = async {
        let fh = fs.opendir(ino)?;
        let mut names = Vec::new();
        let mut offset = 0;
        let outcome = loop {
            let entries = match fs.readdirplus(fh, offset).await {
                Ok(entries) => entries,
                Err(error) => break Err(error),
            };
            let Some(last) = entries.last() else {
                break Ok(names);
            };
            offset = last.next_offset;
            for entry in entries {
                if entry.counts_as_lookup {
                    fs.forget(entry.entry.attr.ino, 1);
                }
                if entry.name != "." && entry.name != ".." {
                    names.push(entry.name);
                }
            }
        };
        fs.releasedir(fh);
        outcome
    };
    tokio::time::timeout(Duration::from_secs(30), listing)
        .await
        .expect("the listing ended")
}

async fn directory(fs: &Filesystem<Hostile>, name: &str) -> u64 {
    let entry = fs.lookup(ROOT_INO, name).await.expect("lookup");
    assert_eq!(entry.attr.kind, FileKind::Directory);
    entry.attr.ino
}

#[tokio::test]
async fn keys_outside_the_listed_prefix_are_skipped_with_a_warning() {
    let store = Hostile::new(Hostility {
        // Shorter than the prefix `dir/`, outside it, and a multi-byte
        // character where the prefix would end: each panicked a slice.
        extra_entries: vec![
            "d".into(),
            "zzz-elsewhere".into(),
            "éé".into(),
            "other/".into(),
        ],
        ..Hostility::default()
    });
    store.inner.put("dir/a", "a");
    store.inner.put("dir/b", "b");
    let fs = mount(&store);
    let dir = directory(&fs, "dir").await;
    let names = list(&fs, dir).await.expect("listing");
    assert_eq!(names, ["a", "b"]);
    assert!(
        warned_about("zzz-elsewhere"),
        "{:?}",
        WARNINGS.lock().unwrap()
    );
    // Lookups that miss list the directory whole (`contents.rs`): the same
    // keys must not break that either.
    for missing in ["x", "y", "z"] {
        assert!(matches!(
            fs.lookup(dir, missing).await,
            Err(Error::NotFound)
        ));
    }
    assert!(fs.lookup(dir, "a").await.is_ok());
}

#[tokio::test]
async fn a_page_that_repeats_keys_lists_each_name_once() {
    let store = Hostile::new(Hostility {
        repeated_entries: 10,
        ..Hostility::default()
    });
    let expected: Vec<String> = (0..2500).map(|n| format!("f{n:05}")).collect();
    for name in &expected {
        store.inner.put(&format!("many/{name}"), "x");
    }
    let fs = mount(&store);
    let dir = directory(&fs, "many").await;
    let names = list(&fs, dir).await.expect("listing");
    assert_eq!(names, expected, "each name once, in order");
    assert!(
        warned_about("listed twice"),
        "{:?}",
        WARNINGS.lock().unwrap()
    );
}

#[tokio::test]
async fn a_page_that_drops_a_key_hides_only_that_name_from_the_listing() {
    let store = Hostile::new(Hostility {
        dropped_keys: vec!["drop/b".into()],
        ..Hostility::default()
    });
    for name in ["a", "b", "c"] {
        store.inner.put(&format!("drop/{name}"), name.to_owned());
    }
    let fs = mount(&store);
    let dir = directory(&fs, "drop").await;
    assert_eq!(list(&fs, dir).await.expect("listing"), ["a", "c"]);
    // Named, it is still found: lookups HEAD the key.
    let entry = fs.lookup(dir, "b").await.expect("lookup of a dropped key");
    assert_eq!(entry.attr.size, 1);
}

#[tokio::test]
async fn a_store_that_hands_back_the_same_continuation_token_fails_the_listing() {
    let store = Hostile::new(Hostility {
        same_token_forever: true,
        ..Hostility::default()
    });
    store.inner.put("loop/a", "a");
    let fs = mount(&store);
    let dir = directory(&fs, "loop").await;
    let outcome = list(&fs, dir).await;
    assert!(outcome.is_err(), "a listing that never ends: {outcome:?}");
    assert!(
        warned_about("continuation token"),
        "{:?}",
        WARNINGS.lock().unwrap()
    );
}

#[tokio::test]
async fn a_store_that_lists_the_same_page_forever_fails_the_listing() {
    let store = Hostile::new(Hostility {
        first_page_forever: true,
        ..Hostility::default()
    });
    store.inner.put("again/a", "a");
    let fs = mount(&store);
    let dir = directory(&fs, "again").await;
    let outcome = list(&fs, dir).await;
    assert!(outcome.is_err(), "a listing that never ends: {outcome:?}");
    assert!(
        warned_about("keeps listing keys it already listed"),
        "{:?}",
        WARNINGS.lock().unwrap()
    );
}

#[tokio::test]
async fn keys_longer_than_s3_allows_are_skipped_with_a_warning() {
    let store = Hostile::new(Hostility::default());
    let segment = "s".repeat(250);
    let deep = format!("{segment}/{segment}/{segment}/{segment}/");
    let long_key = format!("{deep}a-name-that-ends-past-1024-bytes");
    assert!(long_key.len() > 1024);
    store.inner.put(&long_key, "x");
    store.inner.put(&format!("{deep}s"), "ok");
    let fs = mount(&store);
    let mut dir = ROOT_INO;
    for _ in 0..4 {
        dir = fs.lookup(dir, &segment).await.expect("lookup").attr.ino;
    }
    assert_eq!(list(&fs, dir).await.expect("listing"), ["s"]);
    assert!(warned_about("1,024"), "{:?}", WARNINGS.lock().unwrap());
}

#[tokio::test]
async fn an_object_whose_size_changes_between_head_and_get_fails_the_read() {
    for shortfall in [40, -40] {
        let store = Hostile::new(Hostility {
            get_shortfall: shortfall,
            ..Hostility::default()
        });
        store.inner.put("sized", vec![7u8; 100]);
        let fs = mount(&store);
        let entry = fs.lookup(ROOT_INO, "sized").await.expect("lookup");
        assert_eq!(entry.attr.size, 100);
        let (fh, _) = fs
            .open(entry.attr.ino, OpenIntent::Read)
            .await
            .expect("open");
        let read = fs.read(fh, 0, 4096).await;
        assert!(
            matches!(read, Err(Error::Store(_))),
            "a GET of {} bytes for a 100-byte object: {read:?}",
            100 - shortfall
        );
        fs.release(fh).await;
    }
}
