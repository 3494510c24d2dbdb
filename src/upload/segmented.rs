//! A staging file that reuses its own space: the file's bytes live in 1 MiB
//! segments, each stored in whichever slot of the disk file was free when it
//! was first written.
//!
//! A streamed upload gives its parts back oldest first (`release_below`),
//! and the next segments it writes take the slots those parts left. So a
//! 10 GiB file written sequentially keeps about the retained window plus the
//! parts in flight on disk, and, what matters more for speed, it writes into
//! page-cache pages that already exist: filling freshly allocated pages costs
//! several times more CPU than the copy itself (on a VM whose host reclaims
//! freed guest memory, up to 3.5 s per GiB against 0.15 s for pages reused).
//!
//! A reused slot still holds the bytes of the segment that had it before, so
//! each slot knows how far its current segment has written (`valid`); bytes
//! beyond read as zeros, and a write that starts beyond it zeroes the gap
//! first. Nothing stale is ever read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes per segment: the size of the kernel's largest FUSE write, so a
/// sequential writer fills one slot per write.
pub const SEGMENT_BYTES: u64 = 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    /// Where the slot starts in the disk file, in segments.
    number: u64,
    /// Bytes from the slot's start that belong to its current segment.
    valid: u64,
}

pub struct SegmentedFile {
    file: File,
    /// Segment index in the staged file → the slot holding it. A segment
    /// without a slot reads as zeros.
    segments: BTreeMap<u64, Slot>,
    /// Slots given back, whose bytes are another segment's.
    free: Vec<u64>,
    /// Slots the disk file spans; a slot past the ones ever written is a
    /// hole and reads as zeros.
    slots: u64,
    /// The staged file's size.
    len: u64,
}

impl SegmentedFile {
    pub fn new(file: File) -> Self {
        SegmentedFile {
            file,
            segments: BTreeMap::new(),
            free: Vec::new(),
            slots: 0,
            len: 0,
        }
    }

    #[cfg(test)]
    fn len(&self) -> u64 {
        self.len
    }

    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut written = 0;
        while written < data.len() {
            let at = offset + written as u64;
            let (index, within) = (at / SEGMENT_BYTES, at % SEGMENT_BYTES);
            let piece = (SEGMENT_BYTES - within).min((data.len() - written) as u64);
            let slot = self.slot_for_writing(index)?;
            let start = slot.number * SEGMENT_BYTES;
            if within > slot.valid {
                let zeros = vec![0; (within - slot.valid) as usize];
                self.file.write_all_at(&zeros, start + slot.valid)?;
            }
            self.file
                .write_all_at(&data[written..written + piece as usize], start + within)?;
            let slot = self.segments.get_mut(&index).expect("taken above");
            slot.valid = slot.valid.max(within + piece);
            written += piece as usize;
        }
        self.len = self.len.max(offset + data.len() as u64);
        Ok(())
    }

    /// Fills `buffer` from `offset`, as far as the staged file reaches;
    /// returns how many bytes it filled.
    pub fn read_at(&self, offset: u64, buffer: &mut [u8]) -> io::Result<usize> {
        let end = self.len.min(offset.saturating_add(buffer.len() as u64));
        let mut filled = 0;
        while offset + (filled as u64) < end {
            let at = offset + filled as u64;
            let (index, within) = (at / SEGMENT_BYTES, at % SEGMENT_BYTES);
            let piece = (SEGMENT_BYTES - within).min(end - at) as usize;
            let target = &mut buffer[filled..filled + piece];
            let mut stored = 0;
            if let Some(slot) = self.segments.get(&index) {
                stored = slot.valid.saturating_sub(within).min(piece as u64) as usize;
                self.file
                    .read_exact_at(&mut target[..stored], slot.number * SEGMENT_BYTES + within)?;
            }
            target[stored..].fill(0);
            filled += piece;
        }
        Ok(filled)
    }

    /// Shrinks or grows to `size`; bytes past the old end read as zeros.
    pub fn set_len(&mut self, size: u64) {
        let first_beyond = size.div_ceil(SEGMENT_BYTES);
        let beyond: Vec<u64> = self
            .segments
            .range(first_beyond..)
            .map(|(i, _)| *i)
            .collect();
        for index in beyond {
            self.give_back(index);
        }
        if !size.is_multiple_of(SEGMENT_BYTES)
            && let Some(slot) = self.segments.get_mut(&(size / SEGMENT_BYTES))
        {
            slot.valid = slot.valid.min(size % SEGMENT_BYTES);
        }
        self.len = size;
    }

    /// Gives back the slots of the segments wholly before `offset`, whose
    /// bytes the caller will not read again; they read as zeros until
    /// written again.
    pub fn release_below(&mut self, offset: u64) {
        let below: Vec<u64> = self
            .segments
            .range(..offset / SEGMENT_BYTES)
            .map(|(i, _)| *i)
            .collect();
        for index in below {
            self.give_back(index);
        }
    }

    /// Slots the disk file spans, for tests of reuse.
    #[cfg(test)]
    fn slots(&self) -> u64 {
        self.slots
    }

    fn slot_for_writing(&mut self, index: u64) -> io::Result<Slot> {
        if let Some(slot) = self.segments.get(&index) {
            return Ok(*slot);
        }
        let slot = match self.free.pop() {
            Some(number) => Slot { number, valid: 0 },
            None => {
                // A hole up to the new slot's end: all zeros, so valid as
                // it stands, and readable before anything is written to it.
                self.file.set_len((self.slots + 1) * SEGMENT_BYTES)?;
                self.slots += 1;
                Slot {
                    number: self.slots - 1,
                    valid: SEGMENT_BYTES,
                }
            }
        };
        self.segments.insert(index, slot);
        Ok(slot)
    }

    fn give_back(&mut self, index: u64) {
        if let Some(slot) = self.segments.remove(&index) {
            self.free.push(slot.number);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: usize = SEGMENT_BYTES as usize;

    fn staged() -> SegmentedFile {
        SegmentedFile::new(tempfile::tempfile().unwrap())
    }

    fn read(file: &SegmentedFile, offset: u64, len: usize) -> Vec<u8> {
        let mut buffer = vec![0xEE; len];
        let filled = file.read_at(offset, &mut buffer).unwrap();
        buffer.truncate(filled);
        buffer
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn reads_back_what_was_written_across_segments_with_holes_as_zeros() {
        let mut file = staged();
        let data = pattern(SEG + 1000, 1);
        file.write_at(10, &data).unwrap();
        file.write_at(5 * SEGMENT_BYTES, b"tail").unwrap();
        assert_eq!(file.len(), 5 * SEGMENT_BYTES + 4);
        assert_eq!(read(&file, 10, data.len()), data);
        assert_eq!(read(&file, 0, 10), vec![0; 10]);
        assert_eq!(read(&file, 3 * SEGMENT_BYTES, 8), vec![0; 8]);
        assert_eq!(read(&file, 5 * SEGMENT_BYTES, 100), b"tail");
    }

    #[test]
    fn a_reused_slot_never_shows_the_bytes_it_held_before() {
        let mut file = staged();
        file.write_at(0, &vec![0xAA; SEG]).unwrap();
        file.release_below(SEGMENT_BYTES);
        // Segment 3 takes slot 0 back, but writes only from its middle.
        file.write_at(3 * SEGMENT_BYTES + 100, b"new").unwrap();
        assert_eq!(file.slots(), 1, "the slot was reused");
        let segment = read(&file, 3 * SEGMENT_BYTES, SEG);
        assert_eq!(segment.len(), 103);
        assert_eq!(&segment[..100], &[0; 100][..]);
        assert_eq!(&segment[100..], b"new");
        // A write past the end of what the slot holds zeroes the gap.
        file.write_at(3 * SEGMENT_BYTES + 1000, b"x").unwrap();
        assert_eq!(read(&file, 3 * SEGMENT_BYTES + 103, 897), vec![0; 897]);
        assert_eq!(
            read(&file, 0, 16),
            vec![0; 16],
            "released bytes read as zeros"
        );
    }

    #[test]
    fn a_sequential_writer_that_releases_behind_itself_keeps_a_bounded_file() {
        let mut file = staged();
        let chunk = pattern(SEG, 7);
        for index in 0..64u64 {
            file.write_at(index * SEGMENT_BYTES, &chunk).unwrap();
            file.release_below((index + 1).saturating_sub(4) * SEGMENT_BYTES);
        }
        assert!(file.slots() <= 5, "{} slots", file.slots());
        assert_eq!(read(&file, 63 * SEGMENT_BYTES, SEG), chunk);
        assert_eq!(read(&file, 61 * SEGMENT_BYTES + 5, SEG), {
            let mut expected = chunk[5..].to_vec();
            expected.extend_from_slice(&chunk[..5]);
            expected
        });
    }

    #[test]
    fn a_segment_written_only_at_its_start_reads_zeros_to_its_end() {
        let mut file = staged();
        file.write_at(0, b"head").unwrap();
        file.set_len(SEGMENT_BYTES);
        let back = read(&file, 0, SEG);
        assert_eq!(back.len(), SEG);
        assert_eq!(&back[..4], b"head");
        assert!(back[4..].iter().all(|byte| *byte == 0));
    }

    #[test]
    fn shrinking_forgets_bytes_and_growing_reads_zeros() {
        let mut file = staged();
        file.write_at(0, &pattern(3 * SEG, 3)).unwrap();
        file.set_len(SEGMENT_BYTES + 10);
        file.set_len(3 * SEGMENT_BYTES);
        let back = read(&file, 0, 3 * SEG);
        assert_eq!(back.len(), 3 * SEG);
        assert_eq!(&back[..SEG + 10], &pattern(3 * SEG, 3)[..SEG + 10]);
        assert!(back[SEG + 10..].iter().all(|byte| *byte == 0));
        file.set_len(0);
        assert_eq!(read(&file, 0, 10), Vec::<u8>::new());
    }
}
