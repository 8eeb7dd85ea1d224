//! The job index and the indexed backup choice against what a pass over every job and
//! task gives, over random runs (seeded, bounded).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use quern_api::{AttemptId, JobId, TaskKind, WorkerId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::tests::{Clock, core, map_ok, reduce_ok, spec, splits};
use super::*;
use crate::job::Speculation;
use crate::policy::Fair;

/// The straggler a pass over the phase's tasks picks (what `backup_candidate` did before
/// it was indexed).
fn backup_by_scan(job: &Job, worker: &WorkerId, now: Instant, spec: &Speculation) -> Option<(TaskKind, u32)> {
    let (kind, threshold) = job.backup_phase(spec)?;
    job.tasks(kind)
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
fn check(c: &mut Core, now: Now, seed: u64) -> usize {
    c.refresh_index();
    let spec = c.cfg.speculation.clone().unwrap_or_default();
    let mut pending: BTreeMap<String, Vec<index::Place>> = BTreeMap::new();
    let mut running: BTreeMap<String, (BTreeSet<JobId>, usize)> = BTreeMap::new();
    let mut due = BTreeSet::new();
    for j in c.jobs.values().filter(|j| j.is_running()) {
        let name = j.spec().name.clone();
        let r = running.entry(name.clone()).or_default();
        r.0.insert(j.id().clone());
        r.1 += j.runnable();
        if j.runnable() > 0 {
            pending.entry(name).or_default().push((c.policy.key(j), j.id().clone()));
        }
        for w in c.workers.keys() {
            let want = backup_by_scan(j, w, now.at, &spec);
            assert_eq!(j.backup_candidate(w, now.at, &spec), want, "seed {seed}: backup of {} for {w}", j.id());
            if want.is_some() {
                due.insert(j.id().clone());
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
        want.sort();
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
    due.len()
}

#[test]
fn the_index_matches_a_pass_over_the_jobs_through_random_runs() {
    let mut backups_due = 0;
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
        let mut reducers: BTreeMap<JobId, usize> = BTreeMap::new();
        let mut out = 0;
        for _ in 0..150 {
            match rng.random_range(0..10) {
                0 => {
                    out += 1;
                    let r = rng.random_range(0..3);
                    let mut s = spec(&format!("memory:///out{out}/"), r, rng.random_range(0..3));
                    s.name = names[rng.random_range(0..2)].to_string();
                    let id = c.submit(s, splits(rng.random_range(1..8)), clock.now().wall_ms);
                    reducers.insert(id, r as usize);
                }
                1..=3 => {
                    let w = &ws[rng.random_range(0..ws.len())];
                    c.poll(w, rng.random_range(1..4), clock.now());
                }
                4..=6 => {
                    // An attempt ends: mostly a success, else a failure.
                    let w = ws[rng.random_range(0..ws.len())].clone();
                    let Some(a) = c.workers.get(&w).and_then(|e| e.running.iter().next().cloned()) else { continue };
                    finish(&mut c, &w, &a, rng.random_bool(0.8), &reducers, clock.now());
                }
                7 => {
                    let ids: Vec<JobId> = reducers.keys().cloned().collect();
                    if !ids.is_empty() && rng.random_bool(0.3) {
                        c.kill(&ids[rng.random_range(0..ids.len())], clock.now().wall_ms);
                    }
                }
                _ => clock.advance(Duration::from_millis(rng.random_range(0..3000))),
            }
            let later = c.take_actions();
            drop(later);
            backups_due += check(&mut c, clock.now(), seed);
        }
    }
    assert!(backups_due > 0, "the runs reach jobs with stragglers");
}

/// Ends attempt `a` on `w`: a success (committing a part first) or a failure.
fn finish(c: &mut Core, w: &WorkerId, a: &AttemptId, ok: bool, reducers: &BTreeMap<JobId, usize>, now: Now) {
    let outcome = if !ok {
        Outcome::Failed { kind: FailureKind::UserCode, message: "boom".into(), lost_map: None }
    } else if a.task.kind == TaskKind::Map {
        let r = reducers.get(&a.task.job).copied().unwrap_or(0);
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
    for act in actions {
        if let Action::WriteSuccess { job, .. } = act {
            c.finalized(&job, Ok(()), now.wall_ms);
        }
    }
}
