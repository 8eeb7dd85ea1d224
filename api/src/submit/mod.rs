//! Submitting jobs from a Rust program, and following them: what `quern submit`, `status`,
//! `kill` and `run` do, as a library.
//!
//! - [`Client`]: one or several coordinator addresses (a primary and standbys: calls go to
//!   the one holding the lease) and the [`Registry`] jobs are checked against.
//! - [`JobBuilder`], from [`Client::job`]: inputs, output, parameters, side data, formats,
//!   reducers...; [`JobBuilder::submit`] checks the definition against the registry (unknown
//!   jobs, bad parameters, reducer counts a job forbids, inputs given to a generator),
//!   samples the input of a total-order job for its cut points, and submits.
//! - [`JobHandle`]: a submitted job's [`status`](JobHandle::status), a
//!   [`wait`](JobHandle::wait) that reports progress and survives a coordinator failing over,
//!   and [`kill`](JobHandle::kill).
//!
//! The registry is the client's, given once with [`Client::with_registry`]: planning needs
//! the jobs' own rules (their reducer count, formats, whether they generate data), which
//! live in the program's code, not on the coordinator. A client without one can still follow
//! and kill jobs by id ([`Client::handle`]).
//!
//! ```no_run
//! use quern_api::submit::{Client, JobState};
//! use quern_api::{Job, JobError, MapContext, OutputContext, Registry, Record};
//!
//! struct LineCount;
//! impl Job for LineCount {
//!     type Key = String;
//!     type Value = u64;
//!     fn map(&self, _: &Record<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
//!         ctx.emit("lines", 1);
//!         Ok(())
//!     }
//!     fn reduce(&self, k: String, v: &mut dyn Iterator<Item = u64>, out: &mut OutputContext<'_>) -> Result<(), JobError> {
//!         out.emit(k, v.sum::<u64>());
//!         Ok(())
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut registry = Registry::new();
//! registry.register("linecount", "count lines", &[], |_| Ok(LineCount));
//! let client = Client::connect("http://127.0.0.1:7070", Default::default()).await?.with_registry(registry);
//! let job = client
//!     .job("linecount")
//!     .input("file:///data/books/")
//!     .output("file:///data/counts")
//!     .reducers(1)
//!     .submit()
//!     .await?;
//! let done = job.wait(|s| eprintln!("{}: maps {}/{}", s.state(), s.maps().done, s.maps().total)).await?;
//! assert_eq!(done.state(), JobState::Succeeded);
//! # Ok(())
//! # }
//! ```

mod error;
mod plan;
mod sample;
mod status;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;

pub use error::{PlanError, SubmitError, explain_status};
pub use plan::{DEFAULT_REDUCERS, DEFAULT_SPLIT_SIZE};
pub use status::{JobState, JobStatus, Progress};

use crate::client::{ConnectError, ConnectOptions, JobClient, job_client};
use crate::{InputFormat, JobId, OutputFormat, Params, Registry, StoreError, StoreUrl, pb};
use plan::Request;

/// Longest a watch stream may stay silent before the client looks for the leader again. The
/// coordinator repeats a job's status every 10 s, so three missed repeats mean it is gone or
/// stuck.
const WATCH_SILENCE: Duration = Duration::from_secs(30);

/// How long a wait keeps looking for a coordinator (one restarting, or a standby taking over)
/// before it gives up on the job.
const LEADER_SEARCH: Duration = Duration::from_secs(60);

/// Pause between two looks for the leader.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Longest wait for one call's answer (a status, a kill, opening a watch, a leader's ping).
const CALL_LIMIT: Duration = Duration::from_secs(10);

/// A connection to a coordinator (of several, the one holding the lease), and the jobs a
/// submission is checked against. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    addrs: Arc<str>,
    opts: Arc<ConnectOptions>,
    registry: Registry,
    rpc: Arc<Mutex<Option<JobClient>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("addrs", &self.addrs).finish_non_exhaustive()
    }
}

impl Client {
    /// A client of `addrs` (`http://HOST:PORT`, or several comma-separated) that connects at
    /// its first call, so a job definition is checked before anything is sent.
    pub fn new(addrs: &str, opts: ConnectOptions) -> Client {
        Client { addrs: addrs.into(), opts: Arc::new(opts), registry: Registry::new(), rpc: Arc::new(Mutex::new(None)) }
    }

    /// Connects to `addrs` now; of several, to the one holding the lease.
    pub async fn connect(addrs: &str, opts: ConnectOptions) -> Result<Client, SubmitError> {
        let client = Client::new(addrs, opts);
        client.rpc().await?;
        Ok(client)
    }

    /// The jobs submissions are checked against (and the only ones [`Client::job`] knows).
    pub fn with_registry(mut self, registry: Registry) -> Client {
        self.registry = registry;
        self
    }

    /// The addresses as given.
    pub fn addrs(&self) -> &str {
        &self.addrs
    }

    /// Starts defining a run of the registered job or pipeline `name`.
    pub fn job(&self, name: &str) -> JobBuilder {
        JobBuilder { client: self.clone(), req: Request::new(name) }
    }

    /// A handle on job `id`, submitted by anyone.
    pub fn handle(&self, id: JobId) -> JobHandle {
        JobHandle { client: self.clone(), id }
    }

    /// The job-service client, connected at the first call, for calls this module does not
    /// wrap (listing jobs, workers, tasks).
    pub async fn rpc(&self) -> Result<JobClient, SubmitError> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        self.reconnect().await
    }

    fn current(&self) -> Option<JobClient> {
        self.rpc.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Looks for the leader again and keeps the connection to it.
    async fn reconnect(&self) -> Result<JobClient, SubmitError> {
        let c = connect_leader(&self.addrs, &self.opts).await?;
        *self.rpc.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(c.clone());
        Ok(c)
    }
}

/// Connects to the one of `addrs` that holds the lease (the others, standbys, refuse every
/// call); a single address is taken as it is.
async fn connect_leader(addrs: &str, opts: &ConnectOptions) -> Result<JobClient, SubmitError> {
    let list: Vec<&str> = addrs.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
    if list.len() <= 1 {
        return Ok(job_client(list.first().copied().unwrap_or(""), opts).await?);
    }
    let mut last = None;
    for addr in &list {
        match job_client(addr, opts).await {
            Ok(mut c) => match tokio::time::timeout(CALL_LIMIT, c.ping(pb::PingRequest {})).await {
                Ok(Ok(_)) => return Ok(c),
                Ok(Err(e)) => {
                    last = Some(SubmitError::NotLeader { addr: addr.to_string(), message: e.message().into() })
                }
                Err(_) => {
                    let message = format!("no answer within {CALL_LIMIT:?}");
                    last = Some(SubmitError::NotLeader { addr: addr.to_string(), message })
                }
            },
            Err(e) => last = Some(e.into()),
        }
    }
    let last =
        last.unwrap_or_else(|| ConnectError::BadAddress { addr: addrs.into(), reason: "no address".into() }.into());
    Err(SubmitError::NoLeader { last: Box::new(last) })
}

/// A job being defined; [`submit`](JobBuilder::submit) checks and sends it.
#[derive(Debug)]
#[must_use = "a job is only sent by `submit`"]
pub struct JobBuilder {
    client: Client,
    req: Request,
}

impl JobBuilder {
    /// Adds an input: a URL or an absolute path; one ending in `/` means everything under it.
    pub fn input(mut self, url: &str) -> Self {
        self.req.inputs.push(url.to_string());
        self
    }

    /// Adds several inputs.
    pub fn inputs<S: AsRef<str>>(mut self, urls: impl IntoIterator<Item = S>) -> Self {
        self.req.inputs.extend(urls.into_iter().map(|u| u.as_ref().to_string()));
        self
    }

    /// The output directory (URL or absolute path); it must not exist or be empty.
    pub fn output(mut self, url: &str) -> Self {
        self.req.output = Some(url.to_string());
        self
    }

    /// Sets job parameter `key` (a later value replaces an earlier one).
    pub fn param(mut self, key: &str, value: &str) -> Self {
        self.req.params.insert(key.to_string(), value.to_string());
        self
    }

    /// Sets every parameter of `params` (e.g. from [`Params::parse_pairs`]). Only the
    /// key-value pairs: side data goes by URL, through [`JobBuilder::side`].
    pub fn params(mut self, params: &Params) -> Self {
        self.req.params.extend(params.as_map().iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }

    /// Side data `name`: a small object at `url` that every task gets, and that the job's
    /// parameters can name (read here too, so the job validates against it).
    pub fn side(mut self, name: &str, url: &str) -> Self {
        self.req.side.push((name.to_string(), url.to_string()));
        self
    }

    /// Reduce tasks (output parts); 0 runs the job map-only. Default: what the job requires,
    /// else [`DEFAULT_REDUCERS`].
    pub fn reducers(mut self, n: u32) -> Self {
        self.req.reducers = Some(n);
        self
    }

    /// How inputs are read (default: the job's own).
    pub fn input_format(mut self, f: InputFormat) -> Self {
        self.req.input_format = Some(f);
        self
    }

    /// How parts are written (default: the job's own).
    pub fn output_format(mut self, f: OutputFormat) -> Self {
        self.req.output_format = Some(f);
        self
    }

    /// Higher runs first (default 0).
    pub fn priority(mut self, p: i32) -> Self {
        self.req.priority = p;
        self
    }

    /// Input bytes per map task (default [`DEFAULT_SPLIT_SIZE`]).
    pub fn split_size(mut self, bytes: u64) -> Self {
        self.req.split_size = bytes;
        self
    }

    /// After a failed attempt, skip records on which the job's code panics instead of
    /// failing the task again.
    pub fn skip_bad_records(mut self, skip: bool) -> Self {
        self.req.skip_bad_records = skip;
        self
    }

    /// Map tasks of a generator job (default about one per million records).
    pub fn maps(mut self, n: u32) -> Self {
        self.req.maps = Some(n);
        self
    }

    /// The wire spec this job would be submitted as: checked against the registry, side data
    /// read, a total-order job's input sampled. Nothing is sent.
    pub async fn to_spec(&self) -> Result<pb::JobSpec, SubmitError> {
        let (params, side) = read_side(&self.req).await?;
        // Planning builds the job from its parameters: user code, so under a panic guard.
        let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            plan::plan(&self.req, &self.client.registry, params, side)
        }));
        let mut plan = planned.map_err(|panic| SubmitError::JobPanicked {
            what: "building it from its parameters",
            message: crate::panic_message(panic.as_ref()).unwrap_or_default(),
        })??;
        sample::add_total_order(&mut plan, &self.client.registry).await?;
        Ok(plan.spec)
    }

    /// Checks the job, connects if need be, and submits it.
    pub async fn submit(self) -> Result<JobHandle, SubmitError> {
        let spec = self.to_spec().await?;
        let mut rpc = self.client.rpc().await?;
        let id = rpc.submit(pb::SubmitRequest { spec: Some(spec) }).await?.into_inner().job_id;
        let id = JobId::parse(&id).map_err(SubmitError::Protocol)?;
        Ok(self.client.handle(id))
    }
}

/// Reads the side data into the parameters, so the job can validate against it; returns
/// them with the side data's URLs by name.
async fn read_side(req: &Request) -> Result<(Params, BTreeMap<String, String>), SubmitError> {
    let mut params = Params::new(req.params.clone());
    let mut side = BTreeMap::new();
    for (name, place) in &req.side {
        if name.is_empty() || side.contains_key(name) {
            return Err(PlanError::SideName { name: name.clone() }.into());
        }
        let bad = |source| PlanError::SideUrl { name: name.clone(), source };
        let url = StoreUrl::from_user(place).map_err(bad)?;
        let store = url.store().map_err(bad)?;
        let read = |e| SubmitError::SideRead { name: name.clone(), source: StoreError::from_store(url.as_str(), e) };
        let bytes = store.get(&url.path()).await.map_err(read)?.bytes().await.map_err(read)?;
        params = params.with_side(name, bytes);
        side.insert(name.clone(), url.to_string());
    }
    Ok((params, side))
}

/// A submitted job.
#[derive(Clone, Debug)]
pub struct JobHandle {
    client: Client,
    id: JobId,
}

impl JobHandle {
    /// The job's id.
    pub fn id(&self) -> &JobId {
        &self.id
    }

    /// The job's status now.
    pub async fn status(&self) -> Result<JobStatus, SubmitError> {
        let s = self.call(|mut rpc, req| async move { rpc.status(req).await }).await?;
        JobStatus::try_from(s).map_err(SubmitError::Protocol)
    }

    /// Kills the job; returns its state after the call: [`JobState::Killed`], or the state
    /// it had already ended in.
    pub async fn kill(&self) -> Result<JobState, SubmitError> {
        let r = self.call(|mut rpc, req| async move { rpc.kill(req).await }).await?;
        JobState::try_from(r.state).map_err(SubmitError::Protocol)
    }

    /// The job's tasks with their attempts, as the coordinator keeps them (`quern tasks`).
    pub async fn tasks(&self) -> Result<Vec<pb::TaskInfo>, SubmitError> {
        Ok(self.call(|mut rpc, req| async move { rpc.tasks(req).await }).await?.tasks)
    }

    /// One call about this job, to the coordinator holding the lease: a refusal saying this
    /// one is unavailable (a standby, or one that stopped) looks for the leader once more and
    /// asks again (status and kill may be asked twice alike).
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, SubmitError>
    where
        F: Fn(JobClient, pb::JobRequest) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let rpc = self.client.rpc().await?;
        match tokio::time::timeout(CALL_LIMIT, f(rpc, self.request())).await {
            Ok(Ok(r)) => return Ok(r.into_inner()),
            Ok(Err(e)) if e.code() != tonic::Code::Unavailable => return Err(e.into()),
            Ok(Err(_)) | Err(_) => {}
        }
        let rpc = self.client.reconnect().await?;
        match tokio::time::timeout(CALL_LIMIT, f(rpc, self.request())).await {
            Ok(r) => Ok(r?.into_inner()),
            Err(_) => Err(SubmitError::Lost { addrs: self.client.addrs.to_string(), job: self.id.clone() }),
        }
    }

    /// Follows the job until it ends, calling `progress` with every status the coordinator
    /// sends (about every 10 s, and at every change); returns the final status, whatever the
    /// state. A coordinator that goes away (restarting, or failing over to a standby) is
    /// looked for again for up to a minute; a watch silent for 30 s counts as gone.
    pub async fn wait(&self, mut progress: impl FnMut(&JobStatus)) -> Result<JobStatus, SubmitError> {
        let mut rpc = self.client.rpc().await.ok();
        // Since when the leader is being looked for: only a status ends a search, not a
        // stream that opens and then says nothing (a wedged coordinator).
        let mut down_since: Option<Instant> = None;
        loop {
            if let Some(client) = rpc.as_mut() {
                match tokio::time::timeout(CALL_LIMIT, client.watch(self.request())).await {
                    Ok(Ok(s)) => {
                        let mut s = s.into_inner();
                        // A stream that ends, fails or stays silent: look for the leader again.
                        while let Ok(Ok(Some(wire))) = tokio::time::timeout(WATCH_SILENCE, s.message()).await {
                            down_since = None;
                            let status = JobStatus::try_from(wire).map_err(SubmitError::Protocol)?;
                            progress(&status);
                            if status.state().is_final() {
                                return Ok(status);
                            }
                        }
                    }
                    // Asking again cannot help: the job is not there, or this client not welcome.
                    Ok(Err(e)) if matches!(e.code(), tonic::Code::NotFound | tonic::Code::Unauthenticated) => {
                        return Err(e.into());
                    }
                    Ok(Err(_)) | Err(_) => {}
                }
            }
            let since = *down_since.get_or_insert_with(Instant::now);
            if since.elapsed() > LEADER_SEARCH {
                return Err(SubmitError::Lost { addrs: self.client.addrs.to_string(), job: self.id.clone() });
            }
            tokio::time::sleep(RECONNECT_PAUSE).await;
            if let Ok(c) = self.client.reconnect().await {
                rpc = Some(c);
            }
        }
    }

    fn request(&self) -> pb::JobRequest {
        pb::JobRequest { job_id: self.id.to_string() }
    }
}
