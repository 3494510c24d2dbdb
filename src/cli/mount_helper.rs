//! What mount(8) and fstab hand bucketfs: the `mount.bucketfs SOURCE DIR -o
//! OPTIONS` helper call, and `-o` lists as long options.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use anyhow::bail;
use clap::{Arg, ArgAction, Command};

use super::HELPER_NAME;

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

/// Rewrites mount(8)'s helper call, `mount.bucketfs SOURCE DIR [-sfnv]
/// [-N NS] [-o OPTIONS] [-t TYPE]` (util-linux, mount(8) "External
/// helpers"), as `bucketfs -o OPTIONS -- SOURCE DIR`. `None` for `-f`, a fake
/// mount. `--help` and `--version` pass through to the bucketfs parser.
pub(super) fn helper_args(args: &[OsString]) -> anyhow::Result<Option<Vec<OsString>>> {
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

/// Rewrites mount options (`ro`, `uid=0`, `endpoint_url=http://h:9000/`) as
/// long options (`--read-only`, `--uid=0`, ...). The `--name=value` form
/// keeps values that start with '-' from being read as options.
pub(super) fn translate_mount_options<'a>(
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
