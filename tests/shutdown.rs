//! Crashes and shutdown with files open for writing (issue 10, section 4).
//!
//! Every test keeps dirty files open on a real mount, ends the daemon or
//! its session one way or another, and checks with the independent client
//! what the bucket holds afterwards.

mod common;
mod daemon_support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use common::{Bucket, ServerKind, is_mounted, run_with_timeout};
use daemon_support::{Daemon, pattern_vec, wait_for};

const MIB: usize = 1024 * 1024;

/// Files kept open and dirty: the issue's count.
const OPEN_FILES: usize = 20;

/// A daemon uploads 20 files of a few MiB within this on loopback; the bound
/// only keeps a hung daemon from hanging the suite.
const EXIT_LIMIT: Duration = Duration::from_secs(120);

fn name(index: usize) -> String {
    format!("open-{index:02}.bin")
}

/// Contents of file `index`: mostly small, and two past the 8 MiB part size
/// so that their uploads stream while they are written.
fn contents(index: usize) -> Vec<u8> {
    let len = match index {
        0 | 1 => 12 * MIB + 12_345,
        _ => 40_000 * index + 7,
    };
    pattern_vec(1000 + index as u64, len)
}

/// Holds files open in a process of its own. The test process must not:
/// every fork it makes (any thread of the harness starting a tool) copies
/// its descriptors, and their close at exec sends FLUSH, which commits.
const HOLDER: &str = r#"
import os, sys
mount, source = sys.argv[1], sys.argv[2]
files = {}
for name in sorted(os.listdir(source)):
    f = open(os.path.join(mount, name), "wb", buffering=0)
    with open(os.path.join(source, name), "rb") as s:
        f.write(s.read())
    files[name] = f
print("ready", flush=True)
for line in sys.stdin:
    name, _, text = line.rstrip("\n").partition(" ")
    try:
        files[name].write(text.encode())
        print("ok", flush=True)
    except OSError as error:
        print("error", error, flush=True)
os._exit(0)  # closes the files without Python's own error reports
"#;

/// A process holding files of a mount open and dirty.
struct Holder {
    child: Child,
    commands: Option<ChildStdin>,
    answers: BufReader<ChildStdout>,
    _source: tempfile::TempDir,
}

impl Holder {
    /// Creates `files` in `mount`, writes them and keeps them open.
    fn open(mount: &Path, files: &[(String, Vec<u8>)]) -> Holder {
        let source = tempfile::tempdir().expect("source dir");
        for (name, body) in files {
            std::fs::write(source.path().join(name), body).expect("write source");
        }
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(HOLDER)
            .arg(mount)
            .arg(source.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3, to hold files open");
        let commands = child.stdin.take();
        let mut answers = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        answers.read_line(&mut line).expect("holder answers");
        assert_eq!(line.trim(), "ready", "the holder could not write its files");
        Holder {
            child,
            commands,
            answers,
            _source: source,
        }
    }

    /// Appends `text` to the open file `name`; the holder's answer.
    fn append(&mut self, name: &str, text: &str) -> String {
        let commands = self.commands.as_mut().expect("holder running");
        writeln!(commands, "{name} {text}").expect("command");
        let mut line = String::new();
        self.answers.read_line(&mut line).expect("answer");
        line.trim().to_owned()
    }

    /// Closes every file and waits for the holder to exit.
    fn close(mut self) {
        self.commands = None;
        let _ = self.child.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.commands = None;
        let exited = wait_for(Duration::from_secs(30), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Creates the files and writes them, leaving every one open and dirty.
fn open_dirty_files(daemon: &Daemon, indices: std::ops::Range<usize>) -> Holder {
    let files: Vec<_> = indices
        .map(|index| (name(index), contents(index)))
        .collect();
    Holder::open(daemon.path(), &files)
}

/// umount(2) as umount(8) calls it, without a fork (see [`HOLDER`]).
fn umount(path: &Path, flags: libc::c_int) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(path.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn assert_all_uploaded(bucket: &Bucket, daemon: &Daemon) {
    for index in 0..OPEN_FILES {
        let key = name(index);
        let stored = bucket.get(&key);
        assert!(
            stored == contents(index),
            "{key}: the bucket holds {} bytes, not the {} written\n{}",
            stored.len(),
            contents(index).len(),
            common::tail(&daemon.log(), 60)
        );
    }
}

/// `systemctl stop` of bucketfs@.service: ExecStop's `umount`, refused while
/// files are open, then SIGTERM.
#[test]
fn service_stop_uploads_twenty_dirty_open_files_and_exits_zero() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    let mut daemon = Daemon::start(&bucket.target(), &bucket.name, &[], &[]);
    let files = open_dirty_files(&daemon, 0..OPEN_FILES);
    assert!(bucket.list_keys("").is_empty(), "uploaded before the stop");

    let refused = umount(daemon.path(), 0).expect_err("umount of a mount with open files");
    assert_eq!(refused.raw_os_error(), Some(libc::EBUSY), "{refused}");
    assert!(is_mounted(daemon.path()));

    daemon.signal(libc::SIGTERM);
    // Detached once every file is uploaded; the files stay open.
    assert!(
        wait_for(EXIT_LIMIT, || !is_mounted(daemon.path())),
        "still mounted after SIGTERM\n{}",
        daemon.log()
    );
    assert_all_uploaded(&bucket, &daemon);
    assert_uploads_overlapped_with_progress(&daemon.log());
    files.close();
    let status = daemon
        .wait(EXIT_LIMIT)
        .expect("the daemon exits once the files close");
    assert!(status.success(), "exit status {status}\n{}", daemon.log());
}

/// The issue asks for the uploads at shutdown to run several at once, with
/// progress in the log: several files start before the first is done, and
/// every file's completion is counted up to the total.
fn assert_uploads_overlapped_with_progress(log: &str) {
    let lines: Vec<&str> = log.lines().collect();
    let announced = format!("uploading {OPEN_FILES} file(s) still open with changes");
    assert!(
        log.contains(&announced),
        "no {announced:?} in the log\n{log}"
    );
    let first_done = lines
        .iter()
        .position(|line| line.contains(&format!("(1 of {OPEN_FILES})")))
        .unwrap_or_else(|| panic!("no progress line (1 of {OPEN_FILES})\n{log}"));
    let started_before = lines[..first_done]
        .iter()
        .filter(|line| line.contains("uploading open-"))
        .count();
    assert!(
        started_before >= 2,
        "{started_before} upload(s) started before the first finished\n{log}"
    );
    for done in 1..=OPEN_FILES {
        let progress = format!("({done} of {OPEN_FILES})");
        assert!(
            log.contains(&progress),
            "no progress line {progress}\n{log}"
        );
    }
}

#[test]
fn sigterm_with_the_store_gone_names_every_unsaved_file_and_exits_non_zero() {
    let mut bucket = Bucket::new(ServerKind::S3sFs);
    let args = ["--max-attempts", "1", "--request-timeout", "2"];
    let mut daemon = Daemon::start(&bucket.target(), &bucket.name, &args, &[]);
    // Small files: staged in memory, nothing uploaded before the commit.
    let files = open_dirty_files(&daemon, 2..OPEN_FILES);
    assert!(bucket.list_keys("").is_empty(), "uploaded before the stop");
    bucket.server.stop();

    daemon.signal(libc::SIGTERM);
    assert!(
        wait_for(EXIT_LIMIT, || !is_mounted(daemon.path())),
        "still mounted after SIGTERM\n{}",
        daemon.log()
    );
    // Each close now fails too (EIO), which the holder ignores.
    files.close();
    let status = daemon.wait(EXIT_LIMIT).expect("the daemon exits");
    let log = daemon.log();
    assert!(
        !status.success(),
        "exit status {status} though no file could be uploaded\n{log}"
    );
    for index in 2..OPEN_FILES {
        assert!(
            log.contains(&name(index)),
            "{} not named\n{log}",
            name(index)
        );
    }
}

/// `umount -l` of a busy mount: the files stay usable, and each is uploaded
/// when it is closed; the daemon then exits 0.
#[test]
fn lazy_umount_with_twenty_dirty_open_files_uploads_them_as_they_close() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    let mut daemon = Daemon::start(&bucket.target(), &bucket.name, &[], &[]);
    let mut files = open_dirty_files(&daemon, 0..OPEN_FILES);
    assert!(
        bucket.list_keys("").is_empty(),
        "uploaded before the unmount"
    );

    umount(daemon.path(), libc::MNT_DETACH).expect("umount -l");
    // Still writable through the open descriptors after the detach.
    assert_eq!(files.append(&name(2), "after the detach"), "ok");
    files.close();
    let status = daemon.wait(EXIT_LIMIT).expect("the daemon exits");
    assert!(status.success(), "exit status {status}\n{}", daemon.log());
    let mut expected = contents(2);
    expected.extend_from_slice(b"after the detach");
    assert_eq!(bucket.get(&name(2)), expected);
    for index in (0..OPEN_FILES).filter(|&index| index != 2) {
        assert!(
            bucket.get(&name(index)) == contents(index),
            "{}",
            name(index)
        );
    }
}

/// The FUSE fusectl file system, mounted privately for one test.
struct FuseControl {
    dir: tempfile::TempDir,
}

impl FuseControl {
    fn mount() -> FuseControl {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = run_with_timeout(
            Command::new("mount")
                .args(["-t", "fusectl", "none"])
                .arg(dir.path()),
            Duration::from_secs(10),
        );
        assert!(out.success(), "cannot mount fusectl: {}", out.describe());
        FuseControl { dir }
    }

    /// Aborts the FUSE connection serving `mountpoint`, as the kernel does
    /// when a daemon's connection breaks.
    fn abort(&self, mountpoint: &Path) {
        let device = std::fs::metadata(mountpoint).expect("stat mount").dev();
        let connection = libc::minor(device);
        let abort: PathBuf = self.dir.path().join(connection.to_string()).join("abort");
        std::fs::write(&abort, "1").unwrap_or_else(|e| panic!("{}: {e}", abort.display()));
    }
}

impl Drop for FuseControl {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg(self.dir.path())
            .stderr(Stdio::null())
            .status();
    }
}

/// The session ends by itself, without any release of the open files: what
/// they hold is still uploaded, and the dead mount is cleared.
#[test]
fn an_aborted_fuse_connection_still_uploads_every_dirty_open_file() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    let mut daemon = Daemon::start(&bucket.target(), &bucket.name, &[], &[]);
    // Mounted before the files are opened (see [`HOLDER`]).
    let control = FuseControl::mount();
    let files = open_dirty_files(&daemon, 0..OPEN_FILES);
    assert!(bucket.list_keys("").is_empty(), "uploaded before the abort");
    control.abort(daemon.path());
    let status = daemon.wait(EXIT_LIMIT).expect("the daemon exits");
    drop(files);
    assert!(status.success(), "exit status {status}\n{}", daemon.log());
    assert_all_uploaded(&bucket, &daemon);
    assert!(!is_mounted(daemon.path()), "the dead mount was left behind");
}

fn staging_directories(cache_dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache_dir)
        .expect("read cache dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("bucketfs-staging-"))
        })
        .collect();
    found.sort();
    found
}

/// `dd` of a 1 GiB stream into three files, one replacing an object, one
/// new, and one overwriting an object in place (`conv=notrunc`), and
/// `kill -9` once 48 MiB of each are written: no key shows any of the new
/// bytes. The next mount removes the dead daemon's staging
/// directory, and a third mount's start-up leaves the live second's alone.
#[test]
fn kill_9_while_a_gigabyte_streams_keeps_the_previous_object_and_the_next_mount_cleans_up() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    let previous = pattern_vec(7, 3 * MIB);
    bucket.put("replaced.bin", previous.clone());
    bucket.put("overwritten.bin", previous.clone());
    let cache_dir = tempfile::tempdir().expect("cache dir");
    let cache_arg = cache_dir.path().to_str().expect("utf-8 path").to_owned();
    let args = ["--staging-dir", cache_arg.as_str()];

    let mut first = Daemon::start(&bucket.target(), &bucket.name, &args, &[]);
    let dead_staging = staging_directories(cache_dir.path());
    assert_eq!(dead_staging.len(), 1, "{dead_staging:?}");
    let names = ["replaced.bin", "new.bin", "overwritten.bin"];
    let writers: Vec<_> = names
        .iter()
        .map(|name| {
            let mut dd = Command::new("dd");
            if *name == "overwritten.bin" {
                dd.arg("conv=notrunc");
            }
            dd.arg("if=/dev/urandom")
                .arg(format!("of={}", first.join(name).display()))
                .args(["bs=1M", "count=1024"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn dd")
        })
        .collect();
    // Several 8 MiB parts of each are on their way or uploaded by now.
    let streaming = wait_for(Duration::from_secs(120), || {
        names.iter().all(|name| {
            std::fs::metadata(first.join(name)).is_ok_and(|m| m.len() >= 48 * MIB as u64)
        })
    });
    assert!(streaming, "the writes did not get going\n{}", first.log());
    first.signal(libc::SIGKILL);
    assert!(first.wait(Duration::from_secs(10)).is_some(), "SIGKILL");
    for mut writer in writers {
        let _ = writer.wait();
    }
    drop(first); // clears the dead mount

    // dd's truncating open may have been committed (as an empty object)
    // before the first write; anything else is a mix of versions.
    let replaced = bucket.get("replaced.bin");
    assert!(
        replaced == previous || replaced.is_empty(),
        "replaced.bin holds {} bytes: neither the previous object nor the empty one",
        replaced.len()
    );
    // Not truncated: staged whole and uploaded only at close, which never came.
    assert!(
        bucket.get("overwritten.bin") == previous,
        "overwritten.bin no longer holds the previous object"
    );
    let new_keys = bucket.list_keys("new");
    if new_keys.contains("new.bin") {
        assert!(
            bucket.get("new.bin").is_empty(),
            "new.bin holds part of the new bytes"
        );
    }
    assert_eq!(
        staging_directories(cache_dir.path()),
        dead_staging,
        "a killed daemon cannot remove its staging directory"
    );

    let second = Daemon::start(&bucket.target(), &bucket.name, &args, &[]);
    let live_staging = staging_directories(cache_dir.path());
    assert!(
        !live_staging.iter().any(|dir| dead_staging.contains(dir)),
        "the dead daemon's staging directory is still there: {live_staging:?}\n{}",
        second.log()
    );
    assert_eq!(live_staging.len(), 1, "{live_staging:?}");

    let third = Daemon::start(&bucket.target(), &bucket.name, &args, &[]);
    let both = staging_directories(cache_dir.path());
    assert!(
        live_staging.iter().all(|dir| both.contains(dir)),
        "the live mount's staging directory was removed: {both:?}\n{}",
        third.log()
    );
    assert_eq!(both.len(), 2, "{both:?}");
    // The second mount still stages on disk (past the 1 MiB kept in memory).
    let body = pattern_vec(8, 3 * MIB);
    std::fs::write(second.join("after.bin"), &body).expect("write through the second mount");
    assert!(bucket.get("after.bin") == body);
    drop(third);
    drop(second);
}
