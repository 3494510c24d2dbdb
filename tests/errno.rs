//! Exact errno, as Linux filesystems answer (issue 11, section 5).
//!
//! Each case runs a real tool (python for the calls whose errno the tools
//! hide: `mv` and `rm` check types themselves and print their own message)
//! on a live mount and expects one errno, recognised by its strerror text.
//! The mount uses `default_permissions`, so the kernel itself decides many
//! of these (a positive lookup before mkdir is EEXIST, the sticky bit, who
//! may chmod); those cases show that bucketfs gives the kernel the lookups
//! and attributes it decides from. One mount per user context keeps it fast.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::users::{TestUser, let_others_reach};
use common::{Bucket, Mount, ServerKind, run_with_timeout};

/// Linux's NAME_MAX: the longest name any of its disk filesystems accepts.
const NAME_MAX: usize = 255;

/// The system python, not a shim under root's home, so that the test user
/// can run it too.
const PYTHON: &str = "/usr/bin/python3";

/// System calls whose errno the usual tools hide, and O_EXCL, which no
/// tool exposes; exits with the strerror text of a failure.
const SYSCALLS_PY: &str = r#"
import os, sys
op, *paths = sys.argv[1:]
try:
    if op == "create-excl":
        os.close(os.open(paths[0], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    elif op == "rename":
        os.rename(paths[0], paths[1])
    else:
        sys.exit("unknown op " + op)
except OSError as error:
    sys.exit(op + ": " + os.strerror(error.errno))
"#;

/// One call that must fail with `errno`.
struct Case {
    what: String,
    argv: Vec<String>,
    errno: i32,
}

fn case(what: &str, errno: i32, argv: &[&str]) -> Case {
    Case {
        what: what.to_owned(),
        argv: argv.iter().map(|arg| (*arg).to_owned()).collect(),
        errno,
    }
}

/// A `Case` that calls SYSCALLS_PY.
fn syscall(what: &str, errno: i32, op: &str, paths: &[&str]) -> Case {
    let mut argv = vec![PYTHON, "-c", SYSCALLS_PY, op];
    argv.extend_from_slice(paths);
    case(what, errno, &argv)
}

/// "File exists", as tools print it.
fn strerror(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

/// Runs `argv` as root; whether it succeeded, and stderr.
fn run_as_root(argv: &[String]) -> (bool, String) {
    let out = run_with_timeout(
        Command::new(&argv[0]).args(&argv[1..]),
        Duration::from_secs(30),
    );
    (out.success(), out.stderr_str())
}

/// Runs every case, and fails once, listing each case that did not fail
/// with its errno.
fn check_all(cases: &[Case], run: impl Fn(&[String]) -> (bool, String), mount: &Mount) {
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let (succeeded, stderr) = run(&case.argv);
            let expected = strerror(case.errno);
            if !succeeded && stderr.contains(&expected) {
                return None;
            }
            let outcome = if succeeded {
                "succeeded".to_owned()
            } else {
                format!("failed with {:?}", stderr.trim())
            };
            Some(format!("{}: expected {expected:?}, {outcome}", case.what))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n{}\n--- daemon log ---\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n"),
        common::tail(&mount.daemon_log(), 40)
    );
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("utf-8 path").to_owned()
}

/// Names, types and the namespace, as root: the cases where the name or the
/// kind of what is (or is not) there decides.
#[test]
fn namespace_calls_fail_with_the_errno_linux_filesystems_give() {
    let bucket = Bucket::new(ServerKind::Moto);
    // Special files as s3fs leaves them. The mount has not seen them, so
    // the kernel has no dentry for them: only bucketfs's lookup, which
    // reads the type from the mode header, can say they exist.
    for (key, mode, rdev) in [
        ("p-s3fs", libc::S_IFIFO | 0o644, 0),
        ("s-s3fs", libc::S_IFSOCK | 0o755, 0),
        ("c-s3fs", libc::S_IFCHR | 0o600, libc::makedev(1, 7)),
    ] {
        let (mode, rdev) = (mode.to_string(), rdev.to_string());
        bucket.put_with_metadata(key, "", &[("mode", &mode), ("rdev", &rdev)]);
    }
    let mount = bucket.mount(&[]);
    let at = |name: &str| path_str(&mount.join(name));
    std::fs::write(mount.join("f"), "f\n").expect("create f");
    for dir in ["d", "full", "empty", "a", "a/sub"] {
        std::fs::create_dir(mount.join(dir)).expect("mkdir");
    }
    std::fs::write(mount.join("full/x"), "x\n").expect("create full/x");
    std::os::unix::fs::symlink("f", mount.join("l")).expect("symlink l");
    // The same made through the mount (devices need root).
    for argv in [
        vec!["mkfifo".to_owned(), at("p")],
        vec![
            "mknod".to_owned(),
            at("c"),
            "c".to_owned(),
            "1".to_owned(),
            "7".to_owned(),
        ],
        vec![
            PYTHON.to_owned(),
            "-c".to_owned(),
            format!(
                "import socket; socket.socket(socket.AF_UNIX).bind({:?})",
                at("s")
            ),
        ],
    ] {
        let (succeeded, stderr) = run_as_root(&argv);
        assert!(succeeded, "{argv:?}: {stderr}");
    }
    let longest = "n".repeat(NAME_MAX);
    std::fs::write(mount.join(&longest), "").expect("a name of NAME_MAX bytes works");
    let keys_before = bucket.list_keys("");

    let too_long = at(&"n".repeat(NAME_MAX + 1));
    let long_binary = format!(
        "{}/$(printf '\\377%.0s' $(seq {}))",
        path_str(mount.path()),
        NAME_MAX + 1
    );
    let (f, d, l, full, empty, a) = (at("f"), at("d"), at("l"), at("full"), at("empty"), at("a"));
    let (p, c, s) = (at("p"), at("c"), at("s"));
    let (p_s3fs, c_s3fs, s_s3fs) = (at("p-s3fs"), at("c-s3fs"), at("s-s3fs"));
    let mut cases = vec![
        case(
            "stat of a long name",
            libc::ENAMETOOLONG,
            &["stat", &too_long],
        ),
        case(
            "create of a long name",
            libc::ENAMETOOLONG,
            &["touch", &too_long],
        ),
        case(
            "mkdir of a long name",
            libc::ENAMETOOLONG,
            &["mkdir", &too_long],
        ),
        case(
            "mkfifo of a long name",
            libc::ENAMETOOLONG,
            &["mkfifo", &too_long],
        ),
        case(
            "symlink of a long name",
            libc::ENAMETOOLONG,
            &["ln", "-sT", "f", &too_long],
        ),
        syscall(
            "rename to a long name",
            libc::ENAMETOOLONG,
            "rename",
            &[&f, &too_long],
        ),
        // Not UTF-8, so it cannot be a key either; its length is what
        // Linux reports first.
        case(
            "stat of a long name that is not UTF-8",
            libc::ENAMETOOLONG,
            &["sh", "-c", &format!("stat \"{long_binary}\"")],
        ),
        case(
            "create of a long name that is not UTF-8",
            libc::ENAMETOOLONG,
            &["sh", "-c", &format!("touch \"{long_binary}\"")],
        ),
        case("stat through a file", libc::ENOTDIR, &["stat", &at("f/x")]),
        case(
            "create through a file",
            libc::ENOTDIR,
            &["touch", &at("f/x")],
        ),
        case(
            "mkdir through a file",
            libc::ENOTDIR,
            &["mkdir", &at("f/x")],
        ),
        case("unlink of a directory", libc::EISDIR, &["unlink", &d]),
        case("rmdir of a file", libc::ENOTDIR, &["rmdir", &f]),
        case(
            "rmdir of a non-empty directory",
            libc::ENOTEMPTY,
            &["rmdir", &full],
        ),
        syscall(
            "rename of a file onto a directory",
            libc::EISDIR,
            "rename",
            &[&f, &d],
        ),
        syscall(
            "rename of a directory onto a file",
            libc::ENOTDIR,
            "rename",
            &[&d, &f],
        ),
        case(
            "rename onto a non-empty directory",
            libc::ENOTEMPTY,
            &["mv", "-T", &empty, &full],
        ),
        syscall(
            "rename of a directory into its own subtree",
            libc::EINVAL,
            "rename",
            &[&a, &at("a/sub/a")],
        ),
    ];
    for (kind, existing) in [
        ("file", &f),
        ("directory", &d),
        ("symlink", &l),
        ("FIFO", &p),
        ("socket", &s),
        ("character device", &c),
        ("FIFO s3fs wrote", &p_s3fs),
        ("socket s3fs wrote", &s_s3fs),
        ("character device s3fs wrote", &c_s3fs),
    ] {
        cases.extend([
            syscall(
                &format!("O_EXCL create on a {kind}"),
                libc::EEXIST,
                "create-excl",
                &[existing],
            ),
            case(
                &format!("mkdir on a {kind}"),
                libc::EEXIST,
                &["mkdir", existing],
            ),
            case(
                &format!("mkfifo on a {kind}"),
                libc::EEXIST,
                &["mkfifo", existing],
            ),
            case(
                &format!("mknod of a character device on a {kind}"),
                libc::EEXIST,
                &["mknod", existing, "c", "1", "3"],
            ),
            case(
                &format!("symlink on a {kind}"),
                libc::EEXIST,
                &["ln", "-sT", "f", existing],
            ),
        ]);
    }
    check_all(&cases, run_as_root, &mount);
    assert_eq!(
        bucket.list_keys(""),
        keys_before,
        "a failed call changed the bucket"
    );
}

/// Ownership and permissions, as an unprivileged user on an `--allow-other`
/// mount: the kernel decides from the attributes bucketfs reports, and
/// bucketfs keeps the mode the kernel sends when it clears set-id bits.
#[test]
fn who_may_change_what_is_decided_by_owner_mode_and_sticky_bit() {
    let bucket = Bucket::new(ServerKind::Moto);
    let user = TestUser::create();
    let mount = bucket.mount(&["--allow-other"]);
    let_others_reach(mount.path());
    let at = |name: &str| path_str(&mount.join(name));
    let chmod = |name: &str, mode: u32| {
        std::fs::set_permissions(mount.join(name), std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|error| panic!("chmod {mode:o} {name}: {error}"))
    };
    let chown_to_user = |name: &str| {
        std::os::unix::fs::chown(mount.join(name), Some(user.uid), Some(user.uid))
            .unwrap_or_else(|error| panic!("chown {name}: {error}"))
    };
    let as_user = |argv: &[String]| {
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        user.run(&argv[0], &args)
    };

    // Sticky, root's: only root's own files are safe from the user.
    std::fs::create_dir(mount.join("sticky")).expect("mkdir sticky");
    chmod("sticky", 0o1777);
    std::fs::write(mount.join("sticky/roots"), "").expect("create");
    chmod("sticky/roots", 0o666);
    // Sticky, the user's: the directory's owner may remove root's file.
    std::fs::create_dir(mount.join("users-sticky")).expect("mkdir users-sticky");
    chown_to_user("users-sticky");
    chmod("users-sticky", 0o1755);
    std::fs::write(mount.join("users-sticky/roots"), "").expect("create");
    // Not sticky: anyone who may write the directory may remove from it.
    std::fs::create_dir(mount.join("open")).expect("mkdir open");
    chmod("open", 0o777);
    std::fs::write(mount.join("open/roots"), "").expect("create");
    // Root's files the user may write, may only read, and set-id files.
    std::fs::write(mount.join("writable"), "").expect("create");
    chmod("writable", 0o666);
    std::fs::write(mount.join("readonly"), "readonly\n").expect("create");
    chmod("readonly", 0o644);
    std::fs::write(mount.join("setid-written"), "").expect("create");
    chmod("setid-written", 0o6777);
    std::fs::write(mount.join("setid-truncated"), "old").expect("create");
    chmod("setid-truncated", 0o6777);
    std::fs::write(mount.join("setid-chowned"), "").expect("create");
    chown_to_user("setid-chowned");
    chmod("setid-chowned", 0o6755);
    // The special bits are stored, or the cases below would prove nothing.
    for (key, mode) in [
        ("sticky/", 0o1777),
        ("users-sticky/", 0o1755),
        ("setid-written", 0o6777),
        ("setid-truncated", 0o6777),
        ("setid-chowned", 0o6755),
    ] {
        let stored = bucket.metadata(key);
        let stored_mode: Option<u32> = stored.get("mode").and_then(|mode| mode.parse().ok());
        assert_eq!(
            stored_mode.map(|m| m & 0o7777),
            Some(mode),
            "{key}: {stored:?}"
        );
    }

    let cases = vec![
        case(
            "unlink of root's file in a sticky directory",
            libc::EPERM,
            &["unlink", &at("sticky/roots")],
        ),
        syscall(
            "rename of root's file in a sticky directory",
            libc::EPERM,
            "rename",
            &[&at("sticky/roots"), &at("sticky/moved")],
        ),
        case(
            "chmod of root's file",
            libc::EPERM,
            &["chmod", "600", &at("writable")],
        ),
        case(
            "chown of root's file",
            libc::EPERM,
            &["chown", &user.name, &at("writable")],
        ),
        case(
            "utimensat with a time on root's file",
            libc::EPERM,
            &["touch", "-d", "2001-02-03 04:05:06", &at("writable")],
        ),
        case(
            "utimensat to now on root's read-only file",
            libc::EACCES,
            &["touch", &at("readonly")],
        ),
        case(
            "write to root's read-only file",
            libc::EACCES,
            &["sh", "-c", &format!("echo x >> '{}'", at("readonly"))],
        ),
    ];
    check_all(&cases, as_user, &mount);

    // What the user may do, so that the failures above are the kernel's
    // rules and not a mount that refuses everything.
    for argv in [
        vec!["touch".to_owned(), at("sticky/mine")],
        vec![
            "mv".to_owned(),
            "-T".to_owned(),
            at("sticky/mine"),
            at("sticky/moved"),
        ],
        vec!["unlink".to_owned(), at("sticky/moved")],
        vec!["unlink".to_owned(), at("users-sticky/roots")],
        vec!["unlink".to_owned(), at("open/roots")],
        vec!["touch".to_owned(), at("writable")],
        vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!("echo x >> '{}'", at("setid-written")),
        ],
        vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!(": > '{}'", at("setid-truncated")),
        ],
        vec![
            "chown".to_owned(),
            format!("{0}:{0}", user.name),
            at("setid-chowned"),
        ],
    ] {
        let (succeeded, stderr) = as_user(&argv);
        assert!(succeeded, "{argv:?} as the user: {stderr}");
    }
    let keys = bucket.list_keys("");
    for gone in ["sticky/moved", "users-sticky/roots", "open/roots"] {
        assert!(!keys.contains(gone), "{gone} still in the bucket: {keys:?}");
    }
    assert!(keys.contains("sticky/roots"), "{keys:?}");

    // Set-user-ID and set-group-ID go when a user other than root writes,
    // truncates or chowns a file: for a write or a chown the kernel sends a
    // setattr with the new mode; a truncating open (`: > f`) it hands to us
    // whole (FUSE_ATOMIC_O_TRUNC), so open clears them. Both the kernel's
    // view and the object agree.
    for (name, expected) in [
        ("setid-written", 0o777),
        ("setid-truncated", 0o777),
        ("setid-chowned", 0o755),
    ] {
        let mode = std::fs::metadata(mount.join(name)).expect("stat").mode();
        assert_eq!(mode & 0o7777, expected, "{name}: {mode:o}");
        let stored = bucket.metadata(name);
        assert_eq!(
            stored.get("mode").map(String::as_str),
            Some((libc::S_IFREG | expected).to_string().as_str()),
            "{name}: {stored:?}"
        );
    }
}
