//! An in-memory bucket with S3's semantics, for tests of the layers above.
//!
//! Listing follows ListObjectsV2: keys in byte order, `/` rolling keys up into
//! common prefixes, `max_keys` counting objects and prefixes together. The
//! continuation token is the last entry (key or common prefix) of the page;
//! the next page starts strictly after it. This works because a key's entry
//! never sorts before the entry of a smaller key.
//!
//! Writes follow S3 too. A multipart upload lives in a map under its upload id
//! until `complete_multipart` or `abort_multipart` ends it; completing
//! concatenates the listed parts in the listed order, after the checks S3
//! makes (ascending part numbers, each part's ETag, every part but the last at
//! least [`MIN_PART_SIZE_BYTES`]). What S3 rejects with a 4xx code of its own
//! (EntityTooSmall, InvalidPart, NoSuchUpload, ...) is `StoreError::Other`
//! whose source names the code. Every object version and every part gets an
//! ETag no other one has had.
//!
//! Tests change the bucket behind the filesystem's back with the inherent
//! [`MemoryStore::put`] and [`MemoryStore::delete`], which are not requests,
//! read it back with [`MemoryStore::get`], count requests per [`Verb`], and
//! make the next requests fail with [`MemoryStore::fail_next`]. A request is
//! counted before an injected failure is applied, as S3 would have received
//! it. [`MemoryStore::set_latency`] makes HEADs or LISTs take time, so that
//! tests can catch requests in flight. The inherent `put` and `delete` shadow the trait verbs of the same
//! name in method syntax; call those as `ObjectStore::put(&store, ...)`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::{Bound, Range};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};

use super::{
    ListFrom, ListPage, ListedObject, ObjectHeaders, ObjectMeta, ObjectStore, PendingUpload,
    PendingUploadPage, StoreError,
};

const DELIMITER: char = '/';

/// S3 rejects a CompleteMultipartUpload in which any part but the last is
/// smaller than this (EntityTooSmall); see the S3 multipart upload limits.
pub const MIN_PART_SIZE_BYTES: u64 = 5 * 1024 * 1024;

/// S3 part numbers run from 1 to 10,000 (S3 multipart upload limits).
const MAX_PART_NUMBER: u32 = 10_000;

pub use super::{FailureKind, Verb};

/// Whether listings carry ETags; some S3-compatible stores list none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListingEtags {
    #[default]
    Listed,
    Omitted,
}

#[derive(Debug, Clone)]
struct StoredObject {
    data: Bytes,
    etag: String,
    last_modified: SystemTime,
    /// User metadata names lower-cased, as S3 does.
    headers: ObjectHeaders,
}

/// A multipart upload neither completed nor aborted.
#[derive(Debug)]
struct Upload {
    key: String,
    initiated: SystemTime,
    headers: ObjectHeaders,
    /// By part number; uploading a number again replaces the part.
    parts: BTreeMap<u32, StoredPart>,
}

#[derive(Debug)]
struct StoredPart {
    data: Bytes,
    etag: String,
}

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<String, StoredObject>,
    /// By upload id.
    uploads: HashMap<String, Upload>,
    /// Source of ETags and upload ids; bumped for each so that no two object
    /// versions, parts or uploads share one.
    serial: u64,
    requests: HashMap<Verb, u64>,
    /// LISTs of at most one key: probes of whether a prefix holds anything,
    /// not pages anyone reads through.
    one_key_lists: u64,
    /// LISTs that began after a key rather than at the prefix or from a
    /// token: each a range of a walk listed side by side.
    lists_after_key: u64,
    /// Bytes answered to `get_range`.
    bytes_got: u64,
    latency: HashMap<Verb, Duration>,
    /// Requests waiting out their latency now, and the most there were.
    waiting: HashMap<Verb, (usize, usize)>,
    failures: HashMap<Verb, VecDeque<FailureKind>>,
    listing_etags: ListingEtags,
}

impl State {
    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    /// Stores a new version of `key`; returns its ETag. A multipart object's
    /// ETag ends in `-<parts>` as S3's does.
    fn insert_object(
        &mut self,
        key: &str,
        data: Bytes,
        headers: ObjectHeaders,
        parts: Option<usize>,
    ) -> String {
        let serial = self.next_serial();
        let etag = match parts {
            Some(parts) => format!("\"{serial:032x}-{parts}\""),
            None => format!("\"{serial:032x}\""),
        };
        let object = StoredObject {
            data,
            etag: etag.clone(),
            last_modified: SystemTime::now(),
            headers,
        };
        self.objects.insert(key.to_owned(), object);
        etag
    }

    /// The source of a copy, if it exists and still has `source_etag`.
    fn copy_source(
        &self,
        source_key: &str,
        source_etag: Option<&str>,
    ) -> Result<&StoredObject, StoreError> {
        let source = self
            .objects
            .get(source_key)
            .ok_or_else(|| StoreError::NotFound {
                key: source_key.to_owned(),
            })?;
        if !etag_matches(source_etag, &source.etag) {
            return Err(StoreError::PreconditionFailed {
                key: source_key.to_owned(),
            });
        }
        Ok(source)
    }

    /// The upload `upload_id` of `key`; S3 answers NoSuchUpload for an upload
    /// of another key too.
    fn upload_mut(&mut self, key: &str, upload_id: &str) -> Result<&mut Upload, StoreError> {
        match self.uploads.get_mut(upload_id) {
            Some(upload) if upload.key == key => Ok(upload),
            _ => Err(rejected(
                "NoSuchUpload",
                format!("no upload {upload_id} of {key}"),
            )),
        }
    }

    /// Counts the request, then consumes the next injected failure, if any.
    fn begin(&mut self, verb: Verb, key: &str) -> Result<(), StoreError> {
        *self.requests.entry(verb).or_default() += 1;
        match self.failures.get_mut(&verb).and_then(VecDeque::pop_front) {
            Some(kind) => Err(kind.into_error(key)),
            None => Ok(()),
        }
    }
}

/// A request waiting out its latency, counted until it is done waiting or
/// dropped.
struct Waiting<'a> {
    store: &'a MemoryStore,
    verb: Verb,
}

impl<'a> Waiting<'a> {
    fn begin(store: &'a MemoryStore, verb: Verb) -> Waiting<'a> {
        let mut state = store.lock();
        let (now, peak) = state.waiting.entry(verb).or_default();
        *now += 1;
        *peak = (*peak).max(*now);
        Waiting { store, verb }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.store.lock();
        if let Some((now, _)) = state.waiting.get_mut(&self.verb) {
            *now -= 1;
        }
    }
}

#[derive(Debug, Default)]
pub struct MemoryStore {
    // Never held across an await: every method works synchronously inside.
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Creates or replaces `key` without user metadata; returns the new ETag.
    pub fn put(&self, key: &str, data: impl Into<Bytes>) -> String {
        self.put_with_metadata(key, data, HashMap::new())
    }

    /// Creates or replaces `key`; metadata names are lower-cased as S3 does.
    /// Returns the new ETag.
    pub fn put_with_metadata(
        &self,
        key: &str,
        data: impl Into<Bytes>,
        user_metadata: HashMap<String, String>,
    ) -> String {
        let headers = ObjectHeaders {
            user_metadata,
            content_type: None,
        };
        self.lock()
            .insert_object(key, data.into(), lower_cased(&headers), None)
    }

    /// The Content-Type `key` was stored with, without counting a request.
    pub fn content_type(&self, key: &str) -> Option<String> {
        let state = self.lock();
        state.objects.get(key)?.headers.content_type.clone()
    }

    /// The data and user metadata of `key`, without counting a request.
    pub fn get(&self, key: &str) -> Option<(Bytes, HashMap<String, String>)> {
        self.lock()
            .objects
            .get(key)
            .map(|object| (object.data.clone(), object.headers.user_metadata.clone()))
    }

    /// Multipart uploads neither completed nor aborted: what a bucket
    /// lifecycle rule would have to clean up.
    pub fn pending_uploads(&self) -> usize {
        self.lock().uploads.len()
    }

    /// Makes the upload `upload_id` look started at `initiated`, as one a
    /// crashed client left behind long ago.
    pub fn set_upload_initiated(&self, upload_id: &str, initiated: SystemTime) {
        if let Some(upload) = self.lock().uploads.get_mut(upload_id) {
            upload.initiated = initiated;
        }
    }

    /// Whether later listings carry ETags.
    pub fn set_listing_etags(&self, listing_etags: ListingEtags) {
        self.lock().listing_etags = listing_etags;
    }

    /// Removes `key`; returns whether it existed.
    pub fn delete(&self, key: &str) -> bool {
        self.lock().objects.remove(key).is_some()
    }

    /// Requests of `verb` received so far, failed ones included. An empty
    /// `get_range` is not a request, as with S3Store.
    pub fn request_count(&self, verb: Verb) -> u64 {
        self.lock().requests.get(&verb).copied().unwrap_or(0)
    }

    pub fn head_count(&self) -> u64 {
        self.request_count(Verb::Head)
    }

    pub fn get_count(&self) -> u64 {
        self.request_count(Verb::Get)
    }

    /// Bytes that `get_range` answered so far.
    pub fn bytes_got(&self) -> u64 {
        self.lock().bytes_got
    }

    pub fn list_count(&self) -> u64 {
        self.request_count(Verb::List)
    }

    /// LISTs of at most one key (a lookup's probe) received so far.
    pub fn one_key_list_count(&self) -> u64 {
        self.lock().one_key_lists
    }

    /// LISTs that began after a key (`ListFrom::After`) received so far.
    pub fn lists_after_key_count(&self) -> u64 {
        self.lock().lists_after_key
    }

    /// Makes the next `count` requests of `verb` fail with `kind`, after any
    /// failures already queued for that verb.
    pub fn fail_next(&self, verb: Verb, kind: FailureKind, count: usize) {
        let mut state = self.lock();
        let queue = state.failures.entry(verb).or_default();
        queue.extend(std::iter::repeat_n(kind, count));
    }

    /// Makes every later request of `verb` wait `latency` before it is
    /// received (and counted). Only HEAD and LIST honour it; waiting needs a
    /// tokio runtime.
    pub fn set_latency(&self, verb: Verb, latency: Duration) {
        self.lock().latency.insert(verb, latency);
    }

    async fn wait_latency(&self, verb: Verb) {
        let latency = self.lock().latency.get(&verb).copied();
        if let Some(latency) = latency {
            let _waiting = Waiting::begin(self, verb);
            tokio::time::sleep(latency).await;
        }
    }

    /// The most requests of `verb` that waited out their latency at once
    /// (see `set_latency`) since the last call: how many a client had in
    /// flight together.
    pub fn take_peak_in_flight(&self, verb: Verb) -> usize {
        let mut state = self.lock();
        let (now, peak) = state.waiting.entry(verb).or_default();
        std::mem::replace(peak, *now)
    }

    /// Drops every queued failure.
    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock left consistent state:
        // every mutation is a single map operation.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ObjectStore for MemoryStore {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        self.wait_latency(Verb::Head).await;
        let mut state = self.lock();
        state.begin(Verb::Head, key)?;
        let object = state.objects.get(key).ok_or_else(|| StoreError::NotFound {
            key: key.to_owned(),
        })?;
        Ok(ObjectMeta {
            size: object.data.len() as u64,
            etag: object.etag.clone(),
            last_modified: object.last_modified,
            user_metadata: object.headers.user_metadata.clone(),
            content_type: object.headers.content_type.clone(),
        })
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Bytes, StoreError> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let mut state = self.lock();
        state.begin(Verb::Get, key)?;
        let object = state.objects.get(key).ok_or_else(|| StoreError::NotFound {
            key: key.to_owned(),
        })?;
        // S3 checks If-Match before the range.
        if !etag_matches(if_match, &object.etag) {
            return Err(StoreError::PreconditionFailed {
                key: key.to_owned(),
            });
        }
        let len = object.data.len() as u64;
        let start = range.start.min(len) as usize;
        let end = range.end.min(len) as usize;
        let bytes = object.data.slice(start..end);
        state.bytes_got += bytes.len() as u64;
        Ok(bytes)
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        from: ListFrom<'_>,
        max_keys: u32,
    ) -> Result<ListPage, StoreError> {
        let after_key = matches!(from, ListFrom::After(_));
        // This store's tokens are the page's last entry, so a page after a
        // key and a page after a token begin alike.
        let continuation = match from {
            ListFrom::Start => None,
            ListFrom::After(key) | ListFrom::Continue(key) => Some(key),
        };
        self.wait_latency(Verb::List).await;
        let mut state = self.lock();
        state.begin(Verb::List, prefix)?;
        state.one_key_lists += u64::from(max_keys <= 1);
        state.lists_after_key += u64::from(after_key);
        let lower = match continuation {
            Some(token) if token >= prefix => Bound::Excluded(token),
            _ => Bound::Included(prefix),
        };
        let mut page = ListPage::default();
        let mut last_entry: Option<&str> = None;
        let mut entries = 0;
        for (key, object) in state
            .objects
            .range::<str, _>((lower, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
        {
            let common_prefix = delimited
                .then(|| {
                    key[prefix.len()..]
                        .find(DELIMITER)
                        .map(|at| &key[..prefix.len() + at + DELIMITER.len_utf8()])
                })
                .flatten();
            let entry = common_prefix.unwrap_or(key);
            // Keys under a prefix already returned, on this page or before.
            if last_entry.is_some_and(|last| entry <= last)
                || continuation.is_some_and(|token| entry <= token)
            {
                continue;
            }
            if entries == max_keys {
                page.next = last_entry.map(str::to_owned);
                break;
            }
            match common_prefix {
                Some(common) => page.common_prefixes.push(common.to_owned()),
                None => page.objects.push(ListedObject {
                    key: key.clone(),
                    size: object.data.len() as u64,
                    etag: match state.listing_etags {
                        ListingEtags::Listed => object.etag.clone(),
                        ListingEtags::Omitted => String::new(),
                    },
                    last_modified: object.last_modified,
                }),
            }
            last_entry = Some(entry);
            entries += 1;
        }
        Ok(page)
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        headers: &ObjectHeaders,
    ) -> Result<String, StoreError> {
        let mut state = self.lock();
        state.begin(Verb::Put, key)?;
        Ok(state.insert_object(key, body, lower_cased(headers), None))
    }

    async fn create_multipart(
        &self,
        key: &str,
        headers: &ObjectHeaders,
    ) -> Result<String, StoreError> {
        let mut state = self.lock();
        state.begin(Verb::CreateMultipart, key)?;
        let upload_id = format!("upload-{}", state.next_serial());
        let upload = Upload {
            key: key.to_owned(),
            initiated: SystemTime::now(),
            headers: lower_cased(headers),
            parts: BTreeMap::new(),
        };
        state.uploads.insert(upload_id.clone(), upload);
        Ok(upload_id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<String, StoreError> {
        let mut state = self.lock();
        state.begin(Verb::UploadPart, key)?;
        check_part_number(part_number)?;
        state.upload_mut(key, upload_id)?;
        let etag = format!("\"{:032x}\"", state.next_serial());
        let part = StoredPart {
            data: body,
            etag: etag.clone(),
        };
        state
            .upload_mut(key, upload_id)?
            .parts
            .insert(part_number, part);
        Ok(etag)
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        source_key: &str,
        source_range: Range<u64>,
        source_etag: Option<&str>,
    ) -> Result<String, StoreError> {
        let mut state = self.lock();
        state.begin(Verb::UploadPartCopy, source_key)?;
        check_part_number(part_number)?;
        state.upload_mut(key, upload_id)?;
        let source = state.copy_source(source_key, source_etag)?;
        let len = source.data.len() as u64;
        // Unlike GetObject, S3 does not clamp a copy range: it must lie
        // within the source.
        if source_range.is_empty() || source_range.end > len {
            return Err(rejected(
                "InvalidArgument",
                format!("range {source_range:?} is not within {len} bytes of {source_key}"),
            ));
        }
        let data = source
            .data
            .slice(source_range.start as usize..source_range.end as usize);
        let etag = format!("\"{:032x}\"", state.next_serial());
        let part = StoredPart {
            data,
            etag: etag.clone(),
        };
        state
            .upload_mut(key, upload_id)?
            .parts
            .insert(part_number, part);
        Ok(etag)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<String, StoreError> {
        let mut state = self.lock();
        state.begin(Verb::CompleteMultipart, key)?;
        let upload = state.upload_mut(key, upload_id)?;
        if parts.is_empty() {
            return Err(rejected("MalformedXML", "no parts listed".to_owned()));
        }
        // The list is judged as a whole before any part is looked at.
        if let Some(pair) = parts.windows(2).find(|pair| pair[0].0 >= pair[1].0) {
            return Err(rejected(
                "InvalidPartOrder",
                format!("part {} listed after part {}", pair[1].0, pair[0].0),
            ));
        }
        let mut chosen = Vec::with_capacity(parts.len());
        for (index, (number, etag)) in parts.iter().enumerate() {
            // S3 accepts the ETag with or without its quotes.
            let part = upload
                .parts
                .get(number)
                .filter(|part| part.etag.trim_matches('"') == etag.trim_matches('"'))
                .ok_or_else(|| {
                    rejected("InvalidPart", format!("no part {number} with ETag {etag}"))
                })?;
            let is_last = index + 1 == parts.len();
            if !is_last && (part.data.len() as u64) < MIN_PART_SIZE_BYTES {
                return Err(rejected(
                    "EntityTooSmall",
                    format!("part {number} has {} bytes", part.data.len()),
                ));
            }
            chosen.push(part.data.clone());
        }
        let mut data = BytesMut::with_capacity(chosen.iter().map(Bytes::len).sum());
        for part in &chosen {
            data.extend_from_slice(part);
        }
        let upload = state
            .uploads
            .remove(upload_id)
            .expect("the upload was found above under the same lock");
        Ok(state.insert_object(key, data.freeze(), upload.headers, Some(chosen.len())))
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.begin(Verb::AbortMultipart, key)?;
        state.upload_mut(key, upload_id)?;
        state.uploads.remove(upload_id);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.begin(Verb::Delete, key)?;
        state.objects.remove(key);
        Ok(())
    }

    async fn copy(
        &self,
        source_key: &str,
        destination_key: &str,
        source_etag: Option<&str>,
        headers: Option<&ObjectHeaders>,
    ) -> Result<String, StoreError> {
        let mut state = self.lock();
        state.begin(Verb::Copy, source_key)?;
        let source = state.copy_source(source_key, source_etag)?;
        let headers = match headers {
            Some(headers) => lower_cased(headers),
            None if source_key == destination_key => {
                return Err(rejected(
                    "InvalidRequest",
                    format!("copy of {source_key} onto itself changes nothing"),
                ));
            }
            None => source.headers.clone(),
        };
        let data = source.data.clone();
        Ok(state.insert_object(destination_key, data, headers, None))
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        max_uploads: u32,
    ) -> Result<PendingUploadPage, StoreError> {
        let mut state = self.lock();
        state.begin(Verb::ListMultipartUploads, prefix)?;
        let mut uploads: Vec<PendingUpload> = state
            .uploads
            .iter()
            .filter(|(_, upload)| upload.key.starts_with(prefix))
            .map(|(upload_id, upload)| PendingUpload {
                key: upload.key.clone(),
                upload_id: upload_id.clone(),
                initiated: Some(upload.initiated),
            })
            .collect();
        // S3 lists by key, then by initiation time.
        uploads.sort_by(|a, b| (&a.key, a.initiated).cmp(&(&b.key, b.initiated)));
        let is_truncated = uploads.len() > max_uploads as usize;
        uploads.truncate(max_uploads as usize);
        Ok(PendingUploadPage {
            uploads,
            is_truncated,
        })
    }
}

/// Whether an object with `etag` satisfies If-Match `pinned`; `*` matches
/// any version, as in S3.
fn etag_matches(pinned: Option<&str>, etag: &str) -> bool {
    pinned.is_none_or(|pinned| pinned == "*" || pinned == etag)
}

/// Metadata names as S3 stores them.
fn lower_cased(headers: &ObjectHeaders) -> ObjectHeaders {
    ObjectHeaders {
        user_metadata: headers
            .user_metadata
            .iter()
            .map(|(name, value)| (name.to_lowercase(), value.clone()))
            .collect(),
        content_type: headers.content_type.clone(),
    }
}

fn check_part_number(part_number: u32) -> Result<(), StoreError> {
    if (1..=MAX_PART_NUMBER).contains(&part_number) {
        Ok(())
    } else {
        Err(rejected(
            "InvalidArgument",
            format!("part number {part_number} is not in 1..={MAX_PART_NUMBER}"),
        ))
    }
}

/// What S3 refuses with an error code of its own, which `StoreError` reports
/// as `Other`.
fn rejected(code: &'static str, detail: String) -> StoreError {
    StoreError::Other {
        source: Box::new(Rejected { code, detail }),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{code}: {detail}")]
struct Rejected {
    code: &'static str,
    detail: String,
}

#[cfg(test)]
mod tests;
