//! A directory's own objects: its marker `d/`, which another tool may have
//! written with or without s3fs headers, and s3fs's old-style directory
//! object `d` (see `crate::object_format`). Either gives the directory its
//! attributes, the marker first; without either, the mount options do.

use std::sync::Arc;

use crate::config::PosixMetadata;
use crate::fs::metadata::{Known, MetadataRequests, Sharing};
use crate::fs::{Filesystem, Stat};
use crate::object_format::PosixHeaders;
use crate::store::{ListedObject, ObjectMeta, ObjectStore};

/// What a one-key listing of a directory's prefix found there.
pub(in crate::fs) enum DirectoryProbe {
    /// A marker object, with the directory's attributes.
    Marker(Stat),
    /// Keys, but no marker whose attributes could be read.
    KeysOnly,
}

impl<S: ObjectStore> Filesystem<S> {
    /// Whether an object with these headers, without a trailing slash, is
    /// a directory: only when the mount reads headers, so that a listing
    /// (which reads none then) and a lookup agree.
    pub(in crate::fs) fn is_old_style_directory(&self, headers: &PosixHeaders) -> bool {
        self.config.posix_metadata == PosixMetadata::FromHeaders && headers.is_old_style_directory()
    }

    /// The attributes of a directory with keys under it and no marker:
    /// those of its old-style directory object `key` if `head` found one,
    /// else the mount's.
    pub(in crate::fs) fn unmarked_directory_stat(
        &self,
        key: &str,
        head: Option<&ObjectMeta>,
    ) -> Stat {
        let stat = head.map(Stat::from_head);
        match stat {
            Some(stat) if self.is_old_style_directory(&stat.headers) => directory_stat(stat),
            _ => {
                self.warn_if_shadowed(key, head);
                self.implicit_directory_stat()
            }
        }
    }

    /// Warns once that the object `key`, which `head` found, is hidden by
    /// the directory `key/`, unless it is an old-style directory object:
    /// that is the same directory, in the form an older s3fs wrote.
    pub(in crate::fs) fn warn_if_shadowed(&self, key: &str, head: Option<&ObjectMeta>) {
        if let Some(head) = head
            && !self.is_old_style_directory(&PosixHeaders::from_head(head))
        {
            self.warn_shadowed(key);
        }
    }

    /// Warns once that the object `key` is hidden by the directory `key/`.
    pub(in crate::fs) fn warn_shadowed(&self, key: &str) {
        self.warn_once(
            key,
            "an object shares its name with a directory; the directory is shown",
        );
    }
}

/// A directory's attributes from its marker object `prefix`: `listed` when a
/// listing showed it (so cached headers need no request), else a HEAD.
/// `None` without a marker, or when it cannot be read: attributes are not
/// worth failing a listing or lookup over; the mount options stand in.
pub(in crate::fs) async fn directory_marker_stat<S: ObjectStore>(
    meta: &Arc<MetadataRequests<S>>,
    prefix: &str,
    listed: Option<&ListedObject>,
) -> Option<Stat> {
    let stat = match listed {
        Some(marker) => match meta
            .headers_or_head(prefix, &marker.etag, marker.last_modified)
            .await
        {
            Known::Cached(headers) => Stat {
                size: 0,
                mtime: Some(marker.last_modified),
                etag: String::new(),
                headers,
            },
            Known::Head(head) => Stat::from_head(&head.ok()?),
        },
        None => Stat::from_head(&meta.head(prefix, Sharing::JoinInFlight).await.ok()?),
    };
    Some(directory_stat(stat))
}

/// An object's attributes as a directory's: directories show no size and
/// are never opened, so there is no ETag to pin.
pub(in crate::fs) fn directory_stat(stat: Stat) -> Stat {
    Stat {
        size: 0,
        etag: String::new(),
        ..stat
    }
}
