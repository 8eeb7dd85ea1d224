//! The gRPC shell around [`crate::core::Core`]: handlers decode, call one pure transition
//! under the lock, perform the resulting [`Action`]s, and encode. No policy lives here.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::Stream;
use quern_api::listing::{ListError, list_inputs, split_inputs};
use quern_api::{AttemptId, JobId, WorkerId, now_ms, pb};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::admit::Admission;
use crate::convert::{Registration, Submission, limits};
use crate::core::{Conflict, Core, Now};
use crate::inputs::{InputError, check_output_empty, delete_object};
use crate::journal::Journal;
use crate::lease::LeaderClock;
use crate::net::{Peer, PeerRules};
use crate::status::{job_status, worker_info};
/// Longest a poll may be held open.
const MAX_POLL_WAIT: Duration = Duration::from_secs(30);
/// How long a submit waits for its journal record to be written.
const JOURNAL_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting poll looks again without being woken.
const RECHECK: Duration = Duration::from_millis(250);
/// A watch stream repeats an unchanged status this often (clients treat a much longer
/// silence as a lost coordinator).
const WATCH_REPEAT: Duration = Duration::from_secs(10);

/// State shared by all handlers.
pub struct Shared {
    core: Mutex<Core>,
    changed: watch::Sender<u64>,
    journal: std::sync::OnceLock<Journal>,
    shell: Shell,
    pub(crate) uploads: crate::commit::Uploads,
    /// The I/O tasks performing actions (and the store sweep), waited for at shutdown.
    pub in_flight: crate::perform::InFlight,
    /// This coordinator's address, for Ping.
    pub url: String,
}

/// How the shell around the core behaves.
#[derive(Debug)]
pub struct Shell {
    /// How often workers heartbeat.
    pub heartbeat_interval: Duration,
    /// Cancelled when this coordinator stops serving: streams and long polls end then, so
    /// no client waits on a coordinator that no longer acts.
    pub stop: tokio_util::sync::CancellationToken,
    /// What every submission must pass.
    pub admission: Admission,
    /// Test hook: no reduce task is handed out while this file exists.
    pub hold_reduces_while: Option<std::path::PathBuf>,
    /// Bytes per part of the multipart uploads parts are written as (stores without rename).
    pub upload_part_size: u64,
    /// Whether the store's create-only writes are atomic under racing writers (the lease
    /// and journal rely on it for standbys).
    pub conditional_writes: bool,
    /// A journal snapshot once this many records were written since the last (0: never).
    pub journal_snapshot_every: u64,
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

/// The moment, on both clocks, by which attempts' times are shown on the wall clock: read
/// once, so a finished attempt's times are the same in every answer (two fresh readings
/// round a millisecond apart).
pub fn anchor() -> Now {
    static ANCHOR: std::sync::LazyLock<Now> = std::sync::LazyLock::new(now);
    *ANCHOR
}

impl Shared {
    /// Wraps a core; decisions go to `journal` when there is one.
    pub fn new(core: Core, shell: Shell, url: String) -> Arc<Self> {
        Arc::new(Shared {
            core: Mutex::new(core),
            changed: watch::Sender::new(0),
            journal: std::sync::OnceLock::new(),
            uploads: crate::commit::Uploads::new(shell.upload_part_size),
            in_flight: crate::perform::InFlight::default(),
            shell,
            url,
        })
    }

    /// Whether the store's create-only writes are atomic (see [`Shell::conditional_writes`]).
    pub fn conditional_writes(&self) -> bool {
        self.shell.conditional_writes
    }

    /// Why the journal stopped being written, if it has.
    pub fn journal_failure(&self) -> Option<crate::journal::JournalFailure> {
        self.journal.get().and_then(Journal::failure)
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

    /// How many journal records between snapshots (0: no snapshots).
    pub fn snapshot_every(&self) -> u64 {
        self.shell.journal_snapshot_every
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

    /// Declares silent workers lost, fails stalled attempts and unrunnable jobs, and
    /// preempts for starved jobs, every fraction of the heartbeat timeout, until `stop`.
    pub async fn run_ticker(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let every =
            (self.core().config().heartbeat_timeout / 5).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let mut tick = tokio::time::interval(every);
        // Jobs age out of the history whether or not others end.
        let mut history = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = history.tick() => {
                    self.forget_old();
                    continue;
                }
                _ = stop.cancelled() => return,
            }
            let (lost, actions) = {
                let mut core = self.core();
                let now = now();
                let lost = core.tick(now);
                let mut actions = core.fail_unrunnable(now);
                actions.extend(core.fail_stalled(now));
                // Attempts taken back are cancelled at their workers' next heartbeats.
                let preempted = core.preempt(now) > 0;
                (lost || preempted, actions)
            };
            if lost || !actions.is_empty() {
                self.perform(actions);
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
        InputError::List(ListError::NotFound(_) | ListError::Empty(_)) => Status::not_found(e.to_string()),
        InputError::OutputExists { .. } => Status::already_exists(e.to_string()),
        // The store's answer (no such bucket, access denied, unreachable) is the user's to
        // act on, not a sign that the coordinator is unavailable.
        InputError::Store(_) | InputError::List(ListError::Store(_)) => {
            Status::failed_precondition(format!("store error: {e}"))
        }
        InputError::List(_) => Status::invalid_argument(e.to_string()),
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
        let Submission { spec, maps } = Submission::try_from(spec)?;
        let admission = &self.0.shell.admission;
        admission.check_paths(&spec)?;
        if let Some(c) = self.0.core().conflicts(&spec) {
            return Err(conflict_status(c));
        }
        check_output_empty(&spec.output).await.map_err(input_status)?;
        admission.check_job(&spec).await?;
        let splits = if spec.generate_rows > 0 {
            // By default about a million records per map task.
            let maps = if maps > 0 {
                maps
            } else {
                spec.generate_rows.div_ceil(1_000_000).min(u64::from(limits::REDUCERS)) as u32
            };
            quern_api::split::generator_splits(spec.generate_rows, maps)
        } else {
            let objects = list_inputs(&spec.inputs).await.map_err(|e| input_status(e.into()))?;
            check_record_sizes(&objects, spec.formats.input)?;
            if let Some(why) = too_many_maps(&objects, spec.split_size) {
                return Err(Status::invalid_argument(why));
            }
            split_inputs(&objects, spec.split_size, spec.formats.input).await.map_err(|e| input_status(e.into()))?
        };
        let (id, later) = {
            let mut core = self.0.core();
            // Checked again under the lock: two submits may race for one output.
            if let Some(c) = core.conflicts(&spec) {
                return Err(conflict_status(c));
            }
            let id = core.submit(spec, splits, now_ms());
            // Pipeline stages that read only the job's input start beside the first.
            (id, core.take_actions())
        };
        self.0.perform(later);
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
            let mut last_sent = Instant::now();
            loop {
                let mut changed = shared.changed.subscribe();
                let status = shared.core().job(&id).map(job_status);
                let Some(status) = status else { return };
                let done = matches!(
                    pb::JobState::try_from(status.state),
                    Ok(pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Killed)
                );
                // Unchanged status is sent again now and then, so a client can tell a quiet
                // job from a coordinator that went silent.
                if last.as_ref() != Some(&status) || last_sent.elapsed() >= WATCH_REPEAT {
                    last = Some(status.clone());
                    last_sent = Instant::now();
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
                    _ = shared.shell.stop.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("the coordinator stopped"))).await;
                        return;
                    }
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
            if *job.state() == crate::job::JobState::Committing {
                return Err(Status::failed_precondition(format!(
                    "job {id} has committed every part and is writing _SUCCESS; it can no longer be killed"
                )));
            }
            if job.state().is_final() {
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
        let rec = crate::history::record(&self.0, &id).await?.ok_or_else(|| not_found(&id))?;
        Ok(Response::new(pb::ListTasksResponse { tasks: rec.tasks }))
    }

    async fn task_logs(&self, req: Request<pb::TaskLogsRequest>) -> Result<Response<pb::TaskLogsResponse>, Status> {
        Ok(Response::new(crate::history::task_logs(&self.0, req.into_inner()).await?))
    }
}

/// The worker-facing service.
#[derive(Clone)]
pub struct WorkerSvc(pub Arc<Shared>);

impl WorkerSvc {
    /// Refuses a call that names a registered worker without that worker's secret: the id is
    /// public (`quern workers`), the secret only the worker has.
    fn speaks_for(&self, id: &WorkerId, secret: &str) -> Result<(), Status> {
        if self.0.core().speaks_for(id, secret) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!("not worker {id}: its secret is missing or wrong")))
        }
    }
}

/// A fresh worker secret: 128 random bits in hex.
fn new_secret() -> String {
    let bits: u128 = rand::random();
    format!("{bits:032x}")
}

#[tonic::async_trait]
impl pb::worker_service_server::WorkerService for WorkerSvc {
    async fn ping(&self, _req: Request<pb::PingRequest>) -> Result<Response<pb::PingResponse>, Status> {
        Ok(Response::new(pb::PingResponse { coordinator: self.0.url.clone() }))
    }

    async fn register(&self, req: Request<pb::RegisterRequest>) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = Registration::try_from(req.into_inner())?;
        let (host, slots) = (r.host.clone(), r.slots);
        let secret = new_secret();
        let (id, store) = {
            let mut core = self.0.core();
            let id = core.register_with(r, secret.clone(), now());
            (id, core.config().store.to_string())
        };
        info!(worker = %id, %host, slots, "worker registered");
        self.0.bump();
        Ok(Response::new(pb::RegisterResponse {
            worker_id: id.to_string(),
            heartbeat_interval_ms: self.0.shell.heartbeat_interval.as_millis() as u64,
            worker_secret: secret,
            store,
        }))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = req.into_inner();
        let id = worker_id(&r.worker_id)?;
        self.speaks_for(&id, &r.worker_secret)?;
        let cached = crate::convert::cached_ranges(r.cached);
        let listed = crate::convert::running(&r.running)?;
        let progress = crate::convert::progress(&r.progress)?;
        let (cancel, actions) = {
            let mut core = self.0.core();
            let now = now();
            let cancel = core.heartbeat(&id, now);
            let mut actions = Vec::new();
            if cancel.is_some() {
                core.set_cached(&id, cached);
                core.progressed(&id, &progress, now);
                actions = core.dropped_attempts(&id, &listed, now);
            }
            (cancel, actions)
        };
        if !actions.is_empty() {
            self.0.perform(actions);
            self.0.bump();
        }
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
        self.speaks_for(&id, &r.worker_secret)?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(r.wait_ms).min(MAX_POLL_WAIT);
        loop {
            // Subscribe before looking, so a change between the look and the wait is not missed.
            let mut changed = self.0.changed.subscribe();
            let hold = self.0.shell.hold_reduces_while.as_ref().is_some_and(|p| p.exists());
            let (assigned, later) = {
                let mut core = self.0.core();
                core.set_hold_reduces(hold);
                let assigned = core.poll(&id, r.free_slots, now());
                (assigned, core.take_actions())
            };
            if !later.is_empty() {
                self.0.perform(later);
                self.0.bump();
            }
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
                _ = self.0.shell.stop.cancelled() => return Err(Status::unavailable("the coordinator stopped")),
            }
        }
    }

    async fn commit(&self, req: Request<pb::CommitRequest>) -> Result<Response<pb::CommitResponse>, Status> {
        let r = req.into_inner();
        let id = worker_id(&r.worker_id)?;
        self.speaks_for(&id, &r.worker_secret)?;
        let attempt = AttemptId::try_from(r.attempt.as_ref())?;
        if r.upload_parts.len() > crate::commit::MAX_PARTS || r.upload_parts.iter().any(|p| p.len() > limits::NAME) {
            return Err(Status::invalid_argument("too many or too long upload part ids"));
        }
        let granted = self.0.core().commit(&id, &attempt);
        let refused = |why: String| {
            info!(attempt = %attempt, why, "commit refused");
            Ok(Response::new(pb::CommitResponse { granted: false, reason: why }))
        };
        let promotion = match granted {
            Ok(p) => p,
            Err(why) => {
                // Whoever holds the commit, this attempt's upload will never be completed.
                self.0.uploads.abort(&attempt, &id).await;
                return refused(why.to_string());
            }
        };
        // The store work runs in a task of its own: a caller that hangs up must not cancel it
        // halfway (an upload completed but the job's end not checked, the task's commit never
        // released).
        let work = tokio::spawn({
            let (shared, attempt) = (self.0.clone(), attempt.clone());
            async move {
                // One atomic step inside the output's store: completing the attempt's upload, or
                // renaming its temporary object where the store renames.
                let made_visible = if shared.uploads.is_open(&attempt) || !r.upload_parts.is_empty() {
                    shared.uploads.complete(&attempt, &promotion, r.upload_parts).await
                } else {
                    crate::commit::promote(&promotion).await.map_err(Into::into)
                };
                let running = {
                    let mut core = shared.core();
                    core.commit_done(&attempt);
                    core.job(&attempt.task.job).is_some_and(|j| j.is_running())
                };
                shared.bump();
                match made_visible {
                    // The part became visible outside the lock: a job killed or failed meanwhile
                    // has already deleted its parts, so this late one goes too.
                    Ok(()) if !running => {
                        if let Err(e) = delete_object(&promotion.part).await {
                            warn!(attempt = %attempt, error = %e, "could not delete a part committed after its job ended");
                        }
                        Err("the job ended while the part was being committed".to_string())
                    }
                    Ok(()) => Ok(()),
                    Err(e) => Err(format!("committing {}: {e}", promotion.part)),
                }
            }
        });
        match work.await {
            Ok(Ok(())) => Ok(Response::new(pb::CommitResponse { granted: true, reason: String::new() })),
            Ok(Err(why)) => refused(why),
            Err(e) => Err(Status::internal(format!("the commit failed: {e}"))),
        }
    }

    async fn start_part(&self, req: Request<pb::StartPartRequest>) -> Result<Response<pb::StartPartResponse>, Status> {
        let r = req.into_inner();
        let id = worker_id(&r.worker_id)?;
        self.speaks_for(&id, &r.worker_secret)?;
        let attempt = AttemptId::try_from(r.attempt.as_ref())?;
        let at = self.0.core().start_part(&id, &attempt).map_err(Status::failed_precondition)?;
        // In a task of its own, like a commit: an upload created must get its note and its
        // entry whether or not the caller waits for the answer.
        let shared = self.0.clone();
        let started = tokio::spawn(async move {
            let up = shared.uploads.start(&attempt, &id, at).await?;
            // The job may have ended (and its cleanup aborted its uploads) meanwhile.
            if up.is_some() && !shared.core().job(&attempt.task.job).is_some_and(|j| j.is_running()) {
                shared.uploads.abort(&attempt, &id).await;
                return Err(crate::commit::CommitError::Upload("the job ended"));
            }
            Ok(up)
        });
        let started = started.await.map_err(|e| Status::internal(format!("starting an upload failed: {e}")))?;
        match started {
            Ok(Some(up)) => Ok(Response::new(pb::StartPartResponse {
                part_url: up.part.to_string(),
                upload_id: up.id,
                part_size: self.0.uploads.part_size,
            })),
            Ok(None) => Err(Status::failed_precondition("this output's store renames: write the temporary object")),
            Err(e @ crate::commit::CommitError::Upload(_)) => Err(Status::failed_precondition(e.to_string())),
            Err(e) => Err(Status::unavailable(format!("starting an upload: {e}"))),
        }
    }

    async fn report(&self, req: Request<pb::OutcomeReport>) -> Result<Response<pb::OutcomeResponse>, Status> {
        let mut r = req.into_inner();
        let id = worker_id(&r.worker_id)?;
        self.speaks_for(&id, &r.worker_secret)?;
        let lines = crate::convert::log_tail(&mut r);
        let (attempt, outcome) = crate::convert::report(r)?;
        let (result, actions) = {
            let mut core = self.0.core();
            let (result, actions) = core.report(&id, &attempt, outcome, now());
            // Only a failure the core took: a stale report's lines are not the attempt's.
            if result.is_ok() && !lines.is_empty() {
                core.keep_log(&attempt, lines);
            }
            (result, actions)
        };
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

/// Why `objects` cut at `split_size` would make too many map tasks, if they would. Counted
/// before the splits are made: `--split-size 1` over a large input would otherwise allocate
/// a split per byte.
pub(crate) fn too_many_maps(objects: &[quern_api::split::InputObject], split_size: u64) -> Option<String> {
    // Fixed-length records may add a split per object where a record straddles a cut.
    let at_most: u64 = objects.iter().map(|o| o.size.div_ceil(split_size.max(1)).max(1).saturating_mul(2)).sum();
    (at_most / 2 > u64::from(limits::MAPS)).then(|| {
        format!(
            "the input would make up to {} map tasks; at most {} are allowed (raise --split-size)",
            at_most / 2,
            limits::MAPS
        )
    })
}

fn conflict_status(c: Conflict) -> Status {
    match c {
        Conflict::OutputInUse { .. } => Status::already_exists(c.to_string()),
        Conflict::InputBeingWritten { .. } => Status::failed_precondition(c.to_string()),
        Conflict::TooManyJobs(_) => Status::resource_exhausted(c.to_string()),
    }
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
