//! The filesystem core over the in-memory store, for what the store tier
//! promises the layers above: every GET pinned to the version its bytes
//! belong to, even when the store lists no ETags, and readlink too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[path = "common/core.rs"]
mod core_fs;

use bucketfs::config::{FsConfig, PosixMetadata, WriteMode};
use bucketfs::fs::{Error, Filesystem, OpenIntent, ROOT_INO};
use bucketfs::store::memory::{ListingEtags, MemoryStore};
use core_fs::fs_config;

fn mount(store: &Arc<MemoryStore>, posix_metadata: PosixMetadata) -> Filesystem<MemoryStore> {
    let config = FsConfig {
        write_mode: WriteMode::ReadOnly,
        posix_metadata,
        // Nothing expires during a test: what was listed stays trusted.
        metadata_ttl: Duration::from_secs(600),
        negative_metadata_ttl: Duration::from_secs(600),
        ..fs_config()
    };
    Filesystem::new(Arc::clone(store), config, 16).expect("staging directory")
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A store that lists no ETags: the handle gets one from a HEAD at open, so
/// a replacement after open is detected instead of mixed into the reads.
#[test]
fn a_file_listed_without_an_etag_is_pinned_after_a_head_at_open() {
    let store = Arc::new(MemoryStore::new());
    store.put("dir/a", vec![b'1'; 1000]);
    store.set_listing_etags(ListingEtags::Omitted);
    let fs = mount(&store, PosixMetadata::ListingOnly);
    block_on(async {
        let dir = fs
            .lookup(ROOT_INO, "dir")
            .await
            .expect("lookup dir")
            .attr
            .ino;
        let dh = fs.opendir(dir).expect("opendir");
        let entries = fs.readdirplus(dh, 0).await.expect("readdirplus");
        let file = entries
            .iter()
            .find(|entry| entry.name == "a")
            .expect("a is listed")
            .entry
            .attr
            .ino;
        let heads = store.head_count();
        let (fh, _) = fs.open(file, OpenIntent::Read).await.expect("open");
        assert_eq!(store.head_count(), heads + 1, "open HEADs for the ETag");

        // Another client replaces the object after open.
        store.put("dir/a", vec![b'2'; 1000]);
        match fs.read(fh, 0, 100).await {
            Err(Error::Stale { .. }) => {}
            Ok(bytes) => panic!("read {:?}... of another version", &bytes[..4]),
            Err(other) => panic!("expected a stale handle, got {other:?}"),
        }
    });
}

/// readlink reads the link's body pinned to the ETag its stat came from.
#[test]
fn readlink_does_not_read_a_replaced_link() {
    let store = Arc::new(MemoryStore::new());
    let link_mode = (libc::S_IFLNK | 0o777).to_string();
    store.put_with_metadata(
        "link",
        &b"target-one"[..],
        HashMap::from([("mode".to_owned(), link_mode.clone())]),
    );
    let fs = mount(&store, PosixMetadata::FromHeaders);
    block_on(async {
        let link = fs.lookup(ROOT_INO, "link").await.expect("lookup").attr.ino;
        assert_eq!(
            &fs.readlink(link).await.expect("readlink")[..],
            b"target-one"
        );
        store.put_with_metadata(
            "link",
            &b"target-two"[..],
            HashMap::from([("mode".to_owned(), link_mode)]),
        );
        // The stat is still trusted (TTL), so the new body must not be read
        // under the old one's attributes.
        match fs.readlink(link).await {
            Err(Error::Stale { .. }) => {}
            other => panic!("expected a stale link, got {other:?}"),
        }
    });
}
