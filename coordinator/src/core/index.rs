//! The jobs, and an index of the running ones that a poll reads instead of passing over
//! every job: per job name, the jobs with runnable tasks in policy order, the jobs whose
//! backups may be due in policy order, the running jobs and their runnable tasks; and the
//! jobs whose backups are not due yet by when they may be. A pipeline's running stages may
//! run different job names: the job is then indexed under each, with what its stages of that
//! name have runnable.
//!
//! Every change to a job goes through [`JobMut`], which notes the job as stale when it is
//! dropped; [`Jobs::refresh`] re-reads the stale jobs (O(log n) each: a job's place is read
//! from counts it keeps) before the index is used. So the index can never miss a change.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound::{Excluded, Unbounded};
use std::ops::{Deref, DerefMut};
use std::time::Instant;

use quern_api::JobId;

use crate::job::{Job, Speculation};
use crate::policy::{OrderKey, Policy};

/// A job's place in a policy's order, with its id: no two are equal.
pub(super) type Place = (OrderKey, JobId);

/// All jobs, by id, and the index of the running ones.
#[derive(Debug, Default)]
pub(super) struct Jobs {
    all: BTreeMap<JobId, Job>,
    /// Jobs changed since the index last caught up (a job at most once: see `Job::mark_stale`).
    stale: Vec<JobId>,
    index: Index,
}

/// A job borrowed for a change: the index looks at it again before its next use.
pub(super) struct JobMut<'a> {
    job: &'a mut Job,
    stale: &'a mut Vec<JobId>,
}

impl Deref for JobMut<'_> {
    type Target = Job;
    fn deref(&self) -> &Job {
        self.job
    }
}

impl DerefMut for JobMut<'_> {
    fn deref_mut(&mut self) -> &mut Job {
        self.job
    }
}

impl Drop for JobMut<'_> {
    fn drop(&mut self) {
        if self.job.mark_stale() {
            self.stale.push(self.job.id().clone());
        }
    }
}

impl Jobs {
    /// A job.
    pub(super) fn get(&self, id: &JobId) -> Option<&Job> {
        self.all.get(id)
    }

    /// A job, to change.
    pub(super) fn get_mut(&mut self, id: &JobId) -> Option<JobMut<'_>> {
        let job = self.all.get_mut(id)?;
        Some(JobMut { job, stale: &mut self.stale })
    }

    /// Whether job `id` is here.
    pub(super) fn contains_key(&self, id: &JobId) -> bool {
        self.all.contains_key(id)
    }

    /// Adds (or replaces) a job.
    pub(super) fn insert(&mut self, id: JobId, job: Job) {
        self.all.insert(id.clone(), job);
        self.get_mut(&id);
    }

    /// Removes a job (the index forgets it at the next refresh).
    pub(super) fn remove(&mut self, id: &JobId) -> Option<Job> {
        let job = self.all.remove(id)?;
        self.stale.push(id.clone());
        Some(job)
    }

    /// All jobs, by id.
    pub(super) fn values(&self) -> impl Iterator<Item = &Job> {
        self.all.values()
    }

    /// All job ids, in order.
    pub(super) fn ids(&self) -> Vec<JobId> {
        self.all.keys().cloned().collect()
    }

    /// Brings the index up to date with every job changed since the last call.
    pub(super) fn refresh(&mut self, policy: &dyn Policy, spec: Option<&Speculation>) {
        for id in std::mem::take(&mut self.stale) {
            match self.all.get_mut(&id) {
                Some(job) => {
                    job.mark_indexed();
                    self.index.update(&id, Some(job), policy, spec);
                }
                None => self.index.update(&id, None, policy, spec),
            }
        }
    }

    /// The index (call [`Jobs::refresh`] first).
    pub(super) fn index(&mut self) -> &mut Index {
        &mut self.index
    }
}

/// What the index holds about one running job: its place in the policy's order, and per
/// job name its running stages run (a pipeline's stages may run different jobs), what they
/// have runnable and when their backups may be due.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    key: OrderKey,
    names: Vec<Part>,
}

/// The running stages of one job that run one job name.
#[derive(Clone, Debug, PartialEq)]
struct Part {
    name: String,
    runnable: usize,
    /// When backups may be due (these stages are in their tail), see
    /// [`crate::job::StageRun::backup_due`].
    due: Option<Instant>,
}

impl Entry {
    /// What the index holds about running job `j`.
    fn of(j: &Job, policy: &dyn Policy, spec: Option<&Speculation>) -> Self {
        let mut names: Vec<Part> = Vec::new();
        for run in j.runs() {
            let name = &run.spec().name;
            let due = spec.and_then(|s| run.backup_due(s));
            match names.iter_mut().find(|p| p.name == *name) {
                Some(p) => {
                    p.runnable += run.runnable();
                    p.due = match (p.due, due) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                None => names.push(Part { name: name.clone(), runnable: run.runnable(), due }),
            }
        }
        // Backups are looked for once nothing of the name is runnable; before, a poll
        // visits the job for its pending tasks (and then looks for backups too).
        for p in &mut names {
            if p.runnable > 0 {
                p.due = None;
            }
        }
        Entry { key: policy.key(j), names }
    }
}

/// The running jobs of one name.
#[derive(Debug, Default)]
pub(super) struct Named {
    /// Their ids.
    pub(super) running: BTreeSet<JobId>,
    /// Their runnable tasks, in all.
    pub(super) runnable: usize,
    /// Those with runnable tasks.
    pending: BTreeSet<Place>,
    /// Those whose backups may be due now.
    ready: BTreeSet<Place>,
}

/// The index of running jobs (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Index {
    entries: HashMap<JobId, Entry>,
    names: HashMap<String, Named>,
    /// Jobs in their tail whose backups are not due yet, by when they may be, with the job
    /// name whose stages they are for.
    waiting: BTreeSet<(Instant, JobId, String)>,
    /// Jobs (and names) moved from `waiting` to their name's `ready` set.
    promoted: HashSet<(JobId, String)>,
}

impl Index {
    /// Re-reads job `id` (None: it is gone).
    fn update(&mut self, id: &JobId, job: Option<&Job>, policy: &dyn Policy, spec: Option<&Speculation>) {
        let Some(j) = job.filter(|j| j.is_running()) else {
            if let Some(old) = self.entries.remove(id) {
                self.unlink(id, old);
            }
            return;
        };
        let new = Entry::of(j, policy, spec);
        let Some(old) = self.entries.remove(id) else {
            self.link(id, &new);
            self.entries.insert(id.clone(), new);
            return;
        };
        if old == new {
            self.entries.insert(id.clone(), old);
            return;
        }
        if old.names.iter().map(|p| &p.name).eq(new.names.iter().map(|p| &p.name)) {
            // The same names: their running sets stay; the rest moves.
            self.unplace(id, &old);
            self.place(id, &new);
        } else {
            self.unlink(id, old);
            self.link(id, &new);
        }
        self.entries.insert(id.clone(), new);
    }

    /// Removes a job from every set but its names' running sets.
    fn unplace(&mut self, id: &JobId, old: &Entry) {
        let place = (old.key, id.clone());
        for p in &old.names {
            if let Some(due) = p.due
                && !self.waiting.remove(&(due, id.clone(), p.name.clone()))
            {
                self.promoted.remove(&(id.clone(), p.name.clone()));
            }
            let Some(named) = self.names.get_mut(&p.name) else { continue };
            named.runnable -= p.runnable;
            if p.runnable > 0 {
                named.pending.remove(&place);
            }
            named.ready.remove(&place);
        }
    }

    /// Adds a job to every set but its names' running sets.
    fn place(&mut self, id: &JobId, new: &Entry) {
        for p in &new.names {
            let named = self.names.entry(p.name.clone()).or_default();
            named.runnable += p.runnable;
            if p.runnable > 0 {
                named.pending.insert((new.key, id.clone()));
            }
            if let Some(due) = p.due {
                self.waiting.insert((due, id.clone(), p.name.clone()));
            }
        }
    }

    /// Adds a job to the index.
    fn link(&mut self, id: &JobId, new: &Entry) {
        for p in &new.names {
            self.names.entry(p.name.clone()).or_default().running.insert(id.clone());
        }
        self.place(id, new);
    }

    /// Removes a job from the index.
    fn unlink(&mut self, id: &JobId, old: Entry) {
        self.unplace(id, &old);
        for p in &old.names {
            let Some(named) = self.names.get_mut(&p.name) else { continue };
            named.running.remove(id);
            if named.running.is_empty() {
                self.names.remove(&p.name);
            }
        }
    }

    /// Moves the jobs whose backups may be due at `now` to the ready sets.
    pub(super) fn promote(&mut self, now: Instant) {
        while let Some((due, _, _)) = self.waiting.first()
            && *due < now
        {
            let Some((_, id, name)) = self.waiting.pop_first() else { break };
            let Some(e) = self.entries.get(&id) else { continue };
            if let Some(named) = self.names.get_mut(&name) {
                named.ready.insert((e.key, id.clone()));
            }
            self.promoted.insert((id, name));
        }
    }

    /// The running jobs of each name.
    pub(super) fn names(&self) -> &HashMap<String, Named> {
        &self.names
    }

    /// The first job after `after` (or the first) with runnable tasks among the jobs named
    /// one of `names`, in policy order.
    pub(super) fn next_pending(&self, names: &[String], after: Option<&Place>) -> Option<Place> {
        self.next_in(names, after, |n| &n.pending)
    }

    /// The first job after `after` (or the first) whose backups may be due among the jobs
    /// named one of `names`, in policy order (call [`Index::promote`] first).
    pub(super) fn next_ready(&self, names: &[String], after: Option<&Place>) -> Option<Place> {
        self.next_in(names, after, |n| &n.ready)
    }

    fn next_in(
        &self,
        names: &[String],
        after: Option<&Place>,
        set: impl Fn(&Named) -> &BTreeSet<Place>,
    ) -> Option<Place> {
        names
            .iter()
            .filter_map(|n| self.names.get(n))
            .filter_map(|n| match after {
                Some(a) => set(n).range((Excluded(a), Unbounded)).next(),
                None => set(n).first(),
            })
            .min()
            .cloned()
    }
}
