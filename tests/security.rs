//! Credentials in logs and who may enter a mount (issue 10, section 6).

mod common;
mod daemon_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

/// A user made for one test, removed with its group afterwards.
struct TestUser {
    name: String,
    uid: u32,
}

impl TestUser {
    fn create() -> TestUser {
        let name = format!("bfs{}", std::process::id());
        let useradd = run_with_timeout(
            Command::new("useradd")
                .args(["--no-create-home", "--user-group", "--shell", "/bin/sh"])
                .arg(&name),
            Duration::from_secs(30),
        );
        assert!(
            useradd.success(),
            "this test needs useradd (shadow-utils/passwd) to create an unprivileged user: {}",
            useradd.describe()
        );
        let id = run_with_timeout(
            Command::new("id").args(["-u", &name]),
            Duration::from_secs(10),
        );
        let uid = id.stdout_str().trim().parse().expect("uid");
        TestUser { name, uid }
    }

    /// Runs `program args` as this user; whether it succeeded, and stderr.
    fn run(&self, program: &str, args: &[&str]) -> (bool, String) {
        let out = run_with_timeout(
            Command::new("runuser")
                .args(["-u", &self.name, "--", program])
                .args(args),
            Duration::from_secs(30),
        );
        (out.success(), out.stderr_str())
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
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

    // Without --allow-other the kernel turns every other user away.
    {
        let daemon = Daemon::start(&bucket.target(), &bucket.name, &[], &[]);
        let (entered, stderr) = user.run("ls", &[path_str(daemon.path())]);
        assert!(!entered, "another user listed the mount");
        assert!(stderr.contains("Permission denied"), "{stderr}");
        let (read, _) = user.run("cat", &[path_str(&daemon.join("public.txt"))]);
        assert!(!read, "another user read a file of the mount");
    }

    // With it, mode, owner and group decide (default_permissions).
    {
        let daemon = Daemon::start(&bucket.target(), &bucket.name, &["--allow-other"], &[]);
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

    // --allow-root: the owner (root here) and root get in, nobody else.
    {
        let daemon = Daemon::start(&bucket.target(), &bucket.name, &["--allow-root"], &[]);
        assert_eq!(
            std::fs::read_to_string(daemon.join("public.txt")).expect("root reads"),
            "public\n"
        );
        let (entered, stderr) = user.run("cat", &[path_str(&daemon.join("public.txt"))]);
        assert!(
            !entered,
            "another user read a file of an --allow-root mount"
        );
        assert!(stderr.contains("Permission denied"), "{stderr}");
    }
}
