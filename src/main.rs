//! `bucketfs BUCKET MOUNTPOINT`: parse, check, detach, mount, serve until
//! unmounted or signalled.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bucketfs::cache::disk::DiskCache;
use bucketfs::cli::{self, Parsed};
use bucketfs::config::{MountConfig, WriteMode};
use bucketfs::daemon::{self, Readiness};
use bucketfs::fs::Filesystem;
use bucketfs::fuse::{self, MountOptions};
use bucketfs::logging;
use bucketfs::runtimes::{self, ListingRuntime};
use bucketfs::store::s3::S3Store;
use bucketfs::store::stale_uploads;
use bucketfs::store::{ListFrom, ObjectStore, StoreError};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The start-up check must answer at the prompt: a dead endpoint fails
/// within this bound even when --request-timeout allows more.
const STARTUP_CHECK_TIMEOUT: Duration = Duration::from_secs(8);

fn main() -> ExitCode {
    let config = match cli::parse_args(std::env::args_os()) {
        Ok(Parsed::Mount(config)) => *config,
        Ok(Parsed::Exit(exit)) => exit.print_and_exit(),
        Ok(Parsed::FakeMount) => return ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bucketfs: {error:#}");
            return ExitCode::from(2);
        }
    };
    let destination = match (&config.log.file, config.foreground) {
        (Some(path), _) => logging::Destination::File(path),
        (None, true) => logging::Destination::Stderr,
        (None, false) => logging::Destination::Syslog,
    };
    // Before the fork, so that a log file that cannot be opened is reported
    // at the prompt; opening a file or syslog starts no thread.
    if let Err(error) = logging::init(destination, config.log.verbosity) {
        eprintln!("bucketfs: cannot open the log: {error}");
        return ExitCode::FAILURE;
    }
    keep_secrets_out_of_the_log(&config);
    if cli::is_dead_mount(&config.mountpoint) {
        // Nothing can serve a dead mount again, and the caller asked for
        // ours there: clearing it lets a restart after a crash (systemd's
        // Restart=, a second `mount -a`) succeed without a human.
        match fuse::clear_dead_mount(&config.mountpoint) {
            Ok(()) => log::warn!(
                "cleared the dead FUSE mount at {} (its daemon had died)",
                config.mountpoint.display()
            ),
            Err(error) => log::warn!(
                "cannot clear the dead FUSE mount at {}: {error}",
                config.mountpoint.display()
            ),
        }
    }
    if let Err(message) = cli::check_mountpoint(&config.mountpoint) {
        eprintln!("bucketfs: {message}");
        return ExitCode::FAILURE;
    }
    // Detach before any thread exists: fork keeps only the calling thread.
    let readiness = if config.foreground {
        Readiness::foreground()
    } else {
        match daemon::daemonize() {
            Ok(readiness) => readiness,
            Err(error) => {
                eprintln!("bucketfs: cannot start the mount daemon: {error}");
                return ExitCode::FAILURE;
            }
        }
    };
    match run(config, readiness) {
        Ok(()) => ExitCode::SUCCESS,
        // Already told through `Readiness::failed`, as the one line the user sees.
        Err(error) if error.is::<StartupFailed>() => ExitCode::FAILURE,
        Err(error) => {
            log::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A failure before the mount was live, already reported to the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct StartupFailed(String);

/// Reports a start-up failure as the one line the user sees and returns it
/// as an error that `main` does not log again.
fn startup_failed(readiness: Readiness, message: String) -> anyhow::Error {
    readiness.failed(&format!("bucketfs: {message}"));
    StartupFailed(message).into()
}

/// Allocations from this size up are mapped and unmapped directly. glibc
/// otherwise raises its threshold after the first large free, and then keeps
/// multi-MiB read parts in fragmented heaps it never returns, which measured
/// 658 MiB peak RSS against a 512 MiB cache.
const MMAP_THRESHOLD_BYTES: libc::c_int = 256 * 1024;

fn run(config: MountConfig, readiness: Readiness) -> anyhow::Result<()> {
    // SAFETY: mallopt only tunes the allocator; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
    }
    let runtime =
        runtimes::io_runtime(config.io_threads).context("cannot start the I/O runtime")?;
    // Watched from before the mount exists, so that a stop request during
    // start-up is served (by unmounting) instead of killing the process and
    // leaving a dead mount behind.
    let mut signals = {
        let _context = runtime.enter();
        Signals::new().context("cannot watch signals")?
    };

    // Before the bucket check: a cache directory in use is refused at once.
    let disk_cache = match &config.fs.disk_cache {
        Some(disk) => match DiskCache::open(&disk.dir, &config.store.bucket, disk.max_bytes) {
            Ok(cache) => Some(Arc::new(cache)),
            Err(error) => return Err(startup_failed(readiness, error.to_string())),
        },
        None => None,
    };

    let store = match runtime.block_on(S3Store::new(&config.store)) {
        Ok(store) => store,
        Err(error) => {
            let message = format!("cannot set up the S3 client: {}", root_cause(&error));
            return Err(startup_failed(readiness, message));
        }
    };
    if let Err(message) = runtime.block_on(check_bucket(&store, &config)) {
        return Err(startup_failed(readiness, message));
    }

    let store = Arc::new(store);
    // In the background: the mount waits for no more than the bucket check.
    runtime.spawn(stale_uploads::report(
        Arc::clone(&store),
        config.store.bucket.clone(),
        config.fs.prefix.clone(),
        stale_uploads::STALE_UPLOAD_AGE,
    ));

    // Stopped when run() returns: after the session and the last uploads.
    let listing_runtime = ListingRuntime::start().context("cannot start the listing runtime")?;
    let fs = match Filesystem::new(store, config.fs.clone(), config.store.max_concurrency) {
        Ok(fs) => {
            let fs = fs.with_listing_runtime(listing_runtime.handle());
            Arc::new(match disk_cache {
                Some(disk) => fs.with_disk_cache(disk),
                None => fs,
            })
        }
        Err(error) => {
            let message = format!("cannot create the staging directory: {error}");
            return Err(startup_failed(readiness, message));
        }
    };
    let options = MountOptions {
        source: &config.store.bucket,
        access: config.access,
        write_mode: config.fs.write_mode,
    };
    let mounted = fuse::mount(
        Arc::clone(&fs),
        runtime.handle().clone(),
        &config.mountpoint,
        &options,
    );
    let (session, mut unmounter) = match mounted {
        Ok(mounted) => mounted,
        Err(error) => {
            let message = format!("cannot mount at {}: {error}", config.mountpoint.display());
            return Err(startup_failed(readiness, message));
        }
    };
    let (finished_sender, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bucketfs-fuse".into())
        .spawn(move || {
            let _ = finished_sender.send(session.run());
        })
        .context("cannot start the FUSE thread")?;

    log::info!(
        "bucketfs {} mounted bucket {} (prefix {:?}) at {}: {}",
        env!("CARGO_PKG_VERSION"),
        config.store.bucket,
        config.fs.prefix,
        config.mountpoint.display(),
        describe_options(&config)
    );
    readiness.ready();

    runtime.block_on(async move {
        tokio::pin!(finished);
        let mut unsaved = Unsaved::default();
        let session = loop {
            tokio::select! {
                // Unmounted from outside (`umount`, `fusermount3 -u`), or the
                // connection was aborted.
                result = &mut finished => break result,
                _ = signals.terminate.recv() => log::info!("SIGTERM: unmounting"),
                _ = signals.interrupt.recv() => log::info!("SIGINT: unmounting"),
                _ = signals.hangup.recv() => {
                    match logging::reopen() {
                        Ok(Some(path)) => log::info!("SIGHUP: reopened the log file {}", path.display()),
                        Ok(None) => log::info!("SIGHUP: no log file to reopen"),
                        Err(error) => log::error!("SIGHUP: cannot reopen the log file: {error}"),
                    }
                    continue;
                }
            }
            daemon::notify_stopping();
            // Nothing written is lost to a service stop: every dirty file is
            // uploaded while the mount still stands, so a stop that ends in
            // SIGKILL (systemd's TimeoutStopSec) after this point loses
            // nothing written before the signal.
            unsaved.merge(upload_open_files(&fs).await);
            if let Err(error) = unmounter.unmount() {
                // Files are still open (EBUSY): detach, as `umount -l` would.
                log::warn!("unmount failed ({error}); detaching the busy mount");
                fuse::unmount_lazily(&config.mountpoint).context("lazy unmount failed")?;
            }
            break (&mut finished).await;
        };
        daemon::notify_stopping();
        // An aborted connection leaves the mount in the table, answering
        // "Transport endpoint is not connected" until someone detaches it.
        if is_disconnected(&config.mountpoint)
            && let Err(error) = fuse::clear_dead_mount(&config.mountpoint)
        {
            log::warn!("cannot detach the dead mount: {error}");
        }
        // The kernel does not always release every open file before the
        // session ends: an aborted connection releases none, and a lazy
        // unmount can end the session with releases still queued. What was
        // written to them is still staged here.
        unsaved.merge(upload_open_files(&fs).await);
        fs.finish_disk_writes().await;
        let ended = finished_session(session);
        if let (Err(error), false) = (&ended, unsaved.is_empty()) {
            log::error!("{error:#}");
        }
        unsaved.into_result().and(ended)
    })
}

/// The files a shutdown could not upload, over every attempt: a file that
/// failed both before and after the unmount counts once.
#[derive(Debug, Default)]
struct Unsaved {
    keys: std::collections::BTreeSet<String>,
}

impl Unsaved {
    fn merge(&mut self, other: Unsaved) {
        self.keys.extend(other.keys);
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// An error, which makes the exit status non-zero, if any file was lost.
    fn into_result(self) -> anyhow::Result<()> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let count = self.keys.len();
        let names = self.keys.into_iter().collect::<Vec<_>>().join(", ");
        anyhow::bail!("{count} open file(s) could not be uploaded before exiting: {names}")
    }
}

/// Uploads every file still dirty on the mount; see [`Unsaved`].
async fn upload_open_files(fs: &Filesystem<S3Store>) -> Unsaved {
    Unsaved {
        keys: fs.commit_all().await.into_iter().collect(),
    }
}

/// Whether `path` is a FUSE mount whose connection is gone. statfs, unlike
/// stat, is never answered from the kernel's attribute cache, so it sees an
/// aborted connection at once.
fn is_disconnected(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes only into `buffer`, which is large enough; the
    // path is a valid NUL-terminated string.
    let mut buffer: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(path.as_ptr(), &mut buffer) };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOTCONN)
}

/// The signals that stop the daemon or rotate its log.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
    /// Log rotation, as for most daemons; it no longer ends the process.
    hangup: Signal,
}

impl Signals {
    /// Must run inside the runtime's context.
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

fn finished_session(
    result: Result<std::io::Result<()>, tokio::sync::oneshot::error::RecvError>,
) -> anyhow::Result<()> {
    match result {
        Ok(Ok(())) => {
            log::info!("unmounted");
            Ok(())
        }
        Ok(Err(error)) => Err(error).context("the FUSE session failed"),
        Err(_) => anyhow::bail!("the FUSE thread ended without a result"),
    }
}

/// One cheap request before mounting, so that a typo in the bucket, the
/// credentials or the endpoint fails at the prompt rather than on first use.
async fn check_bucket(store: &S3Store, config: &MountConfig) -> Result<(), String> {
    let bucket = &config.store.bucket;
    let endpoint = config
        .store
        .endpoint_url
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .unwrap_or_else(|| "AWS S3".to_owned());
    let endpoint = without_userinfo(&endpoint).into_owned();
    let request = store.list_page(&config.fs.prefix, true, ListFrom::Start, 1);
    let result = match tokio::time::timeout(STARTUP_CHECK_TIMEOUT, request).await {
        Ok(result) => result,
        Err(_) => {
            return Err(format!(
                "{endpoint} did not answer within {} s (is the endpoint right and reachable?)",
                STARTUP_CHECK_TIMEOUT.as_secs()
            ));
        }
    };
    match result {
        Ok(_) => Ok(()),
        Err(StoreError::NoSuchBucket { .. }) => {
            Err(format!("bucket '{bucket}' does not exist at {endpoint}"))
        }
        Err(StoreError::InvalidCredentials { message }) => Err(format!(
            "{endpoint} rejected the credentials for bucket '{bucket}': {message}"
        )),
        Err(StoreError::AccessDenied { message }) => {
            Err(format!("access to bucket '{bucket}' denied: {message}"))
        }
        Err(StoreError::Timeout) => Err(format!("{endpoint} did not answer in time")),
        Err(StoreError::Unreachable { source }) => {
            Err(format!("cannot reach {endpoint}: {}", root_cause(&*source)))
        }
        Err(
            error @ (StoreError::NotFound { .. }
            | StoreError::PreconditionFailed { .. }
            | StoreError::Other { .. }),
        ) => Err(format!(
            "cannot list bucket '{bucket}' at {endpoint}: {}",
            root_cause(&error)
        )),
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The effective options, for the one log line each mount writes. Never
/// includes credentials.
fn describe_options(config: &MountConfig) -> String {
    let fs = &config.fs;
    let store = &config.store;
    format!(
        "{}, endpoint {}, region {}, profile {}, {}{}access {:?}, uid {} gid {} file mode {:o} \
         dir mode {:o}, metadata {:?}, metadata ttl {:?} (not found: {:?}), cache {} MiB, disk cache {}, read part {} MiB, \
         write part {} MiB, concurrency {}, stall timeout {:?}, connect timeout {:?}, copy timeout \
         {:?}, {} attempts",
        match fs.write_mode {
            WriteMode::ReadOnly => "read-only",
            WriteMode::ReadWrite => "read-write",
        },
        store
            .endpoint_url
            .as_deref()
            .map_or_else(|| "default".into(), without_userinfo),
        store.region.as_deref().unwrap_or("default"),
        store.profile.as_deref().unwrap_or("default"),
        if store.force_path_style {
            "path-style, "
        } else {
            ""
        },
        if store.no_sign_request {
            "unsigned, "
        } else {
            ""
        },
        config.access,
        fs.owner.uid,
        fs.owner.gid,
        fs.owner.file_mode,
        fs.owner.dir_mode,
        fs.posix_metadata,
        fs.metadata_ttl,
        fs.negative_metadata_ttl,
        fs.max_cache_size_bytes >> 20,
        fs.disk_cache.as_ref().map_or_else(
            || "none".to_owned(),
            |disk| format!("{} MiB in {}", disk.max_bytes >> 20, disk.dir.display())
        ),
        fs.read_part_size_bytes >> 20,
        fs.write_part_size_bytes >> 20,
        store.max_concurrency,
        store.stall_timeout,
        store.connect_timeout,
        store.copy_timeout,
        store.max_attempts,
    )
}

/// Registers the credentials that this process may come to know with the
/// logger, so that no line shows them even where a library prints them.
/// Credentials from profile files are not known here; the logger's cap on
/// the SDK's own output covers them.
fn keep_secrets_out_of_the_log(config: &MountConfig) {
    for variable in [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
    ] {
        if let Ok(secret) = std::env::var(variable) {
            logging::redact(&secret);
        }
    }
    let endpoints = [
        config.store.endpoint_url.clone(),
        std::env::var("AWS_ENDPOINT_URL").ok(),
        std::env::var("AWS_ENDPOINT_URL_S3").ok(),
    ];
    for endpoint in endpoints.iter().flatten() {
        if let Some(userinfo) = userinfo(endpoint) {
            logging::redact(userinfo);
            if let Some((_, password)) = userinfo.split_once(':') {
                logging::redact(password);
            }
        }
    }
}

/// The `user:password` of a URL's authority, if it has one.
fn userinfo(url: &str) -> Option<&str> {
    let authority_start = url.find("://").map_or(0, |scheme_end| scheme_end + 3);
    let authority = &url[authority_start..];
    let authority = &authority[..authority.find(['/', '?', '#']).unwrap_or(authority.len())];
    authority.rfind('@').map(|at| &authority[..at])
}

/// An endpoint URL with any `user:password@` replaced, for the log.
fn without_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let authority_start = url.find("://").map_or(0, |scheme_end| scheme_end + 3);
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |end| authority_start + end);
    match url[authority_start..authority_end].rfind('@') {
        Some(at) => format!(
            "{}***{}",
            &url[..authority_start],
            &url[authority_start + at..]
        )
        .into(),
        None => url.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::{userinfo, without_userinfo};

    #[test]
    fn endpoint_credentials_are_not_logged() {
        assert_eq!(without_userinfo("http://h:9000/p@x"), "http://h:9000/p@x");
        assert_eq!(
            without_userinfo("https://key:secret@h:9000/a"),
            "https://***@h:9000/a"
        );
        assert_eq!(without_userinfo("key:secret@h"), "***@h");
        assert_eq!(
            userinfo("https://key:secret@h:9000/a@b"),
            Some("key:secret")
        );
        assert_eq!(userinfo("http://h:9000/p@x"), None);
    }
}
