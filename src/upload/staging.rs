//! Where a file's new contents wait for their commit: in memory while the
//! file is small, else in an anonymous file in a private directory.
//!
//! Most files written through a mount are small (source trees, configs,
//! archives' members), and for them a staging file costs more than the data:
//! creating it, and each write and read-back as a trip through a blocking
//! thread. So a file starts in memory and moves to a staging file when it
//! outgrows `MAX_MEMORY_FILE_BYTES`, or when the memory that all files may
//! stage together (a quarter of `--max-write-buffer`) is taken. Memory is
//! never waited for: a file that gets none goes to disk at once, so writers
//! never block on one another's open files.
//!
//! A daemon killed with SIGKILL (or by the OOM killer) cannot remove its
//! staging directory, so each mount's start-up removes those of dead
//! daemons. A directory belongs to a live daemon while a lock file in it is
//! locked (flock(2)): the kernel drops the lock when its holder dies, however
//! it dies, so no pid file can go stale and no pid can be reused by mistake.
//! The lock file is locked before it gets its name, so a directory never
//! shows an unlocked lock file while its daemon lives.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::segmented::SegmentedFile;
use crate::buffers::BufferPool;

/// Largest file staged in memory. Above it a file is rarely written in one
/// go, and the page cache holds a staging file as well as we would.
const MAX_MEMORY_FILE_BYTES: usize = 1024 * 1024;

/// Idle part buffers kept for reuse, so that a streaming upload reads each
/// part into memory that is already mapped: a few parts' worth, and no more
/// than the memory for small files (a quarter of --max-write-buffer), so
/// that a small write budget is not exceeded by buffers kept idle.
const IDLE_READ_BUFFER_BYTES: usize = 32 * 1024 * 1024;

/// Idle part buffers go back to the system after this long unused.
const IDLE_READ_BUFFER_QUIET: Duration = Duration::from_secs(10);

/// Memory is counted in units of this many bytes.
const UNIT_BYTES: usize = 4096;

/// How every staging directory's name starts, so that start-up finds those
/// of dead daemons.
const DIRECTORY_PREFIX: &str = "bucketfs-staging-";

/// The file in a staging directory that its daemon keeps locked.
const LOCK_FILE_NAME: &str = "lock";

/// A staging directory without a lock file is either being created (for the
/// moment between its mkdir and the rename of its locked lock file, which
/// touch its mtime) or was left by a bucketfs from before lock files. Once
/// its mtime is older than this it can only be the latter.
const UNLOCKED_DIRECTORY_GRACE: Duration = Duration::from_secs(60);

/// The private staging directory and the memory that small files share.
pub struct StagingArea {
    directory: tempfile::TempDir,
    /// Locked for the area's life; declared after `directory` so that the
    /// lock outlives the directory's removal on drop.
    _lock: File,
    memory_units: Arc<Semaphore>,
    /// Buffers for parts read back for upload.
    read_buffers: Arc<BufferPool>,
}

impl StagingArea {
    /// Removes the staging directories that dead daemons left under
    /// `parent`, then creates this one's private directory (mode 0700)
    /// there, locked as live; it is removed on drop.
    pub fn new(parent: &Path, memory_bytes: u64) -> io::Result<Self> {
        remove_dead_directories(parent);
        let directory = tempfile::Builder::new()
            .prefix(DIRECTORY_PREFIX)
            .tempdir_in(parent)?;
        let lock = create_lock_file(directory.path())?;
        let units = (memory_bytes / UNIT_BYTES as u64).min(Semaphore::MAX_PERMITS as u64 / 2);
        Ok(StagingArea {
            directory,
            _lock: lock,
            memory_units: Arc::new(Semaphore::new(units as usize)),
            read_buffers: {
                let idle_bytes = usize::try_from(memory_bytes)
                    .unwrap_or(usize::MAX)
                    .min(IDLE_READ_BUFFER_BYTES);
                let pool = BufferPool::new(idle_bytes);
                pool.release_when_quiet(IDLE_READ_BUFFER_QUIET);
                pool
            },
        })
    }

    /// The private directory, for logs and tests.
    pub fn path(&self) -> &Path {
        self.directory.path()
    }

    /// An empty staging area for one file.
    pub fn stage(&self) -> Staging {
        Staging {
            inner: Arc::new(Mutex::new(Stage::Memory(MemoryStage {
                data: Vec::new(),
                reserved: None,
            }))),
            released_below: Arc::new(AtomicU64::new(0)),
            directory: self.directory.path().to_owned(),
            memory_units: Arc::clone(&self.memory_units),
            read_buffers: Arc::clone(&self.read_buffers),
        }
    }
}

struct MemoryStage {
    data: Vec<u8>,
    /// Units of the shared memory held for `data`'s capacity.
    reserved: Option<OwnedSemaphorePermit>,
}

enum Stage {
    Memory(MemoryStage),
    File(Arc<Mutex<SegmentedFile>>),
}

/// A file's staged contents. Cheap to clone; clones share them.
#[derive(Clone)]
pub struct Staging {
    inner: Arc<Mutex<Stage>>,
    /// Bytes before this offset were given back (`release`) and read as
    /// zeros: they are not the file's until `restaged`. Reading them is an
    /// error, so that no upload ever sends zeros for bytes we do not hold.
    released_below: Arc<AtomicU64>,
    directory: PathBuf,
    memory_units: Arc<Semaphore>,
    read_buffers: Arc<BufferPool>,
}

impl Staging {
    /// The staging file, moving the contents there first if they are in
    /// memory and cannot stay (`needed` bytes would not fit); `None` while
    /// they stay in memory.
    fn place(
        &self,
        stage: &mut Stage,
        needed: Option<u64>,
    ) -> io::Result<Option<Arc<Mutex<SegmentedFile>>>> {
        let memory = match stage {
            Stage::File(file) => return Ok(Some(Arc::clone(file))),
            Stage::Memory(memory) => memory,
        };
        let Some(needed) = needed else {
            return Ok(None);
        };
        if needed <= MAX_MEMORY_FILE_BYTES as u64 && self.reserve(memory, needed as usize) {
            return Ok(None);
        }
        let mut file = SegmentedFile::new(tempfile::tempfile_in(&self.directory)?);
        file.write_at(0, &memory.data)?;
        let file = Arc::new(Mutex::new(file));
        // Drops the memory and its reservation.
        *stage = Stage::File(Arc::clone(&file));
        Ok(Some(file))
    }

    /// Makes sure `memory` holds units for `len` bytes; false if the shared
    /// memory has none to spare.
    fn reserve(&self, memory: &mut MemoryStage, len: usize) -> bool {
        let wanted = len.div_ceil(UNIT_BYTES) as u32;
        let held = memory
            .reserved
            .as_ref()
            .map_or(0, |r| r.num_permits() as u32);
        if wanted <= held {
            return true;
        }
        match Arc::clone(&self.memory_units).try_acquire_many_owned(wanted - held) {
            Ok(more) => {
                match memory.reserved.as_mut() {
                    Some(reserved) => reserved.merge(more),
                    None => memory.reserved = Some(more),
                }
                true
            }
            Err(_) => false,
        }
    }

    pub async fn write_at(&self, offset: u64, data: Bytes) -> io::Result<()> {
        let file = {
            let mut stage = self.inner.lock().unwrap();
            let end = offset + data.len() as u64;
            match (self.place(&mut stage, Some(end))?, &mut *stage) {
                (Some(file), _) => file,
                (None, Stage::Memory(memory)) => {
                    let (start, end) = (offset as usize, end as usize);
                    if memory.data.len() < end {
                        memory.data.resize(end, 0);
                    }
                    memory.data[start..end].copy_from_slice(&data);
                    return Ok(());
                }
                (None, Stage::File(_)) => unreachable!("place answers None only for memory"),
            }
        };
        blocking(move || lock(&file).write_at(offset, &data)).await
    }

    /// Up to `len` bytes at `offset`; short only at the end of the staged
    /// data. Fails for bytes given back by `release` and not restaged.
    pub async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let released_below = self.released_below.load(Ordering::Acquire);
        if offset < released_below && len > 0 {
            return Err(io::Error::other(format!(
                "bytes {offset}..{released_below} were uploaded and are not staged any more"
            )));
        }
        let file = {
            let stage = self.inner.lock().unwrap();
            match &*stage {
                Stage::File(file) => Arc::clone(file),
                Stage::Memory(memory) => {
                    let start = (offset as usize).min(memory.data.len());
                    let end = start.saturating_add(len).min(memory.data.len());
                    return Ok(Bytes::copy_from_slice(&memory.data[start..end]));
                }
            }
        };
        let mut buffer = self.read_buffers.take(len);
        blocking(move || {
            buffer.fill_with(len, |space| lock(&file).read_at(offset, space))?;
            Ok(buffer.freeze())
        })
        .await
    }

    /// Shrinks or grows (with zeros, as a sparse hole on disk) to `size`.
    pub async fn set_len(&self, size: u64) -> io::Result<()> {
        self.released_below.fetch_min(size, Ordering::AcqRel);
        let file = {
            let mut stage = self.inner.lock().unwrap();
            match (self.place(&mut stage, Some(size))?, &mut *stage) {
                (Some(file), _) => file,
                (None, Stage::Memory(memory)) => {
                    memory.data.resize(size as usize, 0);
                    return Ok(());
                }
                (None, Stage::File(_)) => unreachable!("place answers None only for memory"),
            }
        };
        blocking(move || {
            lock(&file).set_len(size);
            Ok(())
        })
        .await
    }

    /// Gives `range` back, which must start at or before the bytes given
    /// back so far: a streamed upload gives its parts back in file order.
    /// They cannot be read until `restaged`, and the staging file reuses
    /// their space for the bytes written next. Contents in memory are small
    /// and stay.
    pub async fn release(&self, range: std::ops::Range<u64>) {
        let released =
            self.released_below
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |below| {
                    (range.start <= below).then_some(below.max(range.end))
                });
        if released.is_err() {
            return;
        }
        let file = match &*self.inner.lock().unwrap() {
            Stage::File(file) => Arc::clone(file),
            Stage::Memory(_) => return,
        };
        let _ = blocking(move || {
            lock(&file).release_below(range.end);
            Ok(())
        })
        .await;
    }

    /// After `range` was written back from the object: given-back bytes it
    /// covers from the start are the file's again.
    pub fn restaged(&self, range: std::ops::Range<u64>) {
        let _ = self
            .released_below
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |below| {
                (range.start == 0 && range.end >= below).then_some(0)
            });
    }

    /// Whether the contents are in memory (for tests of where they went).
    pub fn is_in_memory(&self) -> bool {
        matches!(*self.inner.lock().unwrap(), Stage::Memory(_))
    }
}

/// Creates the lock file of a new staging directory, already locked: it is
/// locked under a temporary name and then renamed into place.
fn create_lock_file(directory: &Path) -> io::Result<File> {
    let pending = tempfile::Builder::new()
        .prefix(".lock-")
        .tempfile_in(directory)?;
    pending.as_file().lock()?;
    pending
        .persist(directory.join(LOCK_FILE_NAME))
        .map_err(|error| error.error)
}

/// Removes the staging directories under `parent` that belong to this user
/// and to no live daemon. Best effort: whatever cannot be removed is logged
/// and left, and a mount never fails over it.
fn remove_dead_directories(parent: &Path) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(error) => {
            log::debug!(
                "cannot look for old staging directories in {}: {error}",
                parent.display()
            );
            return Vec::new();
        }
    };
    // SAFETY: geteuid cannot fail and touches no memory of ours.
    let user = unsafe { libc::geteuid() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(DIRECTORY_PREFIX));
        // Not following symlinks: only a real directory of this user's is ours.
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) if is_ours && metadata.is_dir() && metadata.uid() == user => metadata,
            _ => continue,
        };
        match remove_if_dead(&path, &metadata) {
            Ok(true) => {
                log::info!(
                    "removed the staging directory {} of a daemon that died",
                    path.display()
                );
                removed.push(path);
            }
            Ok(false) => log::debug!("staging directory {} is in use", path.display()),
            Err(error) => log::warn!(
                "cannot remove the old staging directory {}: {error}",
                path.display()
            ),
        }
    }
    removed
}

/// Removes one staging directory unless its daemon is alive; whether it did.
fn remove_if_dead(path: &Path, metadata: &std::fs::Metadata) -> io::Result<bool> {
    match File::open(path.join(LOCK_FILE_NAME)) {
        Ok(lock) => match lock.try_lock() {
            // Removed while locked, so that another daemon starting now
            // finds it either locked or gone.
            Ok(()) => remove_directory(path),
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(error)) => Err(error),
        },
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let age = metadata
                .modified()
                .ok()
                .and_then(|modified| SystemTime::now().duration_since(modified).ok());
            if age.is_some_and(|age| age > UNLOCKED_DIRECTORY_GRACE) {
                remove_directory(path)
            } else {
                Ok(false)
            }
        }
        Err(error) => Err(error),
    }
}

fn remove_directory(path: &Path) -> io::Result<bool> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(true),
        // Another daemon starting at the same time removed it first.
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// The staging file's map, also after a panic elsewhere left its lock
/// poisoned: every change to it completes before it can panic.
fn lock(file: &Mutex<SegmentedFile>) -> std::sync::MutexGuard<'_, SegmentedFile> {
    file.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(memory_bytes: u64) -> StagingArea {
        StagingArea::new(&std::env::temp_dir(), memory_bytes).unwrap()
    }

    #[tokio::test]
    async fn small_files_stay_in_memory_and_large_ones_move_to_disk() {
        let area = area(64 * 1024 * 1024);
        let staging = area.stage();
        staging
            .write_at(10, Bytes::from_static(b"abc"))
            .await
            .unwrap();
        assert!(staging.is_in_memory());
        assert_eq!(&staging.read_at(8, 10).await.unwrap()[..], b"\0\0abc");
        let big = vec![7u8; MAX_MEMORY_FILE_BYTES];
        staging.write_at(13, Bytes::from(big)).await.unwrap();
        assert!(!staging.is_in_memory());
        assert_eq!(&staging.read_at(9, 5).await.unwrap()[..], b"\0abc\x07");
        assert_eq!(
            area.memory_units.available_permits() as u64,
            64 * 1024 * 1024 / UNIT_BYTES as u64,
            "memory given back when the contents moved"
        );
    }

    #[tokio::test]
    async fn without_memory_to_spare_a_file_goes_to_disk() {
        let area = area(8 * 1024);
        let first = area.stage();
        first
            .write_at(0, Bytes::from(vec![1u8; 8 * 1024]))
            .await
            .unwrap();
        assert!(first.is_in_memory());
        let second = area.stage();
        second.write_at(0, Bytes::from_static(b"x")).await.unwrap();
        assert!(!second.is_in_memory(), "the shared memory was taken");
        drop(first);
        let third = area.stage();
        third.write_at(0, Bytes::from_static(b"y")).await.unwrap();
        assert!(third.is_in_memory(), "given back when the first closed");
    }

    #[tokio::test]
    async fn set_len_shrinks_and_grows_with_zeros() {
        let staging = area(1024 * 1024).stage();
        staging
            .write_at(0, Bytes::from_static(b"hello"))
            .await
            .unwrap();
        staging.set_len(2).await.unwrap();
        staging.set_len(4).await.unwrap();
        assert_eq!(&staging.read_at(0, 100).await.unwrap()[..], b"he\0\0");
    }

    /// A staging directory as a daemon killed with SIGKILL leaves it: its
    /// lock file exists, and nothing holds it.
    fn dead_directory(parent: &Path, name: &str) -> PathBuf {
        let path = parent.join(format!("{DIRECTORY_PREFIX}{name}"));
        std::fs::create_dir(&path).unwrap();
        File::create(path.join(LOCK_FILE_NAME)).unwrap();
        path
    }

    #[test]
    fn start_up_removes_dead_daemons_directories_and_keeps_live_ones() {
        let parent = tempfile::tempdir().unwrap();
        let live = StagingArea::new(parent.path(), 0).unwrap();
        let dead = dead_directory(parent.path(), "dead");
        // From a bucketfs without lock files, left long ago.
        let old = parent.path().join(format!("{DIRECTORY_PREFIX}old"));
        std::fs::create_dir(&old).unwrap();
        let long_ago = SystemTime::now() - 2 * UNLOCKED_DIRECTORY_GRACE;
        File::open(&old).unwrap().set_modified(long_ago).unwrap();
        // Being created right now: no lock file yet.
        let young = parent.path().join(format!("{DIRECTORY_PREFIX}young"));
        std::fs::create_dir(&young).unwrap();
        let unrelated = parent.path().join("bucketfs-other");
        std::fs::create_dir(&unrelated).unwrap();
        File::create(unrelated.join(LOCK_FILE_NAME)).unwrap();

        let second = StagingArea::new(parent.path(), 0).unwrap();
        assert!(
            live.path().join(LOCK_FILE_NAME).is_file(),
            "a live daemon's directory survives"
        );
        assert!(!dead.exists(), "a dead daemon's directory is removed");
        assert!(!old.exists(), "an old unlocked directory is removed");
        assert!(young.exists(), "a directory being created is left alone");
        assert!(unrelated.exists(), "other names are left alone");

        let (live_path, second_path) = (live.path().to_owned(), second.path().to_owned());
        drop(live);
        drop(second);
        assert!(
            !live_path.exists() && !second_path.exists(),
            "removed on drop"
        );
    }

    #[test]
    fn a_new_area_is_locked_from_the_start() {
        let parent = tempfile::tempdir().unwrap();
        let area = StagingArea::new(parent.path(), 0).unwrap();
        let lock = File::open(area.path().join(LOCK_FILE_NAME)).unwrap();
        assert!(matches!(
            lock.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        let names: Vec<_> = std::fs::read_dir(area.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, [LOCK_FILE_NAME], "no temporary lock file left");
    }
}
