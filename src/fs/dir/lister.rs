//! The task that lists one open directory ahead of its reader: LISTs back
//! to back, the HEADs of each page (for POSIX headers) as it arrives, and a
//! couple of resolved pages kept for `readdirplus`.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{DirectoryConfirmations, LIST_PAGE_KEYS, directory_marker_stat};
use crate::config::PosixMetadata;
use crate::fs::metadata::{Known, MetadataRequests};
use crate::fs::{Error, Filesystem, Result, Stat};
use crate::object_format::PosixHeaders;
use crate::store::{ListFrom, ListPage, ListedObject, ObjectStore, StoreError};

/// Resolved pages the lister may hold that the reader has not taken. One
/// would already let the next page's HEADs and the LIST after it run while
/// the kernel reads the current page; the second absorbs a reader that is
/// late for a moment (`ls` descheduled on a loaded machine), which with one
/// stalled the LIST chain by 0.2-0.45 s a page on s3s-fs.
const PAGES_AHEAD: usize = 2;

/// Listed pages waiting for their HEADs. With one, the LIST chain stalled
/// (0.3-0.4 s on s3s-fs) whenever a page's HEADs took longer than the next
/// LIST; a client listing and HEADing by hand never stalls its LISTs.
const LISTED_AHEAD: usize = 2;

/// A listed object with the attributes it is shown with.
pub(in crate::fs) struct ListedFile {
    pub key: String,
    pub stat: Stat,
}

/// A page as the lister hands it over: files resolved, prefixes as listed.
pub(super) struct ResolvedPage {
    pub files: Vec<ListedFile>,
    pub common_prefixes: Vec<String>,
    /// Attributes from the marker objects of those directories that have one.
    pub directory_stats: HashMap<String, Stat>,
    pub next: Option<String>,
}

/// The task listing ahead of one open directory, and its pages.
pub(super) struct Lister {
    pub pages: mpsc::Receiver<Result<ResolvedPage>>,
    task: JoinHandle<()>,
}

impl Drop for Lister {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts listing the directory `ino` (under `prefix`) from `continuation`.
pub(super) fn start<S: ObjectStore>(
    fs: &Filesystem<S>,
    ino: u64,
    prefix: String,
    continuation: Option<String>,
) -> Lister {
    let (sender, pages) = mpsc::channel(PAGES_AHEAD);
    let task = fs.spawn_listing(list_ahead(
        Arc::clone(&fs.meta),
        Arc::clone(&fs.listings),
        fs.config.posix_metadata,
        ino,
        prefix,
        continuation,
        sender,
    ));
    Lister { pages, task }
}

/// Lists the directory `ino` (under `prefix`) from `continuation` to its end
/// and sends its pages, resolved, in order. Stops after sending a failure,
/// or when the reader is gone.
///
/// Two loops run side by side, as a client listing and HEADing by hand
/// would run them: one sends the LISTs back to back, a few pages ahead of the
/// other (`LISTED_AHEAD`), which resolves each page as it arrives and keeps
/// `PAGES_AHEAD` resolved pages for the reader. Tying each LIST to the end
/// of the HEADs of the page before it instead left gaps in the LIST chain
/// whenever a page's HEADs took longer than the next LIST.
///
/// The listing counts as under way (its directory confirmed) once a page
/// has shown entries, except while it waits for room for the reader: a
/// directory held open and not read is confirmed only for the TTL after.
async fn list_ahead<S: ObjectStore>(
    meta: Arc<MetadataRequests<S>>,
    listings: Arc<DirectoryConfirmations>,
    posix_metadata: PosixMetadata,
    ino: u64,
    prefix: String,
    continuation: Option<String>,
    pages: mpsc::Sender<Result<ResolvedPage>>,
) {
    let (listed_sender, mut listed) = mpsc::channel(LISTED_AHEAD);
    let list = async {
        let mut continuation = continuation;
        loop {
            // Room first, so that `LISTED_AHEAD` listed pages wait, not one more.
            let Ok(slot) = listed_sender.reserve().await else {
                return; // the resolving loop has stopped
            };
            let page = meta
                .list_page(
                    &prefix,
                    true,
                    ListFrom::continuing(continuation.as_deref()),
                    LIST_PAGE_KEYS,
                )
                .await;
            continuation = page.as_ref().ok().and_then(|page| page.next.clone());
            slot.send(page);
            if continuation.is_none() {
                return; // the last page, or a failure
            }
        }
    };
    let resolve = async {
        let mut has_found_entries = false;
        loop {
            let Ok(slot) = pages.reserve().await else {
                return; // the reader is gone
            };
            let mut under_way = has_found_entries.then(|| listings.under_way(ino));
            let Some(page) = listed.recv().await else {
                return;
            };
            let ListPage {
                objects,
                common_prefixes,
                next,
            } = match page {
                Ok(page) => page,
                Err(error) => {
                    slot.send(Err(Error::from(error)));
                    return;
                }
            };
            if !has_found_entries && (!objects.is_empty() || !common_prefixes.is_empty()) {
                has_found_entries = true;
                under_way = Some(listings.under_way(ino));
            }
            let is_last_page = next.is_none();
            let (files, directory_stats) = tokio::join!(
                resolve_files(&meta, posix_metadata, objects),
                resolve_directories(&meta, posix_metadata, &common_prefixes)
            );
            let page = files.map(|files| ResolvedPage {
                files,
                common_prefixes,
                directory_stats,
                next,
            });
            let is_failure = page.is_err();
            slot.send(page);
            drop(under_way);
            if is_failure || is_last_page {
                return;
            }
        }
    };
    tokio::join!(list, resolve);
}

/// Attributes for listed files, in listing order: the listing's size, mtime
/// and ETag, plus POSIX headers from the cache or from HEADs, at most
/// `--max-concurrency` of them waiting for a request permit at a time, so
/// that the next LIST never queues behind a whole page of HEADs.
async fn resolve_files<S: ObjectStore>(
    meta: &Arc<MetadataRequests<S>>,
    posix_metadata: PosixMetadata,
    objects: Vec<ListedObject>,
) -> Result<Vec<ListedFile>> {
    if posix_metadata == PosixMetadata::FromHeaders {
        meta.load_headers_from_disk(&objects).await;
    }
    futures::stream::iter(objects)
        .map(|object| resolve_file(meta, posix_metadata, object))
        .buffered(meta.max_concurrency())
        .try_collect()
        .await
}

/// Attributes of listed directories from their marker objects (`d/`), where
/// they have one: s3fs and `chmod` here keep a directory's mode, owner and
/// mtime there. One HEAD per directory, as s3fs does; the listing of the
/// parent does not say which directories have markers.
async fn resolve_directories<S: ObjectStore>(
    meta: &Arc<MetadataRequests<S>>,
    posix_metadata: PosixMetadata,
    prefixes: &[String],
) -> HashMap<String, Stat> {
    if posix_metadata == PosixMetadata::ListingOnly {
        return HashMap::new();
    }
    let found: Vec<Option<(String, Stat)>> = futures::stream::iter(prefixes.to_vec())
        .map(|prefix| {
            let meta = Arc::clone(meta);
            async move {
                let stat = directory_marker_stat(&meta, &prefix, None).await;
                stat.map(|stat| (prefix, stat))
            }
        })
        .buffered(meta.max_concurrency())
        .collect()
        .await;
    found.into_iter().flatten().collect()
}

pub(in crate::fs) async fn resolve_file<S: ObjectStore>(
    meta: &Arc<MetadataRequests<S>>,
    posix_metadata: PosixMetadata,
    object: ListedObject,
) -> Result<ListedFile> {
    let listed = Stat {
        size: object.size,
        mtime: Some(object.last_modified),
        etag: object.etag.clone(),
        headers: PosixHeaders::default(),
    };
    let stat = match posix_metadata {
        PosixMetadata::ListingOnly => listed,
        PosixMetadata::FromHeaders => match meta
            .headers_or_head(&object.key, &object.etag, object.last_modified)
            .await
        {
            Known::Cached(headers) => Stat { headers, ..listed },
            // Newer than the listing if the object changed in between.
            Known::Head(Ok(head)) => Stat::from_head(&head),
            // Deleted since the listing: show what was listed.
            Known::Head(Err(error)) if matches!(*error, StoreError::NotFound { .. }) => listed,
            Known::Head(Err(error)) => return Err(Error::from(error)),
        },
    };
    Ok(ListedFile {
        key: object.key,
        stat,
    })
}
