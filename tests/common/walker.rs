#![allow(dead_code)] // Each test binary uses a different part.
//! Walking a tree the way `find` does over the filesystem core and the
//! in-memory store, and what listing each directory on its own shows, for
//! the tree-walk tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bucketfs::config::{FsConfig, PosixMetadata};
use bucketfs::fs::{FileKind, Filesystem, ROOT_INO};
use bucketfs::store::memory::MemoryStore;

use crate::core_fs::{self, fs_config};

/// What a walk saw: path → (kind, size, permission bits).
pub type Seen = HashMap<String, (FileKind, u64, u16)>;

pub fn filesystem(store: &Arc<MemoryStore>, metadata_ttl: Duration) -> Filesystem<MemoryStore> {
    let config = FsConfig {
        metadata_ttl,
        ..fs_config()
    };
    Filesystem::new(Arc::clone(store), config, 16).expect("staging directory")
}

/// Lists `ino` and descends into each subdirectory as it comes, as `find`
/// does, recording everything under `path`.
pub async fn walk(fs: &Filesystem<MemoryStore>, ino: u64, path: &str, seen: &mut Seen) {
    walk_pausing(fs, ino, path, seen, Duration::ZERO).await;
}

/// `walk`, pausing before each directory as a slow walker (`du` on a busy
/// machine) would, and looking it up again before it descends, as the
/// kernel does once the entry the listing gave has timed out.
pub async fn walk_pausing(
    fs: &Filesystem<MemoryStore>,
    ino: u64,
    path: &str,
    seen: &mut Seen,
    pause: Duration,
) {
    tokio::time::sleep(pause).await;
    let fh = fs.opendir(ino).expect("opendir");
    let mut offset = 0;
    let mut directories = Vec::new();
    loop {
        // A failed call is tried again at the same offset, as a tool
        // that retries would; the failing-HEAD test needs no more.
        let mut entries = fs.readdirplus(fh, offset).await;
        for _ in 0..3 {
            if entries.is_ok() {
                break;
            }
            entries = fs.readdirplus(fh, offset).await;
        }
        let entries = entries.expect("readdirplus");
        let Some(last) = entries.last() else { break };
        offset = last.next_offset;
        for entry in entries {
            if !entry.counts_as_lookup {
                continue; // . and ..
            }
            let attr = entry.entry.attr;
            let child = format!("{path}/{}", entry.name);
            seen.insert(child.clone(), (attr.kind, attr.size, attr.perm));
            if attr.kind == FileKind::Directory {
                directories.push((attr.ino, child, entry.name.clone()));
            } else {
                fs.forget(attr.ino, 1);
            }
        }
    }
    fs.releasedir(fh);
    for (index, (mut child_ino, child, name)) in directories.into_iter().enumerate() {
        if !pause.is_zero() {
            // A slow walker's entries from the listing have timed out by the
            // time it descends: the kernel looks each directory up again.
            // Every other one as after a plain readdir, which leaves the
            // kernel no inode of it.
            tokio::time::sleep(pause).await;
            let from_plain_readdir = index % 2 == 0;
            if from_plain_readdir {
                fs.forget(child_ino, 1);
            }
            // Retried as the listing is, for the failing-request tests.
            let mut again = fs.lookup(ino, &name).await;
            for _ in 0..3 {
                if again.is_ok() {
                    break;
                }
                again = fs.lookup(ino, &name).await;
            }
            let again = again.expect("lookup on the way in");
            assert_eq!(
                again.attr.kind,
                FileKind::Directory,
                "{child} looked up again"
            );
            assert_eq!(
                again.attr.perm, seen[&child].2,
                "{child}'s mode looked up again"
            );
            if from_plain_readdir {
                child_ino = again.attr.ino;
            } else {
                assert_eq!(again.attr.ino, child_ino, "{child} looked up again");
                fs.forget(child_ino, 1);
            }
        }
        Box::pin(walk_pausing(fs, child_ino, &child, seen, pause)).await;
        fs.forget(child_ino, 1);
    }
}

pub async fn walk_all(fs: &Filesystem<MemoryStore>) -> Seen {
    let mut seen = Seen::new();
    walk(fs, ROOT_INO, "", &mut seen).await;
    seen
}

/// What listing every directory on its own shows: a mount with no TTL
/// keeps nothing and never walks flat.
pub async fn reference(store: &Arc<MemoryStore>) -> Seen {
    walk_all(&filesystem(store, Duration::ZERO)).await
}

/// The names in directory `ino`, read as `ls` reads them, without descending.
pub async fn list_names(fs: &Filesystem<MemoryStore>, ino: u64) -> HashMap<String, u64> {
    core_fs::read_directory(fs, ino)
        .await
        .into_iter()
        .filter(|entry| entry.counts_as_lookup)
        .map(|entry| (entry.name, entry.entry.attr.ino))
        .collect()
}

/// `t/dDDD/fFF` for `dirs` directories of `files` files, file FF holding
/// FF + 1 bytes.
pub fn plain_tree(dirs: usize, files: usize) -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    for dir in 0..dirs {
        for file in 0..files {
            store.put(&format!("t/d{dir:03}/f{file:02}"), vec![0u8; 1 + file]);
        }
    }
    store
}

/// What listing every directory on its own shows under `/t`.
pub async fn reference_under_t(store: &Arc<MemoryStore>) -> Seen {
    reference(store)
        .await
        .into_iter()
        .filter(|(path, _)| path.starts_with("/t/"))
        .collect()
}

/// A filesystem reading no POSIX headers: its walks send no HEADs, so they
/// list in ranges side by side.
pub fn filesystem_without_headers(store: &Arc<MemoryStore>) -> Filesystem<MemoryStore> {
    let config = FsConfig {
        metadata_ttl: Duration::from_secs(60),
        posix_metadata: PosixMetadata::ListingOnly,
        ..fs_config()
    };
    Filesystem::new(Arc::clone(store), config, 16).expect("staging directory")
}
