//! An embedded cluster: a coordinator and workers as tasks of this process, on 127.0.0.1.
//!
//! [`LocalCluster`] is written once for everyone who wants a whole cluster in one process:
//! `quern run` runs its job on one, and the test harness's in-process mode is one. Both start
//! from the same defaults, [`CoordinatorConfig::new`] and [`WorkerConfig::new`], and change
//! only what they say they change through the [`LocalClusterBuilder`]. It lives in this crate
//! because this is the one that depends on both the coordinator and the worker, which never
//! depend on each other.
//!
//! ```no_run
//! # async fn example() -> Result<(), quern_cli::local::LocalError> {
//! use quern_cli::local::LocalCluster;
//!
//! let mut cluster = LocalCluster::builder(quern_examples::builtin()).workers(2).start().await?;
//! println!("submit to {}", cluster.url());
//! let third = cluster.add_worker();
//! cluster.stop_worker(third);
//! cluster.shutdown().await?;
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use quern_api::{Registry, StoreUrl};
use quern_coordinator::leader::LeadError;
use quern_coordinator::perform::DRAIN_LIMIT;
use quern_coordinator::{CoordinatorConfig, Running, StartError};
use quern_worker::{WorkerConfig, WorkerError};
use tempfile::TempDir;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a stopping cluster waits for its workers, and then for its server, to wind down.
const WIND_DOWN: Duration = Duration::from_secs(10);

/// An embedded cluster could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    /// The scratch directory for the default store could not be made.
    #[error("creating a scratch directory: {0}")]
    Scratch(#[source] std::io::Error),
    /// The scratch directory's path is not a usable store URL.
    #[error(transparent)]
    Store(#[from] quern_api::StoreError),
    /// The coordinator did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The coordinator's leadership ended with an error (its journal or lease).
    #[error("the embedded coordinator stopped with an error: {0}")]
    Lead(#[source] LeadError),
    /// The coordinator did not finish its cleanup within its bound.
    #[error("the embedded coordinator did not stop in time")]
    Timeout,
}

/// Changes to a coordinator's defaults, applied in order before it starts.
/// The lease of a coordinator on its own scratch store (see [`LocalClusterBuilder::start`]).
const PRIVATE_LEASE: Duration = Duration::from_secs(60);

type Tweak = Box<dyn FnOnce(&mut CoordinatorConfig) + Send>;
type WorkerTweak = Arc<dyn Fn(&mut WorkerConfig) + Send + Sync>;

/// What a [`LocalCluster`] will be; from [`LocalCluster::builder`].
pub struct LocalClusterBuilder {
    registry: Registry,
    store: Option<StoreUrl>,
    workers: usize,
    slots: u32,
    task_memory: quern_worker::spill::TaskMemory,
    host_prefix: String,
    tweaks: Vec<Tweak>,
    worker_tweaks: Vec<WorkerTweak>,
}

impl LocalClusterBuilder {
    /// The store for intermediate data, the journal and the lease (default: a temporary
    /// directory that the cluster removes when it goes).
    pub fn store(mut self, store: StoreUrl) -> Self {
        self.store = Some(store);
        self
    }

    /// Workers started with the cluster (default 2); more join with
    /// [`LocalCluster::add_worker`].
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Task slots of each worker (default 1: one task uses every core through rayon).
    pub fn slots(mut self, n: u32) -> Self {
        self.slots = n.max(1);
        self
    }

    /// Memory each worker's running task may use for its buffers, in bytes (default 512 MiB;
    /// at least 64 KiB): see `quern worker --task-memory`.
    pub fn task_memory(mut self, bytes: u64) -> Self {
        self.task_memory = quern_worker::spill::TaskMemory::new(bytes);
        self
    }

    /// Workers report themselves as hosts `PREFIX-0`, `PREFIX-1`, ... (default `local`).
    pub fn host_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.host_prefix = prefix.into();
        self
    }

    /// Changes the coordinator's configuration after its defaults are set (its store, its
    /// loopback address and the registry's jobs) and before it starts.
    pub fn coordinator(mut self, tweak: impl FnOnce(&mut CoordinatorConfig) + Send + 'static) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// Changes every worker's configuration (the cluster's and any added later) after its
    /// defaults are set, e.g. its shuffle compression.
    pub fn worker(mut self, tweak: impl Fn(&mut WorkerConfig) + Send + Sync + 'static) -> Self {
        self.worker_tweaks.push(Arc::new(tweak));
        self
    }

    /// Starts the coordinator on a free loopback port, then the workers. Call it inside a
    /// tokio runtime: the cluster's tasks run on that runtime, whatever thread later adds or
    /// stops workers.
    pub async fn start(self) -> Result<LocalCluster, LocalError> {
        let (store, scratch) = match self.store {
            Some(s) => (s, None),
            None => {
                let dir = tempfile::Builder::new().prefix("quern-run-").tempdir().map_err(LocalError::Scratch)?;
                (StoreUrl::from_user(&format!("{}/", dir.path().display()))?, Some(dir))
            }
        };
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let mut cfg = CoordinatorConfig::new(listen, store.clone());
        if scratch.is_some() {
            // No other coordinator can reach a private scratch store, so nothing waits on this
            // lease: a long one keeps a storage stall (a loaded disk flushing gigabytes) from
            // stopping the cluster mid-job as a lapsed leader.
            cfg.lease = PRIVATE_LEASE;
        }
        // The coordinator builds each submitted job as the workers will, so a bad spec is
        // refused at submit rather than failing on a worker.
        cfg.jobs = Some(self.registry.clone());
        for tweak in self.tweaks {
            tweak(&mut cfg);
        }
        let shutdown = CancellationToken::new();
        let coordinator = quern_coordinator::start(cfg, shutdown.clone()).await?;
        let mut cluster = LocalCluster {
            url: coordinator.url.clone(),
            store,
            registry: self.registry,
            slots: self.slots,
            task_memory: self.task_memory,
            host_prefix: self.host_prefix,
            worker_tweaks: self.worker_tweaks,
            runtime: Handle::current(),
            shutdown,
            coordinator: Some(coordinator),
            workers: Vec::new(),
            _scratch: scratch,
        };
        for _ in 0..self.workers {
            cluster.add_worker();
        }
        Ok(cluster)
    }
}

/// One embedded worker: how to stop it and what it ended with.
struct LocalWorker {
    stop: CancellationToken,
    task: JoinHandle<Result<(), WorkerError>>,
}

/// A running embedded cluster. Dropping it stops every node without waiting;
/// [`shutdown`](Self::shutdown) stops them and waits (bounded) until the coordinator has
/// finished the cleanup of ended jobs.
pub struct LocalCluster {
    url: String,
    store: StoreUrl,
    registry: Registry,
    slots: u32,
    task_memory: quern_worker::spill::TaskMemory,
    host_prefix: String,
    worker_tweaks: Vec<WorkerTweak>,
    runtime: Handle,
    shutdown: CancellationToken,
    coordinator: Option<Running>,
    workers: Vec<LocalWorker>,
    /// The default store's directory, removed with the cluster.
    _scratch: Option<TempDir>,
}

impl LocalCluster {
    /// A cluster whose workers (and whose coordinator, at submit) run `registry`'s jobs.
    pub fn builder(registry: Registry) -> LocalClusterBuilder {
        LocalClusterBuilder {
            registry,
            store: None,
            workers: 2,
            slots: 1,
            task_memory: quern_worker::spill::TaskMemory::default(),
            host_prefix: "local".into(),
            tweaks: Vec::new(),
            worker_tweaks: Vec::new(),
        }
    }

    /// The coordinator's address, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The cluster's store.
    pub fn store(&self) -> &StoreUrl {
        &self.store
    }

    /// A token whose cancellation stops the whole cluster (e.g. on Ctrl-C), as dropping it
    /// does.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Workers started so far, stopped ones included; the next one gets this index.
    pub fn workers_started(&self) -> usize {
        self.workers.len()
    }

    /// Starts one more worker running the cluster's jobs; returns its index.
    pub fn add_worker(&mut self) -> usize {
        self.add_worker_with(self.registry.clone())
    }

    /// Starts one more worker running `registry`'s jobs instead of the cluster's (e.g. jobs
    /// that misbehave on purpose); returns its index.
    pub fn add_worker_with(&mut self, registry: Registry) -> usize {
        self.add_worker_configured(registry, |_| {})
    }

    /// Starts one more worker running `registry`'s jobs, its config changed by `tweak` (e.g.
    /// a test's slowdown); returns its index.
    pub fn add_worker_configured(&mut self, registry: Registry, tweak: impl FnOnce(&mut WorkerConfig)) -> usize {
        let i = self.workers.len();
        let mut cfg = WorkerConfig::new(self.url.clone(), format!("{}-{i}", self.host_prefix));
        cfg.slots = self.slots;
        for t in &self.worker_tweaks {
            t(&mut cfg);
        }
        cfg.task_memory = self.task_memory;
        tweak(&mut cfg);
        let stop = self.shutdown.child_token();
        let task = self.runtime.spawn(quern_worker::run(cfg, registry, stop.clone()));
        self.workers.push(LocalWorker { stop, task });
        i
    }

    /// Stops worker `i` at once: its running attempts are cancelled and report nothing, and
    /// its heartbeats stop, so the coordinator finds it lost as it would a crashed machine.
    pub fn stop_worker(&mut self, i: usize) {
        if let Some(w) = self.workers.get(i) {
            w.stop.cancel();
        }
    }

    /// Stops every worker and the coordinator, waiting a bounded time for each: ten seconds
    /// for the workers and as much for the server, then for the coordinator's leadership until
    /// the cleanup of ended jobs is done (bounded by [`DRAIN_LIMIT`] more), so the store keeps
    /// nothing of them.
    pub async fn shutdown(mut self) -> Result<(), LocalError> {
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + WIND_DOWN;
        for w in std::mem::take(&mut self.workers) {
            // A worker's own error (its coordinator went first) says nothing more here.
            let _ = tokio::time::timeout_at(deadline, w.task).await;
        }
        let Some(coordinator) = self.coordinator.take() else { return Ok(()) };
        let _ = tokio::time::timeout(WIND_DOWN, coordinator.task).await;
        match tokio::time::timeout(DRAIN_LIMIT + WIND_DOWN, coordinator.lead).await {
            Ok(Ok(Err(e))) => Err(LocalError::Lead(e)),
            // A panicked leadership task already said so in the log.
            Ok(_) => Ok(()),
            Err(_) => Err(LocalError::Timeout),
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
