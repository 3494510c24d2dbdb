//! Names the commit the binary is built from, for `bucketfs --version`, in
//! the environment variable `BUCKETFS_BUILD_COMMIT` (a short hash, or
//! `unknown`).
//!
//! Three sources, first found wins:
//! 1. `packaging/commit`: `git archive` (the RPM's source tarball) writes the
//!    hash into it through `export-subst` (packaging/.gitattributes); in a
//!    checkout it still reads `$Format:...$` and is skipped.
//! 2. `git rev-parse HEAD`, when this crate is the top of its git work tree,
//!    and not a tarball unpacked inside some other repository.
//! 3. `unknown`: a tarball without either, or no git installed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Hex digits shown: as `git log --oneline` shows them in a large project.
const SHORT_LEN: usize = 12;

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let found = build_commit(&root);
    println!(
        "cargo:rustc-env=BUCKETFS_BUILD_COMMIT={}",
        found.commit.as_deref().unwrap_or("unknown")
    );
    // Rerun when HEAD moves, not on every source edit (cargo's default).
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=packaging/commit");
    for path in found.watch {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The commit, and the files whose change may change it.
pub struct Found {
    pub commit: Option<String>,
    pub watch: Vec<PathBuf>,
}

pub fn build_commit(root: &Path) -> Found {
    if let Some(commit) = archived_commit(root) {
        return Found {
            commit: Some(commit),
            watch: Vec::new(),
        };
    }
    match git_commit(root) {
        Some((commit, watch)) => Found {
            commit: Some(commit),
            watch,
        },
        None => Found {
            commit: None,
            watch: Vec::new(),
        },
    }
}

/// The hash `git archive` wrote into packaging/commit, if it did.
fn archived_commit(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("packaging/commit")).ok()?;
    short_hash(text.trim())
}

fn git_commit(root: &Path) -> Option<(String, Vec<PathBuf>)> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let top = PathBuf::from(git(&["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != root.canonicalize().ok()? {
        return None;
    }
    let commit = short_hash(&git(&["rev-parse", "HEAD"])?)?;
    // HEAD, the branch it names, and packed-refs (where a branch may live),
    // each as git resolves it in this work tree (a linked worktree keeps
    // HEAD apart from the shared refs).
    let mut watch = Vec::new();
    for name in ["HEAD", "packed-refs"] {
        watch.push(PathBuf::from(git(&["rev-parse", "--git-path", name])?));
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(PathBuf::from(git(&["rev-parse", "--git-path", &branch])?));
    }
    // Only files that exist: cargo reruns the script on every build for a
    // missing one (packed-refs often is).
    let watch = watch
        .into_iter()
        .map(|path| {
            if path.is_absolute() {
                path
            } else {
                root.join(path)
            }
        })
        .filter(|path| path.exists())
        .collect();
    Some((commit, watch))
}

/// The first [`SHORT_LEN`] digits of a full hash; `None` for anything else
/// (an unexpanded `$Format:%H$`, an empty file).
fn short_hash(text: &str) -> Option<String> {
    let full = text.len() >= 40 && text.bytes().all(|b| b.is_ascii_hexdigit());
    full.then(|| text[..SHORT_LEN].to_ascii_lowercase())
}
