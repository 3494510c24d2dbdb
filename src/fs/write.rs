//! File contents: opening for writing, writes, read-after-write, commits.
//!
//! A file open for writing has one `OpenWrite` on this mount (`state.rs`),
//! shared by all its descriptors through `WriterRef`s (`writer.rs`): the
//! staged copy (see `crate::upload`), its size, the POSIX headers its object
//! will carry, and one state saying where its bytes are. `flush` (each
//! `close()`) and `fsync` commit it when it owes a commit and return the
//! upload's error, so `close()` is the durability point; the staged copy
//! stays until the last descriptor is released, so a caller can retry.
//! While a file is open for writing its inode's stat is local
//! (`Inode::is_being_written`) and listings and lookups do not overwrite it.
//!
//! POSIX metadata is written as s3fs-fuse writes it: `x-amz-meta-mode`
//! (decimal `st_mode`, type bits included), `-uid`, `-gid`, and `-mtime`
//! (epoch seconds), so buckets written by either read the same under both.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::{FutureExt, StreamExt, stream};

use crate::config::WriteMode;
use crate::fs::dir::walk::Change;
use crate::fs::{Entry, Error, FileKind, Filesystem, Result, Stat, check_name};
use crate::object_format::{PosixHeaders, new_object_headers};
use crate::store::{ObjectHeaders, ObjectStore};
use crate::upload::CopySource;

mod state;
mod writer;

pub(super) use state::{OpenWrite, replace_headers_keeping};
pub(super) use writer::{Discard, LetGo, SharedWriter, WriterRef, WriterTable, discard_with};

/// Files uploaded at once when the mount stops: enough to overlap their
/// round trips, few enough that each one's parts still get the bandwidth.
const SHUTDOWN_PARALLELISM: usize = 4;

/// The headers a streamed upload is created with, before the file is
/// complete: without times, so that the object's Last-Modified (its
/// completion) stands for them, as s3fs reads an object without them, and no
/// copy is needed to correct them afterwards.
fn streamed_headers(key: &str, headers: &PosixHeaders) -> ObjectHeaders {
    new_object_headers(
        key,
        &PosixHeaders {
            atime: None,
            ctime: None,
            mtime: None,
            ..headers.clone()
        },
    )
}

fn upload_io(error: std::io::Error) -> Error {
    Error::from(crate::upload::UploadError::Staging(error))
}

/// Who asks: new entries belong to the caller, as on a local file system.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

impl<S: ObjectStore> Filesystem<S> {
    /// Fails on a read-only mount; else the change about to be made, which
    /// listings kept from before or during it must not outlive.
    pub(super) fn check_writable(&self) -> Result<Change> {
        match self.config.write_mode {
            WriteMode::ReadOnly => Err(Error::ReadOnly),
            WriteMode::ReadWrite => Ok(Change::new(&self.walks)),
        }
    }

    pub(super) fn is_being_written(&self, ino: u64) -> bool {
        self.writes.lock().unwrap().contains_key(&ino)
    }

    fn writer_ref(&self, writer: Arc<SharedWriter>, ino: u64) -> WriterRef {
        WriterRef::new(writer, ino, &self.writes, &self.inodes, &self.discard)
    }

    /// One more reference to the inode's shared `OpenWrite`, created staged
    /// with the object's current contents unless `truncate`.
    pub(super) async fn writer_for(&self, ino: u64, truncate: bool) -> Result<WriterRef> {
        let _change = self.check_writable()?;
        loop {
            let existing = self.writes.lock().unwrap().get(&ino).cloned();
            if let Some(shared) = existing {
                if !shared.join() {
                    // Its last holder is closing it; it leaves the table
                    // at once, then we stage afresh.
                    tokio::task::yield_now().await;
                    continue;
                }
                let writer = self.writer_ref(shared, ino);
                if truncate {
                    let mut open = writer.shared().open.lock().await;
                    open.truncate_to_empty(&self.store).await?;
                    self.update_local_stat(&open);
                }
                return Ok(writer);
            }
            let open = self.stage_for_writing(ino, truncate).await?;
            let shared = SharedWriter::new(open);
            let raced = {
                let mut writes = self.writes.lock().unwrap();
                match writes.get(&ino) {
                    // Another open staged it meanwhile: join that one; ours
                    // is dropped unused.
                    Some(_) => true,
                    None => {
                        writes.insert(ino, Arc::clone(&shared));
                        false
                    }
                }
            };
            if raced {
                continue;
            }
            self.set_being_written(ino, true);
            let writer = self.writer_ref(shared, ino);
            if truncate {
                let open = writer.shared().open.lock().await;
                self.update_local_stat(&open);
            }
            return Ok(writer);
        }
    }

    /// A staged copy of the inode's object (or an empty one).
    async fn stage_for_writing(&self, ino: u64, truncate: bool) -> Result<OpenWrite> {
        let (key, stat) = {
            let inodes = self.inodes.lock().unwrap();
            let inode = inodes.get(ino).ok_or(Error::NotFound)?;
            (inode.key.clone(), inode.stat.clone())
        };
        log::debug!(
            "{key}: staging {} bytes (ETag {})",
            if truncate { 0 } else { stat.size },
            stat.etag
        );
        let staging = self.staging.stage();
        if truncate {
            let mut open = OpenWrite::empty(ino, key, staging, stat.headers.clone());
            if stat.size == 0 && !stat.etag.is_empty() {
                // Already empty: O_TRUNC changes nothing but the times.
                open = OpenWrite::staged_from(
                    ino,
                    open.staging,
                    CopySource {
                        key: open.key,
                        etag: stat.etag,
                        size: 0,
                    },
                    stat.headers,
                );
            }
            return Ok(open);
        }
        if stat.size > 0 {
            staging
                .fill_from(&*self.store, &key, &stat.etag, stat.size, &self.upload)
                .await?;
        }
        let object = CopySource {
            key,
            etag: stat.etag,
            size: stat.size,
        };
        Ok(OpenWrite::staged_from(ino, staging, object, stat.headers))
    }

    fn set_being_written(&self, ino: u64, is_being_written: bool) {
        if let Some(inode) = self.inodes.lock().unwrap().get_mut(ino) {
            inode.is_being_written = is_being_written;
        }
    }

    /// POSIX: an O_TRUNC open of an existing file moves mtime and ctime,
    /// even when it was empty already.
    pub(super) async fn mark_truncated(&self, writer: &WriterRef, drops_setid: bool) {
        let mut open = writer.shared().open.lock().await;
        open.headers.touch_contents(SystemTime::now());
        if drops_setid {
            open.headers.drop_setid();
        }
        self.update_local_stat(&open);
    }

    pub(super) fn update_local_stat(&self, open: &OpenWrite) {
        if let Some(inode) = self.inodes.lock().unwrap().get_mut(open.ino) {
            inode.stat.size = open.size;
            inode.stat.headers = open.headers.clone();
            inode.stat.mtime = open.headers.mtime.or(inode.stat.mtime);
        }
    }

    /// Lets go of one reference; the last one commits anything still owed.
    pub(super) async fn release_writer(&self, writer: WriterRef) {
        let Err(writer) = writer.let_go_if_shared() else {
            return;
        };
        let shared = Arc::clone(writer.shared());
        {
            let mut open = shared.open.lock().await;
            log::debug!(
                "{}: last writer handle released (owes a commit: {})",
                open.key,
                open.needs_commit()
            );
            if let Err(error) = self.commit(&mut open).await {
                log::error!(
                    "{}: last descriptor closed with an upload still failing; the new contents are lost: {error}",
                    open.key
                );
            }
            // Nothing is uploaded after the last close, whoever joins later.
            if let LetGo::Last = writer.let_go() {
                open.unlink(&self.store);
            }
        }
    }

    /// Uploads what the file owes; on success its object is the new contents.
    pub(super) async fn commit(&self, open: &mut OpenWrite) -> Result<()> {
        let _change = Change::new(&self.walks);
        let committed = open.commit(&self.store, &self.upload).await;
        let etag = match committed {
            Ok(Some(etag)) => etag,
            Ok(None) => return Ok(()),
            // The object holding bytes that left staging was replaced or
            // removed by someone else: they exist nowhere any more.
            Err(error) if error.object_is_gone() => {
                log::warn!(
                    "upload of {} failed: its streamed bytes were only in the object, which another client replaced or removed",
                    open.key
                );
                return Err(Error::Stale {
                    key: open.key.clone(),
                });
            }
            Err(error) => {
                log::warn!("upload of {} failed: {error}", open.key);
                return Err(Error::Upload(Arc::new(error)));
            }
        };
        log::debug!("committed {} ({} bytes, ETag {etag})", open.key, open.size);
        self.meta
            .headers()
            .insert(&open.key, &etag, open.headers.clone(), None);
        let mut inodes = self.inodes.lock().unwrap();
        if let Some(inode) = inodes.get_mut(open.ino) {
            inode.stat.etag = etag;
            inode.stat.size = open.size;
            inode.validated_at = std::time::Instant::now();
            let (parent, name) = (inode.parent, inode.name.clone());
            drop(inodes);
            if let Some(names) = self.created_here.lock().unwrap().get_mut(&parent) {
                names.remove(&name);
            }
            self.contents.set(parent, &name, Some(FileKind::File));
        }
        Ok(())
    }

    /// Read-after-write from the staged copy.
    pub(super) async fn read_staged(
        &self,
        open: &mut OpenWrite,
        offset: u64,
        size: usize,
    ) -> Result<Bytes> {
        open.read(&self.store, &self.upload, offset, size).await
    }

    /// The writer behind a descriptor open for writing.
    fn writer_of(&self, fh: u64) -> Result<Arc<SharedWriter>> {
        self.writer_handles
            .lock()
            .unwrap()
            .get(&fh)
            .map(|writer| Arc::clone(writer.shared()))
            .ok_or(Error::BadHandle { fh })
    }

    /// `flush` and `fsync`: commit the handle's file if it owes a commit.
    pub async fn flush(&self, fh: u64) -> Result<()> {
        let handle = self.handle(fh)?;
        if !handle.is_writer() {
            return Ok(());
        }
        let writer = self.writer_of(fh)?;
        let mut open = writer.open.lock().await;
        self.commit(&mut open).await
    }

    pub async fn write(&self, fh: u64, offset: u64, data: Bytes) -> Result<u32> {
        let writer = self.writer_of(fh)?;
        if data.is_empty() {
            // POSIX: writing nothing changes nothing, not even mtime, and
            // cannot collide with bytes a stream already gave back.
            return Ok(0);
        }
        let mut open = writer.open.lock().await;
        let len = data.len() as u64;
        open.prepare_change(&self.store, &self.upload, offset)
            .await?;
        open.staging
            .write_at(offset, data)
            .await
            .map_err(upload_io)?;
        open.mark_changed(offset..offset + len);
        open.size = open.size.max(offset + len);
        open.headers.touch_contents(SystemTime::now());
        self.update_local_stat(&open);
        open.upload_completed_parts(&self.store, &self.upload)
            .await?;
        Ok(len as u32)
    }

    /// Creates and opens a new empty file; it is listed from now on and
    /// reaches the bucket at the first commit.
    pub async fn create(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        caller: Caller,
    ) -> Result<(Entry, u64)> {
        let _change = self.check_writable()?;
        let parent_key = self.directory_key(parent)?;
        check_name(name)?;
        let key = format!("{parent_key}{name}");
        let headers = PosixHeaders::created(
            libc::S_IFREG | (mode & 0o7777),
            caller.uid,
            caller.gid,
            SystemTime::now(),
        );
        let stat = Stat {
            size: 0,
            mtime: headers.mtime,
            etag: String::new(),
            headers: headers.clone(),
        };
        let entry = self.remember(parent, name, FileKind::File, key.clone(), stat.clone());
        let ino = entry.attr.ino;
        let staging = self.staging.stage();
        let shared = SharedWriter::new(OpenWrite::empty(ino, key.clone(), staging, headers));
        let previous = self.writes.lock().unwrap().insert(ino, Arc::clone(&shared));
        if previous.is_some() {
            log::warn!(
                "{key}: created over a file still open for writing; the older one is not uploaded"
            );
        }
        self.set_being_written(ino, true);
        self.created_here
            .lock()
            .unwrap()
            .entry(parent)
            .or_default()
            .insert(name.to_owned());
        let writer = self.writer_ref(shared, ino);
        let fh = self.add_handle(ino, key, stat, Some(writer));
        Ok((entry, fh))
    }

    /// Commits every file that owes a commit (when the mount stops), a few
    /// at once, logging progress; returns the keys that could not be
    /// uploaded. A panic while committing one file fails that file only.
    pub async fn commit_all(&self) -> Vec<String> {
        let writers: Vec<_> = self.writes.lock().unwrap().values().cloned().collect();
        let mut owing = Vec::new();
        for writer in writers {
            let open = writer.open.lock().await;
            if open.needs_commit() {
                owing.push((open.key.clone(), Arc::clone(&writer)));
            }
        }
        let total = owing.len();
        if total == 0 {
            return Vec::new();
        }
        log::info!("uploading {total} file(s) still open with changes");
        let commits = owing.into_iter().map(|(key, writer)| async move {
            log::info!("uploading {key}");
            let committed = AssertUnwindSafe(async {
                let mut open = writer.open.lock().await;
                self.commit(&mut open).await
            })
            .catch_unwind()
            .await;
            let outcome = match committed {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err("the upload panicked".to_owned()),
            };
            (key, outcome)
        });
        let mut commits = stream::iter(commits).buffer_unordered(SHUTDOWN_PARALLELISM);
        let (mut done, mut failed) = (0, Vec::new());
        while let Some((key, outcome)) = commits.next().await {
            done += 1;
            match outcome {
                Ok(()) => log::info!("uploaded {key} ({done} of {total})"),
                Err(error) => {
                    log::error!("{key}: not uploaded ({done} of {total}): {error}");
                    failed.push(key);
                }
            }
        }
        failed
    }

    /// Names created on this mount and not yet uploaded, for listings.
    pub(super) fn created_names(&self, parent: u64) -> Vec<String> {
        self.created_here
            .lock()
            .unwrap()
            .get(&parent)
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }
}
