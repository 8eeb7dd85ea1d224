//! The coordinator's front door: every connection to the gRPC service and the status pages
//! is accepted here, with TLS and limits, before tonic or axum see a byte of it.
//!
//! - **Connections** ([`NetConfig::max_connections`]): each accepted socket takes a permit
//!   of one semaphore shared by both listeners. Over the limit a socket is accepted and closed
//!   at once, so the kernel's listen backlog never fills with connections nobody serves, and
//!   the limit is kept below the open-file limit so the store and journal always get files.
//! - **Handshakes**: a connection has [`NetConfig::handshake_timeout`] to complete TLS and,
//!   on the gRPC port, send the whole HTTP/2 connection preface; otherwise it is closed. At most [`NetConfig::max_handshakes`] are in
//!   that state at once, and a new connection beyond it closes the *oldest* one: a flood of
//!   idle sockets then holds only that many permits and keeps churning through them, while
//!   a real client finishes its handshake in milliseconds and gets a permit of its own.
//! - **Idle timeout**: a connection whose peer sends nothing for [`NetConfig::idle_timeout`]
//!   is closed. HTTP/2 keepalive pings (clients send them, and answer the server's) count, so
//!   live clients keep their long polls and watch streams.
//! - **TLS** (rustls, ring provider): with a certificate, a connection whose first byte is
//!   not a TLS handshake record is a plain-text client. It is still served, with
//!   [`Peer::tls`] false, so that every call can be refused with a line saying to use
//!   `https://` instead of a broken connection. With a client CA, certificates are verified
//!   during the handshake and calls without one are refused the same way ([`PeerRules`]).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use quern_api::tls::{Identity, PemCerts};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How the coordinator meets the network.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Serve TLS (gRPC and status pages) with this identity.
    pub tls: Option<ServerTls>,
    /// Largest gRPC message received or sent, in bytes.
    pub max_message: usize,
    /// Connections open at once, both listeners together.
    pub max_connections: usize,
    /// HTTP/2 streams (calls) open at once on one connection.
    pub max_streams: u32,
    /// Time to send a first byte and finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// Connections in their handshake at once; a new one beyond it closes the oldest.
    pub max_handshakes: usize,
    /// A connection whose peer sends nothing this long is closed.
    pub idle_timeout: Duration,
    /// How often the server pings each HTTP/2 connection (a peer that does not answer within
    /// as long again is dropped).
    pub keepalive: Duration,
    /// Serve the status pages without the token.
    pub http_public: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            tls: None,
            max_message: quern_api::client::DEFAULT_MAX_MESSAGE,
            max_connections: 10_000,
            max_streams: 256,
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 1024,
            idle_timeout: Duration::from_secs(120),
            keepalive: Duration::from_secs(20),
            http_public: false,
        }
    }
}

/// The coordinator's TLS identity and, for mutual TLS, the CA its clients' certificates
/// must be signed by.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// Certificate chain and key.
    pub identity: Identity,
    /// Require client certificates signed by these CAs.
    pub client_ca: Option<PemCerts>,
}

/// TLS or limits could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// rustls refused the certificate, key or client CA.
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// What the services learn about the connection a call came on (a request extension).
#[derive(Clone, Debug)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Whether the client presented a certificate that verified against the client CA.
    pub client_cert: bool,
}

/// What a connection must have for its calls to be served.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerRules {
    /// TLS is required.
    pub tls: bool,
    /// A verified client certificate is required.
    pub client_cert: bool,
}

impl PeerRules {
    /// Why calls on this connection are refused, if they are.
    pub fn refusal(&self, peer: Option<&Peer>) -> Option<&'static str> {
        let (tls, cert) = peer.map_or((false, false), |p| (p.tls, p.client_cert));
        if self.tls && !tls {
            return Some("this coordinator requires TLS: connect with https:// (and --tls-ca)");
        }
        if self.client_cert && !cert {
            return Some("this coordinator requires a client certificate (--tls-cert and --tls-key)");
        }
        None
    }
}

/// Shared by both listeners: the TLS settings, the connection permits and the timeouts.
pub(crate) struct Front {
    grpc_tls: Option<Arc<ServerConfig>>,
    http_tls: Option<Arc<ServerConfig>>,
    slots: Arc<Semaphore>,
    pending: Arc<Mutex<Pending>>,
    handshake: Duration,
    idle: Duration,
    /// The connection limit in force (after the open-file limit).
    pub(crate) max_connections: usize,
    pub(crate) rules: PeerRules,
}

impl Front {
    /// Builds the TLS configurations and raises the open-file limit.
    pub(crate) fn new(cfg: &NetConfig) -> Result<Self, NetError> {
        let nofile = quern_api::fdlimit::raise_nofile();
        let max_connections = connection_limit(cfg.max_connections, nofile);
        if max_connections < cfg.max_connections {
            warn!(
                wanted = cfg.max_connections,
                max_connections,
                open_files = nofile,
                "connection limit lowered to keep files for the store and journal"
            );
        }
        let (grpc_tls, http_tls) = match &cfg.tls {
            None => (None, None),
            Some(t) => (Some(rustls_config(t, b"h2")?), Some(rustls_config(t, b"http/1.1")?)),
        };
        let rules =
            PeerRules { tls: cfg.tls.is_some(), client_cert: cfg.tls.as_ref().is_some_and(|t| t.client_ca.is_some()) };
        Ok(Front {
            grpc_tls,
            http_tls,
            slots: Arc::new(Semaphore::new(max_connections)),
            pending: Arc::new(Mutex::new(Pending {
                next: 0,
                open: BTreeMap::new(),
                cap: cfg.max_handshakes.clamp(1, max_connections),
            })),
            handshake: cfg.handshake_timeout,
            idle: cfg.idle_timeout,
            max_connections,
            rules,
        })
    }

    /// Accepts gRPC connections until `stop`; tonic serves what comes out.
    pub(crate) fn grpc(&self, listener: TcpListener, stop: CancellationToken) -> mpsc::Receiver<Conn> {
        self.accept(listener, self.grpc_tls.clone(), true, stop)
    }

    /// Accepts status-page connections until `stop`, as an axum listener.
    pub(crate) fn http(&self, listener: TcpListener, stop: CancellationToken) -> io::Result<ConnListener> {
        let local = listener.local_addr()?;
        Ok(ConnListener { rx: self.accept(listener, self.http_tls.clone(), false, stop), local })
    }

    fn accept(
        &self,
        listener: TcpListener,
        tls: Option<Arc<ServerConfig>>,
        h2: bool,
        stop: CancellationToken,
    ) -> mpsc::Receiver<Conn> {
        let (tx, rx) = mpsc::channel(64);
        let (slots, pending, handshake, idle) = (self.slots.clone(), self.pending.clone(), self.handshake, self.idle);
        tokio::spawn(async move {
            loop {
                let (sock, addr) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of files or memory: wait a little instead of spinning; the
                            // connections holding them close by their own timeouts.
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    debug!(%addr, "connection limit reached; closing the new connection");
                    drop(sock);
                    continue;
                };
                let (tx, tls, pending) = (tx.clone(), tls.clone(), pending.clone());
                let (id, evicted) = lock(&pending).admit();
                tokio::spawn(async move {
                    let opened = tokio::select! {
                        r = tokio::time::timeout(handshake, open(sock, addr, tls, h2)) => r,
                        _ = evicted.cancelled() => {
                            debug!(%addr, "too many connections in their handshake; closing the oldest");
                            Ok(None)
                        }
                    };
                    lock(&pending).done(id);
                    match opened {
                        Ok(Some((io, peer, prefix))) => {
                            let deadline = Box::pin(tokio::time::sleep(idle));
                            let conn = Conn { io, peer, prefix, replayed: 0, idle, deadline, _slot: slot };
                            // The server has stopped when nobody receives: the connection closes.
                            let _ = tx.send(conn).await;
                        }
                        Ok(None) => {}
                        Err(_) => debug!(%addr, "handshake timeout; closing"),
                    }
                });
            }
        });
        rx
    }
}

/// Connections still in their handshake, oldest first.
struct Pending {
    next: u64,
    open: BTreeMap<u64, CancellationToken>,
    cap: usize,
}

impl Pending {
    /// Registers a new connection, closing the oldest when full; returns its id and the token
    /// that closes it.
    fn admit(&mut self) -> (u64, CancellationToken) {
        while self.open.len() >= self.cap {
            match self.open.pop_first() {
                Some((_, oldest)) => oldest.cancel(),
                None => break,
            }
        }
        let id = self.next;
        self.next += 1;
        let token = CancellationToken::new();
        self.open.insert(id, token.clone());
        (id, token)
    }

    fn done(&mut self, id: u64) {
        self.open.remove(&id);
    }
}

fn lock(p: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    // The map stays consistent whatever panicked while holding it.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// `wanted`, lowered so that connections leave a quarter of the open files (at least 64, at
/// most 1024) to the store, the journal and the runtime.
fn connection_limit(wanted: usize, nofile: Option<u64>) -> usize {
    let Some(n) = nofile else { return wanted.max(1) };
    let reserved = (n / 4).clamp(64, 1024);
    let room = usize::try_from(n.saturating_sub(reserved)).unwrap_or(usize::MAX).max(16);
    wanted.clamp(1, room)
}

fn rustls_config(tls: &ServerTls, alpn: &[u8]) -> Result<Arc<ServerConfig>, NetError> {
    let err = |what: &str, e: &dyn std::fmt::Display| NetError::Tls(format!("{what}: {e}"));
    // An explicit provider: other crates in the process (the S3 client) enable a second one,
    // and rustls refuses to guess between two.
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("protocol versions", &e))?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in &ca.der {
                roots.add(c.clone()).map_err(|e| err("--tls-client-ca", &e))?;
            }
            // A certificate that is presented must verify; one that is missing is refused per
            // call (PeerRules), where the refusal can say what to do.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| err("--tls-client-ca", &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(tls.identity.certs.der.clone(), tls.identity.key.der.clone_key())
        .map_err(|e| err("--tls-cert/--tls-key", &e))?;
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(cfg))
}

/// First byte of a TLS handshake record (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

/// What every HTTP/2 client sends first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits for the first byte, does the TLS handshake, and with `h2` reads the HTTP/2 preface
/// (returned, to be replayed to the server); `None` closes the connection.
async fn open(
    sock: TcpStream,
    addr: SocketAddr,
    tls: Option<Arc<ServerConfig>>,
    h2: bool,
) -> Option<(Io, Peer, Vec<u8>)> {
    let (mut io, peer) = secure(sock, addr, tls).await?;
    if !h2 {
        return Some((io, peer, Vec::new()));
    }
    let mut preface = vec![0u8; H2_PREFACE.len()];
    io.read_exact(&mut preface).await.ok()?;
    if preface != H2_PREFACE {
        debug!(%addr, "not an HTTP/2 client; closing");
        return None;
    }
    Some((io, peer, preface))
}

/// Waits for the first byte and does the TLS handshake if the port has TLS.
async fn secure(sock: TcpStream, addr: SocketAddr, tls: Option<Arc<ServerConfig>>) -> Option<(Io, Peer)> {
    let _ = sock.set_nodelay(true);
    let mut first = [0u8; 1];
    if sock.peek(&mut first).await.ok()? == 0 {
        return None;
    }
    let looks_tls = first[0] == TLS_HANDSHAKE;
    match tls {
        Some(cfg) if looks_tls => match TlsAcceptor::from(cfg).accept(sock).await {
            Ok(stream) => {
                let client_cert = stream.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                Some((Io::Tls(Box::new(stream)), Peer { addr, tls: true, client_cert }))
            }
            Err(e) => {
                debug!(%addr, error = %e, "TLS handshake failed");
                None
            }
        },
        // Plain text on a TLS port: served only so that its calls get a clear refusal.
        Some(_) => Some((Io::Plain(sock), Peer { addr, tls: false, client_cert: false })),
        // A TLS client of a plain server could read nothing we say; closing makes its
        // handshake fail, which its error explains.
        None if looks_tls => None,
        None => Some((Io::Plain(sock), Peer { addr, tls: false, client_cert: false })),
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An accepted connection: the socket (maybe TLS), who it is, the bytes read during the
/// handshake (replayed first), its idle timer, and the permit it holds until it closes.
pub struct Conn {
    io: Io,
    peer: Peer,
    prefix: Vec<u8>,
    replayed: usize,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(rest) = this.prefix.get(this.replayed..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                let next = Instant::now() + this.idle;
                this.deadline.as_mut().reset(next);
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle for too long")))
            }
            other => other,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

/// The status pages' connections, as axum takes them.
pub(crate) struct ConnListener {
    rx: mpsc::Receiver<Conn>,
    local: SocketAddr,
}

impl axum::serve::Listener for ConnListener {
    type Io = Conn;
    type Addr = Peer;

    async fn accept(&mut self) -> (Conn, Peer) {
        match self.rx.recv().await {
            Some(conn) => {
                let peer = conn.peer.clone();
                (conn, peer)
            }
            // The acceptor stopped (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Peer> {
        Ok(Peer { addr: self.local, tls: false, client_cert: false })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, ConnListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, ConnListener>) -> Self {
        stream.remote_addr().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_files_for_the_store() {
        assert_eq!(connection_limit(10_000, Some(20_000)), 10_000);
        assert_eq!(connection_limit(30_000, Some(20_000)), 20_000 - 1024);
        assert_eq!(connection_limit(10_000, Some(1024)), 768);
        assert_eq!(connection_limit(10_000, Some(10)), 16);
        assert_eq!(connection_limit(0, None), 1);
    }

    #[test]
    fn a_full_handshake_queue_closes_its_oldest() {
        let mut p = Pending { next: 0, open: BTreeMap::new(), cap: 2 };
        let (a, ta) = p.admit();
        let (_, tb) = p.admit();
        let (_, tc) = p.admit();
        assert!(ta.is_cancelled() && !tb.is_cancelled() && !tc.is_cancelled());
        p.done(a); // a late finish of an evicted connection changes nothing
        assert_eq!(p.open.len(), 2);
    }

    #[test]
    fn refusals_say_what_to_do() {
        let peer = |tls, client_cert| Peer { addr: "127.0.0.1:1".parse().unwrap(), tls, client_cert };
        let open = PeerRules::default();
        assert!(open.refusal(Some(&peer(false, false))).is_none());
        let tls = PeerRules { tls: true, client_cert: false };
        assert!(tls.refusal(Some(&peer(false, false))).unwrap().contains("https://"));
        assert!(tls.refusal(Some(&peer(true, false))).is_none());
        let mtls = PeerRules { tls: true, client_cert: true };
        assert!(mtls.refusal(Some(&peer(true, false))).unwrap().contains("--tls-cert"));
        assert!(mtls.refusal(Some(&peer(true, true))).is_none());
        assert!(mtls.refusal(None).is_some());
    }
}
