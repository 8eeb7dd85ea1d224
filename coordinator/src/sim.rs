//! A simulated cluster that drives [`Core`] with a fake clock: no network, no store, no
//! runtime. It measures what scheduling itself costs as clusters grow (the
//! `quern-sched-bench` binary prints its figures) and, in its quick form, checks as a unit
//! test that every task of every job finishes exactly once.
//!
//! The simulation is time-stepped: each step of [`SimConfig::step`] delivers the
//! completions due, lets every worker with free slots that was woken poll, heartbeats each
//! worker about once a second and runs the coordinator's periodic checks (lost workers,
//! stalled attempts, unrunnable jobs) once a second, as the gRPC shell's ticker does.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

use quern_api::split::Split;
use quern_api::{AttemptId, Counters, JobId, StoreUrl, TaskKind, WorkerId, pb};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::convert::Registration;
use crate::core::{Action, Core, CoreConfig, Now, Outcome};
use crate::job::{JobSpec, JobState, Speculation};
use crate::policy::PolicyKind;
use crate::task::Segment;

/// The job name every simulated worker runs.
const JOB: &str = "sim";

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Workers in the cluster.
    pub workers: usize,
    /// Slots per worker.
    pub slots: u32,
    /// Jobs, all submitted at the start.
    pub jobs: usize,
    /// Map tasks per job.
    pub maps: usize,
    /// Every `reduce_every`-th job has `reducers` reduce tasks (0: none has).
    pub reduce_every: usize,
    /// Reduce tasks of the jobs that have them.
    pub reducers: u32,
    /// Every `local_every`-th job's splits live on random workers' `--local-data`
    /// directories (0: no job's do); the others have no home.
    pub local_every: usize,
    /// Racks the workers are spread over.
    pub racks: usize,
    /// Shortest and longest simulated task run time.
    pub task_time: (Duration, Duration),
    /// Simulated time per step.
    pub step: Duration,
    /// The simulation gives up after this many steps.
    pub max_steps: u64,
    /// Which job a free slot serves.
    pub policy: PolicyKind,
    /// Seed of the task times and split homes.
    pub seed: u64,
}

impl SimConfig {
    /// A cluster small enough for a unit test: 10 workers, 20 jobs of 50 maps.
    pub fn quick() -> Self {
        SimConfig { workers: 10, slots: 4, jobs: 20, maps: 50, ..SimConfig::at_scale(10) }
    }

    /// `workers` workers of 8 slots and 1,000 jobs of 1,000 maps: a tenth of the jobs
    /// with 10 reduces, a tenth with input on the workers' own disks.
    pub fn at_scale(workers: usize) -> Self {
        SimConfig {
            workers,
            slots: 8,
            jobs: 1000,
            maps: 1000,
            reduce_every: 10,
            reducers: 10,
            local_every: 10,
            racks: 20,
            task_time: (Duration::from_secs(5), Duration::from_secs(15)),
            step: Duration::from_millis(100),
            max_steps: 10_000_000,
            policy: PolicyKind::Fair,
            seed: 42,
        }
    }

    /// The number of tasks the jobs have.
    pub fn tasks(&self) -> u64 {
        (0..self.jobs).map(|j| (self.maps + self.reducers_of(j) as usize) as u64).sum()
    }

    fn reducers_of(&self, job: usize) -> u32 {
        if self.reduce_every > 0 && job.is_multiple_of(self.reduce_every) { self.reducers } else { 0 }
    }
}

/// Durations of one kind of call, in nanoseconds.
#[derive(Clone, Debug, Default)]
pub struct Timings(Vec<u64>);

impl Timings {
    fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let t = Instant::now();
        let r = f();
        self.0.push(t.elapsed().as_nanos() as u64);
        r
    }

    /// How many calls were timed.
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// Their total time.
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.0.iter().sum())
    }

    /// The `q`-quantile (0.5: median), or zero without calls.
    pub fn quantile(&self, q: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        Duration::from_nanos(v.get(i).copied().unwrap_or(0))
    }
}

/// What a simulation measured.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// Tasks the jobs had.
    pub tasks: u64,
    /// Attempts handed out (the scheduling decisions).
    pub decisions: u64,
    /// Tasks whose success the coordinator took, counted per task: exactly once each when
    /// [`SimReport::exactly_once`] holds.
    pub succeeded: u64,
    /// Whether every task of every job succeeded exactly once and every job succeeded.
    pub exactly_once: bool,
    /// Jobs that did not succeed within the step limit.
    pub unfinished_jobs: usize,
    /// Simulated time until the last job ended.
    pub simulated: Duration,
    /// Steps taken.
    pub steps: u64,
    /// Polls (those that handed out nothing included).
    pub polls: Timings,
    /// Outcome reports (commits included).
    pub reports: Timings,
    /// Heartbeats.
    pub heartbeats: Timings,
    /// The periodic checks (lost workers, stalled attempts, unrunnable jobs).
    pub ticks: Timings,
    /// Wall time of the whole run, the simulation's own bookkeeping included.
    pub wall: Duration,
}

impl SimReport {
    /// Scheduling decisions per second of time spent inside the coordinator.
    pub fn decisions_per_sec(&self) -> f64 {
        let inside = self.polls.total() + self.reports.total() + self.heartbeats.total() + self.ticks.total();
        self.decisions as f64 / inside.as_secs_f64().max(1e-9)
    }
}

/// A running attempt in the simulation.
struct Running {
    worker: usize,
    attempt: AttemptId,
    commits: bool,
    shuffles: Option<usize>,
}

/// Runs the simulation; `after_submit` is called once every job is submitted (the bench
/// reads the memory in use there).
pub fn run(cfg: &SimConfig, after_submit: impl FnOnce()) -> SimReport {
    let start = Instant::now();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let (mut at, mut wall_ms) = (Instant::now(), 1_000_000u64);
    let now = |at: Instant, wall_ms: u64| Now { at, wall_ms };
    let mut core = Core::new(core_config(cfg), cfg.policy.build());
    let ids: Vec<WorkerId> = (0..cfg.workers)
        .map(|i| {
            let local_data = vec![host_dir(i)];
            let r = Registration {
                host: format!("host-{i}"),
                rack: format!("rack-{}", i % cfg.racks.max(1)),
                slots: cfg.slots,
                jobs: BTreeSet::from([JOB.to_string()]),
                local_data,
            };
            core.register_with(r, String::new(), now(at, wall_ms))
        })
        .collect();
    let mut jobs = Vec::with_capacity(cfg.jobs);
    for j in 0..cfg.jobs {
        let splits = (0..cfg.maps)
            .map(|k| {
                let url = if cfg.local_every > 0 && j.is_multiple_of(cfg.local_every) {
                    host_dir(rng.random_range(0..cfg.workers)).join(&format!("j{j}-{k}")).to_string()
                } else {
                    format!("memory:///in/j{j}/{k}")
                };
                Split { url, start: 0, end: 100, object_size: 100 }
            })
            .collect();
        jobs.push(core.submit(spec(j, cfg.reducers_of(j)), splits, wall_ms));
    }
    core.take_journal();
    after_submit();

    let mut report = SimReport { tasks: cfg.tasks(), ..SimReport::default() };
    let steps_per_sec = (Duration::from_secs(1).as_nanos() / cfg.step.as_nanos().max(1)).max(1) as u64;
    let step_ms = cfg.step.as_millis() as u64;
    let (lo, hi) = (cfg.task_time.0.as_millis() as u64, cfg.task_time.1.as_millis().max(1) as u64);
    // Completions by step, the attempts each worker runs, and the workers to poll now.
    let mut due: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut running: BTreeMap<u64, Running> = BTreeMap::new();
    // Which run each attempt is, for cancellations.
    let mut runs: HashMap<AttemptId, u64> = HashMap::new();
    let mut busy = vec![0u32; cfg.workers];
    let mut next_run = 0u64;
    let mut woken: BTreeSet<usize> = (0..cfg.workers).collect();
    let mut succeeded: HashSet<(JobId, TaskKind, u32)> = HashSet::new();
    let mut twice = false;
    let mut ended = 0usize;
    let mut step = 0u64;
    while ended < jobs.len() && step < cfg.max_steps {
        step += 1;
        at += cfg.step;
        wall_ms += step_ms;
        let n = now(at, wall_ms);
        // Completions due now.
        while let Some(Reverse((s, key))) = due.peek().copied() {
            if s > step {
                break;
            }
            due.pop();
            let Some(r) = running.remove(&key) else { continue };
            runs.remove(&r.attempt);
            busy[r.worker] -= 1;
            let w = &ids[r.worker];
            let outcome = Outcome::Succeeded {
                counters: Counters::new(),
                segments: r.shuffles.map(|n| vec![Segment::default(); n]),
            };
            let (result, actions) = report.reports.time(|| {
                if r.commits {
                    // A refused commit means the attempt is no longer live: its report is
                    // refused too, as the worker's would be.
                    if core.commit(w, &r.attempt).is_ok() {
                        core.commit_done(&r.attempt);
                    }
                }
                core.report(w, &r.attempt, outcome, n)
            });
            if result.is_ok() {
                let t = &r.attempt.task;
                twice |= !succeeded.insert((t.job.clone(), t.kind, t.index));
            }
            ended += perform(&mut core, actions, wall_ms);
            woken.insert(r.worker);
        }
        // Heartbeats (a tenth of the workers a tenth of a second) and the ticker.
        for (i, w) in ids.iter().enumerate() {
            if !(i as u64 + step).is_multiple_of(steps_per_sec) {
                continue;
            }
            let cancel = report.heartbeats.time(|| core.heartbeat(w, n)).unwrap_or_default();
            for a in cancel {
                // The worker stops the attempt and says so.
                if let Some(r) = runs.remove(&a).and_then(|key| running.remove(&key)) {
                    busy[r.worker] -= 1;
                }
                // Refused as the attempt is no longer live: it lost to a backup.
                let _ = report.reports.time(|| core.report(w, &a, Outcome::Killed, n));
                woken.insert(i);
            }
            // Idle workers look again about once a second (a long poll's recheck).
            woken.insert(i);
        }
        if step.is_multiple_of(steps_per_sec) {
            let actions = report.ticks.time(|| {
                core.tick(n);
                let mut a = core.fail_unrunnable(n);
                a.extend(core.fail_stalled(n));
                a
            });
            ended += perform(&mut core, actions, wall_ms);
        }
        for i in std::mem::take(&mut woken) {
            let w = &ids[i];
            let free = cfg.slots.saturating_sub(busy[i]);
            if free == 0 {
                continue;
            }
            let tasks = report.polls.time(|| core.poll(w, free, n)).unwrap_or_default();
            let later = core.take_actions();
            ended += perform(&mut core, later, wall_ms);
            for a in tasks {
                let Ok(attempt) = AttemptId::try_from(a.attempt.as_ref()) else { continue };
                report.decisions += 1;
                let job = core.job(&attempt.task.job).and_then(|j| j.run_of(attempt.attempt));
                let commits = job.is_some_and(|j| j.final_kind() == attempt.task.kind);
                let shuffles = match (&a.task, job) {
                    (Some(pb::task_assignment::Task::Map(_)), Some(j)) if !j.map_only() => {
                        Some(j.spec().reducers as usize)
                    }
                    _ => None,
                };
                let took = rng.random_range(lo..=hi.max(lo));
                due.push(Reverse((step + took.div_ceil(step_ms.max(1)), next_run)));
                runs.insert(attempt.clone(), next_run);
                running.insert(next_run, Running { worker: i, attempt, commits, shuffles });
                busy[i] += 1;
                next_run += 1;
            }
        }
        core.take_journal();
    }
    report.steps = step;
    report.simulated = cfg.step * step as u32;
    report.succeeded = succeeded.len() as u64;
    report.unfinished_jobs =
        jobs.iter().filter(|id| !matches!(core.job(id).map(|j| j.state()), Some(JobState::Succeeded { .. }))).count();
    report.exactly_once = !twice && report.unfinished_jobs == 0 && report.succeeded == report.tasks;
    report.wall = start.elapsed();
    report
}

/// Does what the shell would with `actions`: `_SUCCESS` written, cleanups done. Returns
/// how many jobs ended.
fn perform(core: &mut Core, actions: Vec<Action>, wall_ms: u64) -> usize {
    let mut ended = 0;
    let mut todo = actions;
    while let Some(a) = todo.pop() {
        match a {
            Action::WriteSuccess { job, .. } => todo.extend(core.finalized(&job, Ok(()), wall_ms)),
            Action::Cleanup { job, .. } => {
                core.cleaned(&job);
                ended += 1;
            }
            Action::Delete(_) | Action::StartStage { .. } | Action::ClearStage { .. } => {}
        }
    }
    ended
}

fn host_dir(i: usize) -> StoreUrl {
    // Infallible: a fixed pattern.
    StoreUrl::parse(&format!("file:///data/host-{i}/")).unwrap_or_else(|_| unreachable!("a valid URL"))
}

fn spec(j: usize, reducers: u32) -> JobSpec {
    let url = |s: String| StoreUrl::parse(&s).unwrap_or_else(|_| unreachable!("a valid URL"));
    JobSpec {
        name: JOB.into(),
        inputs: vec![url(format!("memory:///in/j{j}/"))],
        output: url(format!("memory:///out/j{j}/")),
        reducers,
        split_size: 100,
        params: Default::default(),
        priority: (j % 3) as i32,
        skip_bad_records: false,
        stages: Vec::new(),
        side: Default::default(),
        formats: Default::default(),
        generate_rows: 0,
    }
}

fn core_config(cfg: &SimConfig) -> CoreConfig {
    CoreConfig {
        store: StoreUrl::parse("memory:///store/").unwrap_or_else(|_| unreachable!("a valid URL")),
        heartbeat_timeout: Duration::from_secs(5),
        max_attempts: 4,
        epoch_ms: 1,
        speculation: Some(Speculation::default()),
        delay: crate::placement::Delay::default(),
        max_jobs: cfg.jobs.max(1),
        job_wait: Duration::from_secs(60),
        task_timeout: Duration::from_secs(600),
        poll_bytes: 3 << 20,
        preemption: None,
        history: crate::core::History::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_simulation_finishes_every_task_exactly_once() {
        let cfg = SimConfig::quick();
        let r = run(&cfg, || {});
        assert_eq!(r.unfinished_jobs, 0, "{r:?}");
        assert_eq!(r.succeeded, cfg.tasks());
        assert!(r.exactly_once, "{r:?}");
        assert!(r.decisions >= r.tasks, "every task was handed out at least once");
    }
}
