//! Directories made elsewhere (issue 11, section 6): a prefix without a
//! marker, a `d/` marker written by the S3 console or by s3fs, and s3fs's
//! old-style directory object `d` list and stat as directories, and take
//! chmod, chown, utimens and xattrs, which write their marker so that the
//! change survives a remount, keeping what the other tool wrote there.
//!
//! The mount tests run on moto: s3s-fs cannot hold `d/` markers.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use bucketfs::fs::{FileKind, ROOT_INO, SetAttr};
use bucketfs::store::memory::{MemoryStore, Verb};
use bucketfs::store::{ObjectHeaders, ObjectStore};
use bytes::Bytes;
use common::core::{filesystem, fs_config, read_directory};
use common::s3fs::{S3fsMount, sh};
use common::{Bucket, ServerKind};

const X_DIRECTORY: &str = "application/x-directory";

/// Puts an empty object as another tool would: `content_type` `None`
/// leaves it to the client and the store.
fn put_foreign(bucket: &Bucket, key: &str, content_type: Option<&str>, metadata: &[(&str, &str)]) {
    let mut request = bucket
        .client()
        .put_object()
        .bucket(&bucket.name)
        .key(key)
        .set_content_type(content_type.map(str::to_owned));
    for (name, value) in metadata {
        request = request.metadata(*name, *value);
    }
    bucket
        .block_on(request.send())
        .unwrap_or_else(|e| panic!("put {key:?}: {}", common::sdk_error(&e)));
}

fn bucket_content_type(bucket: &Bucket, key: &str) -> String {
    bucket.content_type(key).unwrap_or_default()
}

/// `stat` of each name, one line each: name, type, mode, owner, mtime.
fn stat_lines(root: &std::path::Path, names: &str) -> String {
    sh(root, &format!("stat -c '%n %F %a %u %g %Y' {names}"))
}

/// The `ls -ln` line of `name`: its mode string and numeric owner.
fn ls_line(listing: &str, name: &str) -> String {
    let line = listing
        .lines()
        .find(|line| line.split_whitespace().last() == Some(name))
        .unwrap_or_else(|| panic!("{name} not listed:\n{listing}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    format!("{} {} {}", fields[0], fields[2], fields[3])
}

const ALL: &str = "prefix console bare s3fs old oldfull";

#[test]
fn directories_made_elsewhere_list_stat_and_keep_attribute_changes_across_a_remount() {
    let bucket = Bucket::new(ServerKind::Moto);
    // Only keys under it.
    bucket.put("prefix/f", "x");
    // The S3 console's "create folder", with metadata someone added.
    put_foreign(&bucket, "console/", Some(X_DIRECTORY), &[("owner", "etl")]);
    // A marker without any headers.
    put_foreign(&bucket, "bare/", None, &[]);
    let bare_content_type = bucket_content_type(&bucket, "bare/");
    // s3fs 1.90's mkdir: mode 0755 without file-type bits.
    put_foreign(
        &bucket,
        "s3fs/",
        Some(X_DIRECTORY),
        &[
            ("mode", "493"),
            ("uid", "1000"),
            ("gid", "1000"),
            ("atime", "1500000000"),
            ("ctime", "1500000000"),
            ("mtime", "1500000000"),
        ],
    );
    // s3fs's old style: an object without the slash, alone...
    put_foreign(
        &bucket,
        "old",
        Some(X_DIRECTORY),
        &[
            ("mode", "16877"),
            ("uid", "12"),
            ("gid", "34"),
            ("mtime", "1500000000"),
            ("legacy", "yes"),
        ],
    );
    // ... and with keys under it, told by its Content-Type alone.
    put_foreign(&bucket, "oldfull", Some(X_DIRECTORY), &[("uid", "7")]);
    bucket.put("oldfull/f", "y");

    {
        let mount = bucket.mount(&[]);
        // Lookups first, then the listing, which resolves them again.
        let looked_up = stat_lines(mount.path(), "old oldfull oldfull/f");
        assert_eq!(
            looked_up.lines().collect::<Vec<_>>(),
            [
                "old directory 755 12 34 1500000000",
                &format!(
                    "oldfull directory 755 7 0 {}",
                    bucket.last_modified_secs("oldfull")
                ),
                &format!(
                    "oldfull/f regular file 644 0 0 {}",
                    bucket.last_modified_secs("oldfull/f")
                ),
            ]
        );
        let listed = sh(mount.path(), "ls -ln");
        for (name, expected) in [
            ("prefix", "drwxr-xr-x 0 0"),
            ("console", "drwxr-xr-x 0 0"),
            ("bare", "drwxr-xr-x 0 0"),
            ("s3fs", "drwxr-xr-x 1000 1000"),
            ("old", "drwxr-xr-x 12 34"),
            ("oldfull", "drwxr-xr-x 7 0"),
        ] {
            assert_eq!(ls_line(&listed, name), expected, "{listed}");
        }
        assert_eq!(
            sh(mount.path(), "ls -A old oldfull"),
            "old:\n\noldfull:\nf\n"
        );
        sh(
            mount.path(),
            &format!(
                "setfattr -n user.made -v elsewhere prefix old && \
                 chmod 700 prefix && chmod 710 console && chmod 711 bare && chmod 750 s3fs && \
                 chmod 705 old && chmod 770 oldfull && chown 5:6 {ALL} && \
                 touch -d @1600000000 {ALL}"
            ),
        );
        mount.unmount();
    }

    // Each change landed on a marker, with what the other tool wrote kept.
    let keys = bucket.list_keys("");
    for marker in ["prefix/", "console/", "bare/", "s3fs/", "old/", "oldfull/"] {
        assert!(keys.contains(marker), "no {marker} in {keys:?}");
    }
    // The old-style objects went once a marker replaced them, as s3fs's
    // chmod intends.
    assert!(
        !keys.contains("old") && !keys.contains("oldfull"),
        "{keys:?}"
    );
    assert!(keys.contains("oldfull/f"), "{keys:?}");
    let console = bucket.metadata("console/");
    assert_eq!(console.get("owner").map(String::as_str), Some("etl"));
    assert_eq!(console["mode"], (0o40710).to_string());
    assert_eq!((&console["uid"][..], &console["gid"][..]), ("5", "6"));
    assert_eq!(console["mtime"], "1600000000");
    assert_eq!(bucket_content_type(&bucket, "console/"), X_DIRECTORY);
    // The store's default stays: a change of attributes is no retyping.
    assert_eq!(bucket_content_type(&bucket, "bare/"), bare_content_type);
    assert_eq!(bucket.metadata("s3fs/")["mode"], (0o40750).to_string());
    let old = bucket.metadata("old/");
    assert_eq!(old.get("legacy").map(String::as_str), Some("yes"));
    assert_eq!(old["mode"], (0o40705).to_string());
    assert_eq!(bucket_content_type(&bucket, "old/"), X_DIRECTORY);

    // Lookups first, then the listing.
    let mount = bucket.mount(&[]);
    let expected = [
        ("prefix", "700", "drwx------"),
        ("console", "710", "drwx--x---"),
        ("bare", "711", "drwx--x--x"),
        ("s3fs", "750", "drwxr-x---"),
        ("old", "705", "drwx---r-x"),
        ("oldfull", "770", "drwxrwx---"),
    ];
    let stats = stat_lines(mount.path(), ALL);
    let wanted: Vec<String> = expected
        .iter()
        .map(|(name, mode, _)| format!("{name} directory {mode} 5 6 1600000000"))
        .collect();
    assert_eq!(stats.lines().collect::<Vec<_>>(), wanted);
    let listed = sh(mount.path(), "ls -ln");
    for (name, _, rwx) in expected {
        assert_eq!(ls_line(&listed, name), format!("{rwx} 5 6"), "{listed}");
    }
    assert_eq!(sh(mount.path(), "ls oldfull"), "f\n");
    assert_eq!(
        sh(
            mount.path(),
            "getfattr --only-values -n user.made prefix old"
        ),
        "elsewhereelsewhere"
    );
    mount.unmount();
}

#[test]
fn directories_bucketfs_changed_read_the_same_under_s3fs() {
    let bucket = Bucket::new(ServerKind::Moto);
    {
        let s3fs = S3fsMount::start(&bucket);
        sh(s3fs.path(), "mkdir made && touch made/f");
    }
    put_foreign(
        &bucket,
        "old",
        Some(X_DIRECTORY),
        &[("mode", "16877"), ("uid", "12"), ("gid", "34")],
    );
    {
        let mount = bucket.mount(&[]);
        sh(
            mount.path(),
            "chmod 700 made old && chown 5:6 made old && touch -d @1600000000 made old",
        );
        mount.unmount();
    }
    let s3fs = S3fsMount::start(&bucket);
    assert_eq!(
        stat_lines(s3fs.path(), "made old")
            .lines()
            .collect::<Vec<_>>(),
        [
            "made directory 700 5 6 1600000000",
            "old directory 700 5 6 1600000000"
        ]
    );
    assert_eq!(sh(s3fs.path(), "ls made"), "f\n");
    // s3fs 1.90 aborts on a chmod of an old-style directory object; the
    // marker bucketfs wrote in its place it changes like its own.
    sh(s3fs.path(), "chmod 750 old");
    assert_eq!(
        stat_lines(s3fs.path(), "old").trim(),
        "old directory 750 5 6 1600000000"
    );
}

fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

async fn put_directory_object(store: &MemoryStore, key: &str, pairs: &[(&str, &str)]) {
    let headers = ObjectHeaders {
        user_metadata: metadata(pairs),
        content_type: Some(X_DIRECTORY.to_owned()),
    };
    ObjectStore::put(store, key, Bytes::new(), &headers)
        .await
        .unwrap();
}

/// The listing holds back an object that a later page may show to be a
/// directory's name; an old-style directory object must then give that
/// directory its attributes, and one alone must list as a directory.
#[tokio::test]
async fn old_style_directory_objects_list_as_directories_across_pages() {
    let store = Arc::new(MemoryStore::new());
    put_directory_object(&store, "a", &[("uid", "12")]).await;
    for i in 0..1000 {
        store.put(&format!("a!{i:03}"), vec![0u8; 1]);
    }
    store.put("a/x", vec![0u8; 1]);
    put_directory_object(&store, "b", &[("uid", "34")]).await;
    let fs = filesystem(&store, fs_config());
    let mut found = Vec::new();
    for entry in read_directory(&fs, ROOT_INO).await {
        if entry.counts_as_lookup {
            fs.forget(entry.entry.attr.ino, 1);
        }
        if entry.name == "a" || entry.name == "b" {
            let attr = entry.entry.attr;
            found.push((entry.name, attr.kind, attr.uid));
        }
    }
    assert_eq!(
        found,
        [
            ("a".to_owned(), FileKind::Directory, 12),
            ("b".to_owned(), FileKind::Directory, 34)
        ]
    );
}

/// A change to a directory is one request that changes the bucket (plus
/// the removal of an old-style object it replaces), after HEADs.
#[tokio::test]
async fn a_directory_change_costs_one_write() {
    let store = Arc::new(MemoryStore::new());
    store.put_with_metadata("marked/", Bytes::new(), metadata(&[("owner", "etl")]));
    put_directory_object(&store, "old", &[("mode", "16877")]).await;
    let fs = filesystem(&store, fs_config());
    let chmod = SetAttr {
        mode: Some(0o700),
        ..SetAttr::default()
    };
    let writes = |store: &MemoryStore| {
        [Verb::Put, Verb::Copy, Verb::Delete].map(|verb| store.request_count(verb))
    };

    let marked = fs.lookup(ROOT_INO, "marked").await.unwrap().attr.ino;
    let before = writes(&store);
    fs.setattr(marked, chmod).await.unwrap();
    let after = writes(&store);
    assert_eq!(
        [
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2]
        ],
        [1, 0, 0],
        "an empty marker is written anew"
    );
    let (_, kept) = store.get("marked/").unwrap();
    assert_eq!(kept.get("owner").map(String::as_str), Some("etl"));
    assert_eq!(kept["mode"], (0o40700).to_string());

    let old = fs.lookup(ROOT_INO, "old").await.unwrap();
    assert_eq!(old.attr.kind, FileKind::Directory);
    let before = writes(&store);
    fs.setattr(old.attr.ino, chmod).await.unwrap();
    let after = writes(&store);
    assert_eq!(
        [
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2]
        ],
        [1, 0, 1]
    );
    assert!(store.get("old").is_none());
    assert_eq!(store.get("old/").unwrap().1["mode"], (0o40700).to_string());
    assert_eq!(store.content_type("old/").as_deref(), Some(X_DIRECTORY));
    assert_eq!(fs.getattr(old.attr.ino).await.unwrap().attr.perm, 0o700);
}

/// An old-style directory object lies outside the directory's prefix: rmdir
/// must remove it, and a rename must not leave it behind, or the directory
/// comes back under its old name.
#[tokio::test]
async fn rmdir_and_rename_take_the_old_style_object_along() {
    let store = Arc::new(MemoryStore::new());
    put_directory_object(&store, "gone", &[]).await;
    put_directory_object(&store, "moved", &[("uid", "9")]).await;
    store.put("moved/f", vec![0u8; 1]);
    let fs = filesystem(&store, fs_config());

    let gone = fs.lookup(ROOT_INO, "gone").await.unwrap().attr;
    assert_eq!(gone.kind, FileKind::Directory);
    fs.rmdir(ROOT_INO, "gone").await.unwrap();
    assert!(store.get("gone").is_none());

    let moved = fs.lookup(ROOT_INO, "moved").await.unwrap().attr;
    assert_eq!((moved.kind, moved.uid), (FileKind::Directory, 9));
    fs.rename(ROOT_INO, "moved", ROOT_INO, "moved2", false)
        .await
        .unwrap();
    assert!(store.get("moved").is_none() && store.get("moved/").is_none());
    assert!(store.get("moved2/f").is_some());
    assert_eq!(store.get("moved2/").unwrap().1["uid"], "9");

    // A fresh mount sees the same.
    let fs = filesystem(&store, fs_config());
    let names: Vec<String> = {
        let fh = fs.opendir(ROOT_INO).unwrap();
        let entries = fs.readdirplus(fh, 0).await.unwrap();
        fs.releasedir(fh);
        entries
            .into_iter()
            .map(|entry| entry.name)
            .filter(|name| !name.starts_with('.'))
            .collect()
    };
    assert_eq!(names, ["moved2"]);
    assert_eq!(fs.lookup(ROOT_INO, "moved2").await.unwrap().attr.uid, 9);
}
