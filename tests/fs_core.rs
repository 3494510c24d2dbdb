//! The filesystem core driven directly, without FUSE, over the in-memory
//! store: namespace rules, listing, caching and the read path's request
//! pattern, which a mount test can only observe from the outside.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[path = "common/core.rs"]
mod core_fs;

use bucketfs::config::{FsConfig, PosixMetadata, WriteMode};
use bucketfs::fs::{Caller, Error, FileKind, Filesystem, OpenIntent, ROOT_INO, SetAttr};
use bucketfs::store::memory::MemoryStore;
use bucketfs::store::memory::{FailureKind, Verb};
use bytes::Bytes;
use core_fs::{fs_config, read_directory};
use rand::{Rng, SeedableRng};

const MIB: u64 = 1024 * 1024;

fn config(posix_metadata: PosixMetadata) -> FsConfig {
    FsConfig {
        write_mode: WriteMode::ReadOnly,
        posix_metadata,
        max_cache_size_bytes: 256 * MIB,
        ..fs_config()
    }
}

fn mount(store: &Arc<MemoryStore>, posix_metadata: PosixMetadata) -> Filesystem<MemoryStore> {
    Filesystem::new(Arc::clone(store), config(posix_metadata), 16).expect("staging directory")
}

fn random_bytes(len: u64, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut data = vec![0u8; len as usize];
    rng.fill(&mut data[..]);
    data
}

/// Every name in a directory, as `ls -a` would see it, giving back the
/// kernel references the listing took.
async fn list(fs: &Filesystem<MemoryStore>, ino: u64) -> Vec<(String, FileKind)> {
    let mut names = Vec::new();
    for entry in read_directory(fs, ino).await {
        if entry.counts_as_lookup {
            fs.forget(entry.entry.attr.ino, 1);
        }
        names.push((entry.name, entry.entry.attr.kind));
    }
    names
}

#[tokio::test]
async fn lookup_finds_files_and_implicit_directories() {
    let store = Arc::new(MemoryStore::new());
    store.put("a/b/c.txt", vec![1u8; 10]);
    store.put("top", vec![2u8; 3]);
    let fs = mount(&store, PosixMetadata::FromHeaders);

    let a = fs.lookup(ROOT_INO, "a").await.unwrap().attr;
    assert_eq!(a.kind, FileKind::Directory);
    let b = fs.lookup(a.ino, "b").await.unwrap().attr;
    assert_eq!(b.kind, FileKind::Directory);
    let c = fs.lookup(b.ino, "c.txt").await.unwrap().attr;
    assert_eq!(
        (c.kind, c.size, c.perm, c.uid),
        (FileKind::File, 10, 0o644, 1000)
    );
    assert_eq!(fs.lookup(ROOT_INO, "top").await.unwrap().attr.size, 3);
    assert!(matches!(
        fs.lookup(ROOT_INO, "missing").await,
        Err(Error::NotFound)
    ));
}

#[tokio::test]
async fn negative_lookups_are_cached_for_the_ttl() {
    let store = Arc::new(MemoryStore::new());
    let fs = mount(&store, PosixMetadata::FromHeaders);
    assert!(fs.lookup(ROOT_INO, "nope").await.is_err());
    let heads = store.head_count();
    assert!(fs.lookup(ROOT_INO, "nope").await.is_err());
    assert_eq!(
        store.head_count(),
        heads,
        "second miss answered from the cache"
    );
}

#[tokio::test]
async fn a_listing_spanning_pages_is_complete_and_in_order() {
    let store = Arc::new(MemoryStore::new());
    for i in 0..2500 {
        store.put(&format!("big/f{i:05}"), vec![0u8; 1]);
    }
    let fs = mount(&store, PosixMetadata::ListingOnly);
    let big = fs.lookup(ROOT_INO, "big").await.unwrap().attr.ino;
    let names = list(&fs, big).await;
    assert_eq!(names.len(), 2502, ". and .. plus every object");
    let files: Vec<&str> = names[2..].iter().map(|(n, _)| n.as_str()).collect();
    let mut sorted = files.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(files, sorted, "sorted and without duplicates");
    assert_eq!(
        store.list_count(),
        1 + 3,
        "one lookup listing, then three pages"
    );
}

#[tokio::test]
async fn a_directory_shadows_a_file_even_across_a_page_boundary() {
    let store = Arc::new(MemoryStore::new());
    // "a", then 1000 keys "a!NNN" that sort between "a" and "a/": the prefix
    // "a/" arrives on the second page, after "a" was listed on the first.
    store.put("a", vec![0u8; 1]);
    for i in 0..1000 {
        store.put(&format!("a!{i:03}"), vec![0u8; 1]);
    }
    store.put("a/x", vec![0u8; 1]);
    let fs = mount(&store, PosixMetadata::ListingOnly);
    let names = list(&fs, ROOT_INO).await;
    let a: Vec<_> = names.iter().filter(|(n, _)| n == "a").collect();
    assert_eq!(a, vec![&("a".to_owned(), FileKind::Directory)]);
    assert_eq!(names.len(), 2 + 1 + 1000);
    assert_eq!(
        fs.lookup(ROOT_INO, "a").await.unwrap().attr.kind,
        FileKind::Directory
    );
}

#[tokio::test]
async fn keys_that_cannot_be_names_are_skipped() {
    let store = Arc::new(MemoryStore::new());
    store.put("ok", vec![0u8; 1]);
    store.put("bad/../x", vec![0u8; 1]);
    store.put("dbl//y", vec![0u8; 1]);
    store.put("dot/./z", vec![0u8; 1]);
    store.put(&format!("long/{}", "n".repeat(256)), vec![0u8; 1]);
    let fs = mount(&store, PosixMetadata::ListingOnly);
    for dir in ["bad", "dbl", "dot", "long"] {
        let ino = fs.lookup(ROOT_INO, dir).await.unwrap().attr.ino;
        let names = list(&fs, ino).await;
        assert_eq!(
            names.len(),
            2,
            "{dir} shows nothing but . and ..: {names:?}"
        );
    }
    assert!(fs.lookup(ROOT_INO, "..").await.is_err());
}

#[tokio::test]
async fn a_marker_object_makes_an_empty_directory() {
    let store = Arc::new(MemoryStore::new());
    store.put("empty/", Vec::<u8>::new());
    let fs = mount(&store, PosixMetadata::FromHeaders);
    let names = list(&fs, ROOT_INO).await;
    assert!(names.contains(&("empty".to_owned(), FileKind::Directory)));
    let empty = fs.lookup(ROOT_INO, "empty").await.unwrap().attr;
    assert_eq!(empty.kind, FileKind::Directory);
    assert_eq!(list(&fs, empty.ino).await.len(), 2);
}

#[tokio::test]
async fn posix_headers_are_read_once_per_etag() {
    let store = Arc::new(MemoryStore::new());
    let headers: HashMap<String, String> = [
        ("mode", "33184"),
        ("uid", "7"),
        ("gid", "8"),
        ("mtime", "1600000000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for i in 0..3 {
        store.put_with_metadata(&format!("f{i}"), vec![0u8; 4], headers.clone());
    }
    // No TTL: every pass lists again (within a TTL the whole listing is
    // kept, see walk_core.rs), and only the headers are cached, by ETag.
    let no_ttl = FsConfig {
        metadata_ttl: Duration::ZERO,
        ..config(PosixMetadata::FromHeaders)
    };
    let fs = Filesystem::new(Arc::clone(&store), no_ttl, 16).expect("staging directory");
    list(&fs, ROOT_INO).await;
    list(&fs, ROOT_INO).await;
    assert_eq!(
        store.head_count(),
        3,
        "one HEAD per object, however often listed"
    );
    let attr = fs.lookup(ROOT_INO, "f0").await.unwrap().attr;
    assert_eq!((attr.perm, attr.uid, attr.gid), (0o640, 7, 8));
    assert_eq!(bucketfs::fs::epoch_seconds(attr.mtime), 1_600_000_000);

    // A changed object is read again, the others are not.
    store.put_with_metadata("f0", vec![1u8; 4], headers);
    let heads = store.head_count();
    list(&fs, ROOT_INO).await;
    assert_eq!(
        store.head_count(),
        heads + 1,
        "only the object with a new ETag"
    );
}

/// `count` objects `{prefix}f00000`... carrying s3fs headers.
fn put_with_headers(store: &MemoryStore, prefix: &str, count: usize) {
    let headers: HashMap<String, String> = [("mode", "33184"), ("uid", "7")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for i in 0..count {
        store.put_with_metadata(&format!("{prefix}f{i:05}"), vec![0u8; 1], headers.clone());
    }
}

#[tokio::test]
async fn a_listing_of_three_pages_sends_one_head_per_object() {
    let store = Arc::new(MemoryStore::new());
    put_with_headers(&store, "d/", 2500);
    store.set_latency(Verb::Head, Duration::from_millis(1));
    let fs = mount(&store, PosixMetadata::FromHeaders);
    let d = fs.lookup(ROOT_INO, "d").await.unwrap().attr.ino;
    let (heads, lists) = (store.head_count(), store.list_count());
    let names = list(&fs, d).await;
    assert_eq!(names.len(), 2 + 2500);
    assert_eq!(store.head_count() - heads, 2500);
    assert_eq!(store.list_count() - lists, 3);
    let attr = fs.lookup(d, "f02499").await.unwrap().attr;
    assert_eq!(
        (attr.perm, attr.uid),
        (0o640, 7),
        "headers of the last page"
    );
}

#[tokio::test]
async fn concurrent_listings_and_lookups_share_their_heads() {
    let store = Arc::new(MemoryStore::new());
    put_with_headers(&store, "", 1200);
    store.set_latency(Verb::Head, Duration::from_millis(2));
    let fs = mount(&store, PosixMetadata::FromHeaders);
    let (first, second, looked_up) =
        tokio::join!(list(&fs, ROOT_INO), list(&fs, ROOT_INO), async {
            // Sent before either listing reaches the name, which then
            // joins this HEAD or finds its headers cached.
            let entry = fs.lookup(ROOT_INO, "f01100").await.unwrap();
            fs.forget(entry.attr.ino, 1);
        },);
    let () = looked_up;
    assert_eq!((first.len(), second.len()), (1202, 1202));
    assert_eq!(store.head_count(), 1200, "one HEAD per object in all");
}

#[tokio::test]
async fn the_lister_stays_a_few_pages_ahead_of_the_reader() {
    let store = Arc::new(MemoryStore::new());
    for i in 0..8000 {
        store.put(&format!("d/f{i:05}"), vec![0u8; 1]);
    }
    let fs = mount(&store, PosixMetadata::ListingOnly);
    let d = fs.lookup(ROOT_INO, "d").await.unwrap().attr.ino;
    let lists = store.list_count();
    let fh = fs.opendir(d).unwrap();
    let entries = fs.readdirplus(fh, 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        store.list_count() - lists,
        5,
        "the page read, the next two resolved, and two more listed"
    );
    for entry in entries.iter().filter(|e| e.counts_as_lookup) {
        fs.forget(entry.entry.attr.ino, 1);
    }
    fs.releasedir(fh);
}

#[tokio::test]
async fn not_found_is_trusted_for_the_negative_ttl_alone() {
    let store = Arc::new(MemoryStore::new());
    store.put("present", vec![1u8; 1]);
    let fs = Filesystem::new(
        Arc::clone(&store),
        FsConfig {
            metadata_ttl: Duration::from_secs(600),
            negative_metadata_ttl: Duration::ZERO,
            ..config(PosixMetadata::ListingOnly)
        },
        16,
    )
    .unwrap();
    assert!(fs.lookup(ROOT_INO, "later").await.is_err());
    store.put("later", vec![2u8; 1]);
    // Another client created it: with no negative TTL the next lookup asks.
    let found = fs.lookup(ROOT_INO, "later").await.unwrap();
    assert_eq!(found.attr.size, 1);

    let fs = Filesystem::new(
        Arc::clone(&store),
        FsConfig {
            metadata_ttl: Duration::ZERO,
            negative_metadata_ttl: Duration::from_secs(600),
            ..config(PosixMetadata::ListingOnly)
        },
        16,
    )
    .unwrap();
    assert!(fs.lookup(ROOT_INO, "missing").await.is_err());
    store.put("missing", vec![3u8; 1]);
    let requests = store.head_count() + store.list_count();
    assert!(
        fs.lookup(ROOT_INO, "missing").await.is_err(),
        "still trusted"
    );
    assert_eq!(store.head_count() + store.list_count(), requests);
}

#[tokio::test]
async fn a_directory_being_listed_is_not_listed_again_by_its_lookup() {
    let store = Arc::new(MemoryStore::new());
    for i in 0..2500 {
        store.put(&format!("d/f{i:05}"), vec![0u8; 1]);
    }
    let ttl = Duration::from_millis(200);
    let fs = Filesystem::new(
        Arc::clone(&store),
        FsConfig {
            metadata_ttl: ttl,
            negative_metadata_ttl: ttl,
            ..config(PosixMetadata::ListingOnly)
        },
        16,
    )
    .unwrap();
    let d = fs.lookup(ROOT_INO, "d").await.unwrap().attr.ino;
    tokio::time::sleep(ttl).await;
    // Each later page takes longer than the TTL to list.
    store.set_latency(Verb::List, ttl * 2);
    let fh = fs.opendir(d).unwrap();
    let mut offset = 0;
    let mut lookup_lists = 0;
    loop {
        let entries = fs.readdirplus(fh, offset).await.unwrap();
        let Some(last) = entries.last() else { break };
        offset = last.next_offset;
        for entry in entries.iter().filter(|e| e.counts_as_lookup) {
            fs.forget(entry.entry.attr.ino, 1);
        }
        // What the kernel does on an `lstat` path walk once the entry of
        // `d` has expired.
        let lists = store.list_count();
        let entry = fs.lookup(ROOT_INO, "d").await.unwrap();
        fs.forget(entry.attr.ino, 1);
        lookup_lists += store.list_count() - lists;
    }
    fs.releasedir(fh);
    assert_eq!(lookup_lists, 0, "the listing confirmed d");

    // Once the TTL after the listing has passed, d is checked again.
    tokio::time::sleep(ttl * 2).await;
    store.set_latency(Verb::List, Duration::ZERO);
    let lists = store.list_count();
    fs.lookup(ROOT_INO, "d").await.unwrap();
    assert_eq!(store.list_count() - lists, 1);
}

#[tokio::test]
async fn without_posix_metadata_a_listing_costs_no_head() {
    let store = Arc::new(MemoryStore::new());
    let headers: HashMap<String, String> = [("mode", "33184"), ("uid", "7")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for i in 0..50 {
        store.put_with_metadata(&format!("f{i}"), vec![0u8; 4], headers.clone());
    }
    let fs = mount(&store, PosixMetadata::ListingOnly);
    assert_eq!(list(&fs, ROOT_INO).await.len(), 52);
    assert_eq!(store.head_count(), 0);
    let attr = fs.lookup(ROOT_INO, "f1").await.unwrap().attr;
    assert_eq!(
        (attr.perm, attr.uid),
        (0o644, 1000),
        "mount options, not headers"
    );
}

#[tokio::test]
async fn listing_and_forgetting_leaves_only_the_root() {
    let store = Arc::new(MemoryStore::new());
    for i in 0..300 {
        store.put(&format!("d/f{i}"), vec![0u8; 1]);
    }
    let fs = mount(&store, PosixMetadata::ListingOnly);
    let d = fs.lookup(ROOT_INO, "d").await.unwrap().attr.ino;
    list(&fs, d).await;
    assert_eq!(
        fs.inode_count(),
        2,
        "root and d, which the test still holds"
    );
    fs.forget(d, 1);
    assert_eq!(fs.inode_count(), 1);
}

#[tokio::test]
async fn reads_at_random_offsets_return_the_right_bytes() {
    let store = Arc::new(MemoryStore::new());
    let data = random_bytes(5 * MIB + 123, 1);
    store.put("obj", data.clone());
    let fs = mount(&store, PosixMetadata::FromHeaders);
    let ino = fs.lookup(ROOT_INO, "obj").await.unwrap().attr.ino;
    let (fh, _) = fs.open(ino, OpenIntent::Read).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    for _ in 0..300 {
        let offset = rng.random_range(0..data.len() as u64 + 10);
        let size = rng.random_range(0..3 * MIB as u32);
        let got = fs.read(fh, offset, size).await.unwrap();
        let start = (offset as usize).min(data.len());
        let end = (offset as usize + size as usize).min(data.len());
        assert_eq!(&got[..], &data[start..end], "offset {offset} size {size}");
    }
    fs.release(fh).await;
}

#[tokio::test]
async fn a_small_read_of_a_large_object_fetches_one_block() {
    let store = Arc::new(MemoryStore::new());
    store.put("huge", random_bytes(64 * MIB, 3));
    let fs = mount(&store, PosixMetadata::FromHeaders);
    let ino = fs.lookup(ROOT_INO, "huge").await.unwrap().attr.ino;
    let (fh, _) = fs.open(ino, OpenIntent::Read).await.unwrap();
    assert_eq!(fs.read(fh, 0, 100).await.unwrap().len(), 100);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        store.get_count(),
        1,
        "no prefetch before the reader streams"
    );
}

/// Reads the four 128 KiB quarters of a 512 KiB file at once, as the kernel
/// reads a new file: its first read and the readahead beside it, arriving in
/// any order. Each answer is paired with the quarter's offset.
async fn read_quarters_at_once(
    fs: &Arc<Filesystem<MemoryStore>>,
    fh: u64,
) -> Vec<(u64, Result<Bytes, Error>)> {
    let reads = (0..4u64).map(|n| {
        let fs = Arc::clone(fs);
        let offset = n * 128 * 1024;
        tokio::spawn(async move { (offset, fs.read(fh, offset, 128 * 1024).await) })
    });
    futures::future::join_all(reads)
        .await
        .into_iter()
        .map(|read| read.unwrap())
        .collect()
}

#[tokio::test]
async fn concurrent_first_reads_of_a_file_under_a_block_share_one_get() {
    let store = Arc::new(MemoryStore::new());
    let data = random_bytes(512 * 1024, 9);
    store.put("half", data.clone());
    let fs = Arc::new(mount(&store, PosixMetadata::FromHeaders));
    let ino = fs.lookup(ROOT_INO, "half").await.unwrap().attr.ino;
    let (fh, _) = fs.open(ino, OpenIntent::Read).await.unwrap();
    let gets = store.get_count();
    for (offset, got) in read_quarters_at_once(&fs, fh).await {
        let start = offset as usize;
        assert_eq!(&got.unwrap()[..], &data[start..start + 128 * 1024]);
    }
    assert_eq!(store.get_count() - gets, 1, "one GET for the whole file");
    fs.release(fh).await;
}

#[tokio::test]
async fn a_failed_shared_get_of_a_file_under_a_block_fails_every_read_and_is_sent_again() {
    let store = Arc::new(MemoryStore::new());
    let data = random_bytes(512 * 1024, 10);
    store.put("half", data.clone());
    let fs = Arc::new(mount(&store, PosixMetadata::FromHeaders));
    let ino = fs.lookup(ROOT_INO, "half").await.unwrap().attr.ino;
    let (fh, _) = fs.open(ino, OpenIntent::Read).await.unwrap();
    let gets = store.get_count();
    store.fail_next(Verb::Get, FailureKind::Other, 1);
    for (offset, got) in read_quarters_at_once(&fs, fh).await {
        assert!(got.is_err(), "read at {offset} shares the failed GET");
    }
    assert_eq!(store.get_count() - gets, 1, "one GET, failed, for all four");
    // The failure is not kept: the next reads fetch the file again.
    for (offset, got) in read_quarters_at_once(&fs, fh).await {
        let start = offset as usize;
        assert_eq!(&got.unwrap()[..], &data[start..start + 128 * 1024]);
    }
    assert_eq!(
        store.get_count() - gets,
        2,
        "one more GET after the failure"
    );
    fs.release(fh).await;
}

#[tokio::test]
async fn isolated_reads_fetch_only_the_bytes_around_them() {
    let store = Arc::new(MemoryStore::new());
    let data = random_bytes(64 * MIB, 7);
    store.put("table", data.clone());
    let fs = mount(&store, PosixMetadata::FromHeaders);
    let ino = fs.lookup(ROOT_INO, "table").await.unwrap().attr.ino;
    let (fh, _) = fs.open(ino, OpenIntent::Read).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let reads = 200;
    let mut previous = 0u64;
    for _ in 0..reads {
        // Far from the previous read, so that no pair looks like a stream.
        let offset = loop {
            let offset = rng.random_range(0..data.len() as u64 / 4096) * 4096;
            if offset.abs_diff(previous) > 4 * MIB {
                break offset;
            }
        };
        previous = offset;
        let got = fs.read(fh, offset, 4096).await.unwrap();
        assert_eq!(&got[..], &data[offset as usize..offset as usize + 4096]);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A 1 MiB block per read would be 200 MiB.
    let fetched = store.bytes_got();
    assert!(
        fetched <= reads * 64 * 1024,
        "{fetched} bytes fetched for {reads} reads of 4 KiB"
    );
    fs.release(fh).await;
}

#[tokio::test]
async fn a_streaming_reader_prefetches_in_growing_requests() {
    let store = Arc::new(MemoryStore::new());
    let data = random_bytes(64 * MIB, 4);
    store.put("stream", data.clone());
    let fs = mount(&store, PosixMetadata::FromHeaders);
    let ino = fs.lookup(ROOT_INO, "stream").await.unwrap().attr.ino;
    let (fh, _) = fs.open(ino, OpenIntent::Read).await.unwrap();
    let mut offset = 0u64;
    while offset < data.len() as u64 {
        let got = fs.read(fh, offset, MIB as u32).await.unwrap();
        assert_eq!(&got[..], &data[offset as usize..(offset + MIB) as usize]);
        offset += MIB;
    }
    let gets = store.get_count();
    // One request per block would be 64; parts of up to 8 MiB need far fewer.
    assert!(gets < 24, "{gets} GETs for 64 MiB read sequentially");
}

#[tokio::test]
async fn an_open_handle_never_mixes_versions() {
    let store = Arc::new(MemoryStore::new());
    store.put("obj", random_bytes(40 * MIB, 5));
    let fs = mount(&store, PosixMetadata::FromHeaders);
    let ino = fs.lookup(ROOT_INO, "obj").await.unwrap().attr.ino;
    let (fh, _) = fs.open(ino, OpenIntent::Read).await.unwrap();
    fs.read(fh, 0, 100).await.unwrap();
    store.put("obj", random_bytes(40 * MIB, 6));
    match fs.read(fh, 30 * MIB, 100).await {
        Err(Error::Stale { key }) => assert_eq!(key, "obj"),
        other => panic!("expected Stale, got {:?}", other.map(|b| b.len())),
    }
}

#[tokio::test]
async fn a_read_only_mount_refuses_writes() {
    let store = Arc::new(MemoryStore::new());
    store.put("f", vec![0u8; 1]);
    let fs = mount(&store, PosixMetadata::FromHeaders);
    let ino = fs.lookup(ROOT_INO, "f").await.unwrap().attr.ino;
    let write = OpenIntent::Write {
        truncate: false,
        drops_setid: false,
    };
    assert!(matches!(fs.open(ino, write).await, Err(Error::ReadOnly)));
    let caller = Caller { uid: 0, gid: 0 };
    assert!(matches!(
        fs.create(ROOT_INO, "g", 0o644, caller).await,
        Err(Error::ReadOnly)
    ));
    assert!(matches!(
        fs.mkdir(ROOT_INO, "d", 0o755, caller).await,
        Err(Error::ReadOnly)
    ));
    assert!(matches!(
        fs.unlink(ROOT_INO, "f").await,
        Err(Error::ReadOnly)
    ));
}

fn writable(store: &Arc<MemoryStore>) -> Filesystem<MemoryStore> {
    let mut config = config(PosixMetadata::FromHeaders);
    config.write_mode = WriteMode::ReadWrite;
    Filesystem::new(Arc::clone(store), config, 16).expect("staging directory")
}

const CALLER: Caller = Caller {
    uid: 1234,
    gid: 4321,
};

#[tokio::test]
async fn a_created_file_is_uploaded_at_flush_with_s3fs_headers() {
    let store = Arc::new(MemoryStore::new());
    let fs = writable(&store);
    let (entry, fh) = fs.create(ROOT_INO, "new.txt", 0o640, CALLER).await.unwrap();
    fs.write(fh, 0, Bytes::from_static(b"hello "))
        .await
        .unwrap();
    fs.write(fh, 6, Bytes::from_static(b"world")).await.unwrap();
    assert!(
        store.get("new.txt").is_none(),
        "nothing in the bucket before the commit"
    );
    assert_eq!(
        &fs.read(fh, 0, 100).await.unwrap()[..],
        b"hello world",
        "read-after-write"
    );
    assert_eq!(fs.getattr(entry.attr.ino).await.unwrap().attr.size, 11);
    fs.flush(fh).await.unwrap();
    let (data, metadata) = store.get("new.txt").expect("uploaded at flush");
    assert_eq!(&data[..], b"hello world");
    assert_eq!(metadata.get("mode").map(String::as_str), Some("33184"));
    assert_eq!(metadata.get("uid").map(String::as_str), Some("1234"));
    assert_eq!(metadata.get("gid").map(String::as_str), Some("4321"));
    assert!(metadata.contains_key("mtime"));
    fs.release(fh).await;
}

#[tokio::test]
async fn a_failed_upload_fails_flush_and_a_retry_succeeds() {
    let store = Arc::new(MemoryStore::new());
    let fs = writable(&store);
    let (_, fh) = fs.create(ROOT_INO, "f", 0o644, CALLER).await.unwrap();
    fs.write(fh, 0, Bytes::from_static(b"data")).await.unwrap();
    store.fail_next(Verb::Put, FailureKind::Other, 1);
    assert!(matches!(
        fs.flush(fh).await,
        Err(Error::Upload(_) | Error::Store(_))
    ));
    assert!(store.get("f").is_none());
    fs.flush(fh).await.expect("the staged data is still there");
    assert_eq!(&store.get("f").unwrap().0[..], b"data");
    fs.release(fh).await;
}

#[tokio::test]
async fn a_large_file_is_uploaded_in_parts_and_failed_parts_abort_the_upload() {
    let store = Arc::new(MemoryStore::new());
    let fs = writable(&store);
    let data = random_bytes(20 * MIB + 5, 7);
    let (_, fh) = fs.create(ROOT_INO, "big", 0o644, CALLER).await.unwrap();
    // Written back to front, so nothing streams: the whole file goes at flush.
    for (index, chunk) in data.chunks(MIB as usize).enumerate().rev() {
        fs.write(fh, index as u64 * MIB, Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    assert_eq!(store.request_count(Verb::UploadPart), 0);
    store.fail_next(Verb::UploadPart, FailureKind::Other, 1);
    assert!(fs.flush(fh).await.is_err());
    assert_eq!(store.pending_uploads(), 0, "the failed upload was aborted");
    fs.flush(fh).await.unwrap();
    assert_eq!(store.get("big").unwrap().0, data);
    assert_eq!(store.request_count(Verb::CompleteMultipart), 1);
    fs.release(fh).await;
}

#[tokio::test]
async fn truncate_shrinks_and_grows_with_zeros() {
    let store = Arc::new(MemoryStore::new());
    store.put("t", b"0123456789".to_vec());
    let fs = writable(&store);
    let ino = fs.lookup(ROOT_INO, "t").await.unwrap().attr.ino;
    fs.setattr(
        ino,
        SetAttr {
            size: Some(4),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(&store.get("t").unwrap().0[..], b"0123");
    fs.setattr(
        ino,
        SetAttr {
            size: Some(8),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(&store.get("t").unwrap().0[..], b"0123\0\0\0\0");
}

#[tokio::test]
async fn rename_moves_files_and_directories() {
    let store = Arc::new(MemoryStore::new());
    store.put("a.txt", b"a".to_vec());
    store.put("c.txt", b"c".to_vec());
    for i in 0..30 {
        store.put(&format!("dir/sub/f{i}"), vec![i as u8]);
    }
    let fs = writable(&store);
    fs.rename(ROOT_INO, "a.txt", ROOT_INO, "b.txt", false)
        .await
        .unwrap();
    assert!(store.get("a.txt").is_none());
    assert_eq!(&store.get("b.txt").unwrap().0[..], b"a");
    fs.rename(ROOT_INO, "dir", ROOT_INO, "moved", false)
        .await
        .unwrap();
    for i in 0..30 {
        assert!(
            store.get(&format!("dir/sub/f{i}")).is_none(),
            "dir/sub/f{i} left behind"
        );
        assert_eq!(
            store.get(&format!("moved/sub/f{i}")).unwrap().0[..],
            [i as u8]
        );
    }
    assert!(matches!(
        fs.rename(ROOT_INO, "c.txt", ROOT_INO, "b.txt", true).await,
        Err(Error::Exists)
    ));
}

#[tokio::test]
async fn rmdir_refuses_a_non_empty_directory() {
    let store = Arc::new(MemoryStore::new());
    store.put("full/x", b"x".to_vec());
    let fs = writable(&store);
    assert!(matches!(
        fs.rmdir(ROOT_INO, "full").await,
        Err(Error::NotEmpty)
    ));
    let dir = fs.mkdir(ROOT_INO, "empty", 0o755, CALLER).await.unwrap();
    assert_eq!(dir.attr.kind, FileKind::Directory);
    assert!(store.get("empty/").is_some(), "mkdir writes a marker");
    fs.rmdir(ROOT_INO, "empty").await.unwrap();
    assert!(store.get("empty/").is_none());
}

#[tokio::test]
async fn a_directory_takes_its_attributes_from_its_marker() {
    let store = Arc::new(MemoryStore::new());
    let headers: HashMap<String, String> = [
        ("mode".to_owned(), (libc::S_IFDIR | 0o700).to_string()),
        ("uid".to_owned(), "1234".to_owned()),
    ]
    .into();
    store.put_with_metadata("marked/", Vec::<u8>::new(), headers);
    store.put("marked/inside", vec![1u8]);
    store.put("implicit/inside", vec![1u8]);
    let fs = mount(&store, PosixMetadata::FromHeaders);

    // Through a listing of the parent: one HEAD per directory.
    let fh = fs.opendir(ROOT_INO).expect("opendir");
    let entries = fs.readdirplus(fh, 0).await.expect("readdirplus");
    let attr_of = |name: &str| {
        entries
            .iter()
            .find(|entry| entry.name == name)
            .map(|entry| entry.entry.attr)
            .unwrap()
    };
    assert_eq!(
        (attr_of("marked").perm, attr_of("marked").uid),
        (0o700, 1234)
    );
    assert_eq!(
        (attr_of("implicit").perm, attr_of("implicit").uid),
        (0o755, 1000)
    );
    for entry in &entries {
        if entry.counts_as_lookup {
            fs.forget(entry.entry.attr.ino, 1);
        }
    }
    fs.releasedir(fh);

    // Through a lookup: the probe listing shows the marker first.
    let fresh = mount(&store, PosixMetadata::FromHeaders);
    let marked = fresh.lookup(ROOT_INO, "marked").await.unwrap().attr;
    assert_eq!(
        (marked.kind, marked.perm, marked.uid),
        (FileKind::Directory, 0o700, 1234)
    );
    let implicit = fresh.lookup(ROOT_INO, "implicit").await.unwrap().attr;
    assert_eq!(implicit.perm, 0o755);

    // Without POSIX metadata, no marker is read.
    let plain = mount(&store, PosixMetadata::ListingOnly);
    let heads = store.head_count();
    assert_eq!(
        plain.lookup(ROOT_INO, "marked").await.unwrap().attr.perm,
        0o755
    );
    assert_eq!(
        store.head_count() - heads,
        1,
        "only the HEAD of a file named `marked`"
    );
}

/// `cp -r` into a new directory: every file name is looked up (and missed)
/// before it is created; the directory's contents are known, so those
/// lookups cost no request, and after the TTL one listing answers them again.
#[tokio::test]
async fn new_names_in_a_directory_being_filled_cost_no_lookup_requests() {
    let store = Arc::new(MemoryStore::new());
    let mut config = config(PosixMetadata::FromHeaders);
    config.write_mode = WriteMode::ReadWrite;
    config.metadata_ttl = Duration::from_millis(300);
    let fs = Filesystem::new(Arc::clone(&store), config, 16).expect("staging directory");
    assert!(fs.lookup(ROOT_INO, "out").await.is_err());
    let dir = fs
        .mkdir(ROOT_INO, "out", 0o755, CALLER)
        .await
        .unwrap()
        .attr
        .ino;
    let (heads, lists) = (store.head_count(), store.list_count());
    let create = |name: String| {
        let fs = &fs;
        async move {
            assert!(matches!(fs.lookup(dir, &name).await, Err(Error::NotFound)));
            let (_, fh) = fs.create(dir, &name, 0o644, CALLER).await.unwrap();
            fs.write(fh, 0, Bytes::from(name.clone())).await.unwrap();
            fs.flush(fh).await.unwrap();
            fs.release(fh).await;
        }
    };
    for index in 0..20 {
        create(format!("f{index:02}")).await;
    }
    assert_eq!(store.head_count(), heads, "no HEAD for a new name");
    assert_eq!(store.list_count(), lists, "no listing while fresh");

    // Another host adds a file; it shows once the snapshot has aged out.
    store.put("out/theirs", b"x".to_vec());
    assert!(matches!(
        fs.lookup(dir, "theirs").await,
        Err(Error::NotFound)
    ));
    // A slow writer: names keep missing while the snapshot ages.
    for index in 0..4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let name = format!("missing{index}");
        assert!(matches!(fs.lookup(dir, &name).await, Err(Error::NotFound)));
    }
    for index in 20..40 {
        create(format!("f{index:02}")).await;
    }
    assert_eq!(store.head_count(), heads, "still no HEAD for a new name");
    assert_eq!(
        store.list_count(),
        lists + 1,
        "one listing answers them all"
    );
    assert!(fs.lookup(dir, "theirs").await.is_ok(), "seen after the TTL");

    // The mount's own files are never hidden by a snapshot, also after the
    // kernel forgot them and the directory was listed again.
    let f05 = fs.lookup(dir, "f05").await.unwrap().attr.ino;
    fs.forget(f05, 2);
    tokio::time::sleep(Duration::from_millis(350)).await;
    // Idle for a TTL: the first miss asks the store, the second lists.
    assert!(fs.lookup(dir, "nope").await.is_err());
    let lists = store.list_count();
    assert!(fs.lookup(dir, "nope2").await.is_err());
    assert_eq!(store.list_count(), lists + 1);
    assert_eq!(fs.lookup(dir, "f05").await.unwrap().attr.size, 3);
    fs.unlink(dir, "f06").await.unwrap();
    assert!(matches!(fs.lookup(dir, "f06").await, Err(Error::NotFound)));
}
