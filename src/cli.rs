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
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::builder::{NonEmptyStringValueParser, RangedU64ValueParser};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches, Parser};

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

/// Mount options that mean nothing to bucketfs but that mount(8), fstab
/// conventions, systemd or mount.fuse3 put in the list. Any value is ignored.
const IGNORED_MOUNT_OPTIONS: &[&str] = &[
    // Read by mount(8), systemd-fstab-generator or mount.fuse3 themselves.
    "_netdev",
    "nofail",
    "auto",
    "noauto",
    "user",
    "users",
    "defaults",
    // The kernel defaults for a FUSE mount; rw is the absence of ro.
    "rw",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "async",
    // Access times are not stored in S3.
    "atime",
    "noatime",
    "relatime",
    // mount.fuse3 may pass these with the fstab type and source.
    "fsname",
    "subtype",
    // bucketfs always mounts with it: the kernel checks modes as on any disk.
    "default_permissions",
];

/// Prefix of systemd's own fstab options (`x-systemd.requires=...`).
const IGNORED_MOUNT_OPTION_PREFIX: &str = "x-systemd.";

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
    /// Past it, the kernel is asked to forget the entries known longest
    /// (about 600 bytes of memory each); a walk over more keys than this
    /// costs no more memory, only lookups again if it comes back.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(100..=1_000_000_000),
        default_value = "250000", help_heading = "Caching")]
    max_inodes: u64,

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

/// Rewrites mount(8)'s helper call, `mount.bucketfs SOURCE DIR [-sfnv]
/// [-N NS] [-o OPTIONS] [-t TYPE]` (util-linux, mount(8) "External
/// helpers"), as `bucketfs -o OPTIONS -- SOURCE DIR`. `None` for `-f`, a fake
/// mount. `--help` and `--version` pass through to the bucketfs parser.
fn helper_args(args: &[OsString]) -> anyhow::Result<Option<Vec<OsString>>> {
    let Some((program, rest)) = args.split_first() else {
        return Ok(Some(Vec::new()));
    };
    let passes_through = |arg: &OsString| {
        ["--help", "-h", "--version", "-V"].contains(&arg.to_string_lossy().as_ref())
    };
    if rest.iter().any(passes_through) {
        return Ok(Some(args.to_vec()));
    }
    // The convention puts SOURCE and DIR first, so a source that starts
    // with '-' is still a source.
    let [source, dir, flags @ ..] = rest else {
        bail!("usage: {HELPER_NAME} SOURCE DIR [-sfnv] [-o OPTIONS]");
    };
    let mut options = Vec::new();
    let mut fake = false;
    let mut flags = flags.iter();
    while let Some(arg) = flags.next() {
        let bytes = arg.as_bytes();
        match bytes {
            b"-o" | b"-t" | b"-N" => {
                let Some(value) = flags.next() else {
                    bail!("{} needs a value", arg.to_string_lossy());
                };
                match bytes {
                    b"-o" => options.push(value.clone()),
                    // mount(8) passes the type it was given; it is ours.
                    b"-t" => {}
                    _ => bail!("mount namespaces (-N) are not supported"),
                }
            }
            [b'-', b'o', value @ ..] => options.push(OsStr::from_bytes(value).to_owned()),
            [b'-', letters @ ..] if !letters.is_empty() => {
                for letter in letters {
                    match letter {
                        b'f' => fake = true,
                        // Sloppy options, no mtab (there is none), verbose:
                        // nothing to change for bucketfs.
                        b's' | b'n' | b'v' => {}
                        _ => bail!(
                            "unknown {HELPER_NAME} flag '-{}' (mount(8) passes -s, -f, -n, -v, -o)",
                            char::from(*letter)
                        ),
                    }
                }
            }
            _ => bail!(
                "unexpected argument '{}' after SOURCE and DIR",
                arg.to_string_lossy()
            ),
        }
    }
    if fake {
        return Ok(None);
    }
    let mut rewritten = vec![program.clone()];
    for list in options {
        rewritten.push("-o".into());
        rewritten.push(list);
    }
    rewritten.push("--".into());
    rewritten.push(source.clone());
    rewritten.push(dir.clone());
    Ok(Some(rewritten))
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

/// Rewrites mount options (`ro`, `uid=0`, `endpoint_url=http://h:9000/`) as
/// long options (`--read-only`, `--uid=0`, ...). The `--name=value` form
/// keeps values that start with '-' from being read as options.
fn translate_mount_options<'a>(
    cmd: &Command,
    lists: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<Vec<OsString>> {
    let mut long_options = Vec::new();
    let options = lists
        .into_iter()
        .flat_map(|list| list.split(','))
        .filter(|option| !option.is_empty());
    for option in options {
        // Values may hold '=' (URLs with queries), so only the first one splits.
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (option, None),
        };
        if IGNORED_MOUNT_OPTIONS.contains(&name) || name.starts_with(IGNORED_MOUNT_OPTION_PREFIX) {
            continue;
        }
        let long = if name == "ro" {
            "read-only".to_owned()
        } else {
            name.replace('_', "-")
        };
        let Some(arg) = (!name.contains('-'))
            .then(|| mount_option_arg(cmd, &long))
            .flatten()
        else {
            bail!("unknown mount option '{name}' (see bucketfs --help)");
        };
        match (arg.get_action().takes_values(), value) {
            (true, Some(value)) => long_options.push(format!("--{long}={value}").into()),
            (false, None) => long_options.push(format!("--{long}").into()),
            (true, None) => {
                bail!("mount option '{name}' needs a value: {name}=... (see bucketfs --help)")
            }
            (false, Some(_)) => bail!("mount option '{name}' takes no value (see bucketfs --help)"),
        }
    }
    Ok(long_options)
}

/// The argument behind `--{long}`, if it may be spelled as a mount option.
fn mount_option_arg<'c>(cmd: &'c Command, long: &str) -> Option<&'c Arg> {
    cmd.get_arguments().find(|arg| {
        let is_named = arg.get_long() == Some(long)
            || arg
                .get_visible_aliases()
                .is_some_and(|aliases| aliases.contains(&long));
        is_named
            && !matches!(
                arg.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
    })
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

/// Canonical when the path resolves; otherwise (it does not exist, or is a
/// dead mount) made absolute as given, so `check_mountpoint` can say what is
/// wrong with it. Never relative: the daemon changes directory to `/`.
fn resolve_mountpoint(path: &Path) -> anyhow::Result<PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(canonical) => Ok(canonical),
        Err(_) => std::path::absolute(path)
            .map_err(|err| anyhow!("bad mount point {}: {err}", path.display())),
    }
}

/// Whether `path` is a mount whose FUSE daemon died ("Transport endpoint is
/// not connected").
pub fn is_dead_mount(path: &Path) -> bool {
    std::fs::metadata(path)
        .err()
        .and_then(|err| err.raw_os_error())
        == Some(libc::ENOTCONN)
}

/// Reports why `path` cannot be mounted on, in one line for the user.
pub fn check_mountpoint(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(format!(
                "mount point {shown}: Transport endpoint is not connected (a FUSE mount whose \
                 daemon died); clear it with: fusermount3 -u {}",
                shell_quote(path.as_os_str())
            ));
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("mount point {shown} does not exist"));
        }
        Err(err) => return Err(format!("cannot use mount point {shown}: {err}")),
    };
    if !metadata.is_dir() {
        return Err(format!("mount point {shown} is not a directory"));
    }
    if is_mount_point(path, &metadata) {
        return Err(format!("mount point {shown} is already a mount point"));
    }
    Ok(())
}

fn is_mount_point(path: &Path, metadata: &std::fs::Metadata) -> bool {
    let Ok(parent) = std::fs::metadata(path.join("..")) else {
        return false;
    };
    // A different device below means a mount; the same inode as its parent
    // means the root, which is always one.
    if parent.dev() != metadata.dev() || parent.ino() == metadata.ino() {
        return true;
    }
    // A bind mount of the parent's own filesystem keeps st_dev; only the
    // mount table tells.
    let (Ok(canonical), Ok(table)) = (
        std::fs::canonicalize(path),
        std::fs::read("/proc/self/mountinfo"),
    ) else {
        return false;
    };
    mountinfo_mount_points(&table).any(|point| point == canonical.as_os_str().as_bytes())
}

/// Mount points in /proc/self/mountinfo: the fifth field of each line, with
/// the kernel's octal escapes (`\040` for a space) undone.
fn mountinfo_mount_points(table: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    table
        .split(|&byte| byte == b'\n')
        .filter_map(|line| line.split(|&byte| byte == b' ').nth(4))
        .map(unescape_mountinfo)
}

fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut rest = field;
    while let Some((&byte, tail)) = rest.split_first() {
        let octal = tail
            .get(..3)
            .filter(|digits| digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match (byte, octal) {
            (b'\\', Some(digits)) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                rest = &tail[3..];
            }
            _ => {
                out.push(byte);
                rest = tail;
            }
        }
    }
    out
}

/// The path as a shell word, so the suggested command can be pasted as is.
fn shell_quote(path: &OsStr) -> String {
    let text = path.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn parse_bucket(name: &str) -> Result<String, String> {
    if name.is_empty() {
        Err("the bucket name is empty".to_owned())
    } else if name.contains('/') {
        Err("a bucket name has no '/'; use --prefix to mount part of a bucket".to_owned())
    } else {
        Ok(name.to_owned())
    }
}

/// Keys never start with '/' in practice, and the prefix must end at a
/// directory boundary, or `logs` would also match `logs-old/`.
fn parse_prefix(prefix: &str) -> Result<String, String> {
    let trimmed = prefix.trim_start_matches('/');
    if trimmed.is_empty() || trimmed.ends_with('/') {
        Ok(trimmed.to_owned())
    } else {
        Ok(format!("{trimmed}/"))
    }
}

fn parse_mode(text: &str) -> Result<u16, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|d| (b'0'..=b'7').contains(&d)) {
        return Err("not an octal mode (digits 0-7, e.g. 0644)".to_owned());
    }
    match u16::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err("permission bits go up to 7777".to_owned()),
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| "not a number of seconds (e.g. 1 or 0.5)".to_owned())?;
    if seconds.is_nan() || seconds < 0.0 {
        return Err("not a number of seconds (e.g. 1 or 0.5)".to_owned());
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| "too many seconds".to_owned())
}

/// What `--metadata-ttl indefinite` means: long enough never to expire
/// while mounted, short enough that adding it to a clock cannot overflow.
pub const INDEFINITE_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

fn parse_ttl(text: &str) -> Result<Duration, String> {
    match text {
        "indefinite" => Ok(INDEFINITE_TTL),
        "minimal" => Ok(Duration::ZERO),
        _ => parse_seconds(text)
            .map(|ttl| ttl.min(INDEFINITE_TTL))
            .map_err(|_| {
                "not a number of seconds (e.g. 1 or 0.5), indefinite or minimal".to_owned()
            }),
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_seconds(text)? {
        Duration::ZERO => Err("a timeout must be above 0".to_owned()),
        timeout => Ok(timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<MountConfig> {
        let argv = std::iter::once("bucketfs").chain(args.iter().copied());
        match parse_args(argv.map(OsString::from))? {
            Parsed::Mount(config) => Ok(*config),
            Parsed::Exit(exit) => panic!("unexpected early exit: {}", exit.text()),
            Parsed::FakeMount => panic!("unexpected fake mount"),
        }
    }

    fn parse_ok(args: &[&str]) -> MountConfig {
        parse(args).unwrap_or_else(|err| panic!("{args:?}: {err}"))
    }

    fn parse_err(args: &[&str]) -> String {
        match parse(args) {
            Ok(config) => panic!("{args:?} parsed: {config:?}"),
            Err(err) => format!("{err:#}"),
        }
    }

    #[test]
    fn defaults() {
        let config = parse_ok(&["bucket", "/nonexistent/mnt"]);
        assert_eq!(config.mountpoint, PathBuf::from("/nonexistent/mnt"));
        assert_eq!(
            config.store,
            StoreConfig {
                bucket: "bucket".to_owned(),
                endpoint_url: None,
                region: None,
                profile: None,
                force_path_style: false,
                no_sign_request: false,
                stall_timeout: Duration::from_secs(10),
                connect_timeout: Duration::from_secs(5),
                copy_timeout: Duration::from_secs(300),
                max_attempts: 3,
                max_concurrency: 16,
            }
        );
        assert_eq!(
            config.fs,
            FsConfig {
                prefix: String::new(),
                owner: OwnerConfig {
                    // SAFETY: geteuid cannot fail and touches no memory of ours.
                    uid: unsafe { libc::geteuid() },
                    // SAFETY: getegid cannot fail and touches no memory of ours.
                    gid: unsafe { libc::getegid() },
                    file_mode: 0o644,
                    dir_mode: 0o755,
                },
                write_mode: WriteMode::ReadWrite,
                posix_metadata: PosixMetadata::FromHeaders,
                xattrs: true,
                metadata_ttl: Duration::from_secs(1),
                negative_metadata_ttl: Duration::from_secs(1),
                max_inodes: 250_000,
                max_cache_size_bytes: 512 * MIB,
                read_part_size_bytes: 8 * MIB,
                write_part_size_bytes: 8 * MIB,
                max_write_buffer_bytes: 256 * MIB,
                stream_retain_bytes: STREAM_RETAIN_BYTES,
                max_single_copy_bytes: MAX_SINGLE_COPY_BYTES,
                staging_dir: None,
                disk_cache: None,
            }
        );
        assert_eq!(config.access, Access::Owner);
        assert!(!config.foreground);
    }

    #[test]
    fn long_options() {
        let config = parse_ok(&[
            "--prefix",
            "/a/b",
            "--endpoint-url",
            "http://127.0.0.1:9000/",
            "--region",
            "eu-west-3",
            "--profile",
            "minio",
            "--force-path-style",
            "--no-sign-request",
            "-f",
            "--read-only",
            "--allow-root",
            "--uid",
            "0",
            "--gid",
            "100",
            "--file-mode",
            "600",
            "--dir-mode",
            "0o700",
            "--metadata-ttl",
            "0.5",
            "--max-cache-size",
            "64",
            "--read-part-size",
            "16",
            "--max-concurrency",
            "4",
            "--no-posix-metadata",
            "--request-timeout",
            "2.5",
            "--max-attempts",
            "1",
            "bucket",
            "/mnt",
        ]);
        assert_eq!(config.fs.prefix, "a/b/");
        assert_eq!(
            config.store.endpoint_url.as_deref(),
            Some("http://127.0.0.1:9000/")
        );
        assert_eq!(config.store.region.as_deref(), Some("eu-west-3"));
        assert_eq!(config.store.profile.as_deref(), Some("minio"));
        assert!(config.store.force_path_style && config.store.no_sign_request);
        assert!(config.foreground);
        assert_eq!(config.fs.write_mode, WriteMode::ReadOnly);
        assert_eq!(config.access, Access::AllowRoot);
        assert_eq!((config.fs.owner.uid, config.fs.owner.gid), (0, 100));
        assert_eq!(config.fs.owner.file_mode, 0o600);
        assert_eq!(config.fs.owner.dir_mode, 0o700);
        assert_eq!(config.fs.metadata_ttl, Duration::from_millis(500));
        assert_eq!(config.fs.max_cache_size_bytes, 64 * MIB);
        assert_eq!(config.fs.read_part_size_bytes, 16 * MIB);
        assert_eq!(config.store.max_concurrency, 4);
        assert_eq!(config.fs.posix_metadata, PosixMetadata::ListingOnly);
        assert!(config.fs.xattrs, "kept unless --no-xattr");
        assert_eq!(config.store.stall_timeout, Duration::from_millis(2500));
        assert_eq!(config.store.max_attempts, 1);
    }

    #[test]
    fn max_inodes_has_long_and_mount_option_forms_and_a_floor() {
        let config = parse_ok(&["--max-inodes", "5000", "bucket", "/mnt"]);
        assert_eq!(config.fs.max_inodes, 5000);
        let config = parse_ok(&["bucket", "/mnt", "-o", "max_inodes=1000"]);
        assert_eq!(config.fs.max_inodes, 1000);
        assert!(parse_err(&["--max-inodes", "10", "bucket", "/mnt"]).contains("--max-inodes"));
    }

    #[test]
    fn timeouts_have_long_and_mount_option_forms() {
        let config = parse_ok(&[
            "--stall-timeout",
            "20",
            "--connect-timeout=1.5",
            "-o",
            "copy_timeout=600,request_timeout=7",
            "bucket",
            "/mnt",
        ]);
        // The command line wins over -o, under either name.
        assert_eq!(config.store.stall_timeout, Duration::from_secs(20));
        assert_eq!(config.store.connect_timeout, Duration::from_millis(1500));
        assert_eq!(config.store.copy_timeout, Duration::from_secs(600));
        let config = parse_ok(&["-o", "stall_timeout=3", "bucket", "/mnt"]);
        assert_eq!(config.store.stall_timeout, Duration::from_secs(3));
        assert!(parse_err(&["--copy-timeout", "0", "b", "/mnt"]).contains("--copy-timeout"));
    }

    #[test]
    fn metadata_ttls_take_seconds_indefinite_or_minimal() {
        let config = parse_ok(&["--metadata-ttl", "indefinite", "bucket", "/mnt"]);
        assert_eq!(config.fs.metadata_ttl, INDEFINITE_TTL);
        assert_eq!(
            config.fs.negative_metadata_ttl, INDEFINITE_TTL,
            "follows by default"
        );
        let config = parse_ok(&[
            "--metadata-ttl",
            "minimal",
            "--negative-metadata-ttl",
            "2.5",
            "bucket",
            "/mnt",
        ]);
        assert_eq!(config.fs.metadata_ttl, Duration::ZERO);
        assert_eq!(config.fs.negative_metadata_ttl, Duration::from_millis(2500));
        let config = parse_ok(&["bucket", "/mnt", "-o", "negative_metadata_ttl=minimal"]);
        assert_eq!(config.fs.metadata_ttl, Duration::from_secs(1));
        assert_eq!(config.fs.negative_metadata_ttl, Duration::ZERO);
        assert!(
            parse_err(&["--metadata-ttl", "forever", "bucket", "/mnt"])
                .contains("indefinite or minimal")
        );
    }

    #[test]
    fn mount_options_translate_to_long_options() {
        let config = parse_ok(&[
            "bucket",
            "/mnt",
            "-o",
            "endpoint_url=http://127.0.0.1:9000/?a=b,prefix=a/b/,force_path_style",
            "-o",
            "uid=0,gid=0,file_mode=0600,metadata_ttl=5,max_cache_size=1024,no_posix_metadata,no_xattr",
            "-oforeground,allow_other,max_attempts=7",
        ]);
        assert_eq!(
            config.store.endpoint_url.as_deref(),
            Some("http://127.0.0.1:9000/?a=b")
        );
        assert_eq!(config.fs.prefix, "a/b/");
        assert!(config.store.force_path_style);
        assert_eq!((config.fs.owner.uid, config.fs.owner.gid), (0, 0));
        assert_eq!(config.fs.owner.file_mode, 0o600);
        assert_eq!(config.fs.metadata_ttl, Duration::from_secs(5));
        assert_eq!(config.fs.max_cache_size_bytes, 1024 * MIB);
        assert_eq!(config.fs.posix_metadata, PosixMetadata::ListingOnly);
        assert!(!config.fs.xattrs);
        assert!(config.foreground);
        assert_eq!(config.access, Access::AllowOther);
        assert_eq!(config.store.max_attempts, 7);
    }

    #[test]
    fn mount_options_before_positionals_and_clustered() {
        let config = parse_ok(&["-fo", "ro,prefix=x", "bucket", "/mnt"]);
        assert!(config.foreground);
        assert_eq!(config.fs.write_mode, WriteMode::ReadOnly);
        assert_eq!(config.fs.prefix, "x/");
    }

    #[test]
    fn mount_fuse3_style() {
        let config = parse_ok(&[
            "bucket",
            "/mnt",
            "-o",
            "rw,nodev,nosuid,dev,suid,exec,noexec,async,atime,noatime,relatime,_netdev,nofail,\
             auto,noauto,user,users,defaults,x-systemd.requires=network-online.target,\
             x-systemd.automount,fsname=bucketfs#bucket,subtype=bucketfs,allow_other",
        ]);
        assert_eq!(config.fs.write_mode, WriteMode::ReadWrite);
        assert_eq!(config.access, Access::AllowOther);
        assert_eq!(config, {
            let mut expected = parse_ok(&["bucket", "/mnt"]);
            expected.access = Access::AllowOther;
            expected
        });
    }

    #[test]
    fn ro_and_empty_entries() {
        let config = parse_ok(&["bucket", "/mnt", "-o", ",ro,,rw,"]);
        assert_eq!(config.fs.write_mode, WriteMode::ReadOnly);
    }

    #[test]
    fn command_line_wins_over_mount_options() {
        let config = parse_ok(&["bucket", "/mnt", "-o", "uid=5", "--uid", "6", "-o", "uid=7"]);
        assert_eq!(config.fs.owner.uid, 6);
        let config = parse_ok(&["--read-only", "bucket", "/mnt", "-o", "ro,uid=1,uid=2"]);
        assert_eq!(config.fs.write_mode, WriteMode::ReadOnly);
        assert_eq!(config.fs.owner.uid, 2);
    }

    #[test]
    fn unknown_mount_option() {
        assert_eq!(
            parse_err(&["bucket", "/mnt", "-o", "rw,foo"]),
            "unknown mount option 'foo' (see bucketfs --help)"
        );
        assert_eq!(
            parse_err(&["bucket", "/mnt", "-o", "foo=bar=baz"]),
            "unknown mount option 'foo' (see bucketfs --help)"
        );
        // Mount options use '_'; positionals, help and version have no -o form.
        for name in [
            "read-only",
            "read_only_",
            "bucket",
            "mountpoint",
            "help",
            "version",
        ] {
            assert_eq!(
                parse_err(&["bucket", "/mnt", "-o", name]),
                format!("unknown mount option '{name}' (see bucketfs --help)")
            );
        }
    }

    #[test]
    fn mount_option_values() {
        assert_eq!(
            parse_err(&["bucket", "/mnt", "-o", "uid"]),
            "mount option 'uid' needs a value: uid=... (see bucketfs --help)"
        );
        assert_eq!(
            parse_err(&["bucket", "/mnt", "-o", "ro=1"]),
            "mount option 'ro' takes no value (see bucketfs --help)"
        );
        assert_eq!(
            parse_err(&["bucket", "/mnt", "-o", "allow_other=yes"]),
            "mount option 'allow_other' takes no value (see bucketfs --help)"
        );
        let err = parse_err(&["bucket", "/mnt", "-o", "endpoint_url="]);
        assert!(err.contains("--endpoint-url"), "{err}");
        let err = parse_err(&["bucket", "/mnt", "-o", "uid=abc"]);
        assert!(err.starts_with("invalid value 'abc' for '--uid"), "{err}");
    }

    #[test]
    fn allow_other_conflicts_with_allow_root() {
        for args in [
            &["--allow-other", "--allow-root", "b", "/mnt"][..],
            &["b", "/mnt", "-o", "allow_root,allow_other"],
            &["--allow-root", "b", "/mnt", "-o", "allow_other"],
        ] {
            let err = parse_err(args);
            assert!(err.contains("cannot be used with"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    fn parse_as_helper(args: &[&str]) -> anyhow::Result<Parsed> {
        let argv = std::iter::once("/sbin/mount.bucketfs").chain(args.iter().copied());
        parse_args(argv.map(OsString::from))
    }

    #[test]
    fn mount_helper_convention() {
        let Parsed::Mount(config) = parse_as_helper(&[
            "bkt",
            "/mnt",
            "-s",
            "-n",
            "-v",
            "-o",
            "ro,endpoint_url=http://h:9000/x?a=b:c,prefix=a/b/,_netdev,nofail",
            "-t",
            "bucketfs",
        ])
        .unwrap() else {
            panic!("not a mount");
        };
        assert_eq!(config.store.bucket, "bkt");
        assert_eq!(config.mountpoint, PathBuf::from("/mnt"));
        assert_eq!(config.fs.write_mode, WriteMode::ReadOnly);
        assert_eq!(
            config.store.endpoint_url.as_deref(),
            Some("http://h:9000/x?a=b:c")
        );
        assert_eq!(config.fs.prefix, "a/b/");
        // -f is mount(8)'s "fake", not --foreground.
        assert!(!config.foreground);
        assert!(matches!(
            parse_as_helper(&["bkt", "/mnt", "-f", "-o", "rw"]).unwrap(),
            Parsed::FakeMount
        ));
        assert!(matches!(
            parse_as_helper(&["bkt", "/mnt", "-svf"]).unwrap(),
            Parsed::FakeMount
        ));
        let Parsed::Mount(config) = parse_as_helper(&["-x", "/m", "-oro,foreground"]).unwrap()
        else {
            panic!("not a mount");
        };
        assert_eq!(config.store.bucket, "-x");
        assert!(config.foreground);
    }

    #[test]
    fn mount_helper_errors() {
        let err = |args: &[&str]| format!("{:#}", parse_as_helper(args).unwrap_err());
        assert_eq!(
            err(&["bkt", "/mnt", "-o", "ro,bogus"]),
            "unknown mount option 'bogus' (see bucketfs --help)"
        );
        assert!(err(&["bkt", "/mnt", "-N", "1234"]).contains("-N"));
        assert!(err(&["bkt", "/mnt", "-x"]).contains("'-x'"));
        assert!(err(&["bkt", "/mnt", "-o"]).contains("-o needs a value"));
        assert!(err(&["bkt"]).starts_with("usage: mount.bucketfs SOURCE DIR"));
        assert!(err(&["bkt", "/mnt", "extra"]).contains("'extra'"));
        assert!(matches!(
            parse_as_helper(&["--help"]).unwrap(),
            Parsed::Exit(_)
        ));
    }

    #[test]
    fn logging_options() {
        let config = parse_ok(&["bucket", "/mnt", "-o", "debug,log_file=rel/b.log"]);
        assert_eq!(config.log.verbosity, Verbosity::Debug);
        let file = config.log.file.unwrap();
        assert!(
            file.is_absolute() && file.ends_with("rel/b.log"),
            "{file:?}"
        );
        let config = parse_ok(&["bucket", "/mnt"]);
        assert_eq!(
            config.log,
            LogConfig {
                file: None,
                verbosity: Verbosity::Normal
            }
        );
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("0o4755"), Ok(0o4755));
        assert_eq!(parse_mode("7777"), Ok(0o7777));
        assert_eq!(parse_mode("0"), Ok(0));
        for bad in ["", "0o", "0999", "rwx", "-644", "+644", "0x1ff", "64 4"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
        assert!(parse_mode("10000").is_err());
        assert!(parse_mode("7777777777777").is_err());
        let err = parse_err(&["--file-mode", "0999", "b", "/mnt"]);
        assert_eq!(
            err,
            "invalid value '0999' for '--file-mode <OCTAL>': not an octal mode (digits 0-7, \
             e.g. 0644) (see bucketfs --help)"
        );
        let err = parse_err(&["b", "/mnt", "-o", "dir_mode=17777"]);
        assert!(err.contains("up to 7777"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_ttl("0"), Ok(Duration::ZERO));
        assert_eq!(parse_ttl("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["-1", "nan", "inf", "1e300", "", "1s"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
        assert!(parse_timeout("0").is_err());
        assert_eq!(parse_timeout("0.1"), Ok(Duration::from_millis(100)));
    }

    #[test]
    fn ranges() {
        assert!(parse_err(&["--read-part-size", "0", "b", "/mnt"]).contains("--read-part-size"));
        assert!(parse_err(&["--read-part-size", "257", "b", "/mnt"]).contains("--read-part-size"));
        let config = parse_ok(&[
            "--read-part-size",
            "256",
            "--max-cache-size",
            "256",
            "b",
            "/m",
        ]);
        assert_eq!(config.fs.read_part_size_bytes, 256 * MIB);
        assert!(parse_err(&["--max-concurrency", "0", "b", "/mnt"]).contains("--max-concurrency"));
        assert!(parse_err(&["--max-attempts", "0", "b", "/mnt"]).contains("--max-attempts"));
        assert!(parse_err(&["--max-cache-size", "0", "b", "/mnt"]).contains("--max-cache-size"));
        assert!(
            parse_err(&["--max-cache-size", &u64::MAX.to_string(), "b", "/mnt"])
                .contains("--max-cache-size")
        );
        assert_eq!(
            parse_err(&["--max-cache-size", "4", "b", "/mnt"]),
            "--max-cache-size (4 MiB) must be at least --read-part-size (8 MiB)"
        );
    }

    #[test]
    fn prefixes() {
        for (given, normalized) in [
            ("", ""),
            ("/", ""),
            ("a", "a/"),
            ("a/", "a/"),
            ("//a/b", "a/b/"),
            ("a:b=c", "a:b=c/"),
        ] {
            assert_eq!(parse_prefix(given).as_deref(), Ok(normalized), "{given}");
        }
    }

    #[test]
    fn bucket_names() {
        let err = parse_err(&["", "/mnt"]);
        assert!(err.contains("bucket name is empty"), "{err}");
        let err = parse_err(&["bucket/logs", "/mnt"]);
        assert!(err.contains("use --prefix"), "{err}");
    }

    #[test]
    fn usage_errors_are_one_line() {
        for args in [
            &[][..],
            &["bucket"],
            &["bucket", "/mnt", "extra"],
            &["--nope", "bucket", "/mnt"],
            &["bucket", "/mnt", "-o"],
            &["--uid", "-1", "bucket", "/mnt"],
        ] {
            let err = parse_err(args);
            assert!(!err.contains('\n'), "{args:?}: {err}");
            assert!(err.ends_with("(see bucketfs --help)"), "{args:?}: {err}");
        }
        assert_eq!(
            parse_err(&[]),
            "missing <BUCKET> and <MOUNTPOINT> (see bucketfs --help)"
        );
    }

    #[test]
    fn help_and_version_exit_early() {
        let help = |args: &[&str]| {
            let argv = std::iter::once("bucketfs").chain(args.iter().copied());
            match parse_args(argv.map(OsString::from)).unwrap() {
                Parsed::Exit(exit) => exit.text(),
                Parsed::Mount(config) => panic!("mounted: {config:?}"),
                Parsed::FakeMount => panic!("fake mount"),
            }
        };
        let text = help(&["--help"]);
        for option in [
            "--metadata-ttl",
            "-o <OPT[,OPT...]>",
            "x-systemd.*",
            "[default: 512]",
        ] {
            assert!(text.contains(option), "{option} missing from:\n{text}");
        }
        assert!(help(&["bucket", "/mnt", "-h"]).contains("--read-part-size"));
        assert!(help(&["--version"]).contains(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn every_long_option_has_a_mount_option() {
        let cmd = command();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(arg.get_action(), ArgAction::Help | ArgAction::Version) {
                continue;
            }
            let name = long.replace('-', "_");
            let option = if arg.get_action().takes_values() {
                format!("{name}=1")
            } else {
                name
            };
            translate_mount_options(&cmd, [option.as_str()])
                .unwrap_or_else(|err| panic!("{option}: {err}"));
        }
        command().debug_assert();
    }

    #[test]
    fn relative_mountpoint_becomes_absolute() {
        let config = parse_ok(&["bucket", "no/such/dir"]);
        assert!(config.mountpoint.is_absolute());
        assert!(config.mountpoint.ends_with("no/such/dir"));
    }

    #[test]
    fn mountpoint_checks() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_mountpoint(dir.path()), Ok(()));
        let missing = dir.path().join("missing");
        assert!(
            check_mountpoint(&missing)
                .unwrap_err()
                .contains("does not exist")
        );
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(
            check_mountpoint(&file)
                .unwrap_err()
                .contains("not a directory")
        );
        assert!(
            check_mountpoint(Path::new("/"))
                .unwrap_err()
                .contains("already a mount point")
        );
        if Path::new("/proc/self").exists() {
            assert!(check_mountpoint(Path::new("/proc")).is_err());
        }
    }

    #[test]
    fn mountinfo_parsing() {
        let table = b"36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n\
                      37 35 0:5 / /back\\134slash rw - tmpfs tmpfs rw\n";
        let points: Vec<Vec<u8>> = mountinfo_mount_points(table).collect();
        assert_eq!(points, [b"/mnt/a b".to_vec(), b"/back\\slash".to_vec()]);
        assert_eq!(unescape_mountinfo(b"\\04x\\"), b"\\04x\\");
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote(OsStr::new("/mnt/s3")), "/mnt/s3");
        assert_eq!(shell_quote(OsStr::new("/mnt/my s3")), "'/mnt/my s3'");
        assert_eq!(shell_quote(OsStr::new("/mnt/it's")), r"'/mnt/it'\''s'");
    }
}
