//! The "no FUSE" baselines of `bench/run.sh` and `bench/write.sh`, and their
//! fast way to fill a bucket.
//!
//! Every subcommand talks to the store through aws-sdk-s3 directly, with the
//! same SDK and defaults bucketfs uses, so the gap between a figure here and
//! the same workload through a mount is what the filesystem layer costs:
//!
//! - `read`: one object read front to back with ranged GETs of
//!   `--part-size-mib`, `--concurrency` of them in flight, bytes consumed in
//!   order and dropped (what bucketfs's read-ahead does for `cat`);
//! - `ttfb`: one `GET bytes=0-0`, timed to its first body byte; with
//!   `--lookup`, after the HEAD and the ListObjectsV2 of `key/` a cold lookup
//!   sends;
//! - `list`: ListObjectsV2 pages with delimiter `/`, and with `--heads` a HEAD
//!   per object, `--concurrency` in flight, started as pages arrive (what
//!   `ls -l` costs when attributes come from object metadata); with
//!   `--recursive`, the whole prefix flat (no delimiter), the baseline of a
//!   tree walk (`bench/walk.sh`);
//! - `get-all`: list a prefix recursively and GET every object into a local
//!   directory (the baseline of `cp -r`);
//! - `put-file`: one local file as one PutObject, or as a multipart upload
//!   with `--concurrency` parts of `--part-size-mib` in flight (the baseline
//!   of a large sequential write, and a set-up helper);
//! - `put-files`: every file under a local directory as one PutObject each,
//!   one after another by default (the baseline of creating small files
//!   through a mount whose `close()` is durable);
//! - `wait`: HEAD the keys a local file or tree should have become until all
//!   exist with the right sizes (when a write-back cache has really uploaded);
//! - `create-bucket`, `put-tree`, `delete-prefix`: set-up and clean-up helpers
//!   (parallel PUTs and DELETEs).
//!
//! Measurements print one line of `name=value` pairs (e.g.
//! `bytes=1073741824 seconds=1.234 mb_per_s=870.1`) for scripts to parse;
//! MB is 10^6 bytes. The clock covers only the S3 work: client construction
//! is excluded, the connection set-up of the first request is not.
//!
//! Endpoint and credentials come from the flags or the usual AWS environment
//! (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
//!
//! ```text
//! cargo run --release --example raw_client -- --endpoint-url http://127.0.0.1:9000 \
//!     read --bucket b --key big --part-size-mib 8 --concurrency 16
//! ```

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const MIB: u64 = 1024 * 1024;

/// S3's page size limit for ListObjectsV2; bucketfs asks for full pages too.
const LIST_PAGE_KEYS: i32 = 1000;

/// `st_mode` of a regular file with permissions 0644, as s3fs writes it in
/// `x-amz-meta-mode` (decimal, type bits included).
const S3FS_FILE_MODE: u32 = 0o100644;

#[derive(Debug, Parser)]
#[command(about = "aws-sdk-s3 baselines and bucket set-up for bench/run.sh and bench/write.sh")]
struct Cli {
    /// S3 endpoint [default: $AWS_ENDPOINT_URL, else AWS]
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,

    /// Region to sign for
    #[arg(long, global = true, default_value = "us-east-1")]
    region: String,

    /// Access key [default: the AWS credential chain]
    #[arg(long, global = true, requires = "secret_access_key")]
    access_key_id: Option<String>,

    /// Secret key [default: the AWS credential chain]
    #[arg(long, global = true, requires = "access_key_id")]
    secret_access_key: Option<String>,

    /// Hash measured uploads' bodies into their signatures (bucketfs's
    /// --sign-payloads); without it they go as bucketfs sends them by
    /// default: unsigned, with a CRC32 checksum header
    #[arg(long, global = true)]
    sign_payloads: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read one object in order with parallel ranged GETs, discarding the bytes
    Read {
        #[command(flatten)]
        object: ObjectArgs,
        /// Size of one ranged GET, in MiB (bucketfs's --read-part-size default)
        #[arg(long, default_value = "8")]
        part_size_mib: u64,
        /// Ranged GETs in flight (bucketfs's --max-concurrency default)
        #[arg(long, default_value = "16")]
        concurrency: usize,
    },
    /// Time to the first body byte of GET bytes=0-0
    Ttfb {
        #[command(flatten)]
        object: ObjectArgs,
        /// First send what a cold lookup of the name costs a mount: HEAD of the key and
        /// ListObjectsV2 of "key/" (max-keys 1), together, as bucketfs sends them
        #[arg(long)]
        lookup: bool,
    },
    /// List one directory level (delimiter '/'), or with --recursive every key under the
    /// prefix flat; optionally with a HEAD per object
    List {
        #[arg(long)]
        bucket: String,
        /// Directory prefix, e.g. "dir/"
        #[arg(long, default_value = "")]
        prefix: String,
        /// No delimiter: every key under the prefix, 1,000 per page, pages one after another
        /// (each continues from the previous one's token, as S3 requires)
        #[arg(long)]
        recursive: bool,
        /// Stop after this many pages (prints stopped_early=1 if keys were left): on a server
        /// whose every page costs the same, a few pages tell what the whole listing costs
        #[arg(long)]
        max_pages: Option<usize>,
        /// Also HEAD every listed object (its user metadata holds the POSIX attributes)
        #[arg(long)]
        heads: bool,
        /// HEADs in flight
        #[arg(long, default_value = "16")]
        concurrency: usize,
    },
    /// List a prefix recursively and GET every object into a local directory
    GetAll {
        #[arg(long)]
        bucket: String,
        #[arg(long, default_value = "")]
        prefix: String,
        /// Local directory; keys are written below it relative to --prefix
        #[arg(long)]
        dest: PathBuf,
        /// GETs in flight
        #[arg(long, default_value = "16")]
        concurrency: usize,
    },
    /// Create a bucket (succeeds if it already exists and is ours)
    CreateBucket {
        #[arg(long)]
        bucket: String,
    },
    /// PUT COUNT objects of SIZE bytes of pseudo-random data under a prefix
    PutTree(PutTreeArgs),
    /// Upload a local file, with parallel multipart parts when it is larger than one part
    PutFile {
        #[command(flatten)]
        object: ObjectArgs,
        #[arg(long)]
        file: PathBuf,
        /// Multipart part size, in MiB (S3 needs at least 5)
        #[arg(long, default_value = "16")]
        part_size_mib: u64,
        /// Parts uploaded in parallel
        #[arg(long, default_value = "4")]
        concurrency: usize,
    },
    /// PUT every file under a local directory, key = prefix + relative path
    PutFiles {
        #[arg(long)]
        bucket: String,
        /// Prefix of every key, e.g. "small/"
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long)]
        dir: PathBuf,
        /// PUTs in flight; 1 sends each only after the previous one is answered
        #[arg(long, default_value = "1")]
        concurrency: usize,
    },
    /// Wait until the objects a local file or tree was written to exist with its sizes
    Wait {
        #[arg(long)]
        bucket: String,
        /// The key of a local file; for a local directory, the prefix of its files' keys
        #[arg(long, default_value = "")]
        prefix: String,
        /// Local file or directory whose copy in the bucket is awaited
        #[arg(long)]
        local: PathBuf,
        /// HEADs in flight
        #[arg(long, default_value = "16")]
        concurrency: usize,
        /// Give up after this many seconds
        #[arg(long, default_value = "600")]
        timeout_seconds: u64,
    },
    /// Delete every object under a prefix
    DeletePrefix {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        prefix: String,
        /// DELETEs in flight
        #[arg(long, default_value = "16")]
        concurrency: usize,
    },
}

#[derive(Debug, Args)]
struct ObjectArgs {
    #[arg(long)]
    bucket: String,
    #[arg(long)]
    key: String,
}

#[derive(Debug, Args)]
struct PutTreeArgs {
    #[arg(long)]
    bucket: String,
    /// Prefix of every key, e.g. "tree/"
    #[arg(long, default_value = "")]
    prefix: String,
    /// Number of objects
    #[arg(long)]
    count: usize,
    /// Size of each object, in bytes
    #[arg(long)]
    size: usize,
    /// Spread the objects over this many subdirectories, round robin (0: all directly under
    /// the prefix); names are zero-padded to one width (d000/f000000 for 1,000 and 1,000,000)
    #[arg(long, default_value = "0")]
    dirs: usize,
    /// Store s3fs-style POSIX attributes (x-amz-meta-mode/uid/gid/mtime) on each object
    #[arg(long)]
    posix_metadata: bool,
    /// PUTs in flight
    #[arg(long, default_value = "32")]
    concurrency: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = build_client(&cli).await;
    let sign = cli.sign_payloads;
    match cli.command {
        Command::Read {
            object,
            part_size_mib,
            concurrency,
        } => read(&client, &object, part_size_mib * MIB, concurrency).await,
        Command::Ttfb { object, lookup } => ttfb(&client, &object, lookup).await,
        Command::List {
            bucket,
            prefix,
            recursive,
            max_pages,
            heads,
            concurrency,
        } => {
            let shape = ListShape {
                recursive,
                max_pages,
            };
            list(&client, &bucket, &prefix, shape, heads, concurrency).await
        }
        Command::GetAll {
            bucket,
            prefix,
            dest,
            concurrency,
        } => get_all(&client, &bucket, &prefix, &dest, concurrency).await,
        Command::CreateBucket { bucket } => create_bucket(&client, &bucket).await,
        Command::PutTree(args) => put_tree(&client, &args).await,
        Command::PutFile {
            object,
            file,
            part_size_mib,
            concurrency,
        } => {
            let part_size = part_size_mib * MIB;
            put_file(&client, &object, &file, part_size, concurrency, sign).await
        }
        Command::PutFiles {
            bucket,
            prefix,
            dir,
            concurrency,
        } => put_files(&client, &bucket, &prefix, &dir, concurrency, sign).await,
        Command::Wait {
            bucket,
            prefix,
            local,
            concurrency,
            timeout_seconds,
        } => {
            let timeout = Duration::from_secs(timeout_seconds);
            wait(&client, &bucket, &prefix, &local, concurrency, timeout).await
        }
        Command::DeletePrefix {
            bucket,
            prefix,
            concurrency,
        } => delete_prefix(&client, &bucket, &prefix, concurrency).await,
    }
}

async fn build_client(cli: &Cli) -> Client {
    let mut loader = aws_config::from_env().region(Region::new(cli.region.clone()));
    if let Some(endpoint) = &cli.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if let (Some(key), Some(secret)) = (&cli.access_key_id, &cli.secret_access_key) {
        loader = loader.credentials_provider(Credentials::new(key, secret, None, None, "flags"));
    }
    let sdk_config = loader.load().await;
    let s3_config = aws_sdk_s3::config::Builder::from(&sdk_config)
        .force_path_style(true)
        // The set-up helpers' PUTs need no checksum; the measured uploads
        // (put-file, put-files) ask for the CRC32 bucketfs sends.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        // s3s-fs answers a whole-object GET of a multipart object uploaded
        // with part checksums (as bucketfs uploads) with a CRC32 of 00000000,
        // which the SDK would reject; the bench checks contents by MD5 itself.
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Client::from_conf(s3_config)
}

/// `request` changed by `change`, unless `keep` holds.
fn unless<T>(keep: bool, request: T, change: impl FnOnce(T) -> T) -> T {
    if keep { request } else { change(request) }
}

/// Prints one result line and its rate, MB being 10^6 bytes.
fn report_rate(bytes: u64, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "bytes={bytes} seconds={seconds:.3} mb_per_s={:.1}",
        bytes as f64 / 1e6 / seconds
    );
}

async fn get_range(
    client: &Client,
    bucket: &str,
    key: &str,
    range: Range<u64>,
) -> anyhow::Result<Bytes> {
    let output = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(format!("bytes={}-{}", range.start, range.end - 1))
        .send()
        .await
        .with_context(|| format!("GET {key} {range:?}"))?;
    let data = output.body.collect().await?.into_bytes();
    if data.len() as u64 != range.end - range.start {
        bail!("GET {key} {range:?}: got {} bytes", data.len());
    }
    Ok(data)
}

async fn read(
    client: &Client,
    object: &ObjectArgs,
    part_size_bytes: u64,
    concurrency: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    // bucketfs learns the size from a lookup before the first read; so do we.
    let head = client
        .head_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await
        .with_context(|| format!("HEAD {}", object.key))?;
    let size = u64::try_from(head.content_length.unwrap_or(0))?;
    let ranges = (0..size)
        .step_by(part_size_bytes as usize)
        .map(move |start| start..(start + part_size_bytes).min(size));
    // Each GET is its own task, so bodies are received on all worker threads;
    // `buffered` starts them `concurrency` at a time and yields them in order.
    let mut parts = futures::stream::iter(ranges)
        .map(|range| {
            let client = client.clone();
            let (bucket, key) = (object.bucket.clone(), object.key.clone());
            tokio::spawn(async move { get_range(&client, &bucket, &key, range).await })
        })
        .buffered(concurrency.max(1));
    let mut bytes = 0u64;
    while let Some(part) = parts.next().await {
        bytes += part??.len() as u64;
    }
    if bytes != size {
        bail!("read {bytes} bytes of a {size}-byte object");
    }
    report_rate(bytes, started);
    Ok(())
}

async fn ttfb(client: &Client, object: &ObjectArgs, lookup: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut lookup_seconds = 0.0;
    if lookup {
        let head = client
            .head_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send();
        let list = client
            .list_objects_v2()
            .bucket(&object.bucket)
            .prefix(format!("{}/", object.key))
            .delimiter("/")
            .max_keys(1)
            .send();
        let (head, list) = tokio::join!(head, list);
        head.with_context(|| format!("HEAD {}", object.key))?;
        list.with_context(|| format!("ListObjectsV2 {}/", object.key))?;
        lookup_seconds = started.elapsed().as_secs_f64();
    }
    let mut output = client
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .range("bytes=0-0")
        .send()
        .await
        .with_context(|| format!("GET {} bytes=0-0", object.key))?;
    let first = output.body.next().await.transpose()?;
    let seconds = started.elapsed().as_secs_f64();
    if first.is_none_or(|chunk| chunk.is_empty()) {
        bail!("GET {} bytes=0-0 returned no byte", object.key);
    }
    println!("seconds={seconds:.4} lookup_seconds={lookup_seconds:.4}");
    Ok(())
}

/// One ListObjectsV2 page; `delimited` rolls deeper keys up into prefixes.
async fn list_page(
    client: &Client,
    bucket: &str,
    prefix: &str,
    delimited: bool,
    continuation: Option<String>,
) -> anyhow::Result<(Vec<String>, usize, Option<String>)> {
    let output = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .set_delimiter(delimited.then(|| "/".to_owned()))
        .set_continuation_token(continuation)
        .max_keys(LIST_PAGE_KEYS)
        .send()
        .await
        .with_context(|| format!("ListObjectsV2 {prefix:?}"))?;
    let keys = output
        .contents
        .unwrap_or_default()
        .into_iter()
        .filter_map(|object| object.key)
        .collect();
    let prefixes = output.common_prefixes.unwrap_or_default().len();
    let next = match output.is_truncated {
        Some(true) => output.next_continuation_token,
        _ => None,
    };
    Ok((keys, prefixes, next))
}

/// What `list` asks for: one level or everything below, and how much of it.
struct ListShape {
    recursive: bool,
    max_pages: Option<usize>,
}

/// HEADs `list --heads` lets wait for a permit at most: two pages' worth.
const HEADS_QUEUED_AHEAD: usize = 2000;

async fn list(
    client: &Client,
    bucket: &str,
    prefix: &str,
    shape: ListShape,
    heads: bool,
    concurrency: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    // HEADs queued behind the ones in flight, at most: the listing runs
    // ahead of them by about two pages, as a file system's would, instead
    // of queueing a task for every key of a million-key tree (6.3 GB).
    let queued = Arc::new(Semaphore::new(HEADS_QUEUED_AHEAD));
    let mut head_count = 0usize;
    let mut tasks = JoinSet::new();
    let (mut objects, mut prefixes, mut pages) = (0usize, 0usize, 0usize);
    let mut continuation = None;
    loop {
        let (keys, page_prefixes, next) =
            list_page(client, bucket, prefix, !shape.recursive, continuation).await?;
        pages += 1;
        objects += keys.len();
        prefixes += page_prefixes;
        if heads {
            // Started while the next page is fetched, as a filesystem that
            // prefetches attributes during readdir could.
            for key in keys {
                let queued_slot = Arc::clone(&queued).acquire_owned().await?;
                while let Some(result) = tasks.try_join_next() {
                    result??;
                    head_count += 1;
                }
                let (client, bucket) = (client.clone(), bucket.to_owned());
                let permits = Arc::clone(&permits);
                tasks.spawn(async move {
                    let _queued_slot = queued_slot;
                    let _permit = permits.acquire_owned().await?;
                    client
                        .head_object()
                        .bucket(bucket)
                        .key(&key)
                        .send()
                        .await
                        .with_context(|| format!("HEAD {key}"))?;
                    anyhow::Ok(())
                });
            }
        }
        continuation = next;
        if continuation.is_none() || shape.max_pages.is_some_and(|max| pages >= max) {
            break;
        }
    }
    while let Some(result) = tasks.join_next().await {
        result??;
        head_count += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let stopped_early = u8::from(continuation.is_some());
    println!(
        "objects={objects} prefixes={prefixes} pages={pages} heads={head_count} seconds={seconds:.3} stopped_early={stopped_early}"
    );
    Ok(())
}

async fn get_all(
    client: &Client,
    bucket: &str,
    prefix: &str,
    dest: &Path,
    concurrency: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let bytes = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let mut objects = 0usize;
    let mut continuation = None;
    loop {
        let (keys, _, next) = list_page(client, bucket, prefix, false, continuation).await?;
        for key in keys {
            let Some(relative) = key.strip_prefix(prefix).filter(|rest| !rest.is_empty()) else {
                continue;
            };
            // A directory marker ("d/") has nothing to copy but its directory.
            let path = dest.join(relative);
            objects += 1;
            let (client, bucket) = (client.clone(), bucket.to_owned());
            let (permits, bytes) = (Arc::clone(&permits), Arc::clone(&bytes));
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await?;
                if key.ends_with('/') {
                    tokio::fs::create_dir_all(&path).await?;
                    return anyhow::Ok(());
                }
                let output = client
                    .get_object()
                    .bucket(bucket)
                    .key(&key)
                    .send()
                    .await
                    .with_context(|| format!("GET {key}"))?;
                let data = output.body.collect().await?.into_bytes();
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent).await?;
                }
                tokio::fs::write(&path, &data).await?;
                bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                anyhow::Ok(())
            });
        }
        continuation = next;
        if continuation.is_none() {
            break;
        }
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "objects={objects} bytes={} seconds={seconds:.3}",
        bytes.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn create_bucket(client: &Client, bucket: &str) -> anyhow::Result<()> {
    match client.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(err)
            if err
                .as_service_error()
                // s3s-fs answers BucketAlreadyExists even to the bucket's owner.
                .is_some_and(|e| {
                    e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
                }) =>
        {
            Ok(())
        }
        Err(err) => Err(err).with_context(|| format!("CreateBucket {bucket}")),
    }
}

/// Fills `buffer` with splitmix64 output: incompressible enough that no
/// layer can shortcut it, and far faster than reading /dev/urandom.
fn fill_pseudo_random(buffer: &mut [u8], seed: u64) {
    let mut state = seed;
    for chunk in buffer.chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
}

/// Decimal digits of `n`, at least `min`: names of one width sort in index
/// order, and trees of up to 100 directories and 100,000 objects keep the
/// names they always had (`d07/f01234`).
fn name_width(n: usize, min: usize) -> usize {
    n.saturating_sub(1).to_string().len().max(min)
}

async fn put_tree(client: &Client, args: &PutTreeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mtime = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    // SAFETY: getuid and getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let (dir_width, file_width) = (name_width(args.dirs, 2), name_width(args.count, 5));
    // Requests are built as they are started, not all up front: a tree of a
    // million keys would otherwise hold a million pending requests.
    let mut puts = futures::stream::iter(0..args.count)
        .map(|index| {
            let key = match args.dirs {
                0 => format!("{}f{index:0file_width$}", args.prefix),
                dirs => format!(
                    "{}d{:0dir_width$}/f{index:0file_width$}",
                    args.prefix,
                    index % dirs
                ),
            };
            let mut request = client.put_object().bucket(&args.bucket).key(&key);
            if args.posix_metadata {
                request = request
                    .metadata("mode", S3FS_FILE_MODE.to_string())
                    .metadata("uid", uid.to_string())
                    .metadata("gid", gid.to_string())
                    .metadata("mtime", mtime.to_string());
            }
            let size = args.size;
            // Spawned, so that requests are sent and answered on every worker thread.
            tokio::spawn(async move {
                let mut data = vec![0u8; size];
                fill_pseudo_random(&mut data, index as u64);
                request
                    .body(ByteStream::from(data))
                    .send()
                    .await
                    .with_context(|| format!("PUT {key}"))?;
                anyhow::Ok(())
            })
        })
        .buffer_unordered(args.concurrency.max(1));
    while let Some(result) = puts.next().await {
        result??;
    }
    println!(
        "objects={} seconds={:.3}",
        args.count,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn put_file(
    client: &Client,
    object: &ObjectArgs,
    file: &Path,
    part_size_bytes: u64,
    concurrency: usize,
    sign: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let size = tokio::fs::metadata(file)
        .await
        .with_context(|| format!("{}", file.display()))?
        .len();
    let (bucket, key) = (&object.bucket, &object.key);
    if size <= part_size_bytes {
        let put = client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(tokio::fs::read(file).await?))
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .customize();
        unless(sign, put, |put| put.disable_payload_signing())
            .send()
            .await
            .with_context(|| format!("PUT {key}"))?;
        report_rate(size, started);
        return Ok(());
    }
    let upload_id = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .with_context(|| format!("CreateMultipartUpload {key}"))?
        .upload_id
        .context("CreateMultipartUpload returned no upload id")?;
    let part_count = size.div_ceil(part_size_bytes);
    let parts = futures::stream::iter(1..=part_count)
        .map(|number| {
            let (client, bucket, key) = (client.clone(), bucket.clone(), key.clone());
            let (upload_id, file) = (upload_id.clone(), file.to_owned());
            tokio::spawn(async move {
                let offset = (number - 1) * part_size_bytes;
                let len = part_size_bytes.min(size - offset);
                let mut reader = tokio::fs::File::open(&file).await?;
                tokio::io::AsyncSeekExt::seek(&mut reader, std::io::SeekFrom::Start(offset))
                    .await?;
                let mut data = vec![0u8; len as usize];
                reader.read_exact(&mut data).await?;
                let part = client
                    .upload_part()
                    .bucket(bucket)
                    .key(&key)
                    .upload_id(upload_id)
                    .part_number(i32::try_from(number)?)
                    .body(ByteStream::from(data))
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .customize();
                let output = unless(sign, part, |part| part.disable_payload_signing())
                    .send()
                    .await
                    .with_context(|| format!("UploadPart {key} #{number}"))?;
                anyhow::Ok(
                    CompletedPart::builder()
                        .part_number(i32::try_from(number)?)
                        .set_e_tag(output.e_tag)
                        .build(),
                )
            })
        })
        .buffered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let parts = parts
        .into_iter()
        .map(|joined| joined?)
        .collect::<anyhow::Result<Vec<_>>>()?;
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .with_context(|| format!("CompleteMultipartUpload {key}"))?;
    report_rate(size, started);
    Ok(())
}

/// A local file and the key it is uploaded to.
struct LocalFile {
    path: PathBuf,
    key: String,
    size: u64,
}

/// The files under `local` (or `local` itself if it is a file) with their
/// keys, in path order: the order `cp -r` and `tar` create them in is close
/// enough, and a fixed order keeps runs comparable.
fn local_files(local: &Path, prefix: &str) -> anyhow::Result<Vec<LocalFile>> {
    let metadata = std::fs::metadata(local).with_context(|| format!("{}", local.display()))?;
    if metadata.is_file() {
        return Ok(vec![LocalFile {
            path: local.to_owned(),
            key: prefix.to_owned(),
            size: metadata.len(),
        }]);
    }
    let mut files = Vec::new();
    let mut pending = vec![local.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                pending.push(path);
            } else if file_type.is_file() {
                let relative = path.strip_prefix(local)?.to_string_lossy().into_owned();
                files.push(LocalFile {
                    key: format!("{prefix}{relative}"),
                    size: entry.metadata()?.len(),
                    path,
                });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

async fn put_files(
    client: &Client,
    bucket: &str,
    prefix: &str,
    dir: &Path,
    concurrency: usize,
    sign: bool,
) -> anyhow::Result<()> {
    let files = local_files(dir, prefix)?;
    let started = Instant::now();
    // Reading each file is part of the timed work, as it is for `cp`.
    let results = futures::stream::iter(files)
        .map(|file| {
            let (client, bucket) = (client.clone(), bucket.to_owned());
            async move {
                let data = tokio::fs::read(&file.path)
                    .await
                    .with_context(|| format!("{}", file.path.display()))?;
                let put = client
                    .put_object()
                    .bucket(bucket)
                    .key(&file.key)
                    .body(ByteStream::from(data))
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .customize();
                unless(sign, put, |put| put.disable_payload_signing())
                    .send()
                    .await
                    .with_context(|| format!("PUT {}", file.key))?;
                anyhow::Ok(file.size)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let objects = results.len();
    let bytes = results.into_iter().sum::<anyhow::Result<u64>>()?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "objects={objects} bytes={bytes} seconds={seconds:.3} files_per_s={:.1}",
        objects as f64 / seconds
    );
    Ok(())
}

/// How often a key that is not there yet is asked for again; small against
/// the seconds an upload takes, large against one HEAD.
const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(50);

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// Prints `done_at`, the wall-clock time (Unix seconds) at which the last
/// object was seen with its size. Objects already there are confirmed by one
/// HEAD each, so `done_at` is an upper bound, late by about the time the
/// HEADs take (`seconds` when nothing had to be waited for).
async fn wait(
    client: &Client,
    bucket: &str,
    prefix: &str,
    local: &Path,
    concurrency: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let files = local_files(local, prefix)?;
    let started = Instant::now();
    let deadline = started + timeout;
    let results = futures::stream::iter(files)
        .map(|file| {
            let (client, bucket) = (client.clone(), bucket.to_owned());
            async move {
                let mut polls = 0u64;
                loop {
                    polls += 1;
                    let head = client
                        .head_object()
                        .bucket(&bucket)
                        .key(&file.key)
                        .send()
                        .await;
                    let last = match head {
                        Ok(output) if output.content_length == Some(file.size as i64) => {
                            return anyhow::Ok((SystemTime::now(), polls));
                        }
                        Ok(output) => format!("size {:?}", output.content_length),
                        // Not there yet (404), or any other answer: asked again until the deadline.
                        Err(err) => format!("{err}"),
                    };
                    if Instant::now() >= deadline {
                        bail!("{} not in the bucket after {timeout:?}: {last}", file.key);
                    }
                    tokio::time::sleep(WAIT_POLL_INTERVAL).await;
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let objects = results.len();
    let (mut done_at, mut heads) = (SystemTime::UNIX_EPOCH, 0u64);
    for result in results {
        let (seen_at, polls) = result?;
        done_at = done_at.max(seen_at);
        heads += polls;
    }
    println!(
        "objects={objects} heads={heads} seconds={:.3} done_at={:.6}",
        started.elapsed().as_secs_f64(),
        unix_seconds(done_at)
    );
    Ok(())
}

async fn delete_prefix(
    client: &Client,
    bucket: &str,
    prefix: &str,
    concurrency: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut keys = Vec::new();
    let mut continuation = None;
    loop {
        let (page, _, next) = list_page(client, bucket, prefix, false, continuation).await?;
        keys.extend(page);
        continuation = next;
        if continuation.is_none() {
            break;
        }
    }
    let objects = keys.len();
    let results = futures::stream::iter(keys)
        .map(|key| {
            let (client, bucket) = (client.clone(), bucket.to_owned());
            async move {
                client
                    .delete_object()
                    .bucket(bucket)
                    .key(&key)
                    .send()
                    .await
                    .with_context(|| format!("DELETE {key}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    results.into_iter().collect::<anyhow::Result<()>>()?;
    println!(
        "objects={objects} seconds={:.3}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
