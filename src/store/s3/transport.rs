//! The HTTP client under the SDK: hyper with rustls, as the SDK's default,
//! wrapped so that an attempt fails when no byte moves for the stall timeout,
//! whatever it is doing: connecting, sending its body, waiting for the
//! response headers, or receiving the response body. A transfer that keeps
//! moving is never cut, however long it takes; there is no whole-attempt
//! timeout.
//!
//! Progress on the way out is seen as hyper takes the request body, which is
//! handed over in [`CHUNK_BYTES`] slices: hyper asks for the next slice only
//! once its write buffer has room, so taking one means bytes left for the
//! socket. Requests the store answers only after working on them
//! (CopyObject, UploadPartCopy, CompleteMultipartUpload: no byte moves while
//! S3 copies or assembles gigabytes) wait up to the server-work timeout for
//! their headers instead, once their body is sent.
//!
//! Bytes hyper has handed to the kernel may still be on their way: while
//! the connection's send queue shrinks (see `send_queue`), the request is
//! moving too.
//!
//! Every attempt is admitted by the endpoint's [`EndpointHealth`] first and
//! reports to it how it ended.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{Builder, ConnectorBuilder, tls};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connection::CaptureSmithyConnection;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::health::{EndpointHealth, Outcome, Wait};
use super::send_queue;

/// Request bodies are handed to hyper in slices of this size, so that the
/// slowest transfer still counted as moving is this much per stall timeout
/// (1.6 KB/s at the default 10 s); smaller slices only cost more wake-ups.
const CHUNK_BYTES: usize = 16 * 1024;

/// The bounds an attempt runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bounds {
    /// No byte moved for this long, in any phase: the attempt failed.
    pub stall: Duration,
    /// Wait for the headers of a request the store works on first.
    pub server_work: Duration,
}

/// The SDK's default HTTPS client wrapped in [`StallGuard`].
pub(super) fn http_client(bounds: Bounds, health: Arc<EndpointHealth>) -> SharedHttpClient {
    // As aws-smithy-runtime builds its default client: rustls with aws-lc,
    // proxies from the environment.
    let inner = Builder::new().build_with_connector_fn(|settings, components| {
        let mut builder = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        builder.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            builder.set_sleep_impl(components.sleep_impl());
        }
        builder.set_proxy_config(Some(ProxyConfig::from_env()));
        builder.build()
    });
    SharedHttpClient::new(StallGuardClient {
        inner,
        bounds,
        health,
    })
}

#[derive(Debug)]
struct StallGuardClient {
    inner: SharedHttpClient,
    bounds: Bounds,
    health: Arc<EndpointHealth>,
}

impl HttpClient for StallGuardClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(StallGuard {
            inner: self.inner.http_connector(settings, components),
            bounds: self.bounds,
            health: Arc::clone(&self.health),
        })
    }

    fn validate_base_client_config(
        &self,
        components: &RuntimeComponentsBuilder,
        config: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_base_client_config(components, config)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[derive(Debug)]
struct StallGuard {
    inner: SharedHttpConnector,
    bounds: Bounds,
    health: Arc<EndpointHealth>,
}

impl HttpConnector for StallGuard {
    fn call(&self, mut request: HttpRequest) -> HttpConnectorFuture {
        let inner = self.inner.clone();
        let bounds = self.bounds;
        let health = Arc::clone(&self.health);
        let wait = wait_of(&request);
        HttpConnectorFuture::new(async move {
            let ticket = health.admit(wait).map_err(|silent_for| {
                ConnectorError::other(Box::new(EndpointSilent { silent_for }), None)
            })?;
            let progress = Arc::new(Progress::new());
            let body = request.take_body();
            *request.body_mut() = SdkBody::from_body_1_x(Sliced {
                inner: body,
                pending: Bytes::new(),
                progress: Arc::clone(&progress),
            });
            // The SDK may have asked for the connection already; share it.
            let connection = match request.extension::<CaptureSmithyConnection>() {
                Some(capture) => capture.clone(),
                None => {
                    let capture = CaptureSmithyConnection::new();
                    request.add_extension(capture.clone());
                    capture
                }
            };
            let answer_wait = match wait {
                Wait::Ordinary => bounds.stall,
                Wait::ServerWork => bounds.server_work,
            };
            let response = inner.call(request);
            tokio::pin!(response);
            let mut last_queue = None;
            loop {
                let deadline = progress.deadline(bounds.stall, answer_wait);
                let wake = deadline.min(Instant::now() + bounds.stall / 2);
                tokio::select! {
                    result = &mut response => {
                        return match result {
                            Ok(response) => {
                                ticket.finish(Outcome::Answered);
                                Ok(guard_response(response, bounds.stall, health))
                            }
                            Err(error) => {
                                ticket.finish(if error.is_timeout() {
                                    Outcome::NoAnswer
                                } else {
                                    Outcome::FailedFast
                                });
                                Err(error)
                            }
                        };
                    }
                    () = tokio::time::sleep_until(wake) => {
                        // Bytes the kernel took may still be leaving.
                        let queue = connection.get().and_then(|connection| {
                            send_queue::unacknowledged_bytes(
                                connection.local_addr()?,
                                connection.remote_addr()?,
                            )
                        });
                        if let (Some(queue), Some(last)) = (queue, last_queue)
                            && queue < last
                        {
                            progress.touch();
                        }
                        last_queue = queue;
                        if progress.deadline(bounds.stall, answer_wait) <= Instant::now() {
                            ticket.finish(Outcome::NoAnswer);
                            let phase = progress.phase();
                            return Err(ConnectorError::timeout(Box::new(Stalled { phase })));
                        }
                    }
                }
            }
        })
    }
}

/// Which bound the wait for a request's headers falls under. Copies carry
/// `x-amz-copy-source`; CompleteMultipartUpload is the one POST with an
/// `uploadId` (CreateMultipartUpload posts `?uploads`).
fn wait_of(request: &HttpRequest) -> Wait {
    let is_copy = request.headers().get("x-amz-copy-source").is_some();
    let is_complete = request.method() == "POST"
        && request
            .uri()
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|pair| pair.starts_with("uploadId=")));
    if is_copy || is_complete {
        Wait::ServerWork
    } else {
        Wait::Ordinary
    }
}

/// Where an attempt was when it stalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Connecting or sending the request; nothing of its body taken yet,
    /// or some of it.
    Sending,
    /// The whole request is out; no headers yet.
    AwaitingAnswer,
    /// Headers came; the body stopped.
    Receiving,
}

/// When the request last moved, shared with its body.
#[derive(Debug)]
struct Progress {
    state: Mutex<(Instant, Phase)>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            state: Mutex::new((Instant::now(), Phase::Sending)),
        }
    }

    fn moved(&self, phase: Phase) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = (Instant::now(), phase);
    }

    /// Progress seen elsewhere than in the body: the phase stays.
    fn touch(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0 = Instant::now();
    }

    fn phase(&self) -> Phase {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    fn deadline(&self, stall: Duration, answer_wait: Duration) -> Instant {
        let (last, phase) = *self.state.lock().unwrap_or_else(|e| e.into_inner());
        match phase {
            Phase::AwaitingAnswer => last + answer_wait,
            Phase::Sending | Phase::Receiving => last + stall,
        }
    }
}

/// The request body, handed out in slices of at most [`CHUNK_BYTES`], each
/// taken slice counted as progress; the end counts as the whole request sent.
struct Sliced {
    inner: SdkBody,
    pending: Bytes,
    progress: Arc<Progress>,
}

impl Body for Sliced {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.pending.is_empty() {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.progress.moved(Phase::AwaitingAnswer);
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.pending = data,
                    // Trailers pass as they are.
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
            }
        }
        let slice = this.pending.split_to(this.pending.len().min(CHUNK_BYTES));
        this.progress.moved(Phase::Sending);
        Poll::Ready(Some(Ok(Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        let ended = self.pending.is_empty() && Body::is_end_stream(&self.inner);
        if ended {
            // hyper never polls a body that says it has ended.
            self.progress.moved(Phase::AwaitingAnswer);
        }
        ended
    }

    fn size_hint(&self) -> SizeHint {
        let inner = Body::size_hint(&self.inner);
        let pending = self.pending.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + pending);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + pending);
        }
        hint
    }
}

/// The response with its body failing once no byte arrives for `stall`.
fn guard_response(
    mut response: HttpResponse,
    stall: Duration,
    health: Arc<EndpointHealth>,
) -> HttpResponse {
    let body = response.take_body();
    if body.is_end_stream() {
        *response.body_mut() = body;
        return response;
    }
    *response.body_mut() = SdkBody::from_body_1_x(StallGuardedBody {
        inner: body,
        stall,
        timer: Box::pin(tokio::time::sleep(stall)),
        health,
    });
    response
}

struct StallGuardedBody {
    inner: SdkBody,
    stall: Duration,
    timer: Pin<Box<Sleep>>,
    health: Arc<EndpointHealth>,
}

impl Body for StallGuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = Instant::now() + this.stall;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(frame)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.health.report(Outcome::NoAnswer);
                    Poll::Ready(Some(Err(Box::new(Stalled {
                        phase: Phase::Receiving,
                    }))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> SizeHint {
        Body::size_hint(&self.inner)
    }
}

/// No byte moved for the stall timeout.
#[derive(Debug, thiserror::Error)]
#[error("no byte moved within the stall timeout ({phase:?})")]
pub(super) struct Stalled {
    pub phase: Phase,
}

/// Sent nothing: the endpoint has not answered lately.
#[derive(Debug, thiserror::Error)]
#[error(
    "the endpoint has not answered for {} s; requests fail at once until one gets an answer",
    silent_for.as_secs()
)]
pub(super) struct EndpointSilent {
    pub silent_for: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, header: Option<(&'static str, &str)>) -> HttpRequest {
        let mut builder = http::Request::builder().method(method).uri(uri);
        if let Some((name, value)) = header {
            builder = builder.header(name, value);
        }
        HttpRequest::try_from(builder.body(SdkBody::empty()).unwrap()).unwrap()
    }

    #[test]
    fn copies_and_completions_wait_for_server_work() {
        let base = "http://127.0.0.1:9000/bucket/key";
        assert_eq!(wait_of(&request("GET", base, None)), Wait::Ordinary);
        assert_eq!(
            wait_of(&request(
                "PUT",
                base,
                Some(("x-amz-copy-source", "bucket/src"))
            )),
            Wait::ServerWork
        );
        assert_eq!(
            wait_of(&request("POST", &format!("{base}?uploadId=abc"), None)),
            Wait::ServerWork
        );
        assert_eq!(
            wait_of(&request("POST", &format!("{base}?uploads"), None)),
            Wait::Ordinary
        );
        assert_eq!(
            wait_of(&request(
                "PUT",
                &format!("{base}?partNumber=1&uploadId=abc"),
                None
            )),
            Wait::Ordinary
        );
    }

    #[tokio::test]
    async fn request_bodies_are_handed_out_in_slices() {
        use http_body_util::BodyExt;
        let progress = Arc::new(Progress::new());
        let data = Bytes::from(vec![7u8; 2 * CHUNK_BYTES + 5]);
        let mut body = Sliced {
            inner: SdkBody::from(data.clone()),
            pending: Bytes::new(),
            progress: Arc::clone(&progress),
        };
        assert_eq!(body.size_hint().exact(), Some(data.len() as u64));
        let mut sizes = Vec::new();
        while let Some(frame) = body.frame().await {
            sizes.push(frame.unwrap().into_data().unwrap().len());
            assert_eq!(progress.phase(), Phase::Sending);
        }
        assert_eq!(sizes, [CHUNK_BYTES, CHUNK_BYTES, 5]);
        assert_eq!(progress.phase(), Phase::AwaitingAnswer);
    }
}
