//! Connecting to a coordinator: address checks, the shared-token interceptor, TLS, the
//! message limit, and typed clients for both services.
//!
//! [`ConnectOptions`] is everything but the address: the token, [`ClientTls`] and the largest
//! message. An `https://` address always means TLS (trusting `--tls-ca`, or the platform's
//! roots without one); an `http://` address with TLS options is refused rather than sent in
//! plain text.

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::pb::job_service_client::JobServiceClient;
use crate::pb::worker_service_client::WorkerServiceClient;
use crate::tls::{ClientTls, TlsFileError};

/// Metadata key carrying the shared token.
pub const TOKEN_HEADER: &str = "authorization";

/// Adds `authorization: Bearer TOKEN` to every call when a token is set.
#[derive(Clone, Debug, Default)]
pub struct TokenInterceptor {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl TokenInterceptor {
    /// An interceptor sending `token` (or nothing).
    pub fn new(token: Option<&str>) -> Result<Self, ConnectError> {
        let header = match token {
            None => None,
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| ConnectError::BadToken("token must be printable ASCII".into()))?,
            ),
        };
        Ok(TokenInterceptor { header })
    }
}

impl Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert(TOKEN_HEADER, h.clone());
        }
        Ok(req)
    }
}

/// A client of the job service.
pub type JobClient = JobServiceClient<InterceptedService<Channel, TokenInterceptor>>;
/// A client of the worker service.
pub type WorkerClient = WorkerServiceClient<InterceptedService<Channel, TokenInterceptor>>;

/// Connecting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The address is not `http://HOST:PORT`.
    #[error("bad coordinator address {addr:?}: {reason}")]
    BadAddress {
        /// What was given.
        addr: String,
        /// Why it was refused.
        reason: String,
    },
    /// Nothing answered at the address.
    #[error("cannot reach coordinator at {addr}: {reason}")]
    Unreachable {
        /// The address.
        addr: String,
        /// The transport's explanation.
        reason: String,
    },
    /// The token file is unusable.
    #[error("bad token: {0}")]
    BadToken(String),
    /// A TLS file is unusable.
    #[error(transparent)]
    Tls(#[from] TlsFileError),
}

/// Everything a client needs besides the address.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Shared token, if the coordinator requires one.
    pub token: Option<String>,
    /// TLS for `https://` addresses.
    pub tls: ClientTls,
    /// Largest message accepted, in bytes. What may be sent is the coordinator's to decide: it
    /// refuses a larger message with a clear error, where a client-side limit would only
    /// reset the stream.
    pub max_message: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions { token: None, tls: ClientTls::default(), max_message: DEFAULT_MAX_MESSAGE }
    }
}

/// Largest message either side accepts unless configured (`--max-message`): a reduce
/// assignment lists every map output, which stays far below this for tens of thousands of
/// maps, while a peer cannot make the other side buffer more.
pub const DEFAULT_MAX_MESSAGE: usize = 8 * 1024 * 1024;

/// How often an idle client pings the coordinator, which keeps long polls and watch streams
/// alive through the server's idle timeout and notices a dead server.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Checks a coordinator address and builds its endpoint, with TLS for `https://`.
pub fn endpoint(addr: &str, opts: &ConnectOptions) -> Result<Endpoint, ConnectError> {
    let bad = |reason: &str| ConnectError::BadAddress { addr: addr.to_string(), reason: reason.to_string() };
    let url =
        url::Url::parse(addr).map_err(|e| bad(&format!("{e} (expected http://HOST:PORT or https://HOST:PORT)")))?;
    let Some(host) = url.host_str() else { return Err(bad("expected http://HOST:PORT or https://HOST:PORT")) };
    if url.port_or_known_default().is_none() {
        return Err(bad("expected http://HOST:PORT or https://HOST:PORT"));
    }
    let ep = Endpoint::from_shared(addr.to_string())
        .map_err(|e| bad(&e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    match url.scheme() {
        "http" if opts.tls.is_configured() => {
            Err(bad("--tls-ca/--tls-cert/--tls-key need an https:// address (http:// is plain text)"))
        }
        "http" => Ok(ep),
        "https" => ep.tls_config(tls_config(host, &opts.tls)).map_err(|e| bad(&transport_reason(&e))),
        _ => Err(bad("expected http://HOST:PORT or https://HOST:PORT")),
    }
}

fn tls_config(host: &str, tls: &ClientTls) -> ClientTlsConfig {
    // An IPv6 host comes bracketed from the URL; certificates name it without brackets.
    let mut cfg = ClientTlsConfig::new().domain_name(host.trim_start_matches('[').trim_end_matches(']'));
    cfg = match &tls.ca {
        Some(ca) => cfg.ca_certificate(Certificate::from_pem(&ca.pem)),
        None => cfg.with_native_roots(),
    };
    if let Some(id) = &tls.identity {
        cfg = cfg.identity(Identity::from_pem(&id.certs.pem, &id.key.pem));
    }
    cfg
}

/// Opens a channel to the coordinator, failing fast when nothing answers.
pub async fn channel(addr: &str, opts: &ConnectOptions) -> Result<Channel, ConnectError> {
    endpoint(addr, opts)?
        .connect()
        .await
        .map_err(|e| ConnectError::Unreachable { addr: addr.to_string(), reason: explain_transport(addr, &e) })
}

/// A job-service client for `addr`.
pub async fn job_client(addr: &str, opts: &ConnectOptions) -> Result<JobClient, ConnectError> {
    let ch = channel(addr, opts).await?;
    Ok(JobServiceClient::with_interceptor(ch, TokenInterceptor::new(opts.token.as_deref())?)
        .max_decoding_message_size(opts.max_message))
}

/// A worker-service client for `addr`; connects lazily so a worker can start before its
/// coordinator and keep retrying.
pub fn worker_client_lazy(addr: &str, opts: &ConnectOptions) -> Result<WorkerClient, ConnectError> {
    let ch = endpoint(addr, opts)?.connect_lazy();
    Ok(WorkerServiceClient::with_interceptor(ch, TokenInterceptor::new(opts.token.as_deref())?)
        .max_decoding_message_size(opts.max_message))
}

/// A transport failure in words a user can act on: the innermost cause, plus a hint when it
/// looks like a TLS mismatch or a closed connection. For messages only: nothing decides on
/// these strings.
pub fn explain_transport(addr: &str, e: &(dyn std::error::Error + 'static)) -> String {
    let reason = transport_reason(e);
    let lower = reason.to_ascii_lowercase();
    let https = addr.trim_start().starts_with("https://");
    let hint = if https && (lower.contains("eof") || lower.contains("corrupt message") || lower.contains("reset")) {
        "the coordinator closed the connection: is it serving TLS (plain ones take http://), or at its --max-connections?"
    } else if lower.contains("no native certs") {
        "this machine has no trusted roots; name the coordinator's CA with --tls-ca"
    } else if lower.contains("unknownissuer") {
        "the coordinator's certificate is not signed by a CA this client trusts: see --tls-ca"
    } else if lower.contains("notvalidforname") {
        "the coordinator's certificate does not name the host in the address"
    } else if lower.contains("alert") && lower.contains("certificate") {
        "the coordinator refused this client's certificate: see --tls-cert"
    } else if lower == "connection closed" || lower.contains("connection reset") {
        "by the coordinator: at its --max-connections, or refusing this client's TLS certificate"
    } else {
        return reason;
    };
    format!("{reason} ({hint})")
}

/// The innermost cause of a transport error, which is the part a user can act on.
fn transport_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Reads a token file: its content without surrounding whitespace; empty is an error.
pub fn read_token_file(path: &std::path::Path) -> Result<String, ConnectError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConnectError::BadToken(format!("cannot read token file {}: {e}", path.display())))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(ConnectError::BadToken(format!("token file {} is empty", path.display())));
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        let plain = ConnectOptions::default();
        assert!(endpoint("http://127.0.0.1:7070", &plain).is_ok());
        assert!(endpoint("https://127.0.0.1:7070", &plain).is_ok());
        assert!(endpoint("127.0.0.1:7070", &plain).is_err());
        assert!(endpoint("ftp://x:1", &plain).is_err());
    }

    #[test]
    fn tls_options_never_go_out_in_plain_text() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        // Any well-formed PEM certificate block will do for the address check.
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n").unwrap();
        let tls = ClientTls::from_files(Some(&ca), None, None).unwrap();
        let opts = ConnectOptions { tls, ..ConnectOptions::default() };
        let e = endpoint("http://127.0.0.1:7070", &opts).unwrap_err().to_string();
        assert!(e.contains("need an https:// address"), "{e}");
    }
}
