//! The flash sale's HTTP side: a pool of keep-alive connections the users' requests share,
//! and a connection of its own for each event stream, from one of several loopback source
//! addresses.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use simd_json::OwnedValue;
use simd_json::prelude::*;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Loopback source addresses the event streams are spread over (127.0.0.2 and up): towards
/// one server port, a source address has only the ephemeral port range (about 28 000 ports),
/// so 100 000 open streams need several.
const STREAM_SOURCES: u32 = 16;
/// The code of a stream this process could not open for want of open files: never sent.
pub const OUT_OF_FILES: &str = "NO STREAM (this client is out of open files)";
/// Open files this process keeps for everything but event streams (its keep-alive
/// connections among them).
const FILES_BESIDE_STREAMS: u64 = 2048;

/// A pool of keep-alive HTTP/1 connections to the server.
pub struct Client {
    addr: SocketAddr,
    idle_tx: mpsc::UnboundedSender<SendRequest<Full<Bytes>>>,
    idle_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<SendRequest<Full<Bytes>>>>,
    /// One permit per event stream this process can keep open (its open-files limit).
    streams: Arc<Semaphore>,
}

impl Client {
    pub async fn new(addr: &str, connections: usize) -> Self {
        let addr = tokio::net::lookup_host(addr)
            .await
            .expect("the server's address resolves")
            .next()
            .expect("the server's address names a host");
        let (idle_tx, idle_rx) = mpsc::unbounded_channel();
        let client = Self {
            addr,
            idle_tx,
            idle_rx: tokio::sync::Mutex::new(idle_rx),
            streams: Arc::new(Semaphore::new(stream_budget())),
        };
        for _ in 0..connections {
            let conn = client.connect().await;
            client.idle_tx.send(conn).unwrap();
        }
        client
    }

    async fn connect(&self) -> SendRequest<Full<Bytes>> {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .expect("the server accepts connections");
        stream.set_nodelay(true).unwrap();
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("HTTP/1 handshake");
        tokio::spawn(conn);
        sender
    }

    /// (status, JSON body, latency) of one request, on a pooled connection; the latency is
    /// the request's own, from sending it to its last byte (not the wait for a connection).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> (u16, OwnedValue, Duration) {
        let (answer, took) = self.send(method, path, headers, body).await;
        let (status, json) = match answer {
            Ok((status, mut bytes)) => (
                status,
                simd_json::to_owned_value(&mut bytes).unwrap_or(OwnedValue::null()),
            ),
            // No answer: recorded under what broke, in the envelope's place for a code.
            Err(e) => (
                0,
                simd_json::json!({"error": {"code": format!("NO ANSWER ({e})")}}),
            ),
        };
        (status, json, took)
    }

    /// The status and body of one request, on a pooled connection, and its latency (see
    /// [`Client::call`]).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> (Result<(u16, Vec<u8>), hyper::Error>, Duration) {
        let mut sender = self.idle_rx.lock().await.recv().await.unwrap();
        if sender.ready().await.is_err() {
            sender = self.connect().await;
        }
        let started = Instant::now();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "bench");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let answer = match sender.send_request(req).await {
            Ok(rsp) => {
                let status = rsp.status().as_u16();
                let bytes = rsp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes().to_vec())
                    .unwrap_or_default();
                Ok((status, bytes))
            }
            Err(e) => Err(e),
        };
        let took = started.elapsed();
        let _ = self.idle_tx.send(sender);
        (answer, took)
    }

    /// Opens an event stream on a connection of its own (from the next loopback source
    /// address, when the server is on loopback). Returns the stream, or the answer's status
    /// and body when it is not one (0: no answer), with the time the answer's head took.
    pub async fn events(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (Result<EventStream, (u16, OwnedValue)>, Duration) {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let started = Instant::now();
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            let out = simd_json::json!({"error": {"code": OUT_OF_FILES}});
            return (Err((0, out)), started.elapsed());
        };
        let source = self.addr.ip().is_loopback().then(|| {
            let n = NEXT.fetch_add(1, Ordering::Relaxed) as u32 % STREAM_SOURCES;
            Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + n)
        });
        let answer = async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            if let Some(ip) = source {
                socket.bind(SocketAddr::new(ip.into(), 0))?;
            }
            let stream = socket.connect(self.addr).await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            let mut req = Request::builder()
                .method(Method::GET)
                .uri(path)
                .header("host", "bench")
                .header("accept", "text/event-stream");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let req = req.body(Full::new(Bytes::new())).expect("a valid request");
            sender
                .send_request(req)
                .await
                .map_err(std::io::Error::other)
        }
        .await;
        let out = match answer {
            Ok(rsp) if rsp.status() == 200 => Ok(EventStream {
                body: rsp.into_body(),
                buf: Vec::new(),
                _permit: permit,
            }),
            Ok(rsp) => {
                let status = rsp.status().as_u16();
                let mut bytes = rsp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes().to_vec())
                    .unwrap_or_default();
                let json = simd_json::to_owned_value(&mut bytes).unwrap_or(OwnedValue::null());
                Err((status, json))
            }
            Err(e) => Err((
                0,
                simd_json::json!({"error": {"code": format!("NO STREAM ({e})")}}),
            )),
        };
        (out, started.elapsed())
    }
}

/// An open event stream.
pub struct EventStream {
    body: Incoming,
    /// Bytes received past the last whole event.
    buf: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl EventStream {
    /// The next event's name (`None` once the stream has closed or broken); comments
    /// (keep-alives) are skipped.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let name = String::from_utf8_lossy(&block)
                    .lines()
                    .find_map(|line| line.strip_prefix("event: ").map(str::to_string));
                match name {
                    Some(name) => return Some(name),
                    None => continue,
                }
            }
            let frame = self.body.frame().await?.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }
}

/// Event streams this process can keep open: its open-files limit less what the rest needs.
fn stream_budget() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed to it.
    let files = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        0
    };
    files.saturating_sub(FILES_BESIDE_STREAMS) as usize
}
