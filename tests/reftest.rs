//! A reference model of the write path. proptest draws sequences of file
//! operations over three names (`a`, `b` and `d/c`), runs them through the
//! filesystem core (`fs::Filesystem` over `MemoryStore`, no FUSE) and
//! through a model (a `BTreeMap` from key to the bytes and mode the store
//! must hold, plus the contents of each file open for writing), and
//! compares the two after every step. Each step runs in its own tokio task:
//! a panic or a hang (30 s) is a failure like any other.
//!
//! The operations are those of a process on a mount, as the kernel sends
//! them: create (`open(O_CREAT|O_TRUNC)`, which opens the file when the
//! lookup finds it), open for reading, for writing and for writing with
//! O_TRUNC, writes at offsets (at the end, inside, past the end, and sizes
//! around the 5 MiB part size, split into 1 MiB calls), reads, fsync, close
//! (flush then release), truncate and ftruncate, chmod, rename (onto an
//! existing name too, and while open and dirty), unlink (also while open);
//! and, from outside, another client's PUT or DELETE of a key, and store
//! requests of one verb failing (1 to 3 of them, Timeout or Other) during
//! one operation. Failures not consumed by that operation are dropped.
//!
//! What the model requires:
//! - After every step the store holds exactly the model's objects, bytes and
//!   `x-amz-meta-mode`. Objects change only when this mount commits
//!   (a successful fsync or close, a truncate or chmod of a file nobody has
//!   open, a rename, an unlink) or another client acts.
//! - A successful fsync or flush of a dirty file makes its key hold exactly
//!   the file's bytes and mode. A failed one returns an error and leaves the
//!   store as it was; a later successful one catches up.
//! - The last release of a dirty file commits it (close-to-open): it may
//!   fail only while failures are injected, and then leaves the store as it
//!   was.
//! - Reads through a file open for writing on this mount, by any of its
//!   handles, return its bytes as written (holes and truncated-then-grown
//!   ranges as zeros). A read handle opened while nobody wrote the file
//!   returns the version it opened or fails with `Stale` once the key
//!   changed; one opened while the file was being written returns, after
//!   the writer is gone, a range of a single version the key has held.
//! - Any operation may fail with a store error while failures are injected,
//!   and then changes nothing (a failed write writes nothing, a failed
//!   truncate or chmod leaves the object and the open file as they were, a
//!   failed unlink leaves the file in place), except rename (below).
//!   Without injected failures no operation fails, except with
//!   `AlreadyUploaded` (the documented limit of streaming: bytes of a file
//!   written from empty leave staging once their part is uploaded) for a
//!   read, write or truncate of a file emptied since its last non-empty
//!   commit that has reached a part plus `--stream-retain` bytes.
//!
//! Where the semantics are loose, the model chooses:
//! - Another client's write to a key open here: the last close wins. A
//!   dirty file's next commit replaces whatever the other client put; a
//!   clean open file is not uploaded again, so the other client's object
//!   stays, while this mount's handles go on reading their staged copy.
//!   Another client's delete is the same: a dirty file comes back at its
//!   commit.
//! - chmod of a file open for writing changes the mode its next commit
//!   writes; the object's mode changes then, not at once.
//! - Rename of a file open and dirty: the old key is gone at once. If it
//!   held committed bytes, the new key holds them or the new contents at
//!   once: no name may lose bytes that were committed. If it never held
//!   any, the new key may keep what it held until the file's commit.
//! - Rename onto a file open here: that file loses its name (as an unlinked
//!   one): its later commits upload nothing.
//! - A failed rename may leave the store half way (S3 has no atomic rename),
//!   but the object that the old name held must be under one of the two
//!   names, and an open file must be found under one of them, the name its
//!   next commit then writes.
//! - Rename of a clean open file whose object another client deleted may
//!   fail with NotFound: there is nothing to move (last close wins).
//! - Metadata TTL is zero, so that every lookup asks the store and an open
//!   sees the object as it is (close-to-open) without the model knowing
//!   what the file system cached.
//!
//! CI runs `DEFAULT_CASES` cases from the fixed `DEFAULT_SEED` (ChaCha) and
//! prints the seed and the shrunk sequence on failure; `REFTEST_SEED` and
//! `REFTEST_CASES` override them to explore. Failure persistence is off: a
//! sequence worth keeping becomes a named regression test below, each a
//! failure the property found, shrunk, replayed as a plain test.
//!
//! `REFTEST_SKIP` (comma-separated, for exploring only; CI sets none and the
//! regression tests ignore it) steers the property clear of known bugs so
//! that it can find others: `rename-onto-open`, `rename-dirty`,
//! `failing-setattr`, `after-failed-fsync`, `failing-unlink`,
//! `streamed-object-changes`, `truncate-streamed`, `failing-rename`,
//! `chmod-streamed`. With none of them set, seeds 1 to 18 and the default
//! pass 3000 cases each on the main of 2026-12-03.

use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestCaseError, TestRunner};

#[path = "common/core.rs"]
mod core_fs;

// The crate root resolves modules beside it, as a mod.rs does.
mod reftest {
    pub mod harness;
    pub mod ops;
}

use reftest::harness::{request_totals, run_case, skips_from_env};
use reftest::ops::{At, FailVerb, Name, Op, OpenMode, Retain, case};

const DEFAULT_SEED: u64 = 0x6275_636b_6574_6673; // "bucketfs"
const DEFAULT_CASES: u32 = 3000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[test]
fn the_file_system_matches_the_model() {
    let seed = env_or("REFTEST_SEED", DEFAULT_SEED);
    let cases = env_or("REFTEST_CASES", DEFAULT_CASES);
    let config = Config {
        cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_iters: 4000,
        // Shrinking a failure found so far took seconds; bound it anyway.
        max_shrink_time: 120_000,
        ..Config::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = std::time::Instant::now();
    let skip = skips_from_env();
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |(retain, ops)| {
        runtime
            .block_on(run_case(retain, &ops, skip.clone()))
            .map_err(TestCaseError::fail)
    });
    eprintln!(
        "reference model: {cases} cases from seed {seed} in {:.1} s; requests: {}",
        started.elapsed().as_secs_f64(),
        request_totals()
    );
    if let Err(error) = result {
        panic!("reference model failed (REFTEST_SEED={seed} REFTEST_CASES={cases}): {error}");
    }
}

/// Replays a shrunk sequence the property found.
async fn replay(retain: Retain, ops: Vec<Op>) {
    if let Err(error) = run_case(retain, &ops, Vec::new()).await {
        panic!("{error}");
    }
}

// Regression tests: each a shrunk sequence the property found, named for
// the bug. Each fails on the main of 2026-12-02 (4be7202).

/// `mv d/c a` while `a` is open for writing: `a`'s open file lost its name,
/// but its close still uploads its (empty) contents over the object that
/// was renamed there, so `d/c`'s bytes are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replaced_by_rename_uploads_over_the_new_object_at_close() {
    replay(
        Retain::Nothing,
        vec![
            Op::OtherPut(Name::C, 1),
            Op::Create(Name::A),
            Op::Rename(Name::C, Name::A),
        ],
    )
    .await;
}

/// Issue 10, bug 4: renaming a dirty open file deletes the old object
/// before anything exists under the new name; a failed commit or a crash
/// after that loses both names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_a_dirty_open_file_deletes_its_committed_object_first() {
    replay(
        Retain::Nothing,
        vec![
            Op::OtherPut(Name::C, 1),
            Op::Open(Name::C, OpenMode::WriteTruncate),
            Op::Rename(Name::C, Name::A),
        ],
    )
    .await;
}

/// Issue 10, bug 3: a truncate whose upload fails returns before releasing
/// the writer it took; the inode stays "being written", and a later chmod
/// returns success without uploading anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_truncate_leaks_its_writer_and_a_later_chmod_uploads_nothing() {
    replay(
        Retain::Nothing,
        vec![
            Op::Create(Name::C),
            Op::Close(0),
            Op::Failing {
                verb: FailVerb::Put,
                count: 1,
                timeout: false,
                op: Box::new(Op::Truncate(Name::C, At::End)),
            },
            Op::Chmod(Name::C, 0o600),
        ],
    )
    .await;
}

/// Issue 10, bug 1: a streamed file whose fsync failed on its short last
/// part panics at the next write (`uploaded[&n]` in streaming.rs), which
/// on a mount kills the FUSE session and every dirty file with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_a_failed_fsync_of_a_streamed_file_panics() {
    replay(
        Retain::Nothing,
        vec![
            Op::Create(Name::A),
            Op::Write {
                handle: 0,
                at: At::End,
                len: 5 * 1024 * 1024 + 1,
            },
            Op::Failing {
                verb: FailVerb::UploadPart,
                count: 2,
                timeout: false,
                op: Box::new(Op::Fsync(0)),
            },
            Op::Write {
                handle: 0,
                at: At::End,
                len: 0,
            },
        ],
    )
    .await;
}

/// An unlink whose DeleteObject fails returns an error, so the file is
/// still there, but its open file was already marked unlinked: its close
/// uploads nothing and the new file never reaches the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_unlink_of_an_open_file_still_drops_its_upload() {
    replay(
        Retain::Nothing,
        vec![
            Op::Create(Name::A),
            Op::Failing {
                verb: FailVerb::Delete,
                count: 1,
                timeout: false,
                op: Box::new(Op::Unlink(Name::A)),
            },
        ],
    )
    .await;
}

/// A file streamed from empty drops its uploaded parts from staging and,
/// after the commit, fetches them back from the object when touched. Once
/// this mount has unlinked the file, that object is gone: every later write
/// or read of the still-open file fails with NotFound (ENOENT on write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlinked_open_file_cannot_fetch_back_its_streamed_bytes() {
    replay(
        Retain::Nothing,
        vec![
            Op::Create(Name::B),
            Op::Write {
                handle: 0,
                at: At::End,
                len: 10 * 1024 * 1024,
            },
            Op::Fsync(0),
            Op::Unlink(Name::B),
            Op::Write {
                handle: 0,
                at: At::End,
                len: 0,
            },
        ],
    )
    .await;
}

/// Bug 3 by another path: a truncate refused with `AlreadyUploaded` (the
/// bytes it would cut have left staging) returns before releasing the
/// writer it joined, so the file's last close never comes: the inode stays
/// "being written", and its name outlives the object another client
/// deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncate_refused_as_already_uploaded_leaks_its_writer() {
    replay(
        Retain::Nothing,
        vec![
            Op::Create(Name::C),
            Op::Write {
                handle: 0,
                at: At::End,
                len: 10 * 1024 * 1024,
            },
            Op::Write {
                handle: 0,
                at: At::End,
                len: 0,
            },
            Op::Ftruncate(0, At::Within(7552)),
            Op::Close(0),
            Op::OtherDelete(Name::C),
        ],
    )
    .await;
}

/// A rename of a clean open file whose CopyObject fails returns an error
/// and leaves the name where it was, but the open file already took the
/// new key: its next commit uploads under a name the namespace does not
/// show, and the old name keeps the old bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rename_of_an_open_file_still_moves_its_next_commit() {
    replay(
        Retain::Nothing,
        vec![
            Op::Create(Name::A),
            Op::Fsync(0),
            Op::Failing {
                verb: FailVerb::Copy,
                count: 1,
                timeout: false,
                op: Box::new(Op::Rename(Name::A, Name::B)),
            },
            Op::Write {
                handle: 0,
                at: At::End,
                len: 0,
            },
        ],
    )
    .await;
}

/// Like the unlink above, from another client: after a streamed commit the
/// dropped bytes exist only in the committed object, so once another client
/// replaces it, touching them through the file still open here fails with
/// ESTALE (the documented limit; the model accepts exactly that), and
/// nothing else breaks: no panic, no mixed object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_put_after_a_streamed_commit_gives_stale_not_a_mix() {
    replay(
        Retain::Nothing,
        vec![
            Op::Create(Name::B),
            Op::Write {
                handle: 0,
                at: At::End,
                len: 5 * 1024 * 1024 + 1,
            },
            Op::Fsync(0),
            Op::OtherPut(Name::B, 3),
            Op::Write {
                handle: 0,
                at: At::End,
                len: 0,
            },
        ],
    )
    .await;
}

/// A streamed file's dropped bytes are fetched back pinned to the ETag of
/// the commit that completed the stream. A later commit (here after a
/// chmod) makes a new object but keeps that pin, so every later write or
/// read of the dropped range fails with ESTALE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_commit_of_a_streamed_file_leaves_its_dropped_bytes_stale() {
    replay(Retain::Nothing, streamed_then_chmodded(None)).await;
}

/// Issue 10, bug 5: the second commit copies the unchanged parts from the
/// object; when UploadPartCopy fails it falls back to the staged bytes,
/// which the stream punched out of the staging file, and uploads zeros.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_part_copy_uploads_zeros_for_streamed_bytes() {
    replay(
        Retain::Nothing,
        streamed_then_chmodded(Some(FailVerb::UploadPartCopy)),
    )
    .await;
}

/// A file streamed in two parts and committed, chmodded, and committed
/// again (with `failing` requests failing during that commit), then
/// written at its start.
fn streamed_then_chmodded(failing: Option<FailVerb>) -> Vec<Op> {
    let second_commit = Op::Fsync(0);
    let second_commit = match failing {
        Some(verb) => Op::Failing {
            verb,
            count: 3,
            timeout: false,
            op: Box::new(second_commit),
        },
        None => second_commit,
    };
    vec![
        Op::Create(Name::C),
        Op::Write {
            handle: 0,
            at: At::End,
            len: 10 * 1024 * 1024 + 5,
        },
        Op::Write {
            handle: 0,
            at: At::End,
            len: 0,
        },
        Op::Fsync(0),
        Op::Chmod(Name::C, 0o600),
        second_commit,
        Op::Write {
            handle: 0,
            at: At::Start,
            len: 1,
        },
    ]
}

/// Issue 10, bug 6: chmod while a file streams changes the mode only by a
/// CopyObject after the upload completes; when that copy fails the error is
/// only logged and fsync returns success with the old mode on the object.
/// (Written from the issue in the model's terms; the property did not draw
/// it within the cases run.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_mode_copy_after_chmod_of_a_streaming_file_is_ignored() {
    replay(
        Retain::Everything,
        vec![
            Op::Create(Name::A),
            Op::Write {
                handle: 0,
                at: At::End,
                len: 5 * 1024 * 1024 + 1,
            },
            Op::Chmod(Name::A, 0o600),
            Op::Failing {
                verb: FailVerb::Copy,
                count: 1,
                timeout: false,
                op: Box::new(Op::Fsync(0)),
            },
        ],
    )
    .await;
}

/// chmod of a file another descriptor holds open and dirty, then a rename
/// of it: the rename must upload it under the new name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_dirty_file_after_chmod_lands_under_its_new_name() {
    replay(
        Retain::Nothing,
        vec![
            Op::Create(Name::A),
            Op::Create(Name::B),
            Op::Create(Name::A),
            Op::Open(Name::C, OpenMode::Read),
            Op::Fsync(115),
            Op::Chmod(Name::B, 384),
            Op::Rename(Name::B, Name::C),
        ],
    )
    .await;
}

/// A streamed file gives its uploaded bytes back from staging at commit;
/// when another client then deletes the object, the next write must fetch
/// them from an object that is gone: that is the documented `Stale` limit,
/// not `NotFound` (which says the name is missing, while the file is open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_another_client_deleted_a_streamed_file_is_stale() {
    replay(
        Retain::Nothing,
        vec![
            Op::Create(Name::B),
            Op::Write {
                handle: 0,
                at: At::End,
                len: 5 * 1024 * 1024 + 1,
            },
            Op::Fsync(0),
            Op::OtherDelete(Name::B),
            Op::Write {
                handle: 0,
                at: At::End,
                len: 1,
            },
        ],
    )
    .await;
}

/// An empty object opened for writing without O_TRUNC streams like a new
/// file, so a write that skips ahead after a part went is refused with
/// `AlreadyUploaded`; the model first expected that only of files it saw
/// emptied. Found by seed 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_object_opened_for_writing_streams_like_a_new_file() {
    replay(
        Retain::Nothing,
        vec![
            Op::OtherPut(Name::A, 0),
            Op::Open(Name::A, OpenMode::Write),
            Op::Write {
                handle: 0,
                at: At::End,
                len: 10_482_760,
            },
            Op::Write {
                handle: 0,
                at: At::Beyond(1),
                len: 1,
            },
        ],
    )
    .await;
}

/// `rm` of a file still open for writing, after a streamed commit gave its
/// uploaded bytes back from staging: the delete left those bytes nowhere,
/// and reads through the open handle failed with `AlreadyUploaded`. An
/// unlinked open file must stay readable. Found by seed 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_file_unlinked_after_a_streamed_commit_stays_readable() {
    replay(
        Retain::Nothing,
        vec![
            Op::Create(Name::A),
            Op::Write {
                handle: 0,
                at: At::End,
                len: 5 * 1024 * 1024 + 1,
            },
            Op::Fsync(0),
            Op::Unlink(Name::A),
            Op::Read {
                handle: 0,
                at: At::Start,
                len: 1,
            },
        ],
    )
    .await;
}

/// A rename whose only failure is removing the old key has already
/// committed the dirty open file under the new name: the file is clean, so
/// another client's later PUT there stands at close (last close wins). The
/// model first kept the file dirty. Found by seed 9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_that_failed_only_to_remove_the_old_key_leaves_the_file_clean() {
    replay(
        Retain::Nothing,
        vec![
            Op::Create(Name::B),
            Op::Failing {
                verb: FailVerb::Delete,
                count: 1,
                timeout: false,
                op: Box::new(Op::Rename(Name::B, Name::C)),
            },
            Op::OtherPut(Name::C, 0),
        ],
    )
    .await;
}

/// Renaming a clean open file whose object has no time headers (another
/// tool wrote it): the copy writes out its Last-Modified as times, and the
/// open file then counted that as a change it owed, so its close recreated
/// the new name after another client had deleted it. Found by seed 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_open_file_renamed_owes_no_commit() {
    replay(
        Retain::Nothing,
        vec![
            Op::OtherPut(Name::C, 0),
            Op::Open(Name::C, OpenMode::Write),
            Op::Rename(Name::C, Name::B),
            Op::OtherDelete(Name::B),
        ],
    )
    .await;
}

/// A clean open file renamed after another client replaced its object
/// moves that object, and takes its metadata: a later O_TRUNC commits the
/// mode a `stat` of the new name showed. Found by seed 12.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_open_file_renamed_takes_the_moved_objects_mode() {
    replay(
        Retain::Nothing,
        vec![
            Op::Create(Name::A),
            Op::Fsync(0),
            Op::OtherPut(Name::A, 0),
            Op::Rename(Name::A, Name::B),
            Op::Open(Name::B, OpenMode::WriteTruncate),
        ],
    )
    .await;
}

/// chmod of a streamed file after another client replaced its object: the
/// commit's metadata copy finds the object changed, and the bytes that left
/// staging exist nowhere: the flush fails with `Stale` (the documented
/// limit), not with an upload error that reads as a network fault. Found by
/// seed 14.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_lost_its_streamed_bytes_to_another_client_is_stale() {
    replay(
        Retain::Nothing,
        vec![
            Op::Create(Name::C),
            Op::Write {
                handle: 0,
                at: At::End,
                len: 5 * 1024 * 1024 + 1,
            },
            Op::Fsync(0),
            Op::OtherPut(Name::C, 0),
            Op::Chmod(Name::C, 0o600),
        ],
    )
    .await;
}

/// `rm` of a streamed open file whose object another client replaced: the
/// bytes that left staging are lost either way, and fetching them back
/// first must not stop the removal. Found by seed 12.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlinking_a_file_whose_streamed_bytes_are_lost_still_unlinks() {
    replay(
        Retain::Nothing,
        vec![
            Op::Create(Name::C),
            Op::Write {
                handle: 0,
                at: At::End,
                len: 5 * 1024 * 1024 + 1,
            },
            Op::Fsync(0),
            Op::OtherPut(Name::C, 0),
            Op::Unlink(Name::C),
        ],
    )
    .await;
}
