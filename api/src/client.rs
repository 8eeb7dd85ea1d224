//! Connecting to a coordinator: address checks, the shared-token interceptor, and typed
//! clients for both services.

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::pb::job_service_client::JobServiceClient;
use crate::pb::worker_service_client::WorkerServiceClient;

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
}

/// Checks a coordinator address and builds its endpoint.
pub fn endpoint(addr: &str) -> Result<Endpoint, ConnectError> {
    let bad = |reason: &str| ConnectError::BadAddress { addr: addr.to_string(), reason: reason.to_string() };
    let url = url::Url::parse(addr).map_err(|e| bad(&format!("{e} (expected http://HOST:PORT)")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad("expected http://HOST:PORT"));
    }
    if url.host_str().is_none() || url.port_or_known_default().is_none() {
        return Err(bad("expected http://HOST:PORT"));
    }
    Ok(Endpoint::from_shared(addr.to_string())
        .map_err(|e| bad(&e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true))
}

/// Opens a channel to the coordinator, failing fast when nothing answers.
pub async fn channel(addr: &str) -> Result<Channel, ConnectError> {
    endpoint(addr)?
        .connect()
        .await
        .map_err(|e| ConnectError::Unreachable { addr: addr.to_string(), reason: transport_reason(&e) })
}

/// A job-service client for `addr`.
pub async fn job_client(addr: &str, token: Option<&str>) -> Result<JobClient, ConnectError> {
    let ch = channel(addr).await?;
    Ok(JobServiceClient::with_interceptor(ch, TokenInterceptor::new(token)?).max_decoding_message_size(MAX_MESSAGE))
}

/// A worker-service client for `addr`; connects lazily so a worker can start before its
/// coordinator and keep retrying.
pub fn worker_client_lazy(addr: &str, token: Option<&str>) -> Result<WorkerClient, ConnectError> {
    let ch = endpoint(addr)?.connect_lazy();
    Ok(WorkerServiceClient::with_interceptor(ch, TokenInterceptor::new(token)?).max_decoding_message_size(MAX_MESSAGE))
}

/// Largest message either side accepts: a reduce assignment lists every map output.
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

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
        assert!(endpoint("http://127.0.0.1:7070").is_ok());
        assert!(endpoint("127.0.0.1:7070").is_err());
        assert!(endpoint("ftp://x:1").is_err());
    }
}
