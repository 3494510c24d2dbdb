//! Special files, times and Content-Type in the filesystem core, over
//! `FaultStore<MemoryStore>`: what a failed request leaves behind (nothing),
//! how many requests a change costs, and the Content-Type of uploads and
//! copies that a mount test cannot steer (multipart copies).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[path = "common/core.rs"]
mod core_fs;

use bucketfs::config::FsConfig;
use bucketfs::fs::{
    Attr, Caller, Error, FileKind, Filesystem, OpenIntent, ROOT_INO, SetAttr, SpecialKind,
};
use bucketfs::store::fault::{Fault, FaultStore, Trigger};
use bucketfs::store::memory::{FailureKind, MemoryStore, Verb};
use bytes::Bytes;
use core_fs::fs_config;

const MIB: u64 = 1024 * 1024;
const CALLER: Caller = Caller {
    uid: 1234,
    gid: 4321,
};

type Store = FaultStore<MemoryStore>;

fn mount(store: &Arc<Store>) -> Filesystem<Store> {
    let config = FsConfig {
        // S3's smallest part, so that a 6 MiB file goes up in two parts.
        write_part_size_bytes: 5 * MIB,
        // So that a 6 MiB rename is a multipart copy.
        max_single_copy_bytes: 5 * MIB,
        ..fs_config()
    };
    Filesystem::new(Arc::clone(store), config, 4).expect("staging directory")
}

fn store() -> Arc<Store> {
    Arc::new(FaultStore::new(MemoryStore::new(), 7))
}

/// Creates `name` with `body` and closes it, so that it is committed.
async fn write_file(fs: &Filesystem<Store>, name: &str, body: &[u8]) -> u64 {
    let (entry, fh) = fs.create(ROOT_INO, name, 0o644, CALLER).await.unwrap();
    for (index, chunk) in body.chunks(MIB as usize).enumerate() {
        let offset = index as u64 * MIB;
        fs.write(fh, offset, Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    entry.attr.ino
}

fn attributes(attr: &Attr) -> (u16, u32, u32, SystemTime, SystemTime, SystemTime) {
    (
        attr.perm, attr.uid, attr.gid, attr.atime, attr.mtime, attr.ctime,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_mknod_leaves_no_entry_and_a_retry_works() {
    let store = store();
    let fs = mount(&store);
    let fifo = libc::S_IFIFO | 0o644;
    store
        .inject(Verb::Put, Fault::Fail(FailureKind::Other), Trigger::Next(1))
        .unwrap();
    assert!(
        fs.mknod(ROOT_INO, "fifo", fifo, 0, CALLER).await.is_err(),
        "the PutObject failed"
    );
    assert!(matches!(
        fs.lookup(ROOT_INO, "fifo").await,
        Err(Error::NotFound)
    ));
    assert_eq!(store.inner().get("fifo"), None);

    let entry = fs.mknod(ROOT_INO, "fifo", fifo, 0, CALLER).await.unwrap();
    assert_eq!(entry.attr.kind, FileKind::Special(SpecialKind::Fifo));
    let found = fs.lookup(ROOT_INO, "fifo").await.unwrap().attr;
    assert_eq!(found.kind, FileKind::Special(SpecialKind::Fifo));
    let (body, metadata) = store.inner().get("fifo").expect("stored");
    assert!(body.is_empty());
    assert_eq!(metadata["mode"], fifo.to_string());

    let chr = libc::S_IFCHR | 0o600;
    let rdev = libc::makedev(1, 7);
    store
        .inject(Verb::Put, Fault::Fail(FailureKind::Other), Trigger::Next(1))
        .unwrap();
    assert!(fs.mknod(ROOT_INO, "null", chr, rdev, CALLER).await.is_err());
    assert!(fs.lookup(ROOT_INO, "null").await.is_err());
    let entry = fs.mknod(ROOT_INO, "null", chr, rdev, CALLER).await.unwrap();
    assert_eq!(
        (entry.attr.kind, entry.attr.rdev),
        (FileKind::Special(SpecialKind::CharDevice), rdev)
    );
    assert_eq!(
        store.inner().get("null").unwrap().1["rdev"],
        rdev.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_copy_leaves_the_attributes_unchanged() {
    let store = store();
    let fs = mount(&store);
    let ino = write_file(&fs, "f.txt", b"contents").await;
    let before = fs.getattr(ino).await.unwrap().attr;
    let set = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let changes = [
        (
            "utimens",
            SetAttr {
                atime: Some(set),
                mtime: Some(set),
                ..SetAttr::default()
            },
        ),
        (
            "chmod",
            SetAttr {
                mode: Some(0o600),
                ..SetAttr::default()
            },
        ),
        (
            "chown",
            SetAttr {
                uid: Some(1),
                gid: Some(2),
                ..SetAttr::default()
            },
        ),
    ];
    for (what, change) in changes {
        store
            .inject(
                Verb::Copy,
                Fault::Fail(FailureKind::Other),
                Trigger::Next(1),
            )
            .unwrap();
        assert!(
            fs.setattr(ino, change).await.is_err(),
            "{what}: the CopyObject failed"
        );
        let after = fs.getattr(ino).await.unwrap().attr;
        assert_eq!(attributes(&after), attributes(&before), "{what}");
        let stored = store.inner().get("f.txt").unwrap().1;
        assert_eq!(
            stored["mode"],
            (libc::S_IFREG | 0o644).to_string(),
            "{what}"
        );
    }

    // One that goes through is one CopyObject, and no PutObject.
    let (puts, copies) = (store.calls(Verb::Put), store.calls(Verb::Copy));
    fs.setattr(ino, changes[0].1).await.unwrap();
    assert_eq!(
        (store.calls(Verb::Put), store.calls(Verb::Copy)),
        (puts, copies + 1)
    );
    let after = fs.getattr(ino).await.unwrap().attr;
    assert_eq!((after.atime, after.mtime), (set, set));
    assert!(after.ctime > before.ctime);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_changes_no_time_and_writes_nothing() {
    let store = store();
    let fs = mount(&store);
    let ino = write_file(&fs, "f", b"contents").await;
    let before = fs.getattr(ino).await.unwrap().attr;
    let writes = || [Verb::Put, Verb::Copy, Verb::CreateMultipart].map(|verb| store.calls(verb));
    let written = writes();
    let (fh, _) = fs.open(ino, OpenIntent::Read).await.unwrap();
    assert_eq!(&fs.read(fh, 0, 100).await.unwrap()[..], b"contents");
    fs.release(fh).await;
    assert_eq!(writes(), written, "a read sends no PUT or COPY");
    assert_eq!(
        attributes(&fs.getattr(ino).await.unwrap().attr),
        attributes(&before)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_and_copies_carry_the_names_content_type() {
    let store = store();
    let fs = mount(&store);
    let body: Vec<u8> = (0..6 * MIB).map(|i| (i % 253) as u8).collect();
    write_file(&fs, "big.css", &body).await;
    assert!(store.calls(Verb::CreateMultipart) >= 1, "went up in parts");
    assert_eq!(
        store.inner().content_type("big.css").as_deref(),
        Some("text/css")
    );

    // Over max_single_copy_bytes: a multipart copy, which copies no
    // metadata by itself.
    fs.rename(ROOT_INO, "big.css", ROOT_INO, "big.html", false)
        .await
        .unwrap();
    assert!(store.calls(Verb::UploadPartCopy) >= 2, "a multipart copy");
    assert_eq!(
        store.inner().content_type("big.html").as_deref(),
        Some("text/html")
    );
    let (moved, metadata) = store.inner().get("big.html").unwrap();
    assert_eq!(moved.len(), body.len());
    assert_eq!(metadata["mode"], (libc::S_IFREG | 0o644).to_string());

    write_file(&fs, "small.json", b"{}").await;
    fs.rename(ROOT_INO, "small.json", ROOT_INO, "small.txt", false)
        .await
        .unwrap();
    assert_eq!(
        store.inner().content_type("small.txt").as_deref(),
        Some("text/plain")
    );
}

/// An object without time headers (another tool's, or one bucketfs
/// streamed up) shows its Last-Modified as mtime; a rename must not turn
/// that into the time of the copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_keeps_the_times_of_an_object_without_time_headers() {
    let store = store();
    store.inner().put("plain", b"from another tool".to_vec());
    let fs = mount(&store);
    let before = fs.lookup(ROOT_INO, "plain").await.unwrap().attr;
    tokio::time::sleep(Duration::from_millis(20)).await;
    fs.rename(ROOT_INO, "plain", ROOT_INO, "renamed", false)
        .await
        .unwrap();
    let after = fs.lookup(ROOT_INO, "renamed").await.unwrap().attr;
    assert_eq!((after.atime, after.mtime), (before.atime, before.mtime));
    assert!(after.ctime > before.ctime);
    // What another mount reads.
    let fresh = mount(&store);
    let read = fresh.lookup(ROOT_INO, "renamed").await.unwrap().attr;
    assert_eq!((read.atime, read.mtime), (before.atime, before.mtime));
}

/// POSIX: an O_TRUNC open of an existing file moves mtime and ctime, even
/// of a file already empty, and a caller without CAP_FSETID loses its
/// set-user-ID bit (and set-group-ID, since group execute is set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncating_open_moves_mtime_and_ctime_and_clears_setid() {
    let store = store();
    let fs = mount(&store);
    let ino = write_file(&fs, "empty", b"").await;
    let old = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    fs.setattr(
        ino,
        SetAttr {
            mode: Some(0o6775),
            atime: Some(old),
            mtime: Some(old),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    let intent = OpenIntent::Write {
        truncate: true,
        drops_setid: true,
    };
    let (fh, _) = fs.open(ino, intent).await.unwrap();
    fs.flush(fh).await.unwrap();
    fs.release(fh).await;
    let attr = fs.getattr(ino).await.unwrap().attr;
    assert_eq!(attr.atime, old, "atime is not the open's business");
    assert!(attr.mtime > old && attr.ctime > old, "{attr:?}");
    assert_eq!(attr.perm, 0o775);
    let (_, metadata) = store.inner().get("empty").unwrap();
    assert_eq!(metadata["mode"], (libc::S_IFREG | 0o775).to_string());
    assert_ne!(metadata["mtime"], "1600000000");
}
