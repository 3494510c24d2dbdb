//! Writes the man page `bucketfs.8` and the bash, zsh and fish completions
//! into a directory, all generated from `bucketfs::cli::command()`:
//!
//! ```sh
//! cargo run --release --example gen-docs -- OUTDIR
//! ```
//!
//! The packages (packaging/deb/build.sh, packaging/rpm/bucketfs.spec) run it,
//! so an option added to the CLI reaches `man bucketfs` and tab completion
//! without anyone editing a copy. Only what the CLI cannot know is written
//! here: where the packages put files, and related pages.
//!
//! tests/packaging.rs includes this file as a module and calls [`generate`],
//! so the test packs documentation of the very code it tests without
//! running cargo inside cargo.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_complete::Shell;
use clap_mangen::roff::{Roff, bold, roman};

/// Section 8: bucketfs mounts file systems, an administrator's command.
const MAN_SECTION: &str = "8";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out_dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: gen-docs OUTDIR");
        return ExitCode::from(2);
    };
    match generate(Path::new(&out_dir)) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("gen-docs: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Writes every file into `out_dir` (created if missing); returns their paths.
pub fn generate(out_dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out_dir)?;
    let mut written = vec![write_man_page(out_dir)?];
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = bucketfs::cli::command();
        written.push(clap_complete::generate_to(
            shell, &mut cmd, "bucketfs", out_dir,
        )?);
    }
    Ok(written)
}

fn write_man_page(out_dir: &Path) -> io::Result<PathBuf> {
    let cmd = bucketfs::cli::command();
    let after_help = cmd
        .get_after_long_help()
        .map(|text| text.to_string())
        .unwrap_or_default();
    let man = clap_mangen::Man::new(cmd)
        .section(MAN_SECTION)
        .manual("System Administration");
    let path = out_dir.join(format!("bucketfs.{MAN_SECTION}"));
    let mut out = BufWriter::new(File::create(&path)?);
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;

    let mut roff = Roff::default();
    if !after_help.is_empty() {
        // clap_mangen would title this section "EXTRA" and reflow it; the
        // text is laid out by hand for --help, so keep its lines as they are.
        roff.control("SH", ["MOUNT OPTIONS AND EXAMPLES"])
            .control("nf", [])
            .text([roman(after_help)])
            .control("fi", []);
    }
    files_section(&mut roff);
    roff.control("SH", ["SEE ALSO"]).text([roman(
        "mount(8), fstab(5), mount.fuse3(8), fusermount3(1), systemd.mount(5), \
         systemd.automount(5), systemd.service(5), systemd-escape(1)",
    )]);
    roff.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    out.flush()?;
    Ok(path)
}

/// Paths as the .deb and .rpm install them.
fn files_section(roff: &mut Roff) {
    roff.control("SH", ["FILES"]);
    for (path, meaning) in [
        (
            "/usr/sbin/mount.bucketfs",
            "Symbolic link to bucketfs, the helper mount(8) runs for file system type bucketfs.",
        ),
        (
            "/etc/bucketfs/NAME.conf",
            "Bucket, mount point, mount options and AWS credentials of the service \
             bucketfs@NAME.service. Mode 0600: it may hold secret keys.",
        ),
        (
            "/etc/bucketfs/example.conf",
            "A commented example of such a file.",
        ),
        (
            "/usr/lib/systemd/system/bucketfs@.service",
            "Template unit: runs bucketfs --foreground for /etc/bucketfs/NAME.conf.",
        ),
        (
            "/usr/share/doc/bucketfs/examples/",
            "Example .mount and .automount units for one bucket.",
        ),
    ] {
        roff.control("TP", [])
            .text([bold(path)])
            .text([roman(meaning)]);
    }
}
