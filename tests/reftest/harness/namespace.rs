//! Steps on names: rename and unlink.

use super::*;

impl Harness {
    pub(super) async fn rename(&mut self, from: Name, to: Name) -> Result<(), String> {
        if from == to {
            return Ok(());
        }
        if self.skips("failing-rename") && (self.is_failing || !self.objects.contains_key(&from)) {
            return Ok(());
        }
        // The kernel looks both names up first.
        let Lookup::Found(_) = self.resolve(from).await? else {
            return Ok(());
        };
        if self.resolve(to).await? == Lookup::Failed {
            return Ok(());
        }
        if self.skips("rename-onto-open") && self.writer_named(to).is_some() {
            return Ok(());
        }
        if self.skips("rename-dirty")
            && self
                .writer_named(from)
                .is_some_and(|ino| self.writers[&ino].is_dirty)
        {
            return Ok(());
        }
        let (parent, new_parent) = (self.parent(from), self.parent(to));
        let result = self
            .call("rename", move |fs| async move {
                fs.rename(parent, from.file_name(), new_parent, to.file_name(), false)
                    .await
            })
            .await?;
        let moving = self.writer_named(from);
        let replaced = self.writer_named(to);
        let old_from = self.objects.get(&from).cloned();
        let (actual_from, actual_to) = (self.stored(from), self.stored(to));
        if let Err(error) = result {
            // The object of a clean open file that another client deleted
            // is gone: there is nothing to move (last close wins).
            let is_gone = !self.objects.contains_key(&from)
                && moving.is_some_and(|ino| !self.writers[&ino].is_dirty);
            if !(is_gone && matches!(error, Error::NotFound)) {
                self.allow_failure("rename", &error)?;
            }
            // No bytes lost: what `from` held is still under one of the names.
            // Its newer contents count too: a rename may commit an open
            // file under the old name before it moves it.
            let newer = moving.map(|ino| Object {
                bytes: Arc::new(self.writers[&ino].content.clone()),
                mode: None,
            });
            let is_kept = |object: &Object| {
                Self::matches(Some(object), actual_from.as_ref())
                    || Self::matches(Some(object), actual_to.as_ref())
            };
            if let Some(old) = &old_from
                && !is_kept(old)
                && !newer.as_ref().is_some_and(is_kept)
            {
                return Err(format!(
                    "a failed rename lost the object {:?}: it is under neither name",
                    from.key()
                ));
            }
            if let Some(replaced) = replaced
                && moving != Some(replaced)
                && let Ok(found) = self.lookup(to).await?
                && found != Some(replaced)
            {
                // The move happened on the mount (only removing the old key
                // failed): the open file under `to` was replaced.
                self.writers.get_mut(&replaced).expect("found above").name = None;
            }
            return self.after_failed_rename(from, to, moving).await;
        }
        match moving.map(|ino| &self.writers[&ino]) {
            Some(writer) if writer.is_dirty => {
                // bucketfs uploads the changes under the new name before the
                // old name goes: `to` holds exactly the new contents now.
                let content = Object {
                    bytes: Arc::new(writer.content.clone()),
                    mode: writer.mode,
                };
                if !Self::matches(Some(&content), actual_to.as_ref()) {
                    return Err(format!(
                        "after renaming the dirty open file {:?} to {:?}, the new name {}",
                        from.key(),
                        to.key(),
                        self.explain(to, Some(&content), actual_to.as_ref())
                    ));
                }
                self.set_object(to, actual_to);
            }
            Some(_) => {
                // A clean open file moves as the object its name holds,
                // which another client may have replaced: the file takes
                // that object's metadata, as a stat of the new name shows.
                let mode = old_from.as_ref().and_then(|object| object.mode);
                let ino = moving.expect("matched Some");
                self.writers.get_mut(&ino).expect("found above").mode = mode;
                self.set_object(to, old_from);
            }
            None => self.set_object(to, old_from),
        }
        self.set_object(from, None);
        if let Some(ino) = replaced {
            self.writers.get_mut(&ino).expect("found above").name = None;
        }
        if let Some(ino) = moving {
            self.writers.get_mut(&ino).expect("found above").name = Some(to);
            self.committed(ino);
        }
        self.check_store()
            .map_err(|error| format!("after a rename: {error}"))
    }

    /// After a failed rename the model takes the store as it is (checked to
    /// have lost nothing) and asks the namespace where the open file went.
    pub(super) async fn after_failed_rename(
        &mut self,
        from: Name,
        to: Name,
        moving: Option<u64>,
    ) -> Result<(), String> {
        let (actual_from, actual_to) = (self.stored(from), self.stored(to));
        if !Self::matches(self.objects.get(&from), actual_from.as_ref()) {
            self.set_object(from, actual_from);
        }
        if !Self::matches(self.objects.get(&to), actual_to.as_ref()) {
            self.set_object(to, actual_to);
        }
        let Some(ino) = moving else {
            return Ok(());
        };
        let at_from = self.lookup(from).await?;
        let at_to = self.lookup(to).await?;
        match (at_from, at_to) {
            (Ok(Some(found)), _) if found == ino => Ok(()),
            (_, Ok(Some(found))) if found == ino => {
                if let Some(replaced) = self.writer_named(to) {
                    self.writers.get_mut(&replaced).expect("found").name = None;
                }
                let writer = self.writers.get_mut(&ino).expect("found");
                writer.name = Some(to);
                // The move commits a dirty file under the new name before
                // the old key goes: when only that removal failed, the file
                // is clean now, and another client's later PUT stands.
                let committed = Object {
                    bytes: Arc::new(writer.content.clone()),
                    mode: writer.mode,
                };
                if writer.is_dirty && Self::matches(Some(&committed), self.objects.get(&to)) {
                    writer.is_dirty = false;
                    if !writer.content.is_empty() {
                        writer.may_stream = false;
                    }
                }
                Ok(())
            }
            _ => Err(format!(
                "after a failed rename the open file {:?} is under neither name",
                from.key()
            )),
        }
    }

    pub(super) async fn unlink(&mut self, name: Name) -> Result<(), String> {
        if self.skips("streamed-object-changes")
            && self
                .writer_named(name)
                .is_some_and(|ino| self.writers[&ino].streamed_size >= PART)
        {
            return Ok(());
        }
        let Lookup::Found(_) = self.resolve(name).await? else {
            return Ok(());
        };
        let parent = self.parent(name);
        let result = self
            .call("unlink", move |fs| async move {
                fs.unlink(parent, name.file_name()).await
            })
            .await?;
        match result {
            Ok(()) => {
                self.set_object(name, None);
                if let Some(ino) = self.writer_named(name) {
                    self.writers.get_mut(&ino).expect("found").name = None;
                }
                self.check_store()
                    .map_err(|error| format!("after an unlink: {error}"))
            }
            Err(error) => {
                self.allow_failure("unlink", &error)?;
                self.check_store()
                    .map_err(|error| format!("after a failed unlink: {error}"))
            }
        }
    }
}
