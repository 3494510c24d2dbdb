//! Keeps the inode table within `--max-inodes`. The table holds what the
//! kernel holds, and the kernel lets go of entries only under memory
//! pressure: after a walk of a million keys it holds a million. Past the
//! bound, a thread of its own asks the kernel to drop the entries the table
//! has known longest (FUSE_NOTIFY_INVAL_ENTRY); the kernel then sends the
//! forgets that shrink the table. Its own thread, because a notification
//! waits for the directory's lock, which a request being answered on the
//! dispatch thread may hold.

use std::ffi::OsStr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use fuser::{INodeNo, Notifier};

use crate::fs::Filesystem;
use crate::store::ObjectStore;

/// How often the table's size is looked at.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Stops the thread when dropped (the session ended); does not wait for it.
pub(super) struct InodeBudget {
    stopped: Arc<(Mutex<bool>, Condvar)>,
}

impl Drop for InodeBudget {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stopped;
        *stopped.lock().unwrap() = true;
        wake.notify_all();
    }
}

pub(super) fn keep<S: ObjectStore>(fs: Arc<Filesystem<S>>, notifier: Notifier) -> InodeBudget {
    let stopped = Arc::new((Mutex::new(false), Condvar::new()));
    let thread_stopped = Arc::clone(&stopped);
    let spawned = thread::Builder::new()
        .name("inode-budget".to_owned())
        .spawn(move || run(&fs, &notifier, &thread_stopped));
    if let Err(error) = spawned {
        log::warn!("cannot start the thread that keeps --max-inodes: {error}; not kept");
    }
    InodeBudget { stopped }
}

fn run<S: ObjectStore>(fs: &Filesystem<S>, notifier: &Notifier, stopped: &(Mutex<bool>, Condvar)) {
    let mut over = false;
    loop {
        {
            let (stopped, wake) = stopped;
            let guard = stopped.lock().unwrap();
            let (guard, _) = wake
                .wait_timeout_while(guard, CHECK_EVERY, |stopped| !*stopped)
                .unwrap();
            if *guard {
                return;
            }
        }
        let (held, entries) = fs.entries_over_budget();
        if entries.is_empty() {
            if over && held <= fs.max_inodes() {
                log::info!("inode table within --max-inodes again: {held} held");
                over = false;
            }
            continue;
        }
        if !over {
            log::info!(
                "inode table over --max-inodes ({held} held, at most {}): asking the kernel to forget the oldest entries",
                fs.max_inodes()
            );
            over = true;
        }
        let mut asked = 0;
        for (parent, name) in entries {
            match notifier.inval_entry(INodeNo(parent), OsStr::new(&name)) {
                Ok(()) => asked += 1,
                // The kernel had already let go of that name.
                Err(error) if error.raw_os_error() == Some(libc::ENOENT) => {}
                // The connection is gone: the session is ending.
                Err(error) if matches!(error.raw_os_error(), Some(libc::ENODEV | libc::EBADF)) => {
                    return;
                }
                Err(error) => log::debug!("cannot ask the kernel to forget {name:?}: {error}"),
            }
        }
        log::debug!("inode table: {held} held; asked the kernel to forget {asked}");
    }
}
