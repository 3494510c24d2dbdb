//! Steps on a file's contents and handles: create, open, write, read,
//! flush, close, truncate, chmod.

use super::*;

impl Harness {
    pub(super) async fn create(&mut self, name: Name) -> Result<(), String> {
        // The kernel looks the name up first and opens what it finds.
        match self.resolve(name).await? {
            Lookup::Found(ino) => return self.open_inode(name, ino, OpenMode::WriteTruncate).await,
            Lookup::Failed => return Ok(()),
            Lookup::Missing => {}
        }
        let parent = self.parent(name);
        let result = self
            .call("create", move |fs| async move {
                fs.create(parent, name.file_name(), 0o644, CALLER).await
            })
            .await?;
        let (entry, fh) = match result {
            Ok(created) => created,
            Err(error) => return self.allow_failure("create", &error),
        };
        let ino = entry.attr.ino;
        if self.writers.contains_key(&ino) {
            return Err(format!("create gave inode {ino}, which an open file has"));
        }
        self.writers.insert(
            ino,
            Writer {
                name: Some(name),
                content: Vec::new(),
                mode: Some(0o644),
                is_dirty: true,
                handles: 1,
                may_stream: true,
                streamed_size: 0,
                has_failed_commit: false,
                lost_streamed_bytes: false,
            },
        );
        self.handles.push(Handle {
            fh,
            ino,
            is_writer: true,
            pin: Pin::Unknown { name },
        });
        Ok(())
    }

    pub(super) async fn open(&mut self, name: Name, mode: OpenMode) -> Result<(), String> {
        match self.resolve(name).await? {
            Lookup::Found(ino) => self.open_inode(name, ino, mode).await,
            Lookup::Missing | Lookup::Failed => Ok(()),
        }
    }

    pub(super) async fn open_inode(
        &mut self,
        name: Name,
        ino: u64,
        mode: OpenMode,
    ) -> Result<(), String> {
        let intent = match mode {
            OpenMode::Read => OpenIntent::Read,
            OpenMode::Write => OpenIntent::Write {
                truncate: false,
                drops_setid: false,
            },
            OpenMode::WriteTruncate => OpenIntent::Write {
                truncate: true,
                drops_setid: false,
            },
        };
        let result = self
            .call("open", move |fs| async move { fs.open(ino, intent).await })
            .await?;
        let fh = match result {
            Ok((fh, _)) => fh,
            Err(error) => return self.allow_failure("open", &error),
        };
        let is_writer = mode != OpenMode::Read;
        let pin = match (self.writers.get(&ino), self.objects.get(&name)) {
            (None, Some(object)) if !is_writer => Pin::Version {
                name,
                bytes: Arc::clone(&object.bytes),
                generation: self.generations.get(&name).copied().unwrap_or(0),
            },
            _ => Pin::Unknown { name },
        };
        if is_writer {
            let truncate = mode == OpenMode::WriteTruncate;
            match self.writers.get_mut(&ino) {
                Some(writer) => {
                    writer.handles += 1;
                    if truncate {
                        writer.content.clear();
                        writer.is_dirty = true;
                        writer.may_stream = true;
                        writer.streamed_size = 0;
                        writer.lost_streamed_bytes = false;
                    }
                }
                None => {
                    let object = self.objects.get(&name).cloned().ok_or_else(|| {
                        format!("open for writing of {:?} with no object", name.key())
                    })?;
                    self.writers.insert(
                        ino,
                        Writer {
                            name: Some(name),
                            content: if truncate {
                                Vec::new()
                            } else {
                                object.bytes.to_vec()
                            },
                            mode: object.mode,
                            // O_TRUNC moves mtime and ctime even of an
                            // empty file, so its close commits them: the
                            // file is then what this mount made of it.
                            is_dirty: truncate,
                            handles: 1,
                            // An empty object written from its start
                            // streams, as a new file does.
                            may_stream: truncate || object.bytes.is_empty(),
                            streamed_size: 0,
                            has_failed_commit: false,
                            lost_streamed_bytes: false,
                        },
                    );
                }
            }
        }
        self.handles.push(Handle {
            fh,
            ino,
            is_writer,
            pin,
        });
        Ok(())
    }

    pub(super) async fn write(&mut self, handle: u8, at: At, len: u32) -> Result<(), String> {
        let Some(index) = self.handle_index(handle, true) else {
            return Ok(());
        };
        let (fh, ino) = (self.handles[index].fh, self.handles[index].ino);
        if self.skips("after-failed-fsync") && self.writers[&ino].has_failed_commit {
            return Ok(());
        }
        let size = self.writers[&ino].content.len() as u64;
        let offset = at.resolve(size);
        let mut len = u64::from(len);
        if self.written_bytes + len > MAX_CASE_WRITE_BYTES {
            len = len.min(4096);
        }
        self.written_bytes += len;
        let id = self.next_write_id;
        self.next_write_id += 1;
        let data = pattern(id, offset, len as usize);
        // At least one call, so that an empty write is made too.
        let mut chunks: Vec<&[u8]> = data.chunks(MIB as usize).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let mut chunk_offset = offset;
        for chunk in chunks {
            let bytes = Bytes::copy_from_slice(chunk);
            let result = self
                .call("write", move |fs| async move {
                    fs.write(fh, chunk_offset, bytes).await
                })
                .await?;
            let writer = self.writers.get_mut(&ino).expect("handle of a writer");
            match result {
                Ok(written) if written as usize == chunk.len() => {}
                Ok(written) => {
                    return Err(format!(
                        "write of {} bytes at {chunk_offset} wrote {written}",
                        chunk.len()
                    ));
                }
                Err(Error::AlreadyUploaded)
                    if writer.may_refuse_as_already_uploaded(self.retain) =>
                {
                    return Ok(());
                }
                Err(error) => return self.allow_writer_failure(ino, "write", &error),
            }
            if chunk.is_empty() {
                // POSIX: writing nothing has no other result, even beyond
                // the end (the kernel never sends such a write anyway).
                continue;
            }
            let end = chunk_offset as usize + chunk.len();
            if writer.content.len() < end {
                writer.content.resize(end, 0);
            }
            writer.content[chunk_offset as usize..end].copy_from_slice(chunk);
            writer.is_dirty = true;
            writer.streamed_size = writer.streamed_size.max(writer.content.len() as u64);
            chunk_offset += chunk.len() as u64;
        }
        Ok(())
    }

    pub(super) async fn read(&mut self, handle: u8, at: At, len: u32) -> Result<(), String> {
        let Some(index) = self.handle_index(handle, false) else {
            return Ok(());
        };
        let (fh, ino) = (self.handles[index].fh, self.handles[index].ino);
        let size = match (self.writers.get(&ino), &self.handles[index].pin) {
            (Some(writer), _) => writer.content.len(),
            (None, Pin::Version { bytes, .. }) => bytes.len(),
            (None, Pin::Unknown { name }) => self.objects.get(name).map_or(0, |o| o.bytes.len()),
        };
        let offset = at.resolve(size as u64);
        let result = self
            .call(
                "read",
                move |fs| async move { fs.read(fh, offset, len).await },
            )
            .await?;
        let len = u64::from(len);
        if let Some(writer) = self.writers.get(&ino) {
            return match result {
                Ok(bytes) if *bytes == *slice(&writer.content, offset, len) => Ok(()),
                Ok(bytes) => Err(format!(
                    "read of {len} at {offset} through the open file: {}",
                    describe_difference(&bytes, slice(&writer.content, offset, len))
                )),
                Err(Error::AlreadyUploaded)
                    if writer.may_refuse_as_already_uploaded(self.retain) =>
                {
                    Ok(())
                }
                Err(error) => self.allow_writer_failure(ino, "read", &error),
            };
        }
        match (&self.handles[index].pin, result) {
            (Pin::Version { bytes: pinned, .. }, Ok(bytes)) => {
                let expected = slice(pinned, offset, len);
                if *bytes == *expected {
                    Ok(())
                } else {
                    Err(format!(
                        "read of {len} at {offset} through a read handle: {}",
                        describe_difference(&bytes, expected)
                    ))
                }
            }
            (
                Pin::Version {
                    name, generation, ..
                },
                Err(Error::Stale { .. }),
            ) => {
                if self.generations.get(name).copied().unwrap_or(0) != *generation
                    || self.is_failing
                {
                    Ok(())
                } else {
                    Err(format!(
                        "read of {:?} through a read handle is stale; the object did not change",
                        name.key()
                    ))
                }
            }
            (Pin::Unknown { name }, Ok(bytes)) => {
                let any_version = bytes.is_empty()
                    || self.history.get(name).is_some_and(|versions| {
                        versions.iter().any(|v| {
                            v.len() >= offset as usize + bytes.len()
                                && *bytes == v[offset as usize..offset as usize + bytes.len()]
                        })
                    });
                if any_version {
                    Ok(())
                } else {
                    Err(format!(
                        "read of {len} at {offset} of {:?} through a handle opened while it was written: {} bytes of no single version",
                        name.key(),
                        bytes.len()
                    ))
                }
            }
            // A handle opened while the file was written pins no version:
            // once the writer is gone it may find the key changed.
            (Pin::Unknown { .. }, Err(Error::Stale { .. } | Error::Store(_))) => Ok(()),
            (_, Err(error)) => self.allow_failure("read", &error),
        }
    }

    /// One flush (fsync, or the flush of a close); returns whether it succeeded.
    pub(super) async fn flush(&mut self, index: usize) -> Result<bool, String> {
        let (fh, ino) = (self.handles[index].fh, self.handles[index].ino);
        let result = self
            .call("flush", move |fs| async move { fs.flush(fh).await })
            .await?;
        match result {
            Ok(()) => {
                if self.handles[index].is_writer {
                    self.committed(ino);
                }
                self.check_store()
                    .map_err(|error| format!("after a successful flush: {error}"))?;
                Ok(true)
            }
            Err(error) => {
                self.allow_writer_failure(ino, "flush", &error)?;
                if let Some(writer) = self.writers.get_mut(&ino) {
                    writer.has_failed_commit = true;
                }
                // A commit may fail after its bytes landed (the header copy
                // after a streamed upload): the key then holds exactly the
                // new bytes, and the next commit only sets the headers.
                if let Some(writer) = self.writers.get(&ino)
                    && writer.is_dirty
                    && let Some(name) = writer.name
                    && let Some(actual) = self.stored(name)
                    && *actual.bytes == writer.content
                    && !Self::matches(self.objects.get(&name), Some(&actual))
                {
                    self.set_object(name, Some(actual));
                }
                self.check_store()
                    .map_err(|error| format!("after a failed flush: {error}"))?;
                Ok(false)
            }
        }
    }

    /// A commit of the writer `ino` succeeded: its name holds its content.
    pub(super) fn committed(&mut self, ino: u64) {
        let Some(writer) = self.writers.get_mut(&ino) else {
            return;
        };
        writer.has_failed_commit = false;
        let Some(name) = writer.name else { return };
        if !writer.is_dirty {
            return;
        }
        writer.is_dirty = false;
        if !writer.content.is_empty() {
            writer.may_stream = false;
        }
        let object = Object {
            bytes: Arc::new(writer.content.clone()),
            mode: writer.mode,
        };
        self.set_object(name, Some(object));
    }

    pub(super) async fn close(&mut self, index: usize) -> Result<(), String> {
        let flushed = self.flush(index).await?;
        let handle = self.handles.remove(index);
        let fh = handle.fh;
        self.call("release", move |fs| async move { fs.release(fh).await })
            .await?;
        if !handle.is_writer {
            return self.check_store();
        }
        let writer = self
            .writers
            .get_mut(&handle.ino)
            .expect("handle of a writer");
        writer.handles -= 1;
        if writer.handles > 0 {
            return self.check_store();
        }
        let writer = self.writers.remove(&handle.ino).expect("checked");
        if let (Some(name), true) = (writer.name, writer.is_dirty) {
            // The last release commits what the failed flush could not; it
            // may fail again only while failures are injected.
            let object = Object {
                bytes: Arc::new(writer.content),
                mode: writer.mode,
            };
            let actual = self.stored(name);
            // Bytes that left staging and whose object another client
            // replaced exist nowhere: that commit fails for good.
            let may_fail = self.is_failing || writer.lost_streamed_bytes;
            if Self::matches(Some(&object), actual.as_ref()) {
                self.set_object(name, Some(object));
            } else if flushed || !may_fail {
                return Err(format!(
                    "after the last release of a dirty file, store key {:?}: {}",
                    name.key(),
                    self.explain(name, Some(&object), actual.as_ref())
                ));
            }
        }
        self.check_store()
    }

    pub(super) async fn truncate(
        &mut self,
        ino: u64,
        name: Option<Name>,
        at: At,
    ) -> Result<(), String> {
        if self.skips("after-failed-fsync")
            && self.writers.get(&ino).is_some_and(|w| w.has_failed_commit)
        {
            return Ok(());
        }
        if self.skips("truncate-streamed")
            && self
                .writers
                .get(&ino)
                .is_some_and(|w| w.may_refuse_as_already_uploaded(self.retain))
        {
            return Ok(());
        }
        let current = match (self.writers.get(&ino), name) {
            (Some(writer), _) => writer.content.len(),
            (None, Some(name)) => self.objects.get(&name).map_or(0, |o| o.bytes.len()),
            (None, None) => return Ok(()),
        };
        let size = at.resolve(current as u64);
        let change = SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        let result = self
            .call("truncate", move |fs| async move {
                fs.setattr(ino, change).await
            })
            .await?;
        match result {
            Ok(entry) if entry.attr.size != size => {
                return Err(format!(
                    "truncate to {size} answered size {}",
                    entry.attr.size
                ));
            }
            Ok(_) => {}
            Err(Error::AlreadyUploaded)
                if self
                    .writers
                    .get(&ino)
                    .is_some_and(|w| w.may_refuse_as_already_uploaded(self.retain)) =>
            {
                return self.check_store();
            }
            // ftruncate of an unlinked file: its inode has no name to find.
            Err(Error::NotFound) if name.is_none() => return self.check_store(),
            Err(error) => {
                self.allow_writer_failure(ino, "truncate", &error)?;
                return self
                    .check_store()
                    .map_err(|error| format!("after a failed truncate: {error}"));
            }
        }
        match self.writers.get_mut(&ino) {
            Some(writer) => {
                writer.content.resize(size as usize, 0);
                writer.is_dirty = true;
                if size == 0 {
                    writer.may_stream = true;
                    writer.streamed_size = 0;
                    writer.lost_streamed_bytes = false;
                }
            }
            None => {
                let name = name.expect("checked above");
                let mut object = self.objects.get(&name).cloned().ok_or_else(|| {
                    format!("truncate of {:?} succeeded with no object", name.key())
                })?;
                let mut bytes = object.bytes.to_vec();
                bytes.resize(size as usize, 0);
                object.bytes = Arc::new(bytes);
                self.set_object(name, Some(object));
            }
        }
        self.check_store()
            .map_err(|error| format!("after a truncate: {error}"))
    }

    pub(super) async fn chmod(&mut self, name: Name, mode: u16) -> Result<(), String> {
        if self.skips("chmod-streamed")
            && self
                .writer_named(name)
                .is_some_and(|ino| self.writers[&ino].streamed_size >= PART)
        {
            return Ok(());
        }
        let Lookup::Found(ino) = self.resolve(name).await? else {
            return Ok(());
        };
        let change = SetAttr {
            mode: Some(u32::from(mode)),
            ..SetAttr::default()
        };
        let result = self
            .call(
                "chmod",
                move |fs| async move { fs.setattr(ino, change).await },
            )
            .await?;
        match result {
            Ok(entry) if entry.attr.perm != mode => {
                return Err(format!("chmod {mode:o} answered {:o}", entry.attr.perm));
            }
            Ok(_) => {}
            Err(error) => {
                self.allow_failure("chmod", &error)?;
                return self
                    .check_store()
                    .map_err(|error| format!("after a failed chmod: {error}"));
            }
        }
        match self.writers.get_mut(&ino) {
            Some(writer) => {
                writer.mode = Some(mode);
                writer.is_dirty = true;
            }
            None => {
                let mut object =
                    self.objects.get(&name).cloned().ok_or_else(|| {
                        format!("chmod of {:?} succeeded with no object", name.key())
                    })?;
                object.mode = Some(mode);
                self.set_object(name, Some(object));
            }
        }
        self.check_store()
            .map_err(|error| format!("after a chmod: {error}"))
    }
}
