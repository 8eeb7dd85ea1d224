//! # quern-coordinator: accepts jobs, schedules tasks, decides which attempt counts
//!
//! - [`task`] and [`job`]: the task and job lifecycles as pure state machines; [`spec`]:
//!   what a job is (typed, validated).
//! - [`core`]: all coordinator state ([`core::Core`]) with pure transitions that take the time
//!   as an argument and return the I/O to perform as [`core::Action`]s.
//! - [`policy`]: which job a free slot serves (kept apart from state and RPC).
//! - [`service`]: the gRPC shell (`JobService`, `WorkerService`) and the token check.
//! - [`convert`]: every wire message into Quern types, bounded, in one place: past it the
//!   coordinator holds no protobuf types and acts only on object names it built itself.
//! - [`inputs`]: listing inputs and checking outputs at submit time; [`admit`]: the path
//!   policy and building each submitted job with its own code before it is accepted.
//! - [`status`]: jobs, tasks and workers as users see them; [`http`]: the same as web pages
//!   and a REST API, plus health probes and Prometheus metrics; [`observe`]: the counters and
//!   histograms of attempts and jobs, observed as they happen.
//! - [`commit`]: how a granted part becomes visible: rename on local files, completion of
//!   the attempt's multipart upload on stores without rename (S3).
//! - [`perform`]: the I/O the core decides ([`core::Action`]s), run as tracked background
//!   tasks that a stopping coordinator waits for.
//! - [`gc`]: what ended, crashed or unknown jobs left in the store: swept by a coordinator
//!   when it takes the lead, listed and deleted by `quern gc`.
//! - [`journal`]: decisions journalled to the store, replayed by a restarted coordinator;
//!   [`snapshot`]: the compacted records that stand for every entry before them.
//! - [`lease`] and [`leader`]: the store lease that lets one coordinator act at a time, and
//!   a second one wait as a standby and take over.
//! - [`sim`]: a simulated cluster driving the core with a fake clock, to measure what
//!   scheduling costs as clusters grow (`quern-sched-bench`).
//! - [`net`]: accepting connections: TLS (and mutual TLS), connection and message limits,
//!   handshake and idle timeouts ([`net::NetConfig`]).
//!
//! [`start`] binds the listener and serves until the shutdown token is cancelled; the
//! `quern coordinator` command, the embedded `quern run` and the tests all use it.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admit;
pub mod commit;
pub mod convert;
pub mod core;
pub mod gc;
pub mod history;
pub mod http;
pub mod inputs;
pub mod job;
pub mod journal;
pub mod leader;
pub mod lease;
pub mod net;
pub mod observe;
pub mod perform;
pub mod placement;
pub mod policy;
pub mod service;
pub mod sim;
pub mod snapshot;
pub mod spec;
pub mod status;
pub mod task;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quern_api::{StoreUrl, now_ms, pb};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

use crate::core::{Core, CoreConfig};
use crate::service::{Auth, JobSvc, Shared, WorkerSvc};

/// How a coordinator runs.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Root of the store for intermediate data.
    pub store: StoreUrl,
    /// Where to write `http://HOST:PORT` once listening.
    pub addr_file: Option<PathBuf>,
    /// A worker silent this long is declared lost.
    pub heartbeat_timeout: Duration,
    /// How often workers heartbeat.
    pub heartbeat_interval: Duration,
    /// Shared token required on every call.
    pub token: Option<String>,
    /// Counted failures after which a task fails its job.
    pub max_attempts: u32,
    /// Backup attempts for stragglers (None: off).
    pub speculation: Option<job::Speculation>,
    /// A test hook, set by no command-line flag (a test binary sets it through
    /// `quern_cli::Hooks`): while this file exists, no reduce task is handed out, so a test
    /// can act between the map and reduce phases.
    pub hold_reduces_while: Option<PathBuf>,
    /// How long the store lease lasts without renewal (standby takeover takes 1.5 times it).
    pub lease: Duration,
    /// Delay scheduling for data locality.
    pub delay: placement::Delay,
    /// Which job a free slot serves.
    pub policy: policy::PolicyKind,
    /// Fair-share preemption after a job has been starved this long (fair policy only;
    /// None: off).
    pub preemption: Option<Duration>,
    /// Where to serve the HTTP status pages, if anywhere.
    pub http: Option<SocketAddr>,
    /// Directories inputs, outputs and side data must lie under (`--allow-url`; empty:
    /// anywhere).
    pub allow: Vec<StoreUrl>,
    /// The jobs this coordinator's binary has: submissions of them are built (and so
    /// validated) at submit, exactly as a worker will build them.
    pub jobs: Option<quern_api::Registry>,
    /// Jobs not yet ended, at most (`--max-jobs`).
    pub max_jobs: usize,
    /// How long a job no registered worker runs waits for one before failing (`--job-wait`).
    pub job_wait: Duration,
    /// A running attempt whose progress stands still this long is failed (`--task-timeout`).
    pub task_timeout: Duration,
    /// Bytes per part of the multipart uploads that parts are written as on stores without
    /// atomic rename (5 MiB to 5 GiB, S3's limits).
    pub upload_part_size: u64,
    /// Whether the store's create-only writes are atomic under racing writers (local files,
    /// AWS S3, GCS, Azure). Without them no coordinator waits as a standby.
    pub conditional_writes: bool,
    /// A journal snapshot once this many records were written since the last one (0:
    /// never), so that a restart replays a bounded journal (see [`snapshot`]).
    pub journal_snapshot_every: u64,
    /// TLS, connection and message limits, for gRPC and the status pages.
    pub net: net::NetConfig,
    /// How many ended jobs, and for how long, stay listed with their archives.
    pub history: core::History,
}

impl CoordinatorConfig {
    /// Defaults for everything but where to listen and store.
    pub fn new(listen: SocketAddr, store: StoreUrl) -> Self {
        CoordinatorConfig {
            listen,
            store,
            addr_file: None,
            heartbeat_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(1),
            token: None,
            max_attempts: 4,
            speculation: Some(job::Speculation::default()),
            hold_reduces_while: None,
            lease: Duration::from_secs(3),
            delay: placement::Delay::default(),
            policy: policy::PolicyKind::default(),
            preemption: None,
            http: None,
            allow: Vec::new(),
            jobs: None,
            max_jobs: 1000,
            job_wait: Duration::from_secs(60),
            task_timeout: Duration::from_secs(600),
            upload_part_size: 16 << 20,
            conditional_writes: true,
            journal_snapshot_every: 1000,
            net: net::NetConfig::default(),
            history: core::History::default(),
        }
    }
}

/// Starting the coordinator failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The address file could not be written.
    #[error("cannot write address file {path}: {source}")]
    AddrFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store URL is unusable.
    #[error(transparent)]
    Store(#[from] quern_api::StoreError),
    /// The journal could not be replayed.
    #[error(transparent)]
    Lead(#[from] leader::LeadError),
    /// TLS could not be set up.
    #[error(transparent)]
    Net(#[from] net::NetError),
}

/// A coordinator that is serving.
pub struct Running {
    /// Its address, `http://HOST:PORT` (`https://` with TLS).
    pub url: String,
    /// The status pages' address, with `--http`.
    pub http_url: Option<String>,
    /// Resolves when the server stops.
    pub task: JoinHandle<Result<(), tonic::transport::Error>>,
    /// Resolves when leadership ends: Ok after a clean shutdown, Err if it was lost.
    pub lead: JoinHandle<Result<(), leader::LeadError>>,
}

/// Binds, writes the address file, and serves in the background until `shutdown`.
pub async fn start(cfg: CoordinatorConfig, shutdown: CancellationToken) -> Result<Running, StartError> {
    cfg.store.store()?;
    let front = net::Front::new(&cfg.net)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| StartError::Bind { addr: cfg.listen, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: cfg.listen, source })?;
    let scheme = if cfg.net.tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}");
    if let Some(path) = &cfg.addr_file {
        // Written whole then renamed, so a reader never sees half an address.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{url}\n"))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| StartError::AddrFile { path: path.clone(), source })?;
    }
    let core = Core::new(
        CoreConfig {
            store: cfg.store.clone(),
            heartbeat_timeout: cfg.heartbeat_timeout,
            max_attempts: cfg.max_attempts.max(1),
            epoch_ms: now_ms(),
            speculation: cfg.speculation.clone(),
            delay: cfg.delay.clone(),
            max_jobs: cfg.max_jobs.max(1),
            job_wait: cfg.job_wait,
            task_timeout: cfg.task_timeout,
            // Room for the response's own framing and a margin.
            poll_bytes: cfg.net.max_message / 4 * 3,
            preemption: cfg.preemption.filter(|_| cfg.policy.is_fair()),
            history: cfg.history,
        },
        cfg.policy.build(),
    );
    // The server stops on shutdown, when another coordinator takes the lease, or when the
    // lease or the journal can no longer be written.
    let stops = leader::Stops { stop: shutdown.child_token(), lost: CancellationToken::new() };
    let stop = stops.stop.clone();
    let shell = service::Shell {
        heartbeat_interval: cfg.heartbeat_interval,
        stop: stop.clone(),
        admission: admit::Admission {
            allow: cfg.allow.clone(),
            jobs: cfg.jobs.clone(),
            store: Some(cfg.store.clone()),
        },
        hold_reduces_while: cfg.hold_reduces_while.clone(),
        upload_part_size: cfg.upload_part_size,
        conditional_writes: cfg.conditional_writes,
        journal_snapshot_every: cfg.journal_snapshot_every,
    };
    let shared = Shared::new(core, shell, url.clone());
    let clock = Arc::new(lease::LeaderClock::new(cfg.lease, std::time::Instant::now()));
    let held = leader::take_if_free(&shared, &cfg.store, &clock, &stops, cfg.lease).await?;
    let lead = tokio::spawn(leader::lead(shared.clone(), cfg.store.clone(), cfg.lease, clock.clone(), stops, held));
    // Stops with the server: a coordinator that lost the lead declares nobody lost and fails
    // no job any more.
    tokio::spawn(shared.clone().run_ticker(stop.clone()));
    let auth = Auth::new(cfg.token.clone(), clock.clone()).requiring(front.rules);
    let max = cfg.net.max_message;
    let jobs = InterceptedService::new(
        pb::job_service_server::JobServiceServer::new(JobSvc(shared.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        auth.clone(),
    );
    let workers = InterceptedService::new(
        pb::worker_service_server::WorkerServiceServer::new(WorkerSvc(shared.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        auth,
    );
    let mut http_url = None;
    if let Some(addr) = cfg.http {
        let http = tokio::net::TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let local = http.local_addr().map_err(|source| StartError::Bind { addr, source })?;
        http_url = Some(format!("{scheme}://{local}/"));
        let guard = http::Guard {
            token: if cfg.net.http_public { None } else { cfg.token.as_deref().map(Arc::from) },
            rules: front.rules,
        };
        let app = http::router(shared.clone(), clock, guard).into_make_service_with_connect_info::<net::Peer>();
        let conns = front.http(http, stop.clone()).map_err(|source| StartError::Bind { addr, source })?;
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(conns, app).with_graceful_shutdown(stop.cancelled_owned()).await;
        });
    }
    let incoming =
        tokio_stream::wrappers::ReceiverStream::new(front.grpc(listener, stop.clone())).map(Ok::<_, std::io::Error>);
    tracing::info!(%url, store = %cfg.store, max_connections = front.max_connections, "coordinator listening");
    let net = cfg.net.clone();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .max_concurrent_streams(net.max_streams)
            .http2_keepalive_interval(Some(net.keepalive))
            .http2_keepalive_timeout(Some(net.keepalive))
            // Headers are a few small fields (the token among them); a peer cannot make the
            // server buffer large ones.
            .http2_max_header_list_size(64 * 1024)
            .add_service(jobs)
            .add_service(workers)
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
    });
    Ok(Running { url, http_url, task, lead })
}
