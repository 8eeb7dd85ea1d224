//! Performing the core's [`Action`]s: the store I/O the state machine decided (writing
//! `_SUCCESS`, deleting a job's data, starting a pipeline's next stage), run in background
//! tasks that feed their results back into the core.
//!
//! Every such task runs on an [`InFlight`] tracker under a label saying what it does. A
//! coordinator that stops waits for them, bounded by [`DRAIN_LIMIT`] and still holding its
//! lease (see [`crate::leader`]), so a job's cleanup is not cut off by the process exiting
//! (`quern run` used to exit before its job's map outputs were deleted), and whatever it
//! gives up on is logged by label.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::{ObjectStoreExt, PutPayload};
use quern_api::listing::{list_inputs_allow_empty, split_inputs};
use quern_api::{InputFormat, JobId, StoreUrl, now_ms};
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::core::Action;
use crate::gc::delete_job_dir;
use crate::inputs::{delete_object, delete_prefix, remove_empty_local_dirs};
use crate::service::{Shared, too_many_maps};

/// How long a stopping coordinator waits for the I/O it already decided.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Background I/O tasks, tracked and labelled.
#[derive(Clone, Debug, Default)]
pub struct InFlight {
    tracker: TaskTracker,
    labels: Arc<Mutex<BTreeMap<u64, String>>>,
    next: Arc<AtomicU64>,
}

impl InFlight {
    /// Runs `work` in the background under `label`.
    pub fn spawn(&self, label: String, work: impl Future<Output = ()> + Send + 'static) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(n, label);
        let labels = self.labels.clone();
        self.tracker.spawn(async move {
            work.await;
            labels.lock().unwrap_or_else(|e| e.into_inner()).remove(&n);
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, String>> {
        self.labels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves once no task runs (tasks spawned meanwhile are waited for too).
    pub async fn idle(&self) {
        // `wait` resolves only on a closed tracker; closing it does not refuse new tasks.
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// What is still running, oldest first.
    pub fn running(&self) -> Vec<String> {
        self.lock().values().cloned().collect()
    }
}

/// What an action does, for logs.
fn label(action: &Action) -> String {
    match action {
        Action::WriteSuccess { job, .. } => format!("writing _SUCCESS of {job}"),
        Action::Cleanup { job, .. } => format!("cleaning up {job}"),
        Action::StartStage { job, stage, .. } => format!("starting stage {stage} of {job}"),
        Action::ClearStage { job, .. } => format!("clearing a finished stage of {job}"),
        Action::Delete(url) => format!("deleting {url}"),
    }
}

impl Shared {
    /// Performs actions in the background, feeding results back into the core.
    pub fn perform(self: &Arc<Self>, actions: Vec<Action>) {
        if actions.is_empty() {
            return;
        }
        let mut labels: Vec<String> = actions.iter().map(label).collect();
        labels.dedup();
        let me = self.clone();
        self.in_flight.spawn(labels.join(", "), async move {
            let mut queue = actions;
            while let Some(action) = queue.pop() {
                match action {
                    Action::WriteSuccess { job, output, temporary } => {
                        queue.extend(me.write_success(&job, &output, &temporary).await);
                    }
                    Action::Cleanup { job, dirs, objects } => {
                        me.cleanup(&job, &dirs, &objects).await;
                        me.forget_old();
                    }
                    Action::StartStage { job, stage, inputs, objects, split_size, input_format } => {
                        let next = NextStage { stage, split_size, input_format, inputs, objects };
                        queue.extend(me.start_stage(&job, next).await);
                    }
                    Action::ClearStage { job, output, temporary } => {
                        if let Err(e) = delete_prefix(&temporary).await {
                            warn!(job = %job, error = %e, "could not clear a finished stage's temporary directory");
                        }
                        remove_empty_local_dirs(&temporary, &output);
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

    /// Clears the job's temporary directory, writes `_SUCCESS`, and tells the core.
    async fn write_success(&self, job: &JobId, output: &StoreUrl, temporary: &StoreUrl) -> Vec<Action> {
        // The temporary directory goes first: after _SUCCESS the output holds the parts and
        // nothing else.
        let marker = output.join("_SUCCESS");
        let cleared = delete_prefix(temporary).await;
        remove_empty_local_dirs(temporary, output);
        let result = match (cleared, marker.store()) {
            (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
            (Ok(()), Ok(store)) => {
                store.put(&marker.path(), PutPayload::new()).await.map(|_| ()).map_err(|e| e.to_string())
            }
        };
        info!(job = %job, ok = result.is_ok(), "job committed");
        let more = self.core().finalized(job, result, now_ms());
        self.bump();
        more
    }

    /// Deletes an ended job's data: `objects` (parts of a job that did not succeed), then
    /// `dirs` (scratch and temporary), aborting the uploads noted there first.
    async fn cleanup(&self, job: &JobId, dirs: &[StoreUrl], objects: &[StoreUrl]) {
        // Deleted only once the job's end is durable: a restarted coordinator must never
        // resume a job whose parts are already gone.
        if self.durable().await.is_err() {
            warn!(job = %job, "the journal is not writable; leaving the job's data in place");
            return;
        }
        // Its attempts' history outlives its data (and the coordinator): see `history`.
        crate::history::archive_ended(self, job).await;
        for url in objects {
            if let Err(e) = delete_object(url).await {
                warn!(job = %job, error = %e, "could not delete a part of an unsuccessful job");
            }
        }
        self.uploads.forget_job(job);
        let mut clean = true;
        for dir in dirs {
            if let Err(e) = delete_job_dir(dir).await {
                warn!(job = %job, error = %e, "could not delete intermediate data; the next sweep tries again");
                clean = false;
            }
        }
        if clean {
            self.core().cleaned(job);
        }
    }

    /// Forgets the ended jobs past the history limits and deletes their archives.
    pub fn forget_old(self: &Arc<Self>) {
        let deletes = self.core().forget_old(now_ms());
        self.perform(deletes);
    }

    /// Lists what stage `next.stage` of pipeline `job` reads and starts it (or fails the job).
    async fn start_stage(&self, job: &JobId, next: NextStage) -> Vec<Action> {
        let listed = list_inputs_allow_empty(&next.inputs).await.map_err(|e| e.to_string()).map(|mut objects| {
            objects.extend(next.objects);
            objects.sort_by(|a, b| a.url.cmp(&b.url));
            objects.dedup();
            objects
        });
        let objects = listed.and_then(|objects| match too_many_maps(&objects, next.split_size) {
            Some(why) => Err(why),
            None => Ok(objects),
        });
        let split = match objects {
            Ok(objects) => split_inputs(&objects, next.split_size, next.input_format).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let more = match split {
            Ok(splits) => {
                info!(job = %job, stage = next.stage, maps = splits.len(), "pipeline stage starts");
                self.core().start_stage(job, next.stage, splits);
                Vec::new()
            }
            Err(e) => self.core().start_stage_failed(job, format!("starting stage {}: {e}", next.stage), now_ms()),
        };
        self.bump();
        more
    }
}

/// What [`Action::StartStage`] carries besides the job.
struct NextStage {
    stage: usize,
    split_size: u64,
    input_format: InputFormat,
    inputs: Vec<StoreUrl>,
    objects: Vec<quern_api::split::InputObject>,
}
