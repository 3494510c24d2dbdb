//! Harness for the mount tests: a real S3 server on a loopback port, an
//! independent S3 client that creates the objects, and the `bucketfs` binary
//! mounted for real at a temporary directory.
//!
//! Everything a test starts is owned by a guard whose `Drop` stops it, so a
//! failing (panicking) test still kills its server, unmounts and reaps its
//! daemon:
//!
//! - [`S3Server`]: `moto_server` or the patched `s3s-fs`, each on its own free
//!   port so parallel tests never share state. A missing server binary is a
//!   test failure that names `scripts/setup-test-deps.sh`, never a skip.
//! - [`Bucket`]: a server plus one bucket and a client built straight from
//!   aws-sdk-s3 (never through bucketfs), with blocking helpers.
//! - [`Mount`]: `bucketfs -f` as a child process, its stderr in a file that is
//!   printed when the test fails. A watchdog kills the daemon if the test runs
//!   past [`MOUNT_WATCHDOG`], so a hung FUSE request turns into ENOTCONN and a
//!   failure instead of a hung suite.
//! - [`DaemonGuard`] + [`run_daemonized`]: the daemonizing command line (no
//!   `-f`) exactly as a user types it, and cleanup of whatever it left behind.
//!
//! The binary under test is never asked for anything but its command line,
//! so these tests hold whatever the implementation does inside.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

pub mod core;
pub mod fault_proxy;
pub mod s3fs;
pub mod users;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::StreamExt;
use tempfile::TempDir;

/// Credentials every test server accepts. moto accepts any pair; s3s-fs is
/// started with exactly these, so a different secret must fail.
pub const ACCESS_KEY: &str = "AKIABUCKETFSTEST0001";
pub const SECRET_KEY: &str = "bucketfs-test-secret-key-0001";
/// moto and s3s-fs both serve any region; the CLI contract still wants one.
pub const REGION: &str = "us-east-1";
/// The bucket [`Bucket::new`] creates. S3 wants at least 3 characters.
pub const BUCKET: &str = "bucketfs-test";

const SETUP_HINT: &str = "run scripts/setup-test-deps.sh to install it";

/// The brief: a mount must be live within 20 s or the test fails.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);
/// moto_server is a Python process; on a loaded 2-core machine it has been
/// seen to need several seconds before it answers.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(60);
/// After unmount the daemon has flushed nothing (these are read tests), so
/// it should be gone almost at once; 10 s allows a slow machine.
const DAEMON_EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on one test's life with a mount. The slowest test (a 256 MiB
/// object through moto) takes about a minute; beyond this we assume a hang.
pub const MOUNT_WATCHDOG: Duration = Duration::from_secs(600);
/// Default bound on one shell tool run against a mount.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// moto: forgiving about keys and metadata, checks no signature.
    Moto,
    /// s3s-fs (patched): checks signatures; stores objects as files, so keys
    /// must also be valid relative paths.
    S3sFs,
}

/// Where a mount or a client points: an endpoint and a key pair.
#[derive(Clone, Debug)]
pub struct S3Target {
    pub endpoint_url: String,
    pub access_key: String,
    pub secret_key: String,
}

/// A running S3 server; `Drop` kills it and waits for it.
pub struct S3Server {
    kind: ServerKind,
    child: Child,
    port: u16,
    /// Holds the server log and, for s3s-fs, its data directory.
    dir: TempDir,
}

impl S3Server {
    pub fn start(kind: ServerKind) -> S3Server {
        let program = match kind {
            ServerKind::Moto => locate_moto(),
            ServerKind::S3sFs => locate_s3s_fs(),
        };
        // A free port can be taken by someone else between our probe and the
        // server's bind; a retry with a fresh port covers that race.
        let mut last_failure = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("bucketfs-server-")
                .tempdir()
                .expect("create server temp dir");
            let port = free_port();
            let log_path = dir.path().join("server.log");
            let log = File::create(&log_path).expect("create server log");
            if kind == ServerKind::S3sFs {
                std::fs::create_dir(dir.path().join("data")).expect("create s3s-fs root");
            }
            let mut cmd = server_command(kind, &program, port, dir.path());
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log);
            let child = cmd.spawn().unwrap_or_else(|e| {
                panic!("cannot start {}: {e}; {SETUP_HINT}", program.display())
            });
            let mut server = S3Server {
                kind,
                child,
                port,
                dir,
            };
            match server.wait_until_answering() {
                Ok(()) => return server,
                Err(why) => {
                    last_failure = format!(
                        "{} on port {port}: {why}\n--- server log ---\n{}",
                        program.display(),
                        read_lossy(&log_path)
                    );
                    // Drop kills it; try again on another port.
                }
            }
        }
        panic!("test S3 server did not start: {last_failure}");
    }

    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// Kills the server, as a crashed or unreachable store would be.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes the server (SIGSTOP): connections still open at the TCP level
    /// but nothing answers, as with a black-holed endpoint.
    pub fn pause(&self) {
        assert!(
            signal_server(&self.child, libc::SIGSTOP),
            "cannot pause the server"
        );
    }

    /// Lets a paused server answer again (SIGCONT).
    pub fn resume(&self) {
        assert!(
            signal_server(&self.child, libc::SIGCONT),
            "cannot resume the server"
        );
    }

    /// Starts the server again on the same port. Only s3s-fs keeps its
    /// objects (on disk) across a restart.
    pub fn restart(&mut self) {
        self.stop();
        let program = match self.kind {
            ServerKind::Moto => locate_moto(),
            ServerKind::S3sFs => locate_s3s_fs(),
        };
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("open server log");
        let mut cmd = server_command(self.kind, &program, self.port, self.dir.path());
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        self.child = cmd.spawn().expect("restart server");
        self.wait_until_answering()
            .expect("restarted server answers");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn target(&self) -> S3Target {
        S3Target {
            endpoint_url: self.endpoint_url(),
            access_key: ACCESS_KEY.to_string(),
            secret_key: SECRET_KEY.to_string(),
        }
    }

    pub fn client(&self) -> Client {
        s3_client(&self.target())
    }

    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("server.log"))
    }

    /// Any HTTP answer counts: s3s-fs answers an unsigned `GET /` with 403.
    fn wait_until_answering(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("exited early with {status}"));
            }
            if http_answers(addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no HTTP answer within {SERVER_START_TIMEOUT:?}"));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

fn server_command(kind: ServerKind, program: &Path, port: u16, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    match kind {
        ServerKind::Moto => {
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        }
        ServerKind::S3sFs => {
            cmd.args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
            ])
            .arg(dir.join("data"));
        }
    }
    cmd
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too; CONT first so that nothing it
        // started stays frozen.
        let _ = signal_server(&self.child, libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "--- {:?} server log (port {}), tail ---\n{}",
                self.kind,
                self.port,
                tail(&self.log(), 40)
            );
        }
    }
}

/// Whether the signal reached the server. Sent with kill(2) rather than by
/// running kill(1): a spawned process closes its copies of the test's file
/// descriptors at exec, and on a FUSE mount each of those closes is a FLUSH,
/// which uploads every file the test holds open (so a "dirty" file was
/// clean by the time the server stopped).
fn signal_server(child: &Child, signal: libc::c_int) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions. The pid is our
    // child's, which only `stop` reaps (and `restart` replaces).
    unsafe { libc::kill(child.id() as libc::pid_t, signal) == 0 }
}

fn http_answers(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// A port nobody listens on right now (the kernel's pick for port 0).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

fn home_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
}

fn locate_moto() -> PathBuf {
    if let Some(path) = std::env::var_os("BUCKETFS_TEST_MOTO") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "BUCKETFS_TEST_MOTO={} does not exist; {SETUP_HINT}",
            path.display()
        );
        return path;
    }
    let cached = home_dir().join(".cache/bucketfs-test/venv/bin/moto_server");
    if cached.is_file() {
        return cached;
    }
    if let Some(found) = find_on_path("moto_server") {
        return found;
    }
    panic!(
        "moto_server not found (checked $BUCKETFS_TEST_MOTO, {}, $PATH); {SETUP_HINT}",
        cached.display()
    );
}

fn locate_s3s_fs() -> PathBuf {
    if let Some(path) = std::env::var_os("BUCKETFS_TEST_S3S_FS") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "BUCKETFS_TEST_S3S_FS={} does not exist; {SETUP_HINT}",
            path.display()
        );
        return path;
    }
    let cached = home_dir().join(".cache/bucketfs-test/s3s-fs-patched-2/target/release/s3s-fs");
    assert!(
        cached.is_file(),
        "patched s3s-fs not found (checked $BUCKETFS_TEST_S3S_FS, {}); {SETUP_HINT}",
        cached.display()
    );
    cached
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

// ---------------------------------------------------------------------------
// The independent client
// ---------------------------------------------------------------------------

/// An S3 client built from aws-sdk-s3 alone: no profile, no environment.
pub fn s3_client(target: &S3Target) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .endpoint_url(&target.endpoint_url)
        .force_path_style(true)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            &target.access_key,
            &target.secret_key,
            None,
            None,
            "bucketfs-tests",
        ))
        // Newer SDKs add CRC32 trailers (aws-chunked bodies) by default; the
        // test servers need not support them to serve bucketfs, so keep the
        // independent client to plain bodies.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Client::from_conf(config)
}

/// One server with one bucket, and blocking helpers around the client.
pub struct Bucket {
    pub name: String,
    client: Client,
    pub server: S3Server,
    // Last: the client's connection pool may still hold tasks on it.
    rt: tokio::runtime::Runtime,
}

impl Bucket {
    /// Starts a server of `kind` and creates [`BUCKET`] on it.
    pub fn new(kind: ServerKind) -> Bucket {
        let server = S3Server::start(kind);
        let client = server.client();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(client.create_bucket().bucket(BUCKET).send())
            .unwrap_or_else(|e| panic!("create bucket {BUCKET}: {}", sdk_error(&e)));
        Bucket {
            name: BUCKET.to_string(),
            client,
            server,
            rt,
        }
    }

    pub fn target(&self) -> S3Target {
        self.server.target()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    pub fn put(&self, key: &str, body: impl Into<Bytes>) {
        self.put_with_metadata(key, body, &[]);
    }

    /// `metadata` pairs become `x-amz-meta-<name>` headers.
    pub fn put_with_metadata(&self, key: &str, body: impl Into<Bytes>, metadata: &[(&str, &str)]) {
        let body: Bytes = body.into();
        let mut request = self
            .client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .body(ByteStream::from(body));
        for (name, value) in metadata {
            request = request.metadata(*name, *value);
        }
        self.rt
            .block_on(request.send())
            .unwrap_or_else(|e| panic!("put {key:?}: {}", sdk_error(&e)));
    }

    /// Multipart upload in `part_size` pieces, up to 4 parts in flight.
    pub fn put_multipart(&self, key: &str, body: Bytes, part_size: usize) {
        let client = &self.client;
        let bucket = &self.name;
        self.rt.block_on(async {
            let upload = client
                .create_multipart_upload()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("create multipart {key:?}: {}", sdk_error(&e)));
            let upload_id = upload.upload_id().expect("upload id").to_string();
            let parts: Vec<(i32, Bytes)> = (0..body.len().div_ceil(part_size))
                .map(|i| {
                    let end = ((i + 1) * part_size).min(body.len());
                    (i as i32 + 1, body.slice(i * part_size..end))
                })
                .collect();
            let mut completed: Vec<CompletedPart> = futures::stream::iter(parts)
                .map(|(number, chunk)| {
                    let upload_id = upload_id.clone();
                    async move {
                        let out = client
                            .upload_part()
                            .bucket(bucket)
                            .key(key)
                            .upload_id(upload_id)
                            .part_number(number)
                            .body(ByteStream::from(chunk))
                            .send()
                            .await
                            .unwrap_or_else(|e| {
                                panic!("upload part {number} of {key:?}: {}", sdk_error(&e))
                            });
                        CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(out.e_tag().map(str::to_string))
                            .build()
                    }
                })
                .buffer_unordered(4)
                .collect()
                .await;
            completed.sort_by_key(|part| part.part_number());
            client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(completed))
                        .build(),
                )
                .send()
                .await
                .unwrap_or_else(|e| panic!("complete multipart {key:?}: {}", sdk_error(&e)));
        });
    }

    /// Puts many small objects with at most `concurrency` requests in flight.
    pub fn put_many(&self, objects: Vec<(String, Bytes)>, concurrency: usize) {
        let client = &self.client;
        let bucket = &self.name;
        self.rt.block_on(async {
            futures::stream::iter(objects)
                .map(|(key, body)| async move {
                    client
                        .put_object()
                        .bucket(bucket)
                        .key(&key)
                        .body(ByteStream::from(body))
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("put {key:?}: {}", sdk_error(&e)));
                })
                .buffer_unordered(concurrency)
                .collect::<Vec<()>>()
                .await;
        });
    }

    /// The requests in the server's log that may change the bucket (PUT,
    /// POST, DELETE), as logged: for tests that count what one change cost.
    pub fn changing_requests(&self) -> Vec<String> {
        self.server
            .log()
            .lines()
            .filter(|line| {
                ["\"PUT /", "\"POST /", "\"DELETE /"]
                    .iter()
                    .any(|verb| line.contains(verb))
            })
            .map(str::to_string)
            .collect()
    }

    /// Every key under `prefix`, as the server reports it (for preconditions:
    /// a test about odd keys first checks the server stored them verbatim).
    pub fn list_keys(&self, prefix: &str) -> BTreeSet<String> {
        self.rt.block_on(async {
            let mut keys = BTreeSet::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.name)
                .prefix(prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.unwrap_or_else(|e| panic!("list {prefix:?}: {}", sdk_error(&e)));
                for object in page.contents() {
                    keys.insert(object.key().expect("listed key").to_string());
                }
            }
            keys
        })
    }

    pub fn get(&self, key: &str) -> Vec<u8> {
        self.rt.block_on(async {
            let out = self
                .client
                .get_object()
                .bucket(&self.name)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get {key:?}: {}", sdk_error(&e)));
            out.body.collect().await.expect("read body").to_vec()
        })
    }

    /// The object's user metadata (`x-amz-meta-*`, names without the prefix).
    pub fn metadata(&self, key: &str) -> std::collections::HashMap<String, String> {
        let out = self
            .rt
            .block_on(self.client.head_object().bucket(&self.name).key(key).send())
            .unwrap_or_else(|e| panic!("head {key:?}: {}", sdk_error(&e)));
        out.metadata().cloned().unwrap_or_default()
    }

    /// `put` with a Content-Type, as a tool other than bucketfs would set it.
    pub fn put_with_content_type(&self, key: &str, body: impl Into<Bytes>, content_type: &str) {
        let body: Bytes = body.into();
        let request = self
            .client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body));
        self.rt
            .block_on(request.send())
            .unwrap_or_else(|e| panic!("put {key:?}: {}", sdk_error(&e)));
    }

    /// The object's Content-Type and ETag, as HEAD reports them.
    pub fn content_type_and_etag(&self, key: &str) -> (Option<String>, String) {
        let out = self
            .rt
            .block_on(self.client.head_object().bucket(&self.name).key(key).send())
            .unwrap_or_else(|e| panic!("head {key:?}: {}", sdk_error(&e)));
        (
            out.content_type().map(str::to_string),
            out.e_tag().unwrap_or_default().to_string(),
        )
    }

    /// The object's Content-Type, as HEAD reports it.
    pub fn content_type(&self, key: &str) -> Option<String> {
        self.content_type_and_etag(key).0
    }

    /// LastModified in whole seconds since the epoch, as HEAD reports it.
    pub fn last_modified_secs(&self, key: &str) -> i64 {
        let out = self
            .rt
            .block_on(self.client.head_object().bucket(&self.name).key(key).send())
            .unwrap_or_else(|e| panic!("head {key:?}: {}", sdk_error(&e)));
        out.last_modified().expect("LastModified").secs()
    }

    /// `bucketfs -f` on this bucket with `args` before the positionals.
    pub fn mount(&self, args: &[&str]) -> Mount {
        Mount::start(&self.target(), &self.name, args)
    }
}

/// The SDK's `Display` for errors is just "service error"; the debug form
/// carries the code and the HTTP status.
pub fn sdk_error<E: std::fmt::Debug>(err: &E) -> String {
    format!("{err:?}")
}

// ---------------------------------------------------------------------------
// The binary under test
// ---------------------------------------------------------------------------

pub fn bucketfs_bin() -> &'static str {
    env!("CARGO_BIN_EXE_bucketfs")
}

/// The command line a user would type, with a clean AWS environment: every
/// `AWS_*` variable of ours is dropped (profiles, regions, endpoints) and the
/// key pair is passed the documented way.
pub fn bucketfs_command(
    target: &S3Target,
    bucket: &str,
    mountpoint: &Path,
    args: &[&str],
) -> Command {
    let mut cmd = Command::new(bucketfs_bin());
    for (name, _) in std::env::vars_os() {
        if name.as_bytes().starts_with(b"AWS_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env("AWS_ACCESS_KEY_ID", &target.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &target.secret_key)
        // No instance-metadata lookups against a link-local address.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("RUST_LOG")
        .args([
            "--endpoint-url",
            &target.endpoint_url,
            "--force-path-style",
            "--region",
            REGION,
        ])
        .args(args)
        .arg(bucket)
        .arg(mountpoint)
        .stdin(Stdio::null());
    cmd
}

/// A fresh, empty directory to mount on, with its canonical path (the form
/// /proc/self/mountinfo shows). Canonicalized before mounting: afterwards
/// resolving it would ask the filesystem under test.
pub fn mountpoint_dir() -> (TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("bucketfs-mnt-")
        .tempdir()
        .expect("create mountpoint");
    let path = dir.path().canonicalize().expect("canonicalize mountpoint");
    (dir, path)
}

/// `bucketfs -f` running as our child, mounted at a temporary directory.
pub struct Mount {
    child: Child,
    mountpoint: PathBuf,
    stderr_path: PathBuf,
    watchdog: Option<(mpsc::Sender<()>, thread::JoinHandle<()>)>,
    // Dropped after `drop` has unmounted: the directories must outlive it.
    _mountpoint_dir: TempDir,
    _log_dir: TempDir,
}

impl Mount {
    /// Spawns `bucketfs -f ARGS BUCKET MNT` and waits until the kernel lists
    /// the mount; panics with the daemon's stderr if it does not come up.
    pub fn start(target: &S3Target, bucket: &str, args: &[&str]) -> Mount {
        let (mountpoint_dir, mountpoint) = mountpoint_dir();
        let log_dir = tempfile::Builder::new()
            .prefix("bucketfs-log-")
            .tempdir()
            .expect("create log dir");
        let stderr_path = log_dir.path().join("bucketfs.stderr");
        let stderr = File::create(&stderr_path).expect("create stderr file");
        let mut cmd = bucketfs_command(target, bucket, &mountpoint, &[&["-f"], args].concat());
        // Diagnostics for failures; bucketfs logs keys at debug, never contents.
        let log_filter = std::env::var("BUCKETFS_TEST_RUST_LOG")
            .unwrap_or_else(|_| "warn,bucketfs=debug".to_string());
        cmd.env("RUST_LOG", log_filter)
            .stdout(stderr.try_clone().expect("clone stderr handle"))
            .stderr(stderr);
        let description = describe(&cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {description}: {e}"));
        let mut mount = Mount {
            child,
            mountpoint,
            stderr_path,
            watchdog: None,
            _mountpoint_dir: mountpoint_dir,
            _log_dir: log_dir,
        };
        let deadline = Instant::now() + MOUNT_TIMEOUT;
        loop {
            if is_mounted(&mount.mountpoint) {
                break;
            }
            if let Ok(Some(status)) = mount.child.try_wait() {
                panic!(
                    "bucketfs exited with {status} before mounting\ncommand: {description}\n--- stderr ---\n{}",
                    mount.daemon_log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "bucketfs did not mount within {MOUNT_TIMEOUT:?}\ncommand: {description}\n--- stderr ---\n{}",
                    mount.daemon_log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        mount.watchdog = Some(start_watchdog(mount.child.id(), MOUNT_WATCHDOG));
        mount
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.mountpoint.join(relative)
    }

    pub fn daemon_log(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// Unmounts with `fusermount3 -u` and asserts that it worked and that
    /// the daemon then exited cleanly on its own.
    pub fn unmount(mut self) {
        self.stop_watchdog();
        let out = run_with_timeout(
            Command::new("fusermount3").arg("-u").arg(&self.mountpoint),
            Duration::from_secs(30),
        );
        assert!(
            out.success(),
            "fusermount3 -u {} failed: {}\n--- daemon stderr ---\n{}",
            self.mountpoint.display(),
            out.describe(),
            tail(&self.daemon_log(), 60)
        );
        assert!(
            !is_mounted(&self.mountpoint),
            "still mounted after fusermount3 -u"
        );
        let status = wait_child(&mut self.child, DAEMON_EXIT_TIMEOUT);
        match status {
            Some(status) => assert!(
                status.success(),
                "bucketfs exited with {status} after unmount\n--- stderr ---\n{}",
                tail(&self.daemon_log(), 60)
            ),
            None => panic!(
                "bucketfs still running {DAEMON_EXIT_TIMEOUT:?} after unmount\n--- stderr ---\n{}",
                tail(&self.daemon_log(), 60)
            ),
        }
    }

    fn stop_watchdog(&mut self) {
        if let Some((cancel, handle)) = self.watchdog.take() {
            let _ = cancel.send(());
            let _ = handle.join();
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.stop_watchdog();
        unmount_quietly(&self.mountpoint);
        if wait_child(&mut self.child, DAEMON_EXIT_TIMEOUT).is_none() {
            eprintln!(
                "bucketfs (pid {}) did not exit after unmount; killing it",
                self.child.id()
            );
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(keep) = std::env::var_os("BUCKETFS_TEST_KEEP_LOGS") {
            // For studying a run that passed (e.g. how often a fault path
            // was taken): one file per mount, named after its mountpoint.
            let name = self.mountpoint.file_name().unwrap_or_default();
            let _ = std::fs::create_dir_all(&keep);
            let _ = std::fs::copy(&self.stderr_path, Path::new(&keep).join(name));
        }
        if thread::panicking() {
            let log = self.daemon_log();
            // The tail alone often misses the cause: a failed commit is
            // followed by hundreds of lines of other requests.
            eprintln!(
                "--- bucketfs warnings and errors for {} ---\n{}",
                self.mountpoint.display(),
                warnings_and_errors(&log, 40)
            );
            eprintln!(
                "--- bucketfs stderr for {} (tail) ---\n{}",
                self.mountpoint.display(),
                tail(&log, 80)
            );
        }
    }
}

/// Kills `pid` with SIGKILL unless cancelled within `limit`. The daemon is
/// our child and is not reaped before the watchdog is joined, so the pid
/// cannot have been reused.
fn start_watchdog(pid: u32, limit: Duration) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (cancel, cancelled) = mpsc::channel::<()>();
    let handle = thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = cancelled.recv_timeout(limit) {
            eprintln!("watchdog: test ran past {limit:?}; killing bucketfs pid {pid}");
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is
            // our unreaped child (see above).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    });
    (cancel, handle)
}

fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Best effort, for guards: `fusermount3 -u`, retried briefly (a tool that
/// just closed a file can leave the mount busy for a moment), then a lazy
/// `umount -l`.
pub fn unmount_quietly(mountpoint: &Path) {
    for _ in 0..5 {
        if !is_mounted(mountpoint) {
            return;
        }
        let _ = run_with_timeout(
            Command::new("fusermount3").arg("-u").arg(mountpoint),
            Duration::from_secs(10),
        );
        if !is_mounted(mountpoint) {
            return;
        }
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "fusermount3 -u {} failed; trying umount -l",
        mountpoint.display()
    );
    let _ = run_with_timeout(
        Command::new("umount").arg("-l").arg(mountpoint),
        Duration::from_secs(10),
    );
}

/// Whether /proc/self/mountinfo lists a mount at `mountpoint` (canonical).
pub fn is_mounted(mountpoint: &Path) -> bool {
    let info = std::fs::read("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    info.split(|&b| b == b'\n').any(|line| {
        line.split(|&b| b == b' ')
            .nth(4)
            .is_some_and(|field| unescape_mountinfo(field) == mountpoint.as_os_str().as_bytes())
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = field[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The daemonizing command line
// ---------------------------------------------------------------------------

/// What the daemonizing command (no `-f`) did.
pub struct DaemonRun {
    /// `None`: still running at the timeout (it was killed).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub command: String,
}

impl DaemonRun {
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `bucketfs ARGS BUCKET MNT` without `-f`. Output goes to files, not
/// pipes: a daemon that keeps its inherited stderr open must not make us
/// wait for it.
pub fn run_daemonized(
    target: &S3Target,
    bucket: &str,
    mountpoint: &Path,
    args: &[&str],
    limit: Duration,
) -> DaemonRun {
    let mut cmd = bucketfs_command(target, bucket, mountpoint, args);
    let out = run_with_timeout(&mut cmd, limit);
    DaemonRun {
        status: out.status_if_exited(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: out.elapsed,
        command: out.command,
    }
}

/// Cleans up after a daemonized mount at a mountpoint: unmounts if still
/// mounted, then waits for (and at last kills) any `bucketfs` process
/// serving that mountpoint. Create it before running the command.
pub struct DaemonGuard {
    mountpoint: PathBuf,
    _dir: Option<TempDir>,
}

impl DaemonGuard {
    /// A guard with a fresh temporary mountpoint.
    pub fn new() -> DaemonGuard {
        let (dir, mountpoint) = mountpoint_dir();
        DaemonGuard {
            mountpoint,
            _dir: Some(dir),
        }
    }

    /// A guard for a path that may not exist (the missing-mountpoint test).
    pub fn at(mountpoint: PathBuf) -> DaemonGuard {
        DaemonGuard {
            mountpoint,
            _dir: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.mountpoint.join(relative)
    }

    /// bucketfs processes whose command line names this mountpoint.
    pub fn daemon_pids(&self) -> Vec<u32> {
        bucketfs_pids_for(&self.mountpoint)
    }

    /// Waits up to `limit` for every daemon of this mountpoint to exit.
    pub fn wait_daemons_gone(&self, limit: Duration) -> Result<(), Vec<u32>> {
        let deadline = Instant::now() + limit;
        loop {
            let pids = self.daemon_pids();
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(pids);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Default for DaemonGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        unmount_quietly(&self.mountpoint);
        if let Err(pids) = self.wait_daemons_gone(DAEMON_EXIT_TIMEOUT) {
            for pid in pids {
                eprintln!(
                    "bucketfs daemon {pid} for {} still running; killing it",
                    self.mountpoint.display()
                );
                // SAFETY: kill(2) has no memory-safety preconditions. The pid
                // was read from /proc a moment ago and names a bucketfs this
                // test started (its command line holds our temp mountpoint).
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
    }
}

/// Live (non-zombie) processes running the bucketfs binary (under its own
/// name or as mount.bucketfs) with `mountpoint` as an argument. A zombie has
/// an empty cmdline and so never matches.
pub fn bucketfs_pids_for(mountpoint: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let bin_name = Path::new(bucketfs_bin()).file_name().map(OsStr::to_owned);
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        let Some(first) = args.first() else { continue };
        let program = Path::new(OsStr::from_bytes(first))
            .file_name()
            .map(OsStr::to_owned);
        // mount(8) runs the binary as the mount.bucketfs helper too.
        let runs_bucketfs =
            program == bin_name || program.as_deref() == Some(OsStr::new("mount.bucketfs"));
        if runs_bucketfs && args.iter().any(|a| *a == mountpoint.as_os_str().as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

// ---------------------------------------------------------------------------
// Running tools
// ---------------------------------------------------------------------------

/// A finished (or timed-out) tool run.
pub struct RunOutput {
    /// `None` when the tool was killed at the timeout.
    status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
    pub command: String,
}

impl RunOutput {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn status_if_exited(&self) -> Option<ExitStatus> {
        self.status
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    pub fn describe(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => "killed at timeout".to_string(),
        };
        format!(
            "`{}` → {status} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.elapsed,
            tail(&self.stdout_str(), 40),
            tail(&self.stderr_str(), 40)
        )
    }
}

/// Runs `cmd` (at most [`COMMAND_TIMEOUT`]) and panics with its output
/// unless it exits 0.
pub fn run(cmd: &mut Command) -> RunOutput {
    let out = run_with_timeout(cmd, COMMAND_TIMEOUT);
    assert!(out.success(), "command failed: {}", out.describe());
    out
}

/// `run(Command::new(program).args(args))`.
pub fn run_tool<I, S>(program: &str, args: I) -> RunOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new(program).args(args))
}

/// Runs `cmd` with stdout and stderr captured in anonymous files; kills it
/// at `limit`. Never panics on the tool's behaviour.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> RunOutput {
    let command = describe(cmd);
    let mut stdout = tempfile::tempfile().expect("stdout temp file");
    let mut stderr = tempfile::tempfile().expect("stderr temp file");
    cmd.stdin(Stdio::null())
        .stdout(stdout.try_clone().expect("clone stdout"))
        .stderr(stderr.try_clone().expect("clone stderr"));
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
    let status = wait_child(&mut child, limit);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let elapsed = started.elapsed();
    RunOutput {
        status,
        stdout: read_all(&mut stdout),
        stderr: read_all(&mut stderr),
        elapsed,
        command,
    }
}

fn read_all(file: &mut File) -> Vec<u8> {
    let mut buf = Vec::new();
    file.seek(SeekFrom::Start(0)).expect("rewind capture file");
    file.read_to_end(&mut buf).expect("read capture file");
    buf
}

/// A shell-like rendering of a command, for messages (env not shown).
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| {
            let arg = arg.to_string_lossy();
            if arg.is_empty()
                || arg.contains(|c: char| c.is_whitespace() || "'\"\\$#&;|<>()*?".contains(c))
            {
                format!("'{}'", arg.replace('\'', r"'\''"))
            } else {
                arg.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

/// Deterministic pseudo-random bytes: a failure can be replayed by seed.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut buf = vec![0u8; len];
    rng.fill_bytes(&mut buf);
    buf
}

pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// The last `lines` lines of `text`, marked when cut.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    if all.len() <= lines {
        return text.to_string();
    }
    format!(
        "[… {} earlier lines]\n{}",
        all.len() - lines,
        all[all.len() - lines..].join("\n")
    )
}

/// The first `limit` lines of an env_logger log at WARN or ERROR.
pub fn warnings_and_errors(log: &str, limit: usize) -> String {
    let notable: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect();
    let mut shown = notable[..notable.len().min(limit)].join("\n");
    if notable.len() > limit {
        shown.push_str(&format!("\n[… {} more]", notable.len() - limit));
    }
    shown
}

/// Non-empty lines of a tool's output, as a sorted set.
pub fn line_set(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Puts 600 objects under `prefix`: 25 directories `dNN` of 24 files `fNN`,
/// each `dir + file` bytes of `byte`. Returns them as `files_and_sizes`
/// shows them from the mount's root ("KEY SIZE").
pub fn put_sized_tree(bucket: &Bucket, prefix: &str, byte: u8) -> BTreeSet<String> {
    let mut expected = BTreeSet::new();
    for dir in 0..25 {
        for file in 0..24 {
            let key = format!("{prefix}/d{dir:02}/f{file:02}");
            let size = dir + file;
            bucket.put(&key, vec![byte; size]);
            expected.insert(format!("{key} {size}"));
        }
    }
    expected
}

/// `find -type f` with sizes, relative to the mount.
pub fn files_and_sizes(root: &Path) -> BTreeSet<String> {
    let out = run(Command::new("find")
        .arg(root)
        .args(["-type", "f", "-printf", "%P %s\n"]));
    line_set(&out.stdout_str())
}

/// The daemon's last "inode table ... N held" figure in its log.
pub fn last_inodes_held(log: &str) -> Option<usize> {
    log.lines()
        .filter(|line| line.contains("inode table"))
        .filter_map(|line| {
            let (before, _) = line.split_once(" held")?;
            before.rsplit([' ', '(']).next()?.parse().ok()
        })
        .next_back()
}

/// Waits (up to 20 s) until the daemon has reported its inode table over
/// `--max-inodes` and then back within `max_inodes`; fails if it never went
/// over or stayed over.
pub fn wait_for_inode_table_within(mount: &Mount, max_inodes: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = mount.daemon_log();
        assert!(
            log.contains("inode table over --max-inodes"),
            "the table never went over its bound: {:?}",
            last_inodes_held(&log)
        );
        if let Some(held) = last_inodes_held(&log).filter(|_| log.contains("within --max-inodes"))
            && held <= max_inodes
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the inode table stayed over {max_inodes}: last {:?}",
            last_inodes_held(&log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes `contents` to `root/relative`, creating parent directories.
pub fn write_local(root: &Path, relative: &str, contents: &[u8]) -> PathBuf {
    let path = root.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create local parent dirs");
    }
    std::fs::write(&path, contents).expect("write local file");
    path
}
