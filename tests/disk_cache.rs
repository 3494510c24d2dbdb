//! The disk cache on a real mount: what a mount read survives an unmount and
//! is read from `--cache-dir` by the next mount, and one mount at a time may
//! use a cache directory.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;

const KEY: &str = "dir/data.bin";
/// Five whole 1 MiB blocks and a short sixth.
const DATA_BYTES: usize = 5 * 1024 * 1024 + 333;

/// The daemon's debug log names every GET of file data (src/fs/read.rs).
fn gets_of(log: &str, key: &str) -> usize {
    let needle = format!("GET {key:?} bytes");
    log.lines().filter(|line| line.contains(&needle)).count()
}

fn block_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read the cache directory")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".blk"))
        .collect()
}

#[test]
fn a_file_read_before_a_remount_is_read_from_the_cache_dir_after_it() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    let data = random_bytes(13, DATA_BYTES);
    bucket.put(KEY, data.clone());
    let local = tempfile::tempdir().unwrap();
    let original = write_local(local.path(), "data.bin", &data);
    let parent = tempfile::tempdir().unwrap();
    let cache_dir = parent.path().join("cache");
    let cache_arg = cache_dir.to_str().unwrap();

    let first = bucket.mount(&["--cache-dir", cache_arg]);
    let out = run_tool("cmp", [original.as_os_str(), first.join(KEY).as_os_str()]);
    assert!(out.success(), "first read: {}", out.describe());
    assert!(gets_of(&first.daemon_log(), KEY) > 0, "the first read GETs");
    first.unmount();

    let mode = std::fs::metadata(&cache_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the cache directory is private");
    let names = block_files(&cache_dir);
    assert_eq!(
        names.len(),
        7,
        "one file per block and one for the file's POSIX headers: {names:?}"
    );
    assert!(names.iter().all(|name| !name.contains("data")), "{names:?}");

    let second = bucket.mount(&["--cache-dir", cache_arg]);
    let out = run_tool("cmp", [original.as_os_str(), second.join(KEY).as_os_str()]);
    assert!(out.success(), "read after the remount: {}", out.describe());
    let log = second.daemon_log();
    assert_eq!(
        gets_of(&log, KEY),
        0,
        "no GET after the remount:\n{}",
        tail(&log, 40)
    );
    second.unmount();
}

#[test]
fn a_second_mount_on_a_cache_dir_in_use_is_refused() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache_arg = cache_dir.path().to_str().unwrap();
    let first = bucket.mount(&["--cache-dir", cache_arg]);

    let guard = DaemonGuard::new();
    let run = run_daemonized(
        &bucket.target(),
        &bucket.name,
        guard.path(),
        &["--cache-dir", cache_arg],
        Duration::from_secs(30),
    );
    assert!(
        run.status.is_some_and(|status| !status.success()),
        "refused with a non-zero exit: {}",
        run.describe()
    );
    let stderr = run.stderr.trim_end();
    assert_eq!(stderr.lines().count(), 1, "one line: {}", run.describe());
    assert!(
        stderr.contains("is in use by another bucketfs mount"),
        "{}",
        run.describe()
    );
    assert!(!is_mounted(guard.path()));
    // The first mount is unaffected.
    assert!(std::fs::read_dir(first.path()).is_ok());
    first.unmount();
}
