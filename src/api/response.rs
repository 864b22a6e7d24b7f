//! The response envelope: `{"success":true,"data":…}` or
//! `{"success":false,"error":{"code","message","details"}}`, each error's status, the
//! `X-Data-Stale` mark, the bare JSON / text bodies of the operations endpoints, and the
//! body of an event stream.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, SizeHint};
use hyper::header::{
    ACCEPT_ENCODING, ALLOW, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, HeaderMap,
    HeaderName, HeaderValue, IF_NONE_MATCH, RETRY_AFTER, VARY, WWW_AUTHENTICATE,
};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::model::{Error, TokenEvent};
use crate::queue::events::Subscription;

/// A response body: whole (every answer but one), or a server-sent event stream written
/// as its events arrive, until they end.
pub enum Body {
    Whole(Full<Bytes>),
    Events {
        subscription: Subscription,
        render: fn(TokenEvent) -> Bytes,
    },
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Whole(whole) => Pin::new(whole).poll_frame(cx),
            Body::Events {
                subscription,
                render,
            } => subscription
                .events
                .poll_recv(cx)
                .map(|event| event.map(|e| Ok(Frame::data(render(e))))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Whole(whole) => whole.is_end_stream(),
            Body::Events { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Whole(whole) => whole.size_hint(),
            Body::Events { .. } => SizeHint::default(),
        }
    }
}

pub const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Tells a proxy (nginx) not to hold the stream's events back in its buffers.
const NO_PROXY_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

/// A `text/event-stream` response: each event `render`s as it arrives; never compressed
/// or cached.
pub fn event_stream(subscription: Subscription, render: fn(TokenEvent) -> Bytes) -> Response<Body> {
    let mut rsp = Response::new(Body::Events {
        subscription,
        render,
    });
    let headers = rsp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(NO_PROXY_BUFFERING, HeaderValue::from_static("no"));
    rsp
}

fn with_body(status: StatusCode, content_type: HeaderValue, body: Vec<u8>) -> Response<Body> {
    let mut rsp = Response::new(Body::Whole(Full::new(Bytes::from(body))));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(CONTENT_TYPE, content_type);
    rsp
}

/// A success in the envelope.
pub fn ok<T: Serialize>(status: StatusCode, data: &T) -> Response<Body> {
    let body = envelope(256, |body| {
        simd_json::to_writer(body, data).expect("response types always serialize")
    });
    with_body(status, JSON, body)
}

/// The bytes of a success in the envelope whose `data` JSON `render` writes (into a buffer
/// of `capacity` bytes to start with).
pub fn envelope(capacity: usize, render: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut body = Vec::with_capacity(capacity + 32);
    body.extend_from_slice(br#"{"success":true,"data":"#);
    render(&mut body);
    body.push(b'}');
    body
}

/// A JSON body as it is.
pub fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    with_body(status, JSON, body)
}

/// A body kept with its gzip form and tagged by its content: gzip when the request accepts
/// it, a strong `ETag` per content coding, and `304 Not Modified` (no body) when the
/// request's `If-None-Match` names the current one.
pub fn representation(
    headers: &HeaderMap,
    content_type: HeaderValue,
    tag: u64,
    body: &Bytes,
    gzip: impl FnOnce() -> Bytes,
) -> Response<Body> {
    let gzipped = accepts_gzip(headers);
    let etag = if gzipped {
        format!("\"{tag:016x}-gzip\"")
    } else {
        format!("\"{tag:016x}\"")
    };
    let not_modified = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|names| names_tag(names, &etag));
    let mut rsp = if not_modified {
        let mut rsp = Response::new(Body::Whole(Full::new(Bytes::new())));
        *rsp.status_mut() = StatusCode::NOT_MODIFIED;
        rsp
    } else if gzipped {
        let mut rsp = Response::new(Body::Whole(Full::new(gzip())));
        rsp.headers_mut().insert(CONTENT_TYPE, content_type);
        rsp.headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        rsp
    } else {
        let mut rsp = Response::new(Body::Whole(Full::new(body.clone())));
        rsp.headers_mut().insert(CONTENT_TYPE, content_type);
        rsp
    };
    let headers = rsp.headers_mut();
    headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    headers.insert(
        ETAG,
        HeaderValue::from_str(&etag).expect("hex digits and quotes are a valid header value"),
    );
    rsp
}

/// Whether `Accept-Encoding` accepts gzip (named, or `*`, with a weight above 0).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// Whether an `If-None-Match` list names `etag` (or is `*`); a weak tag matches its strong
/// form, as that header's comparison is weak.
fn names_tag(names: &str, etag: &str) -> bool {
    names
        .split(',')
        .map(str::trim)
        .any(|name| name == "*" || name.strip_prefix("W/").unwrap_or(name) == etag)
}

/// Says an answer read from MySQL while Redis was unreachable may be behind.
pub const STALE: HeaderName = HeaderName::from_static("x-data-stale");

/// A success in the envelope, marked `X-Data-Stale: true` when `stale`.
pub fn ok_maybe_stale<T: Serialize>(data: &T, stale: bool) -> Response<Body> {
    mark_stale(ok(StatusCode::OK, data), stale)
}

/// Marks an answer read from MySQL `X-Data-Stale: true`.
pub fn mark_stale(mut rsp: Response<Body>, stale: bool) -> Response<Body> {
    if stale {
        rsp.headers_mut()
            .insert(STALE, HeaderValue::from_static("true"));
    }
    rsp
}

/// Bare JSON, for `/health`.
pub fn bare_json<T: Serialize>(status: StatusCode, data: &T) -> Response<Body> {
    let body = simd_json::to_vec(data).expect("response types always serialize");
    with_body(status, JSON, body)
}

pub fn text(content_type: &'static str, body: String) -> Response<Body> {
    with_body(
        StatusCode::OK,
        HeaderValue::from_static(content_type),
        body.into_bytes(),
    )
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    success: bool,
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'static str,
    message: String,
    details: Details<'a>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Details<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    /// The seats a hold could not take.
    #[serde(skip_serializing_if = "Option::is_none")]
    seat_ids: Option<&'a [u64]>,
    /// How many seats are AVAILABLE, when a best-available hold asked for more.
    #[serde(skip_serializing_if = "Option::is_none")]
    available: Option<u64>,
}

/// Seconds a client should wait before retrying a 503 or a 429 `RATE_LIMITED` (a user's
/// request rate frees a request within a second).
const RETRY_AFTER_SECONDS: HeaderValue = HeaderValue::from_static("1");
/// Seconds before retrying a 429 `QUEUE_FULL`: a full queue frees places only as fast as it
/// admits, so crowds of buyers retrying at once would only be refused again.
const QUEUE_FULL_RETRY_AFTER_SECONDS: HeaderValue = HeaderValue::from_static("10");

/// The HTTP status of each error (its code is [`Error::code`]).
pub fn status(err: &Error) -> StatusCode {
    use Error::*;
    match err {
        InvalidRequest { .. } => StatusCode::BAD_REQUEST,
        AuthRequired
        | AuthInvalid
        | QueueTokenMissing
        | QueueTokenInvalid
        | QueueTokenNotActive
        | QueueTokenWrongSchedule
        | AdminKeyInvalid => StatusCode::UNAUTHORIZED,
        InsufficientBalance => StatusCode::PAYMENT_REQUIRED,
        Forbidden => StatusCode::FORBIDDEN,
        UserNotFound
        | ConcertNotFound
        | ScheduleNotFound
        | ReservationNotFound
        | SeatNotFound { .. }
        | NotFound => StatusCode::NOT_FOUND,
        MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        TokenAlreadyIssued
        | SeatAlreadyReserved { .. }
        | NotEnoughSeats { .. }
        | PaymentInProgress
        | ReservationAlreadyPaid
        | ReservationExpired
        | RequestInProgress
        | SettingsLocked => StatusCode::CONFLICT,
        PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ReservationNotPayable
        | ReservationNotCancellable
        | SeatLimitExceeded
        | BookingNotOpen
        | IdempotencyKeyReused
        | BookingClosed => StatusCode::UNPROCESSABLE_ENTITY,
        QueueFull | RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ScheduleIdsExhausted => StatusCode::INSUFFICIENT_STORAGE,
        Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        Unavailable(_) | RedisUnavailable(_) | StreamsFull => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// An error in the envelope. Internal details are logged, never sent.
pub fn error(err: &Error) -> Response<Body> {
    let (status, code) = (status(err), err.code());
    let details = match err {
        Error::InvalidRequest { field, .. } => Details {
            field: Some(field.as_str()),
            ..Details::default()
        },
        Error::SeatNotFound { seat_ids } | Error::SeatAlreadyReserved { seat_ids } => Details {
            seat_ids: Some(seat_ids),
            ..Details::default()
        },
        Error::NotEnoughSeats { available } => Details {
            available: Some(*available),
            ..Details::default()
        },
        _ => Details::default(),
    };
    let envelope = ErrorEnvelope {
        success: false,
        error: ErrorBody {
            code,
            message: err.to_string(),
            details,
        },
    };
    let body = simd_json::to_vec(&envelope).expect("error envelope always serializes");
    let mut rsp = with_body(status, JSON, body);
    match err {
        Error::MethodNotAllowed { allow } => {
            rsp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        Error::Unavailable(_)
        | Error::RedisUnavailable(_)
        | Error::StreamsFull
        | Error::RateLimited => {
            rsp.headers_mut().insert(RETRY_AFTER, RETRY_AFTER_SECONDS);
        }
        Error::QueueFull => {
            rsp.headers_mut()
                .insert(RETRY_AFTER, QUEUE_FULL_RETRY_AFTER_SECONDS);
        }
        // RFC 6750: the scheme a client must use.
        Error::AuthRequired | Error::AuthInvalid => {
            rsp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        _ => {}
    }
    rsp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_sent_when_accepted_with_a_weight_above_zero() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static(value));
            accepts_gzip(&headers)
        };
        assert!(with("gzip"));
        assert!(with("br, GZIP;q=0.5"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("br, deflate"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn if_none_match_names_a_tag_in_a_list_weakly_or_by_star() {
        let tag = "\"00ab-gzip\"";
        assert!(names_tag("\"00ab-gzip\"", tag));
        assert!(names_tag("\"x\", W/\"00ab-gzip\"", tag));
        assert!(names_tag("*", tag));
        assert!(!names_tag("\"00ab\"", tag));
        assert!(!names_tag("", tag));
    }
    use http_body_util::BodyExt;

    async fn body_of(rsp: Response<Body>) -> String {
        let bytes = rsp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn internal_errors_are_500_in_the_envelope_without_their_detail() {
        let rsp = error(&Error::Internal(
            "mysql: Duplicate entry 'secret' for key".into(),
        ));
        assert_eq!(rsp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_of(rsp).await;
        assert!(
            body.starts_with(r#"{"success":false,"error":{"code":"INTERNAL""#),
            "{body}"
        );
        assert!(
            !body.contains("secret") && !body.contains("mysql"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn unavailable_is_503_with_retry_after() {
        let rsp = error(&Error::Unavailable("redis: connection refused".into()));
        assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(rsp.headers()[RETRY_AFTER], "1");
        let body = body_of(rsp).await;
        assert!(body.contains(r#""code":"SERVICE_UNAVAILABLE""#) && !body.contains("refused"));
    }

    #[tokio::test]
    async fn successes_wrap_their_data() {
        let rsp = ok(StatusCode::CREATED, &[1, 2]);
        assert_eq!(rsp.status(), StatusCode::CREATED);
        assert_eq!(body_of(rsp).await, r#"{"success":true,"data":[1,2]}"#);
    }

    #[test]
    fn refusals_of_a_hold_are_conflicts_or_unprocessable() {
        assert_eq!(
            status(&Error::SeatAlreadyReserved { seat_ids: vec![1] }),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(&Error::SeatLimitExceeded),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(status(&Error::QueueFull), StatusCode::TOO_MANY_REQUESTS);
    }
}
