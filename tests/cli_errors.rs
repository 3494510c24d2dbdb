//! User errors at mount time, through the daemonizing command line a user
//! types (no `-f`): the command must exit non-zero within 10 s, say what is
//! wrong in one line naming the culprit, and leave nothing behind: no mount
//! and no daemon.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    BUCKET, Bucket, DaemonGuard, S3Target, ServerKind, free_port, is_mounted, run_daemonized,
};

/// The brief: a user error must be reported within 10 seconds.
const ERROR_DEADLINE: Duration = Duration::from_secs(10);
/// clap appends this hint to its own errors; it is not a second message.
const CLAP_HINT: &str = "For more information, try '--help'.";

/// Runs the daemonizing command and checks the failure contract.
/// `mentions`: at least one must occur in the message (case-insensitive).
fn assert_mount_fails(
    target: &S3Target,
    bucket: &str,
    guard: &DaemonGuard,
    args: &[&str],
    mentions: &[&str],
) {
    let run = run_daemonized(target, bucket, guard.path(), args, ERROR_DEADLINE);
    let Some(status) = run.status else {
        panic!(
            "bucketfs did not exit within {ERROR_DEADLINE:?}:\n{}",
            run.describe()
        );
    };
    assert!(
        !status.success(),
        "bucketfs exited 0 on a user error:\n{}",
        run.describe()
    );

    let lines: Vec<&str> = run
        .stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && *line != CLAP_HINT)
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one line on stderr:\n{}",
        run.describe()
    );
    let message = lines[0].to_lowercase();
    assert!(
        mentions.iter().any(|m| message.contains(&m.to_lowercase())),
        "the message should mention one of {mentions:?}:\n{}",
        run.describe()
    );

    assert!(
        !is_mounted(guard.path()),
        "{} is mounted after a failed mount:\n{}",
        guard.path().display(),
        run.describe()
    );
    // A daemon that forked before failing may need a moment to exit.
    if let Err(pids) = guard.wait_daemons_gone(Duration::from_secs(2)) {
        panic!(
            "bucketfs {pids:?} still running after the failed mount:\n{}",
            run.describe()
        );
    }
}

#[test]
fn unknown_bucket_is_reported() {
    let server = Bucket::new(ServerKind::Moto);
    let guard = DaemonGuard::new();
    let missing = "bucketfs-no-such-bucket";
    assert_mount_fails(&server.target(), missing, &guard, &[], &[missing]);
}

#[test]
fn wrong_secret_key_is_reported() {
    // s3s-fs checks signatures (moto does not).
    let bucket = Bucket::new(ServerKind::S3sFs);
    bucket.put("f.txt", "f");
    let mut target = bucket.target();
    target.secret_key = "not-the-secret-key".to_string();
    let guard = DaemonGuard::new();
    assert_mount_fails(
        &target,
        BUCKET,
        &guard,
        &[],
        &[
            "credential",
            "secret",
            "signature",
            "access key",
            "access denied",
            "accessdenied",
        ],
    );
}

#[test]
fn dead_endpoint_is_reported() {
    // Nothing listens there: the kernel just handed the port out and it was
    // released again.
    let port = free_port();
    let target = S3Target {
        endpoint_url: format!("http://127.0.0.1:{port}"),
        access_key: common::ACCESS_KEY.to_string(),
        secret_key: common::SECRET_KEY.to_string(),
    };
    let guard = DaemonGuard::new();
    assert_mount_fails(
        &target,
        BUCKET,
        &guard,
        &[],
        &[&format!("127.0.0.1:{port}"), "endpoint"],
    );
}

#[test]
fn missing_mountpoint_is_reported() {
    let bucket = Bucket::new(ServerKind::Moto);
    let parent = tempfile::tempdir().expect("temp dir");
    let missing = parent
        .path()
        .canonicalize()
        .expect("canonicalize")
        .join("no-such-dir");
    let guard = DaemonGuard::at(missing.clone());
    assert!(!Path::new(&missing).exists());
    assert_mount_fails(
        &bucket.target(),
        &bucket.name,
        &guard,
        &[],
        &[missing.to_str().expect("UTF-8 path")],
    );
}

#[test]
fn unknown_mount_option_is_reported() {
    let bucket = Bucket::new(ServerKind::Moto);
    let guard = DaemonGuard::new();
    assert_mount_fails(
        &bucket.target(),
        &bucket.name,
        &guard,
        &["-o", "ro,nosuchoption"],
        &["nosuchoption"],
    );
}
