//! `quern worker --http ADDR`: the worker's own `/metrics` (Prometheus text, see
//! [`crate::metrics`]) and `/healthz`, for scrapers and liveness probes.
//!
//! Protection follows the coordinator's status pages: a worker started with `--token-file`
//! serves `/metrics` only to requests carrying `Authorization: Bearer TOKEN` (compared in
//! constant time), unless `--http-public`. The metrics carry no job names or URLs, but they
//! do tell who runs what when; `--http-public` is for a scraper on a trusted network, or
//! one that cannot send the header (annotation-based Kubernetes scraping). `/healthz` needs
//! no token: it says only that the process answers, which a probe must learn without secrets.
//!
//! Bounds, so that a port on a shared network cannot hurt the worker: at most
//! [`MAX_CONNECTIONS`] connections at once (more are accepted and closed at once, so the
//! listen queue never jams), each served for at most [`CONNECTION_TIME`] in all (a slow
//! or idle peer cannot keep its slot), one request per connection (no keep-alive: a
//! scrape every few seconds does not need it), request heads read within that time too
//! (hyper's own limit on head size applies), and only `GET`/`HEAD` of two small pages. The
//! coordinator's connection front (`coordinator/src/net.rs`) does more (TLS, HTTP/2,
//! handshake eviction) for a port that must stay open to thousands of workers; this one
//! serves a scraper and a probe, and a plain semaphore and a deadline bound it.
//!
//! The endpoint is plain HTTP: the worker has no server certificate (its `--tls-cert` is a
//! client's). A scraper that sends the token sends it in the clear, and the token lets its
//! holder submit jobs; on a network that is not trusted, `--http-public` (nothing secret is
//! served) is the better choice, and the Kubernetes manifests make it.
//!
//! The server stops when the worker does (its cancellation token).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::metrics::{CONTENT_TYPE, WorkerMetrics};

/// Connections served at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 64;

/// The longest one connection is served, reading its request included.
pub const CONNECTION_TIME: Duration = Duration::from_secs(10);

/// Where and how the worker serves its endpoint.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Address to listen on; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Write `http://HOST:PORT` here once listening.
    pub addr_file: Option<PathBuf>,
    /// The token `/metrics` requires (the worker's `--token-file`), unless `public`.
    pub token: Option<String>,
    /// Serve `/metrics` without the token.
    pub public: bool,
}

/// The endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("--http {addr}: {source}")]
pub struct HttpError {
    addr: String,
    #[source]
    source: std::io::Error,
}

/// Binds `cfg.addr`, writes the address file, and serves until `stop` is cancelled (tracked
/// by `tracker`). Returns the address it listens on.
pub async fn start(
    cfg: &HttpConfig,
    metrics: Arc<WorkerMetrics>,
    tracker: &TaskTracker,
    stop: CancellationToken,
) -> Result<SocketAddr, HttpError> {
    let fail = |source| HttpError { addr: cfg.addr.to_string(), source };
    let listener = TcpListener::bind(cfg.addr).await.map_err(fail)?;
    let local = listener.local_addr().map_err(fail)?;
    if let Some(file) = &cfg.addr_file {
        std::fs::write(file, format!("http://{local}\n"))
            .map_err(|source| HttpError { addr: format!("{local} (--http-addr-file {})", file.display()), source })?;
    }
    let token = cfg.token.clone().filter(|_| !cfg.public).map(Arc::<str>::from);
    let app = router(metrics, token);
    info!(addr = %local, "serving /metrics and /healthz");
    tracker.spawn(accept(listener, app, tracker.clone(), stop));
    Ok(local)
}

/// The two pages, `/metrics` behind the token when there is one.
fn router(metrics: Arc<WorkerMetrics>, token: Option<Arc<str>>) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(serve_metrics))
        .with_state(metrics)
        .layer(middleware::from_fn_with_state(token, check_token));
    Router::new().route("/healthz", get(|| async { "ok\n" })).merge(guarded)
}

async fn serve_metrics(State(metrics): State<Arc<WorkerMetrics>>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.encode()).into_response()
}

async fn check_token(State(token): State<Option<Arc<str>>>, req: Request, next: Next) -> Response {
    if let Some(token) = token {
        let given = req.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes).unwrap_or_default();
        let expected = format!("Bearer {token}");
        if !bool::from(given.ct_eq(expected.as_bytes())) {
            let mut resp = (StatusCode::UNAUTHORIZED, "missing or wrong token: send Authorization: Bearer TOKEN\n")
                .into_response();
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    next.run(req).await
}

async fn accept(listener: TcpListener, app: Router, tracker: TaskTracker, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (sock, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of files: wait instead of spinning; open connections end by
                    // their deadline and give files back.
                    warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "metrics endpoint: connection limit reached; closing the new connection");
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let stop = stop.clone();
        tracker.spawn(async move {
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(CONNECTION_TIME)
                .keep_alive(false)
                .serve_connection(TokioIo::new(sock), service);
            tokio::select! {
                r = tokio::time::timeout(CONNECTION_TIME, conn) => match r {
                    Ok(Err(e)) => debug!(%peer, error = %e, "metrics endpoint: connection ended"),
                    Err(_) => debug!(%peer, "metrics endpoint: connection took too long; closed"),
                    Ok(Ok(())) => {}
                },
                _ = stop.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get_page(addr: SocketAddr, path: &str, auth: Option<&str>) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = auth.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await.unwrap().unwrap();
        out
    }

    async fn serve(token: Option<&str>, public: bool) -> (SocketAddr, CancellationToken, TaskTracker) {
        let cfg = HttpConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            addr_file: None,
            token: token.map(str::to_string),
            public,
        };
        let (tracker, stop) = (TaskTracker::new(), CancellationToken::new());
        let addr = start(&cfg, Arc::new(WorkerMetrics::new(2, None)), &tracker, stop.clone()).await.unwrap();
        (addr, stop, tracker)
    }

    #[tokio::test]
    async fn metrics_need_the_token_and_healthz_does_not() {
        let (addr, stop, tracker) = serve(Some("s3cret"), false).await;
        assert!(get_page(addr, "/healthz", None).await.starts_with("HTTP/1.1 200"));
        assert!(get_page(addr, "/metrics", None).await.starts_with("HTTP/1.1 401"));
        assert!(get_page(addr, "/metrics", Some("wrong")).await.starts_with("HTTP/1.1 401"));
        let page = get_page(addr, "/metrics", Some("s3cret")).await;
        assert!(page.starts_with("HTTP/1.1 200") && page.contains("quern_worker_slots 2"), "{page}");
        assert!(get_page(addr, "/nothing", Some("s3cret")).await.starts_with("HTTP/1.1 404"));
        stop.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(10), tracker.wait()).await.unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the endpoint stops with the worker");
    }

    #[tokio::test]
    async fn public_metrics_need_no_token() {
        let (addr, stop, _tracker) = serve(Some("s3cret"), true).await;
        assert!(get_page(addr, "/metrics", None).await.starts_with("HTTP/1.1 200"));
        stop.cancel();
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed() {
        let (addr, stop, _tracker) = serve(None, false).await;
        // Idle connections hold every slot...
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"G").await.unwrap();
            idle.push(s);
        }
        // ...so the next one is closed without an answer...
        let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), extra.read_to_end(&mut buf)).await.unwrap();
        assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
        // ...and once they go, the endpoint serves again.
        drop(idle);
        let mut served = false;
        for _ in 0..100 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
            if out.starts_with(b"HTTP/1.1 200") {
                served = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(served);
        stop.cancel();
    }
}
