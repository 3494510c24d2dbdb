//! Changing the namespace and file contents.
//!
//! A file open for writing has one `OpenWrite` on this mount, shared by all
//! its descriptors: the staged copy (see `crate::upload`), its size, and the
//! POSIX headers its object will carry. `flush` (each `close()`) and `fsync`
//! commit it when dirty and return the upload's error, so `close()` is the
//! durability point; the staged copy stays until the last descriptor is
//! released, so a caller can retry. While a file is open for writing its
//! inode's stat is local (`Inode::is_being_written`) and listings and
//! lookups do not overwrite it.
//!
//! POSIX metadata is written as s3fs-fuse writes it: `x-amz-meta-mode`
//! (decimal `st_mode`, type bits included), `-uid`, `-gid`, and `-mtime`
//! (epoch seconds), so buckets written by either read the same under both.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream;

use crate::cache::meta::PosixHeaders;
use crate::config::WriteMode;
use crate::fs::{Entry, Error, FileKind, Filesystem, Result, Stat, is_valid_name};
use crate::store::{ObjectStore, StoreError};
use crate::upload::{CopySource, DirtyRanges, Staging, StreamingUpload, Unchanged, copy_object};

/// Keys moved at once when a directory is renamed.
const RENAME_PARALLELISM: usize = 16;

pub struct OpenWrite {
    ino: u64,
    key: String,
    staging: Staging,
    size: u64,
    is_dirty: bool,
    /// Removed by `unlink` while open: nothing is uploaded any more.
    is_unlinked: bool,
    handles: usize,
    headers: PosixHeaders,
    /// Uploads parts while the file is written sequentially from empty;
    /// `None` for any other pattern, which uploads the whole file at commit.
    stream: Option<StreamingUpload>,
    /// A streamed commit left bytes `[0, n)` out of the staging file: they
    /// are fetched back from the object (pinned to the ETag) before use.
    missing: Option<(u64, String)>,
    /// The object the staged file equals outside `dirty`, so that a commit
    /// copies unchanged parts server side instead of uploading them.
    copy_source: Option<CopySource>,
    dirty: DirtyRanges,
}

impl OpenWrite {
    fn new(ino: u64, key: String, staging: Staging, headers: PosixHeaders) -> Self {
        OpenWrite {
            ino,
            key,
            staging,
            size: 0,
            is_dirty: false,
            is_unlinked: false,
            handles: 1,
            headers,
            stream: Some(StreamingUpload::new()),
            missing: None,
            copy_source: None,
            dirty: DirtyRanges::default(),
        }
    }

    async fn read(&self, offset: u64, size: usize) -> Result<Bytes> {
        if offset >= self.size {
            return Ok(Bytes::new());
        }
        let len = (self.size - offset).min(size as u64) as usize;
        let mut bytes = self.staging.read_at(offset, len).await.map_err(upload_io)?;
        if bytes.len() < len {
            // A hole at the end of a grown file reads as zeros.
            let mut padded = bytes.to_vec();
            padded.resize(len, 0);
            bytes = Bytes::from(padded);
        }
        Ok(bytes)
    }
}

fn upload_io(error: std::io::Error) -> Error {
    Error::from(crate::upload::UploadError::Staging(error))
}

/// User metadata in s3fs-fuse's format.
pub(super) fn s3fs_metadata(headers: &PosixHeaders) -> HashMap<String, String> {
    let mut metadata = HashMap::new();
    if let Some(mode) = headers.mode {
        metadata.insert("mode".to_owned(), mode.to_string());
    }
    if let Some(uid) = headers.uid {
        metadata.insert("uid".to_owned(), uid.to_string());
    }
    if let Some(gid) = headers.gid {
        metadata.insert("gid".to_owned(), gid.to_string());
    }
    if let Some(mtime) = headers.mtime {
        let seconds = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        metadata.insert("mtime".to_owned(), seconds.to_string());
    }
    metadata
}

/// The metadata a streamed upload is created with, before the file is
/// complete: without `mtime`, so that the object's Last-Modified (its
/// completion) stands for it, as s3fs reads an object without the header.
fn streamed_metadata(headers: &PosixHeaders) -> HashMap<String, String> {
    s3fs_metadata(&PosixHeaders {
        mtime: None,
        ..*headers
    })
}

/// What a setattr call changes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    pub size: Option<u64>,
    /// Permission bits (the file type is kept).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<SystemTime>,
}

/// Who asks: new entries belong to the caller, as on a local file system.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

impl<S: ObjectStore> Filesystem<S> {
    pub(super) fn check_writable(&self) -> Result<()> {
        match self.config.write_mode {
            WriteMode::ReadOnly => Err(Error::ReadOnly),
            WriteMode::ReadWrite => Ok(()),
        }
    }

    pub(super) fn is_being_written(&self, ino: u64) -> bool {
        self.writes.lock().unwrap().contains_key(&ino)
    }

    fn set_being_written(&self, ino: u64, is_being_written: bool) {
        if let Some(inode) = self.inodes.lock().unwrap().get_mut(ino) {
            inode.is_being_written = is_being_written;
        }
    }

    /// The inode's shared `OpenWrite`, one more handle on it. Created staged
    /// with the object's current contents unless `truncate`.
    pub(super) async fn writer_for(
        &self,
        ino: u64,
        truncate: bool,
    ) -> Result<Arc<tokio::sync::Mutex<OpenWrite>>> {
        self.check_writable()?;
        let existing = self.writes.lock().unwrap().get(&ino).cloned();
        if let Some(writer) = existing {
            let mut open = writer.lock().await;
            let is_current = self
                .writes
                .lock()
                .unwrap()
                .get(&ino)
                .is_some_and(|current| Arc::ptr_eq(current, &writer));
            if !is_current {
                // Its last handle was released while we waited for it.
                drop(open);
                return Box::pin(self.writer_for(ino, truncate)).await;
            }
            open.handles += 1;
            log::debug!("{}: joined open writer, {} handles", open.key, open.handles);
            if truncate {
                open.staging.set_len(0).await.map_err(upload_io)?;
                open.size = 0;
                open.is_dirty = true;
                open.missing = None;
                open.copy_source = None;
                open.dirty.clear();
                if let Some(stream) = open.stream.replace(StreamingUpload::new()) {
                    stream.abandon(&self.store);
                }
                self.update_local_stat(&open);
            }
            drop(open);
            return Ok(writer);
        }
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
        if !truncate && stat.size > 0 {
            staging
                .fill_from(&*self.store, &key, &stat.etag, stat.size, &self.upload)
                .await
                .map_err(Error::from)?;
        }
        let mut open = OpenWrite::new(ino, key, staging, stat.headers);
        if !truncate {
            open.size = stat.size;
            open.stream = None;
            open.copy_source = (!stat.etag.is_empty()).then(|| CopySource {
                key: open.key.clone(),
                etag: stat.etag.clone(),
                size: stat.size,
            });
        }
        open.is_dirty = truncate && stat.size > 0;
        let raced = {
            let mut writes = self.writes.lock().unwrap();
            match writes.get(&ino) {
                // Another open staged it meanwhile: join it, ours is dropped
                // unused. try_lock fails only while someone holds it; then
                // take the slow path again.
                Some(raced) => Some(match raced.try_lock() {
                    Ok(mut other) => {
                        other.handles += 1;
                        Some(Arc::clone(raced))
                    }
                    Err(_) => None,
                }),
                None => {
                    writes.insert(ino, Arc::new(tokio::sync::Mutex::new(open)));
                    None
                }
            }
        };
        match raced {
            Some(Some(joined)) => return Ok(joined),
            Some(None) => return Box::pin(self.writer_for(ino, truncate)).await,
            None => {}
        }
        let writer = self
            .writes
            .lock()
            .unwrap()
            .get(&ino)
            .cloned()
            .ok_or(Error::NotFound)?;
        self.set_being_written(ino, true);
        if truncate {
            let open = writer.lock().await;
            self.update_local_stat(&open);
        }
        Ok(writer)
    }

    fn update_local_stat(&self, open: &OpenWrite) {
        if let Some(inode) = self.inodes.lock().unwrap().get_mut(open.ino) {
            inode.stat.size = open.size;
            inode.stat.headers = open.headers;
            inode.stat.mtime = open.headers.mtime.or(inode.stat.mtime);
        }
    }

    /// Drops one handle's reference; the last one commits anything still dirty.
    pub(super) async fn release_writer(&self, ino: u64) {
        let Some(writer) = self.writes.lock().unwrap().get(&ino).cloned() else {
            return;
        };
        let mut open = writer.lock().await;
        open.handles = open.handles.saturating_sub(1);
        if open.handles > 0 {
            return;
        }
        log::debug!(
            "{}: last writer handle released (dirty: {})",
            open.key,
            open.is_dirty
        );
        if open.is_dirty
            && !open.is_unlinked
            && let Err(error) = self.commit(&mut open).await
        {
            log::error!(
                "{}: last descriptor closed with an upload still failing; the new contents are lost: {error}",
                open.key
            );
        }
        if let Some(stream) = open.stream.take() {
            stream.abandon(&self.store);
        }
        self.writes.lock().unwrap().remove(&ino);
        self.set_being_written(ino, false);
    }

    /// Uploads a dirty staged file; on success the object is the new contents.
    async fn commit(&self, open: &mut OpenWrite) -> Result<()> {
        if !open.is_dirty || open.is_unlinked {
            return Ok(());
        }
        let metadata = s3fs_metadata(&open.headers);
        let streamed = open.stream.as_ref().is_some_and(|s| s.has_upload());
        let uploaded = if streamed {
            self.finish_stream(open).await
        } else {
            let unchanged = open
                .copy_source
                .as_ref()
                .filter(|source| source.key == open.key)
                .map(|source| Unchanged {
                    source,
                    dirty: &open.dirty,
                });
            open.staging
                .commit(
                    &*self.store,
                    &open.key,
                    open.size,
                    &metadata,
                    unchanged,
                    &self.upload,
                )
                .await
        };
        let etag = uploaded.map_err(|error| {
            log::warn!("upload of {} failed: {error}", open.key);
            Error::Upload(Arc::new(error))
        })?;
        // An empty commit (a shell redirect or `dd` closes a duplicate
        // descriptor before writing) leaves the file still writable as a
        // stream; after any other, changes go whole through the staged copy.
        if open.size > 0 {
            open.stream = None;
        } else if open.stream.is_some() {
            open.stream = Some(StreamingUpload::new());
        }
        log::debug!("committed {} ({} bytes, ETag {etag})", open.key, open.size);
        open.is_dirty = false;
        open.copy_source = Some(CopySource {
            key: open.key.clone(),
            etag: etag.clone(),
            size: open.size,
        });
        open.dirty.clear();
        self.meta.headers().insert(&open.key, &etag, open.headers);
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

    /// Completes a streamed upload. Bytes it dropped from staging are
    /// fetched back from the new object if anything touches them later.
    async fn finish_stream(
        &self,
        open: &mut OpenWrite,
    ) -> std::result::Result<String, crate::upload::UploadError> {
        let stream = open
            .stream
            .as_mut()
            .expect("the caller checked for a stream");
        let mut etag = stream
            .finish(&open.staging, &self.store, open.size, &self.upload)
            .await?;
        let released = stream.released_through();
        if stream.created_with() != Some(&streamed_metadata(&open.headers)) {
            // chmod or chown while the parts were on their way.
            let metadata = s3fs_metadata(&open.headers);
            match self
                .store
                .copy(&open.key, &open.key, Some(&etag), Some(&metadata))
                .await
            {
                Ok(copied) => etag = copied,
                Err(error) => log::error!(
                    "{}: uploaded, but its new mode or owner could not be set: {error}",
                    open.key
                ),
            }
        }
        if released > 0 {
            open.missing = Some((released, etag.clone()));
        }
        Ok(etag)
    }

    /// Fetches back what a streamed commit dropped from the staging file,
    /// before anything reads or changes those bytes through it.
    async fn restore_missing(&self, open: &mut OpenWrite) -> Result<()> {
        if let Some((through, etag)) = open.missing.take() {
            log::debug!("{}: restaging {through} uploaded bytes", open.key);
            if let Err(error) = open
                .staging
                .fill_range(&*self.store, &open.key, &etag, 0..through, &self.upload)
                .await
            {
                open.missing = Some((through, etag));
                return Err(error.into());
            }
        }
        Ok(())
    }

    /// Before a change at `offset`: a stream that cannot take it is given up
    /// (the whole file goes at commit), unless it already dropped bytes.
    async fn prepare_change(&self, open: &mut OpenWrite, offset: u64) -> Result<()> {
        if let Some(stream) = &open.stream
            && !stream.accepts_change_at(offset, open.size)
        {
            if stream.released_through() > 0 {
                log::warn!(
                    "{}: change at {offset} refused: bytes before {} are uploaded and not staged any more",
                    open.key,
                    stream.released_through()
                );
                return Err(Error::AlreadyUploaded);
            }
            log::debug!(
                "{}: not written sequentially; uploaded whole at commit",
                open.key
            );
            let stream = open.stream.take().expect("checked above");
            stream.abandon(&self.store);
        }
        self.restore_missing(open).await
    }

    /// Read-after-write from the staged copy.
    pub(super) async fn read_staged(
        &self,
        open: &mut OpenWrite,
        offset: u64,
        size: usize,
    ) -> Result<Bytes> {
        if let Some(stream) = &open.stream
            && offset < stream.released_through()
        {
            log::warn!(
                "{}: read at {offset} refused: the bytes are uploaded and not staged any more until close",
                open.key
            );
            return Err(Error::AlreadyUploaded);
        }
        if open
            .missing
            .as_ref()
            .is_some_and(|(through, _)| offset < *through)
        {
            self.restore_missing(open).await?;
        }
        open.read(offset, size).await
    }

    /// After a write or truncation that the stream accepted: its full parts
    /// go to the store now. If the stream cannot start, the file is uploaded
    /// whole at commit instead.
    async fn upload_completed_parts(&self, open: &mut OpenWrite) -> Result<()> {
        let Some(stream) = open.stream.as_mut() else {
            return Ok(());
        };
        let metadata = streamed_metadata(&open.headers);
        let result = stream
            .after_write(
                &open.staging,
                &self.store,
                &open.key,
                &metadata,
                open.size,
                &self.upload,
            )
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(error) if stream.released_through() == 0 => {
                log::warn!(
                    "{}: streaming upload stopped, uploading at close: {error}",
                    open.key
                );
                let stream = open.stream.take().expect("matched above");
                stream.abandon(&self.store);
                Ok(())
            }
            Err(error) => Err(Error::Upload(Arc::new(error))),
        }
    }

    /// `flush` and `fsync`: commit the handle's file if it is dirty.
    pub async fn flush(&self, fh: u64) -> Result<()> {
        let handle = self.handle(fh)?;
        if !handle.is_writer() {
            return Ok(());
        }
        let writer = self.writes.lock().unwrap().get(&handle.ino()).cloned();
        match writer {
            Some(writer) => self.commit(&mut *writer.lock().await).await,
            None => Ok(()),
        }
    }

    pub async fn write(&self, fh: u64, offset: u64, data: Bytes) -> Result<u32> {
        let handle = self.handle(fh)?;
        let writer = self
            .writes
            .lock()
            .unwrap()
            .get(&handle.ino())
            .cloned()
            .ok_or(Error::BadHandle { fh })?;
        let mut open = writer.lock().await;
        let len = data.len() as u64;
        self.prepare_change(&mut open, offset).await?;
        open.staging
            .write_at(offset, data)
            .await
            .map_err(upload_io)?;
        open.size = open.size.max(offset + len);
        open.dirty.mark(offset..offset + len);
        open.is_dirty = true;
        open.headers.mtime = Some(SystemTime::now());
        self.update_local_stat(&open);
        self.upload_completed_parts(&mut open).await?;
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
        self.check_writable()?;
        let parent_key = self.directory_key(parent)?;
        if !is_valid_name(name) {
            return Err(Error::InvalidArgument);
        }
        let key = format!("{parent_key}{name}");
        let headers = PosixHeaders {
            mode: Some(libc::S_IFREG | (mode & 0o7777)),
            uid: Some(caller.uid),
            gid: Some(caller.gid),
            mtime: Some(SystemTime::now()),
        };
        let stat = Stat {
            size: 0,
            mtime: headers.mtime,
            etag: String::new(),
            headers,
        };
        let entry = self.remember(parent, name, FileKind::File, key.clone(), stat.clone());
        let ino = entry.attr.ino;
        let staging = self.staging.stage();
        let mut open = OpenWrite::new(ino, key.clone(), staging, headers);
        // An empty file is a file too: it is uploaded at the first close.
        open.is_dirty = true;
        self.writes
            .lock()
            .unwrap()
            .insert(ino, Arc::new(tokio::sync::Mutex::new(open)));
        self.set_being_written(ino, true);
        self.created_here
            .lock()
            .unwrap()
            .entry(parent)
            .or_default()
            .insert(name.to_owned());
        let fh = self.add_handle(ino, key, stat, true);
        Ok((entry, fh))
    }

    pub async fn setattr(&self, ino: u64, change: SetAttr) -> Result<Entry> {
        self.check_writable()?;
        let kind = {
            let inodes = self.inodes.lock().unwrap();
            inodes.get(ino).ok_or(Error::NotFound)?.kind
        };
        if kind == FileKind::Directory {
            if change.size.is_some() {
                return Err(Error::IsADirectory);
            }
            self.set_directory_headers(ino, change).await?;
            return self.getattr(ino).await;
        }
        let is_open = self.is_being_written(ino);
        if change.size.is_some() || is_open {
            // Through the staged copy: committed now unless a descriptor that
            // will flush holds it.
            let writer = self.writer_for(ino, change.size == Some(0)).await?;
            {
                let mut open = writer.lock().await;
                if let Some(size) = change.size {
                    self.prepare_change(&mut open, size).await?;
                    open.staging.set_len(size).await.map_err(upload_io)?;
                    let changed_from = size.min(open.size);
                    open.dirty.mark(changed_from..u64::MAX);
                    open.size = size;
                    open.headers.mtime = Some(SystemTime::now());
                }
                apply_headers(&mut open.headers, change);
                open.is_dirty = true;
                self.update_local_stat(&open);
                if open.handles == 1 {
                    self.commit(&mut open).await?;
                }
            }
            self.release_writer(ino).await;
        } else {
            self.replace_headers(ino, change).await?;
        }
        self.getattr(ino).await
    }

    /// chmod, chown, utimens of a committed file: a CopyObject onto itself
    /// that replaces the metadata and keeps the rest of it.
    async fn replace_headers(&self, ino: u64, change: SetAttr) -> Result<()> {
        let key = {
            let inodes = self.inodes.lock().unwrap();
            inodes.get(ino).ok_or(Error::NotFound)?.key.clone()
        };
        let meta = self.store.head(&key).await?;
        let mut headers = PosixHeaders::from_user_metadata(&meta.user_metadata);
        if headers.mode.is_none() {
            let attr = self.getattr(ino).await?.attr;
            headers.mode = Some(libc::S_IFREG | u32::from(attr.perm));
        }
        apply_headers(&mut headers, change);
        let mut metadata = meta.user_metadata.clone();
        metadata.extend(s3fs_metadata(&headers));
        let etag = copy_object(
            &*self.store,
            &key,
            &key,
            meta.size,
            Some(&meta.etag),
            Some(&metadata),
            &self.upload,
        )
        .await?;
        self.meta.headers().insert(&key, &etag, headers);
        if let Some(inode) = self.inodes.lock().unwrap().get_mut(ino) {
            inode.stat.etag = etag;
            inode.stat.headers = headers;
            inode.validated_at = std::time::Instant::now();
        }
        Ok(())
    }

    /// Directory attributes live on its marker object, created if missing.
    async fn set_directory_headers(&self, ino: u64, change: SetAttr) -> Result<()> {
        let (key, mut headers) = {
            let inodes = self.inodes.lock().unwrap();
            let inode = inodes.get(ino).ok_or(Error::NotFound)?;
            (inode.key.clone(), inode.stat.headers)
        };
        if key.is_empty() {
            // The bucket's root has no marker to carry attributes.
            return Err(Error::InvalidArgument);
        }
        if headers.mode.is_none() {
            headers.mode = Some(libc::S_IFDIR | u32::from(self.config.owner.dir_mode));
        }
        apply_headers(&mut headers, change);
        self.store
            .put(&key, Bytes::new(), &s3fs_metadata(&headers))
            .await?;
        if let Some(inode) = self.inodes.lock().unwrap().get_mut(ino) {
            inode.stat.headers = headers;
        }
        Ok(())
    }

    pub async fn unlink(&self, parent: u64, name: &str) -> Result<()> {
        self.check_writable()?;
        let parent_key = self.directory_key(parent)?;
        let key = format!("{parent_key}{name}");
        let child = self
            .inodes
            .lock()
            .unwrap()
            .child(parent, name)
            .map(|(ino, inode)| (ino, inode.kind));
        if let Some((_, FileKind::Directory)) = child {
            return Err(Error::IsADirectory);
        }
        if let Some((ino, _)) = child {
            let writer = self.writes.lock().unwrap().get(&ino).cloned();
            if let Some(writer) = writer {
                let mut open = writer.lock().await;
                open.is_unlinked = true;
                open.is_dirty = false;
                open.copy_source = None;
                if let Some(stream) = open.stream.take() {
                    stream.abandon(&self.store);
                }
            }
        }
        self.store.delete(&key).await?;
        self.inodes.lock().unwrap().unlink(parent, name);
        self.forget_created(parent, name);
        self.negative.insert(parent, name);
        self.contents.set(parent, name, None);
        Ok(())
    }

    fn forget_created(&self, parent: u64, name: &str) {
        if let Some(names) = self.created_here.lock().unwrap().get_mut(&parent) {
            names.remove(name);
        }
    }

    /// Writes the marker object `name/`, so the directory exists while empty.
    pub async fn mkdir(&self, parent: u64, name: &str, mode: u32, caller: Caller) -> Result<Entry> {
        self.check_writable()?;
        let parent_key = self.directory_key(parent)?;
        if !is_valid_name(name) {
            return Err(Error::InvalidArgument);
        }
        let key = format!("{parent_key}{name}/");
        let headers = PosixHeaders {
            mode: Some(libc::S_IFDIR | (mode & 0o7777)),
            uid: Some(caller.uid),
            gid: Some(caller.gid),
            mtime: Some(SystemTime::now()),
        };
        self.store
            .put(&key, Bytes::new(), &s3fs_metadata(&headers))
            .await?;
        let stat = Stat {
            mtime: headers.mtime,
            headers,
            ..Stat::default()
        };
        let entry = self.remember(parent, name, FileKind::Directory, key, stat);
        self.contents.created(entry.attr.ino);
        Ok(entry)
    }

    /// ENOTEMPTY while any key lives under the prefix; removes the marker.
    pub async fn rmdir(&self, parent: u64, name: &str) -> Result<()> {
        self.check_writable()?;
        let parent_key = self.directory_key(parent)?;
        let prefix = format!("{parent_key}{name}/");
        if self.has_children(&prefix).await? {
            return Err(Error::NotEmpty);
        }
        if let Some((ino, _)) = self.inodes.lock().unwrap().child(parent, name)
            && self
                .created_here
                .lock()
                .unwrap()
                .get(&ino)
                .is_some_and(|names| !names.is_empty())
        {
            return Err(Error::NotEmpty);
        }
        self.store.delete(&prefix).await?;
        if let Some(ino) = self.inodes.lock().unwrap().unlink(parent, name) {
            self.contents.remove_directory(ino);
        }
        self.negative.insert(parent, name);
        self.contents.set(parent, name, None);
        Ok(())
    }

    /// Whether any key other than the marker lives under `prefix`.
    async fn has_children(&self, prefix: &str) -> Result<bool> {
        let page = self.store.list_page(prefix, false, None, 2).await?;
        Ok(page.objects.iter().any(|object| object.key != prefix)
            || !page.common_prefixes.is_empty())
    }

    /// rename(2). Files move by CopyObject and DeleteObject (a file being
    /// written just changes the key its commit will write); directories move
    /// key by key, which is not atomic: a failure part way leaves keys under
    /// both names, none lost.
    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<()> {
        self.check_writable()?;
        if !is_valid_name(new_name) {
            return Err(Error::InvalidArgument);
        }
        let source = self.lookup(parent, name).await?;
        self.forget(source.attr.ino, 1);
        let destination = match self.lookup(new_parent, new_name).await {
            Ok(entry) => {
                self.forget(entry.attr.ino, 1);
                Some(entry.attr)
            }
            Err(Error::NotFound) => None,
            Err(error) => return Err(error),
        };
        if no_replace && destination.is_some() {
            return Err(Error::Exists);
        }
        let old_parent_key = self.directory_key(parent)?;
        let new_parent_key = self.directory_key(new_parent)?;
        match source.attr.kind {
            FileKind::File | FileKind::Symlink => {
                if destination.is_some_and(|d| d.kind == FileKind::Directory) {
                    return Err(Error::IsADirectory);
                }
                let old_key = format!("{old_parent_key}{name}");
                let new_key = format!("{new_parent_key}{new_name}");
                self.rename_file(source.attr.ino, source.attr.size, &old_key, &new_key)
                    .await?;
                self.inodes
                    .lock()
                    .unwrap()
                    .rename(parent, name, new_parent, new_name, &old_key, &new_key);
                if self.is_being_written(source.attr.ino) {
                    self.forget_created(parent, name);
                    self.created_here
                        .lock()
                        .unwrap()
                        .entry(new_parent)
                        .or_default()
                        .insert(new_name.to_owned());
                }
            }
            FileKind::Directory => {
                if let Some(destination) = destination {
                    if destination.kind != FileKind::Directory {
                        return Err(Error::NotADirectory);
                    }
                    if self
                        .has_children(&format!("{new_parent_key}{new_name}/"))
                        .await?
                    {
                        return Err(Error::NotEmpty);
                    }
                }
                let old_prefix = format!("{old_parent_key}{name}/");
                let new_prefix = format!("{new_parent_key}{new_name}/");
                if new_prefix.starts_with(&old_prefix) {
                    return Err(Error::InvalidArgument);
                }
                self.rename_directory(&old_prefix, &new_prefix).await?;
                self.inodes.lock().unwrap().rename(
                    parent,
                    name,
                    new_parent,
                    new_name,
                    &old_prefix,
                    &new_prefix,
                );
            }
        }
        self.negative.insert(parent, name);
        self.negative.remove(new_parent, new_name);
        self.contents.set(parent, name, None);
        let moved_kind = match source.attr.kind {
            FileKind::Directory => FileKind::Directory,
            FileKind::File | FileKind::Symlink => FileKind::File,
        };
        self.contents.set(new_parent, new_name, Some(moved_kind));
        Ok(())
    }

    async fn rename_file(&self, ino: u64, size: u64, old_key: &str, new_key: &str) -> Result<()> {
        let writer = self.writes.lock().unwrap().get(&ino).cloned();
        if let Some(writer) = writer {
            let mut open = writer.lock().await;
            if let Some(stream) = open.stream.take_if(|stream| stream.has_upload()) {
                if stream.released_through() == 0 {
                    // Its upload is bound to the old key: start over at commit.
                    stream.abandon(&self.store);
                } else {
                    // Not all of it is staged any more: finish it under the
                    // old name, then move it like any object.
                    open.stream = Some(stream);
                    self.commit(&mut open).await?;
                }
            }
            if open.is_dirty {
                // The data lands under the new name at the next commit.
                open.key = new_key.to_owned();
                open.copy_source = None;
                drop(open);
                return match self.store.delete(old_key).await {
                    Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
                    Err(error) => Err(error.into()),
                };
            }
            open.key = new_key.to_owned();
            let etag = self.copy_object(old_key, new_key, open.size).await?;
            open.copy_source = Some(CopySource {
                key: new_key.to_owned(),
                etag: etag.clone(),
                size: open.size,
            });
            if let Some((_, missing_etag)) = open.missing.as_mut() {
                *missing_etag = etag;
            }
            drop(open);
            self.store.delete(old_key).await?;
            return Ok(());
        }
        self.copy_object(old_key, new_key, size).await?;
        self.store.delete(old_key).await?;
        Ok(())
    }

    /// Copies a whole object, metadata included, whatever its size.
    async fn copy_object(&self, old_key: &str, new_key: &str, size: u64) -> Result<String> {
        Ok(copy_object(
            &*self.store,
            old_key,
            new_key,
            size,
            None,
            None,
            &self.upload,
        )
        .await?)
    }

    async fn rename_directory(&self, old_prefix: &str, new_prefix: &str) -> Result<()> {
        // Files of this directory still being written move with it.
        let writers: Vec<_> = self.writes.lock().unwrap().values().cloned().collect();
        for writer in writers {
            let mut open = writer.lock().await;
            if let Some(rest) = open.key.strip_prefix(old_prefix) {
                open.key = format!("{new_prefix}{rest}");
            }
        }
        loop {
            // Moved keys leave the listing, so each round lists from the top
            // rather than following a token into a listing that changed.
            let page = self.store.list_page(old_prefix, false, None, 1000).await?;
            let moves: Vec<(String, String, u64)> = page
                .objects
                .into_iter()
                .map(|object| {
                    let new_key = format!("{new_prefix}{}", &object.key[old_prefix.len()..]);
                    (object.key, new_key, object.size)
                })
                .collect();
            let moves = moves
                .into_iter()
                .map(|(old_key, new_key, size)| async move {
                    self.copy_object(&old_key, &new_key, size).await?;
                    self.store.delete(&old_key).await?;
                    Ok::<(), Error>(())
                });
            let mut moves = stream::iter(moves).buffer_unordered(RENAME_PARALLELISM);
            while let Some(result) = moves.next().await {
                result?;
            }
            if page.next.is_none() {
                return Ok(());
            }
        }
    }

    /// Commits every dirty open file (on SIGTERM, before the daemon exits);
    /// returns how many could not be uploaded.
    pub async fn commit_all(&self) -> usize {
        let writers: Vec<_> = self.writes.lock().unwrap().values().cloned().collect();
        let mut failures = 0;
        for writer in writers {
            let mut open = writer.lock().await;
            if let Err(error) = self.commit(&mut open).await {
                log::error!("{}: upload at shutdown failed: {error}", open.key);
                failures += 1;
            }
        }
        failures
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

fn apply_headers(headers: &mut PosixHeaders, change: SetAttr) {
    if let Some(mode) = change.mode {
        let file_type = headers.mode.unwrap_or(libc::S_IFREG) & libc::S_IFMT;
        headers.mode = Some(file_type | (mode & 0o7777));
    }
    if change.uid.is_some() {
        headers.uid = change.uid;
    }
    if change.gid.is_some() {
        headers.gid = change.gid;
    }
    if change.mtime.is_some() {
        headers.mtime = change.mtime;
    }
}
