//! Attribute changes: truncate, chmod, chown, utimens.
//!
//! A file's attributes live in its object's s3fs headers, so changing them
//! means a new object: a truncation goes through the staged copy like a
//! write; a header change of a file nobody writes is one CopyObject onto
//! itself; a header change of a file open for writing waits for its commit.
//! A directory's attributes live on its marker object.

use std::time::SystemTime;

use bytes::Bytes;

use crate::cache::meta::PosixHeaders;
use crate::fs::write::{replace_headers_keeping, s3fs_metadata};
use crate::fs::{Entry, Error, FileKind, Filesystem, Result};
use crate::store::ObjectStore;
use crate::upload::CopySource;

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

impl<S: ObjectStore> Filesystem<S> {
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
        if change.size.is_some() || self.is_being_written(ino) {
            self.change_through_staging(ino, change).await?;
        } else {
            self.replace_headers(ino, change).await?;
        }
        self.getattr(ino).await
    }

    /// Through the staged copy: committed now unless a descriptor that will
    /// flush holds it. If this call fails, its reference drops uncommitted
    /// and, were it the last, the file is no longer open for writing.
    async fn change_through_staging(&self, ino: u64, change: SetAttr) -> Result<()> {
        let writer = self.writer_for(ino, change.size == Some(0)).await?;
        {
            let mut open = writer.shared().open.lock().await;
            if let Some(size) = change.size {
                open.prepare_change(&self.store, &self.upload, size).await?;
                open.staging
                    .set_len(size)
                    .await
                    .map_err(|error| Error::from(crate::upload::UploadError::Staging(error)))?;
                let changed_from = size.min(open.size);
                open.mark_changed(changed_from..u64::MAX);
                open.size = size;
                open.headers.mtime = Some(SystemTime::now());
            }
            apply_headers(&mut open.headers, change);
            self.update_local_stat(&open);
            if writer.is_only_holder() {
                self.commit(&mut open).await?;
            }
        }
        self.release_writer(writer).await;
        Ok(())
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
        let object = CopySource {
            key: key.clone(),
            etag: meta.etag,
            size: meta.size,
        };
        // The HEAD above already gave the rest of its metadata.
        let etag = replace_headers_keeping(
            &*self.store,
            &object,
            &key,
            &headers,
            meta.user_metadata,
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
