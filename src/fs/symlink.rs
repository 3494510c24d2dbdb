//! Symbolic links, stored as s3fs-fuse stores them: an object whose body is
//! the target and whose `x-amz-meta-mode` carries S_IFLNK, so links made by
//! either read the same under both. Without POSIX metadata
//! (`--no-posix-metadata`) such an object is a small regular file.

use std::time::SystemTime;

use bytes::Bytes;

use super::write::{Caller, s3fs_metadata};
use super::{Entry, Error, FileKind, Filesystem, Result, Stat, check_name};
use crate::cache::meta::PosixHeaders;
use crate::store::ObjectStore;

/// Linux's PATH_MAX: no target is longer, so one GET of this much reads it.
const MAX_TARGET_BYTES: u64 = 4096;

impl<S: ObjectStore> Filesystem<S> {
    pub async fn symlink(
        &self,
        parent: u64,
        name: &str,
        target: Bytes,
        caller: Caller,
    ) -> Result<Entry> {
        self.check_writable()?;
        let parent_key = self.directory_key(parent)?;
        check_name(name)?;
        if self.lookup(parent, name).await.is_ok_and(|entry| {
            self.forget(entry.attr.ino, 1);
            true
        }) {
            return Err(Error::Exists);
        }
        let key = format!("{parent_key}{name}");
        let headers = PosixHeaders {
            mode: Some(libc::S_IFLNK | 0o777),
            uid: Some(caller.uid),
            gid: Some(caller.gid),
            mtime: Some(SystemTime::now()),
        };
        let size = target.len() as u64;
        let etag = self
            .store
            .put(&key, target, &s3fs_metadata(&headers))
            .await?;
        self.meta.headers().insert(&key, &etag, headers);
        self.negative.remove(parent, name);
        let stat = Stat {
            size,
            mtime: headers.mtime,
            etag,
            headers,
        };
        Ok(self.remember(parent, name, FileKind::File, key, stat))
    }

    pub async fn readlink(&self, ino: u64) -> Result<Bytes> {
        let key = {
            let inodes = self.inodes.lock().unwrap();
            inodes.get(ino).ok_or(Error::NotFound)?.key.clone()
        };
        if self.getattr(ino).await?.attr.kind != FileKind::Symlink {
            return Err(Error::InvalidArgument);
        }
        // Pinned like every GET, so that a link replaced since its stat was
        // taken fails instead of reading another object's body.
        let etag = {
            let inodes = self.inodes.lock().unwrap();
            inodes.get(ino).ok_or(Error::NotFound)?.stat.etag.clone()
        };
        let etag = if etag.is_empty() {
            self.store.head(&key).await?.etag
        } else {
            etag
        };
        let if_match = (!etag.is_empty()).then_some(etag.as_str());
        Ok(self
            .store
            .get_range(&key, 0..MAX_TARGET_BYTES, if_match)
            .await?)
    }
}
