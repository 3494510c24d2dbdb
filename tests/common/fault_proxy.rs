//! An HTTP proxy of our own between bucketfs and the test S3 server that
//! injects network faults, so that mount tests see what a real network does.
//!
//! The mount's `--endpoint-url` points at the proxy; the proxy forwards each
//! request to the server unchanged (method, path and query byte for byte, the
//! `Host` header bucketfs signed, the body), so SigV4 signatures still
//! verify, and streams the answer back. Per request it draws once from a
//! seeded RNG and, by [`FaultConfig`], injects at most one [`Fault`]:
//!
//! - `SlowDown` / `InternalError`: answers 503 / 500 with an S3 XML error
//!   body; the server never sees the request.
//! - `Reset`: closes the connection with SO_LINGER 0 (an RST) before any
//!   answer; the server never sees the request.
//! - `CutBody`: forwards, sends the answer's headers with the full
//!   Content-Length, then part of the body, then closes the connection. Only
//!   answers with a body of at least 2 bytes can be cut; others pass and are
//!   not counted.
//! - `Stall`: holds the request without answering for
//!   [`FaultConfig::stall`] (longer than the client's timeout), then closes
//!   the connection; the server never sees the request.
//! - `Latency`: waits a random time within [`FaultConfig::latency`], then
//!   forwards.
//!
//! The proxy never changes a byte: a cut body always ends in a closed
//! connection short of its Content-Length, which any HTTP client detects.
//! It counts what it injected per kind and can pass everything through
//! ([`FaultProxy::set_enabled`]) at runtime. It runs on its own tokio runtime,
//! which [`Drop`] shuts down with every connection and timer on it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::S3Target;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;

/// How long a cut body waits, after its last bytes, before it fails: long
/// enough for hyper to flush those bytes to the client, so the client sees
/// headers, then part of the body, then the close.
const CUT_FLUSH_DELAY: Duration = Duration::from_millis(50);
/// Bound on the wait for the proxy's tasks when it is dropped; every task is
/// cancellable, so this is only reached by a task stuck in a syscall.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// A fault the proxy can inject into one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// 503 SlowDown, S3's throttling answer.
    SlowDown,
    /// 500 InternalError.
    InternalError,
    /// The connection is reset (RST) before any answer.
    Reset,
    /// Headers with the full Content-Length, part of the body, then a close.
    CutBody,
    /// No answer for [`FaultConfig::stall`], then a close.
    Stall,
    /// The request is forwarded after a delay within [`FaultConfig::latency`].
    Latency,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::SlowDown,
        Fault::InternalError,
        Fault::Reset,
        Fault::CutBody,
        Fault::Stall,
        Fault::Latency,
    ];

    fn index(self) -> usize {
        Fault::ALL
            .iter()
            .position(|&fault| fault == self)
            .expect("every fault is in Fault::ALL")
    }
}

/// What an S3 request asks, told from its method, path and query alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestKind {
    ListBuckets,
    ListObjects,
    HeadBucket,
    CreateBucket,
    GetObject,
    HeadObject,
    PutObject,
    CopyObject,
    DeleteObject,
    DeleteObjects,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    ListMultipartUploads,
    Other,
}

impl RequestKind {
    /// Path-style requests only (`/bucket` or `/bucket/key`), as the mount
    /// is started with `--force-path-style`.
    pub fn of<B>(request: &Request<B>) -> RequestKind {
        let path = request.uri().path();
        let query = request.uri().query().unwrap_or("");
        let has = |name: &str| {
            query
                .split('&')
                .any(|pair| pair.split('=').next() == Some(name))
        };
        let is_copy = request.headers().contains_key("x-amz-copy-source");
        let trimmed = path.trim_start_matches('/');
        let names_object = trimmed
            .split_once('/')
            .is_some_and(|(_, key)| !key.is_empty());
        let method = request.method();
        if trimmed.is_empty() {
            return if method == Method::GET {
                RequestKind::ListBuckets
            } else {
                RequestKind::Other
            };
        }
        if !names_object {
            return match *method {
                Method::GET if has("uploads") => RequestKind::ListMultipartUploads,
                Method::GET => RequestKind::ListObjects,
                Method::HEAD => RequestKind::HeadBucket,
                Method::PUT => RequestKind::CreateBucket,
                Method::POST if has("delete") => RequestKind::DeleteObjects,
                _ => RequestKind::Other,
            };
        }
        match *method {
            Method::GET if has("uploadId") => RequestKind::ListParts,
            Method::GET => RequestKind::GetObject,
            Method::HEAD => RequestKind::HeadObject,
            Method::PUT if has("uploadId") && is_copy => RequestKind::UploadPartCopy,
            Method::PUT if has("uploadId") => RequestKind::UploadPart,
            Method::PUT if is_copy => RequestKind::CopyObject,
            Method::PUT => RequestKind::PutObject,
            Method::POST if has("uploads") => RequestKind::CreateMultipartUpload,
            Method::POST if has("uploadId") => RequestKind::CompleteMultipartUpload,
            Method::DELETE if has("uploadId") => RequestKind::AbortMultipartUpload,
            Method::DELETE => RequestKind::DeleteObject,
            _ => RequestKind::Other,
        }
    }
}

/// One fault kind's share of the requests.
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub fault: Fault,
    /// Share of the (eligible) requests that get this fault, 0.0 to 1.0.
    pub probability: f64,
    /// `None`: every request is eligible; otherwise only these kinds.
    pub only: Option<Vec<RequestKind>>,
}

impl FaultRule {
    pub fn new(fault: Fault, probability: f64) -> FaultRule {
        FaultRule {
            fault,
            probability,
            only: None,
        }
    }

    pub fn only(mut self, kinds: &[RequestKind]) -> FaultRule {
        self.only = Some(kinds.to_vec());
        self
    }

    fn applies_to(&self, kind: RequestKind) -> bool {
        self.only.as_ref().is_none_or(|kinds| kinds.contains(&kind))
    }
}

#[derive(Clone, Debug)]
pub struct FaultConfig {
    /// Seed of the RNG behind every decision; printed by the tests so a run
    /// can be replayed (up to the order in which concurrent requests draw).
    pub seed: u64,
    /// At most one fault per request: one draw in [0, 1) picks the first
    /// rule (in this order, among those eligible) whose cumulative
    /// probability exceeds it. The probabilities of eligible rules should
    /// therefore add up to at most 1.
    pub rules: Vec<FaultRule>,
    /// How long a stalled request is held before its connection is closed.
    pub stall: Duration,
    /// The delay a `Latency` fault adds.
    pub latency: RangeInclusive<Duration>,
}

impl FaultConfig {
    /// No faults: the proxy passes everything.
    pub fn none(seed: u64) -> FaultConfig {
        FaultConfig {
            seed,
            rules: Vec::new(),
            stall: Duration::from_secs(5),
            latency: Duration::from_millis(50)..=Duration::from_millis(300),
        }
    }

    /// Every fault kind at `probability` of the requests, stalls held for
    /// `stall`.
    pub fn each(seed: u64, probability: f64, stall: Duration) -> FaultConfig {
        FaultConfig {
            rules: Fault::ALL
                .iter()
                .map(|&fault| FaultRule::new(fault, probability))
                .collect(),
            stall,
            ..FaultConfig::none(seed)
        }
    }

    pub fn with_rule(mut self, rule: FaultRule) -> FaultConfig {
        self.rules.retain(|existing| existing.fault != rule.fault);
        self.rules.push(rule);
        self
    }
}

/// Faults injected so far, per kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultCounts {
    pub injected: BTreeMap<Fault, u64>,
    /// Requests the proxy received (faulty or not).
    pub requests: u64,
    /// The same, per kind of request.
    pub requests_by_kind: BTreeMap<RequestKind, u64>,
    /// Requests the proxy could not forward (the server refused or failed):
    /// answered 502, never counted as injected.
    pub upstream_failures: u64,
}

impl FaultCounts {
    pub fn get(&self, fault: Fault) -> u64 {
        self.injected.get(&fault).copied().unwrap_or(0)
    }

    /// Kinds that were configured but never injected.
    pub fn missing(&self) -> Vec<Fault> {
        Fault::ALL
            .iter()
            .copied()
            .filter(|&fault| self.get(fault) == 0)
            .collect()
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} requests;", self.requests)?;
        for fault in Fault::ALL {
            write!(f, " {fault:?}={}", self.get(fault))?;
        }
        write!(
            f,
            "; upstream failures={}; requests by kind:",
            self.upstream_failures
        )?;
        for (kind, count) in &self.requests_by_kind {
            write!(f, " {kind:?}={count}")?;
        }
        Ok(())
    }
}

struct Shared {
    config: FaultConfig,
    upstream: SocketAddr,
    enabled: AtomicBool,
    rng: Mutex<StdRng>,
    injected: [AtomicU64; Fault::ALL.len()],
    requests: AtomicU64,
    requests_by_kind: Mutex<BTreeMap<RequestKind, u64>>,
    upstream_failures: AtomicU64,
}

impl Shared {
    fn draw_fault(&self, kind: RequestKind) -> Option<Fault> {
        if !self.enabled.load(Ordering::SeqCst) {
            return None;
        }
        let draw: f64 = self.rng.lock().expect("fault RNG lock").random();
        let mut cumulative = 0.0;
        for rule in self
            .config
            .rules
            .iter()
            .filter(|rule| rule.applies_to(kind))
        {
            cumulative += rule.probability;
            if draw < cumulative {
                return Some(rule.fault);
            }
        }
        None
    }

    fn random_in(&self, range: RangeInclusive<u64>) -> u64 {
        self.rng.lock().expect("fault RNG lock").random_range(range)
    }

    fn count(&self, fault: Fault) {
        self.injected[fault.index()].fetch_add(1, Ordering::SeqCst);
    }
}

/// A running proxy; `Drop` stops it.
pub struct FaultProxy {
    shared: Arc<Shared>,
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port that forwards to the server at
    /// `upstream` (a `http://127.0.0.1:PORT` endpoint).
    pub fn start(upstream_endpoint: &str, config: FaultConfig) -> FaultProxy {
        let upstream: SocketAddr = upstream_endpoint
            .strip_prefix("http://")
            .and_then(|authority| authority.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("fault proxy wants http://IP:PORT, got {upstream_endpoint}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("fault proxy runtime");
        let listener = runtime
            .block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .expect("fault proxy: bind 127.0.0.1:0");
        let port = listener.local_addr().expect("fault proxy address").port();
        let shared = Arc::new(Shared {
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            config,
            upstream,
            enabled: AtomicBool::new(true),
            injected: Default::default(),
            requests: AtomicU64::new(0),
            requests_by_kind: Mutex::default(),
            upstream_failures: AtomicU64::new(0),
        });
        let (stop, stopped) = oneshot::channel();
        runtime.spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        FaultProxy {
            shared,
            port,
            stop: Some(stop),
            runtime: Some(runtime),
        }
    }

    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `server`'s credentials with the proxy as endpoint: what a mount
    /// behind the proxy is given.
    pub fn target(&self, server: &S3Target) -> S3Target {
        S3Target {
            endpoint_url: self.endpoint_url(),
            ..server.clone()
        }
    }

    /// `false`: pass every request through untouched from now on.
    pub fn set_enabled(&self, enabled: bool) {
        self.shared.enabled.store(enabled, Ordering::SeqCst);
    }

    pub fn counts(&self) -> FaultCounts {
        FaultCounts {
            injected: Fault::ALL
                .iter()
                .map(|&fault| {
                    (
                        fault,
                        self.shared.injected[fault.index()].load(Ordering::SeqCst),
                    )
                })
                .collect(),
            requests: self.shared.requests.load(Ordering::SeqCst),
            requests_by_kind: self
                .shared
                .requests_by_kind
                .lock()
                .expect("request count lock")
                .clone(),
            upstream_failures: self.shared.upstream_failures.load(Ordering::SeqCst),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient<HttpConnector, Incoming> =
        HttpClient::builder(TokioExecutor::new()).build(connector);
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    eprintln!("fault proxy: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            Arc::clone(&shared),
            client.clone(),
        ));
    }
}

/// How a fault ends a client connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnectionEnd {
    /// FIN, as a server that gave up would.
    Close,
    /// RST (SO_LINGER 0), as a crashed middlebox would.
    Reset,
}

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    client: HttpClient<HttpConnector, Incoming>,
) {
    let reset_on_drop = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(ClientStream {
        inner: stream,
        reset_on_drop: Arc::clone(&reset_on_drop),
    });
    let (end_tx, mut end_rx) = mpsc::unbounded_channel::<ConnectionEnd>();
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        let client = client.clone();
        let end = end_tx.clone();
        async move { Ok::<_, Infallible>(handle(request, shared, client, end).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    // Pinned here, not moved into the select: select! drops its futures
    // before it runs a branch, which would close the socket before the
    // branch could ask for an RST.
    tokio::pin!(connection);
    tokio::select! {
        // Errors here are the client's or a cut body's; nothing to report.
        _ = connection.as_mut() => {}
        end = end_rx.recv() => {
            if end == Some(ConnectionEnd::Reset) {
                reset_on_drop.store(true, Ordering::SeqCst);
            }
        }
    }
    // Returning drops the connection, its stream and any pending request
    // handler: the socket closes now.
}

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    client: HttpClient<HttpConnector, Incoming>,
    end: mpsc::UnboundedSender<ConnectionEnd>,
) -> Response<ProxyBody> {
    let number = shared.requests.fetch_add(1, Ordering::SeqCst);
    let kind = RequestKind::of(&request);
    *shared
        .requests_by_kind
        .lock()
        .expect("request count lock")
        .entry(kind)
        .or_default() += 1;
    let fault = shared.draw_fault(kind);
    match fault {
        Some(Fault::SlowDown) => {
            shared.count(Fault::SlowDown);
            drain(request).await;
            return s3_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "SlowDown",
                "Please reduce your request rate.",
                number,
            );
        }
        Some(Fault::InternalError) => {
            shared.count(Fault::InternalError);
            drain(request).await;
            return s3_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "We encountered an internal error. Please try again.",
                number,
            );
        }
        Some(Fault::Reset) => {
            shared.count(Fault::Reset);
            let _ = end.send(ConnectionEnd::Reset);
            return std::future::pending().await;
        }
        Some(Fault::Stall) => {
            shared.count(Fault::Stall);
            tokio::time::sleep(shared.config.stall).await;
            let _ = end.send(ConnectionEnd::Close);
            return std::future::pending().await;
        }
        Some(Fault::Latency) => {
            shared.count(Fault::Latency);
            let range = &shared.config.latency;
            let millis =
                shared.random_in(range.start().as_millis() as u64..=range.end().as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
        Some(Fault::CutBody) | None => {}
    }
    // Method and path only: the query and headers may carry signatures.
    let request_line = format!("{} {}", request.method(), request.uri().path());
    let response = match forward(request, &shared, &client).await {
        Ok(response) => response,
        Err(err) => {
            shared.upstream_failures.fetch_add(1, Ordering::SeqCst);
            eprintln!("fault proxy: request {number} ({kind:?}) not forwarded: {err}");
            let body = Full::new(Bytes::from(format!("fault proxy: {err}\n")))
                .map_err(|never| match never {})
                .boxed();
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(body)
                .expect("valid 502 response");
        }
    };
    let status = response.status();
    if status.is_server_error() || status == StatusCode::FORBIDDEN {
        // Not injected: the server's own refusal, worth seeing when a test
        // fails (s3s-fs logs none of these). Error bodies are small.
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        eprintln!(
            "fault proxy: request {number} ({kind:?}, {request_line}): the server answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        return Response::from_parts(
            parts,
            Full::new(body).map_err(|never| match never {}).boxed(),
        );
    }
    let content_length = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    match (fault, content_length) {
        (Some(Fault::CutBody), Some(length)) if length >= 2 => {
            shared.count(Fault::CutBody);
            let cut_at = shared.random_in(1..=length - 1);
            response.map(|body| CutBody::new(body, cut_at).boxed())
        }
        _ => response.map(|body| body.map_err(BoxError::from).boxed()),
    }
}

/// Sends `request` as it came to the server: only the URI gains the
/// server's address, which hyper turns back into the same origin-form path
/// and query on the wire. The `Host` header stays the one bucketfs signed.
async fn forward(
    mut request: Request<Incoming>,
    shared: &Shared,
    client: &HttpClient<HttpConnector, Incoming>,
) -> Result<Response<Incoming>, BoxError> {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let uri: Uri = format!("http://{}{}", shared.upstream, path_and_query).parse()?;
    if !request.headers().contains_key(HOST) {
        return Err("request without a Host header".into());
    }
    *request.uri_mut() = uri;
    Ok(client.request(request).await?)
}

/// Reads and discards a request body before an error answer, as S3 does:
/// answering while the client still sends would make the close that follows
/// look like a reset to it.
async fn drain(request: Request<Incoming>) {
    let _ = request.into_body().collect().await;
}

fn s3_error(status: StatusCode, code: &str, message: &str, number: u64) -> Response<ProxyBody> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message><RequestId>fault-proxy-{number}</RequestId></Error>"
    );
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/xml")
        .header("x-amz-request-id", format!("fault-proxy-{number}"))
        .body(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("valid S3 error response")
}

/// A response body that passes its first `cut_at` bytes, then fails, which
/// makes hyper close the connection short of the Content-Length it sent.
struct CutBody {
    inner: Incoming,
    remaining: u64,
    state: CutState,
}

enum CutState {
    Passing,
    /// The last bytes went out; fail once hyper had time to flush them.
    Flushing(Pin<Box<tokio::time::Sleep>>),
}

impl CutBody {
    fn new(inner: Incoming, cut_at: u64) -> CutBody {
        CutBody {
            inner,
            remaining: cut_at,
            state: CutState::Passing,
        }
    }
}

impl Body for CutBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let CutState::Flushing(sleep) = &mut this.state {
            ready!(sleep.as_mut().poll(cx));
            return Poll::Ready(Some(Err("fault proxy: body cut".into())));
        }
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(err)) => return Poll::Ready(Some(Err(err.into()))),
            // The server sent less than it announced; the client sees that.
            None => return Poll::Ready(None),
        };
        let Ok(mut data) = frame.into_data() else {
            // Trailers: not part of the bytes we count; S3 sends none.
            return Poll::Ready(None);
        };
        if (data.len() as u64) >= this.remaining {
            data.truncate(this.remaining as usize);
            this.remaining = 0;
            this.state = CutState::Flushing(Box::pin(tokio::time::sleep(CUT_FLUSH_DELAY)));
        } else {
            this.remaining -= data.len() as u64;
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's TCP stream, which can be told to end in an RST.
struct ClientStream {
    inner: TcpStream,
    reset_on_drop: Arc<AtomicBool>,
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        if self.reset_on_drop.load(Ordering::SeqCst) {
            // With a zero linger time, close(2) discards unsent data and
            // sends an RST instead of a FIN.
            let _ = socket2::SockRef::from(&self.inner).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
