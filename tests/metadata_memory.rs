//! What metadata costs in memory, measured from the allocator (glibc's own
//! count of bytes in use, chunk overhead included), so that README's figures
//! and the defaults of `--max-cached-headers` and `--max-inodes` stay true.
//! The tests take a lock so that no other test allocates while one counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[path = "common/core.rs"]
mod core_fs;

use bucketfs::cache::meta::{HeaderCache, PosixHeaders};
use bucketfs::config::FsConfig;
use bucketfs::fs::{FileKind, ROOT_INO};
use bucketfs::store::memory::MemoryStore;

static COUNTING: Mutex<()> = Mutex::new(());

fn heap_bytes_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let info = unsafe { libc::mallinfo2() };
    info.uordblks + info.hblkhd
}

fn key(i: usize) -> String {
    format!("tree/d{:03}/f{i:07}", i % 1000)
}

fn etag(i: usize) -> String {
    format!(
        "\"{:032x}\"",
        (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
    )
}

fn headers(i: usize) -> PosixHeaders {
    let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i as u64);
    PosixHeaders::created(0o100_644, 1000, 1000, at)
}

/// Bytes per entry of a cache filled with `entries` objects.
fn bytes_per_entry(entries: usize, with_headers: bool) -> f64 {
    let headers_of = |i| {
        if with_headers {
            headers(i)
        } else {
            PosixHeaders::default()
        }
    };
    let listed = Some(SystemTime::now());
    let before = heap_bytes_in_use();
    let cache = HeaderCache::new(entries);
    for i in 0..entries {
        cache.insert(&key(i), &etag(i), headers_of(i), listed);
    }
    let used = heap_bytes_in_use() - before;
    assert_eq!(cache.cached_objects(), entries);
    for i in (0..entries).step_by(997) {
        assert_eq!(
            cache.get(&key(i), &etag(i), None),
            Some(headers_of(i)),
            "entry {i}"
        );
    }
    used as f64 / entries as f64
}

#[test]
fn a_cached_entry_takes_under_128_bytes_plain_and_256_with_headers() {
    let _counting = COUNTING.lock().unwrap();
    const ENTRIES: usize = 200_000;
    let plain = bytes_per_entry(ENTRIES, false);
    let headed = bytes_per_entry(ENTRIES, true);
    println!(
        "header cache, {ENTRIES} entries: {plain:.0} bytes each without headers, {headed:.0} with"
    );
    assert!(plain <= 128.0, "{plain:.0} bytes an entry without headers");
    assert!(headed <= 256.0, "{headed:.0} bytes an entry with headers");

    // Bounded: past its capacity the least recently used go.
    let cache = HeaderCache::new(1000);
    for i in 0..5000 {
        cache.insert(&key(i), &etag(i), headers(i), None);
    }
    assert_eq!(cache.cached_objects(), 1000);
    assert_eq!(cache.get(&key(0), &etag(0), None), None);
    assert_eq!(
        cache.get(&key(4999), &etag(4999), None),
        Some(headers(4999))
    );
    assert_eq!(
        cache.get(&key(4999), &etag(4998), None),
        None,
        "another version"
    );
}

/// A walk over the core, as the kernel does it: every directory listed with
/// readdirplus, every entry kept by the kernel, then all of them forgotten.
/// Returns bytes per key: what the caches still hold after the forgets
/// (listings kept for the TTL, headers by ETag), and what the forgets gave
/// back (the inode table's share while the kernel holds the entries).
fn walk_then_forget(max_cached_headers: usize) -> (f64, f64) {
    // In 1,000 directories (see `key`), as bench/walk.sh's trees; under
    // the 100,000 entries the kept listings hold at most.
    const KEYS: usize = 50_000;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(MemoryStore::new());
    for i in 0..KEYS {
        let seconds = (1_700_000_000 + i).to_string();
        let metadata: HashMap<String, String> = [
            ("mode", "33188"),
            ("uid", "1000"),
            ("gid", "1000"),
            ("mtime", seconds.as_str()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        store.put_with_metadata(&key(i), Vec::new(), metadata);
    }
    let config = FsConfig {
        max_cached_headers,
        ..core_fs::fs_config()
    };
    let fs = core_fs::filesystem(&store, config);
    runtime.block_on(async {
        let tree = fs.lookup(ROOT_INO, "tree").await.unwrap().attr.ino;
        let before = heap_bytes_in_use();
        let mut held = Vec::new();
        let mut files = 0;
        for entry in core_fs::read_directory(&fs, tree).await {
            if entry.counts_as_lookup {
                held.push(entry.entry.attr.ino);
            }
            if entry.entry.attr.kind != FileKind::Directory {
                continue;
            }
            for file in core_fs::read_directory(&fs, entry.entry.attr.ino).await {
                if file.counts_as_lookup {
                    held.push(file.entry.attr.ino);
                }
                if file.entry.attr.kind == FileKind::File {
                    assert_eq!(file.entry.attr.perm, 0o644, "headers read");
                    files += 1;
                }
            }
        }
        assert_eq!(files, KEYS);
        held.shrink_to_fit();
        let held_bytes = held.capacity() * size_of::<u64>();
        let walked = heap_bytes_in_use() - before - held_bytes;
        for ino in held.drain(..) {
            fs.forget(ino, 1);
        }
        drop(held);
        let kept = heap_bytes_in_use() - before;
        let per_key = |bytes: usize| bytes as f64 / KEYS as f64;
        (per_key(kept), per_key(walked - kept))
    })
}

#[test]
fn a_walked_key_costs_under_512_bytes_in_each_cache_and_its_inode_goes_on_forget() {
    let _counting = COUNTING.lock().unwrap();
    let (listings, inodes) = walk_then_forget(1);
    let (listings_and_headers, _) = walk_then_forget(1_000_000);
    let headers = listings_and_headers - listings;
    println!(
        "walk with POSIX headers, bytes a key: {listings:.0} in kept listings, {headers:.0} in the header cache, {inodes:.0} in the inode table while the kernel holds the entry"
    );
    assert!(
        listings <= 512.0,
        "{listings:.0} bytes a key in kept listings"
    );
    assert!(
        headers <= 256.0,
        "{headers:.0} bytes a key in the header cache"
    );
    assert!(
        inodes <= 512.0,
        "{inodes:.0} bytes a key in the inode table"
    );
    assert!(
        inodes >= 100.0,
        "forgets gave back only {inodes:.0} bytes a key"
    );
}
