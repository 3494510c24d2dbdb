//! Read-ahead across the small files of one directory.
//!
//! `cp -r`, `tar c`, `rsync` and `cat dir/*` open a directory's files one
//! after another, in the order the directory lists them, and read each
//! whole. Within a file there is nothing to read ahead; the next request is
//! the next file, and without help each file costs one GET round trip that
//! nothing overlaps. Once two files of one directory are opened in listing
//! order, the next small files of that directory are fetched whole into the
//! block cache (and from the disk cache, with `--cache-dir`), so that their
//! reads find them there or on the way.
//!
//! The listing order is the order of inode numbers: a listing numbers the
//! entries it is first to report in the order the store lists them, which is
//! the order `readdir` returns. A file opened alone, or files opened out of
//! that order, start nothing.

use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::Mutex;

use lru::LruCache;

use crate::cache::block::BLOCK_SIZE_BYTES;
use crate::fs::read::FileHandle;
use crate::fs::{FileKind, Filesystem};
use crate::store::ObjectStore;

/// How far a directory's reads may skip ahead in inode numbers and still
/// count as one run: the numbers in between may be subdirectories, files
/// too large to read ahead, or files the reader leaves out.
const MAX_STEP: u64 = 4;

/// Inode numbers looked at ahead of the last opened file, at most. The run's
/// window starts at 4 and doubles with each further file read in order.
const MAX_AHEAD: u64 = 16;

/// Directories whose runs are remembered: a walk reads in one at a time,
/// parallel copies in a few.
const DIRECTORIES: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Run {
    last_opened: u64,
    /// Files opened in order after the one that started the run.
    length: u32,
    /// Inode numbers below this were offered for read-ahead already.
    offered_until: u64,
}

pub(super) struct SiblingReads {
    runs: Mutex<LruCache<u64, Run>>,
}

impl SiblingReads {
    pub fn new() -> Self {
        SiblingReads {
            runs: Mutex::new(LruCache::new(
                NonZeroUsize::new(DIRECTORIES).expect("non-zero"),
            )),
        }
    }

    /// Records that `ino`, an entry of `parent`, was opened for reading, and
    /// returns the inode numbers to read ahead now (empty unless the opens
    /// of `parent` follow the listing order). Numbers are offered once per
    /// run.
    pub fn opened(&self, parent: u64, ino: u64) -> Range<u64> {
        let mut runs = self.runs.lock().unwrap();
        let Some(run) = runs
            .get_mut(&parent)
            .filter(|run| ino > run.last_opened && ino - run.last_opened <= MAX_STEP)
        else {
            runs.put(
                parent,
                Run {
                    last_opened: ino,
                    length: 0,
                    offered_until: ino + 1,
                },
            );
            return 0..0;
        };
        run.last_opened = ino;
        run.length = run.length.saturating_add(1);
        let window = (2u64 << run.length.min(8)).min(MAX_AHEAD);
        let from = run.offered_until.max(ino + 1);
        let to = ino + 1 + window;
        if to <= from {
            return 0..0;
        }
        run.offered_until = to;
        from..to
    }
}

impl<S: ObjectStore> Filesystem<S> {
    /// After `ino`, an entry of `parent`, was opened for reading: starts
    /// fetching the small files after it, when the opens of `parent` follow
    /// its listing. Only files whose stat is fresh, with an ETag to pin the
    /// GET to, and of one block at most: a larger file is read ahead by its
    /// own reader once it streams.
    pub(super) fn read_ahead_siblings(&self, parent: u64, ino: u64) {
        let numbers = self.sibling_reads.opened(parent, ino);
        if numbers.is_empty() {
            return;
        }
        let handles: Vec<FileHandle> = {
            let inodes = self.inodes.lock().unwrap();
            numbers
                .filter_map(|number| {
                    let inode = inodes.get(number)?;
                    let is_candidate = inode.parent == parent
                        && inode.kind == FileKind::File
                        && !inode.is_being_written
                        && !inode.stat.etag.is_empty()
                        && (1..=BLOCK_SIZE_BYTES).contains(&inode.stat.size)
                        && self.is_fresh(inode);
                    is_candidate.then(|| {
                        let stat = &inode.stat;
                        FileHandle::new(
                            number,
                            inode.key.clone(),
                            stat.etag.clone(),
                            stat.size,
                            false,
                        )
                    })
                })
                .collect()
        };
        log::debug!(
            "reading ahead {} small files of directory {parent} after inode {ino}",
            handles.len()
        );
        for handle in &handles {
            self.fetch_missing(handle, 0, 1, BLOCK_SIZE_BYTES);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_opened_alone_reads_nothing_ahead() {
        let reads = SiblingReads::new();
        assert!(reads.opened(1, 10).is_empty());
        // Again, or going backwards: not a run either.
        assert!(reads.opened(1, 10).is_empty());
        assert!(reads.opened(1, 9).is_empty());
    }

    #[test]
    fn files_opened_in_listing_order_read_ahead_in_a_growing_window() {
        let reads = SiblingReads::new();
        assert!(reads.opened(1, 10).is_empty());
        assert_eq!(reads.opened(1, 11), 12..16);
        assert_eq!(reads.opened(1, 12), 16..21);
        assert_eq!(reads.opened(1, 13), 21..30);
        assert_eq!(reads.opened(1, 14), 30..31);
        // The window stops growing at MAX_AHEAD.
        assert_eq!(reads.opened(1, 15), 31..32);
        // A number skipped (a subdirectory between) keeps the run.
        assert_eq!(reads.opened(1, 18), 32..35);
    }

    #[test]
    fn a_jump_ends_the_run_and_each_directory_has_its_own() {
        let reads = SiblingReads::new();
        assert!(reads.opened(1, 10).is_empty());
        assert!(reads.opened(2, 100).is_empty());
        assert_eq!(reads.opened(1, 11), 12..16);
        assert_eq!(reads.opened(2, 101), 102..106);
        assert!(reads.opened(1, 11 + MAX_STEP + 1).is_empty());
        assert_eq!(reads.opened(1, 11 + MAX_STEP + 2), 18..22);
    }
}
