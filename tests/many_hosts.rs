//! Many hosts, one bucket (issue 13, part 4): four daemons on this machine,
//! each with its own mountpoint and staging directory, share one bucket with
//! no coordination but S3's own consistency. One replaces files with `cp`
//! while the other three `cat` them in a loop: every read must be one whole
//! version (a handle pins the ETag it opened; a file replaced under a read
//! fails it with ESTALE, and the reader reads again), never older than what
//! a reader already saw, and each reader must see a version once its write
//! has been visible for longer than the readers' --metadata-ttl. Two of the
//! readers keep a disk cache, so every version also goes through it.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Bucket, Mount, ServerKind, run, run_with_timeout};

const FILES: usize = 3;
const VERSIONS: u32 = 6;
/// Lines per version: ~1.8 MiB, so that a read spans several GETs and a
/// torn read would show.
const LINES: usize = 40_000;
const READER_TTL_SECONDS: u64 = 1;
/// Beyond the TTL: the kernel's own attribute timeout runs from the
/// lookup, and a `cat` that started just before the deadline may still
/// finish on the previous version.
const FRESHNESS_SLACK: Duration = Duration::from_secs(2);

fn version_text(file: usize, version: u32) -> Vec<u8> {
    let line = format!("file {file} version {version:04} ........................\n");
    line.repeat(LINES).into_bytes()
}

/// The version `body` is, whole, or why it is none.
fn whole_version(file: usize, body: &[u8]) -> Result<u32, String> {
    let prefix = format!("file {file} version ");
    let version = body
        .strip_prefix(prefix.as_bytes())
        .and_then(|rest| rest.get(..4))
        .and_then(|digits| std::str::from_utf8(digits).ok()?.parse::<u32>().ok())
        .ok_or_else(|| format!("first line unreadable ({} bytes)", body.len()))?;
    let expected = version_text(file, version);
    if body == expected {
        return Ok(version);
    }
    let differs_at = body
        .iter()
        .zip(&expected)
        .position(|(a, b)| a != b)
        .unwrap_or(body.len().min(expected.len()));
    Err(format!(
        "{} bytes, not version {version}'s {}: they differ from byte {differs_at}",
        body.len(),
        expected.len()
    ))
}

#[test]
fn readers_on_three_hosts_see_whole_versions_within_their_ttl() {
    // moto, not s3s-fs: s3s-fs moves a new object's bytes into place before
    // it records their ETag, so for a moment it serves the new bytes under
    // the old ETag (and it ignores If-Match on GET), which no client can
    // tell from a whole version. S3 replaces both at once.
    let bucket = Bucket::new(ServerKind::Moto);
    for file in 0..FILES {
        bucket.put(&format!("shared/f{file}"), version_text(file, 0));
    }
    let staging: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let ttl = READER_TTL_SECONDS.to_string();
    let mount_host = |index: usize, extra: &[&str]| -> Mount {
        let dir = staging[index].path().to_str().unwrap().to_owned();
        let mut args = vec!["--staging-dir", &dir];
        args.extend_from_slice(extra);
        bucket.mount(&args)
    };
    let writer = mount_host(0, &[]);
    // Two readers keep what they read on disk as well, each in its own
    // directory: a version they kept must never be served once it is
    // replaced (blocks are keyed by ETag), nor mixed with the next one.
    // Their memory holds about one file, so the others come back from disk.
    let cache_dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let cache_dir = |index: usize| cache_dirs[index].path().to_str().unwrap().to_owned();
    let (cache_1, cache_2) = (cache_dir(0), cache_dir(1));
    let disk_cached = [
        "--metadata-ttl",
        &ttl,
        "--read-part-size",
        "1",
        "--max-cache-size",
        "2",
    ];
    let readers: Vec<Mount> = vec![
        mount_host(1, &["--metadata-ttl", &ttl]),
        mount_host(2, &[&disk_cached[..], &["--cache-dir", &cache_1]].concat()),
        mount_host(3, &[&disk_cached[..], &["--cache-dir", &cache_2]].concat()),
    ];

    let sources = tempfile::tempdir().unwrap();
    // When each version of each file was visible in the bucket: `cp`'s
    // close() returns once the object is committed.
    let visible_at: Arc<Mutex<HashMap<(usize, u32), Instant>>> = Arc::default();
    let start = Instant::now();
    for file in 0..FILES {
        visible_at.lock().unwrap().insert((file, 0), start);
    }
    let done = Arc::new(AtomicBool::new(false));

    let reader_threads: Vec<_> = readers
        .iter()
        .enumerate()
        .map(|(host, mount)| {
            let root = mount.path().to_path_buf();
            let visible_at = Arc::clone(&visible_at);
            let done = Arc::clone(&done);
            std::thread::spawn(move || -> Result<(usize, usize), String> {
                let mut seen = [0u32; FILES];
                let mut reads = 0;
                let mut stale = 0;
                let ttl = Duration::from_secs(READER_TTL_SECONDS);
                // One more pass after the writer finished, plus the TTL.
                let mut final_deadline = None;
                loop {
                    if done.load(Ordering::Acquire) && final_deadline.is_none() {
                        final_deadline = Some(Instant::now() + ttl + FRESHNESS_SLACK);
                    }
                    for (file, last_seen) in seen.iter_mut().enumerate() {
                        let began = Instant::now();
                        let out = run_with_timeout(
                            Command::new("cat").arg(root.join(format!("shared/f{file}"))),
                            Duration::from_secs(60),
                        );
                        if !out.success() {
                            // Replaced while this `cat` read it: the handle
                            // refuses to mix versions. Read it again.
                            if String::from_utf8_lossy(&out.stderr).contains("Stale file handle") {
                                stale += 1;
                                continue;
                            }
                            return Err(format!("host {host}: {}", out.describe()));
                        }
                        reads += 1;
                        let version = whole_version(file, &out.stdout)
                            .map_err(|why| format!("host {host} f{file}: torn read: {why}"))?;
                        if version < *last_seen {
                            return Err(format!(
                                "host {host} f{file}: version {version} after {last_seen}"
                            ));
                        }
                        *last_seen = version;
                        // The newest version visible for longer than the TTL
                        // (and the slack) when this read began.
                        let owed = visible_at
                            .lock()
                            .unwrap()
                            .iter()
                            .filter(|((f, _), at)| {
                                *f == file && began.duration_since(**at) > ttl + FRESHNESS_SLACK
                            })
                            .map(|((_, v), _)| *v)
                            .max()
                            .unwrap_or(0);
                        if version < owed {
                            return Err(format!(
                                "host {host} f{file}: read version {version}, but {owed} was \
                                 visible for over {:?}",
                                ttl + FRESHNESS_SLACK
                            ));
                        }
                    }
                    if let Some(deadline) = final_deadline
                        && Instant::now() > deadline
                    {
                        if seen.iter().any(|v| *v != VERSIONS) {
                            return Err(format!("host {host} ended on versions {seen:?}"));
                        }
                        return Ok((reads, stale));
                    }
                }
            })
        })
        .collect();

    for version in 1..=VERSIONS {
        for file in 0..FILES {
            let source = sources.path().join(format!("f{file}-v{version}"));
            std::fs::write(&source, version_text(file, version)).unwrap();
            run(Command::new("cp")
                .arg(&source)
                .arg(writer.join(format!("shared/f{file}"))));
            visible_at
                .lock()
                .unwrap()
                .insert((file, version), Instant::now());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    done.store(true, Ordering::Release);

    let mut failures = Vec::new();
    for (host, thread) in reader_threads.into_iter().enumerate() {
        match thread.join() {
            Ok(Ok((reads, stale))) => {
                eprintln!("host {host}: {reads} whole reads, {stale} refused as stale");
                assert!(reads > FILES, "host {host} read only {reads} times");
            }
            Ok(Err(failure)) => failures.push(failure),
            Err(_) => failures.push(format!("host {host}: reader panicked")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // What the disk-cached readers kept outlives their mounts: a remount
    // over the same directory serves the newest versions whole.
    for dir in &cache_dirs {
        let blocks = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|entry| {
                let entry = entry.as_ref().unwrap();
                entry.file_name().to_string_lossy().ends_with(".blk")
            })
            .count();
        assert!(blocks > 0, "{}: no block kept", dir.path().display());
    }
    drop(readers);
    let again = mount_host(2, &[&disk_cached[..], &["--cache-dir", &cache_1]].concat());
    for file in 0..FILES {
        let body = std::fs::read(again.join(format!("shared/f{file}"))).unwrap();
        assert_eq!(
            whole_version(file, &body),
            Ok(VERSIONS),
            "f{file} after a remount"
        );
    }
    drop(again);
    for file in 0..FILES {
        assert_eq!(
            whole_version(file, &bucket.get(&format!("shared/f{file}"))),
            Ok(VERSIONS)
        );
    }
}

/// `ls -l` of one file's mode bits as the mount shows them.
fn listed_mode(mount: &Mount, dir: &str, name: &str) -> String {
    let out = run(Command::new("ls").arg("-l").arg(mount.join(dir)));
    out.stdout_str()
        .lines()
        .find(|line| line.ends_with(&format!(" {name}")))
        .map(|line| line[..10].to_owned())
        .unwrap_or_else(|| panic!("{name} not listed: {}", out.stdout_str()))
}

/// A chmod on one host copies the object onto itself with new headers; S3
/// keeps its ETag (the bytes did not change), only Last-Modified moves. A
/// second host that listed the file before must show the new mode once its
/// TTL has passed, in a listing as well as in `stat`.
#[test]
fn a_chmod_on_one_host_shows_on_another_within_its_ttl() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    let writer = bucket.mount(&[]);
    std::fs::create_dir(writer.join("shared")).unwrap();
    std::fs::write(writer.join("shared/file"), b"same bytes").unwrap();
    let reader = bucket.mount(&["--metadata-ttl", "1"]);
    assert_eq!(listed_mode(&reader, "shared", "file"), "-rw-r--r--");

    // Not within the same second as the upload: Last-Modified has 1 s steps.
    std::thread::sleep(Duration::from_millis(1100));
    run(Command::new("chmod")
        .arg("600")
        .arg(writer.join("shared/file")));
    std::thread::sleep(Duration::from_secs(READER_TTL_SECONDS) + FRESHNESS_SLACK);
    assert_eq!(
        listed_mode(&reader, "shared", "file"),
        "-rw-------",
        "ls -l on the other host"
    );
    let stat = run(Command::new("stat")
        .args(["-c", "%a"])
        .arg(reader.join("shared/file")));
    assert_eq!(stat.stdout_str().trim(), "600", "stat on the other host");
    reader.unmount();
    writer.unmount();
}
