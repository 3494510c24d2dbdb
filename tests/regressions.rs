//! One named test per bug reproduced on a real mount (issue 10, "What was
//! reproduced"), each driving the mount with real tools or plain syscalls
//! exactly as the report describes. Each failed on the main of the day it
//! was written; its comment says how.

mod common;

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::IntoRawFd;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use common::{Bucket, Mount, ServerKind, random_bytes, run_with_timeout, tail};

const MIB: usize = 1024 * 1024;

/// The tests here run one at a time. A process that one test spawns (a
/// server, a tool) inherits every descriptor another test of this binary
/// holds open, until its exec closes them, and on a FUSE mount each of those
/// closes is a FLUSH, which uploads the file: bug 1 passed when bug 2 ran
/// beside it, because its files were no longer dirty.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Closes `file` and returns what close(2) said: `drop` would discard it,
/// and close is where bucketfs reports a failed upload.
fn close(file: File) -> std::io::Result<()> {
    let fd = file.into_raw_fd();
    // SAFETY: `into_raw_fd` gave us sole ownership of an open descriptor,
    // which nothing uses after this call.
    let status = unsafe { libc::close(fd) };
    if status == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The mount still answers: its root lists (a dead daemon gives ENOTCONN).
fn assert_mount_alive(mount: &Mount) {
    if let Err(err) = std::fs::read_dir(mount.path()) {
        panic!(
            "the mount no longer answers ({err}); daemon log:\n{}",
            tail(&mount.daemon_log(), 60)
        );
    }
}

/// Bug 1: "a failed fsync, then one more write, kills the mount".
///
/// With the server stopped, fsync of a file that is streaming as a
/// multipart upload fails (EIO, right). On main of 2026-12-02 the next
/// write, after the server is back, got EIO and the daemon panicked
/// (`src/upload/streaming.rs`, indexing `uploaded[&n]` for the short part
/// whose upload had failed); close then got ECONNABORTED and every other
/// dirty file on the mount was lost. Correct: that write succeeds (or fails
/// cleanly), a later fsync and close succeed, the object holds exactly the
/// bytes written, the mount stays up and the other open file is uploaded.
#[test]
fn bug1_failed_fsync_then_write_keeps_the_mount_alive() {
    let _serial = one_at_a_time();
    let bucket = Bucket::new(ServerKind::S3sFs);
    // One attempt of at most 2 s: the fsync fails fast while the server is
    // stopped.
    let mount = bucket.mount(&["--request-timeout", "2", "--max-attempts", "1"]);

    // A second file, open across the whole story and dirty (written after
    // the failed fsync) when the next write to the first one comes.
    let mut other_bytes = random_bytes(11, 300 * 1024);
    let mut other = File::create(mount.join("other")).expect("create other");
    other.write_all(&other_bytes).expect("write other");

    // 20 MiB: two 8 MiB parts stream out while the file is still open.
    let mut expected = random_bytes(1, 20 * MIB);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(mount.join("streamed"))
        .expect("create streamed");
    file.write_all(&expected).expect("write 20 MiB");
    let tail_bytes = random_bytes(2, 1_000);
    file.write_all(&tail_bytes).expect("write 1,000 bytes");
    expected.extend_from_slice(&tail_bytes);

    bucket.server.pause();
    let fsync_started = std::time::Instant::now();
    let fsync_while_stopped = file.sync_all();
    eprintln!(
        "fsync with the server stopped: {fsync_while_stopped:?} after {:?}",
        fsync_started.elapsed()
    );
    bucket.server.resume();
    let err = fsync_while_stopped.expect_err("fsync with the server stopped must fail");
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EIO),
        "fsync with the server stopped: {err}"
    );

    let other_more = random_bytes(12, 100 * 1024);
    other.write_all(&other_more).expect("write other again");
    other_bytes.extend_from_slice(&other_more);

    // The write after the failed fsync: it may fail, but only cleanly.
    let more = random_bytes(3, 64 * 1024);
    match file.write_all(&more) {
        Ok(()) => expected.extend_from_slice(&more),
        Err(err) => eprintln!("write after the failed fsync failed: {err}"),
    }
    assert_mount_alive(&mount);

    // After a failed probe the mount fails requests at once for a few
    // seconds (README, Reliability): fsync is retried as a careful writer
    // would, and must succeed once the store answers again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        match file.sync_all() {
            Ok(()) => break,
            Err(err) if std::time::Instant::now() < deadline => {
                eprintln!("fsync with the server back failed, retrying: {err}");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            Err(err) => panic!(
                "fsync with the server back: {err}; daemon log:\n{}",
                tail(&mount.daemon_log(), 60)
            ),
        }
    }
    close(file).unwrap_or_else(|err| {
        panic!(
            "close with the server back: {err}; daemon log:\n{}",
            tail(&mount.daemon_log(), 60)
        )
    });
    close(other).unwrap_or_else(|err| {
        panic!(
            "close of the other dirty file: {err}; daemon log:\n{}",
            tail(&mount.daemon_log(), 60)
        )
    });
    assert_mount_alive(&mount);

    let stored = bucket.get("streamed");
    assert_eq!(
        stored.len(),
        expected.len(),
        "size of the object after the final fsync"
    );
    assert!(
        stored == expected,
        "the object differs from the bytes written (same size)"
    );
    assert!(
        bucket.get("other") == other_bytes,
        "the other dirty file was not uploaded as written"
    );
    mount.unmount();
}

/// Bug 2: "ESTALE right after mv".
///
/// A file written in 5 MiB writes is uploaded in parts (multipart ETag);
/// `mv` makes it a CopyObject with a new ETag. On main of 2026-12-02 a read
/// right after the rename failed with "Stale file handle" for about a
/// second: the inode still pinned the multipart ETag. Correct: the renamed
/// file reads back at once, byte for byte.
#[test]
fn bug2_read_right_after_mv_is_not_stale() {
    let _serial = one_at_a_time();
    // moto: there the copy's ETag differs from the multipart one, as on S3.
    // On s3s-fs this test passed on the same main, so it cannot show the bug.
    let bucket = Bucket::new(ServerKind::Moto);
    let mount = bucket.mount(&[]);
    let scratch = tempfile::tempdir().expect("temp dir");
    let source = scratch.path().join("source");
    std::fs::write(&source, random_bytes(25, 25 * MIB)).expect("write source");

    let run = |cmd: &mut Command| {
        let out = run_with_timeout(cmd, Duration::from_secs(120));
        assert!(
            out.success(),
            "{}\n--- daemon log ---\n{}",
            out.describe(),
            tail(&mount.daemon_log(), 40)
        );
    };
    let big = mount.join("big");
    let renamed = mount.join("big-copy");
    run(Command::new("dd")
        .arg(format!("if={}", source.display()))
        .arg(format!("of={}", big.display()))
        .arg("bs=5M"));
    run(Command::new("mv").arg(&big).arg(&renamed));
    run(Command::new("cmp").arg(&source).arg(&renamed));

    assert!(
        matches!(std::fs::metadata(&big), Err(err) if err.kind() == ErrorKind::NotFound),
        "the old name is gone"
    );
    assert!(
        bucket.get("big-copy") == std::fs::read(&source).expect("read source"),
        "the renamed object holds the bytes written"
    );
    mount.unmount();
}
