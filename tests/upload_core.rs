//! How writes reach the store, driven through the filesystem core over the
//! in-memory store, where request counts and failures can be controlled: a
//! file written sequentially from empty streams its parts while it is
//! written; a changed large file copies its unchanged parts server side; an
//! object too large for one CopyObject is copied part by part.

use std::sync::Arc;
use std::time::Duration;

use bucketfs::config::{FsConfig, OwnerConfig, PosixMetadata, WriteMode};
use bucketfs::fs::{Caller, Error, Filesystem, OpenIntent, ROOT_INO, SetAttr};
use bucketfs::store::memory::{FailureKind, MemoryStore, Verb};
use bytes::Bytes;
use rand::{Rng, SeedableRng};

const MIB: u64 = 1024 * 1024;
const PART: u64 = 8 * MIB;
const CALLER: Caller = Caller {
    uid: 1234,
    gid: 4321,
};

fn mount(
    store: &Arc<MemoryStore>,
    retain_bytes: u64,
    write_buffer_bytes: u64,
) -> Filesystem<MemoryStore> {
    let limit = bucketfs::config::MAX_SINGLE_COPY_BYTES;
    mount_with_copy_limit(store, retain_bytes, write_buffer_bytes, limit)
}

fn mount_with_copy_limit(
    store: &Arc<MemoryStore>,
    retain_bytes: u64,
    write_buffer_bytes: u64,
    max_single_copy_bytes: u64,
) -> Filesystem<MemoryStore> {
    let config = FsConfig {
        prefix: String::new(),
        owner: OwnerConfig {
            uid: 1000,
            gid: 1000,
            file_mode: 0o644,
            dir_mode: 0o755,
        },
        write_mode: WriteMode::ReadWrite,
        posix_metadata: PosixMetadata::FromHeaders,
        xattrs: true,
        metadata_ttl: Duration::from_secs(60),
        max_cache_size_bytes: 64 * MIB,
        read_part_size_bytes: 8 * MIB,
        write_part_size_bytes: PART,
        max_write_buffer_bytes: write_buffer_bytes,
        stream_retain_bytes: retain_bytes,
        max_single_copy_bytes,
        cache_dir: None,
    };
    Filesystem::new(Arc::clone(store), config, 4).expect("staging directory")
}

fn random_bytes(len: u64, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut data = vec![0u8; len as usize];
    rng.fill(&mut data[..]);
    data
}

/// Writes `data` from `start` on in 1 MiB calls, as `cp` would.
async fn write_all(fs: &Filesystem<MemoryStore>, fh: u64, start: u64, data: &[u8]) {
    for (index, chunk) in data.chunks(MIB as usize).enumerate() {
        fs.write(
            fh,
            start + index as u64 * MIB,
            Bytes::copy_from_slice(chunk),
        )
        .await
        .unwrap();
    }
}

/// Abandoned uploads are aborted in the background; waits for that.
async fn until_no_pending_uploads(store: &MemoryStore) {
    for _ in 0..200 {
        if store.pending_uploads() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} multipart uploads left behind", store.pending_uploads());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_are_uploaded_while_the_file_is_written() {
    let store = Arc::new(MemoryStore::new());
    let fs = mount(&store, 64 * MIB, 64 * MIB);
    let data = random_bytes(3 * PART + 12345, 1);
    let (_, fh) = fs.create(ROOT_INO, "big", 0o640, CALLER).await.unwrap();
    write_all(&fs, fh, 0, &data).await;
    assert_eq!(store.request_count(Verb::CreateMultipart), 1);
    assert!(store.get("big").is_none(), "no partial object is visible");
    assert_eq!(
        &fs.read(fh, 5, 100).await.unwrap()[..],
        &data[5..105],
        "read-after-write before close"
    );
    fs.flush(fh).await.unwrap();
    assert_eq!(
        store.request_count(Verb::UploadPart),
        4,
        "three full parts and the tail"
    );
    assert_eq!(store.request_count(Verb::Put), 0);
    let (object, metadata) = store.get("big").expect("complete at flush");
    assert_eq!(object, data);
    assert_eq!(metadata.get("mode").map(String::as_str), Some("33184"));
    assert_eq!(metadata.get("uid").map(String::as_str), Some("1234"));
    assert!(
        !metadata.contains_key("mtime"),
        "Last-Modified stands for the mtime of a streamed object"
    );
    fs.release(fh).await;
    assert_eq!(store.pending_uploads(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_file_is_one_put() {
    let store = Arc::new(MemoryStore::new());
    let fs = mount(&store, 64 * MIB, 64 * MIB);
    let (_, fh) = fs.create(ROOT_INO, "small", 0o644, CALLER).await.unwrap();
    write_all(&fs, fh, 0, &random_bytes(PART - 1, 2)).await;
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    assert_eq!(store.request_count(Verb::CreateMultipart), 0);
    assert_eq!(store.request_count(Verb::Put), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_part_is_retried_at_flush_from_the_staged_bytes() {
    let store = Arc::new(MemoryStore::new());
    let fs = mount(&store, 64 * MIB, 64 * MIB);
    let data = random_bytes(2 * PART + 7, 3);
    store.fail_next(Verb::UploadPart, FailureKind::Other, 1);
    let (_, fh) = fs.create(ROOT_INO, "f", 0o644, CALLER).await.unwrap();
    write_all(&fs, fh, 0, &data).await;
    fs.flush(fh).await.unwrap();
    assert_eq!(store.get("f").unwrap().0, data);
    fs.release(fh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_fails_flush_and_a_retry_completes_without_orphans() {
    let store = Arc::new(MemoryStore::new());
    let fs = mount(&store, 64 * MIB, 64 * MIB);
    let data = random_bytes(2 * PART + 7, 4);
    let (_, fh) = fs.create(ROOT_INO, "f", 0o644, CALLER).await.unwrap();
    write_all(&fs, fh, 0, &data).await;
    store.fail_next(Verb::UploadPart, FailureKind::Timeout, 100);
    store.fail_next(Verb::CompleteMultipart, FailureKind::Timeout, 100);
    assert!(fs.flush(fh).await.is_err());
    assert!(store.get("f").is_none());
    store.clear_failures();
    fs.flush(fh).await.expect("retried once the store is back");
    assert_eq!(store.get("f").unwrap().0, data);
    fs.release(fh).await;
    assert_eq!(store.pending_uploads(), 0);

    // The last close of a file that never uploads aborts its parts.
    let (_, fh) = fs.create(ROOT_INO, "g", 0o644, CALLER).await.unwrap();
    write_all(&fs, fh, 0, &data).await;
    store.fail_next(Verb::UploadPart, FailureKind::Timeout, 100);
    store.fail_next(Verb::CompleteMultipart, FailureKind::Timeout, 100);
    assert!(fs.flush(fh).await.is_err());
    fs.release(fh).await;
    store.clear_failures();
    until_no_pending_uploads(&store).await;
    assert!(store.get("g").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_behind_the_parts_falls_back_to_uploading_at_close() {
    let store = Arc::new(MemoryStore::new());
    let fs = mount(&store, 64 * MIB, 64 * MIB);
    let mut data = random_bytes(3 * PART, 5);
    let (_, fh) = fs.create(ROOT_INO, "f", 0o644, CALLER).await.unwrap();
    write_all(&fs, fh, 0, &data).await;
    assert_eq!(store.request_count(Verb::CreateMultipart), 1);
    fs.write(fh, 10, Bytes::from_static(b"patched"))
        .await
        .unwrap();
    data[10..17].copy_from_slice(b"patched");
    until_no_pending_uploads(&store).await;
    fs.flush(fh).await.unwrap();
    assert_eq!(store.get("f").unwrap().0, data);
    fs.release(fh).await;
    assert_eq!(store.pending_uploads(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_bytes_leave_staging_and_come_back_after_close() {
    let store = Arc::new(MemoryStore::new());
    let fs = mount(&store, PART, 64 * MIB);
    let data = random_bytes(5 * PART + 99, 6);
    let (_, fh) = fs.create(ROOT_INO, "f", 0o644, CALLER).await.unwrap();
    write_all(&fs, fh, 0, &data).await;
    // Parts finish in the background; a later write lets the stream notice.
    let mut refused = false;
    for _ in 0..200 {
        if matches!(fs.read(fh, 0, 10).await, Err(Error::AlreadyUploaded)) {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        fs.write(fh, data.len() as u64, Bytes::new()).await.unwrap();
    }
    assert!(refused, "the first part should have left the staging file");
    assert!(matches!(
        fs.write(fh, 0, Bytes::from_static(b"x")).await,
        Err(Error::AlreadyUploaded)
    ));
    let tail = data.len() as u64 - 100;
    assert_eq!(
        &fs.read(fh, tail, 100).await.unwrap()[..],
        &data[tail as usize..],
        "the recent end stays readable"
    );
    fs.flush(fh).await.unwrap();
    assert_eq!(store.get("f").unwrap().0, data);
    // After the commit, the dropped bytes come back from the object.
    assert_eq!(&fs.read(fh, 0, 10).await.unwrap()[..], &data[..10]);
    fs.write(fh, 0, Bytes::from_static(b"new")).await.unwrap();
    fs.flush(fh).await.unwrap();
    let mut expected = data.clone();
    expected[..3].copy_from_slice(b"new");
    assert_eq!(store.get("f").unwrap().0, expected);
    fs.release(fh).await;
    assert_eq!(store.pending_uploads(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_buffer_of_one_part_still_finishes() {
    let store = Arc::new(MemoryStore::new());
    let fs = mount(&store, PART, PART);
    let data = random_bytes(4 * PART + 1, 7);
    let (_, first) = fs.create(ROOT_INO, "a", 0o644, CALLER).await.unwrap();
    let (_, second) = fs.create(ROOT_INO, "b", 0o644, CALLER).await.unwrap();
    let (a, b) = tokio::join!(
        write_all(&fs, first, 0, &data),
        write_all(&fs, second, 0, &data)
    );
    let ((), ()) = (a, b);
    fs.flush(first).await.unwrap();
    fs.flush(second).await.unwrap();
    assert_eq!(store.get("a").unwrap().0, data);
    assert_eq!(store.get("b").unwrap().0, data);
    fs.release(first).await;
    fs.release(second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chmod_while_streaming_reaches_the_object() {
    let store = Arc::new(MemoryStore::new());
    let fs = mount(&store, 64 * MIB, 64 * MIB);
    let data = random_bytes(2 * PART + 1, 8);
    let (entry, fh) = fs.create(ROOT_INO, "f", 0o644, CALLER).await.unwrap();
    write_all(&fs, fh, 0, &data).await;
    fs.setattr(
        entry.attr.ino,
        SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    fs.flush(fh).await.unwrap();
    let (object, metadata) = store.get("f").unwrap();
    assert_eq!(object, data);
    assert_eq!(metadata.get("mode").map(String::as_str), Some("33152"));
    fs.release(fh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_before_close_of_a_streamed_file_lands_under_the_new_name() {
    let store = Arc::new(MemoryStore::new());
    let fs = mount(&store, PART, 64 * MIB);
    let data = random_bytes(4 * PART + 3, 9);
    let (_, fh) = fs.create(ROOT_INO, "old", 0o644, CALLER).await.unwrap();
    write_all(&fs, fh, 0, &data).await;
    fs.rename(ROOT_INO, "old", ROOT_INO, "new", false)
        .await
        .unwrap();
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    until_no_pending_uploads(&store).await;
    assert!(store.get("old").is_none());
    assert_eq!(store.get("new").unwrap().0, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appending_to_a_large_object_copies_its_unchanged_parts() {
    let store = Arc::new(MemoryStore::new());
    let mut data = random_bytes(3 * PART + 5, 10);
    store.put("log", data.clone());
    let fs = mount(&store, 64 * MIB, 64 * MIB);
    let ino = fs.lookup(ROOT_INO, "log").await.unwrap().attr.ino;
    let (fh, _) = fs
        .open(
            ino,
            OpenIntent::Write {
                truncate: false,
                drops_setid: false,
            },
        )
        .await
        .unwrap();
    fs.write(fh, data.len() as u64, Bytes::from_static(b"appended"))
        .await
        .unwrap();
    data.extend_from_slice(b"appended");
    fs.flush(fh).await.unwrap();
    assert_eq!(store.get("log").unwrap().0, data);
    assert_eq!(store.request_count(Verb::UploadPartCopy), 3);
    assert_eq!(
        store.request_count(Verb::UploadPart),
        1,
        "only the changed part"
    );

    // The next commit copies from the object the last one made.
    fs.write(fh, data.len() as u64, Bytes::from_static(b" again"))
        .await
        .unwrap();
    data.extend_from_slice(b" again");
    store.fail_next(Verb::UploadPartCopy, FailureKind::Other, 1);
    fs.flush(fh).await.unwrap();
    assert_eq!(
        store.get("log").unwrap().0,
        data,
        "a failed copy is uploaded instead"
    );
    assert_eq!(store.request_count(Verb::UploadPartCopy), 6);
    assert_eq!(store.request_count(Verb::UploadPart), 3);
    fs.release(fh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_in_the_middle_uploads_only_that_part() {
    let store = Arc::new(MemoryStore::new());
    let mut data = random_bytes(4 * PART, 11);
    store.put("f", data.clone());
    let fs = mount(&store, 64 * MIB, 64 * MIB);
    let ino = fs.lookup(ROOT_INO, "f").await.unwrap().attr.ino;
    let (fh, _) = fs
        .open(
            ino,
            OpenIntent::Write {
                truncate: false,
                drops_setid: false,
            },
        )
        .await
        .unwrap();
    let offset = 2 * PART + 100;
    fs.write(fh, offset, Bytes::from_static(b"XY"))
        .await
        .unwrap();
    data[offset as usize..offset as usize + 2].copy_from_slice(b"XY");
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    assert_eq!(store.get("f").unwrap().0, data);
    assert_eq!(store.request_count(Verb::UploadPartCopy), 3);
    assert_eq!(store.request_count(Verb::UploadPart), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_over_the_copy_limit_are_renamed_and_chmodded_part_by_part() {
    let store = Arc::new(MemoryStore::new());
    let data = random_bytes(3 * PART + 1, 12);
    store.put_with_metadata(
        "big",
        data.clone(),
        [("mode".to_owned(), "33188".to_owned())].into(),
    );
    let fs = mount_with_copy_limit(&store, 64 * MIB, 64 * MIB, PART);
    fs.rename(ROOT_INO, "big", ROOT_INO, "moved", false)
        .await
        .unwrap();
    assert!(store.get("big").is_none());
    let (moved, metadata) = store.get("moved").unwrap();
    assert_eq!(moved, data);
    assert_eq!(metadata.get("mode").map(String::as_str), Some("33188"));
    assert_eq!(store.request_count(Verb::Copy), 0);
    assert!(store.request_count(Verb::UploadPartCopy) >= 1);

    let ino = fs.lookup(ROOT_INO, "moved").await.unwrap().attr.ino;
    fs.setattr(
        ino,
        SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    let (chmodded, metadata) = store.get("moved").unwrap();
    assert_eq!(chmodded, data);
    assert_eq!(metadata.get("mode").map(String::as_str), Some("33152"));
    assert_eq!(store.request_count(Verb::Copy), 0);
    assert_eq!(store.pending_uploads(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_before_the_first_write_keeps_the_file_streaming() {
    // `dd of=f` and shell redirects close a duplicate descriptor first.
    let store = Arc::new(MemoryStore::new());
    let fs = mount(&store, 64 * MIB, 64 * MIB);
    let data = random_bytes(3 * PART, 13);
    let (_, fh) = fs.create(ROOT_INO, "f", 0o644, CALLER).await.unwrap();
    fs.flush(fh).await.unwrap();
    write_all(&fs, fh, 0, &data).await;
    assert_eq!(store.request_count(Verb::CreateMultipart), 1);
    fs.flush(fh).await.unwrap();
    assert_eq!(store.get("f").unwrap().0, data);
    fs.release(fh).await;
}

/// Writes that straddle part boundaries, and a rewrite of bytes not cut into
/// a part yet, stream and give the object exactly what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_parts_hold_exactly_the_written_bytes() {
    let store = Arc::new(MemoryStore::new());
    let fs = mount(&store, 64 * MIB, 64 * MIB);
    // 1 MiB writes end on part boundaries; 3 MiB + 1 byte writes never do.
    for (step, name) in [(MIB as usize, "aligned"), (3 * MIB as usize + 1, "odd")] {
        let mut data = random_bytes(3 * PART + 777, step as u64);
        let (_, fh) = fs.create(ROOT_INO, name, 0o640, CALLER).await.unwrap();
        let rewrite_at = PART as usize + 6 * MIB as usize + 2; // part 2, not cut yet
        let mut offset = 0;
        while offset < data.len() {
            let end = (offset + step).min(data.len());
            fs.write(
                fh,
                offset as u64,
                Bytes::copy_from_slice(&data[offset..end]),
            )
            .await
            .unwrap();
            offset = end;
            if offset > rewrite_at && offset <= rewrite_at + step {
                let patch = random_bytes(1000, 3);
                data[rewrite_at - 1000..rewrite_at].copy_from_slice(&patch);
                fs.write(fh, rewrite_at as u64 - 1000, Bytes::from(patch))
                    .await
                    .unwrap();
            }
        }
        fs.flush(fh).await.unwrap();
        assert_eq!(store.get(name).expect("complete").0, data, "{name}");
        fs.release(fh).await;
    }
    assert_eq!(store.request_count(Verb::Put), 0, "both streamed");
}
