//! The job index and the indexed backup choice against what a pass over every job and
//! task gives, over random runs (seeded, bounded).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use quern_api::{AttemptId, JobId, StageInput, TaskKind, WorkerId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::tests::{Clock, core, map_ok, reduce_ok, spec, splits};
use super::*;
use crate::job::{Speculation, Stage, StageRun};
use crate::policy::Fair;

/// The straggler a pass over the phase's tasks picks (what `backup_candidate` did before
/// it was indexed).
fn backup_by_scan(run: &StageRun, worker: &WorkerId, now: Instant, spec: &Speculation) -> Option<(TaskKind, u32)> {
    let (kind, threshold) = run.backup_phase(spec)?;
    run.tasks(kind)
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let (w, since) = t.single_live()?;
            let ran = now.saturating_duration_since(since);
            (w != worker && ran > threshold && !t.failed_on.contains(worker)).then_some((ran, i as u32))
        })
        .max()
        .map(|(_, i)| (kind, i))
}

/// Checks the index against the jobs themselves, and the indexed backup choice against
/// the scan, for every worker.
fn check(c: &mut Core, now: Now, seed: u64) -> (usize, usize) {
    c.refresh_index();
    let spec = c.cfg.speculation.clone().unwrap_or_default();
    let mut pending: BTreeMap<String, Vec<index::Place>> = BTreeMap::new();
    let mut running: BTreeMap<String, (BTreeSet<JobId>, usize)> = BTreeMap::new();
    let mut due = BTreeSet::new();
    let mut two_names = 0;
    for j in c.jobs.values().filter(|j| j.is_running()) {
        // A job is indexed under the name of each of its running stages, with what its
        // stages of that name have runnable.
        let mut of_name: BTreeMap<String, usize> = BTreeMap::new();
        for run in j.runs() {
            *of_name.entry(run.spec().name.clone()).or_default() += run.runnable();
            for w in c.workers.keys() {
                let want = backup_by_scan(run, w, now.at, &spec);
                let got = run.backup_candidate(w, now.at, &spec);
                assert_eq!(got, want, "seed {seed}: backup of {} stage {} for {w}", j.id(), run.index());
                if want.is_some() && runnable_of(j, &run.spec().name) == 0 {
                    due.insert(j.id().clone());
                }
            }
        }
        two_names += usize::from(of_name.len() > 1);
        for (name, runnable) in of_name {
            let r = running.entry(name.clone()).or_default();
            r.0.insert(j.id().clone());
            r.1 += runnable;
            if runnable > 0 {
                pending.entry(name).or_default().push((c.policy.key(j), j.id().clone()));
            }
        }
    }
    let index = c.jobs.index();
    let names = index.names();
    assert_eq!(names.len(), running.len(), "seed {seed}: names");
    for (name, (ids, runnable)) in &running {
        let named = &names[name];
        assert_eq!(&named.running, ids, "seed {seed}: running jobs of {name}");
        assert_eq!(named.runnable, *runnable, "seed {seed}: runnable tasks of {name}");
    }
    // Each name alone, and all names merged, in policy order.
    let all: Vec<String> = running.keys().cloned().collect();
    let mut groups: Vec<Vec<String>> = all.iter().map(|n| vec![n.clone()]).collect();
    groups.push(all);
    for group in groups {
        let mut want: Vec<index::Place> =
            group.iter().flat_map(|n| pending.get(n).cloned().unwrap_or_default()).collect();
        // A job indexed under two names comes once.
        want.sort();
        want.dedup();
        let mut got = Vec::new();
        let mut after = None;
        while let Some(p) = index.next_pending(&group, after.as_ref()) {
            got.push(p.clone());
            after = Some(p);
        }
        assert_eq!(got, want, "seed {seed}: pending order of {group:?}");
    }
    // Every job with a backup due for some worker is ready.
    index.promote(now.at);
    let all: Vec<String> = running.keys().cloned().collect();
    let mut ready = BTreeSet::new();
    let mut after = None;
    while let Some(p) = index.next_ready(&all, after.as_ref()) {
        ready.insert(p.1.clone());
        after = Some(p);
    }
    assert!(due.is_subset(&ready), "seed {seed}: due {due:?}, ready {ready:?}");
    (due.len(), two_names)
}

/// The runnable tasks of job `j`'s running stages named `name`.
fn runnable_of(j: &Job, name: &str) -> usize {
    j.runs().iter().filter(|r| r.spec().name == name).map(StageRun::runnable).sum()
}

#[test]
fn the_index_matches_a_pass_over_the_jobs_through_random_runs() {
    let (mut backups_due, mut two_names) = (0, 0);
    for seed in 0..30 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut clock = Clock::new();
        let mut c = core();
        c.policy = if seed % 2 == 0 { Box::new(Fair) } else { Box::new(crate::policy::PriorityFifo) };
        let names = ["wordcount", "other"];
        let mut ws = Vec::new();
        for i in 0..4 {
            let jobs: BTreeSet<String> = match i % 3 {
                0 => BTreeSet::from([names[0].to_string()]),
                1 => BTreeSet::from([names[1].to_string()]),
                _ => names.iter().map(|n| n.to_string()).collect(),
            };
            ws.push(c.register(format!("h{i}"), "r".into(), rng.random_range(1..4), jobs, clock.now()));
        }
        let mut jobs: Vec<JobId> = Vec::new();
        let mut out = 0;
        for _ in 0..150 {
            match rng.random_range(0..10) {
                0 => {
                    out += 1;
                    let r = rng.random_range(0..3);
                    let mut s = spec(&format!("memory:///out{out}/"), r, rng.random_range(0..3));
                    s.name = names[rng.random_range(0..2)].to_string();
                    if rng.random_bool(0.3) {
                        s = pipeline(s, &mut rng);
                    }
                    let id = c.submit(s, splits(rng.random_range(1..8)), clock.now().wall_ms);
                    jobs.push(id);
                }
                1..=3 => {
                    let w = &ws[rng.random_range(0..ws.len())];
                    c.poll(w, rng.random_range(1..4), clock.now());
                }
                4..=6 => {
                    // An attempt ends: mostly a success, else a failure.
                    let w = ws[rng.random_range(0..ws.len())].clone();
                    let Some(a) = c.workers.get(&w).and_then(|e| e.running.iter().next().cloned()) else { continue };
                    finish(&mut c, &w, &a, rng.random_bool(0.8), clock.now());
                }
                7 => {
                    if !jobs.is_empty() && rng.random_bool(0.3) {
                        c.kill(&jobs[rng.random_range(0..jobs.len())], clock.now().wall_ms);
                    }
                }
                _ => clock.advance(Duration::from_millis(rng.random_range(0..3000))),
            }
            let later = c.take_actions();
            follow(&mut c, later, clock.now());
            let (due, two) = check(&mut c, clock.now(), seed);
            backups_due += due;
            two_names += two;
        }
    }
    assert!(backups_due > 0, "the runs reach jobs with stragglers");
    assert!(two_names > 0, "the runs reach pipelines running stages of two job names at once");
}

/// `s` as a pipeline: two stages of random names reading the job's input side by side, and
/// a third reading both (so a job's running stages may run different job names).
fn pipeline(mut s: JobSpec, rng: &mut StdRng) -> JobSpec {
    let names = ["wordcount", "other"];
    let mut stage = |inputs: &[StageInput]| Stage {
        job: names[rng.random_range(0..2)].into(),
        params: Default::default(),
        reducers: rng.random_range(0..3),
        formats: Default::default(),
        inputs: inputs.to_vec(),
    };
    s.stages = vec![stage(&[]), stage(&[StageInput::JobInput]), stage(&[StageInput::Stage(0), StageInput::Stage(1)])];
    s
}

/// Does what the shell would with `actions`: writes `_SUCCESS`, starts stages (over a few
/// splits: what they really read does not matter here).
fn follow(c: &mut Core, actions: Vec<Action>, now: Now) {
    for act in actions {
        match act {
            Action::WriteSuccess { job, .. } => {
                c.finalized(&job, Ok(()), now.wall_ms);
            }
            Action::StartStage { job, stage, .. } => c.start_stage(&job, stage, splits(3)),
            _ => {}
        }
    }
}

/// Ends attempt `a` on `w`: a success (committing a part first) or a failure.
fn finish(c: &mut Core, w: &WorkerId, a: &AttemptId, ok: bool, now: Now) {
    let outcome = if !ok {
        Outcome::Failed { kind: FailureKind::UserCode, message: "boom".into(), lost_map: None }
    } else if a.task.kind == TaskKind::Map {
        // The reducers of the attempt's stage.
        let run = c.jobs.get(&a.task.job).and_then(|j| j.run_of(a.attempt));
        let r = run.map_or(0, |run| run.spec().reducers as usize);
        if r == 0 {
            let _ = c.commit(w, a);
            c.commit_done(a);
        }
        let fake = quern_api::pb::TaskAssignment {
            task: Some(quern_api::pb::task_assignment::Task::Map(Default::default())),
            ..Default::default()
        };
        map_ok(&fake, r)
    } else {
        let _ = c.commit(w, a);
        c.commit_done(a);
        reduce_ok()
    };
    let (_, actions) = c.report(w, a, outcome, now);
    follow(c, actions, now);
}

/// The deadline queues find the silent workers and the stalled attempts a pass over every
/// worker and attempt finds, through random heartbeats, progress and time (seeded).
#[test]
fn the_deadline_queues_find_what_a_pass_over_everything_finds() {
    let (mut stalls, mut losses) = (0, 0);
    for seed in 0..20 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut clock = Clock::new();
        let mut c = core();
        let jobs = BTreeSet::from(["wordcount".to_string()]);
        let mut ws: Vec<WorkerId> =
            (0..5).map(|i| c.register(format!("h{i}"), "r".into(), 2, jobs.clone(), clock.now())).collect();
        for k in 0..3 {
            c.submit(spec(&format!("memory:///out{k}/"), 0, 0), splits(6), clock.now().wall_ms);
        }
        for _ in 0..120 {
            let w = ws[rng.random_range(0..ws.len())].clone();
            match rng.random_range(0..6) {
                0 => {
                    c.poll(&w, 2, clock.now());
                }
                1 => {
                    c.heartbeat(&w, clock.now());
                }
                2 => {
                    let running: Vec<AttemptId> =
                        c.workers.get(&w).map(|e| e.running.iter().cloned().collect()).unwrap_or_default();
                    let progress: Vec<(AttemptId, u64)> =
                        running.into_iter().map(|a| (a, rng.random_range(0..50))).collect();
                    c.progressed(&w, &progress, clock.now());
                }
                3 => {
                    // A worker registers afresh (the old one falls silent).
                    ws.push(c.register("late".into(), "r".into(), 2, jobs.clone(), clock.now()));
                }
                _ => {
                    clock.advance(Duration::from_millis(rng.random_range(0..25_000)));
                    // Most workers call in after the time passed; some miss it.
                    for w in ws.clone() {
                        if rng.random_bool(0.85) {
                            c.heartbeat(&w, clock.now());
                        }
                    }
                }
            }
            let now = clock.now();
            // What a pass over every worker and every live attempt finds.
            let mut stalled = Vec::new();
            for j in c.jobs.values().filter(|j| j.is_running()) {
                for (run, kind) in j.runs().iter().flat_map(|r| [(r, TaskKind::Map), (r, TaskKind::Reduce)]) {
                    for (i, t) in run.tasks(kind).iter().enumerate() {
                        for (attempt, _) in t.stalled(c.cfg.task_timeout, now.at) {
                            let task = quern_api::TaskId { job: j.id().clone(), kind, index: i as u32 };
                            stalled.push(AttemptId { task, attempt });
                        }
                    }
                }
            }
            c.fail_stalled(now);
            for a in &stalled {
                let run = c.jobs.get(&a.task.job).unwrap().run_of(a.attempt).unwrap();
                let t = &run.tasks(a.task.kind)[a.task.index as usize];
                assert!(!t.live_attempts().iter().any(|l| l.attempt == a.attempt), "seed {seed}: {a} still live");
            }
            // Nothing else stalled was left behind.
            for j in c.jobs.values().filter(|j| j.is_running()) {
                for t in j.runs().iter().flat_map(|r| r.tasks(TaskKind::Map)) {
                    assert!(
                        t.stalled(c.cfg.task_timeout, now.at).is_empty(),
                        "seed {seed}: a stalled attempt was missed"
                    );
                }
            }
            // (Failing a stalled attempt goes through `report`, which counts as hearing from
            // its worker: the silent are counted after it.)
            let timeout = c.cfg.heartbeat_timeout;
            let silent: Vec<WorkerId> = c
                .workers
                .iter()
                .filter(|(_, e)| now.at.saturating_duration_since(e.last_seen) > timeout)
                .map(|(id, _)| id.clone())
                .collect();
            let before: BTreeSet<WorkerId> = c.workers.keys().cloned().collect();
            c.tick(now);
            let after: BTreeSet<WorkerId> = c.workers.keys().cloned().collect();
            let lost: Vec<WorkerId> = before.difference(&after).cloned().collect();
            assert_eq!(lost, silent, "seed {seed}: lost workers");
            stalls += stalled.len();
            losses += lost.len();
        }
    }
    assert!(stalls > 0 && losses > 0, "the runs reach stalled attempts ({stalls}) and silent workers ({losses})");
}
