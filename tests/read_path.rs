//! The read path through a real mount: objects are put by an independent
//! client (aws-sdk-s3 straight at a local server), bucketfs mounts the bucket
//! for real, and ordinary tools (`ls`, `stat`, `find`, `cp`, `diff`, `cmp`,
//! `head`, `cat`) or plain std::fs calls look at it.
//!
//! Each test starts its own server and mount, so tests run in parallel
//! without sharing state. Everything here reads; writes are tested elsewhere.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    Bucket, DaemonGuard, ServerKind, line_set, random_bytes, run, run_daemonized, run_tool,
    write_local,
};
use rand::{Rng, SeedableRng};

const MIB: usize = 1024 * 1024;

/// Names in a directory, as read_dir reports them (`.`/`..` excluded).
fn dir_names(path: &Path) -> BTreeSet<String> {
    std::fs::read_dir(path)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", path.display()))
        .map(|entry| {
            let entry = entry.unwrap_or_else(|e| panic!("read_dir {} entry: {e}", path.display()));
            entry.file_name().into_string().expect("UTF-8 name")
        })
        .collect()
}

/// Every name `ls -a` prints, in order, duplicates kept.
fn ls_all(path: &Path) -> Vec<String> {
    let out = run_tool("ls", ["-a1".as_ref(), path.as_os_str()]);
    out.stdout_str().lines().map(str::to_string).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `stat -c FORMAT path`, trimmed.
fn stat(format: &str, path: &Path) -> String {
    run(Command::new("stat").arg("-c").arg(format).arg(path))
        .stdout_str()
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------
// A tree of ordinary files
// ---------------------------------------------------------------------------

/// A three-level tree; sizes cross the usual part sizes (1 and 8 MiB).
const TREE: &[(&str, usize)] = &[
    ("top.txt", 13),
    ("l1/one.bin", 4096),
    ("l1/two.txt", 1),
    ("l1/l2/three.bin", 3 * MIB + 17),
    ("l1/l2/l3/four.bin", 100_000),
    ("l1/l2/l3/five.txt", 777),
    ("other/l2/six.bin", 9 * MIB + 5),
    ("other/seven.txt", 42),
];
const TREE_DIRS: &[&str] = &["l1", "l1/l2", "l1/l2/l3", "other", "other/l2"];

#[test]
fn tree_lists_stats_finds_and_copies_like_local_files() {
    let bucket = Bucket::new(ServerKind::Moto);
    let source = tempfile::tempdir().expect("source dir");
    for (i, (key, size)) in TREE.iter().enumerate() {
        let body = random_bytes(100 + i as u64, *size);
        write_local(source.path(), key, &body);
        bucket.put(key, body);
    }
    let mount = bucket.mount(&[]);
    let root = mount.path();

    // find: exactly the keys as files, exactly their prefixes as directories.
    let files = run(Command::new("find").arg(root).args([
        "-mindepth",
        "1",
        "-type",
        "f",
        "-printf",
        "%P\n",
    ]));
    let expected_files: BTreeSet<String> = TREE.iter().map(|(k, _)| k.to_string()).collect();
    assert_eq!(
        line_set(&files.stdout_str()),
        expected_files,
        "find -type f"
    );
    let dirs = run(Command::new("find").arg(root).args([
        "-mindepth",
        "1",
        "-type",
        "d",
        "-printf",
        "%P\n",
    ]));
    assert_eq!(line_set(&dirs.stdout_str()), set(TREE_DIRS), "find -type d");
    let everything =
        run(Command::new("find")
            .arg(root)
            .args(["-mindepth", "1", "-printf", "%P\n"]));
    assert_eq!(
        everything.stdout_str().lines().count(),
        TREE.len() + TREE_DIRS.len(),
        "find lists some path twice:\n{}",
        everything.stdout_str()
    );

    // stat: sizes and types.
    for (key, size) in TREE {
        let path = root.join(key);
        let expected_type = if *size == 0 {
            "regular empty file"
        } else {
            "regular file"
        };
        assert_eq!(
            stat("%s|%F", &path),
            format!("{size}|{expected_type}"),
            "stat {key}"
        );
    }
    for dir in TREE_DIRS {
        assert_eq!(stat("%F", &root.join(dir)), "directory", "stat {dir}");
    }

    // ls -l: one line per entry, right type letter, right size.
    let listing = run(Command::new("ls").arg("-l").arg(root.join("l1"))).stdout_str();
    let mut seen = BTreeSet::new();
    for line in listing.lines().filter(|l| !l.starts_with("total")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 9, "odd ls -l line {line:?} in:\n{listing}");
        let (perms, size, name) = (fields[0], fields[4], fields[fields.len() - 1]);
        match name {
            "l2" => assert!(perms.starts_with('d'), "l2 not a directory in:\n{listing}"),
            "one.bin" => assert_eq!((&perms[..1], size), ("-", "4096"), "one.bin in:\n{listing}"),
            "two.txt" => assert_eq!((&perms[..1], size), ("-", "1"), "two.txt in:\n{listing}"),
            other => panic!("unexpected entry {other:?} in:\n{listing}"),
        }
        assert!(
            seen.insert(name.to_string()),
            "{name} listed twice in:\n{listing}"
        );
    }
    assert_eq!(
        seen,
        set(&["l2", "one.bin", "two.txt"]),
        "ls -l l1:\n{listing}"
    );
    let top = run(Command::new("ls").arg("-1").arg(root)).stdout_str();
    assert_eq!(
        line_set(&top),
        set(&["l1", "other", "top.txt"]),
        "ls of the root"
    );

    // cp -r out, then diff -r against the local originals.
    let copy = tempfile::tempdir().expect("copy dir");
    run(Command::new("cp")
        .arg("-r")
        .arg(root.join("."))
        .arg(copy.path()));
    run(Command::new("diff")
        .arg("-r")
        .arg(source.path())
        .arg(copy.path()));

    mount.unmount();
}

// ---------------------------------------------------------------------------
// One large object
// ---------------------------------------------------------------------------

const LARGE_SIZE: usize = 256 * MIB;
const LARGE_SEED: u64 = 0x5eed_0256;

/// On one 256 MiB object, cold caches first: `head -c 100`, then 1,000
/// preads at random offsets (a tenth of them straddling a MiB boundary,
/// where part-based readers split), then `cmp` of the whole object.
///
/// On s3s-fs: moto copies the whole object for every ranged GET (measured
/// here: 0.4 s per 100-byte range of a 256 MiB object), which would make
/// this test about moto's speed.
#[test]
fn large_object_head_cmp_and_random_reads() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    let body = Bytes::from(random_bytes(LARGE_SEED, LARGE_SIZE));
    let started = Instant::now();
    bucket.put_multipart("large/object.bin", body.clone(), 16 * MIB);
    eprintln!("uploaded {LARGE_SIZE} bytes in {:?}", started.elapsed());
    let local = tempfile::tempdir().expect("local dir");
    let local_path = write_local(local.path(), "object.bin", &body);

    let mount = bucket.mount(&[]);
    let path = mount.join("large/object.bin");
    assert_eq!(
        std::fs::metadata(&path).expect("stat large object").len(),
        LARGE_SIZE as u64
    );

    // First, on a cold mount: the head of the object only.
    let head = run(Command::new("head").args(["-c", "100"]).arg(&path));
    assert_eq!(head.stdout, body[..100], "head -c 100");
    eprintln!("head -c 100 took {:?}", head.elapsed);

    let mut rng = rand::rngs::StdRng::seed_from_u64(LARGE_SEED ^ 1);
    let file = std::fs::File::open(&path).expect("open large object");
    let started = Instant::now();
    for i in 0..1000 {
        let len = rng.random_range(1..=64 * 1024);
        let offset = if i % 10 == 0 {
            let boundary = rng.random_range(1..LARGE_SIZE / MIB) * MIB;
            boundary - len / 2
        } else {
            rng.random_range(0..=LARGE_SIZE - len)
        };
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset as u64)
            .unwrap_or_else(|e| panic!("read #{i}: {len} bytes at {offset}: {e}"));
        assert!(
            buf == body[offset..offset + len],
            "read #{i}: {len} bytes at {offset} differ"
        );
    }
    eprintln!("1000 random reads took {:?}", started.elapsed());
    // The tail and past the end.
    let mut last = [0u8; 10];
    file.read_exact_at(&mut last, (LARGE_SIZE - 10) as u64)
        .expect("read the last 10 bytes");
    assert_eq!(last, body[LARGE_SIZE - 10..]);
    let mut beyond = [0u8; 10];
    assert_eq!(
        file.read_at(&mut beyond, LARGE_SIZE as u64)
            .expect("read at EOF"),
        0
    );
    drop(file);

    // Then the whole object, through a tool.
    let cmp = run(Command::new("cmp").arg(&local_path).arg(&path));
    eprintln!("cmp of {LARGE_SIZE} bytes took {:?}", cmp.elapsed);

    mount.unmount();
}

// ---------------------------------------------------------------------------
// A wide directory
// ---------------------------------------------------------------------------

const WIDE_COUNT: usize = 10_000;

#[test]
fn directory_of_10000_objects_lists_completely() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    let name = |i: usize| format!("obj-{i:05}");
    let mut objects: Vec<(String, Bytes)> = (0..WIDE_COUNT)
        .map(|i| (format!("wide/{}", name(i)), Bytes::from(format!("{i}\n"))))
        .collect();
    // Neighbours whose keys sort around `wide/` must not leak into it.
    objects.push(("wide-neighbour/x".to_string(), Bytes::from_static(b"n")));
    objects.push(("wide.txt".to_string(), Bytes::from_static(b"n")));
    let started = Instant::now();
    bucket.put_many(objects, 32);
    eprintln!("uploaded {WIDE_COUNT} objects in {:?}", started.elapsed());
    let started = Instant::now();
    assert_eq!(
        bucket.list_keys("wide/").len(),
        WIDE_COUNT,
        "precondition: server holds them all"
    );
    eprintln!("listing them with the client took {:?}", started.elapsed());

    let mount = bucket.mount(&[]);
    let dir = mount.join("wide");
    let started = Instant::now();
    let ls = run(Command::new("ls").arg("-1").arg(&dir));
    eprintln!("ls of {WIDE_COUNT} entries took {:?}", started.elapsed());
    assert_eq!(ls.stdout_str().lines().count(), WIDE_COUNT, "ls | wc -l");
    let expected: BTreeSet<String> = (0..WIDE_COUNT).map(name).collect();
    assert_eq!(dir_names(&dir), expected, "read_dir of wide/");
    for i in [0, 1, 4_999, WIDE_COUNT - 1] {
        assert_eq!(
            std::fs::read_to_string(dir.join(name(i))).expect("read entry"),
            format!("{i}\n")
        );
    }
    mount.unmount();
}

// ---------------------------------------------------------------------------
// Unusual keys
// ---------------------------------------------------------------------------

/// Keys whose URL form needs percent-encoding, or that a careless decoder
/// would turn into other keys (`+` → space, `%2F` → `/`).
const ENCODED_KEYS: &[&str] = &[
    "with space.txt",
    "unicodé-日本語-ñ.txt",
    "plus+sign.txt",
    "100%.txt",
    "percent%2Fslash.txt",
    "percent%20space.txt",
    "hash#tag.txt",
    "question?mark.txt",
    "amp&equals=.txt",
    "tilde~semi;colon:.txt",
    "quote'brackets[1].txt",
    "dir with space/inner +file%.txt",
];

#[test]
fn keys_needing_url_encoding_are_readable() {
    let bucket = Bucket::new(ServerKind::Moto);
    for key in ENCODED_KEYS {
        bucket.put(key, format!("content of {key}\n"));
    }
    assert_eq!(
        bucket.list_keys(""),
        set(ENCODED_KEYS),
        "precondition: server stored the keys verbatim"
    );
    let mount = bucket.mount(&[]);

    let top: BTreeSet<String> = ENCODED_KEYS
        .iter()
        .map(|k| k.split('/').next().unwrap().to_string())
        .collect();
    assert_eq!(dir_names(mount.path()), top, "root listing");
    assert_eq!(
        dir_names(&mount.join("dir with space")),
        set(&["inner +file%.txt"])
    );
    for key in ENCODED_KEYS {
        let content = std::fs::read_to_string(mount.join(key))
            .unwrap_or_else(|e| panic!("read {key:?}: {e}"));
        assert_eq!(content, format!("content of {key}\n"), "content of {key:?}");
    }
    let cat = run(Command::new("cat").args(ENCODED_KEYS.iter().map(|k| mount.join(k))));
    let expected: String = ENCODED_KEYS
        .iter()
        .map(|k| format!("content of {k}\n"))
        .collect();
    assert_eq!(cat.stdout_str(), expected, "cat of all encoded keys");
    mount.unmount();
}

#[test]
fn empty_object_and_directory_markers() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("empty.txt", Bytes::new());
    bucket.put("marker-only/", Bytes::new());
    bucket.put("marker-and-child/", Bytes::new());
    bucket.put("marker-and-child/f.txt", "f");
    let mount = bucket.mount(&[]);

    assert_eq!(
        stat("%s|%F", &mount.join("empty.txt")),
        "0|regular empty file"
    );
    let cat = run(Command::new("cat").arg(mount.join("empty.txt")));
    assert!(
        cat.stdout.is_empty(),
        "cat of an empty object printed {} bytes",
        cat.stdout.len()
    );

    assert_eq!(stat("%F", &mount.join("marker-only")), "directory");
    assert_eq!(
        dir_names(&mount.join("marker-only")),
        BTreeSet::new(),
        "marker-only/ must be empty"
    );
    assert_eq!(dir_names(&mount.join("marker-and-child")), set(&["f.txt"]));

    // Each name exactly once, and no empty name from the `dir/` keys.
    let mut root = ls_all(mount.path());
    root.sort();
    assert_eq!(
        root,
        [".", "..", "empty.txt", "marker-and-child", "marker-only"],
        "ls -a of the root"
    );
    let mut marker = ls_all(&mount.join("marker-only"));
    marker.sort();
    assert_eq!(marker, [".", ".."], "ls -a marker-only");
    mount.unmount();
}

#[test]
fn file_and_directory_with_one_name_shows_the_directory() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("a", "the file a");
    bucket.put("a/x", "the file a/x");
    bucket.put("b", "plain");
    let mount = bucket.mount(&[]);

    assert!(
        std::fs::metadata(mount.join("a")).expect("stat a").is_dir(),
        "a must be a directory"
    );
    assert_eq!(dir_names(&mount.join("a")), set(&["x"]));
    assert_eq!(
        std::fs::read_to_string(mount.join("a/x")).expect("read a/x"),
        "the file a/x"
    );
    let mut root = ls_all(mount.path());
    root.sort();
    assert_eq!(
        root,
        [".", "..", "a", "b"],
        "ls -a of the root: `a` must appear once"
    );
    mount.unmount();
}

#[test]
fn keys_with_dot_dot_segments_are_hidden() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("bad/../x", "traversal");
    bucket.put("../escape.txt", "traversal");
    bucket.put("bad/ok.txt", "ok");
    bucket.put("good.txt", "good");
    assert_eq!(
        bucket.list_keys(""),
        set(&["../escape.txt", "bad/../x", "bad/ok.txt", "good.txt"]),
        "precondition: server stored the keys verbatim"
    );
    let mount = bucket.mount(&[]);

    let find =
        run(Command::new("find")
            .arg(mount.path())
            .args(["-mindepth", "1", "-printf", "%P\n"]));
    let found = find.stdout_str();
    assert_eq!(
        line_set(&found),
        set(&["bad", "bad/ok.txt", "good.txt"]),
        "find"
    );
    assert_eq!(
        found.lines().count(),
        3,
        "find listed a path twice:\n{found}"
    );

    let mut root = ls_all(mount.path());
    root.sort();
    assert_eq!(root, [".", "..", "bad", "good.txt"], "ls -a of the root");
    let mut bad = ls_all(&mount.join("bad"));
    bad.sort();
    assert_eq!(bad, [".", "..", "ok.txt"], "ls -a bad");
    for hidden in ["x", "escape.txt"] {
        let err = std::fs::metadata(mount.join(hidden)).expect_err(hidden);
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{hidden}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(mount.join("bad/ok.txt")).expect("read bad/ok.txt"),
        "ok"
    );
    mount.unmount();
}

// ---------------------------------------------------------------------------
// Another client changes an object
// ---------------------------------------------------------------------------

#[test]
fn replaced_object_is_seen_on_reopen_after_the_ttl() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("changing.txt", "version one\n");
    let mount = bucket.mount(&["--metadata-ttl", "1"]);
    let path = mount.join("changing.txt");
    assert_eq!(
        std::fs::read_to_string(&path).expect("first read"),
        "version one\n"
    );

    let second = "version two, which is longer\n";
    bucket.put("changing.txt", second);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        std::fs::metadata(&path).expect("stat").len(),
        second.len() as u64,
        "size after the TTL"
    );
    assert_eq!(
        std::fs::read_to_string(&path).expect("read after the TTL"),
        second
    );
    let cat = run(Command::new("cat").arg(&path));
    assert_eq!(cat.stdout_str(), second, "cat after the TTL");
    mount.unmount();
}

#[test]
fn open_handle_gets_estale_when_object_replaced() {
    const SIZE: usize = 32 * MIB;
    const LATE_OFFSET: u64 = 30 * MIB as u64;
    let bucket = Bucket::new(ServerKind::Moto);
    let old = random_bytes(11, SIZE);
    let new = random_bytes(12, SIZE);
    bucket.put("replaced.bin", old.clone());
    let mount = bucket.mount(&["--metadata-ttl", "1"]);
    let path = mount.join("replaced.bin");

    let file = std::fs::File::open(&path).expect("open");
    let mut first = [0u8; 100];
    file.read_exact_at(&mut first, 0)
        .expect("read 100 bytes at 0");
    assert_eq!(first, old[..100]);

    bucket.put("replaced.bin", new.clone());
    let mut late = vec![0u8; 4096];
    match file.read_exact_at(&mut late, LATE_OFFSET) {
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(libc::ESTALE),
            "pread after replace: {e}"
        ),
        Ok(()) => {
            let at = LATE_OFFSET as usize..LATE_OFFSET as usize + late.len();
            let which = if late == old[at.clone()] {
                "the old object's bytes"
            } else if late == new[at] {
                "the new object's bytes (mixed with the old head)"
            } else {
                "bytes of neither object"
            };
            panic!(
                "pread at {LATE_OFFSET} after the object was replaced succeeded with {which}; expected ESTALE"
            );
        }
    }
    drop(file);

    // A new open after the TTL reads the new object whole.
    std::thread::sleep(Duration::from_millis(1500));
    let reopened = std::fs::File::open(&path).expect("reopen");
    reopened
        .read_exact_at(&mut late, LATE_OFFSET)
        .expect("pread after reopen");
    assert!(
        late == new[LATE_OFFSET as usize..LATE_OFFSET as usize + late.len()],
        "reopened file has wrong bytes"
    );
    drop(reopened);
    mount.unmount();
}

// ---------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------

#[test]
fn s3fs_metadata_headers_set_attributes_unless_disabled() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put_with_metadata(
        "posix.txt",
        "posix",
        &[
            ("mode", "33184"),
            ("uid", "1234"),
            ("gid", "4321"),
            ("mtime", "1600000000"),
        ],
    );
    bucket.put("dir/plain.txt", "plain");
    let last_modified = bucket.last_modified_secs("posix.txt");

    let with_headers = bucket.mount(&[]);
    assert_eq!(
        stat("%a %u %g %Y %F", &with_headers.join("posix.txt")),
        "640 1234 4321 1600000000 regular file"
    );

    let listing_only = bucket.mount(&[
        "--no-posix-metadata",
        "--uid",
        "7",
        "--gid",
        "8",
        "--file-mode",
        "600",
        "--dir-mode",
        "710",
    ]);
    assert_eq!(
        stat("%a %u %g %Y", &listing_only.join("posix.txt")),
        format!("600 7 8 {last_modified}"),
        "--no-posix-metadata must use the options and the listing's mtime"
    );
    assert_eq!(
        stat("%a %u %g %F", &listing_only.join("dir")),
        "710 7 8 directory"
    );
    assert_eq!(
        stat("%a %u %g", &listing_only.join("dir/plain.txt")),
        "600 7 8"
    );

    with_headers.unmount();
    listing_only.unmount();
}

// ---------------------------------------------------------------------------
// Prefix mounts
// ---------------------------------------------------------------------------

#[test]
fn prefix_mount_shows_only_keys_under_the_prefix() {
    let bucket = Bucket::new(ServerKind::Moto);
    for (key, body) in [
        ("p1/a.txt", "p1 a"),
        ("p1/sub/b.txt", "p1 sub b"),
        ("p10/not-mine.txt", "shares the p1 string prefix"),
        ("p1.txt", "sibling file"),
        ("p2/c.txt", "other prefix"),
        ("top.txt", "root"),
    ] {
        bucket.put(key, body);
    }
    let mount = bucket.mount(&["--prefix", "p1/"]);
    let find =
        run(Command::new("find")
            .arg(mount.path())
            .args(["-mindepth", "1", "-printf", "%P\n"]));
    assert_eq!(
        line_set(&find.stdout_str()),
        set(&["a.txt", "sub", "sub/b.txt"]),
        "find under --prefix p1/"
    );
    assert_eq!(
        std::fs::read_to_string(mount.join("a.txt")).expect("read a.txt"),
        "p1 a"
    );
    assert_eq!(
        std::fs::read_to_string(mount.join("sub/b.txt")).expect("read sub/b.txt"),
        "p1 sub b"
    );
    for outside in ["p1", "top.txt", "not-mine.txt", "p2"] {
        assert!(
            std::fs::metadata(mount.join(outside)).is_err(),
            "{outside} visible under --prefix p1/"
        );
    }
    mount.unmount();
}

// ---------------------------------------------------------------------------
// Daemonized mounts
// ---------------------------------------------------------------------------

/// The story from the README: one client writes, two hosts mount the same
/// bucket, both read the same bytes.
#[test]
fn two_daemonized_mounts_read_the_same_file() {
    let bucket = Bucket::new(ServerKind::Moto);
    let body = random_bytes(21, 5 * MIB + 123);
    bucket.put("shared/data.bin", body.clone());
    let local = tempfile::tempdir().expect("local dir");
    let original = write_local(local.path(), "original.bin", &body);

    let host_a = DaemonGuard::new();
    let host_b = DaemonGuard::new();
    for host in [&host_a, &host_b] {
        let started = run_daemonized(
            &bucket.target(),
            &bucket.name,
            host.path(),
            &[],
            Duration::from_secs(30),
        );
        assert!(
            started.status.is_some_and(|s| s.success()),
            "daemonized mount failed:\n{}",
            started.describe()
        );
        assert!(
            common::is_mounted(host.path()),
            "bucketfs exited 0 before the mount was live:\n{}",
            started.describe()
        );
    }

    let copy_a = local.path().join("from-a.bin");
    let copy_b = local.path().join("from-b.bin");
    run(Command::new("cp")
        .arg(host_a.join("shared/data.bin"))
        .arg(&copy_a));
    run(Command::new("cp")
        .arg(host_b.join("shared/data.bin"))
        .arg(&copy_b));
    run(Command::new("diff").arg(&copy_a).arg(&copy_b));
    run(Command::new("cmp").arg(&original).arg(&copy_a));

    run(Command::new("fusermount3").arg("-u").arg(host_a.path()));
    run(Command::new("umount").arg(host_b.path()));
    for host in [&host_a, &host_b] {
        assert!(
            !common::is_mounted(host.path()),
            "{} still mounted",
            host.path().display()
        );
        if let Err(pids) = host.wait_daemons_gone(Duration::from_secs(10)) {
            panic!(
                "bucketfs {pids:?} still running 10 s after unmounting {}",
                host.path().display()
            );
        }
    }
}

#[test]
fn sigterm_to_the_daemon_unmounts() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("f.txt", "f");
    let host = DaemonGuard::new();
    let started = run_daemonized(
        &bucket.target(),
        &bucket.name,
        host.path(),
        &[],
        Duration::from_secs(30),
    );
    assert!(
        started.status.is_some_and(|s| s.success()),
        "daemonized mount failed:\n{}",
        started.describe()
    );
    assert_eq!(
        std::fs::read_to_string(host.join("f.txt")).expect("read f.txt"),
        "f"
    );
    let pids = host.daemon_pids();
    assert_eq!(
        pids.len(),
        1,
        "expected one bucketfs daemon for the mount, found {pids:?}"
    );
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is the
    // daemon this test just started.
    let rc = unsafe { libc::kill(pids[0] as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill -TERM {}", pids[0]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::is_mounted(host.path()) {
        assert!(
            Instant::now() < deadline,
            "still mounted 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Err(pids) = host.wait_daemons_gone(Duration::from_secs(10)) {
        panic!("bucketfs {pids:?} still running 10 s after SIGTERM");
    }
}
