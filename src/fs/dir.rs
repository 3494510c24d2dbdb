//! Directory listings, streamed one ListObjectsV2 page at a time.
//!
//! An open directory holds one page of resolved entries and the continuation
//! token of the next, never the whole listing, so a directory of millions of
//! keys costs one page of memory. Offsets number entries from the start of the
//! listing (`.` is 0, `..` is 1, children from 2), so `readdir` resumes where
//! the kernel stopped; an offset before the held page restarts the listing.
//!
//! A file `a` is hidden when a prefix `a/` exists. The prefix may come on a
//! later page than the file (`a!` sorts between `a` and `a/`), so files that a
//! later page could shadow are carried over to it before they are shown.

use std::collections::HashSet;

use futures::StreamExt;
use futures::stream::FuturesOrdered;

use crate::cache::meta::PosixHeaders;
use crate::config::PosixMetadata;
use crate::fs::{DirEntry, Error, FileKind, Filesystem, Result, Stat, is_valid_name};
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::store::{ListPage, ListedObject, ObjectStore, StoreError};

/// Keys per ListObjectsV2 page: S3's maximum.
const LIST_PAGE_KEYS: u32 = 1000;

/// Entries handed out per `readdirplus` call. The kernel's buffer (one page,
/// 4 KiB) takes fewer; entries it does not take are given back, so this only
/// bounds that waste.
const ENTRIES_PER_CALL: usize = 128;

/// First child's offset, after `.` and `..`.
const FIRST_CHILD_OFFSET: u64 = 2;

struct Resolved {
    name: String,
    kind: FileKind,
    key: String,
    stat: Stat,
}

pub struct DirStream {
    ino: u64,
    /// Identifies this pass over the directory (see `Filesystem::is_fresh`).
    generation: u64,
    prefix: String,
    page: Vec<Resolved>,
    /// Offset of `page[0]`.
    page_offset: u64,
    continuation: Option<String>,
    /// Files held back until the next page shows whether a prefix shadows them.
    carried: Vec<ListedObject>,
    is_listed_to_end: bool,
    /// The next page, already being listed.
    next_page_listing: Option<JoinHandle<std::result::Result<ListPage, StoreError>>>,
}

impl Drop for DirStream {
    fn drop(&mut self) {
        if let Some(listing) = self.next_page_listing.take() {
            listing.abort();
        }
    }
}

impl DirStream {
    pub fn new(ino: u64, prefix: String, generation: u64) -> Self {
        DirStream {
            ino,
            generation,
            prefix,
            page: Vec::new(),
            page_offset: FIRST_CHILD_OFFSET,
            continuation: None,
            carried: Vec::new(),
            is_listed_to_end: false,
            next_page_listing: None,
        }
    }

    fn restart(&mut self, generation: u64) {
        *self = DirStream::new(self.ino, std::mem::take(&mut self.prefix), generation);
    }
}

impl<S: ObjectStore> Filesystem<S> {
    /// Entries from `offset` on, with attributes; an empty result ends the
    /// listing. See `DirEntry` for the lookup references they carry.
    pub async fn readdirplus(&self, fh: u64, offset: u64) -> Result<Vec<DirEntry>> {
        let stream = self
            .dirs
            .lock()
            .unwrap()
            .get(&fh)
            .cloned()
            .ok_or(Error::BadHandle { fh })?;
        // Held across the listing: readdir calls on one handle run in order.
        let mut stream = stream.lock().await;
        let mut entries = Vec::new();
        if offset < FIRST_CHILD_OFFSET {
            let (dot, dotdot) = self.dot_entries(stream.ino)?;
            for (name, entry, next_offset) in [(".", dot, 1), ("..", dotdot, 2)] {
                if next_offset > offset {
                    entries.push(DirEntry {
                        name: name.to_owned(),
                        next_offset,
                        entry,
                        counts_as_lookup: false,
                    });
                }
            }
        }
        let offset = offset.max(FIRST_CHILD_OFFSET);
        if offset < stream.page_offset {
            stream.restart(
                self.next_listing
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            );
        }
        while offset >= stream.page_offset + stream.page.len() as u64 && !stream.is_listed_to_end {
            self.next_page(&mut stream).await?;
        }
        let start = (offset - stream.page_offset) as usize;
        let parent = stream.ino;
        for (index, child) in stream
            .page
            .iter()
            .enumerate()
            .skip(start)
            .take(ENTRIES_PER_CALL)
        {
            let entry = self.remember_listed(
                parent,
                &child.name,
                child.kind,
                child.key.clone(),
                child.stat.clone(),
                Some(stream.generation),
            );
            entries.push(DirEntry {
                name: child.name.clone(),
                next_offset: stream.page_offset + index as u64 + 1,
                entry,
                counts_as_lookup: true,
            });
        }
        Ok(entries)
    }

    /// Replaces the held page with the next non-empty one, or marks the end.
    async fn next_page(&self, stream: &mut DirStream) -> Result<()> {
        stream.page_offset += stream.page.len() as u64;
        stream.page.clear();
        while stream.page.is_empty() && !stream.is_listed_to_end {
            let page = match stream.next_page_listing.take() {
                Some(listing) => listing.await.unwrap_or_else(|join| {
                    Err(StoreError::Other {
                        source: format!("listing task failed: {join}").into(),
                    })
                })?,
                None => {
                    let _permit = self
                        .metadata_requests
                        .acquire()
                        .await
                        .expect("never closed");
                    self.store
                        .list_page(
                            &stream.prefix,
                            true,
                            stream.continuation.as_deref(),
                            LIST_PAGE_KEYS,
                        )
                        .await?
                }
            };
            // The next page is listed while this one's HEADs run, as a
            // client listing and HEADing by hand would overlap them.
            if let Some(token) = page.next.clone() {
                let store = Arc::clone(&self.store);
                let requests = Arc::clone(&self.metadata_requests);
                let prefix = stream.prefix.clone();
                stream.next_page_listing = Some(tokio::spawn(async move {
                    let _permit = requests.acquire_owned().await.expect("never closed");
                    store
                        .list_page(&prefix, true, Some(&token), LIST_PAGE_KEYS)
                        .await
                }));
            }
            stream.continuation = page.next.clone();
            let is_last_page = page.next.is_none();
            stream.is_listed_to_end = is_last_page;
            if is_last_page {
                self.completed_listings
                    .lock()
                    .unwrap()
                    .put(stream.generation, std::time::Instant::now());
            }

            let mut directories: Vec<(String, String)> = Vec::new();
            for prefix in &page.common_prefixes {
                let name = prefix[stream.prefix.len()..].trim_end_matches('/');
                if is_valid_name(name) {
                    directories.push((name.to_owned(), prefix.clone()));
                } else {
                    self.warn_once(prefix, "not a valid directory name");
                }
            }
            let directory_names: HashSet<&str> =
                directories.iter().map(|(n, _)| n.as_str()).collect();

            // The last key or prefix of this page: a prefix `f/` for a file
            // `f` can only come later if it sorts after everything here.
            let last_on_page = page
                .objects
                .iter()
                .map(|o| o.key.as_str())
                .chain(page.common_prefixes.iter().map(String::as_str))
                .max()
                .unwrap_or("")
                .to_owned();

            let mut files = Vec::new();
            let mut carried = Vec::new();
            for object in std::mem::take(&mut stream.carried)
                .into_iter()
                .chain(page.objects)
            {
                if object.key == stream.prefix {
                    continue; // this directory's own marker
                }
                let name = &object.key[stream.prefix.len()..];
                if !is_valid_name(name) {
                    self.warn_once(&object.key, "not a valid file name");
                    continue;
                }
                if directory_names.contains(name) {
                    self.warn_once(
                        &object.key,
                        "an object shares its name with a directory; the directory is shown",
                    );
                    continue;
                }
                if !is_last_page && format!("{}/", object.key).as_str() > last_on_page.as_str() {
                    carried.push(object);
                    continue;
                }
                files.push(object);
            }
            stream.carried = carried;

            let mut resolved = self.resolve_files(&stream.prefix, files).await?;
            resolved.extend(directories.into_iter().map(|(name, key)| Resolved {
                name,
                kind: FileKind::Directory,
                key,
                stat: self.implicit_directory_stat(),
            }));
            // Files created here and not uploaded yet: listed once, from the
            // inode table, at the end of the listing.
            let created = self.created_names(stream.ino);
            if !created.is_empty() {
                resolved.retain(|entry| !created.contains(&entry.name));
                if is_last_page {
                    let inodes = self.inodes.lock().unwrap();
                    for name in created {
                        if let Some((_, inode)) = inodes.child(stream.ino, &name) {
                            resolved.push(Resolved {
                                name,
                                kind: inode.kind,
                                key: inode.key.clone(),
                                stat: inode.stat.clone(),
                            });
                        }
                    }
                }
            }
            resolved.sort_by(|a, b| a.name.cmp(&b.name));
            stream.page = resolved;
        }
        Ok(())
    }

    /// Attributes for listed files: the listing's size, mtime and ETag, plus
    /// POSIX headers from the cache or from HEADs sent in parallel (bounded by
    /// the request semaphore).
    async fn resolve_files(&self, prefix: &str, files: Vec<ListedObject>) -> Result<Vec<Resolved>> {
        let mut pending = FuturesOrdered::new();
        for object in files {
            pending.push_back(async move {
                let listed = Stat {
                    size: object.size,
                    mtime: Some(object.last_modified),
                    etag: object.etag.clone(),
                    headers: PosixHeaders::default(),
                };
                let stat = match self.config.posix_metadata {
                    PosixMetadata::ListingOnly => listed,
                    PosixMetadata::FromHeaders => match self.headers.get(&object.key, &object.etag)
                    {
                        Some(headers) => Stat { headers, ..listed },
                        None => {
                            match self.head(&object.key).await {
                                // Newer than the listing if the object changed in between.
                                Ok(meta) => self.stat_from_head(&object.key, &meta),
                                // Deleted since the listing: show what was listed.
                                Err(StoreError::NotFound { .. }) => listed,
                                Err(error) => return Err(Error::from(error)),
                            }
                        }
                    },
                };
                Ok(Resolved {
                    name: object.key[prefix.len()..].to_owned(),
                    kind: FileKind::File,
                    stat,
                    key: object.key,
                })
            });
        }
        let mut resolved = Vec::with_capacity(pending.len());
        while let Some(result) = pending.next().await {
            resolved.push(result?);
        }
        Ok(resolved)
    }
}
