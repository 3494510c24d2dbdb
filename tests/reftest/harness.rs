//! Runs a sequence of `Op`s against a `Filesystem` over a `MemoryStore`
//! and against the model, and compares them after every step. The rules the
//! model enforces are stated in the `//!` doc of `tests/reftest.rs`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bucketfs::config::FsConfig;
use bucketfs::fs::{Caller, Error, Filesystem, OpenIntent, ROOT_INO, SetAttr};
use bucketfs::store::memory::{MemoryStore, Verb};
use bytes::Bytes;

use super::ops::{At, Name, Op, OpenMode, PART, Retain};
use crate::core_fs::fs_config;

mod contents;
mod namespace;

const MIB: u64 = 1024 * 1024;

/// Bytes one case may write through the file system, all writes together;
/// past it writes shrink to 4 KiB, so that a case stays fast.
const MAX_CASE_WRITE_BYTES: u64 = 24 * MIB;

/// A step that takes this long is hung (a lock never released, a task
/// waiting for a part that never comes); a healthy step takes milliseconds.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

const CALLER: Caller = Caller {
    uid: 1234,
    gid: 4321,
};

type Fs = Filesystem<MemoryStore>;

/// Situations the property steers clear of, named in `REFTEST_SKIP`
/// (comma-separated): while a known bug is being fixed, the property can
/// look past it for others. CI sets none; regression tests ignore it.
pub fn skips_from_env() -> Vec<String> {
    std::env::var("REFTEST_SKIP")
        .map(|skip| skip.split(',').map(|name| name.trim().to_owned()).collect())
        .unwrap_or_default()
}

/// An object as the model expects the store to hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Object {
    bytes: Arc<Vec<u8>>,
    /// Permission bits of `x-amz-meta-mode`; `None` when another client
    /// wrote it without one (not checked).
    mode: Option<u16>,
}

/// The one staged copy of a file open for writing, shared by its handles.
#[derive(Debug)]
struct Writer {
    /// `None` once unlinked or replaced by a rename: the file lives on for
    /// its handles but nothing is uploaded any more.
    name: Option<Name>,
    content: Vec<u8>,
    mode: Option<u16>,
    is_dirty: bool,
    handles: usize,
    /// The file was emptied (created or truncated to 0) and has not had a
    /// non-empty commit since: it may be streaming, so bytes may have left
    /// staging once a part went (`AlreadyUploaded` until the next commit).
    may_stream: bool,
    /// Largest size since `may_stream` was set.
    streamed_size: u64,
    /// Its last commit failed (for `REFTEST_SKIP=after-failed-fsync`).
    has_failed_commit: bool,
    /// Another client replaced or deleted its key after parts streamed: the
    /// bytes given back from staging exist only in the object we committed,
    /// which is gone, so touching them is `Stale` (a documented limit).
    lost_streamed_bytes: bool,
}

impl Writer {
    fn may_refuse_as_already_uploaded(&self, retain: Retain) -> bool {
        self.may_stream && self.streamed_size >= PART + retain.bytes()
    }
}

#[derive(Debug, Clone)]
enum Pin {
    /// Opened for reading while no writer existed: reads see this version
    /// of the object or fail with `Stale` once the key changed.
    Version {
        name: Name,
        bytes: Arc<Vec<u8>>,
        generation: u64,
    },
    /// Opened while a writer existed: reads see the staged copy while the
    /// writer lives, and afterwards some single version the key has held.
    Unknown { name: Name },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    Found(u64),
    Missing,
    /// The lookup failed under injected failures: the step cannot go on.
    Failed,
}

#[derive(Debug)]
struct Handle {
    fh: u64,
    ino: u64,
    is_writer: bool,
    pin: Pin,
}

pub struct Harness {
    store: Arc<MemoryStore>,
    fs: Arc<Fs>,
    retain: Retain,
    subdirectory: u64,
    objects: BTreeMap<Name, Object>,
    /// Bumped at every change of a key, for `Pin::Version`.
    generations: HashMap<Name, u64>,
    /// Every version each key has held, for `Pin::Unknown`.
    history: HashMap<Name, Vec<Arc<Vec<u8>>>>,
    writers: HashMap<u64, Writer>,
    handles: Vec<Handle>,
    /// Failures were injected for the step running: store errors may surface.
    is_failing: bool,
    written_bytes: u64,
    next_write_id: u64,
    skip: Vec<String>,
}

fn config(retain: Retain) -> FsConfig {
    FsConfig {
        // Every lookup asks the store, so the model need not know what the
        // file system cached: an open sees the object as it is now.
        metadata_ttl: Duration::ZERO,
        negative_metadata_ttl: Duration::ZERO,
        write_part_size_bytes: PART,
        stream_retain_bytes: retain.bytes(),
        ..fs_config()
    }
}

/// Bytes that no two writes share, and never zero, so that a hole, a stale
/// version or bytes of another write show.
fn pattern(id: u64, offset: u64, len: usize) -> Vec<u8> {
    let salt = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len as u64)
        .map(|i| {
            let x = (offset + i).wrapping_mul(0x2545_F491_4F6C_DD1D) ^ salt;
            1 + ((x >> 29) % 255) as u8
        })
        .collect()
}

fn describe_difference(actual: &[u8], expected: &[u8]) -> String {
    let first = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    let zeros = actual.get(first..).map_or(0, |rest| {
        rest.iter()
            .zip(&expected[first.min(expected.len())..])
            .take_while(|(a, e)| **a == 0 && **e != 0)
            .count()
    });
    let mut text = format!(
        "{} bytes, expected {}; first difference at {first}",
        actual.len(),
        expected.len()
    );
    if zeros > 0 {
        text.push_str(&format!(" ({zeros} zero bytes where data was written)"));
    }
    text
}

fn octal(mode: Option<u16>) -> String {
    mode.map_or_else(|| "none".to_owned(), |mode| format!("{mode:o}"))
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic".to_owned()),
        Err(error) => error.to_string(),
    }
}

/// Bytes in `[offset, offset + len)` of `content`, as a read returns them.
fn slice(content: &[u8], offset: u64, len: u64) -> &[u8] {
    let start = (offset as usize).min(content.len());
    let end = (offset.saturating_add(len) as usize).min(content.len());
    &content[start..end]
}

fn is_store_error(error: &Error) -> bool {
    matches!(error, Error::Store(_) | Error::Upload(_))
}

impl Harness {
    fn skips(&self, situation: &str) -> bool {
        self.skip.iter().any(|name| name == situation)
    }

    pub async fn new(retain: Retain, skip: Vec<String>) -> Result<Harness, String> {
        let store = Arc::new(MemoryStore::new());
        store.put("d/", Vec::new());
        let fs = Filesystem::new(Arc::clone(&store), config(retain), 4)
            .map_err(|error| format!("no staging directory: {error}"))?;
        let fs = Arc::new(fs);
        let subdirectory = fs
            .lookup(ROOT_INO, "d")
            .await
            .map_err(|error| format!("lookup of d: {error}"))?
            .attr
            .ino;
        Ok(Harness {
            store,
            fs,
            retain,
            subdirectory,
            objects: BTreeMap::new(),
            generations: HashMap::new(),
            history: HashMap::new(),
            writers: HashMap::new(),
            handles: Vec::new(),
            is_failing: false,
            written_bytes: 0,
            next_write_id: 1,
            skip,
        })
    }

    /// Runs `f` on the file system in its own task: a panic or a hang is a
    /// failure of the step, not of the test process.
    async fn call<T, F>(&self, what: &str, f: impl FnOnce(Arc<Fs>) -> F) -> Result<T, String>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let task = tokio::spawn(f(Arc::clone(&self.fs)));
        match tokio::time::timeout(STEP_TIMEOUT, task).await {
            Err(_) => Err(format!("{what} hung for {STEP_TIMEOUT:?}")),
            Ok(Err(join)) => Err(format!("{what} panicked: {}", panic_message(join))),
            Ok(Ok(value)) => Ok(value),
        }
    }

    fn parent(&self, name: Name) -> u64 {
        if name.is_in_subdirectory() {
            self.subdirectory
        } else {
            ROOT_INO
        }
    }

    fn writer_named(&self, name: Name) -> Option<u64> {
        self.writers
            .iter()
            .find(|(_, writer)| writer.name == Some(name))
            .map(|(ino, _)| *ino)
    }

    fn exists(&self, name: Name) -> bool {
        self.writer_named(name).is_some() || self.objects.contains_key(&name)
    }

    fn set_object(&mut self, name: Name, object: Option<Object>) {
        *self.generations.entry(name).or_default() += 1;
        match object {
            Some(object) => {
                self.history
                    .entry(name)
                    .or_default()
                    .push(Arc::clone(&object.bytes));
                self.objects.insert(name, object);
            }
            None => {
                self.objects.remove(&name);
            }
        }
    }

    /// An error is acceptable from an operation only while store failures
    /// are injected.
    fn allow_writer_failure(&self, ino: u64, what: &str, error: &Error) -> Result<(), String> {
        let lost = self
            .writers
            .get(&ino)
            .is_some_and(|w| w.lost_streamed_bytes);
        if lost && matches!(error, Error::Stale { .. }) {
            return Ok(());
        }
        self.allow_failure(what, error)
    }

    fn allow_failure(&self, what: &str, error: &Error) -> Result<(), String> {
        if self.is_failing && (is_store_error(error) || matches!(error, Error::Stale { .. })) {
            Ok(())
        } else {
            Err(format!("{what} failed: {error:?}"))
        }
    }

    /// What the store holds under `name`, without counting a request.
    fn stored(&self, name: Name) -> Option<Object> {
        self.store.get(name.key()).map(|(bytes, metadata)| Object {
            bytes: Arc::new(bytes.to_vec()),
            mode: metadata
                .get("mode")
                .and_then(|mode| mode.parse::<u32>().ok())
                .map(|mode| (mode & 0o7777) as u16),
        })
    }

    fn matches(expected: Option<&Object>, actual: Option<&Object>) -> bool {
        match (expected, actual) {
            (None, None) => true,
            (Some(expected), Some(actual)) => {
                expected.bytes == actual.bytes
                    && (expected.mode.is_none() || expected.mode == actual.mode)
            }
            _ => false,
        }
    }

    /// The store holds exactly the model's objects.
    fn check_store(&self) -> Result<(), String> {
        for name in Name::ALL {
            let expected = self.objects.get(&name);
            let actual = self.stored(name);
            if !Self::matches(expected, actual.as_ref()) {
                return Err(format!(
                    "store key {:?}: {}",
                    name.key(),
                    self.explain(name, expected, actual.as_ref())
                ));
            }
        }
        Ok(())
    }

    fn explain(&self, name: Name, expected: Option<&Object>, actual: Option<&Object>) -> String {
        match (expected, actual) {
            (None, Some(actual)) => format!("holds {} bytes, expected none", actual.bytes.len()),
            (Some(expected), None) => {
                format!("is missing, expected {} bytes", expected.bytes.len())
            }
            (Some(expected), Some(actual)) if expected.bytes == actual.bytes => format!(
                "mode {}, expected {}",
                octal(actual.mode),
                octal(expected.mode)
            ),
            (Some(expected), Some(actual)) => {
                let mut text = describe_difference(&actual.bytes, &expected.bytes);
                let older = self
                    .history
                    .get(&name)
                    .is_some_and(|versions| versions.iter().any(|v| **v == *actual.bytes));
                if older {
                    text.push_str(" (an older version)");
                }
                text
            }
            (None, None) => "matches".to_owned(),
        }
    }

    async fn lookup(&self, name: Name) -> Result<Result<Option<u64>, Error>, String> {
        let parent = self.parent(name);
        let result = self
            .call("lookup", move |fs| async move {
                fs.lookup(parent, name.file_name()).await
            })
            .await?;
        Ok(match result {
            Ok(entry) => Ok(Some(entry.attr.ino)),
            Err(Error::NotFound) => Ok(None),
            Err(error) => Err(error),
        })
    }

    /// Looks a name up as the kernel does before acting on it, and checks
    /// that the answer is the model's.
    async fn resolve(&self, name: Name) -> Result<Lookup, String> {
        match self.lookup(name).await? {
            Err(error) => {
                self.allow_failure("lookup", &error)?;
                Ok(Lookup::Failed)
            }
            Ok(None) if self.exists(name) => Err(format!(
                "lookup of {:?} found nothing; the model has it",
                name.key()
            )),
            Ok(None) => Ok(Lookup::Missing),
            Ok(Some(_)) if !self.exists(name) => Err(format!(
                "lookup of {:?} found a file; the model has none",
                name.key()
            )),
            Ok(Some(ino)) => match self.writer_named(name) {
                Some(writer) if writer != ino => Err(format!(
                    "lookup of {:?} gave inode {ino}, the open file is {writer}",
                    name.key()
                )),
                _ => Ok(Lookup::Found(ino)),
            },
        }
    }

    fn handle_index(&self, index: u8, writers_only: bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.handles.len())
            .filter(|&i| !writers_only || self.handles[i].is_writer)
            .collect();
        (!candidates.is_empty()).then(|| candidates[index as usize % candidates.len()])
    }

    pub async fn step(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Failing {
                verb,
                count,
                timeout,
                op,
            } if self.skips("failing-setattr")
                && matches!(**op, Op::Truncate(..) | Op::Ftruncate(..) | Op::Chmod(..))
                || self.skips("failing-unlink") && matches!(**op, Op::Unlink(..)) =>
            {
                let _ = (verb, count, timeout);
                Box::pin(self.step(op)).await
            }
            Op::Failing {
                verb,
                count,
                timeout,
                op,
            } => {
                self.store
                    .fail_next(verb.verb(), Op::failure_kind(*timeout), usize::from(*count));
                self.is_failing = true;
                let result = Box::pin(self.step(op)).await;
                self.store.clear_failures();
                self.is_failing = false;
                result
            }
            Op::Create(name) => self.create(*name).await,
            Op::Open(name, mode) => self.open(*name, *mode).await,
            Op::Write { handle, at, len } => self.write(*handle, *at, *len).await,
            Op::Read { handle, at, len } => self.read(*handle, *at, *len).await,
            Op::Fsync(handle) => {
                if let Some(index) = self.handle_index(*handle, false) {
                    self.flush(index).await?;
                }
                Ok(())
            }
            Op::Close(handle) => match self.handle_index(*handle, false) {
                Some(index) => self.close(index).await,
                None => Ok(()),
            },
            Op::Truncate(name, at) => match self.resolve(*name).await? {
                Lookup::Found(ino) => self.truncate(ino, Some(*name), *at).await,
                Lookup::Missing | Lookup::Failed => Ok(()),
            },
            Op::Ftruncate(handle, at) => match self.handle_index(*handle, true) {
                Some(index) => {
                    let ino = self.handles[index].ino;
                    let name = self.writers.get(&ino).and_then(|w| w.name);
                    self.truncate(ino, name, *at).await
                }
                None => Ok(()),
            },
            Op::Chmod(name, mode) => self.chmod(*name, *mode).await,
            Op::Rename(from, to) => self.rename(*from, *to).await,
            Op::Unlink(name) => self.unlink(*name).await,
            Op::OtherPut(name, _) | Op::OtherDelete(name)
                if self.skips("streamed-object-changes")
                    && self
                        .writer_named(*name)
                        .is_some_and(|ino| self.writers[&ino].streamed_size >= PART) =>
            {
                Ok(())
            }
            Op::OtherPut(name, len) => {
                self.note_replaced(*name);
                let id = self.next_write_id;
                self.next_write_id += 1;
                let bytes = pattern(id, 0, *len as usize);
                self.store.put(name.key(), bytes.clone());
                self.set_object(
                    *name,
                    Some(Object {
                        bytes: Arc::new(bytes),
                        mode: None,
                    }),
                );
                Ok(())
            }
            Op::OtherDelete(name) => {
                self.note_replaced(*name);
                self.store.delete(name.key());
                self.set_object(*name, None);
                Ok(())
            }
        }
    }

    fn note_replaced(&mut self, name: Name) {
        if let Some(ino) = self.writer_named(name)
            && let Some(writer) = self.writers.get_mut(&ino)
            && writer.streamed_size >= PART
        {
            writer.lost_streamed_bytes = true;
        }
    }

    /// Closes every handle, then reads every file back through a fresh
    /// open, and waits for abandoned multipart uploads to be aborted.
    pub async fn finish(&mut self) -> Result<(), String> {
        while !self.handles.is_empty() {
            self.close(self.handles.len() - 1).await?;
        }
        for name in Name::ALL {
            let Lookup::Found(ino) = self.resolve(name).await? else {
                continue;
            };
            let expected = Arc::clone(&self.objects[&name].bytes);
            let len = expected.len() as u32 + 1;
            let bytes = self
                .call("read back", move |fs| async move {
                    let (fh, _) = fs.open(ino, OpenIntent::Read).await?;
                    let bytes = fs.read(fh, 0, len).await;
                    fs.release(fh).await;
                    bytes
                })
                .await?
                .map_err(|error| format!("read back of {:?} failed: {error:?}", name.key()))?;
            if *bytes != *expected {
                return Err(format!(
                    "read back of {:?} after closing everything: {}",
                    name.key(),
                    describe_difference(&bytes, &expected)
                ));
            }
        }
        for _ in 0..500 {
            if self.store.pending_uploads() == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(format!(
            "{} multipart uploads left behind",
            self.store.pending_uploads()
        ))
    }
}

/// Runs one case: every step, then `finish`. The error names the step.
pub async fn run_case(retain: Retain, ops: &[Op], skip: Vec<String>) -> Result<(), String> {
    let mut harness = Harness::new(retain, skip).await?;
    let result = run_steps(&mut harness, ops).await;
    let mut totals = REQUESTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (total, verb) in totals.iter_mut().zip(COUNTED_VERBS) {
        *total += harness.store.request_count(verb);
    }
    result
}

async fn run_steps(harness: &mut Harness, ops: &[Op]) -> Result<(), String> {
    for (index, op) in ops.iter().enumerate() {
        harness
            .step(op)
            .await
            .map_err(|error| format!("step {index} ({op:?}): {error}"))?;
    }
    harness
        .finish()
        .await
        .map_err(|error| format!("at the end: {error}"))
}

/// Requests of these verbs that the cases run so far sent, to show that
/// the property reaches multipart uploads, part copies and renames.
const COUNTED_VERBS: [Verb; 6] = [
    Verb::Put,
    Verb::CreateMultipart,
    Verb::UploadPart,
    Verb::UploadPartCopy,
    Verb::CompleteMultipart,
    Verb::Copy,
];

static REQUESTS: std::sync::Mutex<[u64; 6]> = std::sync::Mutex::new([0; 6]);

/// `COUNTED_VERBS` and their totals, for the property's summary line.
pub fn request_totals() -> String {
    let totals = *REQUESTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    COUNTED_VERBS
        .iter()
        .zip(totals)
        .map(|(verb, total)| format!("{verb:?} {total}"))
        .collect::<Vec<_>>()
        .join(", ")
}
