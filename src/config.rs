//! The validated settings of one mount, independent of how they were spelled
//! (long options, `-o` mount options, or the environment). `cli.rs` builds it;
//! everything below only reads it.

use std::path::PathBuf;
use std::time::Duration;

/// How the store reaches the bucket: everything aws-config and the S3 client need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreConfig {
    pub bucket: String,
    /// Custom endpoint (S3-compatible stores, local servers); `None` means AWS.
    pub endpoint_url: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub force_path_style: bool,
    /// Anonymous requests for public buckets: no credentials are looked up.
    pub no_sign_request: bool,
    /// Upload bodies are hashed into the request's signature (SHA-256);
    /// without it their CRC32 checksum, a signed header, guards them.
    pub sign_payloads: bool,
    /// An attempt fails once no byte has moved for this long, in any phase
    /// (connecting, sending, awaiting the answer, receiving); a transfer that
    /// keeps moving is never cut.
    pub stall_timeout: Duration,
    /// Bound on establishing a connection (TCP and TLS), capped at
    /// `stall_timeout`.
    pub connect_timeout: Duration,
    /// Wait for the answer to a request the store works on before answering
    /// (CopyObject, UploadPartCopy, CompleteMultipartUpload), once sent.
    pub copy_timeout: Duration,
    /// Failed attempts in a row per request, the first included; a resumed
    /// GET that received bytes counts again from one.
    pub max_attempts: u32,
    /// Requests in flight to the store, all kinds together.
    pub max_concurrency: usize,
}

/// Who the mount is for, and what the kernel should let others do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Owner,
    AllowOther,
    AllowRoot,
}

/// Whether the mount accepts writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    ReadOnly,
    ReadWrite,
}

/// Whether attributes come from the s3fs/GeeseFS `x-amz-meta-*` headers
/// (one HEAD per object, cached by key and ETag) or from listings alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PosixMetadata {
    FromHeaders,
    ListingOnly,
}

/// Attribute defaults for objects that carry no POSIX headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerConfig {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits only (no file-type bits), e.g. 0o644.
    pub file_mode: u16,
    pub dir_mode: u16,
}

/// Uploaded bytes of a streamed file kept staged: bounds its staging disk
/// while keeping the recent end readable before close.
pub const STREAM_RETAIN_BYTES: u64 = 64 * 1024 * 1024;

/// S3's limit for CopyObject.
pub const MAX_SINGLE_COPY_BYTES: u64 = 5 * 1024 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsConfig {
    /// Key prefix the mount root maps to: empty, or ending in `/`.
    pub prefix: String,
    pub owner: OwnerConfig,
    pub write_mode: WriteMode,
    pub posix_metadata: PosixMetadata,
    /// Extended attributes in the `xattr` header (needs `posix_metadata`).
    pub xattrs: bool,
    /// How long a lookup, an attribute or a listing is trusted.
    pub metadata_ttl: Duration,
    /// How long a lookup that found nothing is trusted.
    pub negative_metadata_ttl: Duration,
    /// Inodes the kernel may hold before it is asked to forget the oldest
    /// (see `crate::fs::inode`).
    pub max_inodes: usize,
    /// Objects whose POSIX headers are kept, by key and ETag, so that a
    /// listing after the TTL costs no HEAD for what did not change.
    pub max_cached_headers: usize,
    /// Memory for the block cache, in-flight prefetch included.
    pub max_cache_size_bytes: u64,
    /// Size of one ranged GET once a reader streams.
    pub read_part_size_bytes: u64,
    /// Preferred multipart part size for uploads.
    pub write_part_size_bytes: u64,
    /// Memory for parts in flight to and from the store, all writers together.
    pub max_write_buffer_bytes: u64,
    /// How much of a file streamed to the store stays staged (and readable)
    /// before close; see `crate::upload::StreamingUpload`.
    pub stream_retain_bytes: u64,
    /// Largest object copied with one CopyObject (S3 allows 5 GiB); larger
    /// ones (renames, attribute changes) are copied part by part.
    pub max_single_copy_bytes: u64,
    /// Where the private staging directory goes; `None` for the system's temporary directory.
    pub staging_dir: Option<PathBuf>,
    /// The persistent data cache under the memory one; `None` for none.
    pub disk_cache: Option<DiskCacheConfig>,
}

/// `--cache-dir` and `--max-disk-cache`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCacheConfig {
    /// Absolute, as the daemon changes directory to `/`.
    pub dir: PathBuf,
    pub max_bytes: u64,
}

/// How much the daemon logs, before `RUST_LOG`, which overrides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Mounts, unmounts, warnings and errors.
    Normal,
    /// Also bucketfs's own detail: each failed lookup, each request's key.
    Debug,
}

/// Where log lines go. Without a file: stderr in the foreground, syslog
/// (journald) once detached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Absolute, as the daemon changes directory to `/`; reopened on SIGHUP.
    pub file: Option<PathBuf>,
    pub verbosity: Verbosity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountConfig {
    pub mountpoint: PathBuf,
    pub store: StoreConfig,
    pub fs: FsConfig,
    pub access: Access,
    /// Worker threads of the I/O runtime; `None`: one per CPU.
    pub io_threads: Option<usize>,
    pub foreground: bool,
    pub log: LogConfig,
}
