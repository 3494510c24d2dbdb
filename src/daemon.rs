//! Detaching from the terminal without losing the mount's outcome.
//!
//! `mount`, fstab and scripts expect `bucketfs BUCKET DIR` to return only once
//! the mount works, and to fail with the reason when it does not. So the
//! process forks before doing anything else: the child (the daemon) sets up
//! the mount while the parent waits on a pipe, then the child reports one line
//! through it: `ready`, or the error the user should see. The parent exits 0
//! or prints that line and exits 1. If the pipe closes without a line, the
//! child died (a panic, a signal) and the parent says so.
//!
//! Under systemd (`Type=notify`), the same moment is also reported on
//! `$NOTIFY_SOCKET` ([`Readiness::ready`] sends `READY=1`), and the start of
//! an unmount with [`notify_stopping`].
//!
//! [`daemonize`] must run before any thread exists (the tokio runtime
//! included): `fork` copies only the calling thread, so locks held by any
//! other thread would stay locked forever in the child.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The line a daemon writes once the mount is ready.
const READY: &str = "ready";

const DIED_EARLY: &str = "bucketfs: the mount daemon exited before the mount was ready";

/// The daemon's promise to report the mount's outcome exactly once.
///
/// Dropping it without calling [`Readiness::ready`] or [`Readiness::failed`]
/// closes the pipe, and the waiting parent reports that the daemon died.
#[derive(Debug)]
pub struct Readiness {
    /// Write end of the pipe to the waiting parent; `None` in the foreground.
    pipe: Option<File>,
}

/// Forks into the background. Returns only in the child, which must then
/// report through the returned [`Readiness`]; the parent waits for that
/// report and exits with it. Call before creating any thread.
pub fn daemonize() -> io::Result<Readiness> {
    // Anything still buffered would otherwise be written by both processes.
    io::stdout().flush()?;
    let (read_end, write_end) = pipe()?;
    // SAFETY: no other thread exists (this function's contract), so the child
    // is a complete copy of the process and may run any code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read_end);
            let readiness = Readiness {
                pipe: Some(File::from(write_end)),
            };
            if let Err(err) = detach_from_terminal() {
                readiness.failed(&format!("bucketfs: cannot detach from the terminal: {err}"));
                std::process::exit(1);
            }
            Ok(readiness)
        }
        _child => {
            // The parent must not hold the write end, or it would never see
            // the pipe close when the child dies.
            drop(write_end);
            match read_report(File::from(read_end)) {
                Report::Ready => std::process::exit(0),
                Report::Failed(line) => {
                    eprintln!("{line}");
                    std::process::exit(1)
                }
                Report::Died => {
                    eprintln!("{DIED_EARLY}");
                    std::process::exit(1)
                }
            }
        }
    }
}

impl Readiness {
    /// For a mount that stays in the foreground: nobody waits for a report.
    pub fn foreground() -> Self {
        Readiness { pipe: None }
    }

    /// The mount is up. In the daemon, stdin, stdout and stderr now point to
    /// /dev/null, since the terminal they were may be gone at any time.
    pub fn ready(mut self) {
        let Some(mut pipe) = self.pipe.take() else {
            notify_service_manager("READY=1");
            return;
        };
        // systemd's main process is the parent, which exits as soon as it
        // reads the pipe; MAINPID names the process to watch from now on.
        notify_service_manager(&format!("READY=1\nMAINPID={}", std::process::id()));
        // Detach first, so that nothing reaches the terminal once the parent
        // has returned the prompt.
        if let Err(err) = redirect_stdio_to_null() {
            log::warn!("cannot redirect stdio to /dev/null: {err}");
        }
        // An error means the parent was killed; the mount stands regardless
        // and there is nobody left to tell.
        let _ = pipe.write_all(format!("{READY}\n").as_bytes());
    }

    /// The mount failed. `message` is the line the user sees, `bucketfs: `
    /// included; in the daemon the parent prints it, in the foreground this does.
    pub fn failed(mut self, message: &str) {
        let line = one_line(message);
        match self.pipe.take() {
            // An error means the parent was killed: nobody left to tell.
            Some(mut pipe) => {
                let _ = pipe.write_all(format!("{line}\n").as_bytes());
            }
            None => eprintln!("{line}"),
        }
    }
}

/// Tells systemd that the mount is going away (`STOPPING=1`).
pub fn notify_stopping() {
    notify_service_manager("STOPPING=1");
}

/// sd_notify(3): one datagram of newline-separated `KEY=VALUE` lines to the
/// socket in `$NOTIFY_SOCKET`. Without the variable, not run as a systemd
/// `Type=notify` service: nothing to do. A failure only costs systemd's view
/// of the service, so it is logged, not returned.
fn notify_service_manager(message: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    match send_notification(&socket, message) {
        Ok(()) => log::debug!("told systemd {message:?}"),
        Err(error) => log::warn!("cannot notify systemd at {}: {error}", socket.display()),
    }
}

fn send_notification(socket: &OsStr, message: &str) -> io::Result<()> {
    let address = match socket.as_bytes().split_first() {
        // systemd uses the abstract namespace for some sockets.
        Some((b'@', name)) => SocketAddr::from_abstract_name(name)?,
        Some((b'/', _)) => SocketAddr::from_pathname(socket)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a unix socket path or @abstract name",
            ));
        }
    };
    UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &address)?;
    Ok(())
}

/// The parent reads one line only, so a multi-line message would be cut.
fn one_line(message: &str) -> String {
    let line = message
        .lines()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    // An empty line would read as the daemon dying, "ready" as success.
    if line.is_empty() || line == READY {
        format!("bucketfs: mount failed {line}")
            .trim_end()
            .to_owned()
    } else {
        line
    }
}

/// What the waiting parent learned from the pipe.
#[derive(Debug, PartialEq, Eq)]
enum Report {
    Ready,
    /// The line to print, without its newline.
    Failed(String),
    Died,
}

fn read_report(pipe: impl Read) -> Report {
    let mut line = Vec::new();
    // A read error leaves whatever arrived; with nothing, the child is as
    // good as dead to us.
    let _ = BufReader::new(pipe).read_until(b'\n', &mut line);
    let text = String::from_utf8_lossy(&line);
    match text.trim_end_matches(['\n', '\r']) {
        "" => Report::Died,
        READY => Report::Ready,
        failed => Report::Failed(failed.to_owned()),
    }
}

/// A pipe whose ends close on exec: the daemon may run helpers (fusermount3
/// for unprivileged mounts), and a helper inheriting the write end would keep
/// the parent waiting after the daemon died.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a writable array of two c_ints, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and nothing else
    // owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A new session has no controlling terminal, so the shell's hangup and job
/// control signals no longer reach the daemon; "/" keeps the daemon from
/// holding the caller's directory (and its filesystem) busy.
fn detach_from_terminal() -> io::Result<()> {
    // SAFETY: setsid takes no arguments and touches no memory of ours.
    if unsafe { libc::setsid() } == -1 {
        return Err(io::Error::last_os_error());
    }
    std::env::set_current_dir("/")
}

fn redirect_stdio_to_null() -> io::Result<()> {
    let _ = io::stdout().flush();
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: both descriptors are open; dup2 atomically replaces `fd`,
        // which std's stdio handles use by number and never close.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn reports() {
        assert_eq!(read_report(&b"ready\n"[..]), Report::Ready);
        assert_eq!(read_report(&b"ready"[..]), Report::Ready);
        assert_eq!(read_report(&b""[..]), Report::Died);
        assert_eq!(
            read_report(&b"bucketfs: no such bucket\nmore\n"[..]),
            Report::Failed("bucketfs: no such bucket".to_owned())
        );
        assert_eq!(
            read_report(&b"bucketfs: cut sh"[..]),
            Report::Failed("bucketfs: cut sh".to_owned())
        );
    }

    #[test]
    fn messages_become_one_line() {
        assert_eq!(one_line("bucketfs: a\n  b\n"), "bucketfs: a b");
        assert_eq!(one_line(""), "bucketfs: mount failed");
        assert_eq!(one_line("ready"), "bucketfs: mount failed ready");
        let report = read_report(format!("{}\n", one_line("x\ny")).as_bytes());
        assert_eq!(report, Report::Failed("x y".to_owned()));
    }

    /// Which daemon to be when run by `daemon_end_to_end`.
    const CHILD_ENV: &str = "BUCKETFS_TEST_DAEMON";

    /// Not a test on its own: `daemon_end_to_end` runs the test binary on
    /// just this function, so the fork happens in a process of its own.
    #[test]
    fn daemon_child() {
        let Ok(behaviour) = std::env::var(CHILD_ENV) else {
            return;
        };
        let readiness = daemonize().expect("daemonize");
        // SAFETY: write(2) on fd 2 from a valid buffer; fd 2 is the real
        // stderr, which the test harness does not capture.
        let leak = || unsafe { libc::write(2, b"leaked\n".as_ptr().cast(), 7) };
        match behaviour.as_str() {
            "ready" => {
                readiness.ready();
                leak();
            }
            "failed" => readiness.failed("bucketfs: no such\nbucket"),
            _ => drop(readiness),
        }
        // SAFETY: _exit ends the process at once, leaving the harness (whose
        // other threads did not survive the fork) out of it.
        unsafe { libc::_exit(0) };
    }

    fn run_daemon(behaviour: &str) -> (Option<i32>, String) {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "daemon::tests::daemon_child", "--nocapture"])
            .args(["--test-threads", "1", "--quiet"])
            .env(CHILD_ENV, behaviour)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr)
    }

    #[test]
    fn daemon_end_to_end() {
        let (code, stderr) = run_daemon("ready");
        assert_eq!(code, Some(0), "{stderr}");
        assert!(!stderr.contains("leaked"), "{stderr}");

        let (code, stderr) = run_daemon("failed");
        assert_eq!(code, Some(1));
        assert_eq!(stderr.trim_end(), "bucketfs: no such bucket");

        let (code, stderr) = run_daemon("died");
        assert_eq!(code, Some(1));
        assert_eq!(stderr.trim_end(), DIED_EARLY);
    }

    #[test]
    fn notifications_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send_notification(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("bucketfs-test-notify-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();
        send_notification(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");

        assert!(send_notification(OsStr::new("vsock:2:1"), "READY=1").is_err());
    }

    #[test]
    fn foreground_is_silent_when_ready() {
        Readiness::foreground().ready();
    }
}
