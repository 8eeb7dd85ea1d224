//! The history limits: ended, cleaned jobs past `--history-jobs` or `--history-age` are
//! forgotten (journalled, so a replay and a snapshot forget them too); running jobs and jobs
//! whose data is not yet deleted never are.

use std::time::Duration;

use super::tests::{Clock, core, run_one, spec, splits, worker};
use super::*;
use crate::snapshot::Compactor;

/// Runs a one-map, one-reduce job to its end at `now_ms`, cleaned if `clean`.
fn ended_job(c: &mut Core, w: &WorkerId, clock: &Clock, n: usize, now_ms: u64, clean: bool) -> JobId {
    let id = c.submit(spec(&format!("memory:///out{n}/"), 1, 0), splits(1), now_ms);
    let mut actions = run_one(c, w, clock, 1);
    actions.extend(run_one(c, w, clock, 1));
    for a in actions {
        if let Action::WriteSuccess { job, .. } = a {
            c.finalized(&job, Ok(()), now_ms);
        }
    }
    assert!(c.job(&id).unwrap().state().is_final(), "{id} ended");
    if clean {
        c.cleaned(&id);
    }
    id
}

#[test]
fn past_the_count_the_oldest_cleaned_jobs_are_forgotten_and_stay_forgotten() {
    let clock = Clock::new();
    let mut c = core();
    c.cfg.history = History { max_jobs: 2, max_age: Duration::from_secs(3600) };
    let w = worker(&mut c, &clock);
    let unclean = ended_job(&mut c, &w, &clock, 0, 10, false);
    let old = ended_job(&mut c, &w, &clock, 1, 20, true);
    let kept: Vec<JobId> = (2..4).map(|n| ended_job(&mut c, &w, &clock, n, 30 + n as u64, true)).collect();
    let running = c.submit(spec("memory:///running/", 1, 0), splits(1), 50);

    let deletes = c.forget_old(60);
    assert_eq!(deletes, vec![Action::Delete(archive_url(&c.cfg.store, &old))]);
    assert!(c.job(&old).is_none(), "the oldest cleaned job is forgotten");
    assert!(c.job(&unclean).is_some(), "a job whose data may remain is kept");
    assert!(kept.iter().all(|k| c.job(k).is_some()) && c.job(&running).is_some());
    assert!(c.forget_old(61).is_empty(), "nothing more to forget");

    // Replayed, and compacted into a snapshot, the journal forgets it too.
    let journal = c.take_journal();
    let mut again = core();
    again.replay(journal.clone());
    assert!(again.job(&old).is_none() && again.job(&kept[0]).is_some());
    // Ended jobs answer from their archives; a resumed one keeps its attempts and logs.
    assert!(again.job(&kept[0]).unwrap().is_archived() && again.job(&unclean).unwrap().is_archived());
    assert!(!again.job(&running).unwrap().is_archived(), "a running job is not archived at replay");
    let snap = Compactor::new(journal);
    assert!(snap.records().all(|r| !format!("{r:?}").contains(old.as_str())), "no trace of it in a snapshot");
    assert_eq!(snap.jobs(), 4);
}

#[test]
fn past_the_age_ended_jobs_are_forgotten_whatever_their_count() {
    let clock = Clock::new();
    let mut c = core();
    c.cfg.history = History { max_jobs: 100, max_age: Duration::from_secs(60) };
    let w = worker(&mut c, &clock);
    let old = ended_job(&mut c, &w, &clock, 0, 1_000, true);
    let young = ended_job(&mut c, &w, &clock, 1, 50_000, true);
    assert!(c.forget_old(60_000).is_empty(), "neither is a minute old");
    assert_eq!(c.forget_old(61_001).len(), 1);
    assert!(c.job(&old).is_none() && c.job(&young).is_some());
}
