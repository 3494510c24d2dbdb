//! The filesystem core: inodes, directories and open handles over an
//! `ObjectStore`. It knows nothing of FUSE; the adapter in `crate::fuse`
//! turns its results into replies and its errors into errno.
//!
//! Namespace: a directory is a key prefix ending in `/`. It exists when a
//! listing under it is non-empty (common prefixes and `dir/` marker objects
//! alike); a file is an object. When both an object `a` and a prefix `a/`
//! exist, the directory wins and the object is logged once and hidden. Keys
//! that cannot be a file name (an empty, `.` or `..` segment, or a segment
//! over 255 bytes) are skipped with one warning each.
//!
//! Consistency: what the store told us is trusted for `metadata_ttl`
//! (lookups, attributes, negative lookups); `open` revalidates a stale entry
//! (close-to-open), and an open handle pins the ETag it opened, so it reads
//! one version of the object or fails with `Stale`.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::cache::block::{BLOCK_SIZE_BYTES, BlockCache};
use crate::cache::disk::DiskCache;
use crate::cache::meta::{HeaderCache, NegativeCache, PosixHeaders};
use crate::config::{FsConfig, PosixMetadata};
use crate::store::{ObjectMeta, ObjectStore, StoreError};
use crate::upload::{StagingArea, UploadConfig, WriteBudget};

mod attrs;
mod contents;
mod dir;
mod error;
mod inode;
mod lookup;
mod metadata;
mod namespace;
mod read;
mod siblings;
mod special;
mod write;
mod xattr;

pub use attrs::SetAttr;
pub use error::{Error, Result};
pub use write::Caller;
pub use xattr::XattrWrite;

use contents::{DirectoryContents, Known};
use dir::{DirStream, DirectoryConfirmations};
use inode::InodeTable;
use metadata::{HeadResult, MetadataRequests, Sharing};
use read::FileHandle;
use write::{Discard, WriterRef, WriterTable, discard_with};

pub const ROOT_INO: u64 = 1;

/// Longest file name Linux accepts (NAME_MAX).
pub const MAX_NAME_BYTES: usize = 255;

/// The smallest read-ahead of a mount, which its streaming readers share:
/// eight 8 MiB parts in flight reach line rate on a LAN; the default budget
/// (512 MiB) gives exactly this, so reading needs well under 128 MiB however
/// many files are read at once.
const MIN_READ_WINDOW_BYTES: u64 = 64 * 1024 * 1024;

/// Negative lookups kept; tools probe few missing names at a time.
const NEGATIVE_CACHE_ENTRIES: usize = 16_384;

/// Completed listings remembered for freshness; older ones just expire
/// their entries at the usual TTL.
const COMPLETED_LISTINGS: usize = 4096;

/// Problem keys warned about, at most; past this the warnings stop rather
/// than the set growing with a pathological bucket.
const MAX_WARNED_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Directory,
    /// An object whose s3fs mode header says S_IFLNK; its body is the
    /// target. The namespace treats it as a file: only `stat` tells.
    Symlink,
    /// An empty object whose mode header says FIFO, socket or device; as
    /// with symlinks, only `stat` tells it from a file.
    Special(SpecialKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialKind {
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    /// What an object's `st_mode` file-type bits make of it.
    fn of_object(mode: Option<u32>) -> FileKind {
        match mode.map(|mode| mode & libc::S_IFMT) {
            Some(libc::S_IFLNK) => FileKind::Symlink,
            Some(libc::S_IFIFO) => FileKind::Special(SpecialKind::Fifo),
            Some(libc::S_IFSOCK) => FileKind::Special(SpecialKind::Socket),
            Some(libc::S_IFCHR) => FileKind::Special(SpecialKind::CharDevice),
            Some(libc::S_IFBLK) => FileKind::Special(SpecialKind::BlockDevice),
            _ => FileKind::File,
        }
    }
}

/// What the store says about an entry, before the mount options apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stat {
    pub size: u64,
    pub mtime: Option<SystemTime>,
    /// Empty for directories.
    pub etag: String,
    pub headers: PosixHeaders,
}

impl Stat {
    fn from_head(meta: &ObjectMeta) -> Self {
        Stat {
            size: meta.size,
            mtime: Some(meta.last_modified),
            etag: meta.etag.clone(),
            headers: PosixHeaders::from_head(meta),
        }
    }
}

/// Attributes as `stat(2)` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileKind,
    pub size: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// Permission bits only.
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    /// Device number of a character or block device, else 0.
    pub rdev: u64,
}

/// An answer the kernel may cache for `ttl`.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub attr: Attr,
    pub ttl: Duration,
}

/// A directory entry returned by `readdirplus`. Every entry but `.` and `..`
/// carries one kernel reference (as a lookup would); entries the caller does
/// not hand to the kernel must be given back with `forget`.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: String,
    /// Offset of the entry after this one, for the next `readdirplus`.
    pub next_offset: u64,
    pub entry: Entry,
    pub counts_as_lookup: bool,
}

/// How `open` lets the kernel treat its page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCache {
    /// Same ETag as the previous open: cached pages are still this object's.
    Keep,
    Invalidate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenIntent {
    Read,
    /// With `truncate` (O_TRUNC) the old contents are not even fetched.
    Write {
        truncate: bool,
        /// The opener lacks CAP_FSETID, so a truncation clears set-user-ID
        /// and set-group-ID as a write would. (The kernel clears them
        /// itself before a write or a chown, but leaves an O_TRUNC it hands
        /// to us whole (FUSE_ATOMIC_O_TRUNC) to us.)
        drops_setid: bool,
    },
}

/// How long an exiting daemon waits for blocks still being written to the
/// disk cache: at most 64 MiB of them, seconds on any disk.
const DISK_WRITES_AT_EXIT: Duration = Duration::from_secs(30);

/// Entries the kernel is asked to forget per round past `--max-inodes`: a
/// round holds the inode table's lock while it picks them.
const MAX_RELEASED_AT_ONCE: usize = 10_000;

pub struct Filesystem<S> {
    store: Arc<S>,
    config: FsConfig,
    /// Shared with the writers' guards, which let go of an inode on drop.
    inodes: Arc<Mutex<InodeTable>>,
    negative: NegativeCache,
    blocks: Arc<BlockCache<StoreError>>,
    /// The second tier under `blocks`, with `--cache-dir`.
    disk: Option<Arc<DiskCache>>,
    /// HEADs and LISTs, with the header cache; GETs have their own, smaller
    /// bound in bytes (see `read.rs`).
    meta: Arc<MetadataRequests<S>>,
    /// Directories that a listing under way or just completed found.
    listings: Arc<DirectoryConfirmations>,
    /// Whole listings kept for the TTL, and the tree walk under way.
    walks: Arc<dir::walk::Walks>,
    /// Whole listings of directories where lookups keep missing.
    contents: DirectoryContents,
    read_requests: Arc<Semaphore>,
    /// The prefetch windows of streaming readers, shared among them.
    read_streams: Arc<read::ReadStreams>,
    /// Which directories' small files are being read in listing order.
    sibling_reads: siblings::SiblingReads,
    files: Mutex<HashMap<u64, Arc<FileHandle>>>,
    dirs: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<DirStream>>>>,
    next_handle: AtomicU64,
    warned_keys: Mutex<HashSet<String>>,
    mounted_at: SystemTime,
    /// Files open for writing on this mount, by inode: every descriptor of a
    /// file shares one staged copy.
    writes: Arc<WriterTable>,
    /// The writer reference each descriptor open for writing holds.
    writer_handles: Mutex<HashMap<u64, WriterRef>>,
    discard: Discard,
    /// Names created here and not yet in the bucket, by parent directory, so
    /// that listings show them from `create()` on.
    created_here: Mutex<HashMap<u64, HashSet<String>>>,
    upload: UploadConfig,
    next_listing: AtomicU64,
    /// When each recent directory listing reached its end, by generation.
    completed_listings: Mutex<lru::LruCache<u64, std::time::Instant>>,
    /// Memory for small files being written, and a private (0700)
    /// directory of anonymous staging files for the rest; removed on drop.
    staging: StagingArea,
    /// Where listings run in the background (walks, listers ahead of a
    /// reader); the caller's runtime when none is set.
    listing_runtime: Option<tokio::runtime::Handle>,
}

impl<S: ObjectStore> Filesystem<S> {
    /// Fails only when the staging directory cannot be created.
    pub fn new(store: Arc<S>, config: FsConfig, max_concurrency: usize) -> std::io::Result<Self> {
        let max_concurrency = max_concurrency.max(1);
        let part = config.read_part_size_bytes.max(BLOCK_SIZE_BYTES);
        // The read-ahead of all streaming readers together: an eighth of the cache budget,
        // but at least `MIN_READ_WINDOW_BYTES` and at most half the budget.
        // Bytes in flight count against the budget too, so that the block
        // cache plus downloads never exceed --max-cache-size.
        let window_bytes = (config.max_cache_size_bytes / 8)
            .max(MIN_READ_WINDOW_BYTES)
            .min(config.max_cache_size_bytes / 2)
            .max(part);
        let read_concurrency = (window_bytes / part).clamp(1, max_concurrency as u64);
        let in_flight_bytes = read_concurrency * part;
        let cache_bytes = config.max_cache_size_bytes.saturating_sub(in_flight_bytes);
        let mounted_at = SystemTime::now();
        let root_stat = Stat {
            mtime: Some(mounted_at),
            ..Stat::default()
        };
        let staging_parent = config
            .staging_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        // --max-write-buffer bounds both: a quarter for small files staged in
        // memory, the rest for parts on their way to or from the store.
        let small_files_bytes = config.max_write_buffer_bytes / 4;
        let staging = StagingArea::new(&staging_parent, small_files_bytes)?;
        let upload = UploadConfig {
            part_size_bytes: config.write_part_size_bytes,
            max_parts_in_flight: max_concurrency.clamp(1, 8),
            stream_retain_bytes: config.stream_retain_bytes,
            max_single_copy_bytes: config.max_single_copy_bytes,
            budget: WriteBudget::new(config.max_write_buffer_bytes - small_files_bytes),
        };
        let meta = Arc::new(MetadataRequests::new(
            Arc::clone(&store),
            max_concurrency,
            HeaderCache::new(config.max_cached_headers),
        ));
        let discard = discard_with(&store);
        Ok(Filesystem {
            store,
            inodes: Arc::new(Mutex::new(InodeTable::new(
                config.prefix.clone(),
                root_stat,
            ))),
            negative: NegativeCache::new(config.negative_metadata_ttl, NEGATIVE_CACHE_ENTRIES),
            blocks: Arc::new(BlockCache::new(cache_bytes)),
            disk: None,
            meta,
            listings: Arc::new(DirectoryConfirmations::new(config.metadata_ttl)),
            walks: Arc::new(dir::walk::Walks::new(
                config.metadata_ttl,
                config.posix_metadata == PosixMetadata::FromHeaders,
            )),
            contents: DirectoryContents::new(config.metadata_ttl),
            read_requests: Arc::new(Semaphore::new(read_concurrency as usize)),
            read_streams: read::ReadStreams::new(window_bytes, part),
            sibling_reads: siblings::SiblingReads::new(),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            warned_keys: Mutex::new(HashSet::new()),
            mounted_at,
            writes: Arc::new(Mutex::new(HashMap::new())),
            writer_handles: Mutex::new(HashMap::new()),
            discard,
            created_here: Mutex::new(HashMap::new()),
            upload,
            next_listing: AtomicU64::new(1),
            completed_listings: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(COMPLETED_LISTINGS).expect("non-zero"),
            )),
            staging,
            listing_runtime: None,
            config,
        })
    }

    /// Runs background listings on `runtime`.
    pub fn with_listing_runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.listing_runtime = Some(runtime);
        self
    }

    pub(in crate::fs) fn spawn_listing<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.listing_runtime {
            Some(runtime) => runtime.spawn(task),
            None => tokio::spawn(task),
        }
    }

    /// Keeps blocks read from the store in `disk` as well, and reads them
    /// from there when memory no longer has them.
    pub fn with_disk_cache(mut self, disk: Arc<DiskCache>) -> Self {
        self.meta.use_disk_cache(Arc::clone(&disk));
        self.disk = Some(disk);
        self
    }

    /// Waits (up to `DISK_WRITES_AT_EXIT`) for blocks on their way to the
    /// disk cache, so that what this mount read is there for the next one.
    pub async fn finish_disk_writes(&self) {
        let Some(disk) = &self.disk else { return };
        let _ = tokio::time::timeout(DISK_WRITES_AT_EXIT, disk.writes_finished()).await;
    }

    /// Turns what the store said into what `stat` shows: POSIX headers win
    /// over the mount options, unless the mount ignores them.
    fn attr(&self, ino: u64, kind: FileKind, stat: &Stat) -> Attr {
        let owner = &self.config.owner;
        let none = PosixHeaders::default();
        let headers = match self.config.posix_metadata {
            PosixMetadata::FromHeaders => &stat.headers,
            PosixMetadata::ListingOnly => &none,
        };
        let kind = match kind {
            FileKind::File => FileKind::of_object(headers.mode),
            kind => kind,
        };
        let default_perm = match kind {
            FileKind::File | FileKind::Special(_) => owner.file_mode,
            FileKind::Directory => owner.dir_mode,
            FileKind::Symlink => 0o777,
        };
        // An object written by a tool that keeps no times was last changed,
        // modified and (as far as anyone can tell) read when it was stored.
        let mtime = headers.mtime.or(stat.mtime).unwrap_or(self.mounted_at);
        Attr {
            ino,
            kind,
            size: stat.size,
            atime: headers.atime.unwrap_or(mtime),
            mtime,
            ctime: headers.ctime.unwrap_or(mtime),
            perm: headers
                .mode
                .map_or(default_perm, |mode| (mode & 0o7777) as u16),
            uid: headers.uid.unwrap_or(owner.uid),
            gid: headers.gid.unwrap_or(owner.gid),
            nlink: match kind {
                FileKind::Directory => 2,
                _ => 1,
            },
            rdev: match kind {
                FileKind::Special(SpecialKind::CharDevice | SpecialKind::BlockDevice) => {
                    headers.rdev.unwrap_or(0)
                }
                _ => 0,
            },
        }
    }

    fn entry(&self, attr: Attr) -> Entry {
        Entry {
            attr,
            ttl: self.config.metadata_ttl,
        }
    }

    /// Whether what the store said about an entry is still trusted: for the
    /// TTL after it was confirmed, or after the listing that reported it
    /// completed. The latter matters for large directories: `ls -l` stats
    /// every entry only after listing them all, which can take longer than
    /// the TTL, and those entries must not cost a request each.
    fn is_fresh(&self, inode: &inode::Inode) -> bool {
        let ttl = self.config.metadata_ttl;
        inode.validated_at.elapsed() < ttl
            || inode.listed_in.is_some_and(|generation| {
                self.completed_listings
                    .lock()
                    .unwrap()
                    .peek(&generation)
                    .is_some_and(|completed| completed.elapsed() < ttl)
            })
    }

    /// Logs a problem with a key once per mount.
    fn warn_once(&self, key: &str, why: &str) {
        let mut warned = self.warned_keys.lock().unwrap();
        if warned.len() < MAX_WARNED_KEYS && warned.insert(key.to_owned()) {
            log::warn!("skipping key {key:?}: {why}");
        }
    }

    fn directory_key(&self, ino: u64) -> Result<String> {
        let inodes = self.inodes.lock().unwrap();
        let inode = inodes.get(ino).ok_or(Error::NotFound)?;
        match inode.kind {
            FileKind::Directory => Ok(inode.key.clone()),
            FileKind::File | FileKind::Symlink | FileKind::Special(_) => Err(Error::NotADirectory),
        }
    }

    pub async fn open(&self, ino: u64, intent: OpenIntent) -> Result<(u64, PageCache)> {
        {
            let inodes = self.inodes.lock().unwrap();
            let inode = inodes.get(ino).ok_or(Error::NotFound)?;
            if inode.kind == FileKind::Directory {
                return Err(Error::IsADirectory);
            }
        }
        let writer = match intent {
            OpenIntent::Read => None,
            OpenIntent::Write {
                truncate,
                drops_setid,
            } => {
                let writer = self.writer_for(ino, truncate).await?;
                if truncate {
                    self.mark_truncated(&writer, drops_setid).await;
                }
                Some(writer)
            }
        };
        let reads_the_store = writer.is_none() && !self.is_being_written(ino);
        if reads_the_store {
            // Close-to-open: a HEAD sent before this open may predate a
            // change it must see.
            self.revalidate(ino, Sharing::SendNew).await?;
        }
        let (parent, key, mut stat) = {
            let inodes = self.inodes.lock().unwrap();
            let inode = inodes.get(ino).ok_or(Error::NotFound)?;
            (inode.parent, inode.key.clone(), inode.stat.clone())
        };
        // Blocks are cached by ETag and every GET is pinned to it; a store
        // that lists no ETags leaves finding it to one HEAD.
        if reads_the_store && stat.etag.is_empty() {
            stat = Stat::from_head(&self.head(&key, Sharing::SendNew).await?);
        }
        if reads_the_store {
            self.read_ahead_siblings(parent, ino);
        }
        if reads_the_store && let Some(last_modified) = stat.mtime {
            self.meta
                .keep_on_disk(&key, &stat.etag, last_modified, &stat.headers);
        }
        let page_cache = {
            let mut inodes = self.inodes.lock().unwrap();
            let previous = inodes
                .get_mut(ino)
                .and_then(|inode| inode.last_opened_etag.replace(stat.etag.clone()));
            if previous.as_deref() == Some(stat.etag.as_str()) && !stat.etag.is_empty() {
                PageCache::Keep
            } else {
                PageCache::Invalidate
            }
        };
        Ok((self.add_handle(ino, key, stat, writer), page_cache))
    }

    fn add_handle(&self, ino: u64, key: String, stat: Stat, writer: Option<WriterRef>) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let handle = FileHandle::new(ino, key, stat.etag, stat.size, writer.is_some());
        self.files.lock().unwrap().insert(fh, Arc::new(handle));
        if let Some(writer) = writer {
            self.writer_handles.lock().unwrap().insert(fh, writer);
        }
        fh
    }

    fn handle(&self, fh: u64) -> Result<Arc<FileHandle>> {
        self.files
            .lock()
            .unwrap()
            .get(&fh)
            .cloned()
            .ok_or(Error::BadHandle { fh })
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Bytes> {
        let handle = self.handle(fh)?;
        // Read-after-write: while this mount writes the file, every
        // descriptor reads the staged copy.
        let writer = self.writes.lock().unwrap().get(&handle.ino()).cloned();
        if let Some(writer) = writer {
            let mut open = writer.open.lock().await;
            return self.read_staged(&mut open, offset, size as usize).await;
        }
        self.read_handle(&handle, offset, size as u64).await
    }

    /// The last close of a handle. A writer's last handle commits what a
    /// failed flush left staged, once more, and then drops the staged copy.
    pub async fn release(&self, fh: u64) {
        self.files.lock().unwrap().remove(&fh);
        let writer = self.writer_handles.lock().unwrap().remove(&fh);
        if let Some(writer) = writer {
            self.release_writer(writer).await;
        }
    }

    pub fn opendir(&self, ino: u64) -> Result<u64> {
        let key = self.directory_key(ino)?;
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let stream = DirStream::new(ino, key, self.next_listing.fetch_add(1, Ordering::Relaxed));
        self.dirs
            .lock()
            .unwrap()
            .insert(fh, Arc::new(tokio::sync::Mutex::new(stream)));
        Ok(fh)
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.lock().unwrap().remove(&fh);
    }

    /// Attributes of a directory's `.` and `..`.
    fn dot_entries(&self, ino: u64) -> Result<(Entry, Entry)> {
        let inodes = self.inodes.lock().unwrap();
        let dir = inodes.get(ino).ok_or(Error::NotFound)?;
        let dot = self.attr(ino, FileKind::Directory, &dir.stat);
        let parent_ino = dir.parent;
        let dotdot = match inodes.get(parent_ino) {
            Some(parent) => self.attr(parent_ino, FileKind::Directory, &parent.stat),
            None => Attr {
                ino: parent_ino,
                ..dot
            },
        };
        Ok((self.entry(dot), self.entry(dotdot)))
    }

    pub fn inode_count(&self) -> usize {
        self.inodes.lock().unwrap().len()
    }
}

/// Whether a key segment can be a file name.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
        && name.len() <= MAX_NAME_BYTES
}

/// Whether `name` can be created, for the calls that make or look up a
/// name: one over NAME_MAX is ENAMETOOLONG, as every Linux filesystem
/// answers (the kernel passes FUSE names of up to 1024 bytes), rather than
/// a name that simply is not there.
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.len() > MAX_NAME_BYTES {
        Err(Error::NameTooLong)
    } else if is_valid_name(name) {
        Ok(())
    } else {
        Err(Error::InvalidArgument)
    }
}

/// Seconds since the epoch, for logs and tests.
pub fn epoch_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
