//! The edge: a bare hyper 1.x server with graceful shutdown, the router, request parsing,
//! the response envelope, and every endpoint with its response view (one file per
//! capability). A request goes route → parse into domain values → one service call →
//! envelope. Only this module knows HTTP; the API it serves is `api/openapi.json`.

mod admin;
mod catalogue;
mod pages;
mod payments;
mod queue;
mod request;
mod reservations;
mod response;
pub mod router;
mod wallet;

#[cfg(test)]
mod properties;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::app::App;
use crate::model::Error;
use crate::shutdown::Shutdown;
use response::Body;
use router::Route;

/// The OpenAPI 3 document of every endpoint (`api/openapi.json`), served at `/openapi.json`;
/// `tests/openapi.rs` keeps it and the router in step.
pub const OPENAPI: &str = include_str!("../../api/openapi.json");

/// Longest a request may take end to end before it is answered `503`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on the buffer a request head (request line and headers) is read into; a head that
/// outgrows it is answered 431. hyper reads in chunks of up to this size, so a head passes
/// it by less than one chunk before it is refused: memory per connection stays bounded.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest a client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest in-flight requests get to finish after a shutdown signal.
const GRACE: Duration = Duration::from_secs(20);
/// After a shutdown signal, the listener stays open while connections keep arriving, at most
/// this long, and closes once none has come for [`BACKLOG_QUIET`].
const BACKLOG_DRAIN: Duration = Duration::from_millis(500);
const BACKLOG_QUIET: Duration = Duration::from_millis(20);
/// After a shutdown signal, how long connections that have not begun a request yet (just
/// accepted, their request maybe already on its way) get to begin one before idle
/// connections are closed.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Connections that have not begun a request yet.
#[derive(Clone, Default)]
struct Fresh(Arc<AtomicUsize>);

/// One connection's place in [`Fresh`]: left when it begins a request or ends.
struct FreshMark {
    fresh: Fresh,
    counted: AtomicBool,
}

impl FreshMark {
    fn new(fresh: &Fresh) -> Arc<Self> {
        fresh.0.fetch_add(1, Ordering::AcqRel);
        Arc::new(Self {
            fresh: fresh.clone(),
            counted: AtomicBool::new(true),
        })
    }

    fn leave(&self) {
        if self.counted.swap(false, Ordering::AcqRel) {
            self.fresh.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Connections the kernel completes and keeps for `accept` (capped by
/// `net.core.somaxconn`). The standard library's 128 overflows when a crowd connects at
/// once: the kernel then drops the handshakes' last step and clients wait for SYN-ACK
/// retransmissions (1 s, 2 s, 4 s, …) before they are even accepted.
const ACCEPT_BACKLOG: u32 = 4096;

/// A listener on `addr` with room for a burst of connections ([`ACCEPT_BACKLOG`]).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Serves on `listener` until `shutdown` fires, then lets in-flight requests finish.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: Shutdown) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let fresh = Fresh::default();
    let serve_one = |stream: tokio::net::TcpStream| {
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mark = FreshMark::new(&fresh);
        let begun = mark.clone();
        // Boxed: hyper keeps the allocation of a request's future for the connection's
        // life; the box lives only while a request is handled (an event stream's
        // connection would otherwise keep the whole 4 KB of it).
        let service = service_fn(move |req| {
            begun.leave();
            Box::pin(handle(app.clone(), req))
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            mark.leave();
        });
    };
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = shutdown.triggered() => break,
        };
        serve_one(stream);
    }
    app.health.begin_shutdown();
    // Event streams would keep their responses in flight until the grace period ends.
    app.events.close();
    // Connections the kernel completed before the signal are served too, rather than reset
    // with the listener: accept until none has come for a moment (bounded); new ones are
    // refused once the listener is closed.
    let draining_since = tokio::time::Instant::now();
    while draining_since.elapsed() < BACKLOG_DRAIN {
        match tokio::time::timeout(BACKLOG_QUIET, listener.accept()).await {
            Ok(Ok((stream, _))) => serve_one(stream),
            _ => break,
        }
    }
    drop(listener);
    // A connection accepted a moment ago may have its request on the way: graceful shutdown
    // would close it as idle. So wait (bounded) until each has begun one; then graceful
    // shutdown closes the idle connections and lets each running request finish.
    let waiting_since = tokio::time::Instant::now();
    while fresh.0.load(Ordering::Acquire) > 0 && waiting_since.elapsed() < FIRST_REQUEST_GRACE {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if tokio::time::timeout(GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the grace period");
    }
}

/// The header that names a request in logs and to the client.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The caller's `X-Request-Id` when it is 1–64 characters of `[A-Za-z0-9._-]` (so it is
/// safe to log and echo), else a new random one.
fn request_id(headers: &hyper::HeaderMap) -> HeaderValue {
    headers
        .get(&REQUEST_ID)
        .filter(|v| {
            let b = v.as_bytes();
            (1..=64).contains(&b.len())
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
        })
        .cloned()
        .unwrap_or_else(|| {
            let id = uuid::Uuid::new_v4().simple().to_string();
            HeaderValue::from_str(&id).expect("hex digits are a valid header value")
        })
}

async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let id = request_id(req.headers());
    let id_text = id.to_str().unwrap_or_default();
    let matched = router::resolve(req.method(), req.uri().path());
    let method = method_label(req.method());
    let result = match matched.route {
        Ok(route) => {
            match tokio::time::timeout(REQUEST_TIMEOUT, dispatch(&app, route, req)).await {
                Ok(result) => result,
                Err(_) => Err(Error::Unavailable("request timed out".into())),
            }
        }
        Err(e) => Err(e),
    };
    let mut rsp = result.unwrap_or_else(|e| {
        match &e {
            Error::Internal(detail) => {
                tracing::error!(
                    request_id = id_text,
                    route = matched.template,
                    detail,
                    "internal error"
                )
            }
            // An open circuit fails every request at once: it logged when it opened.
            Error::RedisUnavailable(detail) if detail.contains("circuit open") => {
                tracing::debug!(
                    request_id = id_text,
                    route = matched.template,
                    detail,
                    "Redis circuit open"
                )
            }
            Error::Unavailable(detail) | Error::RedisUnavailable(detail) => {
                tracing::warn!(
                    request_id = id_text,
                    route = matched.template,
                    detail,
                    "dependency unavailable"
                )
            }
            Error::RateLimited => {
                metrics::counter!("seatrush_rate_limited_total", "route" => matched.template)
                    .increment(1);
            }
            _ => {}
        }
        response::error(&e)
    });
    app.requests.fetch_add(1, Ordering::Relaxed);
    let status = status_label(rsp.status().as_u16());
    tracing::debug!(
        request_id = id_text,
        method,
        route = matched.template,
        status,
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    rsp.headers_mut().insert(REQUEST_ID, id);
    metrics::counter!("seatrush_http_requests_total", "route" => matched.template, "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("seatrush_http_request_duration_seconds", "route" => matched.template, "status" => status)
        .record(started.elapsed().as_secs_f64());
    Ok(rsp)
}

async fn dispatch(
    app: &App,
    route: Route,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    if route.is_admin() {
        admin::authorize(app, headers)?;
    }
    // The caller's identity comes before the body is even read.
    let caller = || app.identity.verify(request::bearer(headers)?);
    let read_body = || request::read_body(headers, body);
    match route {
        Route::Health => {
            let backlog = app.backlog.entries.load(Ordering::Relaxed);
            Ok(response::bare_json(
                StatusCode::OK,
                &app.health.report(backlog),
            ))
        }
        Route::Ready => {
            let readiness = app
                .health
                .readiness(app.hot.reconciled(), app.hot.conn().unreplicated());
            let status = if readiness.is_ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            Ok(response::bare_json(status, &readiness))
        }
        Route::Metrics => Ok(response::text(
            "text/plain; version=0.0.4",
            app.metrics.render(),
        )),
        Route::OpenApi => Ok(response::text("application/json", OPENAPI.to_string())),
        Route::Page(asset) => Ok(pages::serve(headers, asset)),
        Route::IssueToken => {
            let caller = caller()?;
            queue::issue_token(app, caller, headers, read_body().await?).await
        }
        Route::MyToken => queue::my_token(app, caller()?, headers).await,
        Route::LeaveQueue => queue::leave(app, caller()?, headers).await,
        Route::TokenEvents => queue::events(app, caller()?, headers).await,
        Route::ListSchedules { concert_id } => {
            catalogue::list_schedules(app, caller()?, headers, concert_id, parts.uri.query()).await
        }
        Route::ListSeats {
            concert_id,
            schedule_id,
        } => {
            let ids = (concert_id, schedule_id);
            catalogue::list_seats(app, caller()?, headers, ids, parts.uri.query()).await
        }
        Route::HoldSeats => {
            let caller = caller()?;
            reservations::hold(app, caller, headers, read_body().await?).await
        }
        Route::GetReservation { reservation_id } => {
            reservations::get(app, caller()?, headers, reservation_id).await
        }
        Route::CancelReservation { reservation_id } => {
            reservations::cancel(app, caller()?, headers, reservation_id).await
        }
        Route::Charge { user_id } => {
            let caller = caller()?;
            wallet::charge(app, caller, headers, user_id, read_body().await?).await
        }
        Route::Balance { user_id } => wallet::balance(app, caller()?, headers, user_id).await,
        Route::UserReservations { user_id } => {
            reservations::of_user(app, caller()?, user_id, parts.uri.query()).await
        }
        Route::Pay => {
            let caller = caller()?;
            payments::pay(app, caller, headers, read_body().await?).await
        }
        Route::AdminCreateUser => admin::create_user(app, read_body().await?).await,
        Route::AdminCreateVenue => admin::create_venue(app, read_body().await?).await,
        Route::AdminCreateConcert => admin::create_concert(app, read_body().await?).await,
        Route::AdminCreateSchedule { concert_id } => {
            admin::create_schedule(app, concert_id, read_body().await?).await
        }
        Route::AdminGetQueue { schedule_id } => admin::queue_state(app, schedule_id).await,
        Route::AdminPutQueue { schedule_id } => {
            admin::update_queue(app, schedule_id, read_body().await?).await
        }
    }
}

fn method_label(method: &hyper::Method) -> &'static str {
    match *method {
        hyper::Method::GET => "GET",
        hyper::Method::POST => "POST",
        hyper::Method::PUT => "PUT",
        hyper::Method::DELETE => "DELETE",
        hyper::Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

/// Status as a static label (the metrics macros then allocate nothing for it).
fn status_label(code: u16) -> &'static str {
    match code {
        200 => "200",
        201 => "201",
        400 => "400",
        401 => "401",
        402 => "402",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        422 => "422",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}
