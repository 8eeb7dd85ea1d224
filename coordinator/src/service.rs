//! The gRPC shell around [`crate::core::Core`]: handlers decode, call one pure transition
//! under the lock, perform the resulting [`Action`]s, and encode. No policy lives here.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::Stream;
use object_store::{ObjectStoreExt, PutPayload};
use quern_api::split::compute_splits;
use quern_api::{AttemptId, Counters, JobId, StoreUrl, WorkerId, now_ms, pb};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::core::{Action, Core, FailureKind, Now, Outcome, Promotion};
use crate::inputs::{
    InputError, check_output_empty, delete_object, delete_prefix, list_inputs, list_inputs_allow_empty,
    remove_empty_local_dirs,
};
use crate::job::JobSpec;
use crate::journal::Journal;
use crate::lease::LeaderClock;
use crate::net::{Peer, PeerRules};
use crate::status::{job_status, job_tasks, worker_info};
use crate::task::MapOutputMeta;

/// Default split size: 64 MiB, as Hadoop's block size.
pub const DEFAULT_SPLIT_SIZE: u64 = 64 * 1024 * 1024;
/// Most reduce tasks a job may ask for.
pub const MAX_REDUCERS: u32 = 100_000;

/// Most records a generator job may make (10^15: 100 PB of TeraGen records).
pub const MAX_GENERATE_ROWS: u64 = 1_000_000_000_000_000;
/// Longest a poll may be held open.
const MAX_POLL_WAIT: Duration = Duration::from_secs(30);
/// How long a submit waits for its journal record to be written.
const JOURNAL_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting poll looks again without being woken.
const RECHECK: Duration = Duration::from_millis(250);

/// State shared by all handlers.
pub struct Shared {
    core: Mutex<Core>,
    changed: watch::Sender<u64>,
    heartbeat_interval: Duration,
    journal: std::sync::OnceLock<Journal>,
    /// This coordinator's address, for Ping.
    pub url: String,
}

/// The locked core. Dropping it hands the decisions made under the lock to the journal,
/// still under the lock, so the journal's order is the order of the decisions.
pub struct CoreGuard<'a> {
    guard: MutexGuard<'a, Core>,
    journal: Option<&'a Journal>,
}

impl std::ops::Deref for CoreGuard<'_> {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.guard
    }
}

impl std::ops::DerefMut for CoreGuard<'_> {
    fn deref_mut(&mut self) -> &mut Core {
        &mut self.guard
    }
}

impl Drop for CoreGuard<'_> {
    fn drop(&mut self) {
        let records = self.guard.take_journal();
        if let (Some(j), false) = (self.journal, records.is_empty()) {
            j.append(records);
        }
    }
}

/// The current time.
pub fn now() -> Now {
    Now { at: Instant::now(), wall_ms: now_ms() }
}

impl Shared {
    /// Wraps a core; decisions go to `journal` when there is one.
    pub fn new(core: Core, heartbeat_interval: Duration, url: String) -> Arc<Self> {
        Arc::new(Shared {
            core: Mutex::new(core),
            changed: watch::Sender::new(0),
            heartbeat_interval,
            journal: std::sync::OnceLock::new(),
            url,
        })
    }

    /// Waits until every decision journalled so far is written.
    pub async fn durable(&self) -> Result<(), Status> {
        match self.journal.get() {
            Some(j) if !j.durable(j.enqueued(), JOURNAL_WAIT).await => {
                Err(Status::unavailable("the journal in the store is not writable"))
            }
            _ => Ok(()),
        }
    }

    /// Starts journalling (once, when this coordinator takes the lead).
    pub fn set_journal(&self, j: Journal) {
        let _ = self.journal.set(j);
    }

    /// Locks the core. A panic while holding the lock is a bug, but the state stays usable.
    pub fn core(&self) -> CoreGuard<'_> {
        CoreGuard { guard: self.core.lock().unwrap_or_else(|e| e.into_inner()), journal: self.journal.get() }
    }

    /// Wakes pollers and watchers.
    pub fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Performs actions in the background, feeding results back into the core.
    pub fn perform(self: &Arc<Self>, actions: Vec<Action>) {
        if actions.is_empty() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut queue = actions;
            while let Some(action) = queue.pop() {
                match action {
                    Action::WriteSuccess { job, output, temporary } => {
                        // The temporary directory goes first: after _SUCCESS the output holds
                        // the parts and nothing else.
                        let marker = output.join("_SUCCESS");
                        let cleared = delete_prefix(&temporary).await;
                        remove_empty_local_dirs(&temporary, &output);
                        let result = match (cleared, marker.store()) {
                            (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
                            (Ok(()), Ok(store)) => store
                                .put(&marker.path(), PutPayload::new())
                                .await
                                .map(|_| ())
                                .map_err(|e| e.to_string()),
                        };
                        info!(job = %job, ok = result.is_ok(), "job committed");
                        let more = me.core().finalized(&job, result, now_ms());
                        me.bump();
                        queue.extend(more);
                    }
                    Action::Cleanup { job, dirs, objects } => {
                        for url in &objects {
                            if let Err(e) = delete_object(url).await {
                                warn!(job = %job, error = %e, "could not delete a part of an unsuccessful job");
                            }
                        }
                        for dir in &dirs {
                            if let Err(e) = delete_prefix(dir).await {
                                warn!(job = %job, error = %e, "could not delete intermediate data");
                            }
                            if let Some(parent) = dir.parent_dir() {
                                remove_empty_local_dirs(dir, &parent.parent_dir().unwrap_or(parent));
                            }
                        }
                    }
                    Action::AdvanceStage {
                        job,
                        input,
                        temporary,
                        split_size,
                        input_format,
                        next_inputs,
                        next_objects,
                    } => {
                        let cleared = delete_prefix(&temporary).await;
                        remove_empty_local_dirs(&temporary, &input);
                        let listed = match cleared {
                            Ok(()) => list_inputs_allow_empty(&next_inputs).await.map_err(|e| e.to_string()).map(
                                |mut objects| {
                                    objects.extend(next_objects);
                                    objects.sort_by(|a, b| a.url.cmp(&b.url));
                                    objects.dedup();
                                    objects
                                },
                            ),
                            Err(e) => Err(e.to_string()),
                        };
                        match listed {
                            Ok(objects) => {
                                let format = input_format.parse().unwrap_or_default();
                                let splits = compute_splits(&objects, split_size, format);
                                info!(job = %job, maps = splits.len(), "pipeline stage done; next stage starts");
                                me.core().advance(&job, splits);
                            }
                            Err(e) => {
                                let more =
                                    me.core().advance_failed(&job, format!("starting the next stage: {e}"), now_ms());
                                queue.extend(more);
                            }
                        }
                        me.bump();
                    }
                    Action::Delete(url) => {
                        if let Err(e) = delete_object(&url).await {
                            warn!(error = %e, "could not delete an unused attempt's output");
                        }
                    }
                }
            }
        });
    }

    /// Declares silent workers lost, every fraction of the heartbeat timeout, until `stop`.
    pub async fn run_ticker(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let every =
            (self.core().config().heartbeat_timeout / 5).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            if self.core().tick(now()) {
                self.bump();
            }
        }
    }
}

fn job_id(s: &str) -> Result<JobId, Status> {
    JobId::parse(s).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn worker_id(s: &str) -> Result<WorkerId, Status> {
    WorkerId::parse(s).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn not_found(id: &JobId) -> Status {
    Status::not_found(format!("no job {id}"))
}

/// Checks a wire job spec and turns it into a domain one.
/// Returns the spec, its input URLs and the map tasks asked for (generator jobs).
pub fn validate_spec(spec: pb::JobSpec) -> Result<(JobSpec, Vec<StoreUrl>, u32), Status> {
    let bad = |m: String| Status::invalid_argument(m);
    if spec.job.trim().is_empty() {
        return Err(bad("job name is empty".into()));
    }
    if spec.inputs.is_empty() && spec.generate_rows == 0 {
        return Err(bad("no input given".into()));
    }
    if !spec.inputs.is_empty() && spec.generate_rows > 0 {
        return Err(bad("a generator job reads no input".into()));
    }
    if spec.generate_rows > MAX_GENERATE_ROWS {
        return Err(bad(format!("a generator makes at most {MAX_GENERATE_ROWS} records, not {}", spec.generate_rows)));
    }
    let formats = |input: &str, output: &str| -> Result<crate::job::Formats, Status> {
        input.parse::<quern_api::InputFormat>().map_err(|e| bad(format!("input format: {e}")))?;
        output.parse::<quern_api::OutputFormat>().map_err(|e| bad(format!("output format: {e}")))?;
        Ok(crate::job::Formats { input: input.to_string(), output: output.to_string() })
    };
    let inputs = spec
        .inputs
        .iter()
        .map(|u| StoreUrl::parse(u).map_err(|e| bad(format!("input: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let output = StoreUrl::parse(&spec.output).map_err(|e| bad(format!("output: {e}")))?;
    if spec.reducers > MAX_REDUCERS {
        return Err(bad(format!("reducers must be between 0 and {MAX_REDUCERS}, not {}", spec.reducers)));
    }
    if spec.maps > MAX_REDUCERS {
        return Err(bad(format!("maps must be at most {MAX_REDUCERS}, not {}", spec.maps)));
    }
    let split_size = if spec.split_size == 0 { DEFAULT_SPLIT_SIZE } else { spec.split_size };
    let domain = JobSpec {
        name: spec.job,
        inputs: spec.inputs,
        output,
        reducers: spec.reducers,
        split_size,
        params: spec.params,
        priority: spec.priority,
        skip_bad_records: spec.skip_bad_records,
        stages: spec
            .stages
            .into_iter()
            .enumerate()
            .map(|(k, s)| {
                if let Some(wrong) = s.inputs.iter().find(|&&i| i < -1 || i >= k as i32) {
                    return Err(bad(format!("pipeline stage {k} cannot read stage {wrong}")));
                }
                if s.job.trim().is_empty() || s.reducers > MAX_REDUCERS {
                    return Err(bad(format!("bad pipeline stage {:?} with {} reducers", s.job, s.reducers)));
                }
                let formats = formats(&s.input_format, &s.output_format)?;
                Ok(crate::job::Stage { job: s.job, params: s.params, reducers: s.reducers, formats, inputs: s.inputs })
            })
            .collect::<Result<Vec<_>, _>>()?,
        side: spec
            .side
            .into_iter()
            .map(|(name, url)| {
                let u = StoreUrl::parse(&url).map_err(|e| bad(format!("side data {name:?}: {e}")))?;
                Ok((name, u.to_string()))
            })
            .collect::<Result<_, Status>>()?,
        formats: formats(&spec.input_format, &spec.output_format)?,
        generate_rows: spec.generate_rows,
    };
    Ok((domain, inputs, spec.maps))
}

/// Fixed-length records: refuses (uncompressed) inputs that do not hold whole records, as
/// Hadoop's `FixedLengthInputFormat` does, before any task runs.
fn check_record_sizes(objects: &[quern_api::split::InputObject], format: quern_api::InputFormat) -> Result<(), Status> {
    for o in objects {
        if let quern_api::format::ObjectFormat::Fixed(n, None) = format.resolve(&o.url)
            && o.size % u64::from(n) != 0
        {
            return Err(Status::invalid_argument(format!(
                "input {} holds {} bytes, not a whole number of {n}-byte records",
                o.url, o.size
            )));
        }
    }
    Ok(())
}

fn input_status(e: InputError) -> Status {
    match e {
        InputError::NotFound(_) | InputError::Empty(_) => Status::not_found(e.to_string()),
        InputError::OutputExists { .. } => Status::already_exists(e.to_string()),
        InputError::Store(_) => Status::unavailable(e.to_string()),
    }
}

/// The client-facing service.
#[derive(Clone)]
pub struct JobSvc(pub Arc<Shared>);

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::JobStatus, Status>> + Send>>;

#[tonic::async_trait]
impl pb::job_service_server::JobService for JobSvc {
    async fn submit(&self, req: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResponse>, Status> {
        let spec = req.into_inner().spec.ok_or_else(|| Status::invalid_argument("missing job spec"))?;
        let (spec, inputs, maps) = validate_spec(spec)?;
        if let Some(other) = self.0.core().output_in_use(&spec.output) {
            return Err(Status::already_exists(format!("output {} is being written by job {other}", spec.output)));
        }
        check_output_empty(&spec.output).await.map_err(input_status)?;
        for (name, url) in &spec.side {
            check_side(name, url).await?;
        }
        let splits = if spec.generate_rows > 0 {
            // By default about a million records per map task.
            let maps = if maps > 0 {
                maps
            } else {
                spec.generate_rows.div_ceil(1_000_000).min(u64::from(MAX_REDUCERS)) as u32
            };
            quern_api::split::generator_splits(spec.generate_rows, maps)
        } else {
            let objects = list_inputs(&inputs).await.map_err(input_status)?;
            let format = spec.formats.input.parse().unwrap_or_default();
            check_record_sizes(&objects, format)?;
            compute_splits(&objects, spec.split_size, format)
        };
        let id = {
            let mut core = self.0.core();
            // Checked again under the lock: two submits may race for one output.
            if let Some(other) = core.output_in_use(&spec.output) {
                return Err(Status::already_exists(format!("output {} is being written by job {other}", spec.output)));
            }
            core.submit(spec, splits, now_ms())
        };
        // The id goes back only once the submission would survive a coordinator restart.
        self.0
            .durable()
            .await
            .map_err(|_| Status::unavailable(format!("job {id} accepted but the journal is not writable")))?;
        info!(job = %id, "job submitted");
        self.0.bump();
        Ok(Response::new(pb::SubmitResponse { job_id: id.to_string() }))
    }

    async fn status(&self, req: Request<pb::JobRequest>) -> Result<Response<pb::JobStatus>, Status> {
        let id = job_id(&req.into_inner().job_id)?;
        let core = self.0.core();
        let job = core.job(&id).ok_or_else(|| not_found(&id))?;
        Ok(Response::new(job_status(job)))
    }

    async fn ping(&self, _req: Request<pb::PingRequest>) -> Result<Response<pb::PingResponse>, Status> {
        Ok(Response::new(pb::PingResponse { coordinator: self.0.url.clone() }))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<pb::JobRequest>) -> Result<Response<WatchStream>, Status> {
        let id = job_id(&req.into_inner().job_id)?;
        if self.0.core().job(&id).is_none() {
            return Err(not_found(&id));
        }
        let shared = self.0.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut last: Option<pb::JobStatus> = None;
            loop {
                let mut changed = shared.changed.subscribe();
                let status = shared.core().job(&id).map(job_status);
                let Some(status) = status else { return };
                let done = matches!(
                    pb::JobState::try_from(status.state),
                    Ok(pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Killed)
                );
                if last.as_ref() != Some(&status) {
                    last = Some(status.clone());
                    if tx.send(Ok(status)).await.is_err() {
                        return;
                    }
                }
                if done {
                    return;
                }
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn list(&self, _req: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        let core = self.0.core();
        Ok(Response::new(pb::ListJobsResponse { jobs: core.jobs().map(job_status).collect() }))
    }

    async fn kill(&self, req: Request<pb::JobRequest>) -> Result<Response<pb::KillResponse>, Status> {
        let id = job_id(&req.into_inner().job_id)?;
        let (state, actions) = {
            let mut core = self.0.core();
            let job = core.job(&id).ok_or_else(|| not_found(&id))?;
            if job.state.is_final() {
                let state =
                    pb::JobState::try_from(crate::status::job_state(job) as i32).unwrap_or(pb::JobState::Unspecified);
                return Err(Status::failed_precondition(format!(
                    "job {id} had already ended ({})",
                    state.as_str_name().trim_start_matches("JOB_STATE_").to_lowercase()
                )));
            }
            let (_, actions) = core.kill(&id, now_ms()).ok_or_else(|| not_found(&id))?;
            let job = core.job(&id).ok_or_else(|| not_found(&id))?;
            (crate::status::job_state(job), actions)
        };
        self.0.perform(actions);
        self.0.bump();
        // Like a submit, a kill is acknowledged only once a restarted coordinator would know it.
        self.0.durable().await?;
        Ok(Response::new(pb::KillResponse { state: state as i32 }))
    }

    async fn workers(
        &self,
        _req: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let core = self.0.core();
        let now = Instant::now();
        let workers = core.workers().iter().map(|(id, w)| worker_info(id, w, now)).collect();
        Ok(Response::new(pb::ListWorkersResponse { workers }))
    }

    async fn tasks(&self, req: Request<pb::JobRequest>) -> Result<Response<pb::ListTasksResponse>, Status> {
        let id = job_id(&req.into_inner().job_id)?;
        let core = self.0.core();
        let job = core.job(&id).ok_or_else(|| not_found(&id))?;
        Ok(Response::new(pb::ListTasksResponse { tasks: job_tasks(job) }))
    }
}

/// The worker-facing service.
#[derive(Clone)]
pub struct WorkerSvc(pub Arc<Shared>);

fn outcome_from_pb(o: pb::outcome_report::Outcome) -> Outcome {
    match o {
        pb::outcome_report::Outcome::Succeeded(s) => Outcome::Succeeded {
            counters: Counters::from(s.counters),
            map_output: s.map_output.map(|m| MapOutputMeta { url: m.url, segments: m.partitions }),
        },
        pb::outcome_report::Outcome::Failed(f) => Outcome::Failed {
            kind: FailureKind::from(pb::FailureKind::try_from(f.kind).unwrap_or(pb::FailureKind::Internal)),
            message: f.message,
            lost_map: f.lost_map_index.map(|m| (m, f.lost_map_url)),
        },
        pb::outcome_report::Outcome::Killed(_) => Outcome::Killed,
    }
}

#[tonic::async_trait]
impl pb::worker_service_server::WorkerService for WorkerSvc {
    async fn ping(&self, _req: Request<pb::PingRequest>) -> Result<Response<pb::PingResponse>, Status> {
        Ok(Response::new(pb::PingResponse { coordinator: self.0.url.clone() }))
    }

    async fn register(&self, req: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = req.into_inner();
        let local_data = r.local_data.into_iter().filter(|p| p.ends_with('/')).collect();
        let id = self.0.core().register_with_data(
            r.host.clone(),
            r.rack.clone(),
            r.slots,
            r.jobs.into_iter().collect(),
            local_data,
            now(),
        );
        info!(worker = %id, host = %r.host, slots = r.slots, "worker registered");
        self.0.bump();
        Ok(Response::new(pb::RegisterResponse {
            worker_id: id.to_string(),
            heartbeat_interval_ms: self.0.heartbeat_interval.as_millis() as u64,
        }))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = req.into_inner();
        let id = worker_id(&r.worker_id)?;
        let cancel = {
            let mut core = self.0.core();
            let cancel = core.heartbeat(&id, now());
            if cancel.is_some() {
                core.set_cached(&id, r.cached);
            }
            cancel
        };
        Ok(Response::new(match cancel {
            None => pb::HeartbeatResponse { reregister: true, cancel: Vec::new() },
            Some(c) => {
                pb::HeartbeatResponse { reregister: false, cancel: c.iter().map(pb::AttemptRef::from).collect() }
            }
        }))
    }

    async fn poll(&self, req: Request<pb::PollRequest>) -> Result<Response<pb::PollResponse>, Status> {
        let r = req.into_inner();
        let id = worker_id(&r.worker_id)?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(r.wait_ms).min(MAX_POLL_WAIT);
        loop {
            // Subscribe before looking, so a change between the look and the wait is not missed.
            let mut changed = self.0.changed.subscribe();
            let assigned = self.0.core().poll(&id, r.free_slots, now());
            match assigned {
                None => {
                    return Ok(Response::new(pb::PollResponse { tasks: Vec::new(), reregister: true }));
                }
                Some(tasks) if !tasks.is_empty() => {
                    self.0.bump();
                    return Ok(Response::new(pb::PollResponse { tasks, reregister: false }));
                }
                Some(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Response::new(pb::PollResponse { tasks: Vec::new(), reregister: false }));
            }
            // Some work becomes runnable by time alone (a straggler crossing the backup
            // threshold), so look again now and then even without a change.
            let recheck = (tokio::time::Instant::now() + RECHECK).min(deadline);
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(recheck) => {}
            }
        }
    }

    async fn commit(&self, req: Request<pb::CommitRequest>) -> Result<Response<pb::CommitResponse>, Status> {
        let r = req.into_inner();
        let id = worker_id(&r.worker_id)?;
        let attempt = AttemptId::try_from(r.attempt.as_ref())?;
        let granted = self.0.core().commit(&id, &attempt);
        let refused = |why: String| {
            info!(attempt = %attempt, why, "commit refused");
            Ok(Response::new(pb::CommitResponse { granted: false, reason: why }))
        };
        let promotion = match granted {
            Ok(p) => p,
            Err(why) => return refused(why.to_string()),
        };
        // One atomic rename inside the output's store (a server-side copy on S3).
        match promote(&promotion).await {
            Ok(()) => Ok(Response::new(pb::CommitResponse { granted: true, reason: String::new() })),
            Err(e) => refused(format!("moving {} into place: {e}", promotion.temp)),
        }
    }

    async fn report(&self, req: Request<pb::OutcomeReport>) -> Result<Response<pb::OutcomeResponse>, Status> {
        let r = req.into_inner();
        let id = worker_id(&r.worker_id)?;
        let attempt = AttemptId::try_from(r.attempt.as_ref())?;
        let outcome = outcome_from_pb(r.outcome.ok_or_else(|| Status::invalid_argument("missing outcome"))?);
        let (result, actions) = self.0.core().report(&id, &attempt, outcome, now());
        self.0.perform(actions);
        self.0.bump();
        Ok(Response::new(match result {
            Ok(()) => pb::OutcomeResponse { accepted: true, reason: String::new() },
            Err(why) => {
                info!(attempt = %attempt, why, "outcome rejected");
                pb::OutcomeResponse { accepted: false, reason: why.to_string() }
            }
        }))
    }
}

/// Most bytes a side data object may have: it is shipped to every worker and held in memory.
pub const MAX_SIDE_BYTES: u64 = 64 * 1024 * 1024;

/// Checks that side data object `url` exists and is small.
async fn check_side(name: &str, url: &str) -> Result<(), Status> {
    let u = StoreUrl::parse(url).map_err(|e| Status::invalid_argument(format!("side data {name:?}: {e}")))?;
    let store = u.store().map_err(|e| Status::invalid_argument(e.to_string()))?;
    match store.head(&u.path()).await {
        Ok(meta) if meta.size <= MAX_SIDE_BYTES => Ok(()),
        Ok(meta) => Err(Status::invalid_argument(format!(
            "side data {name:?} ({url}) has {} bytes; at most {MAX_SIDE_BYTES} are allowed",
            meta.size
        ))),
        Err(object_store::Error::NotFound { .. }) => {
            Err(Status::not_found(format!("side data {name:?}: {url} not found")))
        }
        Err(e) => Err(Status::unavailable(format!("side data {name:?}: {e}"))),
    }
}

/// Moves a committed attempt's output into place.
async fn promote(p: &Promotion) -> Result<(), quern_api::StoreError> {
    let store = p.part.store()?;
    store
        .rename(&p.temp.path(), &p.part.path())
        .await
        .map_err(|e| quern_api::StoreError::from_store(p.temp.as_str(), e))
}

/// Checks every call: only the leader answers, only on connections the [`PeerRules`] allow
/// (TLS, a client certificate), and only to callers with the shared token.
#[derive(Clone)]
pub struct Auth {
    expected: Option<Arc<str>>,
    leader: Arc<LeaderClock>,
    peer: PeerRules,
}

impl Auth {
    /// Requires `Bearer TOKEN` when a token is set, and a valid lease.
    pub fn new(token: Option<String>, leader: Arc<LeaderClock>) -> Self {
        Auth { expected: token.map(|t| Arc::from(format!("Bearer {t}"))), leader, peer: PeerRules::default() }
    }

    /// Also requires what `rules` say of the connection.
    pub fn requiring(mut self, rules: PeerRules) -> Self {
        self.peer = rules;
        self
    }
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(refusal) = self.peer.refusal(req.extensions().get::<Peer>()) {
            return Err(Status::unauthenticated(refusal));
        }
        if !self.leader.valid(Instant::now()) {
            return Err(Status::unavailable("this coordinator is a standby (not holding the lease)"));
        }
        let Some(expected) = &self.expected else {
            return Ok(req);
        };
        let given = req.metadata().get(quern_api::client::TOKEN_HEADER).and_then(|v| v.to_str().ok());
        if given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes())) {
            Ok(req)
        } else {
            Err(Status::unauthenticated("missing or wrong token (see --token-file)"))
        }
    }
}

/// Compares secrets in time that depends on their lengths only, not on where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
