//! Server-side copies of any size, and the bookkeeping that lets a commit
//! copy the parts of a file that did not change instead of uploading them.

use std::collections::BTreeMap;
use std::ops::Range;

use futures::StreamExt;
use futures::stream;

use super::{MIB, UploadConfig, UploadError, complete_or_abort, part_size_for};
use crate::store::{ObjectHeaders, ObjectStore};

/// Parts of a multipart copy: large, since no byte passes through us, and
/// S3 takes copy parts up to 5 GiB.
const COPY_PART_BYTES: u64 = 512 * MIB;

/// Byte ranges of a staged file written since it last matched its object.
#[derive(Debug, Default)]
pub struct DirtyRanges {
    /// Disjoint, non-adjacent ranges: start → end.
    ranges: BTreeMap<u64, u64>,
}

impl DirtyRanges {
    pub fn mark(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        let (mut start, mut end) = (range.start, range.end);
        // Absorb every range that overlaps or touches the new one.
        let touching: Vec<u64> = self
            .ranges
            .range(..=end)
            .rev()
            .take_while(|(_, other_end)| **other_end >= start)
            .map(|(other_start, _)| *other_start)
            .collect();
        for other_start in touching {
            let other_end = self.ranges.remove(&other_start).expect("listed above");
            start = start.min(other_start);
            end = end.max(other_end);
        }
        self.ranges.insert(start, end);
    }

    pub fn intersects(&self, range: &Range<u64>) -> bool {
        self.ranges
            .range(..range.end)
            .next_back()
            .is_some_and(|(_, end)| *end > range.start)
    }

    pub fn clear(&mut self) {
        self.ranges.clear();
    }
}

/// An object that the staged file still equals outside its dirty ranges.
#[derive(Debug, Clone)]
pub struct CopySource {
    pub key: String,
    pub etag: String,
    pub size: u64,
}

/// What a commit may copy server side rather than upload.
pub struct Unchanged<'a> {
    pub source: &'a CopySource,
    pub dirty: &'a DirtyRanges,
}

impl Unchanged<'_> {
    /// Whether `range` of the staged file can be copied from the source.
    pub fn covers(&self, range: &Range<u64>) -> bool {
        range.end <= self.source.size && !self.dirty.intersects(range)
    }
}

/// Copies `source_key` (of `size` bytes, pinned to `source_etag`) to
/// `destination_key`: one CopyObject up to `config.max_single_copy_bytes`,
/// else a multipart upload of UploadPartCopy parts. `headers` replace the
/// source's metadata and Content-Type when given; a multipart copy cannot
/// copy them by itself, so it reads them first. Returns the new ETag.
pub async fn copy_object<S: ObjectStore>(
    store: &S,
    source_key: &str,
    destination_key: &str,
    size: u64,
    source_etag: Option<&str>,
    headers: Option<&ObjectHeaders>,
    config: &UploadConfig,
) -> Result<String, UploadError> {
    if size <= config.max_single_copy_bytes {
        return Ok(store
            .copy(source_key, destination_key, source_etag, headers)
            .await?);
    }
    let metadata = match headers {
        Some(headers) => headers.clone(),
        None => store.head(source_key).await?.headers(),
    };
    let part = part_size_for(size, COPY_PART_BYTES).min(config.max_single_copy_bytes);
    let upload_id = store.create_multipart(destination_key, &metadata).await?;
    let copies = (0..size.div_ceil(part)).map(|index| {
        let range = index * part..((index + 1) * part).min(size);
        let upload_id = upload_id.as_str();
        async move {
            let number = index as u32 + 1;
            let etag = store
                .upload_part_copy(
                    destination_key,
                    upload_id,
                    number,
                    source_key,
                    range,
                    source_etag,
                )
                .await?;
            Ok::<_, UploadError>((number, etag))
        }
    });
    let copied = async {
        let mut copies = stream::iter(copies).buffer_unordered(config.max_parts_in_flight.max(1));
        let mut parts = Vec::new();
        while let Some(part) = copies.next().await {
            parts.push(part?);
        }
        parts.sort_by_key(|(number, _)| *number);
        Ok(parts)
    };
    complete_or_abort(store, destination_key, &upload_id, copied).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_ranges_merge_and_answer_intersections() {
        let mut dirty = DirtyRanges::default();
        dirty.mark(10..20);
        dirty.mark(30..40);
        dirty.mark(20..25);
        assert!(dirty.intersects(&(24..30)));
        assert!(!dirty.intersects(&(25..30)));
        assert!(!dirty.intersects(&(0..10)));
        assert!(dirty.intersects(&(39..100)));
        dirty.mark(5..35);
        assert_eq!(dirty.ranges.len(), 1);
        assert!(dirty.intersects(&(0..6)));
        assert!(!dirty.intersects(&(40..50)));
        dirty.mark(45..u64::MAX);
        assert!(dirty.intersects(&(1000..2000)));
        dirty.clear();
        assert!(!dirty.intersects(&(0..u64::MAX)));
    }
}
