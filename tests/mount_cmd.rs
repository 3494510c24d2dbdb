//! bucketfs as the system runs it: through mount(8) (`-t fuse.bucketfs` via
//! mount.fuse3, `-t bucketfs` via the mount.bucketfs helper), an fstab read
//! with `mount --fstab FILE -a`, systemd's readiness protocol, and the
//! daemon's log file under rotation.
//!
//! mount(8) clears PATH before it runs a helper, and mount.fuse3 then finds
//! `bucketfs` through /bin/sh's default PATH; mount(8) itself looks for
//! `mount.bucketfs` in /sbin. So the tests that go through mount(8) link the
//! binary under test into /usr/local/sbin and /sbin for their duration
//! ([`SystemLinks`]), one test at a time, and remove the links on drop, also
//! when the test fails. The machine's /etc/fstab is never read or written.

mod common;

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    ACCESS_KEY, Bucket, DaemonGuard, REGION, S3Target, SECRET_KEY, ServerKind, bucketfs_bin,
    bucketfs_command, is_mounted, read_lossy, run_daemonized, run_with_timeout, tail,
    unmount_quietly,
};

/// mount(8) returns once the daemon reports the mount live; the start-up
/// check alone may take a few seconds against a loaded moto.
const MOUNT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
const DAEMON_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where /bin/sh (dash) looks first when PATH is unset, as under mount(8).
const SHELL_PATH_LINK: &str = "/usr/local/sbin/bucketfs";
/// Where mount(8) looks for the helper of type `bucketfs`.
const HELPER_LINK: &str = "/sbin/mount.bucketfs";
/// Serializes the system links between test processes (each test binary
/// run is one); [`LINKS_IN_PROCESS`] does it between this binary's threads.
const LINKS_LOCK_FILE: &str = "/tmp/bucketfs-mount-cmd-tests.lock";
/// Another run may hold the links for a while: its mounts take seconds each.
const LINKS_WAIT: Duration = Duration::from_secs(300);

static LINKS_IN_PROCESS: Mutex<()> = Mutex::new(());

/// The bucketfs binary under test, linked where mount(8) and mount.fuse3
/// find it, until dropped.
struct SystemLinks {
    links: Vec<PathBuf>,
    _file_lock: File,
    _thread_lock: MutexGuard<'static, ()>,
}

impl SystemLinks {
    fn install() -> SystemLinks {
        // A test that panicked while holding the lock has removed its links.
        let thread_lock = LINKS_IN_PROCESS
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let file_lock = File::create(LINKS_LOCK_FILE).expect("create the links lock file");
        file_lock.lock().expect("lock the links lock file");
        let mut links = SystemLinks {
            links: Vec::new(),
            _file_lock: file_lock,
            _thread_lock: thread_lock,
        };
        for path in [SHELL_PATH_LINK, HELPER_LINK] {
            let path = PathBuf::from(path);
            wait_until_free(&path);
            std::os::unix::fs::symlink(bucketfs_bin(), &path)
                .unwrap_or_else(|e| panic!("cannot link {}: {e}", path.display()));
            links.links.push(path);
        }
        links
    }
}

/// Waits for `path` to be free. A link to our own binary is a leftover of a
/// killed run of these tests (we hold the lock), and is replaced.
fn wait_until_free(path: &Path) {
    let deadline = Instant::now() + LINKS_WAIT;
    loop {
        match std::fs::read_link(path) {
            Err(e) if e.kind() == ErrorKind::NotFound && !path.exists() => return,
            Ok(target) if target == Path::new(bucketfs_bin()) => {
                std::fs::remove_file(path).expect("remove a stale link of ours");
                return;
            }
            _ if Instant::now() > deadline => panic!(
                "{} exists and is not ours: another bucketfs install is in the way; \
                 these tests need the path free for {LINKS_WAIT:?}",
                path.display()
            ),
            _ => thread::sleep(Duration::from_millis(500)),
        }
    }
}

impl Drop for SystemLinks {
    fn drop(&mut self) {
        for path in &self.links {
            let ours =
                std::fs::read_link(path).is_ok_and(|target| target == Path::new(bucketfs_bin()));
            if ours && let Err(e) = std::fs::remove_file(path) {
                eprintln!("cannot remove {}: {e}", path.display());
            }
        }
    }
}

/// `mount ARGS` with the test credentials in the environment (never on the
/// command line) and no other AWS setting of ours.
fn mount_command(target: &S3Target, args: &[&str]) -> Command {
    let mut cmd = Command::new("mount");
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"AWS_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env("AWS_ACCESS_KEY_ID", &target.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &target.secret_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .args(args);
    cmd
}

/// The mount options every test needs to reach the local server. The URL
/// carries ':' and '/', which must survive mount(8) and mount.fuse3.
fn server_options(target: &S3Target) -> String {
    format!(
        "endpoint_url={}/,force_path_style,region={REGION}",
        target.endpoint_url
    )
}

/// One line of /proc/self/mounts.
#[derive(Debug)]
struct MountEntry {
    source: String,
    fs_type: String,
    options: Vec<String>,
}

/// The last (topmost) mount at `mountpoint`, if any.
fn mount_entry(mountpoint: &Path) -> Option<MountEntry> {
    let table = std::fs::read_to_string("/proc/self/mounts").expect("read /proc/self/mounts");
    let wanted = mountpoint.to_str().expect("UTF-8 mountpoint");
    table.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        (fields.get(1) == Some(&wanted)).then(|| MountEntry {
            source: fields[0].to_owned(),
            fs_type: fields[2].to_owned(),
            options: fields[3].split(',').map(str::to_owned).collect(),
        })
    })
}

fn assert_bucketfs_mount(mountpoint: &Path, bucket: &str) -> MountEntry {
    let entry = mount_entry(mountpoint)
        .unwrap_or_else(|| panic!("{} is not in /proc/mounts", mountpoint.display()));
    assert_eq!(entry.fs_type, "fuse.bucketfs", "{entry:?}");
    assert_eq!(entry.source, bucket, "{entry:?}");
    entry
}

fn run_ok(cmd: &mut Command) -> String {
    let out = run_with_timeout(cmd, MOUNT_COMMAND_TIMEOUT);
    assert!(out.success(), "{}", out.describe());
    out.stdout_str()
}

fn assert_unmounted_and_daemon_gone(guard: &DaemonGuard) {
    assert!(
        !is_mounted(guard.path()),
        "{} still mounted",
        guard.path().display()
    );
    if let Err(pids) = guard.wait_daemons_gone(DAEMON_EXIT_TIMEOUT) {
        panic!(
            "bucketfs {pids:?} still running {DAEMON_EXIT_TIMEOUT:?} after unmounting {}",
            guard.path().display()
        );
    }
}

fn read_through(path: &Path) -> String {
    run_ok(Command::new("cat").arg(path))
}

#[test]
fn mount_t_fuse_bucketfs_then_umount_and_fusermount3() {
    let bucket = Bucket::new(ServerKind::Moto);
    // '=' and ':' in the prefix, ':' and '/' in the endpoint URL.
    bucket.put("a:b=c/d/hello.txt", "hello through mount(8)\n");
    bucket.put("top.txt", "top\n");
    let target = bucket.target();
    let _links = SystemLinks::install();
    let guard = DaemonGuard::new();
    let mountpoint = guard.path().to_str().unwrap();

    let options = format!("{},prefix=a:b=c/d/,allow_other,ro", server_options(&target));
    run_ok(&mut mount_command(
        &target,
        &[
            "-t",
            "fuse.bucketfs",
            &bucket.name,
            mountpoint,
            "-o",
            &options,
        ],
    ));
    let entry = assert_bucketfs_mount(guard.path(), &bucket.name);
    for option in [
        "ro",
        "allow_other",
        "nosuid",
        "nodev",
        "default_permissions",
    ] {
        assert!(
            entry.options.iter().any(|o| o == option),
            "{option}: {entry:?}"
        );
    }
    assert_eq!(
        read_through(&guard.join("hello.txt")),
        "hello through mount(8)\n"
    );
    let listed = run_ok(&mut Command::new("mount"));
    let expected = format!("{} on {mountpoint} type fuse.bucketfs (", bucket.name);
    assert!(
        listed.lines().any(|line| line.starts_with(&expected)),
        "`mount` does not list `{expected}`:\n{listed}"
    );
    let found = run_ok(Command::new("findmnt").args([
        "-n",
        "-o",
        "SOURCE,FSTYPE",
        "--mountpoint",
        mountpoint,
    ]));
    assert_eq!(
        found.split_whitespace().collect::<Vec<_>>(),
        [bucket.name.as_str(), "fuse.bucketfs"]
    );
    run_ok(Command::new("umount").arg(mountpoint));
    assert_unmounted_and_daemon_gone(&guard);

    // Again, read-write and without a prefix, unmounted with fusermount3.
    run_ok(&mut mount_command(
        &target,
        &[
            "-t",
            "fuse.bucketfs",
            &bucket.name,
            mountpoint,
            "-o",
            &server_options(&target),
        ],
    ));
    let entry = assert_bucketfs_mount(guard.path(), &bucket.name);
    assert!(entry.options.iter().any(|o| o == "rw"), "{entry:?}");
    assert_eq!(read_through(&guard.join("top.txt")), "top\n");
    run_ok(Command::new("fusermount3").arg("-u").arg(mountpoint));
    assert_unmounted_and_daemon_gone(&guard);
}

#[test]
fn mount_t_bucketfs_through_the_helper() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("logs/2024/x.log", "x\n");
    let target = bucket.target();
    let _links = SystemLinks::install();
    let guard = DaemonGuard::new();
    let mountpoint = guard.path().to_str().unwrap();
    let options = format!("{},prefix=logs/2024/", server_options(&target));

    // mount -f hands the helper -f ("fake"): nothing may be mounted.
    run_ok(&mut mount_command(
        &target,
        &[
            "-f",
            "-t",
            "bucketfs",
            &bucket.name,
            mountpoint,
            "-o",
            &options,
        ],
    ));
    assert!(mount_entry(guard.path()).is_none(), "mount -f mounted");

    run_ok(&mut mount_command(
        &target,
        &[
            "-v",
            "-t",
            "bucketfs",
            &bucket.name,
            mountpoint,
            "-o",
            &options,
        ],
    ));
    assert_bucketfs_mount(guard.path(), &bucket.name);
    assert_eq!(read_through(&guard.join("x.log")), "x\n");
    run_ok(Command::new("umount").arg(mountpoint));
    assert_unmounted_and_daemon_gone(&guard);
}

#[test]
fn bad_mount_option_fails_mount_with_our_message() {
    let bucket = Bucket::new(ServerKind::Moto);
    let target = bucket.target();
    let _links = SystemLinks::install();
    let guard = DaemonGuard::new();
    let mountpoint = guard.path().to_str().unwrap();
    let options = format!("{},nosuchoption=1", server_options(&target));
    for fs_type in ["fuse.bucketfs", "bucketfs"] {
        let out = run_with_timeout(
            &mut mount_command(
                &target,
                &["-t", fs_type, &bucket.name, mountpoint, "-o", &options],
            ),
            MOUNT_COMMAND_TIMEOUT,
        );
        assert!(
            !out.success() && out.status_if_exited().is_some(),
            "{}",
            out.describe()
        );
        assert!(
            out.stderr_str()
                .contains("bucketfs: unknown mount option 'nosuchoption'"),
            "-t {fs_type}: {}",
            out.describe()
        );
        assert_unmounted_and_daemon_gone(&guard);
    }
}

#[test]
fn fstab_entries_mount_with_mount_a() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("root.txt", "root\n");
    bucket.put("team/data/inner.txt", "inner\n");
    let target = bucket.target();
    let _links = SystemLinks::install();
    let plain = DaemonGuard::new();
    let automount = DaemonGuard::new();
    let other_type = DaemonGuard::new();
    let fstab_dir = tempfile::tempdir().expect("temp dir");
    let fstab = fstab_dir.path().join("fstab");
    let server = server_options(&target);
    std::fs::write(
        &fstab,
        format!(
            "# bucketfs test fstab\n\
             {bucket} {plain} fuse.bucketfs _netdev,nofail,allow_other,{server} 0 0\n\
             {bucket} {automount} fuse.bucketfs x-systemd.automount,_netdev,nofail,prefix=team/data/,{server} 0 0\n\
             none {other} tmpfs defaults 0 0\n",
            bucket = bucket.name,
            plain = plain.path().display(),
            automount = automount.path().display(),
            other = other_type.path().display(),
        ),
    )
    .expect("write fstab");

    run_ok(&mut mount_command(
        &target,
        &[
            "--fstab",
            fstab.to_str().unwrap(),
            "-a",
            "-t",
            "fuse.bucketfs",
        ],
    ));
    let entry = assert_bucketfs_mount(plain.path(), &bucket.name);
    assert!(
        entry.options.iter().any(|o| o == "allow_other"),
        "{entry:?}"
    );
    assert_bucketfs_mount(automount.path(), &bucket.name);
    assert!(
        mount_entry(other_type.path()).is_none(),
        "-t fuse.bucketfs mounted the tmpfs line"
    );
    assert_eq!(read_through(&plain.join("root.txt")), "root\n");
    assert_eq!(read_through(&automount.join("inner.txt")), "inner\n");
    for guard in [&plain, &automount] {
        run_ok(Command::new("umount").arg(guard.path()));
        assert_unmounted_and_daemon_gone(guard);
    }
}

/// `bucketfs -f` as our child; the guard unmounts and reaps it.
struct Foreground {
    child: Child,
    guard: DaemonGuard,
    stderr: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Foreground {
    fn log(&self) -> String {
        tail(&read_lossy(&self.stderr), 60)
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        unmount_quietly(self.guard.path());
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- bucketfs stderr ---\n{}", self.log());
        }
    }
}

#[test]
fn notify_socket_gets_ready_once_live_and_stopping_on_sigterm() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("f.txt", "f\n");
    let socket_dir = tempfile::tempdir().expect("temp dir");
    let socket_path = socket_dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("socket timeout");

    let guard = DaemonGuard::new();
    let log_dir = tempfile::tempdir().expect("temp dir");
    let stderr = log_dir.path().join("stderr");
    let mut cmd = bucketfs_command(&bucket.target(), &bucket.name, guard.path(), &["-f"]);
    cmd.env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).expect("stderr file"));
    let mut daemon = Foreground {
        child: cmd.spawn().expect("spawn bucketfs"),
        guard,
        stderr,
        _log_dir: log_dir,
    };

    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).unwrap_or_else(|e| {
        panic!("no READY=1 within 30 s: {e}\n{}", daemon.log());
    });
    // At the moment the datagram arrived, the mount must already serve.
    let mounted = is_mounted(daemon.guard.path());
    let root = std::fs::metadata(daemon.guard.path());
    assert_eq!(
        String::from_utf8_lossy(&buf[..n]),
        "READY=1",
        "{}",
        daemon.log()
    );
    assert!(mounted, "READY=1 before the mount was listed");
    let root = root.expect("stat the mount root");
    let parent = std::fs::metadata(daemon.guard.path().join("..")).expect("stat parent");
    use std::os::unix::fs::MetadataExt;
    assert_ne!(
        root.dev(),
        parent.dev(),
        "READY=1 before the mount answered"
    );
    assert_eq!(read_through(&daemon.guard.join("f.txt")), "f\n");

    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(daemon.child.id() as libc::pid_t, libc::SIGTERM) };
    let n = socket.recv(&mut buf).unwrap_or_else(|e| {
        panic!("no STOPPING=1 after SIGTERM: {e}\n{}", daemon.log());
    });
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "STOPPING=1");
    let deadline = Instant::now() + DAEMON_EXIT_TIMEOUT;
    let status = loop {
        if let Some(status) = daemon.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit {status}\n{}", daemon.log());
    assert!(!is_mounted(daemon.guard.path()), "mounted after SIGTERM");
}

/// Polls `condition` until it holds or `limit` passes.
fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    condition()
}

#[test]
fn log_file_gets_the_mount_line_and_is_reopened_on_sighup() {
    let bucket = Bucket::new(ServerKind::Moto);
    let guard = DaemonGuard::new();
    let log_dir = tempfile::tempdir().expect("temp dir");
    let log = log_dir.path().join("bucketfs.log");
    let rotated = log_dir.path().join("bucketfs.log.1");
    let run = run_daemonized(
        &bucket.target(),
        &bucket.name,
        guard.path(),
        &["--debug", "--log-file", log.to_str().unwrap()],
        MOUNT_COMMAND_TIMEOUT,
    );
    assert!(
        run.status.is_some_and(|s| s.success()),
        "{}",
        run.describe()
    );
    assert!(is_mounted(guard.path()));
    let first = read_lossy(&log);
    let mount_line = format!(
        "bucketfs {} mounted bucket {} ",
        env!("CARGO_PKG_VERSION"),
        bucket.name
    );
    assert!(first.contains(&mount_line), "no mount line in:\n{first}");
    assert!(first.contains(&bucket.target().endpoint_url), "{first}");

    std::fs::rename(&log, &rotated).expect("rotate the log");
    let pids = guard.daemon_pids();
    assert_eq!(pids.len(), 1, "daemons: {pids:?}");
    // SAFETY: kill(2); the pid serves our temporary mountpoint.
    unsafe { libc::kill(pids[0] as libc::pid_t, libc::SIGHUP) };
    assert!(
        wait_for(Duration::from_secs(10), || read_lossy(&log)
            .contains("reopened the log file")),
        "no new log after SIGHUP; rotated file:\n{}",
        read_lossy(&rotated)
    );
    assert!(is_mounted(guard.path()), "SIGHUP ended the mount");
    std::fs::read_dir(guard.path()).expect("list the mount after SIGHUP");

    run_ok(Command::new("umount").arg(guard.path()));
    assert_unmounted_and_daemon_gone(&guard);
    let second = read_lossy(&log);
    assert!(second.contains("unmounted"), "{second}");
    let rotated = read_lossy(&rotated);
    assert!(!rotated.contains("reopened"), "{rotated}");
    for text in [&rotated, &second] {
        assert!(!text.contains(SECRET_KEY), "secret logged:\n{text}");
        assert!(!text.contains(ACCESS_KEY), "access key logged:\n{text}");
    }
}

#[test]
fn dead_mount_of_a_killed_daemon_is_cleared_by_the_next_mount() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("f.txt", "f\n");
    let guard = DaemonGuard::new();
    let mount = || {
        let run = run_daemonized(
            &bucket.target(),
            &bucket.name,
            guard.path(),
            &[],
            MOUNT_COMMAND_TIMEOUT,
        );
        assert!(
            run.status.is_some_and(|s| s.success()),
            "{}",
            run.describe()
        );
    };
    mount();
    let pids = guard.daemon_pids();
    assert_eq!(pids.len(), 1, "daemons: {pids:?}");
    // SAFETY: kill(2); the pid serves our temporary mountpoint.
    unsafe { libc::kill(pids[0] as libc::pid_t, libc::SIGKILL) };
    assert!(
        wait_for(Duration::from_secs(10), || {
            std::fs::metadata(guard.path()).is_err_and(|e| e.raw_os_error() == Some(libc::ENOTCONN))
        }),
        "killing the daemon did not leave a dead mount"
    );

    mount();
    let table = std::fs::read_to_string("/proc/self/mounts").expect("read /proc/self/mounts");
    let mountpoint = guard.path().to_str().unwrap();
    let stacked = table
        .lines()
        .filter(|line| line.split(' ').nth(1) == Some(mountpoint))
        .count();
    assert_eq!(stacked, 1, "the dead mount is still there:\n{table}");
    assert_eq!(read_through(&guard.join("f.txt")), "f\n");
    run_ok(Command::new("umount").arg(guard.path()));
    assert_unmounted_and_daemon_gone(&guard);
}

/// A detached daemon without --log-file logs to syslog. glibc's syslog(3)
/// always writes to /dev/log, so the daemon runs in a private mount
/// namespace (unshare -m) where /dev is a fresh tmpfs whose /dev/log is our
/// socket: the machine's /dev and syslog are left alone. The mount exists
/// only in that namespace, so the script reads and unmounts there too.
#[test]
fn detached_daemon_logs_to_syslog() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("f.txt", "f\n");
    let guard = DaemonGuard::new();
    let socket_dir = tempfile::tempdir().expect("temp dir");
    let socket_path = socket_dir.path().join("log");
    let socket = UnixDatagram::bind(&socket_path).expect("bind syslog socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("socket timeout");

    let script = r#"set -e
mount -t tmpfs -o mode=755 tmpfs /dev
mknod -m 666 /dev/fuse c 10 229
mknod -m 666 /dev/null c 1 3
touch /dev/log
mount --bind "$SYSLOG_SOCKET" /dev/log
"$@"
test "$(cat "$MNT/f.txt")" = f
umount "$MNT"
"#;
    let daemon = bucketfs_command(&bucket.target(), &bucket.name, guard.path(), &[]);
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(daemon.get_program())
        .args(daemon.get_args())
        .env("SYSLOG_SOCKET", &socket_path)
        .env("MNT", guard.path());
    for (name, value) in daemon.get_envs() {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    run_ok(&mut cmd);

    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while !lines.iter().any(|l: &String| l.ends_with("unmounted")) {
        let n = socket.recv(&mut buf).unwrap_or_else(|e| {
            panic!("syslog lines so far: {lines:#?}; then {e}");
        });
        lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let mount_line = format!(
        "bucketfs {} mounted bucket {} ",
        env!("CARGO_PKG_VERSION"),
        bucket.name
    );
    // <30> is facility daemon (3 << 3) with priority info (6).
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<30>") && l.contains("bucketfs[") && l.contains(&mount_line)),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| !l.contains(SECRET_KEY)), "{lines:#?}");
    if let Err(pids) = guard.wait_daemons_gone(DAEMON_EXIT_TIMEOUT) {
        panic!("bucketfs {pids:?} still running after umount");
    }
}

#[test]
fn sigint_with_a_file_open_detaches_and_exits_once_it_is_closed() {
    let bucket = Bucket::new(ServerKind::Moto);
    bucket.put("f.txt", "f\n");
    let guard = DaemonGuard::new();
    let run = run_daemonized(
        &bucket.target(),
        &bucket.name,
        guard.path(),
        &[],
        MOUNT_COMMAND_TIMEOUT,
    );
    assert!(
        run.status.is_some_and(|s| s.success()),
        "{}",
        run.describe()
    );
    let open = File::open(guard.join("f.txt")).expect("open f.txt");
    let pids = guard.daemon_pids();
    assert_eq!(pids.len(), 1, "daemons: {pids:?}");
    // SAFETY: kill(2); the pid serves our temporary mountpoint.
    unsafe { libc::kill(pids[0] as libc::pid_t, libc::SIGINT) };
    // The busy mount is detached at once: gone from the table, still
    // serving the file already open.
    assert!(
        wait_for(Duration::from_secs(10), || !is_mounted(guard.path())),
        "still mounted after SIGINT"
    );
    let mut contents = String::new();
    std::io::Read::read_to_string(&mut &open, &mut contents).expect("read the open file");
    assert_eq!(contents, "f\n");
    assert!(
        !guard.daemon_pids().is_empty(),
        "the daemon exited with a file still open"
    );
    drop(open);
    assert_unmounted_and_daemon_gone(&guard);
}
