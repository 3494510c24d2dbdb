//! Reads of many small files through the filesystem core over the in-memory
//! store: read-ahead across a directory's files (`cp -r`, `tar c`) and a
//! block cache that holds small files by what they weigh.

use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/core.rs"]
mod core_fs;

use bucketfs::config::{FsConfig, WriteMode};
use bucketfs::fs::{Filesystem, OpenIntent, ROOT_INO};
use bucketfs::store::memory::{FailureKind, MemoryStore, Verb};
use core_fs::{filesystem, fs_config, read_directory};

const MIB: u64 = 1024 * 1024;
const FILE_BYTES: usize = 8 * 1024;

fn config(max_cache_size_bytes: u64) -> FsConfig {
    FsConfig {
        write_mode: WriteMode::ReadOnly,
        max_cache_size_bytes,
        ..fs_config()
    }
}

fn contents(n: usize) -> Vec<u8> {
    (0..FILE_BYTES).map(|i| (i * 7 + n * 13) as u8).collect()
}

/// `count` files of `FILE_BYTES` in `d/`, and a subdirectory among them.
fn put_directory(store: &MemoryStore, count: usize) {
    for n in 0..count {
        store.put(&format!("d/file-{n:04}"), contents(n));
    }
    store.put("d/file-0005-sub/inner", b"x".to_vec());
}

/// The files of `d/` in listing order, as (number, inode): the kernel keeps
/// the references readdirplus gives it, as it does while a tool walks.
async fn listed_files(fs: &Filesystem<MemoryStore>) -> Vec<(usize, u64)> {
    let dir = fs.lookup(ROOT_INO, "d").await.unwrap().attr.ino;
    read_directory(fs, dir)
        .await
        .into_iter()
        .filter_map(|entry| {
            let n = entry.name.strip_prefix("file-")?.parse().ok()?;
            Some((n, entry.entry.attr.ino))
        })
        .collect()
}

/// Opens, reads whole and closes one file, as `cp` does; checks its bytes.
async fn read_whole(fs: &Filesystem<MemoryStore>, (n, ino): (usize, u64)) {
    let (fh, _) = fs.open(ino, OpenIntent::Read).await.unwrap();
    let got = fs.read(fh, 0, 128 * 1024).await.unwrap();
    assert_eq!(&got[..], &contents(n)[..], "file {n}");
    fs.release(fh).await;
}

async fn wait_for_gets(store: &MemoryStore, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.get_count() < at_least && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    store.get_count()
}

#[tokio::test]
async fn files_read_in_listing_order_are_fetched_ahead_once_each() {
    let store = Arc::new(MemoryStore::new());
    put_directory(&store, 40);
    let fs = filesystem(&store, config(64 * MIB));
    let files = listed_files(&fs).await;
    assert_eq!(files.len(), 40);

    read_whole(&fs, files[0]).await;
    read_whole(&fs, files[1]).await;
    // The second file in order starts the files after it, before any read.
    let gets = wait_for_gets(&store, 3).await;
    assert!(gets > 2, "nothing fetched ahead: {gets} GETs");

    for &file in &files[2..] {
        read_whole(&fs, file).await;
    }
    assert_eq!(store.get_count(), 40, "one GET per file, none twice");
}

#[tokio::test]
async fn a_failed_read_ahead_leaves_nothing_behind_and_its_files_are_fetched_again() {
    let store = Arc::new(MemoryStore::new());
    put_directory(&store, 40);
    let fs = filesystem(&store, config(64 * MIB));
    let files = listed_files(&fs).await;

    read_whole(&fs, files[0]).await;
    // The second open in order reads 4 files ahead; every one of those GETs
    // fails, and nobody is waiting for them.
    store.fail_next(Verb::Get, FailureKind::Other, 4);
    let (fh, _) = fs.open(files[1].1, OpenIntent::Read).await.unwrap();
    assert_eq!(wait_for_gets(&store, 5).await, 5, "4 GETs read ahead");
    fs.release(fh).await;

    // Their failures were not kept: each file read now comes back whole,
    // fetched once more.
    for &file in &files[1..] {
        read_whole(&fs, file).await;
    }
    assert_eq!(
        store.get_count(),
        40 + 4,
        "the 4 failed files fetched again"
    );
}

#[tokio::test]
async fn files_read_out_of_listing_order_are_not_fetched_ahead() {
    let store = Arc::new(MemoryStore::new());
    put_directory(&store, 40);
    let fs = filesystem(&store, config(64 * MIB));
    let files = listed_files(&fs).await;

    // Backwards, then jumps larger than a skipped subdirectory or two.
    for &file in files[30..].iter().rev() {
        read_whole(&fs, file).await;
    }
    for &file in files.iter().step_by(6).take(5) {
        read_whole(&fs, file).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        store.get_count(),
        15,
        "one GET per file read, nothing ahead"
    );
}

#[tokio::test]
async fn a_tree_of_small_files_read_twice_is_fetched_once() {
    // 300 files of 8 KiB in a cache of 64 MiB: counted as whole blocks
    // (1 MiB each) they did not fit, and the second pass fetched them all
    // again.
    let store = Arc::new(MemoryStore::new());
    put_directory(&store, 300);
    let fs = filesystem(&store, config(64 * MIB));
    let files = listed_files(&fs).await;
    // Out of order, so that nothing is read ahead: only the cache is tested.
    let mut order: Vec<_> = files.iter().copied().rev().collect();
    order.swap(0, 150);
    for &file in &order {
        read_whole(&fs, file).await;
    }
    assert_eq!(store.get_count(), 300);
    for &file in &order {
        read_whole(&fs, file).await;
    }
    assert_eq!(store.get_count(), 300, "the second pass came from memory");
}
