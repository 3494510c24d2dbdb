#![allow(dead_code)] // Each test binary uses a different part.
//! The filesystem core without FUSE, for tests that drive it directly over
//! the in-memory store.

use std::sync::Arc;
use std::time::Duration;

use bucketfs::config::{
    FsConfig, MAX_SINGLE_COPY_BYTES, OwnerConfig, PosixMetadata, STREAM_RETAIN_BYTES, WriteMode,
};
use bucketfs::fs::{DirEntry, Filesystem};
use bucketfs::store::ObjectStore;

const MIB: u64 = 1024 * 1024;

/// A writable mount's configuration with the command line's defaults, for
/// owner 1000:1000, with a TTL long enough that nothing expires during a test.
pub fn fs_config() -> FsConfig {
    FsConfig {
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
        negative_metadata_ttl: Duration::from_secs(60),
        max_inodes: 250_000,
        max_cached_headers: 1_000_000,
        max_cache_size_bytes: 64 * MIB,
        read_part_size_bytes: 8 * MIB,
        write_part_size_bytes: 8 * MIB,
        max_write_buffer_bytes: 64 * MIB,
        stream_retain_bytes: STREAM_RETAIN_BYTES,
        max_single_copy_bytes: MAX_SINGLE_COPY_BYTES,
        staging_dir: None,
        disk_cache: None,
    }
}

pub fn filesystem<S: ObjectStore>(store: &Arc<S>, config: FsConfig) -> Filesystem<S> {
    Filesystem::new(Arc::clone(store), config, 16).expect("staging directory")
}

/// Every entry of the directory `ino` in one listing, paged as the kernel
/// pages `readdirplus`. The entries keep the kernel references they carry
/// (`counts_as_lookup`); a test that plays a kernel dropping them gives them
/// back with `forget`.
pub async fn read_directory<S: ObjectStore>(fs: &Filesystem<S>, ino: u64) -> Vec<DirEntry> {
    let fh = fs.opendir(ino).expect("opendir");
    let mut all = Vec::new();
    let mut offset = 0;
    loop {
        let entries = fs.readdirplus(fh, offset).await.expect("readdirplus");
        let Some(last) = entries.last() else { break };
        offset = last.next_offset;
        all.extend(entries);
    }
    fs.releasedir(fh);
    all
}
