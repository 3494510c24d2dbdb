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

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use log::{Level, Log, Metadata, Record};

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
    log::set_boxed_logger(logger).map_err(io::Error::other)?;
    log::set_max_level(max_level);
    Ok(())
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
