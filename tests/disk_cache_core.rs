//! The disk cache under the filesystem core, over the in-memory store: what
//! it saves in requests, and that a damaged block file is never served.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/core.rs"]
mod core_fs;

use bucketfs::cache::block::BlockKey;
use bucketfs::cache::disk::DiskCache;
use bucketfs::config::{FsConfig, WriteMode};
use bucketfs::fs::{Filesystem, OpenIntent, ROOT_INO};
use bucketfs::store::memory::{FailureKind, MemoryStore, Verb};
use core_fs::{fs_config, read_directory};
use rand::{Rng, SeedableRng};

const MIB: u64 = 1024 * 1024;
/// What the kernel asks for at a time.
const READ_BYTES: u32 = 128 * 1024;
const KEY: &str = "data/object";
/// Five whole blocks and a short sixth.
const OBJECT_BYTES: u64 = 5 * MIB + 12_345;

fn config() -> FsConfig {
    FsConfig {
        write_mode: WriteMode::ReadOnly,
        ..fs_config()
    }
}

fn random_bytes(len: u64, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut data = vec![0u8; len as usize];
    rng.fill(&mut data[..]);
    data
}

fn open_cache(dir: &Path, max_bytes: u64) -> Arc<DiskCache> {
    Arc::new(DiskCache::open(dir, "bucket", max_bytes).expect("open the disk cache"))
}

/// A cache that lets only 2 MiB wait on their way to disk: a writer slower
/// than any read-ahead fetch.
fn open_slow_cache(dir: &Path) -> Arc<DiskCache> {
    Arc::new(
        DiskCache::open(dir, "bucket", 1 << 30)
            .expect("open the disk cache")
            .with_max_pending_writes(2 * MIB as u32),
    )
}

/// Waits until nothing is on its way to `disk`.
async fn wait_for_disk_writes(disk: &DiskCache) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while disk.is_writing() {
        assert!(Instant::now() < deadline, "disk writes never finished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The blocks of `KEY` at `etag`, of `count`, that the disk does not hold.
fn blocks_not_kept(disk: &DiskCache, etag: &str, count: u64) -> Vec<u64> {
    (0..count)
        .filter(|&index| !disk.contains(&block(etag, index)))
        .collect()
}

/// A fresh mount (empty memory cache) over `store` with `disk` under it.
fn mount(store: &Arc<MemoryStore>, disk: &Arc<DiskCache>) -> Filesystem<MemoryStore> {
    Filesystem::new(Arc::clone(store), config(), 16)
        .expect("staging directory")
        .with_disk_cache(Arc::clone(disk))
}

/// Reads the whole file as `cat` would, then waits until the blocks it
/// fetched are on disk.
async fn read_all(fs: &Filesystem<MemoryStore>, disk: &DiskCache, name: &str) -> Vec<u8> {
    let (dir, file) = name.split_once('/').unwrap();
    let dir = fs.lookup(ROOT_INO, dir).await.unwrap().attr.ino;
    let ino = fs.lookup(dir, file).await.unwrap().attr.ino;
    let (fh, _) = fs.open(ino, OpenIntent::Read).await.unwrap();
    let mut out = Vec::new();
    loop {
        let bytes = fs.read(fh, out.len() as u64, READ_BYTES).await.unwrap();
        if bytes.is_empty() {
            break;
        }
        out.extend_from_slice(&bytes);
    }
    fs.release(fh).await;
    // A fetch hands its blocks to the writer before it answers, so once the
    // writes in flight are done, every block it read is on disk.
    wait_for_disk_writes(disk).await;
    out
}

fn block(etag: &str, index: u64) -> BlockKey {
    BlockKey {
        key: Arc::from(KEY),
        etag: Arc::from(etag),
        index,
    }
}

/// The object read once through a mount with a disk cache in `dir`, and
/// everything let go of: what is left is the directory.
async fn populated(dir: &Path) -> (Arc<MemoryStore>, String, Vec<u8>) {
    let store = Arc::new(MemoryStore::new());
    let data = random_bytes(OBJECT_BYTES, 7);
    let etag = store.put(KEY, data.clone());
    let disk = open_cache(dir, 1 << 30);
    let fs = mount(&store, &disk);
    assert!(read_all(&fs, &disk, KEY).await == data, "the right bytes");
    for index in 0..6 {
        assert!(disk.contains(&block(&etag, index)), "block {index} on disk");
    }
    (store, etag, data)
}

#[tokio::test]
async fn a_file_read_again_by_a_new_mount_comes_from_disk_without_a_get() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, data) = populated(dir.path()).await;
    let (gets, bytes_got) = (store.get_count(), store.bytes_got());

    let disk = open_cache(dir.path(), 1 << 30);
    let fs = mount(&store, &disk);
    assert!(read_all(&fs, &disk, KEY).await == data, "the right bytes");
    assert_eq!(
        store.get_count(),
        gets,
        "no GET: every block came from disk"
    );
    assert_eq!(store.bytes_got(), bytes_got);
}

/// Damages block 2's file with `damage`, reads the file through a new
/// mount, and checks that only block 2 was fetched again and its file
/// rewritten whole.
async fn damaged_block_is_refetched(damage: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let (store, etag, data) = populated(dir.path()).await;
    let disk = open_cache(dir.path(), 1 << 30);
    let damaged = disk.path_of(&block(&etag, 2));
    damage(&damaged);
    let (gets, bytes_got) = (store.get_count(), store.bytes_got());

    let fs = mount(&store, &disk);
    assert!(read_all(&fs, &disk, KEY).await == data, "the right bytes");
    assert_eq!(
        store.get_count(),
        gets + 1,
        "one GET, for the damaged block"
    );
    assert_eq!(store.bytes_got(), bytes_got + MIB);
    let again = disk.get(&block(&etag, 2)).expect("block 2 rewritten");
    assert!(again[..] == data[2 * MIB as usize..3 * MIB as usize]);
}

#[tokio::test]
async fn a_flipped_byte_in_a_block_file_is_caught_and_the_block_fetched_again() {
    damaged_block_is_refetched(|path| {
        let mut contents = std::fs::read(path).unwrap();
        let middle = contents.len() / 2;
        contents[middle] ^= 0x01;
        std::fs::write(path, contents).unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_truncated_block_file_is_caught_and_the_block_fetched_again() {
    damaged_block_is_refetched(|path| {
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len / 2).unwrap();
    })
    .await;
}

#[tokio::test]
async fn eviction_keeps_the_directory_under_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let data = random_bytes(8 * MIB, 9);
    store.put(KEY, data.clone());
    // Room for three block files (1 MiB and a header each), not four.
    let bound = 3 * MIB + 1024;
    let disk = open_cache(dir.path(), bound);
    let fs = mount(&store, &disk);
    assert!(read_all(&fs, &disk, KEY).await == data, "the right bytes");

    let files: Vec<u64> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".blk"))
        .map(|entry| entry.metadata().unwrap().len())
        .collect();
    let on_disk: u64 = files.iter().sum();
    assert!(on_disk <= bound, "{on_disk} bytes on disk, bound {bound}");
    // Beside the data blocks the cache may hold the file's headers (a
    // small file, written when its HEAD came back, before or after the
    // blocks that pushed older ones out).
    let data_blocks = files.iter().filter(|&&len| len >= MIB).count();
    assert_eq!(data_blocks, 3, "the bound is used, not emptied: {files:?}");
    assert_eq!(
        disk.stored_bytes(),
        on_disk,
        "the index agrees with the disk"
    );
}

/// A reader over a store faster than the disk must not read past what the
/// cache keeps: the first read leaves every block on disk. Here the writes
/// allowed in flight are 2 MiB, less than one 8 MiB read-ahead fetch, so the
/// reader is always ahead of the writer; before fetches waited for room,
/// every block past the bound was dropped (with the default 64 MiB, on a
/// busy host a third of a 1 GiB read was).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_read_faster_than_the_disk_keeps_every_block() {
    const BIG_BYTES: u64 = 64 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let data = random_bytes(BIG_BYTES, 11);
    let etag = store.put(KEY, data.clone());
    let disk = open_slow_cache(dir.path());
    let fs = mount(&store, &disk);
    assert!(read_all(&fs, &disk, KEY).await == data, "the right bytes");
    let missing = blocks_not_kept(&disk, &etag, BIG_BYTES / MIB);
    assert!(
        missing.is_empty(),
        "{} of {} blocks not kept, first {:?}",
        missing.len(),
        BIG_BYTES / MIB,
        missing.first()
    );
}

/// The kernel reads a small file and reads ahead in it at once: both reads
/// must share one GET (a cold `tar c` of small files sent 1.1 to 1.3 GETs a
/// file when each fetched it), and with them the one block kept on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_reads_of_a_small_file_share_one_get() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let disk = open_cache(dir.path(), 1 << 30);
    let fs = mount(&store, &disk);
    let data = random_bytes(40_000, 13);
    for round in 0..20 {
        let key = format!("data/small-{round}");
        store.put(&key, data.clone());
        let dir_ino = fs.lookup(ROOT_INO, "data").await.unwrap().attr.ino;
        let ino = fs
            .lookup(dir_ino, &format!("small-{round}"))
            .await
            .unwrap()
            .attr
            .ino;
        let (fh, _) = fs.open(ino, OpenIntent::Read).await.unwrap();
        let gets = store.get_count();
        let (first, ahead) = tokio::join!(fs.read(fh, 0, 16_384), fs.read(fh, 0, READ_BYTES));
        assert!(first.unwrap()[..] == data[..16_384]);
        assert!(ahead.unwrap()[..] == data[..]);
        assert_eq!(
            store.get_count() - gets,
            1,
            "round {round}: one GET for both reads"
        );
        fs.release(fh).await;
    }
}

/// A fetch takes room on the way to disk before its GET; a GET that fails
/// must give that room back. With 2 MiB of room and a dozen failed GETs, a
/// leak would leave every later fetch waiting for room that never comes and
/// its blocks unkept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_gets_give_back_their_room_on_the_way_to_disk() {
    const BIG_BYTES: u64 = 16 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let data = random_bytes(BIG_BYTES, 17);
    let etag = store.put(KEY, data.clone());
    let disk = open_slow_cache(dir.path());
    let fs = mount(&store, &disk);
    let dir_ino = fs.lookup(ROOT_INO, "data").await.unwrap().attr.ino;
    let ino = fs.lookup(dir_ino, "object").await.unwrap().attr.ino;
    let (fh, _) = fs.open(ino, OpenIntent::Read).await.unwrap();
    // Every read fails while the failures last, the sequential reads
    // (with their read-ahead) as well as the first.
    let failures = 12;
    store.fail_next(Verb::Get, FailureKind::Other, failures);
    let mut failed_reads = 0;
    let mut out = Vec::new();
    while (out.len() as u64) < BIG_BYTES {
        match fs.read(fh, out.len() as u64, READ_BYTES).await {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(_) => {
                failed_reads += 1;
                assert!(failed_reads <= failures, "reads kept failing");
            }
        }
    }
    fs.release(fh).await;
    assert!(failed_reads > 0, "no read saw a failure");
    assert!(out == data, "the right bytes");
    wait_for_disk_writes(&disk).await;
    let missing = blocks_not_kept(&disk, &etag, BIG_BYTES / MIB);
    assert!(
        missing.is_empty(),
        "blocks {missing:?} not kept after {failed_reads} failed reads"
    );
}

/// Every entry of `dir` as one listing (readdirplus) shows it: name to
/// permission bits.
async fn listed_modes(fs: &Filesystem<MemoryStore>, dir: &str) -> Vec<(String, u16)> {
    let ino = fs.lookup(ROOT_INO, dir).await.unwrap().attr.ino;
    let mut modes = Vec::new();
    for entry in read_directory(fs, ino).await {
        if entry.counts_as_lookup {
            modes.push((entry.name.clone(), entry.entry.attr.perm));
            fs.forget(entry.entry.attr.ino, 1);
        }
    }
    modes.sort();
    modes
}

/// `listed_modes`, and the HEADs the listing cost.
async fn listed_modes_and_heads(
    fs: &Filesystem<MemoryStore>,
    store: &MemoryStore,
    dir: &str,
) -> (Vec<(String, u16)>, u64) {
    let heads = store.request_count(Verb::Head);
    let modes = listed_modes(fs, dir).await;
    (modes, store.request_count(Verb::Head) - heads)
}

/// A file read through a mount with a disk cache leaves its POSIX headers
/// there beside its blocks: a new mount lists its directory without a HEAD
/// for it (one for a file never read), and a version replaced since is
/// HEADed again, never shown with the old headers.
#[tokio::test]
async fn headers_of_files_read_come_from_disk_after_a_remount() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let headers = |mode: &str| {
        [
            ("mode".to_owned(), mode.to_owned()),
            ("uid".to_owned(), "7".to_owned()),
        ]
        .into_iter()
        .collect::<std::collections::HashMap<_, _>>()
    };
    let read_etag = store.put_with_metadata("data/read", b"read me".to_vec(), headers("33152")); // 0600
    store.put_with_metadata("data/unread", b"not me".to_vec(), headers("33184")); // 0640
    let unchanged = [("read".to_owned(), 0o600), ("unread".to_owned(), 0o640)];
    let disk = open_cache(dir.path(), 1 << 30);
    let fs = mount(&store, &disk);
    // Besides one per file, the lookup of data/ costs its own.
    let (modes, cold_heads) = listed_modes_and_heads(&fs, &store, "data").await;
    assert_eq!(modes, unchanged);
    assert_eq!(read_all(&fs, &disk, "data/read").await, b"read me");
    drop(fs);

    let fs = mount(&store, &disk);
    let (modes, heads) = listed_modes_and_heads(&fs, &store, "data").await;
    assert_eq!(modes, unchanged);
    assert_eq!(heads, cold_heads - 1, "no HEAD for the file read");
    drop(fs);

    // A damaged headers file is never served: the file is HEADed again.
    let kept = disk.path_of(&bucketfs::cache::disk::headers_block(
        "data/read",
        &read_etag,
    ));
    let mut contents = std::fs::read(&kept).unwrap();
    let last = contents.len() - 5;
    contents[last] ^= 0x01;
    std::fs::write(&kept, contents).unwrap();
    let fs = mount(&store, &disk);
    let (modes, heads) = listed_modes_and_heads(&fs, &store, "data").await;
    assert_eq!(modes, unchanged);
    assert_eq!(
        heads, cold_heads,
        "a HEAD for the file whose kept headers are damaged"
    );
    drop(fs);

    // Another client replaces the file read: its kept headers are not its.
    store.put_with_metadata("data/read", b"new bytes".to_vec(), headers("33261")); // 0755
    let fs = mount(&store, &disk);
    assert_eq!(
        listed_modes(&fs, "data").await,
        [("read".to_owned(), 0o755), ("unread".to_owned(), 0o640)]
    );
}
