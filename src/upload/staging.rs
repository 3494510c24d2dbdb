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

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest file staged in memory. Above it a file is rarely written in one
/// go, and the page cache holds a staging file as well as we would.
const MAX_MEMORY_FILE_BYTES: usize = 1024 * 1024;

/// Memory is counted in units of this many bytes.
const UNIT_BYTES: usize = 4096;

/// The private staging directory and the memory that small files share.
pub struct StagingArea {
    directory: tempfile::TempDir,
    memory_units: Arc<Semaphore>,
}

impl StagingArea {
    /// Creates the private directory (mode 0700) under `parent`; it is
    /// removed on drop.
    pub fn new(parent: &Path, memory_bytes: u64) -> io::Result<Self> {
        let directory = tempfile::Builder::new()
            .prefix("bucketfs-staging-")
            .tempdir_in(parent)?;
        let units = (memory_bytes / UNIT_BYTES as u64).min(Semaphore::MAX_PERMITS as u64 / 2);
        Ok(StagingArea {
            directory,
            memory_units: Arc::new(Semaphore::new(units as usize)),
        })
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
    File(Arc<File>),
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
}

impl Staging {
    /// The staging file, moving the contents there first if they are in
    /// memory and cannot stay (`needed` bytes would not fit); `None` while
    /// they stay in memory.
    fn place(&self, stage: &mut Stage, needed: Option<u64>) -> io::Result<Option<Arc<File>>> {
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
        let file = tempfile::tempfile_in(&self.directory)?;
        file.write_all_at(&memory.data, 0)?;
        let file = Arc::new(file);
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
        blocking(move || file.write_all_at(&data, offset)).await
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
        blocking(move || {
            let mut buffer = vec![0u8; len];
            let mut filled = 0;
            while filled < len {
                let n = file.read_at(&mut buffer[filled..], offset + filled as u64)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            buffer.truncate(filled);
            Ok(Bytes::from(buffer))
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
        blocking(move || file.set_len(size)).await
    }

    /// Gives the disk space of `range` back, which must start at or before
    /// the bytes given back so far: a streamed upload gives its parts back
    /// in file order. They cannot be read until `restaged`. Best effort:
    /// where the file system cannot punch holes the bytes stay. Contents in
    /// memory are small and stay.
    pub async fn release(&self, range: std::ops::Range<u64>) {
        use std::os::fd::AsRawFd;
        let _ = self
            .released_below
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |below| {
                (range.start <= below).then_some(below.max(range.end))
            });
        let file = match &*self.inner.lock().unwrap() {
            Stage::File(file) => Arc::clone(file),
            Stage::Memory(_) => return,
        };
        let punched = blocking(move || {
            // SAFETY: fallocate on a descriptor we own, with plain integers.
            let status = unsafe {
                libc::fallocate(
                    file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    range.start as libc::off_t,
                    (range.end - range.start) as libc::off_t,
                )
            };
            if status == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        })
        .await;
        if let Err(error) = punched {
            log::debug!("staging space not released: {error}");
        }
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
}
