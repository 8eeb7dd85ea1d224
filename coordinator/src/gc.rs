//! Finding and deleting what jobs leave in the store, shared by the sweep a coordinator runs
//! when it takes the lead ([`sweep`]) and by `quern gc` ([`survey`], then [`delete_job_dir`]).
//!
//! A job keeps data in two places outside its output: its scratch directory `STORE/jobs/ID/`
//! (map outputs, pipeline stages, notes of the multipart uploads started for its parts) and
//! `OUTPUT/_temporary/ID/` (part attempts on stores that rename). The job's own cleanup
//! deletes both once its end is durable; a crash between its end and the cleanup, or a
//! zombie attempt writing afterwards, leaves them behind. What goes:
//!
//! | the journal says the job | its scratch directory | `OUTPUT/_temporary/ID/` |
//! |---|---|---|
//! | is running (or committing) | kept, always | kept |
//! | ended | deleted | deleted |
//! | ended, data deleted (`JobCleaned`) | deleted if something wrote since | not looked for |
//! | is unknown | deleted if no coordinator can know the job (below) | unknown output |
//!
//! Uploads noted in a directory are aborted before it is deleted ([`delete_job_dir`]).
//!
//! **Unknown ids.** A coordinator inserts a job into its state and may hand out its tasks
//! before the job's submission record is durable, so for a moment a job's scratch data can
//! exist with no record of it. The sweep runs in the leader itself and asks its live state,
//! which knows every job of this coordinator, right before deleting. `quern gc` may run next
//! to a live coordinator: it lists the store first, reads the journal afterwards, and
//! deletes an unknown job's directory only if its newest object is older than a minimum age
//! (`--min-age`, 1 h by default). A submission record is durable within a few seconds of
//! its job's first data or never (the journal writer gives up, and its coordinator stops,
//! after twice the lease, at least 5 s), so a directory that old whose job the journal does
//! not know belongs to no job anyone will ever know.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use quern_api::{JobId, StoreError, StoreUrl, now_ms};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::commit::{Upload, abort_noted};
use crate::core::Core;
use crate::inputs::{delete_prefix_except, remove_empty_local_dirs};
use crate::job::temporary_dir;
use crate::journal::{self, Record};
use crate::service::Shared;

/// The longest a sweep runs; what it has not reached by then waits for the next one.
pub const SWEEP_LIMIT: Duration = Duration::from_secs(600);

/// Why job data was not (entirely) deleted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GcError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The journal could not be read: without it nothing is known to be safe to delete.
    #[error("cannot read the journal: {0}")]
    Journal(#[from] journal::JournalError),
    /// Some noted uploads could not be aborted: their notes stay, for a later try.
    #[error("{left} upload(s) noted under {dir} could not be aborted; their notes stay for a later sweep")]
    UploadsLeft {
        /// The job directory.
        dir: String,
        /// How many notes stay.
        left: usize,
    },
}

/// Where a job is, as far as its data goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Running or committing: its data is in use.
    Running,
    /// Ended; its data may be left over.
    Ended,
    /// Ended, and its data was deleted.
    Cleaned,
}

/// What the journal (or the live state) says of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// Where it is.
    pub phase: Phase,
    /// The output the user asked for (its `_temporary/ID/` may hold attempts' parts).
    pub output: StoreUrl,
}

/// The jobs a journal knows, by id.
pub fn known_from_journal(records: &[Record]) -> BTreeMap<JobId, Known> {
    let mut known = BTreeMap::new();
    for r in records {
        match r {
            Record::JobSubmitted { id, spec, .. } => {
                known.insert(id.clone(), Known { phase: Phase::Running, output: spec.output.clone() });
            }
            Record::JobEnded { job, .. } => set_phase(&mut known, job, Phase::Ended),
            Record::JobCleaned { job } => set_phase(&mut known, job, Phase::Cleaned),
            // Its data was deleted before it was forgotten; whatever a zombie wrote since
            // is an unknown job's.
            Record::JobForgotten { job } => {
                known.remove(job);
            }
            _ => {}
        }
    }
    known
}

fn set_phase(known: &mut BTreeMap<JobId, Known>, job: &JobId, phase: Phase) {
    if let Some(k) = known.get_mut(job) {
        k.phase = phase;
    }
}

/// The jobs a live coordinator knows, by id.
pub fn known_from_core(core: &Core) -> BTreeMap<JobId, Known> {
    core.jobs()
        .map(|j| {
            let phase = match (j.state().is_final(), j.is_cleaned()) {
                (false, _) => Phase::Running,
                (true, false) => Phase::Ended,
                (true, true) => Phase::Cleaned,
            };
            (j.id().clone(), Known { phase, output: j.user_output().clone() })
        })
        .collect()
}

/// Objects under a prefix, as listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extent {
    /// How many.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// When the newest was last written (ms since the epoch, by the store's clock).
    pub newest_ms: i64,
}

impl Extent {
    fn add(&mut self, meta: &object_store::ObjectMeta) {
        self.objects += 1;
        self.bytes += meta.size;
        self.newest_ms = self.newest_ms.max(meta.last_modified.timestamp_millis());
    }
}

/// The directories under `STORE/jobs/`, by name, in one listing.
pub async fn list_job_dirs(store: &StoreUrl) -> Result<BTreeMap<String, Extent>, StoreError> {
    let jobs = store.join("jobs/");
    let os = jobs.store()?;
    let root = jobs.path();
    let mut dirs: BTreeMap<String, Extent> = BTreeMap::new();
    let mut list = os.list(Some(&root));
    while let Some(meta) = list.next().await {
        let meta = meta.map_err(|e| StoreError::from_store(jobs.as_str(), e))?;
        let Some(mut parts) = meta.location.prefix_match(&root) else { continue };
        // An object right under jobs/ is no job's directory: left alone.
        if let (Some(name), Some(_)) = (parts.next(), parts.next()) {
            dirs.entry(name.as_ref().to_string()).or_default().add(&meta);
        }
    }
    Ok(dirs)
}

/// What is under one prefix.
pub async fn measure(dir: &StoreUrl) -> Result<Extent, StoreError> {
    let os = dir.store()?;
    let mut extent = Extent::default();
    let mut list = os.list(Some(&dir.path()));
    while let Some(meta) = list.next().await {
        extent.add(&meta.map_err(|e| StoreError::from_store(dir.as_str(), e))?);
    }
    Ok(extent)
}

/// Why a directory is left over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The scratch directory of a job that ended.
    Ended,
    /// The scratch directory of a job the journal does not know.
    Unknown,
    /// Attempts' parts under the output of a job that ended.
    Temporary,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Why::Ended => "scratch of an ended job",
            Why::Unknown => "scratch of a job the journal does not know",
            Why::Temporary => "temporary parts of an ended job",
        })
    }
}

/// A directory to delete.
#[derive(Clone, Debug)]
pub struct Leftover {
    /// The directory.
    pub dir: StoreUrl,
    /// Whose.
    pub job: JobId,
    /// Why it may go.
    pub why: Why,
    /// What it holds.
    pub extent: Extent,
    /// The open uploads noted in it, aborted before it is deleted.
    pub uploads: Vec<Upload>,
}

/// Why a directory under `jobs/` stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Its job is running.
    Running,
    /// Its job is unknown, but it was written too recently to be sure no coordinator knows it.
    TooRecent {
        /// The age of its newest object.
        age: Duration,
    },
    /// Its name is not a job id: not ours to judge.
    NotAJob,
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keep::Running => f.write_str("its job is running"),
            Keep::TooRecent { age } => write!(
                f,
                "unknown job, but its newest object is only {} old",
                humantime::format_duration(Duration::from_secs(age.as_secs()))
            ),
            Keep::NotAJob => f.write_str("not a job directory"),
        }
    }
}

/// What a survey found.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Directories to delete.
    pub delete: Vec<Leftover>,
    /// Directories under `jobs/` that stay, and why.
    pub keep: Vec<(StoreUrl, Extent, Keep)>,
    /// Ended jobs whose data was not known to be deleted: once every leftover of one is
    /// gone, it is.
    pub ended: Vec<JobId>,
}

/// Decides what of `dirs` (listed under `store`'s `jobs/`) and of the ended jobs' temporary
/// directories may go, given what is `known`; unknown jobs' directories go only when their
/// newest object is at least `min_age` old. Lists the temporaries and the uploads to abort.
pub async fn plan(
    store: &StoreUrl,
    dirs: BTreeMap<String, Extent>,
    known: &BTreeMap<JobId, Known>,
    min_age: Duration,
) -> Result<Plan, StoreError> {
    let mut plan = Plan::default();
    let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    for (name, extent) in dirs {
        let dir = store.join(&format!("jobs/{name}/"));
        let Ok(id) = JobId::parse(&name) else {
            plan.keep.push((dir, extent, Keep::NotAJob));
            continue;
        };
        let why = match known.get(&id).map(|k| k.phase) {
            Some(Phase::Running) => Err(Keep::Running),
            Some(Phase::Ended | Phase::Cleaned) => Ok(Why::Ended),
            None => {
                // A clock behind the store's makes the age negative: too recent.
                let age = Duration::from_millis(u64::try_from(now - extent.newest_ms).unwrap_or(0));
                if age >= min_age { Ok(Why::Unknown) } else { Err(Keep::TooRecent { age }) }
            }
        };
        match why {
            Ok(why) => {
                let uploads = abort_noted(&dir, true).await?;
                plan.delete.push(Leftover { dir, job: id, why, extent, uploads });
            }
            Err(keep) => plan.keep.push((dir, extent, keep)),
        }
    }
    for (id, k) in known.iter().filter(|(_, k)| k.phase == Phase::Ended) {
        let dir = temporary_dir(&k.output, id);
        let extent = measure(&dir).await?;
        if extent.objects > 0 {
            plan.delete.push(Leftover { dir, job: id.clone(), why: Why::Temporary, extent, uploads: Vec::new() });
        }
        plan.ended.push(id.clone());
    }
    Ok(plan)
}

/// What `quern gc` would delete in `store`: lists `jobs/`, then reads the journal (in that
/// order: see the module docs), and plans with `min_age` for unknown jobs.
pub async fn survey(store: &StoreUrl, min_age: Duration) -> Result<Plan, GcError> {
    let dirs = list_job_dirs(store).await?;
    let records = journal::read_all(store).await?.records;
    Ok(plan(store, dirs, &known_from_journal(&records), min_age).await?)
}

/// Deletes a job's directory (scratch `STORE/jobs/ID/` or temporary `OUTPUT/_temporary/ID/`)
/// with everything under it, aborting first the uploads noted in it: open uploads are
/// invisible but billed. The notes of uploads that could not be aborted stay, so that a
/// later sweep (or `quern gc`) tries again. Empty local directories left behind go too, up
/// to the directory that holds the job's (`jobs/`, `_temporary/`), which goes if empty.
pub async fn delete_job_dir(dir: &StoreUrl) -> Result<(), GcError> {
    let found = abort_noted(dir, false).await?;
    // Aborted notes are deleted; a note still there is an upload still open.
    let left = if found.is_empty() { 0 } else { abort_noted(dir, true).await?.len() };
    let notes = dir.join("uploads/");
    delete_prefix_except(dir, (left > 0).then_some(&notes)).await?;
    if left > 0 {
        return Err(GcError::UploadsLeft { dir: dir.to_string(), left });
    }
    if let Some(parent) = dir.parent_dir() {
        remove_empty_local_dirs(dir, &parent.parent_dir().unwrap_or(parent));
    }
    Ok(())
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Directories deleted.
    pub dirs: u64,
    /// Objects in them.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Uploads aborted.
    pub uploads: u64,
    /// Directories kept (running jobs, and any the sweep could not delete).
    pub kept: u64,
}

/// The sweep of a coordinator that has just taken the lead (in the background, once it
/// serves): deletes the leftovers of ended and unknown jobs, bounded by [`SWEEP_LIMIT`] and
/// stopped by `stop`, and logs what it did.
pub async fn sweep(shared: Arc<Shared>, stop: CancellationToken) {
    let started = Instant::now();
    let swept = tokio::select! {
        swept = tokio::time::timeout(SWEEP_LIMIT, sweep_inner(&shared, &stop)) => swept,
        // A sweep stopped midway is harmless: the next one does the rest.
        _ = stop.cancelled() => return,
    };
    let ms = started.elapsed().as_millis() as u64;
    match swept {
        Ok(Ok(s)) => {
            info!(
                dirs = s.dirs,
                objects = s.objects,
                bytes = s.bytes,
                uploads = s.uploads,
                kept = s.kept,
                ms,
                "swept the store"
            )
        }
        Ok(Err(e)) => warn!(error = %e, ms, "the store sweep stopped; the next one tries again"),
        Err(_) => warn!(ms, "the store sweep ran out of time; the next one does the rest"),
    }
}

async fn sweep_inner(shared: &Shared, stop: &CancellationToken) -> Result<Swept, GcError> {
    let store = shared.core().config().store.clone();
    let dirs = list_job_dirs(&store).await?;
    let known = known_from_core(&shared.core());
    // Jobs that ended since the takeover have their own cleanup under way; their data goes
    // only once their end is durable, here as there.
    if shared.durable().await.is_err() {
        warn!("the journal is not writable; the store sweep leaves everything in place");
        return Ok(Swept::default());
    }
    let plan = plan(&store, dirs, &known, Duration::ZERO).await?;
    let mut swept = Swept { kept: plan.keep.len() as u64, ..Swept::default() };
    // Jobs with a leftover not deleted: their data is not known to be gone.
    let mut unclean = BTreeSet::new();
    for item in &plan.delete {
        // A job submitted since the listing is in the live state (before any of its data
        // exists): an unknown directory of that name is its.
        let submitted_since = item.why == Why::Unknown && shared.core().job(&item.job).is_some();
        if stop.is_cancelled() || submitted_since {
            unclean.insert(item.job.clone());
            swept.kept += 1;
            continue;
        }
        match delete_job_dir(&item.dir).await {
            Ok(()) => {
                info!(dir = %item.dir, why = %item.why, objects = item.extent.objects, "deleted a leftover");
                swept.dirs += 1;
                swept.objects += item.extent.objects;
                swept.bytes += item.extent.bytes;
                swept.uploads += item.uploads.len() as u64;
            }
            Err(e) => {
                warn!(dir = %item.dir, error = %e, "could not delete a leftover");
                unclean.insert(item.job.clone());
                swept.kept += 1;
            }
        }
    }
    let mut core = shared.core();
    for id in plan.ended.iter().filter(|id| !unclean.contains(*id)) {
        core.cleaned(id);
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &std::path::Path, path: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"data").unwrap();
    }

    #[tokio::test]
    async fn running_jobs_are_kept_ended_ones_go_and_unknown_ones_only_when_old_enough() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let store = StoreUrl::from_user(&format!("{}/store/", root.display())).unwrap();
        let out = StoreUrl::from_user(&format!("{}/out", root.display())).unwrap();
        for path in [
            "store/jobs/job_1_0001/map-00000-e1-a1.arrows",
            "store/jobs/job_1_0002/map-00000-e1-a1.arrows",
            "store/jobs/job_1_0002/stage-0/part-00000",
            "store/jobs/job_1_0003/map-00000-e1-a1.arrows",
            "store/jobs/job_9_0001/map-00000-e1-a1.arrows",
            "store/jobs/stray-object",
            "out/_temporary/job_1_0002/part-00000-e1-a1",
            "out/_temporary/job_1_0003/part-00000-e1-a1",
        ] {
            write(root, path);
        }
        let k = |phase| Known { phase, output: out.clone() };
        let id = |s: &str| JobId::parse(s).unwrap();
        let known: BTreeMap<JobId, Known> = [
            (id("job_1_0001"), k(Phase::Running)),
            (id("job_1_0002"), k(Phase::Ended)),
            (id("job_1_0003"), k(Phase::Cleaned)),
        ]
        .into();
        let dirs = list_job_dirs(&store).await.unwrap();
        assert_eq!(dirs.keys().collect::<Vec<_>>(), ["job_1_0001", "job_1_0002", "job_1_0003", "job_9_0001"]);
        assert_eq!(dirs["job_1_0002"].objects, 2);
        assert_eq!(dirs["job_1_0002"].bytes, 8);

        // Everything was just written: the unknown job's directory is too recent for gc.
        let p = plan(&store, dirs.clone(), &known, Duration::from_secs(3600)).await.unwrap();
        let base = StoreUrl::from_user(&format!("{}/", root.display())).unwrap();
        let rel = |u: &StoreUrl| u.as_str().trim_start_matches(base.as_str()).to_string();
        let gone: Vec<(String, Why)> = p.delete.iter().map(|l| (rel(&l.dir), l.why)).collect();
        assert_eq!(
            gone,
            [
                ("store/jobs/job_1_0002/".to_string(), Why::Ended),
                ("store/jobs/job_1_0003/".to_string(), Why::Ended),
                // A cleaned job's temporary directory is not looked for again.
                ("out/_temporary/job_1_0002/".to_string(), Why::Temporary),
            ]
        );
        let kept: Vec<&Keep> = p.keep.iter().map(|(_, _, k)| k).collect();
        assert!(matches!(kept[..], [Keep::Running, Keep::TooRecent { .. }]), "{kept:?}");
        assert_eq!(p.ended, [id("job_1_0002")]);

        // Old enough (here: any age), the unknown job's directory goes too; deleting takes
        // exactly the planned directories.
        let p = plan(&store, dirs, &known, Duration::ZERO).await.unwrap();
        assert_eq!(p.delete.len(), 4);
        for item in &p.delete {
            delete_job_dir(&item.dir).await.unwrap();
        }
        let left = list_job_dirs(&store).await.unwrap();
        assert_eq!(left.keys().collect::<Vec<_>>(), ["job_1_0001"]);
        assert!(root.join("store/jobs/stray-object").exists());
        assert!(!root.join("out/_temporary/job_1_0002").exists());
        assert!(root.join("out/_temporary/job_1_0003/part-00000-e1-a1").exists());
    }
}
