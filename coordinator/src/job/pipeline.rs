//! Where a pipeline job is: which stages have started and finished, which may start now,
//! and what each reads.
//!
//! A pipeline is a DAG of stages, each reading the job's input or earlier stages' output
//! (so stage indexes are already a topological order). Every stage whose inputs are all
//! available — the job's input, or stages that finished — runs at once, each with a task
//! table of its own ([`super::StageRun`]); the scheduler hands out tasks of all of them.
//!
//! ```text
//!            its input stages finished        the shell listed its input
//! waiting ───────────────────────────▶ requested ─────────────────────────▶ running
//!                                                                                │ every part
//!                                   finished (counters kept, table dropped) ◀────┘ committed
//! ```
//!
//! Stage 0 starts with the job (its splits come with the submission); every other stage
//! starts through [`crate::core::Action::StartStage`], journalled as a `StageStarted` record
//! naming the stage and its splits. Which stages finished is not journalled: a stage is
//! finished once every part of it is committed, which the journalled task successes say.

use std::collections::BTreeSet;

use quern_api::split::InputObject;
use quern_api::{Counters, InputFormat, StageInput, StoreUrl};

use crate::spec::JobSpec;

/// A pipeline's progress through its stages.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// Counters of finished stages.
    pub(super) done: Counters,
    /// The job's input objects as listed at submit (from the first stage's splits): what a
    /// later stage reading the job's input reads, without listing it again.
    pub(super) input_objects: Vec<InputObject>,
    /// Stages started (running or finished).
    pub(super) started: BTreeSet<usize>,
    /// Stages whose every part is committed.
    pub(super) finished: BTreeSet<usize>,
    /// Stages the shell was asked to start (their input is being listed); not journalled:
    /// a restarted coordinator asks again.
    pub(super) requested: BTreeSet<usize>,
}

/// What the shell needs to start a stage: what to list and how to split it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageStart {
    /// Directories of earlier stages' output the stage reads.
    pub inputs: Vec<StoreUrl>,
    /// Objects of the job's input it reads, as listed at submit.
    pub objects: Vec<InputObject>,
    /// Split size.
    pub split_size: u64,
    /// Its input format.
    pub input_format: InputFormat,
}

impl Pipeline {
    /// A pipeline whose stage 0 has started, over a job input of `input_objects`.
    pub(super) fn new(input_objects: Vec<InputObject>) -> Self {
        Pipeline {
            done: Counters::new(),
            input_objects,
            started: BTreeSet::from([0]),
            finished: BTreeSet::new(),
            requested: BTreeSet::new(),
        }
    }

    /// The stages stage `k` of `user` reads (empty: only the job's input).
    fn sources(user: &JobSpec, k: usize) -> Vec<usize> {
        let Some(stage) = user.stages.get(k) else { return Vec::new() };
        match &stage.inputs[..] {
            [] => k.checked_sub(1).into_iter().collect(),
            sources => sources
                .iter()
                .filter_map(|s| match s {
                    StageInput::Stage(j) => Some(*j),
                    StageInput::JobInput => None,
                })
                .collect(),
        }
    }

    /// Stages that may start now and were not asked for yet (each is returned once; the
    /// caller asks the shell to start it).
    pub(super) fn take_ready(&mut self, user: &JobSpec) -> Vec<usize> {
        let ready: Vec<usize> = (0..user.stages.len())
            .filter(|k| !self.started.contains(k) && !self.requested.contains(k))
            .filter(|&k| Self::sources(user, k).iter().all(|j| self.finished.contains(j)))
            .collect();
        self.requested.extend(ready.iter().copied());
        ready
    }

    /// What stage `k` of `user` reads: directories of earlier stages' output to list, and
    /// the job's input objects (as listed at submit) if it reads those.
    pub(super) fn start_of(&self, user: &JobSpec, k: usize, scratch: &StoreUrl) -> Option<StageStart> {
        let stage = user.stages.get(k)?;
        let dir = |j: usize| scratch.join(&format!("stage-{j}/"));
        let (inputs, objects) = match &stage.inputs[..] {
            [] if k == 0 => (Vec::new(), self.input_objects.clone()),
            [] => (vec![dir(k - 1)], Vec::new()),
            sources => {
                let dirs = Self::sources(user, k).into_iter().map(dir).collect();
                let job_input = sources.contains(&StageInput::JobInput);
                (dirs, if job_input { self.input_objects.clone() } else { Vec::new() })
            }
        };
        Some(StageStart { inputs, objects, split_size: user.split_size, input_format: stage.formats.input })
    }

    /// The stage a journalled start that names none is of (journals written when stages
    /// ran one at a time, in order): the first not started yet.
    pub(super) fn first_unstarted(&self, stages: usize) -> Option<usize> {
        (0..stages).find(|k| !self.started.contains(k))
    }
}
