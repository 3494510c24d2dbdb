//! The second tier under the memory block cache: blocks kept as files in
//! `--cache-dir`, so that data read once is read from local disk again after
//! the memory cache let it go, and after an unmount and a remount.
//!
//! A block file is named by the SHA-256 of its bucket, key, ETag and index
//! (never by the key: the directory shows nothing of the bucket's names) and
//! holds a header naming that block, the data, and a CRC32C over both. Every
//! read checks all of it; a file that fails any check is removed and the
//! block fetched again, so a torn write, a flipped bit or a file copied in
//! from elsewhere is never served. That check is also why block files are not
//! fsynced: after a crash, whatever the rename left is caught by it.
//!
//! Files are written under a temporary name in the same directory and renamed
//! into place, so a reader sees a whole file or none. The index (names, sizes,
//! LRU order) lives in memory and is rebuilt at start-up from the directory
//! listing, oldest modification time first; a hit sets the file's time
//! (unless it was set within the last minute), so LRU order survives a
//! remount without reading any data.
//!
//! One daemon owns a directory: it holds an exclusive flock(2) on `lock` for
//! its life, and a second daemon is refused. Sharing would need the index
//! and eviction to agree across processes, for little gain.
//!
//! Everything here is blocking file I/O: callers run it off the runtime's
//! threads (`tokio::task::spawn_blocking`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use lru::LruCache;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cache::block::BlockKey;

const MAGIC: &[u8; 8] = b"BKTFSBLK";
const VERSION: u32 = 1;
/// Magic, version, three string lengths, index, data length.
const FIXED_HEADER_BYTES: usize = 8 + 4 + 3 * 4 + 8 + 8;
const CRC_BYTES: usize = 4;
const LOCK_FILE_NAME: &str = "lock";
const BLOCK_SUFFIX: &str = ".blk";
const TEMP_PREFIX: &str = ".tmp-";

/// The share of the cache's filesystem kept free whatever `--max-disk-cache`
/// allows: the cache must not fill a disk that others write to.
pub const MIN_FREE_PERCENT: u64 = 5;

/// Bytes of blocks fetched for the disk but not yet written there. A fetch
/// waits for room before it sends its GET, so a reader runs no faster than
/// the disk takes its blocks (otherwise, on a busy host, the first read
/// outran the writer and a third of the blocks were never kept)...
const DEFAULT_MAX_PENDING_WRITE_BYTES: u32 = 64 * 1024 * 1024;
/// ...but not for longer than this: past it the block is served from memory
/// only, so a disk that stalls slows reads by at most this much per fetch
/// instead of stopping them.
const WRITE_ROOM_WAIT: Duration = Duration::from_secs(1);

/// How finely block files' modification times order them for the next
/// mount's LRU (within a mount the index orders every hit).
const LRU_TIME_GRANULARITY: Duration = Duration::from_secs(60);

/// The index under which an object version's POSIX headers are kept, beside
/// its blocks (no object has that many blocks), so that a listing after a
/// remount needs no HEAD for a file read before it. The file format, checks
/// and eviction are a block's.
pub const HEADERS_INDEX: u64 = u64::MAX;

/// Where the headers of `key` at `etag` are kept.
pub fn headers_block(key: &str, etag: &str) -> BlockKey {
    BlockKey {
        key: Arc::from(key),
        etag: Arc::from(etag),
        index: HEADERS_INDEX,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "the cache directory {0} is in use by another bucketfs mount; give each mount its own --cache-dir"
    )]
    InUse(PathBuf),
    #[error("cannot use the cache directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

struct Index {
    /// File name to file size, least recently used first.
    lru: LruCache<String, u64>,
    total_bytes: u64,
    /// Room taken by files being written, not yet in `lru`: concurrent
    /// writers must not each find the same room free.
    reserved_bytes: u64,
}

pub struct DiskCache {
    dir: PathBuf,
    bucket: String,
    max_bytes: u64,
    index: Mutex<Index>,
    write_room: Arc<Semaphore>,
    max_pending_write_bytes: u32,
    next_temp: AtomicU64,
    /// Held for the life of the cache: the flock marks the directory taken.
    _lock: File,
}

/// Why a block file was not served.
#[derive(Debug, thiserror::Error)]
enum Invalid {
    #[error("truncated ({0} bytes)")]
    Truncated(usize),
    #[error("not a bucketfs block file")]
    BadMagic,
    #[error("format version {0}, not {VERSION}")]
    BadVersion(u32),
    #[error("checksum mismatch")]
    Checksum,
    #[error("it holds another block")]
    OtherBlock,
}

impl DiskCache {
    /// Opens (creating it, mode 0700) the cache directory of a mount of
    /// `bucket`, takes its lock and indexes the blocks already there.
    pub fn open(dir: &Path, bucket: &str, max_bytes: u64) -> Result<Self, OpenError> {
        let io_error = |source| OpenError::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error)?;
        // An existing directory too: its files are the bucket's data.
        let metadata = std::fs::metadata(dir).map_err(io_error)?;
        if metadata.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_error)?;
        }
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(dir.join(LOCK_FILE_NAME))
            .map_err(io_error)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(OpenError::InUse(dir.to_owned())),
            Err(std::fs::TryLockError::Error(error)) => return Err(io_error(error)),
        }
        let cache = DiskCache {
            dir: dir.to_owned(),
            bucket: bucket.to_owned(),
            max_bytes,
            index: Mutex::new(Index {
                lru: LruCache::unbounded(),
                total_bytes: 0,
                reserved_bytes: 0,
            }),
            write_room: Arc::new(Semaphore::new(DEFAULT_MAX_PENDING_WRITE_BYTES as usize)),
            max_pending_write_bytes: DEFAULT_MAX_PENDING_WRITE_BYTES,
            next_temp: AtomicU64::new(0),
            _lock: lock,
        };
        cache.load_index().map_err(io_error)?;
        // The bound may have shrunk since the last mount.
        let (victims, _) = cache.make_room(0);
        cache.remove_files(&victims);
        Ok(cache)
    }

    /// Indexes the block files in the directory by name, size and time,
    /// and removes temporary files a killed daemon left.
    fn load_index(&self) -> io::Result<()> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMP_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            if !is_block_file_name(name) {
                continue;
            }
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            let used = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((used, name.to_owned(), metadata.len()));
        }
        found.sort();
        let mut index = self.index.lock().unwrap();
        for (_, name, size) in found {
            index.total_bytes += size;
            index.lru.push(name, size);
        }
        log::info!(
            "disk cache {}: {} blocks, {} bytes",
            self.dir.display(),
            index.lru.len(),
            index.total_bytes
        );
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of block files in the directory, as indexed.
    pub fn stored_bytes(&self) -> u64 {
        self.index.lock().unwrap().total_bytes
    }

    /// Returns once no block is on its way to disk: it takes all the room
    /// for writes in flight, so none starts meanwhile, and gives it back.
    pub async fn writes_finished(&self) {
        let _room = self
            .write_room
            .acquire_many(self.max_pending_write_bytes)
            .await;
    }

    /// Whether blocks handed to `reserve_write` are still being written.
    pub fn is_writing(&self) -> bool {
        self.write_room.available_permits() < self.max_pending_write_bytes as usize
    }

    /// Whether the index has the block (it may still fail its checks).
    pub fn contains(&self, block: &BlockKey) -> bool {
        self.index
            .lock()
            .unwrap()
            .lru
            .contains(&self.file_name(block))
    }

    /// The file a block is kept in.
    pub fn path_of(&self, block: &BlockKey) -> PathBuf {
        self.dir.join(self.file_name(block))
    }

    fn file_name(&self, block: &BlockKey) -> String {
        let mut hasher = Sha256::new();
        for part in [
            self.bucket.as_bytes(),
            block.key.as_bytes(),
            block.etag.as_bytes(),
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hasher.update(block.index.to_le_bytes());
        let mut name = String::with_capacity(64 + BLOCK_SUFFIX.len());
        for byte in hasher.finalize() {
            name.push_str(&format!("{byte:02x}"));
        }
        name.push_str(BLOCK_SUFFIX);
        name
    }

    /// The block's data if its file is there and passes every check. A file
    /// that fails one is removed.
    pub fn get(&self, block: &BlockKey) -> Option<Bytes> {
        let name = self.file_name(block);
        if !self.index.lock().unwrap().lru.contains(&name) {
            return None;
        }
        let path = self.dir.join(&name);
        let read = File::open(&path).and_then(|mut file| {
            let metadata = file.metadata()?;
            let mut contents = Vec::with_capacity(metadata.len() as usize);
            io::Read::read_to_end(&mut file, &mut contents)?;
            Ok((file, metadata.modified().ok(), contents))
        });
        let (file, modified, contents) = match read {
            Ok(read) => read,
            Err(error) => {
                if error.kind() != io::ErrorKind::NotFound {
                    log::warn!("disk cache: cannot read {}: {error}", path.display());
                }
                self.forget(&name);
                return None;
            }
        };
        match self.check(block, contents) {
            Ok(data) => {
                self.index.lock().unwrap().lru.promote(&name);
                // The time is the LRU order the next mount starts from; a
                // file used within the last minute keeps its time, which
                // saves a metadata write per hit when the same files are
                // read again soon (a build, an epoch, a `tar` after a remount).
                let now = SystemTime::now();
                let recent = modified
                    .and_then(|modified| now.duration_since(modified).ok())
                    .is_some_and(|age| age < LRU_TIME_GRANULARITY);
                if !recent {
                    let _ = file.set_modified(now);
                }
                Some(data)
            }
            Err(invalid) => {
                log::warn!(
                    "disk cache: dropped {} (block {} of {}): {invalid}; fetching it again",
                    path.display(),
                    block.index,
                    block.key
                );
                self.forget(&name);
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    fn forget(&self, name: &str) {
        let mut index = self.index.lock().unwrap();
        if let Some(size) = index.lru.pop(name) {
            index.total_bytes -= size;
        }
    }

    fn check(&self, block: &BlockKey, contents: Vec<u8>) -> Result<Bytes, Invalid> {
        let len = contents.len();
        if len < FIXED_HEADER_BYTES + CRC_BYTES {
            return Err(Invalid::Truncated(len));
        }
        if &contents[..8] != MAGIC {
            return Err(Invalid::BadMagic);
        }
        let u32_at = |at: usize| u32::from_le_bytes(contents[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(contents[at..at + 8].try_into().unwrap());
        let version = u32_at(8);
        if version != VERSION {
            return Err(Invalid::BadVersion(version));
        }
        let lengths = [u32_at(12) as u64, u32_at(16) as u64, u32_at(20) as u64];
        let index = u64_at(24);
        let data_len = u64_at(32);
        let expected =
            (FIXED_HEADER_BYTES + CRC_BYTES) as u64 + lengths.iter().sum::<u64>() + data_len;
        if expected != len as u64 {
            return Err(Invalid::Truncated(len));
        }
        let body = len - CRC_BYTES;
        let stored_crc = u32::from_le_bytes(contents[body..].try_into().unwrap());
        if crc32c::crc32c(&contents[..body]) != stored_crc {
            return Err(Invalid::Checksum);
        }
        let mut at = FIXED_HEADER_BYTES;
        for (part, part_len) in [
            self.bucket.as_bytes(),
            block.key.as_bytes(),
            block.etag.as_bytes(),
        ]
        .into_iter()
        .zip(lengths)
        {
            let end = at + part_len as usize;
            if &contents[at..end] != part {
                return Err(Invalid::OtherBlock);
            }
            at = end;
        }
        if index != block.index {
            return Err(Invalid::OtherBlock);
        }
        Ok(Bytes::from(contents).slice(at..body))
    }

    /// Bounds the bytes on their way to disk at `bytes` instead of 64 MiB
    /// (a write larger than that takes all of it). For tests that need a
    /// writer slower than the reader; call before the cache is shared.
    pub fn with_max_pending_writes(mut self, bytes: u32) -> Self {
        self.write_room = Arc::new(Semaphore::new(bytes as usize));
        self.max_pending_write_bytes = bytes;
        self
    }

    /// Claims room for `len` bytes of writes in flight, waiting up to
    /// `WRITE_ROOM_WAIT` for the writer to make it; `None` when it did not.
    pub async fn reserve_write(&self, len: u64) -> Option<WriteReservation> {
        let permits = len.min(u64::from(self.max_pending_write_bytes)) as u32;
        let room = Arc::clone(&self.write_room).acquire_many_owned(permits);
        match tokio::time::timeout(WRITE_ROOM_WAIT, room).await {
            Ok(Ok(permit)) => Some(WriteReservation { _permit: permit }),
            _ => None,
        }
    }

    /// Claims room for `len` bytes of writes in flight if there is some now.
    pub fn try_reserve_write(&self, len: u64) -> Option<WriteReservation> {
        let permits = len.min(u64::from(self.max_pending_write_bytes)) as u32;
        let permit = Arc::clone(&self.write_room)
            .try_acquire_many_owned(permits)
            .ok()?;
        Some(WriteReservation { _permit: permit })
    }

    /// Writes a block's file (atomically, by rename) and evicts what the
    /// bounds require. Failures are logged and otherwise ignored: the disk
    /// cache only saves requests.
    pub fn put(&self, block: &BlockKey, data: &[u8]) {
        let name = self.file_name(block);
        if self.index.lock().unwrap().lru.contains(&name) {
            return;
        }
        let file_bytes = (FIXED_HEADER_BYTES
            + CRC_BYTES
            + self.bucket.len()
            + block.key.len()
            + block.etag.len()
            + data.len()) as u64;
        let (victims, reserved) = self.make_room(file_bytes);
        self.remove_files(&victims);
        if !reserved {
            log::debug!(
                "disk cache: no room for block {} of {}",
                block.index,
                block.key
            );
            return;
        }
        let written = self.write_file(&name, block, data);
        let mut index = self.index.lock().unwrap();
        index.reserved_bytes -= file_bytes;
        if let Err(error) = written {
            log::warn!(
                "disk cache: cannot write block {} of {} to {}: {error}",
                block.index,
                block.key,
                self.dir.display()
            );
            return;
        }
        if let Some(old) = index.lru.push(name, file_bytes).map(|(_, size)| size) {
            index.total_bytes -= old;
        }
        index.total_bytes += file_bytes;
    }

    fn write_file(&self, name: &str, block: &BlockKey, data: &[u8]) -> io::Result<()> {
        let mut header = Vec::with_capacity(
            FIXED_HEADER_BYTES + self.bucket.len() + block.key.len() + block.etag.len(),
        );
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        for part in [self.bucket.as_str(), &block.key, &block.etag] {
            let len = u32::try_from(part.len()).map_err(io::Error::other)?;
            header.extend_from_slice(&len.to_le_bytes());
        }
        header.extend_from_slice(&block.index.to_le_bytes());
        header.extend_from_slice(&(data.len() as u64).to_le_bytes());
        for part in [self.bucket.as_str(), &block.key, &block.etag] {
            header.extend_from_slice(part.as_bytes());
        }
        // The block itself is written from where it is, not copied after
        // the header: one copy of every byte fewer on the read path's heels.
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header), data);

        let temp = self.dir.join(format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            self.next_temp.fetch_add(1, Ordering::Relaxed)
        ));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .and_then(|mut file| {
                file.write_all(&header)?;
                file.write_all(data)?;
                file.write_all(&crc.to_le_bytes())
            })
            .and_then(|()| std::fs::rename(&temp, self.dir.join(name)));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written
    }

    /// Takes out of the index the least recently used blocks until `len`
    /// more bytes fit under both bounds, and reserves those bytes if they
    /// do; returns the names taken out, to remove, and whether it reserved.
    fn make_room(&self, len: u64) -> (Vec<(String, u64)>, bool) {
        let free = free_bytes_over_floor(&self.dir).unwrap_or(u64::MAX);
        let mut index = self.index.lock().unwrap();
        // Files being written are not on disk yet: their room is not free.
        let mut free = free.saturating_sub(index.reserved_bytes);
        let mut victims = Vec::new();
        let fits = |index: &Index, free: u64| {
            index.total_bytes + index.reserved_bytes + len <= self.max_bytes && free >= len
        };
        while !fits(&index, free) {
            let Some((name, size)) = index.lru.pop_lru() else {
                break;
            };
            index.total_bytes -= size;
            free = free.saturating_add(size);
            victims.push((name, size));
        }
        let reserved = fits(&index, free);
        if reserved {
            index.reserved_bytes += len;
        }
        (victims, reserved)
    }

    fn remove_files(&self, victims: &[(String, u64)]) {
        for (name, _) in victims {
            if let Err(error) = std::fs::remove_file(self.dir.join(name))
                && error.kind() != io::ErrorKind::NotFound
            {
                log::warn!("disk cache: cannot evict {name}: {error}");
            }
        }
    }
}

/// Room for a fetched block on its way to the disk, given back on drop.
pub struct WriteReservation {
    _permit: OwnedSemaphorePermit,
}

fn is_block_file_name(name: &str) -> bool {
    name.strip_suffix(BLOCK_SUFFIX)
        .is_some_and(|hash| hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Free bytes on the directory's filesystem beyond the `MIN_FREE_PERCENT`
/// floor (zero below it); `None` when the filesystem cannot say.
fn free_bytes_over_floor(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes only into the struct we pass, and `path` is a
    // valid NUL-terminated string for the call's duration.
    let stat = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut stat) != 0 {
            return None;
        }
        stat
    };
    let fragment = stat.f_frsize as u64;
    let total = stat.f_blocks as u64 * fragment;
    let available = stat.f_bavail as u64 * fragment;
    Some(available.saturating_sub(total / 100 * MIN_FREE_PERCENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(index: u64) -> BlockKey {
        BlockKey {
            key: Arc::from("dir/file"),
            etag: Arc::from("\"etag\""),
            index,
        }
    }

    #[test]
    fn a_block_comes_back_after_a_reopen_and_its_name_hides_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), "bucket", 1 << 30).unwrap();
        cache.put(&block(3), b"hello");
        assert_eq!(cache.get(&block(3)).as_deref(), Some(&b"hello"[..]));
        let name = cache.path_of(&block(3));
        assert!(!name.to_str().unwrap().contains("file"));
        drop(cache);
        let cache = DiskCache::open(dir.path(), "bucket", 1 << 30).unwrap();
        assert!(cache.contains(&block(3)));
        assert_eq!(cache.get(&block(3)).as_deref(), Some(&b"hello"[..]));
        assert_eq!(cache.get(&block(4)), None);
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_second_open_of_a_directory_in_use_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = DiskCache::open(dir.path(), "bucket", 1 << 30).unwrap();
        let second = DiskCache::open(dir.path(), "bucket", 1 << 30);
        assert!(matches!(second, Err(OpenError::InUse(_))));
    }

    #[test]
    fn a_file_renamed_over_another_blocks_name_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(dir.path(), "bucket", 1 << 30).unwrap();
        cache.put(&block(0), b"zero");
        cache.put(&block(1), b"one");
        std::fs::copy(cache.path_of(&block(0)), cache.path_of(&block(1))).unwrap();
        assert_eq!(cache.get(&block(1)), None);
        assert!(!cache.path_of(&block(1)).exists());
        assert_eq!(cache.get(&block(0)).as_deref(), Some(&b"zero"[..]));
    }

    #[test]
    fn the_least_recently_used_blocks_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let one_file = (FIXED_HEADER_BYTES + CRC_BYTES + 6 + 8 + 6 + 100) as u64;
        let cache = DiskCache::open(dir.path(), "bucket", 3 * one_file).unwrap();
        for index in 0..3 {
            cache.put(&block(index), &[index as u8; 100]);
        }
        assert!(cache.get(&block(0)).is_some());
        cache.put(&block(3), &[3; 100]);
        assert!(cache.contains(&block(0)));
        assert!(!cache.contains(&block(1)));
        assert!(!cache.path_of(&block(1)).exists());
        assert_eq!(cache.stored_bytes(), 3 * one_file);
    }

    #[test]
    fn a_hit_sets_the_time_the_next_mount_orders_by_unless_set_within_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let one_file = (FIXED_HEADER_BYTES + CRC_BYTES + 6 + 8 + 6 + 100) as u64;
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        let cache = DiskCache::open(dir.path(), "bucket", 3 * one_file).unwrap();
        for index in 0..3 {
            cache.put(&block(index), &[index as u8; 100]);
            let file = File::options()
                .write(true)
                .open(cache.path_of(&block(index)))
                .unwrap();
            file.set_modified(long_ago + Duration::from_secs(index))
                .unwrap();
        }
        let time_of = |index| {
            std::fs::metadata(cache.path_of(&block(index)))
                .unwrap()
                .modified()
                .unwrap()
        };
        assert!(cache.get(&block(0)).is_some());
        let touched = time_of(0);
        assert!(
            touched > long_ago + Duration::from_secs(3000),
            "an hour old: set"
        );
        assert!(cache.get(&block(0)).is_some());
        assert_eq!(time_of(0), touched, "set within the minute: kept");
        drop(cache);

        // The next mount starts from those times: block 1 is now the oldest.
        let cache = DiskCache::open(dir.path(), "bucket", 3 * one_file).unwrap();
        cache.put(&block(3), &[3; 100]);
        assert!(cache.contains(&block(0)));
        assert!(!cache.contains(&block(1)));
        assert!(cache.contains(&block(2)));
    }
}
