//! The jobs, and an index of the running ones that a poll reads instead of passing over
//! every job: per job name, the jobs with runnable tasks in policy order, the jobs whose
//! backups may be due in policy order, the running jobs and their runnable tasks; and the
//! jobs whose backups are not due yet by when they may be.
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

/// What the index holds about one running job.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    name: String,
    key: OrderKey,
    runnable: usize,
    /// When backups may be due (the job is in its tail), see [`Job::backup_due`].
    due: Option<Instant>,
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
    /// Jobs in their tail whose backups are not due yet, by when they may be.
    waiting: BTreeSet<(Instant, JobId)>,
    /// Jobs moved from `waiting` to their name's `ready` set.
    promoted: HashSet<JobId>,
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
        let runnable = j.runnable();
        let due = if runnable == 0 { spec.and_then(|s| j.backup_due(s)) } else { None };
        let key = policy.key(j);
        match self.entries.get(id) {
            Some(old) if old.name == j.spec().name => {
                if old.key == key && old.runnable == runnable && old.due == due {
                    return;
                }
                // The same name: its running set stays; the rest moves.
                let Some(old) = self.entries.remove(id) else { return };
                self.unplace(id, &old);
                let new = Entry { key, runnable, due, name: old.name };
                self.place(id, &new);
                self.entries.insert(id.clone(), new);
            }
            _ => {
                if let Some(old) = self.entries.remove(id) {
                    self.unlink(id, old);
                }
                let new = Entry { name: j.spec().name.clone(), key, runnable, due };
                self.names.entry(new.name.clone()).or_default().running.insert(id.clone());
                self.place(id, &new);
                self.entries.insert(id.clone(), new);
            }
        }
    }

    /// Removes a job from every set but its name's running set.
    fn unplace(&mut self, id: &JobId, old: &Entry) {
        if let Some(due) = old.due
            && !self.waiting.remove(&(due, id.clone()))
        {
            self.promoted.remove(id);
        }
        let Some(named) = self.names.get_mut(&old.name) else { return };
        named.runnable -= old.runnable;
        let place = (old.key, id.clone());
        if old.runnable > 0 {
            named.pending.remove(&place);
        }
        named.ready.remove(&place);
    }

    /// Adds a job to every set but its name's running set.
    fn place(&mut self, id: &JobId, new: &Entry) {
        let named = self.names.entry(new.name.clone()).or_default();
        named.runnable += new.runnable;
        if new.runnable > 0 {
            named.pending.insert((new.key, id.clone()));
        }
        if let Some(due) = new.due {
            self.waiting.insert((due, id.clone()));
        }
    }

    /// Removes a job from the index.
    fn unlink(&mut self, id: &JobId, old: Entry) {
        self.unplace(id, &old);
        let Some(named) = self.names.get_mut(&old.name) else { return };
        named.running.remove(id);
        if named.running.is_empty() {
            self.names.remove(&old.name);
        }
    }

    /// Moves the jobs whose backups may be due at `now` to the ready sets.
    pub(super) fn promote(&mut self, now: Instant) {
        while let Some((due, _)) = self.waiting.first()
            && *due < now
        {
            let Some((_, id)) = self.waiting.pop_first() else { break };
            let Some(e) = self.entries.get(&id) else { continue };
            if let Some(named) = self.names.get_mut(&e.name) {
                named.ready.insert((e.key, id.clone()));
            }
            self.promoted.insert(id);
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
