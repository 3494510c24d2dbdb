//! Extended attributes on a real mount, stored as s3fs stores them (with
//! `-o use_xattr`): the `x-amz-meta-xattr` header, URL-encoded JSON of name
//! to base64 value. Driven with setfattr/getfattr and, for the flags and
//! the exact errno, Python's os.setxattr.

mod common;

use std::path::Path;
use std::process::Command;

use common::s3fs::{S3fsMount, sh};
use common::{Bucket, ServerKind, run};

/// Runs a Python snippet in `cwd`; `attempt(f, *args)` prints what the
/// call returned, or the errno's name.
fn py(cwd: &Path, body: &str) -> String {
    let script = format!(
        "import os, errno\n\
         def attempt(f, *args):\n\
         \x20   try:\n\
         \x20       r = f(*args)\n\
         \x20       print('ok' if r is None else repr(r))\n\
         \x20   except OSError as e:\n\
         \x20       print(errno.errorcode[e.errno])\n\
         {body}\n"
    );
    let out = run(Command::new("python3")
        .arg("-c")
        .arg(script)
        .current_dir(cwd));
    assert!(out.success(), "{}", out.describe());
    out.stdout_str()
}

fn tool(cwd: &Path, script: &str) -> String {
    let out = run(Command::new("sh").arg("-c").arg(script).current_dir(cwd));
    assert!(out.success(), "{}", out.describe());
    out.stdout_str()
}

#[test]
fn attributes_round_trip_in_s3fs_format_with_posix_flags_and_errno() {
    let bucket = Bucket::new(ServerKind::Moto);
    let mount = bucket.mount(&[]);
    let dir = mount.path();
    tool(
        dir,
        "printf data > f.html && mkdir d && ln -s f.html link && \
         touch -d @1600000000 f.html && \
         setfattr -n user.foo -v 'bar baz' f.html && \
         setfattr -n user.x -v 0xff002f2b3d f.html && \
         setfattr -n user.tag -v blue d && \
         setfattr -h -n trusted.owner -v ops link",
    );
    // Byte for byte what s3fs 1.90 writes for the same two attributes.
    let metadata = bucket.metadata("f.html");
    assert_eq!(
        metadata.get("xattr").map(String::as_str),
        Some("%7B%22user.foo%22%3A%22YmFyIGJheg%3D%3D%22%2C%22user.x%22%3A%22/wAvKz0%3D%22%7D"),
        "{metadata:?}"
    );
    assert_eq!(
        tool(dir, "getfattr --only-values -n user.foo f.html"),
        "bar baz"
    );
    assert_eq!(
        tool(dir, "getfattr -e hex -n user.x f.html | grep user.x"),
        "user.x=0xff002f2b3d\n"
    );
    assert!(bucket.metadata("d/").contains_key("xattr"));
    assert!(bucket.metadata("link").contains_key("xattr"));

    // An xattr change moves ctime only, and keeps the type the name implies.
    let before = tool(dir, "stat -c '%Y %Z' f.html");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    tool(dir, "setfattr -n user.later -v 1 f.html");
    let after = tool(dir, "stat -c '%Y %Z' f.html");
    let (mtime_before, ctime_before) = before.trim().split_once(' ').unwrap();
    let (mtime_after, ctime_after) = after.trim().split_once(' ').unwrap();
    assert_eq!(mtime_after, mtime_before, "mtime kept: {before} -> {after}");
    assert!(
        ctime_after > ctime_before,
        "ctime moved: {before} -> {after}"
    );
    assert_eq!(tool(dir, "cat f.html"), "data");
    assert_eq!(bucket.content_type("f.html").as_deref(), Some("text/html"));

    let outcomes = py(
        dir,
        "attempt(os.setxattr, 'f.html', 'user.foo', b'again', os.XATTR_CREATE)\n\
         attempt(os.setxattr, 'f.html', 'user.none', b'v', os.XATTR_REPLACE)\n\
         attempt(os.setxattr, 'f.html', 'user.foo', b'replaced', os.XATTR_REPLACE)\n\
         attempt(os.setxattr, 'f.html', 'user.new', b'', os.XATTR_CREATE)\n\
         attempt(os.getxattr, 'f.html', 'user.foo')\n\
         attempt(os.getxattr, 'f.html', 'user.new')\n\
         attempt(os.getxattr, 'f.html', 'user.none')\n\
         attempt(os.removexattr, 'f.html', 'user.none')\n\
         attempt(os.removexattr, 'f.html', 'user.new')\n\
         attempt(os.setxattr, 'f.html', 'user.big', b'v' * 3000)\n\
         attempt(os.setxattr, 'f.html', 'user.fits', b'v' * 1000)\n\
         attempt(os.setxattr, 'f.html', 'user.overflows', b'v' * 1000)\n\
         print(sorted(os.listxattr('f.html')))\n\
         print(sorted(os.listxattr('link', follow_symlinks=False)))",
    );
    assert_eq!(
        outcomes.lines().collect::<Vec<_>>(),
        [
            "EEXIST",
            "ENODATA",
            "ok",
            "ok",
            "b'replaced'",
            "b''",
            "ENODATA",
            "ENODATA",
            "ok",
            "ENOSPC",
            "ok",
            "ENOSPC",
            "['user.fits', 'user.foo', 'user.later', 'user.x']",
            "['trusted.owner']",
        ]
    );

    // All of it survives a remount: it lives in the bucket.
    mount.unmount();
    let mount = bucket.mount(&[]);
    let dir = mount.path();
    assert_eq!(
        tool(
            dir,
            "getfattr --only-values -n user.foo f.html; echo; \
             getfattr --only-values -n user.tag d; echo; \
             getfattr -h --only-values -n trusted.owner link"
        ),
        "replaced\nblue\nops"
    );
    // Removing the last one removes the header.
    tool(
        dir,
        "for n in user.foo user.x user.later user.fits; do setfattr -x $n f.html; done",
    );
    assert_eq!(tool(dir, "getfattr -d f.html"), "");
    assert!(!bucket.metadata("f.html").contains_key("xattr"));
    assert_eq!(tool(dir, "stat -c %Y f.html"), "1600000000\n");
}

#[test]
fn a_change_is_one_copy_that_keeps_another_tools_content_type() {
    let bucket = Bucket::new(ServerKind::Moto);
    // A name that implies another type, so that keeping it and guessing
    // from the name differ.
    bucket.put_with_content_type("table.html", "a,b\n", "text/csv");
    let mount = bucket.mount(&[]);
    for change in [
        "setfattr -n user.k -v v table.html",
        "setfattr -n user.k -v w table.html",
        "setfattr -x user.k table.html",
    ] {
        let seen = bucket.changing_requests().len();
        tool(mount.path(), change);
        let new = bucket.changing_requests().split_off(seen);
        assert!(
            new.len() == 1 && new[0].contains("x-id=CopyObject"),
            "{change}: one CopyObject and nothing else, not {new:#?}"
        );
        assert_eq!(
            bucket.content_type("table.html").as_deref(),
            Some("text/csv"),
            "after {change}"
        );
    }
    assert!(!bucket.metadata("table.html").contains_key("xattr"));
    assert_eq!(bucket.get("table.html"), b"a,b\n");
}

#[test]
fn attributes_of_a_file_being_written_go_up_with_its_contents() {
    let bucket = Bucket::new(ServerKind::Moto);
    let mount = bucket.mount(&[]);
    let outcome = py(
        mount.path(),
        "f = open('w.txt', 'wb')\n\
         f.write(b'first ')\n\
         os.setxattr('w.txt', 'user.stage', b'writing')\n\
         f.write(b'second')\n\
         f.close()\n\
         print(os.getxattr('w.txt', 'user.stage'))",
    );
    assert_eq!(outcome, "b'writing'\n");
    assert_eq!(bucket.get("w.txt"), b"first second");
    assert!(bucket.metadata("w.txt").contains_key("xattr"));
    mount.unmount();
    let mount = bucket.mount(&[]);
    assert_eq!(
        tool(mount.path(), "getfattr --only-values -n user.stage w.txt"),
        "writing"
    );
}

#[test]
fn a_directory_known_only_by_its_keys_gets_a_marker_for_its_attributes() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("implicit/child", "c");
    let mount = bucket.mount(&[]);
    tool(mount.path(), "setfattr -n user.k -v v implicit");
    assert!(bucket.metadata("implicit/").contains_key("xattr"));
    mount.unmount();
    let mount = bucket.mount(&[]);
    assert_eq!(
        tool(
            mount.path(),
            "getfattr --only-values -n user.k implicit; ls implicit"
        ),
        "vchild\n"
    );
}

#[test]
fn no_xattr_and_no_posix_metadata_refuse_attributes() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put_with_metadata(
        "kept",
        "k",
        &[("xattr", "%7B%22user.a%22%3A%22Yg%3D%3D%22%7D")],
    );
    for option in ["--no-xattr", "--no-posix-metadata"] {
        let mount = bucket.mount(&[option]);
        let outcomes = py(
            mount.path(),
            "attempt(os.setxattr, 'kept', 'user.b', b'v')\n\
             attempt(os.getxattr, 'kept', 'user.a')\n\
             attempt(os.listxattr, 'kept')",
        );
        // Python names EOPNOTSUPP by its Linux alias ENOTSUP (both 95).
        assert_eq!(outcomes, "ENOTSUP\nENOTSUP\nENOTSUP\n", "{option}");
    }
    assert_eq!(
        bucket.metadata("kept").get("xattr").map(String::as_str),
        Some("%7B%22user.a%22%3A%22Yg%3D%3D%22%7D"),
        "left as it was"
    );
}

#[test]
fn what_s3fs_sets_bucketfs_reads_and_the_other_way_round() {
    let bucket = Bucket::new(ServerKind::Moto);
    {
        let s3fs = S3fsMount::start(&bucket);
        sh(
            s3fs.path(),
            "printf s > by-s3fs && mkdir dir-s3fs && \
             setfattr -n user.from -v s3fs by-s3fs && \
             setfattr -n user.bin -v 0x00ff by-s3fs && \
             setfattr -n user.d -v s3fs-dir dir-s3fs",
        );
    }
    {
        let mount = bucket.mount(&[]);
        assert_eq!(
            tool(
                mount.path(),
                "getfattr --only-values -n user.from by-s3fs; echo; \
                 getfattr -e hex -n user.bin by-s3fs | grep user.bin; \
                 getfattr --only-values -n user.d dir-s3fs"
            ),
            "s3fs\nuser.bin=0x00ff\ns3fs-dir"
        );
        tool(
            mount.path(),
            "printf b > by-bucketfs && mkdir dir-bucketfs && \
             setfattr -n user.from -v bucketfs by-bucketfs && \
             setfattr -n user.d -v bucketfs-dir dir-bucketfs && \
             setfattr -n user.added -v later by-s3fs",
        );
    }
    let s3fs = S3fsMount::start(&bucket);
    assert_eq!(
        sh(
            s3fs.path(),
            "getfattr --only-values -n user.from by-bucketfs; echo; \
             getfattr --only-values -n user.d dir-bucketfs; echo; \
             getfattr --only-values -n user.added by-s3fs; echo; \
             getfattr --only-values -n user.from by-s3fs"
        ),
        "bucketfs\nbucketfs-dir\nlater\ns3fs"
    );
}

// The core over the in-memory store, where failures can be injected and
// requests counted.

mod core_rules {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Arc;

    use bucketfs::fs::{Error, ROOT_INO, XattrWrite};
    use bucketfs::store::memory::{FailureKind, MemoryStore, Verb};

    use super::common::core::{filesystem, fs_config};

    /// How many requests of each kind that changes objects the store has
    /// answered. Reads are left out: a change HEADs first, to pin the copy
    /// to the version it saw.
    fn changing_requests(store: &MemoryStore) -> BTreeMap<Verb, u64> {
        Verb::ALL
            .into_iter()
            .filter(|verb| !matches!(verb, Verb::Head | Verb::Get | Verb::List))
            .map(|verb| (verb, store.request_count(verb)))
            .collect()
    }

    fn one_more_copy(mut requests: BTreeMap<Verb, u64>) -> BTreeMap<Verb, u64> {
        *requests.get_mut(&Verb::Copy).unwrap() += 1;
        requests
    }

    #[tokio::test]
    async fn a_failed_change_leaves_the_attributes_as_they_were_and_a_retry_lands() {
        let store = Arc::new(MemoryStore::new());
        store.put("f", "data");
        let fs = filesystem(&store, fs_config());
        let ino = fs.lookup(ROOT_INO, "f").await.unwrap().attr.ino;
        fs.setxattr(ino, b"user.a", b"1", XattrWrite::CreateOrReplace)
            .await
            .unwrap();

        store.fail_next(Verb::Copy, FailureKind::Unreachable, 10);
        let failed = fs
            .setxattr(ino, b"user.a", b"2", XattrWrite::CreateOrReplace)
            .await;
        assert!(failed.is_err(), "{failed:?}");
        assert_eq!(fs.getxattr(ino, b"user.a").await.unwrap(), b"1");
        assert!(fs.removexattr(ino, b"user.a").await.is_err());
        assert_eq!(fs.listxattr(ino).await.unwrap(), ["user.a"]);

        store.clear_failures();
        let before = changing_requests(&store);
        fs.setxattr(ino, b"user.a", b"2", XattrWrite::CreateOrReplace)
            .await
            .unwrap();
        assert_eq!(fs.getxattr(ino, b"user.a").await.unwrap(), b"2");
        assert_eq!(
            changing_requests(&store),
            one_more_copy(before),
            "a set is one CopyObject"
        );
        let (data, metadata) = store.get("f").unwrap();
        assert_eq!(&data[..], b"data");
        assert!(metadata.contains_key("xattr"));

        let before = changing_requests(&store);
        fs.removexattr(ino, b"user.a").await.unwrap();
        assert_eq!(
            changing_requests(&store),
            one_more_copy(before),
            "a removal is one CopyObject"
        );
        let (data, metadata) = store.get("f").unwrap();
        assert_eq!(&data[..], b"data");
        assert!(!metadata.contains_key("xattr"), "{metadata:?}");
    }

    #[tokio::test]
    async fn reading_attributes_costs_no_request_and_other_metadata_counts_against_the_limit() {
        let store = Arc::new(MemoryStore::new());
        let foreign = HashMap::from([("note".to_owned(), "n".repeat(1900))]);
        store.put_with_metadata("f", "data", foreign);
        let fs = filesystem(&store, fs_config());
        let ino = fs.lookup(ROOT_INO, "f").await.unwrap().attr.ino;
        let heads = store.head_count();
        assert!(matches!(
            fs.getxattr(ino, b"security.capability").await,
            Err(Error::NoAttribute)
        ));
        assert!(fs.listxattr(ino).await.unwrap().is_empty());
        assert_eq!(store.head_count(), heads, "answered from the lookup's HEAD");

        let copies = store.request_count(Verb::Copy);
        assert!(matches!(
            fs.setxattr(ino, b"user.a", &[b'v'; 200], XattrWrite::CreateOrReplace)
                .await,
            Err(Error::NoMetadataSpace)
        ));
        assert_eq!(store.request_count(Verb::Copy), copies, "nothing sent");
        // Small enough to fit beside the other tool's metadata.
        fs.setxattr(ino, b"user.a", b"v", XattrWrite::CreateOrReplace)
            .await
            .unwrap();
        let (_, metadata) = store.get("f").unwrap();
        assert_eq!(metadata["note"].len(), 1900, "kept");
    }
}
