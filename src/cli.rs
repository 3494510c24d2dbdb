//! The command line, `bucketfs [OPTIONS] <BUCKET> <MOUNTPOINT>`, turned into a
//! validated [`MountConfig`].
//!
//! Options come in two spellings: long options (`--read-only`, `--uid 0`) and
//! mount(8) options (`-o ro,uid=0`), which is how mount.fuse3 passes an fstab
//! entry. There is one definition of the options, the clap struct [`Cli`]; a
//! mount option is a long option's name with `_` for `-`, looked up in clap's
//! own argument list, so every new long option gets its `-o` form for free.
//!
//! Parsing runs clap twice. The first pass only tokenizes (clap knows which
//! options take values, so `-fo ro` and `--prefix=-o` mean what they should)
//! and collects the `-o` lists. Each mount option is then rewritten as a long
//! option, and the second pass parses those long options placed *before* the
//! original arguments. Every option overrides its earlier occurrences, so an
//! option typed on the command line wins over the same setting in `-o`.
//!
//! Run as `mount.bucketfs` (a link mount(8) finds for `-t bucketfs`), the
//! arguments follow mount(8)'s helper convention instead and are rewritten
//! into the bucketfs form first; see [`helper_args`].

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::builder::{NonEmptyStringValueParser, RangedU64ValueParser};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches, Parser};

mod mount_helper;
mod mountpoint;
mod values;

pub use mountpoint::{check_mountpoint, is_dead_mount};
pub use values::INDEFINITE_TTL;

use mount_helper::{helper_args, translate_mount_options};
use mountpoint::resolve_mountpoint;
use values::{parse_bucket, parse_mode, parse_prefix, parse_timeout, parse_ttl};

use crate::config::{
    Access, DiskCacheConfig, FsConfig, LogConfig, MAX_SINGLE_COPY_BYTES, MountConfig, OwnerConfig,
    PosixMetadata, STREAM_RETAIN_BYTES, StoreConfig, Verbosity, WriteMode,
};

const MIB: u64 = 1024 * 1024;

/// S3 itself accepts ranged GETs of any size; the cap keeps one open file from
/// holding a huge buffer and matches the largest part size other S3 FUSE
/// clients offer.
const MAX_READ_PART_SIZE_MIB: u64 = 256;

/// clap id of `-o`, which `Cli` does not hold: it is consumed by translation.
const MOUNT_OPTIONS_ID: &str = "mount_options";

/// `bucketfs --version`: the release and the commit it was built from
/// (build.rs; `unknown` for a source tree without git history).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BUCKETFS_BUILD_COMMIT"),
    ")"
);

const AFTER_LONG_HELP: &str = "\
Mount options (-o):
  Every long option above also works as a mount option, named with '_' for '-':
  NAME for a switch, NAME=VALUE otherwise. ro means --read-only. Options typed
  on the command line take precedence over the same setting in -o.
  Accepted and ignored: rw, _netdev, nofail, auto, noauto, user, users,
  defaults, dev, nodev, suid, nosuid, exec, noexec, async, atime, noatime,
  relatime, fsname=, subtype=, default_permissions, x-systemd.*

Credentials, region and endpoint also come from the usual AWS sources:
  AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ~/.aws/config, instance roles.

Examples:
  bucketfs my-bucket /mnt/s3 --prefix logs/ --read-only
  bucketfs my-bucket /mnt/s3 -o endpoint_url=http://127.0.0.1:9000/,force_path_style
  /etc/fstab:
  my-bucket  /mnt/s3  fuse.bucketfs  _netdev,allow_other,metadata_ttl=5  0 0";

/// The options, defined once; `-o` reaches them through translation.
#[derive(Debug, Parser)]
#[command(
    name = "bucketfs",
    bin_name = "bucketfs",
    version = VERSION,
    about = "Mount an S3 bucket as a POSIX filesystem over FUSE",
    args_override_self = true,
    after_long_help = AFTER_LONG_HELP
)]
struct Cli {
    /// Name of the S3 bucket
    #[arg(value_parser = parse_bucket)]
    bucket: String,

    /// Directory to mount on
    mountpoint: PathBuf,

    /// Stay in the foreground instead of detaching once mounted
    #[arg(short, long)]
    foreground: bool,

    /// Log to this file instead of stderr (foreground) or syslog (detached)
    ///
    /// Reopened on SIGHUP, so logrotate can move it away.
    #[arg(long, value_name = "PATH", help_heading = "Logging")]
    log_file: Option<PathBuf>,

    /// Log bucketfs's own detail (RUST_LOG, when set, takes precedence)
    #[arg(long, help_heading = "Logging")]
    debug: bool,

    /// Mount only the keys under this prefix, e.g. logs/2024/
    #[arg(long, value_name = "PREFIX", value_parser = parse_prefix, default_value = "",
        hide_default_value = true, help_heading = "Bucket")]
    prefix: String,

    /// S3-compatible endpoint [default: AWS, or $AWS_ENDPOINT_URL]
    #[arg(long, value_name = "URL", value_parser = NonEmptyStringValueParser::new(),
        help_heading = "Bucket")]
    endpoint_url: Option<String>,

    /// Region of the bucket [default: $AWS_REGION, or the profile's]
    #[arg(long, value_name = "REGION", value_parser = NonEmptyStringValueParser::new(),
        help_heading = "Bucket")]
    region: Option<String>,

    /// Profile in ~/.aws/config [default: $AWS_PROFILE, or default]
    #[arg(long, value_name = "NAME", value_parser = NonEmptyStringValueParser::new(),
        help_heading = "Bucket")]
    profile: Option<String>,

    /// Address the bucket as ENDPOINT/BUCKET, not BUCKET.ENDPOINT
    ///
    /// Most S3-compatible servers need this.
    #[arg(long, help_heading = "Bucket")]
    force_path_style: bool,

    /// Send anonymous requests (public buckets); no credentials needed
    #[arg(long, help_heading = "Bucket")]
    no_sign_request: bool,

    /// Hash every upload's body into its signature (SHA-256)
    ///
    /// Off, a body is guarded by its CRC32 checksum, which the signature
    /// covers, as Mountpoint sends it: S3 rejects a body that was damaged on
    /// the way. On, a body altered on purpose is rejected too, which matters
    /// only over plain http:// through a network you do not trust; it costs
    /// about a third of the daemon's CPU while writing.
    #[arg(long, conflicts_with = "no_sign_request", help_heading = "Bucket")]
    sign_payloads: bool,

    /// Seconds without a byte moving after which a request attempt fails
    ///
    /// Counted in every phase: connecting, sending, awaiting the answer,
    /// receiving; a slow transfer that keeps moving never times out. Once the
    /// endpoint leaves a request unanswered and the next one too, further
    /// requests fail at once for 5 s at a time until one gets an answer, so
    /// a dead endpoint gives EIO within about twice this. --request-timeout is the former name.
    #[arg(long, visible_alias = "request-timeout", value_name = "SECONDS",
        value_parser = parse_timeout, default_value = "10", help_heading = "Requests")]
    stall_timeout: Duration,

    /// Time limit on opening a connection (TCP and TLS), in seconds
    ///
    /// Capped at --stall-timeout.
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout, default_value = "5",
        help_heading = "Requests")]
    connect_timeout: Duration,

    /// Seconds to wait for the answer to a server-side copy
    ///
    /// CopyObject (renames, attribute changes), UploadPartCopy and
    /// CompleteMultipartUpload move no bytes while the store works on
    /// gigabytes; this bounds that wait instead of --stall-timeout.
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout, default_value = "300",
        help_heading = "Requests")]
    copy_timeout: Duration,

    /// Failed attempts in a row per request, the first included
    ///
    /// Throttling, 5xx, resets and timeouts are retried after a jittered
    /// exponential back-off; other errors fail at once. A read that breaks off
    /// resumes where it stopped.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..),
        default_value = "3", help_heading = "Requests")]
    max_attempts: u32,

    /// Requests in flight to the store, all kinds together
    ///
    /// More speeds up parallel reads but costs memory and connections.
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..),
        default_value = "16", help_heading = "Requests")]
    max_concurrency: usize,

    /// Threads of the I/O runtime: FUSE requests that wait, reads, writes
    /// [default: one per CPU]
    ///
    /// Background listings (tree walks, directories listed ahead) and their
    /// HEADs run on one thread of their own whatever this says (README,
    /// "Performance").
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024),
        help_heading = "Requests")]
    io_threads: Option<usize>,

    /// Mount read-only (mount option: ro)
    #[arg(long, help_heading = "Access")]
    read_only: bool,

    /// Let all users access the mount
    ///
    /// Unless run by root, needs user_allow_other in /etc/fuse.conf.
    #[arg(long, conflicts_with = "allow_root", help_heading = "Access")]
    allow_other: bool,

    /// Let root access the mount too
    ///
    /// Unless run by root, needs user_allow_other in /etc/fuse.conf.
    #[arg(long, help_heading = "Access")]
    allow_root: bool,

    /// Owner of entries without POSIX metadata [default: your uid]
    #[arg(long, value_name = "N", help_heading = "Access")]
    uid: Option<u32>,

    /// Group of entries without POSIX metadata [default: your gid]
    #[arg(long, value_name = "N", help_heading = "Access")]
    gid: Option<u32>,

    /// Mode of files without POSIX metadata, in octal
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode, default_value = "0644",
        help_heading = "Access")]
    file_mode: u16,

    /// Mode of directories without POSIX metadata, in octal
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode, default_value = "0755",
        help_heading = "Access")]
    dir_mode: u16,

    /// Seconds to trust cached lookups, attributes and listings (e.g. 0.5), or
    /// `indefinite`, or `minimal`
    ///
    /// Longer saves requests and shows other clients' changes later. `minimal`
    /// (0) asks the bucket every time; `indefinite` never asks again, so use it
    /// only for a bucket that nothing else writes while it is mounted.
    #[arg(long, value_name = "SECONDS|indefinite|minimal", value_parser = parse_ttl,
        default_value = "1", help_heading = "Caching")]
    metadata_ttl: Duration,

    /// How long "no such file" is trusted, as --metadata-ttl [default: --metadata-ttl]
    ///
    /// A name that does not exist yet and that another client creates shows
    /// up after at most this long.
    #[arg(long, value_name = "SECONDS|indefinite|minimal", value_parser = parse_ttl,
        help_heading = "Caching")]
    negative_metadata_ttl: Option<Duration>,

    /// Memory for cached file data, read-ahead included, in MiB
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=u64::MAX / MIB),
        default_value = "512", help_heading = "Caching")]
    max_cache_size: u64,

    /// Files and directories the kernel may keep known at once
    ///
    /// Past it, the kernel is asked to forget the files known longest, then directories
    /// (about 450 bytes of memory each); a walk over more keys than this
    /// costs no more memory, only lookups again if it comes back.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(100..=1_000_000_000),
        default_value = "250000", help_heading = "Caching")]
    max_inodes: u64,

    /// Objects whose POSIX headers (mode, owner, times) stay cached
    ///
    /// Kept by key and ETag, so that a walk or listing after
    /// --metadata-ttl costs no HEAD for objects that did not change;
    /// about 90 bytes each, 200 for objects that carry headers.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000_000),
        default_value = "1000000", help_heading = "Caching")]
    max_cached_headers: u64,

    /// Keep file data read from the bucket in DIR too, across remounts
    ///
    /// Blocks are checksummed files named by hashes, in a directory made
    /// private (0700); one mount at a time may use a directory. Without it,
    /// data is cached in memory only.
    #[arg(long, value_name = "DIR", help_heading = "Caching")]
    cache_dir: Option<PathBuf>,

    /// Disk for --cache-dir, in MiB; at least 5 % of its filesystem stays free
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=u64::MAX / MIB),
        default_value = "10240", requires = "cache_dir", help_heading = "Caching")]
    max_disk_cache: u64,

    /// Size of one ranged GET when reading sequentially, in MiB (1 to 256)
    ///
    /// Larger parts mean fewer requests but more memory per open file.
    #[arg(long, value_name = "MIB",
        value_parser = clap::value_parser!(u64).range(1..=MAX_READ_PART_SIZE_MIB),
        default_value = "8", help_heading = "Caching")]
    read_part_size: u64,

    /// Size of one multipart part when uploading, in MiB (5 to 5120)
    ///
    /// Grown automatically so that an object up to 5 TiB fits in 10,000 parts.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(5..=5120),
        default_value = "8", help_heading = "Writing")]
    write_part_size: u64,

    /// Memory for files being written, all files together
    ///
    /// A quarter holds small files (up to 1 MiB each) staged in memory; the
    /// rest, parts on their way to or from the store. Writers wait when that
    /// is spent, so the daemon does not grow under writes.
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(5..),
        default_value = "256", help_heading = "Writing")]
    max_write_buffer: u64,

    /// Directory for staging files being written [default: a private temporary directory]
    ///
    /// bucketfs creates a private (mode 0700) directory inside it.
    #[arg(long, value_name = "DIR", help_heading = "Writing")]
    staging_dir: Option<PathBuf>,

    /// Take attributes from listings alone, without a HEAD per file
    ///
    /// Saves a request per file, but ignores owner, mode, times and extended
    /// attributes (as s3fs and GeeseFS write them), and keeps no extended
    /// attributes.
    #[arg(long, help_heading = "Caching")]
    no_posix_metadata: bool,

    /// Refuse extended attributes (EOPNOTSUPP)
    ///
    /// By default they are kept in the `x-amz-meta-xattr` header, as s3fs
    /// keeps them with `-o use_xattr`.
    #[arg(long, help_heading = "Caching")]
    no_xattr: bool,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    Mount(Box<MountConfig>),
    /// `--help` or `--version`: nothing to mount.
    Exit(EarlyExit),
    /// `mount -f` ran the helper to "do everything but the mount": nothing
    /// to do, and success.
    FakeMount,
}

/// The name mount(8) runs for `-t bucketfs`: it looks for
/// `mount.TYPE` in /sbin, /sbin/fs.d and /sbin/fs.
pub const HELPER_NAME: &str = "mount.bucketfs";

/// The text of `--help` or `--version`, which clap has already rendered.
#[derive(Debug)]
pub struct EarlyExit(clap::Error);

impl EarlyExit {
    pub fn text(&self) -> String {
        self.0.to_string()
    }

    /// Prints the text to stdout (styled on a terminal) and exits 0.
    pub fn print_and_exit(self) -> ! {
        self.0.exit()
    }
}

/// The full command definition, `-o` included (for man pages and completions).
pub fn command() -> Command {
    Cli::command().arg(
        Arg::new(MOUNT_OPTIONS_ID)
            .short('o')
            .value_name("OPT[,OPT...]")
            .action(ArgAction::Append)
            .help("Mount options as in fstab, e.g. ro,uid=0 (see --help)"),
    )
}

/// Parses `args` (the program name first, as from `std::env::args_os()`).
///
/// Usage errors come back as one line without the program name; the caller
/// prints `bucketfs: {err}`.
pub fn parse_args<I: IntoIterator<Item = OsString>>(args: I) -> anyhow::Result<Parsed> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let invoked_as = args.first().map(Path::new).and_then(Path::file_name);
    if invoked_as == Some(OsStr::new(HELPER_NAME)) {
        match helper_args(&args)? {
            Some(rewritten) => args = rewritten,
            None => return Ok(Parsed::FakeMount),
        }
    }
    let cmd = command();
    let tokenized = match cmd.clone().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(err) => return early_exit_or_error(err),
    };
    let mount_options: Vec<&String> = tokenized
        .get_many::<String>(MOUNT_OPTIONS_ID)
        .into_iter()
        .flatten()
        .collect();
    let long_options = translate_mount_options(&cmd, mount_options.iter().map(|s| s.as_str()))?;

    let (program, rest) = match args.split_first() {
        Some((program, rest)) => (program.clone(), rest),
        None => (OsString::from("bucketfs"), &[][..]),
    };
    let argv = std::iter::once(program)
        .chain(long_options)
        .chain(rest.iter().cloned());
    let matches = match cmd.try_get_matches_from(argv) {
        Ok(matches) => matches,
        Err(err) => return early_exit_or_error(err),
    };
    let cli = Cli::from_arg_matches(&matches).map_err(usage_error)?;
    Ok(Parsed::Mount(Box::new(cli.into_config()?)))
}

fn early_exit_or_error(err: clap::Error) -> anyhow::Result<Parsed> {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Ok(Parsed::Exit(EarlyExit(err))),
        _ => Err(usage_error(err)),
    }
}

/// clap renders errors over several lines (usage, tips); scripts and the
/// daemon's readiness pipe want one.
fn usage_error(err: clap::Error) -> anyhow::Error {
    let message = match (err.kind(), err.get(ContextKind::InvalidArg)) {
        (ErrorKind::MissingRequiredArgument, Some(ContextValue::Strings(missing))) => {
            format!("missing {}", missing.join(" and "))
        }
        _ => {
            let rendered = err.to_string();
            let first = rendered.lines().next().unwrap_or_default();
            first.strip_prefix("error: ").unwrap_or(first).to_owned()
        }
    };
    anyhow!("{message} (see bucketfs --help)")
}

impl Cli {
    fn into_config(self) -> anyhow::Result<MountConfig> {
        let read_part_size_bytes = self.read_part_size * MIB;
        let max_cache_size_bytes = self.max_cache_size * MIB;
        // The block cache holds in-flight prefetch, so it must fit one part.
        if max_cache_size_bytes < read_part_size_bytes {
            bail!(
                "--max-cache-size ({} MiB) must be at least --read-part-size ({} MiB)",
                self.max_cache_size,
                self.read_part_size
            );
        }
        let access = match (self.allow_other, self.allow_root) {
            (false, false) => Access::Owner,
            (true, false) => Access::AllowOther,
            (false, true) => Access::AllowRoot,
            // clap's conflicts_with already rejects both; kept for exhaustiveness.
            (true, true) => bail!("--allow-other and --allow-root exclude each other"),
        };
        Ok(MountConfig {
            mountpoint: resolve_mountpoint(&self.mountpoint)?,
            store: StoreConfig {
                bucket: self.bucket,
                endpoint_url: self.endpoint_url,
                region: self.region,
                profile: self.profile,
                force_path_style: self.force_path_style,
                no_sign_request: self.no_sign_request,
                sign_payloads: self.sign_payloads,
                stall_timeout: self.stall_timeout,
                connect_timeout: self.connect_timeout,
                copy_timeout: self.copy_timeout,
                max_attempts: self.max_attempts,
                max_concurrency: self.max_concurrency,
            },
            fs: FsConfig {
                prefix: self.prefix,
                owner: OwnerConfig {
                    // SAFETY: geteuid cannot fail and touches no memory of ours.
                    uid: self.uid.unwrap_or_else(|| unsafe { libc::geteuid() }),
                    // SAFETY: getegid cannot fail and touches no memory of ours.
                    gid: self.gid.unwrap_or_else(|| unsafe { libc::getegid() }),
                    file_mode: self.file_mode,
                    dir_mode: self.dir_mode,
                },
                write_mode: if self.read_only {
                    WriteMode::ReadOnly
                } else {
                    WriteMode::ReadWrite
                },
                posix_metadata: if self.no_posix_metadata {
                    PosixMetadata::ListingOnly
                } else {
                    PosixMetadata::FromHeaders
                },
                xattrs: !self.no_xattr,
                metadata_ttl: self.metadata_ttl,
                negative_metadata_ttl: self.negative_metadata_ttl.unwrap_or(self.metadata_ttl),
                max_inodes: self.max_inodes as usize,
                max_cached_headers: self.max_cached_headers as usize,
                max_cache_size_bytes,
                read_part_size_bytes,
                write_part_size_bytes: self.write_part_size * MIB,
                max_write_buffer_bytes: self.max_write_buffer * MIB,
                stream_retain_bytes: STREAM_RETAIN_BYTES,
                max_single_copy_bytes: MAX_SINGLE_COPY_BYTES,
                staging_dir: self.staging_dir,
                disk_cache: self
                    .cache_dir
                    .map(|dir| {
                        std::path::absolute(&dir)
                            .map(|dir| DiskCacheConfig {
                                dir,
                                max_bytes: self.max_disk_cache * MIB,
                            })
                            .map_err(|err| anyhow!("bad cache directory {}: {err}", dir.display()))
                    })
                    .transpose()?,
            },
            access,
            io_threads: self.io_threads,
            foreground: self.foreground,
            log: LogConfig {
                file: self
                    .log_file
                    .map(|path| {
                        std::path::absolute(&path)
                            .map_err(|err| anyhow!("bad log file {}: {err}", path.display()))
                    })
                    .transpose()?,
                verbosity: if self.debug {
                    Verbosity::Debug
                } else {
                    Verbosity::Normal
                },
            },
        })
    }
}

#[cfg(test)]
mod tests;
