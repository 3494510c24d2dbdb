//! POSIX attributes on a real mount, stored as s3fs-fuse stores them
//! (issue 11, sections 1, 2 and 4): special files, atime/ctime/mtime with
//! POSIX update rules, and Content-Type. Each test mounts once on moto (it
//! keeps `dir/` markers and every header) and checks what `stat`, `ls` and
//! the bucket's HEAD show, before and after a remount.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::s3fs::sh;
use common::{Bucket, COMMAND_TIMEOUT, RunOutput, ServerKind, run_with_timeout};

/// A time set by `touch -d`, far from now so that "kept" and "moved" differ.
const SET: i128 = 1_600_000_000;

/// `script` run by `sh -c` in `cwd`, whatever its exit status.
fn try_sh(cwd: &Path, script: &str) -> RunOutput {
    run_with_timeout(
        Command::new("sh").arg("-c").arg(script).current_dir(cwd),
        COMMAND_TIMEOUT,
    )
}

/// atime, mtime and ctime of `path` in nanoseconds since the epoch, as
/// `stat` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Times {
    atime: i128,
    mtime: i128,
    ctime: i128,
}

fn times(cwd: &Path, path: &str) -> Times {
    let out = sh(cwd, &format!("stat -c '%.9X %.9Y %.9Z' {path}"));
    let nanos: Vec<i128> = out
        .split_whitespace()
        .map(|field| {
            let (secs, frac) = field.split_once('.').expect("stat %.9X has a fraction");
            secs.parse::<i128>().unwrap() * 1_000_000_000 + frac.parse::<i128>().unwrap()
        })
        .collect();
    assert_eq!(nanos.len(), 3, "stat printed {out:?}");
    Times {
        atime: nanos[0],
        mtime: nanos[1],
        ctime: nanos[2],
    }
}

fn secs(s: i128) -> i128 {
    s * 1_000_000_000
}

/// The clock the daemon reads too, in nanoseconds since the epoch.
fn now() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

/// Asserts that `time` (nanoseconds) lies in `from..=to`, give or take a
/// second: the kernel's coarse clock may lag, and `SET` is years away.
fn assert_now(what: &str, time: i128, from: i128, to: i128) {
    assert!(
        from - secs(1) <= time && time <= to + secs(1),
        "{what} is now ({from}..={to}), not {time}"
    );
}

/// s3fs's time format: whole seconds, or seconds and nine digits.
fn is_s3fs_time(value: &str) -> bool {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && (fraction.is_empty()
            || (fraction.len() == 9 && fraction.bytes().all(|b| b.is_ascii_digit())))
}

fn assert_time_headers(metadata: &HashMap<String, String>, key: &str) {
    for name in ["atime", "mtime", "ctime"] {
        let value = metadata
            .get(name)
            .unwrap_or_else(|| panic!("{key}: no {name} header in {metadata:?}"));
        assert!(is_s3fs_time(value), "{key}: {name} = {value:?}");
    }
}

/// Runs `script` and asserts that it changed the bucket by exactly one
/// CopyObject.
fn assert_one_copy(bucket: &Bucket, dir: &Path, script: &str) {
    assert_one_request(bucket, dir, script, "x-id=CopyObject");
}

/// Runs `script` and asserts that it changed the bucket by exactly one
/// request, whose log line contains `expected`.
fn assert_one_request(bucket: &Bucket, dir: &Path, script: &str, expected: &str) {
    let seen = bucket.changing_requests().len();
    sh(dir, script);
    let new = bucket.changing_requests().split_off(seen);
    assert!(
        new.len() == 1 && new[0].contains(expected),
        "{script}: one {expected} and nothing else, not {new:#?}"
    );
}

/// The request that rewrites the directory `name`'s marker: an empty
/// marker is put anew rather than copied (see `change_marker`).
fn marker_put(bucket: &Bucket, name: &str) -> String {
    format!("\"PUT /{}/{name}/?x-id=PutObject ", bucket.name)
}

/// A write (any kind) moves mtime and ctime, never atime.
fn assert_write_moved(what: &str, before: Times, after: Times) {
    assert_eq!(after.atime, before.atime, "{what}: atime must stay");
    assert!(
        after.mtime > before.mtime,
        "{what}: mtime must move: {before:?} → {after:?}"
    );
    assert!(
        after.ctime > before.ctime,
        "{what}: ctime must move: {before:?} → {after:?}"
    );
}

/// A change of attributes (chmod, chown, rename) moves ctime only.
fn assert_ctime_only_moved(what: &str, before: Times, after: Times) {
    assert_eq!(after.atime, before.atime, "{what}: atime must stay");
    assert_eq!(after.mtime, before.mtime, "{what}: mtime must stay");
    assert!(
        after.ctime > before.ctime,
        "{what}: ctime must move: {before:?} → {after:?}"
    );
}

#[test]
fn special_files_are_empty_objects_with_type_and_device_headers() {
    let bucket = Bucket::new(ServerKind::Moto);
    let expected_stat = "fifo 0 0 644\n\
                         character special file 1 7 600\n\
                         block special file 7 0 640\n\
                         socket 0 0 755\n";
    {
        let mount = bucket.mount(&[]);
        let dir = mount.path();
        sh(
            dir,
            "umask 022 && mkfifo fifo && mknod -m 600 chr c 1 7 && mknod -m 640 blk b 7 0 && \
             python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind('sock')\"",
        );
        assert_eq!(
            sh(dir, "stat -c '%F %t %T %a' fifo chr blk sock"),
            expected_stat
        );
        let types: String = sh(dir, "ls -l fifo chr blk sock | cut -c1")
            .split_whitespace()
            .collect();
        assert_eq!(types, "bcps", "ls -l sorts by name: blk chr fifo sock");

        // A FIFO is the kernel's pipe on this host: a writer and a reader
        // through the mount meet, and nothing reaches the bucket.
        assert_eq!(
            sh(dir, "(printf 'through the pipe' > fifo &) && cat fifo"),
            "through the pipe"
        );
        // FUSE mounts are nodev: opening a device node is refused whatever its mode.
        for node in ["chr", "blk"] {
            let open = try_sh(dir, &format!("head -c 1 {node}"));
            assert!(
                !open.success() && open.stderr_str().contains("Permission denied"),
                "open of {node}: {}",
                open.describe()
            );
        }
        // A socket bound on the mount is reachable by path while its owner listens.
        assert_eq!(
            sh(
                dir,
                "python3 -c \"import socket\n\
                 s = socket.socket(socket.AF_UNIX); s.bind('live'); s.listen(1)\n\
                 c = socket.socket(socket.AF_UNIX); c.connect('live'); c.send(b'ping')\n\
                 print(s.accept()[0].recv(4).decode())\""
            ),
            "ping\n"
        );
        // Objects cannot share data, so there are no hard links.
        let link = try_sh(dir, "ln fifo hardlink");
        assert!(
            !link.success() && link.stderr_str().contains("Operation not permitted"),
            "{}",
            link.describe()
        );
        // chmod, rename and utimens keep the type and the device number.
        sh(
            dir,
            "mknod -m 600 moved c 4 5 && chmod 666 moved && mv moved null && \
             touch -d @1600000000 null",
        );
        assert_eq!(
            sh(dir, "stat -c '%F %t %T %a %Y' null"),
            "character special file 4 5 666 1600000000\n"
        );
    }
    assert!(!bucket.list_keys("").contains("moved"));
    for (key, mode, rdev) in [
        ("null", libc::S_IFCHR | 0o666, Some(libc::makedev(4, 5))),
        ("fifo", libc::S_IFIFO | 0o644, None),
        ("chr", libc::S_IFCHR | 0o600, Some(libc::makedev(1, 7))),
        ("blk", libc::S_IFBLK | 0o640, Some(libc::makedev(7, 0))),
        ("sock", libc::S_IFSOCK | 0o755, None),
    ] {
        assert_eq!(bucket.get(key), b"", "{key} is an empty object");
        let metadata = bucket.metadata(key);
        assert_eq!(
            metadata.get("mode"),
            Some(&mode.to_string()),
            "{key}: {metadata:?}"
        );
        assert_eq!(
            metadata.get("rdev"),
            rdev.map(|r| r.to_string()).as_ref(),
            "{key}: {metadata:?}"
        );
        assert_time_headers(&metadata, key);
    }
    assert!(!bucket.list_keys("").contains("hardlink"));

    let mount = bucket.mount(&[]);
    assert_eq!(
        sh(mount.path(), "stat -c '%F %t %T %a' fifo chr blk sock"),
        expected_stat,
        "after a remount"
    );
    assert_eq!(
        sh(mount.path(), "stat -c '%F %t %T %a %Y' null"),
        "character special file 4 5 666 1600000000\n"
    );
    let listed = sh(mount.path(), "ls -l");
    for (letter, name) in [('b', "blk"), ('c', "chr"), ('p', "fifo"), ('s', "sock")] {
        assert!(
            listed
                .lines()
                .any(|line| line.starts_with(letter) && line.ends_with(name)),
            "ls -l after a remount shows {name} as {letter}:\n{listed}"
        );
    }
}

#[test]
fn times_follow_posix_update_rules_and_survive_a_remount() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("plain", "put by another tool\n");
    let started = now();
    {
        let mount = bucket.mount(&[]);
        let dir = mount.path();
        sh(dir, "printf 'abc' > f");
        let created = times(dir, "f");
        for time in [created.atime, created.mtime, created.ctime] {
            assert!(
                time >= started - secs(1),
                "a new file's times are now: {created:?}"
            );
        }

        let write_cases = [
            ("append", "echo more >> f"),
            (
                "write into the middle",
                "printf X | dd of=f bs=1 seek=1 conv=notrunc status=none",
            ),
            ("truncate", "truncate -s 10 f"),
        ];
        for (what, script) in write_cases {
            sh(dir, &format!("touch -d @{SET} f"));
            let before = times(dir, "f");
            assert_eq!(
                (before.atime, before.mtime),
                (secs(SET), secs(SET)),
                "{what}"
            );
            sh(dir, script);
            assert_write_moved(what, before, times(dir, "f"));
        }
        assert_eq!(sh(dir, "od -An -c f | tr -d ' \\n'"), "aXcmore\\n\\0\\0");

        sh(dir, &format!("touch -d @{SET} f"));
        for (what, script, path) in [
            ("chmod", "chmod 600 f", "f"),
            ("chown", "chown 1234:4321 f", "f"),
            ("rename", "mv f g", "g"),
        ] {
            let before = times(dir, "f");
            if what == "rename" {
                sh(dir, script);
            } else {
                assert_one_copy(&bucket, dir, script);
            }
            assert_ctime_only_moved(what, before, times(dir, path));
        }

        let before = times(dir, "g");
        assert_one_copy(&bucket, dir, "touch -a -d @1500000000 g");
        let after = times(dir, "g");
        assert_eq!(
            (after.atime, after.mtime),
            (secs(1_500_000_000), before.mtime),
            "touch -a"
        );
        assert!(after.ctime > before.ctime, "touch -a moves ctime");
        let before = after;
        assert_one_copy(&bucket, dir, "touch -m -d @1400000000 g");
        let after = times(dir, "g");
        assert_eq!(
            (after.atime, after.mtime),
            (before.atime, secs(1_400_000_000)),
            "touch -m"
        );
        assert!(after.ctime > before.ctime, "touch -m moves ctime");

        // Reading is like noatime: no atime change, so no request either.
        // `plain` was never read here: cat reaches bucketfs, not the page cache.
        let before = times(dir, "plain");
        let seen = bucket.changing_requests().len();
        assert_eq!(sh(dir, "cat plain"), "put by another tool\n");
        assert_eq!(
            bucket.changing_requests().len(),
            seen,
            "cat changed nothing"
        );
        assert_eq!(times(dir, "plain"), before, "cat changes no time");
        assert_eq!(
            bucket.metadata("plain"),
            HashMap::new(),
            "cat wrote no header"
        );

        sh(dir, &format!("touch -d @{SET}.123456789 nanos"));
        let nanos = times(dir, "nanos");
        assert_eq!(
            (nanos.atime, nanos.mtime),
            (secs(SET) + 123_456_789, secs(SET) + 123_456_789)
        );

        // A symlink's own times (utimensat with AT_SYMLINK_NOFOLLOW).
        sh(dir, &format!("ln -s g link && touch -h -d @{SET} link"));
        assert_eq!(
            sh(dir, "stat -c '%Y' link g"),
            format!("{SET}\n1400000000\n")
        );

        // A directory's times and mode live on its marker, and follow a
        // file's rules.
        sh(dir, &format!("mkdir d && touch -d @{SET} d"));
        let before = times(dir, "d");
        assert_one_request(&bucket, dir, "chmod 700 d", &marker_put(&bucket, "d"));
        assert_ctime_only_moved("chmod of a directory", before, times(dir, "d"));

        // touch without a time is utimensat(UTIME_NOW): the daemon reads
        // the clock, for a stored file and for a directory's marker alike.
        sh(
            dir,
            &format!("printf x > stored && mkdir e && touch -d @{SET} stored e"),
        );
        for (path, key, request) in [
            ("stored", "stored", "x-id=CopyObject".to_owned()),
            ("e", "e/", marker_put(&bucket, "e")),
        ] {
            let from = now();
            assert_one_request(&bucket, dir, &format!("touch {path}"), &request);
            let to = now();
            let after = times(dir, path);
            for (name, time) in [
                ("atime", after.atime),
                ("mtime", after.mtime),
                ("ctime", after.ctime),
            ] {
                assert_now(&format!("touch {path}: its {name}"), time, from, to);
            }
            let stored = bucket.metadata(key);
            for name in ["atime", "mtime", "ctime"] {
                let header = &stored[name];
                let whole: i128 = header.split('.').next().unwrap().parse().unwrap();
                assert_now(
                    &format!("touch {path}: the {name} header {header:?}"),
                    secs(whole),
                    from,
                    to,
                );
            }
        }

        // The root has no marker: its times live in memory.
        let root_before = times(dir, ".");
        sh(dir, &format!("touch -d @{SET} ."));
        let root = times(dir, ".");
        assert_eq!(
            (root.atime, root.mtime),
            (secs(SET), secs(SET)),
            "touch -d of the root"
        );
        assert!(root.ctime > root_before.ctime, "root ctime moves");
        sh(dir, "touch .");
        assert!(
            times(dir, ".").mtime > secs(SET),
            "touch of the root sets now"
        );
    }

    let g = bucket.metadata("g");
    assert_time_headers(&g, "g");
    assert_eq!(
        (g["atime"].as_str(), g["mtime"].as_str()),
        ("1500000000", "1400000000")
    );
    let nanos = bucket.metadata("nanos");
    assert_time_headers(&nanos, "nanos");
    assert_eq!(nanos["atime"], "1600000000.123456789");
    assert_eq!(nanos["mtime"], "1600000000.123456789");
    let marker = bucket.metadata("d/");
    assert_time_headers(&marker, "d/");
    assert_eq!(marker["mtime"], "1600000000");

    let mount = bucket.mount(&[]);
    let dir = mount.path();
    let g = times(dir, "g");
    assert_eq!(
        (g.atime, g.mtime),
        (secs(1_500_000_000), secs(1_400_000_000)),
        "after a remount"
    );
    assert_eq!(
        sh(dir, "stat -c '%x|%y' nanos"),
        "2020-09-13 12:26:40.123456789 +0000|2020-09-13 12:26:40.123456789 +0000\n",
        "nanoseconds survive a remount"
    );
    assert_eq!(
        sh(dir, "stat -c '%a %X %Y' d"),
        format!("700 {SET} {SET}\n")
    );
    assert_eq!(sh(dir, "stat -c '%Y' link"), format!("{SET}\n"));
}

#[test]
fn content_type_follows_the_name_and_survives_metadata_changes() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put_with_content_type(
        "data.bin",
        "from another tool\n",
        "application/x-custom-thing",
    );
    // Bigger than one part of 5 MiB: uploaded as a multipart upload.
    let big = common::random_bytes(11, 6 * 1024 * 1024);
    let local = tempfile::tempdir().unwrap();
    common::write_local(local.path(), "big.css", &big);
    {
        let mount = bucket.mount(&["--write-part-size", "5"]);
        let dir = mount.path();
        sh(
            dir,
            &format!(
                "printf '<p>' > a.html && printf '{{}}' > b.json && printf x > c.unknownext && \
                 cp {}/big.css big.css",
                local.path().display()
            ),
        );
        for (key, expected) in [
            ("a.html", "text/html"),
            ("b.json", "application/json"),
            ("c.unknownext", "application/octet-stream"),
        ] {
            assert_eq!(bucket.content_type(key).as_deref(), Some(expected), "{key}");
        }
        let (big_type, big_etag) = bucket.content_type_and_etag("big.css");
        assert!(
            big_etag.contains('-'),
            "big.css went up in parts: ETag {big_etag}"
        );
        assert_eq!(big_type.as_deref(), Some("text/css"));

        sh(dir, "mv a.html a.txt");
        assert_eq!(
            bucket.content_type("a.txt").as_deref(),
            Some("text/plain"),
            "the new name's type"
        );
        sh(
            dir,
            "chmod 600 a.txt && touch -d @1600000000 a.txt && chown 1234 a.txt",
        );
        assert_eq!(bucket.content_type("a.txt").as_deref(), Some("text/plain"));

        for change in [
            "chmod 600",
            "chown 1234:4321",
            "touch -d @1600000000",
            "touch",
        ] {
            sh(dir, &format!("{change} data.bin"));
            assert_eq!(
                bucket.content_type("data.bin").as_deref(),
                Some("application/x-custom-thing"),
                "after {change}"
            );
        }
        // A new body is a new upload: it takes the name's type, as s3fs 1.90
        // does (it already does so on chmod).
        sh(dir, "printf 'rewritten\\n' > data.bin");
        assert_eq!(
            bucket.content_type("data.bin").as_deref(),
            Some("application/octet-stream")
        );
    }
    assert_eq!(bucket.get("big.css"), big);
    assert_eq!(
        bucket.metadata("data.bin")["mode"],
        (libc::S_IFREG | 0o600).to_string()
    );
}
