//! The write path under injected faults, driven through the filesystem core
//! over `FaultStore<MemoryStore>`: a bug in one request (a panic) costs
//! that request only, and the bytes it was uploading stay staged for the
//! next commit. The reference model (tests/reftest.rs) covers the failing
//! requests; this file covers panics.

use std::sync::Arc;
use std::time::Duration;

use bucketfs::config::{FsConfig, OwnerConfig, PosixMetadata, WriteMode};
use bucketfs::fs::{Caller, Filesystem, ROOT_INO};
use bucketfs::store::fault::{Fault, FaultKind, FaultStore, Trigger};
use bucketfs::store::memory::{MemoryStore, Verb};
use bytes::Bytes;

const MIB: u64 = 1024 * 1024;
const CALLER: Caller = Caller {
    uid: 1234,
    gid: 4321,
};

type Store = FaultStore<MemoryStore>;

fn mount(store: &Arc<Store>) -> Filesystem<Store> {
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
        write_part_size_bytes: 8 * MIB,
        max_write_buffer_bytes: 64 * MIB,
        stream_retain_bytes: bucketfs::config::STREAM_RETAIN_BYTES,
        max_single_copy_bytes: bucketfs::config::MAX_SINGLE_COPY_BYTES,
        cache_dir: None,
    };
    Filesystem::new(Arc::clone(store), config, 4).expect("staging directory")
}

fn stored(store: &Store, key: &str) -> Option<Vec<u8>> {
    store.inner().get(key).map(|(bytes, _)| bytes.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_upload_at_shutdown_fails_that_file_only() {
    let store = Arc::new(FaultStore::new(MemoryStore::new(), 10));
    let fs = mount(&store);
    let mut handles = Vec::new();
    for name in ["a", "b", "c"] {
        let (_, fh) = fs.create(ROOT_INO, name, 0o644, CALLER).await.unwrap();
        let body = format!("contents of {name}");
        fs.write(fh, 0, Bytes::from(body)).await.unwrap();
        handles.push(fh);
    }
    store
        .inject(Verb::Put, Fault::Panic, Trigger::Nth(1))
        .unwrap();

    let failed = fs.commit_all().await;

    assert_eq!(store.injected(FaultKind::Panic), 1);
    assert_eq!(
        failed.len(),
        1,
        "exactly the panicking file fails: {failed:?}"
    );
    for name in ["a", "b", "c"] {
        let uploaded = stored(&store, name);
        if failed.contains(&name.to_owned()) {
            assert_eq!(uploaded, None, "{name} failed, yet something was stored");
        } else {
            let expected = format!("contents of {name}");
            assert_eq!(uploaded.as_deref(), Some(expected.as_bytes()), "{name}");
        }
    }
    // The file whose upload panicked is still staged: the next commit
    // uploads exactly its bytes.
    for fh in handles {
        fs.flush(fh).await.unwrap();
        fs.release(fh).await;
    }
    for name in ["a", "b", "c"] {
        let expected = format!("contents of {name}");
        assert_eq!(stored(&store, name).as_deref(), Some(expected.as_bytes()));
    }
}

/// A streamed file whose last part's upload panics (in its own task): the
/// part counts as failed, is sent again from the staged bytes, and the
/// commit completes the object exactly, no zeros in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_part_upload_is_retried_from_the_staged_bytes() {
    let store = Arc::new(FaultStore::new(MemoryStore::new(), 11));
    let fs = mount(&store);
    let (_, fh) = fs.create(ROOT_INO, "big", 0o644, CALLER).await.unwrap();
    let data: Vec<u8> = (0..20 * MIB).map(|i| (i % 251) as u8 + 1).collect();
    for (index, chunk) in data.chunks(MIB as usize).enumerate() {
        let offset = index as u64 * MIB;
        fs.write(fh, offset, Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    store
        .inject(Verb::UploadPart, Fault::Panic, Trigger::Next(1))
        .unwrap();
    fs.flush(fh).await.unwrap();
    assert_eq!(store.injected(FaultKind::Panic), 1);
    fs.release(fh).await;
    assert!(
        stored(&store, "big").as_deref() == Some(&data[..]),
        "exact bytes"
    );
}
