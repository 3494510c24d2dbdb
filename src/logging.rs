//! Where the `log` records go, chosen once at start-up.
//!
//! In the foreground, stderr (which systemd also sends to the journal). A
//! detached daemon has no terminal, so it writes to syslog, which journald
//! serves on systems that have it, unless `--log-file` names a file. The file
//! is opened in append mode and reopened on SIGHUP ([`reopen`]): logrotate
//! renames it and signals, and the next line lands in a new file at the old
//! path.
//!
//! Filtering is env_logger's in all three cases, so `RUST_LOG` means the same
//! wherever the lines go.
//!
//! No line may carry a credential, whatever `RUST_LOG` asks for. Two guards
//! stand in front of every destination ([`Redacting`]): the HTTP and AWS
//! crates, whose debug and trace output shows requests as sent (headers,
//! signing steps, endpoints with their `user:password@`), are capped at
//! info; and every message is scrubbed of the secrets registered with
//! [`redact`] and of the values after `Authorization`, `X-Amz-Signature`,
//! `X-Amz-Credential` and `X-Amz-Security-Token`. The AWS SDK logs through
//! `tracing`, which reaches `log` only when some crate enables tracing's `log`
//! feature; none does today, and a dependency update must not change what
//! `RUST_LOG=trace` reveals.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::Verbosity;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    Stderr,
    Syslog,
    File(&'a Path),
}

/// Readable by the owner's group too, so an admin group can read logs
/// without root; logs name keys at debug, so not by everyone.
const LOG_FILE_MODE: u32 = 0o640;

/// The identity syslog lines carry (`bucketfs[PID]: ...`).
const SYSLOG_IDENT: &std::ffi::CStr = c"bucketfs";

/// The log file, when there is one, for [`reopen`].
static LOG_FILE: OnceLock<Arc<LogFile>> = OnceLock::new();

/// Values no log line may show (see [`redact`]).
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Crates that log requests as sent at debug and trace (see the module notes);
/// their lines above info are dropped, whatever `RUST_LOG` says.
const CAPPED_TARGETS: &[&str] = &[
    "aws_config",
    "aws_runtime",
    "aws_sdk_",
    "aws_sigv4",
    "aws_smithy_",
    "h2",
    "hyper",
    "hyper_util",
    "reqwest",
];

/// Names after which a log line's value is a credential or a signature,
/// compared without case: headers as the SDK prints them and query
/// parameters of presigned URLs.
const SECRET_FIELDS: &[&str] = &[
    "authorization",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
];

/// Shown instead of a secret.
const MASK: &str = "***";

/// Installs the logger. Call once, before anything logs; fails only when
/// the log file cannot be opened.
pub fn init(destination: Destination<'_>, verbosity: Verbosity) -> io::Result<()> {
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(match verbosity {
        // fuser says "Mounting ..." at info; our own line says more.
        Verbosity::Normal => "info,fuser=warn",
        // Not the SDK's debug: it is verbose, and it is where request
        // signing would show.
        Verbosity::Debug => "info,fuser=warn,bucketfs=debug",
    });
    if let Ok(filters) = std::env::var("RUST_LOG") {
        builder.parse_filters(&filters);
    }
    // A request takes milliseconds; whole seconds hide which waited on which.
    builder.format_timestamp_millis();
    let (logger, max_level): (Box<dyn Log>, _) = match destination {
        Destination::Stderr => {
            let logger = builder.target(env_logger::Target::Stderr).build();
            let max_level = logger.filter();
            (Box::new(logger), max_level)
        }
        Destination::File(path) => {
            let file = Arc::new(LogFile::open(path)?);
            let _ = LOG_FILE.set(Arc::clone(&file));
            let logger = builder
                .target(env_logger::Target::Pipe(Box::new(LogFileWriter(file))))
                .write_style(env_logger::WriteStyle::Never)
                .build();
            let max_level = logger.filter();
            (Box::new(logger), max_level)
        }
        Destination::Syslog => {
            // SAFETY: the ident is a 'static C string, as openlog keeps the
            // pointer; the flags and facility are plain constants.
            unsafe { libc::openlog(SYSLOG_IDENT.as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
            let filter = builder.build();
            let max_level = filter.filter();
            (Box::new(Syslog { filter }), max_level)
        }
    };
    log::set_boxed_logger(Box::new(Redacting { inner: logger })).map_err(io::Error::other)?;
    log::set_max_level(max_level);
    Ok(())
}

/// Keeps `secret` out of every log line from now on. Short values are not
/// registered: masking every "a" would make logs unreadable, and no key or
/// token is that short.
pub fn redact(secret: &str) {
    const MIN_SECRET_CHARS: usize = 4;
    if secret.chars().count() < MIN_SECRET_CHARS {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(PoisonError::into_inner);
    if !secrets.iter().any(|known| known == secret) {
        secrets.push(secret.to_owned());
    }
}

/// The logger in front of every destination (see the module notes).
struct Redacting {
    inner: Box<dyn Log>,
}

impl Redacting {
    fn is_capped(metadata: &Metadata<'_>) -> bool {
        metadata.level() > LevelFilter::Info
            && CAPPED_TARGETS.iter().any(|capped| {
                metadata.target().strip_prefix(capped).is_some_and(|rest| {
                    capped.ends_with('_') || rest.is_empty() || rest.starts_with("::")
                })
            })
    }
}

impl Log for Redacting {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        !Self::is_capped(metadata) && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let secrets = SECRETS.read().unwrap_or_else(PoisonError::into_inner);
        let message = scrub(&record.args().to_string(), &secrets);
        self.inner.log(
            &Record::builder()
                .metadata(record.metadata().clone())
                .args(format_args!("{message}"))
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// `message` without the `secrets` and without the values of
/// [`SECRET_FIELDS`]: from the field's name, past `:`, `=`, quotes and
/// blanks, up to the next quote, `&` or the end of the line (an
/// Authorization value has blanks and commas, and its signature comes last).
fn scrub(message: &str, secrets: &[String]) -> String {
    let mut text = message.to_owned();
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), MASK);
        }
    }
    let lower = text.to_ascii_lowercase();
    let mut masked = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some((start, field)) = SECRET_FIELDS
        .iter()
        .filter_map(|field| lower[search..].find(field).map(|at| (search + at, *field)))
        .min()
    {
        let after_name = start + field.len();
        let value_start = after_name
            + text[after_name..]
                .find(|c: char| !matches!(c, ':' | '=' | '"' | '\'' | ' ' | '\t'))
                .unwrap_or(text.len() - after_name);
        let value_end = value_start
            + text[value_start..]
                .find(['"', '\'', '&', '\n', '\r'])
                .unwrap_or(text.len() - value_start);
        // A bare mention ("no Authorization header") has no value to hide.
        let has_value = text[after_name..value_start].contains([':', '=']);
        if has_value && value_end > value_start {
            masked.push_str(&text[copied..value_start]);
            masked.push_str(MASK);
            copied = value_end;
        }
        search = value_end.max(after_name);
    }
    masked.push_str(&text[copied..]);
    masked
}

/// Reopens the log file at its path, for log rotation. Returns the path, or
/// `None` when logs do not go to a file.
pub fn reopen() -> io::Result<Option<PathBuf>> {
    match LOG_FILE.get() {
        Some(file) => file.reopen().map(|()| Some(file.path.clone())),
        None => Ok(None),
    }
}

struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

impl LogFile {
    fn open(path: &Path) -> io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_owned(),
            file: Mutex::new(open_for_append(path)?),
        })
    }

    fn reopen(&self) -> io::Result<()> {
        let new = open_for_append(&self.path)?;
        *self.file.lock().unwrap_or_else(PoisonError::into_inner) = new;
        Ok(())
    }
}

fn open_for_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_FILE_MODE)
        .open(path)
}

/// env_logger's pipe target, writing to whichever file is current.
struct LogFileWriter(Arc<LogFile>);

impl Write for LogFileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// syslog(3), filtered like the other destinations. syslog adds the time,
/// ident and pid itself, and the priority carries the level.
struct Syslog {
    filter: env_logger::Logger,
}

impl Log for Syslog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.filter.matches(record) {
            return;
        }
        let text = if record.target().starts_with("bucketfs") {
            record.args().to_string()
        } else {
            format!("{}: {}", record.target(), record.args())
        };
        // A NUL would end the C string early; none of ours contain one.
        let Ok(line) = CString::new(text.replace('\0', "\\0")) else {
            return;
        };
        let priority = match record.level() {
            Level::Error => libc::LOG_ERR,
            Level::Warn => libc::LOG_WARNING,
            Level::Info => libc::LOG_INFO,
            Level::Debug | Level::Trace => libc::LOG_DEBUG,
        };
        // SAFETY: a constant "%s" format with one valid C string argument.
        unsafe { libc::syslog(priority, c"%s".as_ptr(), line.as_ptr()) };
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_signatures_are_scrubbed() {
        let secrets = ["s3cr3t-key".to_owned(), "pw0rd".to_owned()];
        assert_eq!(scrub("plain line", &secrets), "plain line");
        assert_eq!(
            scrub("key s3cr3t-key at http://u:pw0rd@h/", &secrets),
            "key *** at http://u:***@h/"
        );
        assert_eq!(
            scrub(
                r#"headers: {"authorization": "AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=ab", "x-amz-security-token": "tok"}"#,
                &[]
            ),
            r#"headers: {"authorization": "***", "x-amz-security-token": "***"}"#
        );
        assert_eq!(
            scrub(
                "GET /k?X-Amz-Credential=AKIA%2Fx&X-Amz-Signature=abcdef&x=1",
                &[]
            ),
            "GET /k?X-Amz-Credential=***&X-Amz-Signature=***&x=1"
        );
        assert_eq!(
            scrub("Authorization: AWS4-HMAC-SHA256 Signature=ab\nnext", &[]),
            "Authorization: ***\nnext"
        );
        assert_eq!(
            scrub("no Authorization header was sent", &[]),
            "no Authorization header was sent"
        );
    }

    #[test]
    fn request_logging_crates_are_capped_at_info() {
        let metadata = |target, level| Metadata::builder().target(target).level(level).build();
        let capped = |target, level| Redacting::is_capped(&metadata(target, level));
        assert!(capped("aws_sigv4::http_request::sign", Level::Trace));
        assert!(capped(
            "aws_smithy_runtime::client::orchestrator",
            Level::Debug
        ));
        assert!(capped("hyper", Level::Trace));
        assert!(!capped("aws_smithy_runtime", Level::Warn));
        assert!(!capped("hyperactive", Level::Trace));
        assert!(!capped("bucketfs::fs", Level::Trace));
    }

    #[test]
    fn log_file_follows_its_path_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bucketfs.log");
        let file = Arc::new(LogFile::open(&path).unwrap());
        let mut writer = LogFileWriter(Arc::clone(&file));
        writer.write_all(b"one\n").unwrap();
        let rotated = dir.path().join("bucketfs.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        writer.write_all(b"two\n").unwrap();
        file.reopen().unwrap();
        writer.write_all(b"three\n").unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !LOG_FILE_MODE, 0, "{mode:o}");
    }
}
