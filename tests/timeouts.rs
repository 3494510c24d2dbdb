//! Bounds on a dead endpoint, and no bound on a live one: real mounts on
//! s3s-fs, with the server frozen (SIGSTOP: connections open, nothing
//! answers), or behind a small TCP forwarder of our own that trickles bytes
//! or cuts a response body once.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Bucket, Mount, RunOutput, S3Target, ServerKind, random_bytes, run, run_with_timeout,
    write_local,
};

/// The bound for `ls`, `cat` and `cp` on a black-holed endpoint at
/// default settings.
const DEAD_ENDPOINT_BOUND: Duration = Duration::from_secs(30);

/// Runs `program args` against a mount with a generous kill limit, so that a
/// hang shows as a long elapsed time rather than a hung test.
fn tool(program: &str, args: &[&std::ffi::OsStr]) -> RunOutput {
    run_with_timeout(Command::new(program).args(args), Duration::from_secs(120))
}

fn assert_fails_with_eio_in_time(out: &RunOutput, what: &str) {
    assert!(
        !out.success(),
        "{what} succeeded on a frozen endpoint: {}",
        out.describe()
    );
    assert!(
        out.stderr_str().contains("Input/output error"),
        "{what} did not fail with EIO: {}",
        out.describe()
    );
    assert!(
        out.elapsed < DEAD_ENDPOINT_BOUND,
        "{what} took {:?} (bound {DEAD_ENDPOINT_BOUND:?}): {}",
        out.elapsed,
        out.describe()
    );
    eprintln!("{what} failed with EIO after {:?}", out.elapsed);
}

/// Retries `attempt` until it succeeds: the mount must come back by itself,
/// within a probe interval and a request or two.
fn until_it_works(what: &str, mut attempt: impl FnMut() -> RunOutput) -> RunOutput {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let out = attempt();
        if out.success() {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{what} still fails after the endpoint came back: {}",
            out.describe()
        );
        thread::sleep(Duration::from_millis(500));
    }
}

/// Each tool starts on a healthy mount (its worst case: nothing yet known
/// about the endpoint), then the server is frozen; each must fail with EIO
/// within the bound, and work again once the server resumes, without a
/// remount.
#[test]
fn a_frozen_endpoint_fails_ls_cat_and_cp_with_eio_in_time_and_the_mount_recovers() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    let body = random_bytes(7, 300 * 1024);
    for dir in ["ls-dir", "cat-dir", "cp-dir"] {
        bucket.put(&format!("{dir}/file"), body.clone());
    }
    let source = tempfile::tempdir().unwrap();
    let local = write_local(source.path(), "local.bin", &body);
    let copied = source.path().join("copied.bin");
    let mount = bucket.mount(&[]);
    run(Command::new("ls").arg(mount.path()));

    // Fresh names each round: nothing of them is cached by the kernel or
    // the mount.
    let rounds: [(&str, Vec<std::ffi::OsString>); 3] = [
        ("ls", vec![mount.join("ls-dir").into()]),
        ("cat", vec![mount.join("cat-dir/file").into()]),
        (
            "cp",
            vec![mount.join("cp-dir/file").into(), copied.clone().into()],
        ),
    ];
    for (program, args) in &rounds {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|arg| arg.as_os_str()).collect();
        bucket.server.pause();
        let out = tool(program, &args);
        bucket.server.resume();
        assert_fails_with_eio_in_time(&out, program);
        until_it_works(program, || tool(program, &args));
    }
    assert_eq!(std::fs::read(&copied).unwrap(), body);
    let out = tool("cat", &[mount.join("cat-dir/file").as_os_str()]);
    assert_eq!(out.stdout, body);

    // Writing through the mount: the lookup of the new name fails first.
    bucket.server.pause();
    let out = tool(
        "cp",
        &[local.as_os_str(), mount.join("new.bin").as_os_str()],
    );
    bucket.server.resume();
    assert_fails_with_eio_in_time(&out, "cp into the mount");
    until_it_works("cp into the mount", || {
        tool(
            "cp",
            &[local.as_os_str(), mount.join("new.bin").as_os_str()],
        )
    });
    assert_eq!(bucket.get("new.bin"), body);
    mount.unmount();
}

/// Bug 7 (issue 10), uploads: "`--request-timeout` is applied as the
/// attempt timeout of whole UploadPart/PutObject/CopyObject calls". A
/// transfer that takes many such timeouts but keeps moving succeeds both
/// ways, with a single attempt allowed: only a stall fails an attempt. The
/// option is given by the name the report used (now an alias of
/// `--stall-timeout`), so that on the main of 2026-12-02 this test fails
/// the way the report says, not at start-up.
#[test]
fn bug7_a_slow_but_moving_transfer_never_times_out() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    // 8 KiB every 40 ms: about 200 KiB/s each way, so 2 MiB take ~10 s,
    // five times the stall timeout, on every request.
    let forwarder = Forwarder::start(
        bucket.server.port(),
        Mode::Throttle {
            bytes_per_tick: 8 * 1024,
            tick: Duration::from_millis(40),
        },
    );
    let body = random_bytes(11, 2 * 1024 * 1024);
    let source = tempfile::tempdir().unwrap();
    let local = write_local(source.path(), "slow.bin", &body);
    let mount = Mount::start(
        &forwarder.target(&bucket),
        &bucket.name,
        &["--request-timeout", "2", "--max-attempts", "1"],
    );
    let started = Instant::now();
    run(Command::new("cp").arg(&local).arg(mount.join("slow.bin")));
    let upload = started.elapsed();
    assert!(
        upload > Duration::from_secs(4),
        "the upload was not slowed: {upload:?}"
    );
    assert_eq!(bucket.get("slow.bin"), body);

    let copied = source.path().join("back.bin");
    let started = Instant::now();
    run(Command::new("cp").arg(mount.join("slow.bin")).arg(&copied));
    let download = started.elapsed();
    assert!(
        download > Duration::from_secs(4),
        "the download was not slowed: {download:?}"
    );
    assert_eq!(std::fs::read(&copied).unwrap(), body);
    eprintln!("2 MiB up in {upload:?}, down in {download:?} with --request-timeout 2");
    mount.unmount();
}

/// A GET whose body breaks off is resumed from the last byte received,
/// pinned with If-Match, and asks for the rest of the range only.
#[test]
fn a_get_cut_mid_body_resumes_from_the_last_byte_pinned_to_its_etag() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    let body = random_bytes(13, 3 * 1024 * 1024);
    bucket.put("cut.bin", body.clone());
    const CUT_AFTER: u64 = 100_000;
    let forwarder = Forwarder::start(
        bucket.server.port(),
        Mode::CutOnce {
            after_body_bytes: CUT_AFTER,
        },
    );
    let mount = Mount::start(&forwarder.target(&bucket), &bucket.name, &[]);
    let out = run(Command::new("cat").arg(mount.join("cut.bin")));
    assert!(out.stdout == body, "the bytes read differ from the object");
    assert!(forwarder.has_cut(), "no response was cut");

    assert_cut_get_resumed(&forwarder, CUT_AFTER);
    mount.unmount();
}

/// The forwarder cut a ranged GET after `cut_after` body bytes, and a later
/// GET asked for the rest of that range only, pinned to the same ETag.
fn assert_cut_get_resumed(forwarder: &Forwarder, cut_after: u64) {
    let requests = forwarder.ranged_requests();
    eprintln!("ranged GETs: {requests:?}");
    let Some(at) = requests.iter().position(|r| r.was_cut) else {
        panic!("the cut request is not recorded: {requests:?}");
    };
    let first = &requests[at];
    let (start, end) = first.range;
    // Readahead may have sent GETs for later blocks in between: the resume
    // is the next request that ends where the cut one did, and it must ask
    // for the rest only.
    let Some(resumed) = requests[at + 1..].iter().find(|r| r.range.1 == end) else {
        panic!("the cut GET was not resumed: {requests:?}");
    };
    assert_eq!(
        resumed.range,
        (start + cut_after, end),
        "the resumed GET must ask for the rest only: {requests:?}"
    );
    assert!(
        resumed
            .if_match
            .as_deref()
            .is_some_and(|etag| !etag.is_empty()),
        "the resumed GET is not pinned: {requests:?}"
    );
    if first.if_match.is_some() {
        assert_eq!(resumed.if_match, first.if_match, "pinned to another ETag");
    }
}

/// Bug 7 (issue 10), renames: a server-side copy moves no bytes while the
/// store works, so a copy of gigabytes looked like a stall and failed a
/// rename. Here the forwarder holds every CopyObject for 5 s, more than
/// twice the stall timeout, with a single attempt allowed: `mv` must
/// succeed, bounded by `--copy-timeout` instead.
#[test]
fn bug7_a_slow_server_side_copy_does_not_fail_a_rename() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    let body = random_bytes(17, 64 * 1024);
    bucket.put("before.bin", body.clone());
    const HELD: Duration = Duration::from_secs(5);
    let forwarder = Forwarder::start(bucket.server.port(), Mode::HoldCopies { for_: HELD });
    let mount = Mount::start(
        &forwarder.target(&bucket),
        &bucket.name,
        &["--request-timeout", "2", "--max-attempts", "1"],
    );
    let started = Instant::now();
    run(Command::new("mv")
        .arg(mount.join("before.bin"))
        .arg(mount.join("after.bin")));
    let took = started.elapsed();
    assert!(
        forwarder.copies_held() >= 1,
        "no CopyObject went through the forwarder"
    );
    assert!(took >= HELD, "the copy was not held: mv took {took:?}");
    assert_eq!(bucket.get("after.bin"), body);
    assert!(
        !bucket.list_keys("").contains("before.bin"),
        "the old name is still in the bucket"
    );
    mount.unmount();
}

/// Bug 7 (issue 10), reads: "a GET body that breaks mid-stream is not
/// retried: every reader sharing that fetch fails, and an open-for-write
/// download restarts from zero". Two readers start on one file together
/// (whether they share the cut fetch depends on timing: either way both
/// must read every byte), then, on a fresh mount, an append to another
/// file needs its bytes staged: its download is cut once and must resume
/// from the cut, not from zero.
#[test]
fn bug7_a_cut_get_fails_no_reader_and_a_download_for_writing_resumes() {
    let bucket = Bucket::new(ServerKind::S3sFs);
    let body = random_bytes(19, 3 * 1024 * 1024);
    bucket.put("shared.bin", body.clone());
    bucket.put("appended.bin", body.clone());
    const CUT_AFTER: u64 = 100_000;

    let forwarder = Forwarder::start(
        bucket.server.port(),
        Mode::CutOnce {
            after_body_bytes: CUT_AFTER,
        },
    );
    let mount = Mount::start(&forwarder.target(&bucket), &bucket.name, &[]);
    let path = mount.join("shared.bin");
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let path = path.clone();
            thread::spawn(move || run(Command::new("cat").arg(&path)).stdout)
        })
        .collect();
    for reader in readers {
        assert!(
            reader.join().expect("reader thread") == body,
            "a reader got other bytes"
        );
    }
    assert!(forwarder.has_cut(), "no read was cut");
    mount.unmount();
    drop(forwarder);

    let forwarder = Forwarder::start(
        bucket.server.port(),
        Mode::CutOnce {
            after_body_bytes: CUT_AFTER,
        },
    );
    let mount = Mount::start(&forwarder.target(&bucket), &bucket.name, &[]);
    let tail = b"one more line\n";
    {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(mount.join("appended.bin"))
            .expect("open for appending");
        file.write_all(tail).expect("append");
        file.sync_all().expect("fsync");
    }
    let mut want = body.clone();
    want.extend_from_slice(tail);
    assert!(
        bucket.get("appended.bin") == want,
        "the appended object holds other bytes"
    );
    assert_cut_get_resumed(&forwarder, CUT_AFTER);
    mount.unmount();
}

// ---------------------------------------------------------------------------
// The forwarder
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Moves at most `bytes_per_tick` per `tick` in each direction.
    Throttle {
        bytes_per_tick: usize,
        tick: Duration,
    },
    /// Closes the first connection whose ranged GET response has sent this
    /// many body bytes, once.
    CutOnce { after_body_bytes: u64 },
    /// Holds every CopyObject request this long before passing it on, as a
    /// store copying gigabytes keeps its answer.
    HoldCopies { for_: Duration },
}

/// A ranged GET as the forwarder saw it.
#[derive(Debug, Clone)]
struct RangedRequest {
    /// Inclusive start, inclusive end, as in the header.
    range: (u64, u64),
    if_match: Option<String>,
    was_cut: bool,
}

/// A TCP forwarder on its own port in front of the S3 server, with threads
/// per connection; dropping it stops accepting (connections in flight end
/// with their sockets).
struct Forwarder {
    port: u16,
    stop: Arc<AtomicBool>,
    cut_done: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<RangedRequest>>>,
    copies_held: Arc<AtomicU64>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl Forwarder {
    fn start(server_port: u16, mode: Mode) -> Forwarder {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind forwarder");
        if let Mode::Throttle { .. } = mode {
            // A small receive window, inherited by accepted sockets: a slow
            // reader must not let the kernel swallow a whole body at once.
            set_buffer(&listener, libc::SO_RCVBUF, 16 * 1024);
        }
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let cut_done = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let copies_held = Arc::new(AtomicU64::new(0));
        let acceptor = {
            let (stop, cut_done, requests, copies_held) = (
                Arc::clone(&stop),
                Arc::clone(&cut_done),
                Arc::clone(&requests),
                Arc::clone(&copies_held),
            );
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).unwrap();
                            let server = TcpStream::connect((Ipv4Addr::LOCALHOST, server_port))
                                .expect("connect to the S3 server");
                            if let Mode::Throttle { .. } = mode {
                                set_buffer(&server, libc::SO_RCVBUF, 16 * 1024);
                            }
                            let connection = Connection {
                                mode,
                                cut_done: Arc::clone(&cut_done),
                                requests: Arc::clone(&requests),
                                copies_held: Arc::clone(&copies_held),
                                // Index of this connection's current ranged GET.
                                current: Arc::new(Mutex::new(None)),
                                body_bytes: Arc::new(AtomicU64::new(0)),
                            };
                            connection.run(client, server);
                        }
                        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(10));
                        }
                        Err(err) => panic!("forwarder accept: {err}"),
                    }
                }
            })
        };
        Forwarder {
            port,
            stop,
            cut_done,
            requests,
            copies_held,
            acceptor: Some(acceptor),
        }
    }

    fn target(&self, bucket: &Bucket) -> S3Target {
        S3Target {
            endpoint_url: format!("http://127.0.0.1:{}", self.port),
            ..bucket.target()
        }
    }

    fn has_cut(&self) -> bool {
        self.cut_done.load(Ordering::SeqCst)
    }

    fn ranged_requests(&self) -> Vec<RangedRequest> {
        self.requests.lock().unwrap().clone()
    }

    fn copies_held(&self) -> u64 {
        self.copies_held.load(Ordering::SeqCst)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn set_buffer(socket: &impl AsRawFd, option: libc::c_int, bytes: libc::c_int) {
    // SAFETY: setsockopt reads `bytes` for the given length; the descriptor
    // is owned by `socket` and open.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(result, 0, "setsockopt: {}", std::io::Error::last_os_error());
}

#[derive(Clone)]
struct Connection {
    mode: Mode,
    cut_done: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<RangedRequest>>>,
    copies_held: Arc<AtomicU64>,
    current: Arc<Mutex<Option<usize>>>,
    body_bytes: Arc<AtomicU64>,
}

impl Connection {
    fn run(self, client: TcpStream, server: TcpStream) {
        let (client_read, server_write) =
            (client.try_clone().unwrap(), server.try_clone().unwrap());
        let upstream = self.clone();
        thread::spawn(move || upstream.client_to_server(client_read, server_write));
        thread::spawn(move || self.server_to_client(server, client));
    }

    fn client_to_server(self, mut client: TcpStream, mut server: TcpStream) {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut head = Vec::new();
        loop {
            let limit = match self.mode {
                Mode::Throttle { bytes_per_tick, .. } => bytes_per_tick,
                Mode::CutOnce { .. } | Mode::HoldCopies { .. } => buffer.len(),
            };
            let read = match client.read(&mut buffer[..limit]) {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            if let Mode::HoldCopies { for_ } = self.mode {
                // A request head arrives in one read on loopback; its copy
                // source header marks a CopyObject (or UploadPartCopy).
                let text = String::from_utf8_lossy(&buffer[..read]).to_ascii_lowercase();
                if text.contains("\r\nx-amz-copy-source:") {
                    self.copies_held.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(for_);
                }
            }
            if let Mode::CutOnce { .. } = self.mode {
                head.extend_from_slice(&buffer[..read]);
                self.record_requests(&mut head);
            }
            if server.write_all(&buffer[..read]).is_err() {
                break;
            }
            if let Mode::Throttle { tick, .. } = self.mode {
                thread::sleep(tick);
            }
        }
        let _ = server.shutdown(Shutdown::Write);
    }

    /// Finds complete request heads in `head` (GETs carry no body) and
    /// records the ranged ones.
    fn record_requests(&self, head: &mut Vec<u8>) {
        while let Some(end) = find(head, b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            head.drain(..end + 4);
            let header = |name: &str| {
                text.lines()
                    .find_map(|line| line.strip_prefix(name).map(|v| v.trim().to_owned()))
            };
            let Some(range) = header("range:") else {
                *self.current.lock().unwrap() = None;
                continue;
            };
            let (start, end) = range
                .strip_prefix("bytes=")
                .and_then(|range| range.split_once('-'))
                .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap()))
                .expect("a bytes=a-b range");
            let mut requests = self.requests.lock().unwrap();
            requests.push(RangedRequest {
                range: (start, end),
                if_match: header("if-match:"),
                was_cut: false,
            });
            *self.current.lock().unwrap() = Some(requests.len() - 1);
        }
    }

    fn server_to_client(self, mut server: TcpStream, mut client: TcpStream) {
        let mut buffer = vec![0u8; 64 * 1024];
        // Bytes of the current response head not yet matched.
        let mut head = Vec::new();
        let mut in_body = false;
        let mut tracked: Option<usize> = None;
        loop {
            let limit = match self.mode {
                Mode::Throttle { bytes_per_tick, .. } => bytes_per_tick,
                Mode::CutOnce { .. } | Mode::HoldCopies { .. } => buffer.len(),
            };
            let read = match server.read(&mut buffer[..limit]) {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            let mut chunk = &buffer[..read];
            if let Mode::CutOnce { after_body_bytes } = self.mode {
                let current = *self.current.lock().unwrap();
                if current != tracked {
                    // A new request on this connection: a new response.
                    tracked = current;
                    head.clear();
                    in_body = false;
                    self.body_bytes.store(0, Ordering::SeqCst);
                }
                if let Some(index) = current.filter(|_| !self.cut_done.load(Ordering::SeqCst)) {
                    if !in_body {
                        head.extend_from_slice(chunk);
                        if let Some(end) = find(&head, b"\r\n\r\n") {
                            in_body = true;
                            let body_in_chunk = head.len() - (end + 4);
                            self.body_bytes
                                .store(body_in_chunk as u64, Ordering::SeqCst);
                        }
                    } else {
                        self.body_bytes.fetch_add(read as u64, Ordering::SeqCst);
                    }
                    let body = self.body_bytes.load(Ordering::SeqCst);
                    if in_body && body >= after_body_bytes {
                        // Forward exactly `after_body_bytes` of the body, then cut.
                        let excess = (body - after_body_bytes) as usize;
                        chunk = &chunk[..chunk.len() - excess];
                        let _ = client.write_all(chunk);
                        self.cut_done.store(true, Ordering::SeqCst);
                        self.requests.lock().unwrap()[index].was_cut = true;
                        let _ = client.shutdown(Shutdown::Both);
                        let _ = server.shutdown(Shutdown::Both);
                        return;
                    }
                }
            }
            if client.write_all(chunk).is_err() {
                break;
            }
            if let Mode::Throttle { tick, .. } = self.mode {
                thread::sleep(tick);
            }
        }
        let _ = client.shutdown(Shutdown::Write);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
