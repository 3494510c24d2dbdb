//! Who holds a file open for writing.
//!
//! Every descriptor open for writing, and every call that changes a file
//! through its staged copy (a truncate, a chmod of an open file), holds one
//! `WriterRef`. The file's `OpenWrite` lives while anyone holds it; the last
//! holder to let go either commits (`Filesystem::release_writer`, the normal
//! path) or, when the guard is merely dropped (a call that failed part way),
//! discards what was staged, since the call that staged it reported the
//! failure. Either way the inode stops being "written" and the table forgets
//! the file, so no early return can leave a file open for writing forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::state::OpenWrite;
use crate::fs::inode::InodeTable;
use crate::store::ObjectStore;

/// Files open for writing on this mount, by inode.
pub(in crate::fs) type WriterTable = Mutex<HashMap<u64, Arc<SharedWriter>>>;

pub(in crate::fs) struct SharedWriter {
    /// Holders right now; zero once the last one let go, after which
    /// nobody may join.
    holders: Mutex<usize>,
    pub open: tokio::sync::Mutex<OpenWrite>,
}

impl SharedWriter {
    pub fn new(open: OpenWrite) -> Arc<Self> {
        Arc::new(SharedWriter {
            holders: Mutex::new(1),
            open: tokio::sync::Mutex::new(open),
        })
    }

    /// One more holder, unless the last one already let go.
    pub fn join(&self) -> bool {
        let mut holders = self.holders.lock().unwrap();
        if *holders == 0 {
            return false;
        }
        *holders += 1;
        true
    }
}

/// One holder's reference; see the module doc for what letting go does.
pub(in crate::fs) struct WriterRef {
    writer: Arc<SharedWriter>,
    ino: u64,
    is_held: bool,
    table: Arc<WriterTable>,
    inodes: Arc<Mutex<InodeTable>>,
    /// Ends a file that its last holder dropped without committing (it
    /// gives up any stream, which needs the store).
    discard: Discard,
}

/// See `WriterRef::discard`.
pub(in crate::fs) type Discard = Arc<dyn Fn(Arc<SharedWriter>) + Send + Sync>;

/// The `Discard` of a mount over `store`: in the background, since a drop
/// cannot wait for the file's lock.
pub(in crate::fs) fn discard_with<S: ObjectStore>(store: &Arc<S>) -> Discard {
    let store = Arc::clone(store);
    Arc::new(move |writer: Arc<SharedWriter>| {
        let store = Arc::clone(&store);
        let discard = async move {
            let mut open = writer.open.lock().await;
            if open.needs_commit() {
                log::warn!(
                    "{}: changes of a failed call discarded; the object is unchanged",
                    open.key
                );
            }
            open.unlink(&store);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(discard);
            }
            // Outside a runtime (the filesystem is being dropped): no stream
            // can be in flight without one either.
            Err(_) => drop(discard),
        }
    })
}

/// What letting go of a reference left to do.
pub(in crate::fs) enum LetGo {
    /// Others still hold the file.
    Shared,
    /// This was the last holder: the file is no longer open for writing.
    Last,
}

impl WriterRef {
    /// Wraps a holder count already taken on `writer` (by `SharedWriter::new`
    /// or `join`).
    pub fn new(
        writer: Arc<SharedWriter>,
        ino: u64,
        table: &Arc<WriterTable>,
        inodes: &Arc<Mutex<InodeTable>>,
        discard: &Discard,
    ) -> Self {
        WriterRef {
            writer,
            ino,
            is_held: true,
            table: Arc::clone(table),
            inodes: Arc::clone(inodes),
            discard: Arc::clone(discard),
        }
    }

    pub fn shared(&self) -> &Arc<SharedWriter> {
        &self.writer
    }

    pub fn is_only_holder(&self) -> bool {
        *self.writer.holders.lock().unwrap() == 1
    }

    /// Lets go if others hold the file; `Err(self)` when this is the last
    /// holder, who must finish the file (commit) and then call `let_go`.
    pub fn let_go_if_shared(mut self) -> Result<(), Self> {
        let mut holders = self.writer.holders.lock().unwrap();
        if *holders > 1 {
            *holders -= 1;
            drop(holders);
            self.is_held = false;
            return Ok(());
        }
        drop(holders);
        Err(self)
    }

    /// Lets go. The last holder removes the file from the table.
    pub fn let_go(mut self) -> LetGo {
        self.is_held = false;
        self.release_hold()
    }

    fn release_hold(&self) -> LetGo {
        let mut holders = self.writer.holders.lock().unwrap();
        *holders = holders.saturating_sub(1);
        if *holders > 0 {
            return LetGo::Shared;
        }
        let mut table = self.table.lock().unwrap();
        if table
            .get(&self.ino)
            .is_some_and(|current| Arc::ptr_eq(current, &self.writer))
        {
            table.remove(&self.ino);
        }
        drop(table);
        drop(holders);
        if let Some(inode) = self.inodes.lock().unwrap().get_mut(self.ino) {
            inode.is_being_written = false;
        }
        LetGo::Last
    }
}

impl Drop for WriterRef {
    fn drop(&mut self) {
        if !self.is_held {
            return;
        }
        if let LetGo::Shared = self.release_hold() {
            return;
        }
        // The last holder failed part way: what it staged is not the file.
        // Ask the store again rather than trust the local stat.
        if let Some(inode) = self.inodes.lock().unwrap().get_mut(self.ino) {
            inode.validated_at = Instant::now()
                .checked_sub(Duration::from_secs(24 * 3600))
                .unwrap_or(inode.validated_at);
        }
        (self.discard)(Arc::clone(&self.writer));
    }
}
