//! One file open for writing, and every transition of its state.
//!
//! A file's bytes are in one of a few places at a time: all staged locally
//! and changed since some object (`Changed`); streaming to a multipart upload
//! as they are written (`Streaming`); in an object of the bucket, with all or
//! only the last bytes still staged (`Committed`); or nowhere that matters,
//! because the name was removed while open (`Unlinked`). Each method here
//! moves between those states and is the only code that does: the rest of
//! the write path asks for a transition and gets the new state or an error.
//!
//! A transition takes the state out while it awaits the store. Should it
//! never put it back (a panic), the file is left `Changed` from no base,
//! which uploads exactly the staged bytes at the next commit: `Staging`
//! refuses to hand out bytes it gave back to the disk, so a file whose
//! bytes left staging fails its commit rather than uploading zeros.

use std::sync::Arc;

use crate::fs::Error;
use crate::object_format::{PosixHeaders, content_type_for, new_object_headers, replaced_headers};
use crate::store::{ObjectHeaders, ObjectStore};
use crate::upload::{
    CopySource, DirtyRanges, Staging, StreamingUpload, Unchanged, UploadConfig, UploadError,
    copy_object,
};

use super::streamed_headers;

pub(in crate::fs) enum FileState {
    /// Written sequentially from empty: full parts are uploaded as the
    /// writer passes them. Owes a commit (an empty file is a file too).
    Streaming(StreamingUpload),
    /// Every byte is staged. Outside `ranges` the staged bytes equal `base`,
    /// whose parts a commit may copy server side. Owes a commit.
    Changed {
        base: Option<CopySource>,
        ranges: DirtyRanges,
    },
    /// `object` holds the file's bytes and carries `headers`. Bytes before
    /// `unstaged_below` were given back after a streamed upload and are
    /// fetched from `object` before anything reads or changes them. Owes a
    /// commit only if the wanted headers differ from the object's.
    Committed {
        object: CopySource,
        headers: PosixHeaders,
        unstaged_below: u64,
    },
    /// Removed from the namespace while open: its descriptors keep working
    /// on the staged bytes, which are never uploaded. Bytes before
    /// `unstaged_below` went with the object.
    Unlinked { unstaged_below: u64 },
}

impl FileState {
    /// What a file is when a transition did not put its state back: every
    /// staged byte is its content.
    fn rescued() -> Self {
        let mut ranges = DirtyRanges::default();
        ranges.mark(0..u64::MAX);
        FileState::Changed { base: None, ranges }
    }
}

pub(in crate::fs) struct OpenWrite {
    pub ino: u64,
    /// Where the next commit writes; a rename changes it.
    pub key: String,
    pub staging: Staging,
    pub size: u64,
    /// The headers the file's object must carry.
    pub headers: PosixHeaders,
    state: FileState,
}

impl OpenWrite {
    /// A new empty file, or an existing one opened with O_TRUNC.
    pub fn empty(ino: u64, key: String, staging: Staging, headers: PosixHeaders) -> Self {
        OpenWrite {
            ino,
            key,
            staging,
            size: 0,
            headers,
            state: FileState::Streaming(StreamingUpload::new()),
        }
    }

    /// An existing object, fully staged: `object` (with its ETag, if the
    /// store gave one) is what the staged bytes equal.
    pub fn staged_from(
        ino: u64,
        staging: Staging,
        object: CopySource,
        headers: PosixHeaders,
    ) -> Self {
        OpenWrite {
            ino,
            key: object.key.clone(),
            staging,
            size: object.size,
            headers: headers.clone(),
            state: FileState::Committed {
                object,
                headers,
                unstaged_below: 0,
            },
        }
    }

    pub fn needs_commit(&self) -> bool {
        match &self.state {
            FileState::Streaming(_) | FileState::Changed { .. } => true,
            FileState::Committed { headers, .. } => *headers != self.headers,
            FileState::Unlinked { .. } => false,
        }
    }

    pub fn is_unlinked(&self) -> bool {
        matches!(self.state, FileState::Unlinked { .. })
    }

    /// The object this file's bytes are in, when they are all there.
    pub fn committed_object(&self) -> Option<&CopySource> {
        match &self.state {
            FileState::Committed { object, .. } if !self.needs_commit() => Some(object),
            _ => None,
        }
    }

    /// Bytes before this offset can be neither read nor changed until a
    /// commit has made them an object: a stream gave them back.
    fn unreadable_below(&self) -> u64 {
        match &self.state {
            FileState::Streaming(stream) => stream.released_through(),
            FileState::Unlinked { unstaged_below } => *unstaged_below,
            FileState::Changed { .. } | FileState::Committed { .. } => 0,
        }
    }

    /// Read-after-write from the staged copy.
    pub async fn read<S: ObjectStore>(
        &mut self,
        store: &Arc<S>,
        config: &UploadConfig,
        offset: u64,
        len: usize,
    ) -> Result<bytes::Bytes, Error> {
        if offset < self.unreadable_below() {
            log::warn!(
                "{}: read at {offset} refused: the bytes are uploaded and not staged any more until close",
                self.key
            );
            return Err(Error::AlreadyUploaded);
        }
        self.restage(store, config).await?;
        if offset >= self.size {
            return Ok(bytes::Bytes::new());
        }
        let len = (self.size - offset).min(len as u64) as usize;
        let mut bytes = self
            .staging
            .read_at(offset, len)
            .await
            .map_err(staging_error)?;
        if bytes.len() < len {
            // A hole at the end of a grown file reads as zeros.
            let mut padded = bytes.to_vec();
            padded.resize(len, 0);
            bytes = bytes::Bytes::from(padded);
        }
        Ok(bytes)
    }

    /// Fetches back what a streamed commit gave back from staging, pinned to
    /// the object's ETag.
    async fn restage<S: ObjectStore>(
        &mut self,
        store: &Arc<S>,
        config: &UploadConfig,
    ) -> Result<(), Error> {
        let FileState::Committed {
            object,
            unstaged_below,
            ..
        } = &mut self.state
        else {
            return Ok(());
        };
        if *unstaged_below == 0 {
            return Ok(());
        }
        log::debug!("{}: restaging {unstaged_below} uploaded bytes", self.key);
        self.staging
            .fill_range(
                &**store,
                &object.key,
                &object.etag,
                0..*unstaged_below,
                config,
            )
            .await
            .map_err(|error| {
                // The object that holds those bytes was replaced or removed
                // by someone else: they exist nowhere any more.
                if error.object_is_gone() {
                    Error::Stale {
                        key: object.key.clone(),
                    }
                } else {
                    error.into()
                }
            })?;
        *unstaged_below = 0;
        Ok(())
    }

    /// Makes the file ready for a write or truncation at `offset`.
    pub async fn prepare_change<S: ObjectStore>(
        &mut self,
        store: &Arc<S>,
        config: &UploadConfig,
        offset: u64,
    ) -> Result<(), Error> {
        self.restage(store, config).await?;
        let state = std::mem::replace(&mut self.state, FileState::rescued());
        self.state = match state {
            FileState::Streaming(stream) if stream.accepts_change_at(offset, self.size) => {
                FileState::Streaming(stream)
            }
            FileState::Streaming(stream) if stream.released_through() > 0 => {
                log::warn!(
                    "{}: change at {offset} refused: bytes before {} are uploaded and not staged any more",
                    self.key,
                    stream.released_through()
                );
                self.state = FileState::Streaming(stream);
                return Err(Error::AlreadyUploaded);
            }
            FileState::Streaming(stream) => {
                log::debug!(
                    "{}: not written sequentially; uploaded whole at commit",
                    self.key
                );
                stream.abandon(store);
                FileState::rescued()
            }
            // An empty file written from its start streams, as a new one does.
            FileState::Committed { .. } if self.size == 0 && offset == 0 => {
                FileState::Streaming(StreamingUpload::new())
            }
            FileState::Committed { object, .. } => FileState::Changed {
                base: Some(object),
                ranges: DirtyRanges::default(),
            },
            changed @ FileState::Changed { .. } => changed,
            unlinked @ FileState::Unlinked { .. } => unlinked,
        };
        Ok(())
    }

    /// After `prepare_change`: the bytes in `range` (to `u64::MAX` for a
    /// truncation) differ from any object.
    pub fn mark_changed(&mut self, range: std::ops::Range<u64>) {
        if let FileState::Changed { ranges, .. } = &mut self.state {
            ranges.mark(range);
        }
    }

    /// O_TRUNC, or a truncation to zero: the file starts over, streaming.
    pub async fn truncate_to_empty<S: ObjectStore>(&mut self, store: &Arc<S>) -> Result<(), Error> {
        self.staging.set_len(0).await.map_err(staging_error)?;
        self.size = 0;
        let state = std::mem::replace(&mut self.state, FileState::rescued());
        self.state = match state {
            FileState::Streaming(stream) => {
                stream.abandon(store);
                FileState::Streaming(StreamingUpload::new())
            }
            FileState::Unlinked { .. } => FileState::Unlinked { unstaged_below: 0 },
            FileState::Changed { .. } | FileState::Committed { .. } => {
                FileState::Streaming(StreamingUpload::new())
            }
        };
        Ok(())
    }

    /// After a write the stream accepted: its full parts go to the store now.
    /// A stream that cannot start (or fails before giving bytes back) is
    /// given up for an upload of the whole file at commit.
    pub async fn upload_completed_parts<S: ObjectStore>(
        &mut self,
        store: &Arc<S>,
        config: &UploadConfig,
    ) -> Result<(), Error> {
        let FileState::Streaming(stream) = &mut self.state else {
            return Ok(());
        };
        let metadata = streamed_headers(&self.key, &self.headers);
        let result = stream
            .after_write(
                &self.staging,
                store,
                &self.key,
                &metadata,
                self.size,
                config,
            )
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(error) if stream.released_through() == 0 => {
                log::warn!(
                    "{}: streaming upload stopped, uploading at close: {error}",
                    self.key
                );
                let FileState::Streaming(stream) =
                    std::mem::replace(&mut self.state, FileState::rescued())
                else {
                    unreachable!("matched as Streaming above");
                };
                stream.abandon(store);
                Ok(())
            }
            Err(error) => Err(Error::Upload(Arc::new(error))),
        }
    }

    /// Before this mount removes or replaces the file's object: the bytes
    /// a streamed commit gave back from staging come back, so that the open
    /// file stays readable without a name. Bytes whose object someone else
    /// already replaced are lost either way, and do not stop the removal.
    pub async fn restage_before_removal<S: ObjectStore>(
        &mut self,
        store: &Arc<S>,
        config: &UploadConfig,
    ) -> Result<(), Error> {
        match self.restage(store, config).await {
            Ok(()) | Err(Error::Stale { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Removed while open: nothing is uploaded any more.
    pub fn unlink<S: ObjectStore>(&mut self, store: &Arc<S>) {
        let unstaged_below = match &self.state {
            FileState::Streaming(stream) => stream.released_through(),
            FileState::Committed { unstaged_below, .. }
            | FileState::Unlinked { unstaged_below } => *unstaged_below,
            FileState::Changed { .. } => 0,
        };
        let state = std::mem::replace(&mut self.state, FileState::Unlinked { unstaged_below });
        if let FileState::Streaming(stream) = state {
            stream.abandon(store);
        }
    }

    /// Before a rename: a stream bound to the old key is given up while all
    /// its bytes are still staged. Returns false when it has given bytes
    /// back, so that only completing it under the old key keeps them.
    pub fn detach_stream_for_rename<S: ObjectStore>(&mut self, store: &Arc<S>) -> bool {
        let FileState::Streaming(stream) = &self.state else {
            return true;
        };
        if !stream.has_upload() {
            return true;
        }
        if stream.released_through() > 0 {
            return false;
        }
        let FileState::Streaming(stream) = std::mem::replace(&mut self.state, FileState::rescued())
        else {
            unreachable!("matched as Streaming above");
        };
        stream.abandon(store);
        true
    }

    /// After a rename copied the committed object to `object`, with
    /// `carried` (its times and the new ctime) as its headers.
    pub fn moved_to(&mut self, object: CopySource, carried: PosixHeaders) {
        self.key = object.key.clone();
        if let FileState::Committed {
            object: current,
            headers,
            ..
        } = &mut self.state
        {
            *current = object;
            // Only a clean file moves as an object, so what the copy carried
            // is the file's whole metadata now: times that the source only
            // had as Last-Modified are written out, and must not read as a
            // change that owes a commit.
            self.headers = carried.clone();
            *headers = carried;
        }
    }

    /// Uploads what the file owes; returns the object's ETag, or `None`
    /// when nothing was owed. On failure the state keeps what did succeed
    /// (bytes uploaded, headers not yet set), so that a later commit
    /// retries only the rest; on success the file is `Committed`.
    pub async fn commit<S: ObjectStore>(
        &mut self,
        store: &Arc<S>,
        config: &UploadConfig,
    ) -> Result<Option<String>, UploadError> {
        if !self.needs_commit() {
            return Ok(None);
        }
        self.upload_bytes(store, config).await?;
        match self.set_headers(store, config).await {
            // Someone replaced or removed the object since our commit. The
            // last close wins, as for any other change: while every byte is
            // still staged, the file goes up whole with its new headers.
            Err(error)
                if error.object_is_gone()
                    && matches!(
                        self.state,
                        FileState::Committed {
                            unstaged_below: 0,
                            ..
                        }
                    ) =>
            {
                self.state = FileState::rescued();
                self.upload_bytes(store, config).await?;
            }
            other => other?,
        }
        Ok(self.committed_object().map(|object| object.etag.clone()))
    }

    /// `Streaming` or `Changed` to `Committed`, with the headers the new
    /// object carries.
    async fn upload_bytes<S: ObjectStore>(
        &mut self,
        store: &Arc<S>,
        config: &UploadConfig,
    ) -> Result<(), UploadError> {
        let metadata = new_object_headers(&self.key, &self.headers);
        let state = std::mem::replace(&mut self.state, FileState::rescued());
        let (uploaded, unstaged_below, carried) = match state {
            FileState::Streaming(mut stream) if stream.has_upload() => {
                let finished = stream.finish(&self.staging, store, self.size, config).await;
                let created_with = stream
                    .created_with()
                    .map(|headers| PosixHeaders::from_user_metadata(&headers.user_metadata))
                    .unwrap_or_default();
                let carried = PosixHeaders {
                    // Not sent while the file was still changing: the
                    // object's Last-Modified, its completion, stands for
                    // them.
                    atime: self.headers.atime,
                    ctime: self.headers.ctime,
                    mtime: self.headers.mtime,
                    ..created_with
                };
                let released = stream.released_through();
                if finished.is_err() {
                    self.state = FileState::Streaming(stream);
                }
                (finished, released, carried)
            }
            FileState::Streaming(stream) => {
                let put = self
                    .staging
                    .commit(&**store, &self.key, self.size, &metadata, None, config)
                    .await;
                if put.is_err() {
                    self.state = FileState::Streaming(stream);
                }
                (put, 0, self.headers.clone())
            }
            FileState::Changed { base, ranges } => {
                let unchanged = base
                    .as_ref()
                    .filter(|base| base.key == self.key && !base.etag.is_empty())
                    .map(|source| Unchanged {
                        source,
                        dirty: &ranges,
                    });
                let uploaded = self
                    .staging
                    .commit(&**store, &self.key, self.size, &metadata, unchanged, config)
                    .await;
                if uploaded.is_err() {
                    self.state = FileState::Changed { base, ranges };
                }
                (uploaded, 0, self.headers.clone())
            }
            done @ (FileState::Committed { .. } | FileState::Unlinked { .. }) => {
                self.state = done;
                return Ok(());
            }
        };
        let etag = uploaded?;
        self.state = FileState::Committed {
            object: CopySource {
                key: self.key.clone(),
                etag,
                size: self.size,
            },
            headers: carried,
            unstaged_below,
        };
        Ok(())
    }

    /// A `Committed` object whose headers differ from the wanted ones (a
    /// chmod, chown or utimens while open) gets them by a copy onto itself.
    async fn set_headers<S: ObjectStore>(
        &mut self,
        store: &Arc<S>,
        config: &UploadConfig,
    ) -> Result<(), UploadError> {
        let FileState::Committed {
            object, headers, ..
        } = &mut self.state
        else {
            return Ok(());
        };
        if *headers == self.headers {
            return Ok(());
        }
        // After a rename the copy also moves it to the new key.
        let etag = replace_headers(&**store, object, &self.key, &self.headers, config).await?;
        *object = CopySource {
            key: self.key.clone(),
            etag,
            size: object.size,
        };
        *headers = self.headers.clone();
        Ok(())
    }
}

/// A CopyObject of `object` to `destination` (usually itself) that sets
/// `headers` and keeps the rest of its user metadata, pinned to its ETag: an
/// object replaced by someone else meanwhile is not given our headers.
pub(in crate::fs) async fn replace_headers<S: ObjectStore>(
    store: &S,
    object: &CopySource,
    destination: &str,
    headers: &PosixHeaders,
    config: &UploadConfig,
) -> Result<String, UploadError> {
    let meta = store.head(&object.key).await?;
    let existing = meta.headers();
    let object = CopySource {
        etag: if object.etag.is_empty() {
            meta.etag
        } else {
            object.etag.clone()
        },
        ..object.clone()
    };
    replace_headers_keeping(store, &object, destination, headers, &existing, config).await
}

/// `replace_headers` for a caller that has just HEADed the object: its
/// other metadata and Content-Type are `existing`, and `object.etag` pins
/// it. A copy to another name (a rename) takes that name's Content-Type.
pub(in crate::fs) async fn replace_headers_keeping<S: ObjectStore>(
    store: &S,
    object: &CopySource,
    destination: &str,
    headers: &PosixHeaders,
    existing: &ObjectHeaders,
    config: &UploadConfig,
) -> Result<String, UploadError> {
    let mut metadata = replaced_headers(existing, destination, headers);
    if destination != object.key {
        metadata.content_type = Some(content_type_for(destination));
    }
    let pinned = object.etag.clone();
    copy_object(
        store,
        &object.key,
        destination,
        object.size,
        Some(&pinned),
        Some(&metadata),
        config,
    )
    .await
}

fn staging_error(error: std::io::Error) -> Error {
    Error::Upload(Arc::new(UploadError::Staging(error)))
}
