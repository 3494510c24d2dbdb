//! Credentials in logs and who may enter a mount (issue 10, section 6).

mod common;
mod daemon_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::users::{TestUser, let_others_reach};
use common::{
    Bucket, DaemonGuard, SECRET_KEY, ServerKind, free_port, run_daemonized, run_with_timeout,
};
use daemon_support::Daemon;

/// Every crate at trace, named too where a less specific default would not
/// reach it (bucketfs caps fuser at warn unless told otherwise).
const TRACE_EVERYTHING: &str = "trace,fuser=trace,aws_sigv4=trace,aws_smithy_runtime=trace,aws_config=trace,hyper=trace,\
     hyper_util=trace,h2=trace,rustls=trace";

/// Passed as AWS_SESSION_TOKEN: moto checks no signature, so it accepts it.
const SESSION_TOKEN: &str = "bucketfs-test-session-token-SECRET-0001";

/// The password in an endpoint URL's userinfo.
const ENDPOINT_PASSWORD: &str = "endpoint-pw-SECRET-0002";

/// What may not appear in any log line, compared without case: the secrets,
/// the signature algorithm every Authorization header value starts with,
/// and the query parameters of presigned URLs.
fn assert_no_credentials(log: &str) {
    let lower = log.to_ascii_lowercase();
    for forbidden in [
        SECRET_KEY,
        SESSION_TOKEN,
        ENDPOINT_PASSWORD,
        "AWS4-HMAC-SHA256",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "Signature=",
    ] {
        assert!(
            !lower.contains(&forbidden.to_ascii_lowercase()),
            "the log shows {forbidden:?}:\n{}",
            log.lines()
                .filter(|line| line
                    .to_ascii_lowercase()
                    .contains(&forbidden.to_ascii_lowercase()))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(
        !lower.contains("authorization: ") && !lower.contains("\"authorization\": \"aws"),
        "the log shows an Authorization header"
    );
}

/// RUST_LOG=trace, every crate included, over a mount, a read, a write and
/// failed requests (a missing key; then the store gone).
#[test]
fn a_trace_log_shows_no_secret_key_token_or_signature() {
    let mut bucket = Bucket::new(ServerKind::Moto);
    bucket.put("present.txt", "present\n");
    let env = [
        ("RUST_LOG", Some(TRACE_EVERYTHING)),
        ("AWS_SESSION_TOKEN", Some(SESSION_TOKEN)),
    ];
    let args = ["--max-attempts", "1", "--request-timeout", "2"];
    let daemon = Daemon::start(&bucket.target(), &bucket.name, &args, &env);
    assert_eq!(
        std::fs::read_to_string(daemon.join("present.txt")).expect("read"),
        "present\n"
    );
    std::fs::write(daemon.join("written.txt"), "written\n").expect("write");
    assert_eq!(bucket.get("written.txt"), b"written\n");
    assert!(std::fs::metadata(daemon.join("missing.txt")).is_err());
    bucket.server.stop();
    assert!(std::fs::read_dir(daemon.join("nowhere")).is_err());
    let log = daemon.log();
    drop(daemon);
    // No crate in the tree emits `log` records at trace level today; fuser's
    // per-request debug lines show that the filter let everything through.
    assert!(
        log.contains("fuser::request"),
        "not a trace-level log:\n{}",
        common::tail(&log, 20)
    );
    assert_no_credentials(&log);
}

/// A password in the endpoint URL is masked in start-up errors and in the
/// mount's own log lines.
#[test]
fn an_endpoint_password_never_reaches_stderr_or_the_log() {
    // Nobody listens: the start-up check fails and says where it tried.
    let unreachable = common::S3Target {
        endpoint_url: format!("http://user:{ENDPOINT_PASSWORD}@127.0.0.1:{}", free_port()),
        access_key: common::ACCESS_KEY.to_owned(),
        secret_key: SECRET_KEY.to_owned(),
    };
    let guard = DaemonGuard::new();
    let run = run_daemonized(
        &unreachable,
        "bucketfs-test",
        guard.path(),
        &["--max-attempts", "1", "--request-timeout", "2"],
        Duration::from_secs(60),
    );
    assert!(
        !run.status.is_some_and(|status| status.success()),
        "{}",
        run.describe()
    );
    assert!(run.stderr.contains("127.0.0.1"), "{}", run.describe());
    assert_no_credentials(&run.stderr);
    drop(guard);

    // A live server behind the same kind of URL, with everything logged.
    let bucket = Bucket::new(ServerKind::Moto);
    let target = common::S3Target {
        endpoint_url: format!(
            "http://user:{ENDPOINT_PASSWORD}@127.0.0.1:{}",
            bucket.server.port()
        ),
        ..bucket.target()
    };
    let logs = tempfile::tempdir().expect("log dir");
    let log_file = logs.path().join("bucketfs.log");
    let guard = DaemonGuard::new();
    let mut cmd = common::bucketfs_command(
        &target,
        &bucket.name,
        guard.path(),
        &["--log-file", log_file.to_str().expect("utf-8")],
    );
    cmd.env("RUST_LOG", TRACE_EVERYTHING);
    let run = run_with_timeout(&mut cmd, Duration::from_secs(60));
    let _ = std::fs::read_dir(guard.path());
    common::unmount_quietly(guard.path());
    let _ = guard.wait_daemons_gone(Duration::from_secs(10));
    assert_no_credentials(&run.stderr_str());
    let log = common::read_lossy(&log_file);
    assert!(log.contains("fuser::request"), "{}", common::tail(&log, 20));
    assert_no_credentials(&log);
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn other_users_enter_a_mount_only_as_allowed_and_the_kernel_checks_modes() {
    let bucket = Bucket::new(ServerKind::Moto);
    let user = TestUser::create();
    let uid = user.uid.to_string();
    bucket.put_with_metadata(
        "root-only.txt",
        "root\n",
        &[("mode", "33152"), ("uid", "0"), ("gid", "0")], // S_IFREG | 0600
    );
    bucket.put_with_metadata(
        "theirs.txt",
        "theirs\n",
        &[("mode", "33152"), ("uid", &uid), ("gid", &uid)],
    );
    bucket.put("public.txt", "public\n");
    // Group bits decide for a member of the file's group, even where the
    // bits for others would allow more.
    let gid = user.gid.to_string();
    bucket.put_with_metadata(
        "group-reads.txt",
        "group\n",
        &[("mode", "33184"), ("uid", "0"), ("gid", &gid)], // S_IFREG | 0640
    );
    bucket.put_with_metadata(
        "group-denied.txt",
        "others only\n",
        &[("mode", "33156"), ("uid", "0"), ("gid", &gid)], // S_IFREG | 0604
    );

    // Without --allow-other the kernel turns every other user away.
    {
        let daemon = Daemon::start(&bucket.target(), &bucket.name, &[], &[]);
        let_others_reach(daemon.path());
        let (entered, stderr) = user.run("ls", &[path_str(daemon.path())]);
        assert!(!entered, "another user listed the mount");
        assert!(stderr.contains("Permission denied"), "{stderr}");
        let (read, _) = user.run("cat", &[path_str(&daemon.join("public.txt"))]);
        assert!(!read, "another user read a file of the mount");
    }

    // With it, mode, owner and group decide (default_permissions).
    {
        let daemon = Daemon::start(&bucket.target(), &bucket.name, &["--allow-other"], &[]);
        let_others_reach(daemon.path());
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let line = mountinfo
            .lines()
            .find(|line| line.contains(path_str(daemon.path())))
            .expect("the mount in mountinfo");
        assert!(line.contains("default_permissions"), "{line}");
        assert!(line.contains("allow_other"), "{line}");
        let mode = std::fs::metadata(daemon.path())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let (listed, stderr) = user.run("ls", &[path_str(daemon.path())]);
        assert!(listed, "{stderr}");
        let (read, stderr) = user.run("cat", &[path_str(&daemon.join("public.txt"))]);
        assert!(read, "0644 file: {stderr}");
        let (read, stderr) = user.run("cat", &[path_str(&daemon.join("theirs.txt"))]);
        assert!(read, "0600 file of theirs: {stderr}");
        let (read, stderr) = user.run("cat", &[path_str(&daemon.join("root-only.txt"))]);
        assert!(
            !read && stderr.contains("Permission denied"),
            "0600 file of root's: {stderr}"
        );
        let (read, stderr) = user.run("cat", &[path_str(&daemon.join("group-reads.txt"))]);
        assert!(read, "0640 file of root's, in the user's group: {stderr}");
        let (read, stderr) = user.run("cat", &[path_str(&daemon.join("group-denied.txt"))]);
        assert!(
            !read && stderr.contains("Permission denied"),
            "0604 file of root's, in the user's group (no group bits): {stderr}"
        );
        let (wrote, stderr) = user.run("touch", &[path_str(&daemon.join("new.txt"))]);
        assert!(
            !wrote && stderr.contains("Permission denied"),
            "created a file in root's 0755 directory: {stderr}"
        );
        assert!(!bucket.list_keys("").contains("new.txt"));
        let (wrote, stderr) = user.run(
            "sh",
            &[
                "-c",
                &format!("echo x >> {}", path_str(&daemon.join("public.txt"))),
            ],
        );
        assert!(!wrote, "wrote to root's 0644 file: {stderr}");
        assert_eq!(bucket.get("public.txt"), b"public\n");
    }
}

/// `--allow-root` as its users need it: an unprivileged user mounts, and
/// root (a backup job, say) must get in. Without the option the kernel
/// turns root away from another user's FUSE mount like anyone else; with it
/// root gets in and other users still do not.
#[test]
fn allow_root_lets_root_into_a_mount_an_unprivileged_user_made() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("public.txt", "public\n");
    let owner = TestUser::create();
    let other = TestUser::create();
    // fusermount3 refuses allow_root to users unless fuse.conf allows it.
    let _conf = FuseConf::with_user_allow_other();
    // Debian's udev makes /dev/fuse 0666; a container may leave it 0600.
    let _device = WorldUsable::set(Path::new("/dev/fuse"));

    {
        let mount = Daemon::start_as(&owner, &bucket.target(), &bucket.name, &[]);
        let (read, stderr) = owner.run("cat", &[path_str(&mount.join("public.txt"))]);
        assert!(
            read,
            "the owner reads its own mount: {stderr}\n{}",
            mount.log()
        );
        let refused = std::fs::read(mount.join("public.txt"))
            .expect_err("root read a user's mount made without --allow-root");
        assert_eq!(refused.raw_os_error(), Some(libc::EACCES), "{refused}");
    }
    {
        let mount = Daemon::start_as(&owner, &bucket.target(), &bucket.name, &["--allow-root"]);
        assert_eq!(
            std::fs::read_to_string(mount.join("public.txt"))
                .unwrap_or_else(|e| panic!("root reads with --allow-root: {e}\n{}", mount.log())),
            "public\n"
        );
        let (read, stderr) = owner.run("cat", &[path_str(&mount.join("public.txt"))]);
        assert!(read, "the owner reads its own mount: {stderr}");
        let (read, stderr) = other.run("cat", &[path_str(&mount.join("public.txt"))]);
        assert!(
            !read && stderr.contains("Permission denied"),
            "a third user read an --allow-root mount: {stderr}"
        );
    }
}

/// /etc/fuse.conf with `user_allow_other`, as it was again afterwards.
struct FuseConf {
    before: Option<Vec<u8>>,
}

impl FuseConf {
    const PATH: &'static str = "/etc/fuse.conf";

    fn with_user_allow_other() -> FuseConf {
        let before = std::fs::read(Self::PATH).ok();
        let text = String::from_utf8_lossy(before.as_deref().unwrap_or_default()).into_owned();
        let allowed = text.lines().any(|line| line.trim() == "user_allow_other");
        if !allowed {
            std::fs::write(Self::PATH, format!("{text}\nuser_allow_other\n"))
                .expect("write /etc/fuse.conf");
        }
        FuseConf { before }
    }
}

impl Drop for FuseConf {
    fn drop(&mut self) {
        let _ = match &self.before {
            Some(bytes) => std::fs::write(Self::PATH, bytes),
            None => std::fs::remove_file(Self::PATH),
        };
    }
}

/// A file made usable by everyone (mode 0666), its mode restored afterwards.
struct WorldUsable {
    path: std::path::PathBuf,
    mode: u32,
}

impl WorldUsable {
    fn set(path: &Path) -> WorldUsable {
        let mode = std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o7777;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o666))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        WorldUsable {
            path: path.to_owned(),
            mode,
        }
    }
}

impl Drop for WorldUsable {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(self.mode));
    }
}

/// An S3 endpoint of a few lines that lists one directory, `bad/`, whose
/// only key is not UTF-8: `ObjectStore` keys are `String`, so such a key
/// cannot reach the filesystem; what matters is what the mount does instead.
struct NonUtf8Store {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NonUtf8Store {
    fn start() -> NonUtf8Store {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let line = line.lines().next().unwrap_or("");
                let body: Vec<u8> = if !line.starts_with("GET") || !line.contains("list-type=2") {
                    Vec::new()
                } else if line.contains("prefix=bad%2F") {
                    let mut body = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>b</Name><Prefix>bad/</Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated><Contents><Key>bad/".to_vec();
                    body.extend_from_slice(b"\xff\xfe.txt");
                    body.extend_from_slice(b"</Key><Size>1</Size><ETag>\"e\"</ETag><LastModified>2024-01-01T00:00:00.000Z</LastModified></Contents></ListBucketResult>");
                    body
                } else {
                    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>b</Name><Prefix></Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys><Delimiter>/</Delimiter><IsTruncated>false</IsTruncated><CommonPrefixes><Prefix>bad/</Prefix></CommonPrefixes></ListBucketResult>".to_vec()
                };
                let status = if line.starts_with("GET") && !body.is_empty() {
                    "200 OK"
                } else {
                    "404 Not Found"
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                if !line.starts_with("HEAD") {
                    let _ = stream.write_all(&body);
                }
            }
        });
        NonUtf8Store {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NonUtf8Store {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A listing with a key that is not UTF-8 fails that directory with EIO
/// (the SDK rejects the response whole); the mount and its other
/// directories carry on.
#[test]
fn a_key_that_is_not_utf8_fails_its_directory_and_nothing_else() {
    let store = NonUtf8Store::start();
    let target = common::S3Target {
        endpoint_url: format!("http://127.0.0.1:{}", store.port),
        access_key: common::ACCESS_KEY.to_owned(),
        secret_key: SECRET_KEY.to_owned(),
    };
    let args = ["--metadata-ttl", "60", "--max-attempts", "1"];
    let daemon = Daemon::start(&target, "b", &args, &[]);
    let root: Vec<_> = std::fs::read_dir(daemon.path())
        .expect("list the root")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(root, ["bad"]);
    let error = std::fs::read_dir(daemon.join("bad"))
        .and_then(|entries| entries.collect::<Result<Vec<_>, _>>())
        .expect_err("a listing the SDK cannot parse");
    assert_eq!(error.raw_os_error(), Some(libc::EIO), "{error}");
    assert!(
        std::fs::read_dir(daemon.path()).is_ok(),
        "the mount survives"
    );
    assert!(daemon.log().contains("invalid utf-8"), "{}", daemon.log());
}
