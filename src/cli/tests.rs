//! The command line as users type it, and as mount(8) passes it.

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
            sign_payloads: false,
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
            max_cached_headers: 1_000_000,
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
    assert_eq!(config.io_threads, None, "one per CPU unless given");
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
        "--io-threads",
        "1",
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
    assert_eq!(config.io_threads, Some(1));
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
fn max_cached_headers_has_long_and_mount_option_forms_and_refuses_zero() {
    assert_eq!(
        parse_ok(&["bucket", "/mnt"]).fs.max_cached_headers,
        1_000_000
    );
    let config = parse_ok(&["--max-cached-headers", "5000", "bucket", "/mnt"]);
    assert_eq!(config.fs.max_cached_headers, 5000);
    let config = parse_ok(&["bucket", "/mnt", "-o", "max_cached_headers=1000"]);
    assert_eq!(config.fs.max_cached_headers, 1000);
    assert!(
        parse_err(&["--max-cached-headers", "0", "bucket", "/mnt"])
            .contains("--max-cached-headers")
    );
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
        "endpoint_url=http://127.0.0.1:9000/?a=b,prefix=a/b/,force_path_style,sign_payloads",
        "-o",
        "uid=0,gid=0,file_mode=0600,metadata_ttl=5,max_cache_size=1024,no_posix_metadata,no_xattr",
        "-oforeground,allow_other,max_attempts=7",
    ]);
    assert_eq!(
        config.store.endpoint_url.as_deref(),
        Some("http://127.0.0.1:9000/?a=b")
    );
    assert_eq!(config.fs.prefix, "a/b/");
    assert!(config.store.force_path_style && config.store.sign_payloads);
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
    assert_eq!(
        parse_ok(&["bucket", "/mnt", "-o", "io_threads=2"]).io_threads,
        Some(2)
    );
    let err = parse_err(&["bucket", "/mnt", "--io-threads", "0"]);
    assert!(
        err.starts_with("invalid value '0' for '--io-threads"),
        "{err}"
    );
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
    let Parsed::Mount(config) = parse_as_helper(&["-x", "/m", "-oro,foreground"]).unwrap() else {
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
