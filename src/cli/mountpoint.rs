//! Whether a path can be mounted on, asked before the daemon starts so
//! that the user gets one line saying what is wrong.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::anyhow;

/// Canonical when the path resolves; otherwise (it does not exist, or is a
/// dead mount) made absolute as given, so `check_mountpoint` can say what is
/// wrong with it. Never relative: the daemon changes directory to `/`.
pub(super) fn resolve_mountpoint(path: &Path) -> anyhow::Result<PathBuf> {
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
                crate::shell::quote(&path.to_string_lossy())
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
