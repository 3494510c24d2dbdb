//! The daemon's two tokio runtimes: the I/O runtime, where FUSE requests
//! that wait and data transfers run on a worker per CPU, and the listing
//! runtime, one thread for the listings that run in the background (tree
//! walks, directories listed ahead of a reader) and the HEADs they send.
//!
//! Why a thread of their own: a walk that HEADs every key is thousands of
//! short requests, each a few wake-ups. Spread over the I/O runtime's
//! workers, the tasks bounce between them, and workers woken to steal work
//! find little, park, and are woken again: measured 2026-12-05 (2 CPUs shared
//! with s3s-fs, `find` over 10,000 keys with POSIX headers), the daemon spent
//! 1.9 s of CPU and 40,000 context switches on the walk with two workers,
//! 1.1 s and 5,600 with one. One worker for everything slows large reads
//! instead (6 to 16 %), which want every CPU; so the listings get one
//! thread, and the rest keeps its workers.

use std::io;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The multi-threaded runtime for FUSE requests and transfers: `threads`
/// workers, or one per CPU.
pub fn io_runtime(threads: Option<usize>) -> io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        builder.worker_threads(threads);
    }
    builder.enable_all().thread_name("bucketfs-io").build()
}

/// A single-threaded runtime on a thread of its own, stopped (its tasks
/// dropped) when this is dropped.
pub struct ListingRuntime {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ListingRuntime {
    pub fn start() -> io::Result<ListingRuntime> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bucketfs-list".into())
            .spawn(move || {
                // Either a stop or the sender dropped: both mean stop.
                let _ = runtime.block_on(stopped);
                // A blocking task (a disk read) is not waited for: the
                // listing it served is gone with the runtime.
                runtime.shutdown_background();
            })?;
        Ok(ListingRuntime {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl Drop for ListingRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
