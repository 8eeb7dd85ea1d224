//! # quern-worker: runs map and reduce tasks
//!
//! A worker registers with the coordinator (declaring its host, rack, slots and the jobs its
//! binary can run), heartbeats, and long-polls for tasks, so a task starts the moment the
//! coordinator has one. Each task runs on all cores through rayon:
//!
//! - [`map`]: split in, pairs partitioned, sorted, combined, one shuffle object out;
//! - [`reduce`]: ranged reads of one partition from every map output, k-way merge, reduce;
//! - [`spill`] and [`merge`]: how both stay within the attempt's memory budget
//!   ([`spill::TaskMemory`], `--task-memory`): sorted runs spilled to local disk and merged
//!   a batch at a time, in passes when there are many;
//! - [`shuffle`]: the checksummed Arrow IPC shuffle format;
//! - [`task`]: the I/O around both, and the tokio-to-rayon bridge; `streamed`: a map task's
//!   input, a compressed object decompressed as it streams from the store;
//! - [`probe`]: the check, at the first registration, that the coordinator's store can be
//!   written, read and deleted in from here (a worker that cannot stops at once);
//! - [`metrics`] and [`http`]: what the worker did, as Prometheus metrics, served with a
//!   liveness page by `--http` while the worker runs.
//!
//! [`run`] is the whole worker; the `quern worker` command and the embedded `quern run` both
//! call it.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod blob;
pub mod cache;
mod columnar;
pub mod error;
pub mod http;
mod ipc_guard;
pub mod logs;
pub mod map;
pub mod merge;
pub mod metrics;
pub mod output;
pub mod probe;
pub mod reduce;
pub mod shuffle;
pub mod spill;
mod streamed;
pub mod task;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use quern_api::client::{ConnectError, ConnectOptions, WorkerClient, worker_client_lazy};
use quern_api::{AttemptId, Registry, WorkerId, pb};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

pub use error::TaskError;
use task::{TaskEnv, run_assignment};

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Coordinator address, `http://HOST:PORT` or `https://HOST:PORT`.
    pub coordinator: String,
    /// Token, TLS and message limit for talking to the coordinator.
    pub connect: ConnectOptions,
    /// Tasks run at once.
    pub slots: u32,
    /// Host name reported for locality.
    pub host: String,
    /// Rack name reported for locality.
    pub rack: String,
    /// How long the coordinator may be unreachable before the worker gives up.
    pub reconnect_budget: Duration,
    /// How long one poll may wait for work.
    pub poll_wait: Duration,
    /// A test hook, set by no command-line flag (a test binary sets it through
    /// `quern_cli::Hooks`): sleep this long before each task, like a slow machine, so a
    /// test can act while tasks run.
    pub slowdown: Option<Duration>,
    /// URL prefixes (ending in `/`) of input on this machine's own disk.
    pub local_data: Vec<String>,
    /// A local cache directory and its size limit in bytes.
    pub cache: Option<(std::path::PathBuf, u64)>,
    /// How map output segments are compressed (`--shuffle-compression`).
    pub shuffle_compression: shuffle::Codec,
    /// What one running attempt may hold in its buffers; S slots use up to S times this.
    pub task_memory: spill::TaskMemory,
    /// Where attempts keep local files (spills, fetched segments, output beyond memory), each
    /// in a directory of its own removed when it ends (None: the system's temporary directory).
    pub spill_dir: Option<std::path::PathBuf>,
    /// Serve `/metrics` and `/healthz` (`--http`) while the worker runs.
    pub http: Option<http::HttpConfig>,
}

impl WorkerConfig {
    /// The defaults every worker starts from (the `quern worker` flags' defaults), for one
    /// that talks to `coordinator` and reports itself as `host`: one slot, rack
    /// `default-rack`, a minute of reconnect budget, no local data, no cache.
    pub fn new(coordinator: impl Into<String>, host: impl Into<String>) -> Self {
        WorkerConfig {
            coordinator: coordinator.into(),
            connect: ConnectOptions::default(),
            slots: 1,
            host: host.into(),
            rack: "default-rack".into(),
            reconnect_budget: Duration::from_secs(60),
            // Long polls end as soon as there is work; this only bounds an idle one.
            poll_wait: Duration::from_secs(10),
            slowdown: None,
            local_data: Vec::new(),
            cache: None,
            shuffle_compression: shuffle::Codec::Lz4,
            task_memory: spill::TaskMemory::default(),
            spill_dir: None,
            http: None,
        }
    }
}

/// The worker could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Bad address or token.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The coordinator stayed unreachable longer than the reconnect budget.
    #[error("coordinator {addr} unreachable for {secs}s (reconnect budget): {last}")]
    CoordinatorGone {
        /// Its address.
        addr: String,
        /// How long we tried.
        secs: u64,
        /// The last error seen.
        last: String,
    },
    /// The cache directory is unusable.
    #[error("cache directory {dir}: {source}")]
    Cache {
        /// The directory.
        dir: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The coordinator refused the worker outright.
    #[error("coordinator refused this worker: {0}")]
    Refused(String),
    /// The coordinator's store cannot be used from here (see [`probe`]).
    #[error("worker cannot use the store {store}: {error}")]
    Store {
        /// The store's URL, as the coordinator gave it.
        store: String,
        /// The step that failed and the store's answer.
        error: probe::ProbeError,
    },
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Http(#[from] http::HttpError),
}

struct Shared {
    running: Mutex<HashMap<AttemptId, CancellationToken>>,
    /// Each running attempt's progress count (see [`TaskEnv::progress`]).
    progress: Mutex<HashMap<AttemptId, Arc<std::sync::atomic::AtomicU64>>>,
    slot_freed: Notify,
    cache: Option<Arc<cache::Cache>>,
    side: Arc<Mutex<HashMap<(String, String), bytes::Bytes>>>,
    metrics: Arc<metrics::WorkerMetrics>,
}

impl Shared {
    fn running(&self) -> Vec<AttemptId> {
        self.lock().keys().cloned().collect()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AttemptId, CancellationToken>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A slot held by one running attempt: taking it registers the attempt (heartbeats report
/// it, cancels reach it); dropping it, however the attempt's task ends, frees the slot.
struct Slot {
    shared: Arc<Shared>,
    attempt: AttemptId,
    /// The attempt's progress count, reported with heartbeats.
    progress: Arc<std::sync::atomic::AtomicU64>,
}

impl Slot {
    fn take(shared: &Arc<Shared>, attempt: AttemptId, cancel: CancellationToken) -> Slot {
        shared.lock().insert(attempt.clone(), cancel);
        let progress = Arc::<std::sync::atomic::AtomicU64>::default();
        shared.progress.lock().unwrap_or_else(|e| e.into_inner()).insert(attempt.clone(), progress.clone());
        Slot { shared: shared.clone(), attempt, progress }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.lock().remove(&self.attempt);
        self.shared.progress.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.attempt);
        self.shared.slot_freed.notify_waiters();
    }
}

/// Tracks how long the coordinator has been unreachable.
struct Outage {
    since: Option<Instant>,
    backoff: Duration,
}

impl Outage {
    fn new() -> Self {
        Outage { since: None, backoff: Duration::from_millis(100) }
    }
    fn ok(&mut self) {
        self.since = None;
        self.backoff = Duration::from_millis(100);
    }
    /// Records a failure; Err once the budget is spent.
    async fn failed(
        &mut self,
        cfg: &WorkerConfig,
        err: &tonic::Status,
        shutdown: &CancellationToken,
    ) -> Result<(), WorkerError> {
        if matches!(err.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) {
            return Err(WorkerError::Refused(err.message().to_string()));
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        // A failed connection says only "transport error"; its cause (a certificate, a reset)
        // is what the operator can act on.
        let why = match std::error::Error::source(err) {
            Some(_) => quern_api::client::explain_transport(&cfg.coordinator, err),
            None => err.message().to_string(),
        };
        if since.elapsed() > cfg.reconnect_budget {
            return Err(WorkerError::CoordinatorGone {
                addr: cfg.coordinator.clone(),
                secs: cfg.reconnect_budget.as_secs(),
                last: why,
            });
        }
        // Named at every failure, registration included: "cannot reach" is only actionable
        // with the address that was tried.
        let left = cfg.reconnect_budget.saturating_sub(since.elapsed()).as_secs();
        warn!(coordinator = %cfg.coordinator, error = %why, "coordinator call failed; retrying for up to {left}s");
        tokio::select! {
            _ = tokio::time::sleep(self.backoff) => {}
            _ = shutdown.cancelled() => {}
        }
        self.backoff = (self.backoff * 2).min(Duration::from_secs(2));
        Ok(())
    }
}

/// Runs a worker until `shutdown` is cancelled (then finishes its running tasks) or the
/// coordinator stays away longer than the reconnect budget.
pub async fn run(cfg: WorkerConfig, registry: Registry, shutdown: CancellationToken) -> Result<(), WorkerError> {
    // Tasks open many store files at once; the soft limit is often far below what is allowed.
    quern_api::fdlimit::raise_nofile();
    // One client per coordinator address; with several, the worker follows the one that
    // holds the lease (standbys refuse every call).
    let clients = cfg
        .coordinator
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| worker_client_lazy(a, &cfg.connect))
        .collect::<Result<Vec<_>, _>>()?;
    let cache = match &cfg.cache {
        None => None,
        Some((dir, limit)) => Some(Arc::new(
            cache::Cache::open(dir.clone(), *limit)
                .map_err(|source| WorkerError::Cache { dir: dir.display().to_string(), source })?,
        )),
    };
    let metrics = Arc::new(metrics::WorkerMetrics::new(cfg.slots, cache.clone()));
    let shared = Arc::new(Shared {
        running: Mutex::new(HashMap::new()),
        progress: Mutex::new(HashMap::new()),
        slot_freed: Notify::new(),
        cache,
        side: Arc::new(Mutex::new(HashMap::new())),
        metrics: metrics.clone(),
    });
    let tracker = TaskTracker::new();
    // The endpoint lives as long as this call: it stops with the worker, however that ends.
    let http_stop = shutdown.child_token();
    let _http_stop = http_stop.clone().drop_guard();
    if let Some(h) = &cfg.http {
        http::start(h, metrics, &tracker, http_stop.clone()).await?;
    }
    let result = serve(&cfg, &registry, &clients, &shared, &tracker, &shutdown).await;
    http_stop.cancel();
    if result.is_err() {
        for c in shared.lock().values() {
            c.cancel();
        }
    }
    tracker.close();
    tracker.wait().await;
    result
}

async fn serve(
    cfg: &WorkerConfig,
    registry: &Registry,
    clients: &[WorkerClient],
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<(), WorkerError> {
    let mut outage = Outage::new();
    let mut turn = 0usize;
    let mut store_checked = false;
    while !shutdown.is_cancelled() {
        let Some(client) = clients.get(turn % clients.len().max(1)) else {
            return Err(WorkerError::Refused("no coordinator address".into()));
        };
        // Register (again): a new identity every time.
        let req = pb::RegisterRequest {
            host: cfg.host.clone(),
            rack: cfg.rack.clone(),
            slots: cfg.slots,
            jobs: registry.names(),
            local_data: cfg.local_data.clone(),
        };
        let reg = match client.clone().register(req).await {
            Ok(r) => {
                outage.ok();
                r.into_inner()
            }
            Err(e) => {
                turn += 1;
                outage.failed(cfg, &e, shutdown).await?;
                continue;
            }
        };
        let worker_id = WorkerId::parse(&reg.worker_id).map_err(|e| WorkerError::Refused(e.to_string()))?;
        info!(worker = %worker_id, "registered");
        // Once per process: a store that worked at start is not checked again on every
        // re-registration (a passing outage must not stop a worker; tasks retry it).
        if !store_checked && !reg.store.is_empty() {
            check_store(&reg.store, &cfg.host).await?;
            info!(store = %reg.store, "the store can be written, read and deleted in");
            store_checked = true;
        }
        let session = shutdown.child_token();
        let interval = Duration::from_millis(reg.heartbeat_interval_ms.max(50));
        let secret = reg.worker_secret.clone();
        let hb = tokio::spawn(heartbeat(
            client.clone(),
            (worker_id.clone(), secret.clone()),
            shared.clone(),
            interval,
            session.clone(),
        ));
        let env = TaskEnv {
            registry: registry.clone(),
            client: client.clone(),
            worker_id: worker_id.clone(),
            worker_secret: secret,
            local_data: cfg.local_data.clone(),
            cache: shared.cache.clone(),
            side: shared.side.clone(),
            shuffle_compression: cfg.shuffle_compression,
            progress: Arc::default(),
            memory: cfg.task_memory,
            spill_root: cfg.spill_dir.clone(),
        };
        let polled = poll_loop(cfg, &env, client, shared, tracker, &session, &mut outage).await;
        session.cancel();
        let _ = hb.await;
        polled?;
        turn += 1;
        // Attempts of the old identity can no longer be reported; abandon them.
        for c in shared.lock().values() {
            c.cancel();
        }
    }
    Ok(())
}

/// The check of [`probe`] on the store the coordinator named.
async fn check_store(store: &str, host: &str) -> Result<(), WorkerError> {
    let fail = |error| WorkerError::Store { store: store.to_string(), error };
    let url = quern_api::StoreUrl::parse(store)
        .map_err(|e| fail(probe::ProbeError { step: "parsing", url: store.to_string(), answer: e.to_string() }))?;
    probe::check_store(&probe::probe_url(&url, host, std::process::id())).await.map_err(fail)
}

async fn poll_loop(
    cfg: &WorkerConfig,
    env: &TaskEnv,
    client: &WorkerClient,
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    session: &CancellationToken,
    outage: &mut Outage,
) -> Result<(), WorkerError> {
    let failover = cfg.coordinator.contains(',');
    loop {
        // Wait for a free slot.
        loop {
            let freed = shared.slot_freed.notified();
            if (shared.lock().len() as u32) < cfg.slots {
                break;
            }
            tokio::select! {
                _ = freed => {}
                _ = session.cancelled() => return Ok(()),
            }
        }
        let free = cfg.slots.saturating_sub(shared.lock().len() as u32);
        let req = pb::PollRequest {
            worker_id: env.worker_id.to_string(),
            worker_secret: env.worker_secret.clone(),
            free_slots: free,
            wait_ms: cfg.poll_wait.as_millis() as u64,
        };
        let mut c = client.clone();
        let resp = tokio::select! {
            r = c.poll(req) => r,
            _ = session.cancelled() => return Ok(()),
        };
        let resp = match resp {
            Ok(r) => {
                outage.ok();
                r.into_inner()
            }
            Err(e) => {
                outage.failed(cfg, &e, session).await?;
                // With standbys, a failing coordinator may have handed over: register again,
                // trying the next address.
                if session.is_cancelled() || failover {
                    return Ok(());
                }
                continue;
            }
        };
        if resp.reregister {
            info!(worker = %env.worker_id, "coordinator asked this worker to register again");
            return Ok(());
        }
        for a in resp.tasks {
            let Ok(attempt) = AttemptId::try_from(a.attempt.as_ref()) else {
                warn!("ignoring an assignment without a valid attempt");
                continue;
            };
            let cancel = session.child_token();
            let slot = Slot::take(shared, attempt.clone(), cancel.clone());
            let env = TaskEnv { progress: slot.progress.clone(), ..env.clone() };
            let (env, client, slowdown) = (env, client.clone(), cfg.slowdown);
            let kind = match a.task {
                Some(pb::task_assignment::Task::Reduce(_)) => metrics::TaskKind::Reduce,
                _ => metrics::TaskKind::Map,
            };
            let meter = shared.metrics.clone();
            meter.started();
            let span = info_span!("task", attempt = %attempt, worker = %env.worker_id);
            tracker.spawn(
                async move {
                    // Dropped however this task ends (even by a panic): the slot is freed.
                    let _slot = slot;
                    let started = Instant::now();
                    if let Some(d) = slowdown {
                        tokio::select! {
                            _ = tokio::time::sleep(d) => {}
                            _ = cancel.cancelled() => {}
                        }
                    }
                    // User code runs under spawn_compute's guard; this one catches the rest, so
                    // whatever a spec makes the worker do, the attempt ends with a report.
                    let outcome = AssertUnwindSafe(run_assignment(env.clone(), a, cancel.clone()))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|panic| {
                            let msg = task::panic_message(panic.as_ref());
                            Err(TaskError::Internal(format!("the worker panicked running this task: {msg}")))
                        });
                    match &outcome {
                        Ok(_) => info!(ms = started.elapsed().as_millis() as u64, "attempt succeeded"),
                        Err(e) => warn!(error = %e, "attempt failed"),
                    }
                    let end = match &outcome {
                        _ if cancel.is_cancelled() => metrics::AttemptEnd::Killed,
                        Err(TaskError::Cancelled) => metrics::AttemptEnd::Killed,
                        Err(_) => metrics::AttemptEnd::Failed,
                        Ok(_) => metrics::AttemptEnd::Succeeded,
                    };
                    // Only what is reported counts, as in the job's counters.
                    let counters =
                        outcome.as_ref().ok().filter(|_| end == metrics::AttemptEnd::Succeeded).map(|s| &s.counters);
                    meter.ended(kind, end, started.elapsed(), counters);
                    if cancel.is_cancelled() {
                        logs::take(&attempt.to_string());
                    } else {
                        report(&client, (&env.worker_id, &env.worker_secret), &attempt, outcome).await;
                    }
                }
                .instrument(span),
            );
        }
    }
}

/// Sends an attempt's outcome, retrying briefly; if the coordinator stays away, the attempt
/// is re-run after this worker is declared lost, so giving up loses nothing.
async fn report(
    client: &WorkerClient,
    (worker, secret): (&WorkerId, &str),
    attempt: &AttemptId,
    outcome: Result<pb::Succeeded, TaskError>,
) {
    // A failure carries what the attempt logged last (for `quern logs`); others drop it.
    let lines = logs::take(&attempt.to_string());
    let outcome = match outcome {
        Ok(s) => pb::outcome_report::Outcome::Succeeded(s),
        Err(TaskError::Cancelled) => pb::outcome_report::Outcome::Killed(pb::Killed {}),
        Err(e) => pb::outcome_report::Outcome::Failed(pb::Failed { log_tail: lines, ..e.to_pb() }),
    };
    let req = pb::OutcomeReport {
        worker_id: worker.to_string(),
        worker_secret: secret.to_string(),
        attempt: Some(attempt.into()),
        outcome: Some(outcome),
    };
    let mut delay = Duration::from_millis(100);
    for _ in 0..8 {
        match client.clone().report(req.clone()).await {
            Ok(r) => {
                let r = r.into_inner();
                if !r.accepted {
                    info!(reason = %r.reason, "coordinator rejected the outcome");
                }
                return;
            }
            Err(e) if e.code() == tonic::Code::Unavailable || e.code() == tonic::Code::Unknown => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                warn!(error = %e.message(), "report refused");
                return;
            }
        }
    }
    warn!("could not report the outcome; the coordinator will re-run the attempt");
}

async fn heartbeat(
    client: WorkerClient,
    (id, secret): (WorkerId, String),
    shared: Arc<Shared>,
    every: Duration,
    session: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = session.cancelled() => return,
        }
        let running: Vec<pb::AttemptRef> = shared.running().iter().map(pb::AttemptRef::from).collect();
        let cached = shared.cache.as_ref().map(|c| c.holdings()).unwrap_or_default();
        let progress = shared
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(a, p)| pb::AttemptProgress {
                attempt: Some(pb::AttemptRef::from(a)),
                steps: p.load(std::sync::atomic::Ordering::Relaxed),
            })
            .collect();
        let req = pb::HeartbeatRequest {
            worker_id: id.to_string(),
            worker_secret: secret.clone(),
            running,
            cached,
            progress,
        };
        match client.clone().heartbeat(req).await {
            Ok(r) => {
                let r = r.into_inner();
                if r.reregister {
                    session.cancel();
                    return;
                }
                let running = shared.lock();
                for c in &r.cancel {
                    if let Some(tok) = AttemptId::try_from(c).ok().and_then(|a| running.get(&a)) {
                        tok.cancel();
                    }
                }
            }
            Err(e) => warn!(error = %e.message(), "heartbeat failed"),
        }
    }
}
