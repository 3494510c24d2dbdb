//! What a cached object's POSIX headers cost in memory, measured from the
//! allocator (glibc's own count of bytes in use, chunk overhead included),
//! so that README's figures and `--max-cached-headers`' default stay true.
//! One test in its own binary: no other thread allocates while it counts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bucketfs::cache::meta::{HeaderCache, PosixHeaders};

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
    let listed = Some(SystemTime::now());
    let before = heap_bytes_in_use();
    let cache = HeaderCache::new(entries);
    for i in 0..entries {
        let headers = if with_headers {
            headers(i)
        } else {
            PosixHeaders::default()
        };
        cache.insert(&key(i), &etag(i), headers, listed);
    }
    let used = heap_bytes_in_use() - before;
    assert_eq!(cache.cached_objects(), entries);
    for i in (0..entries).step_by(997) {
        let expected = if with_headers {
            headers(i)
        } else {
            PosixHeaders::default()
        };
        assert_eq!(
            cache.get(&key(i), &etag(i), None),
            Some(expected),
            "entry {i}"
        );
    }
    used as f64 / entries as f64
}

#[test]
fn a_cached_entry_takes_under_128_bytes_plain_and_256_with_headers() {
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
