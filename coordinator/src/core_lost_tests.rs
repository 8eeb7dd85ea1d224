//! Lost map outputs are bounded: a store the workers do not share loses every map output,
//! and the job fails naming that likely cause instead of re-running maps forever.

use quern_api::{StoreUrl, TaskKind, WorkerId};

use super::tests::{Clock, attempt_of, core, run_one, spec, splits, worker};
use super::*;
use crate::job::JobState;

/// Hands out the reduce of a one-reducer job and has it report map `index`'s current
/// output lost; returns the actions.
fn lose_map_output(c: &mut Core, w: &WorkerId, job: &JobId, index: u32, clock: &Clock) -> Vec<Action> {
    let current = c.job(job).unwrap().runs()[0].tasks(TaskKind::Map)[index as usize].output_attempt().unwrap();
    let r = c.poll(w, 1, clock.now()).unwrap().pop().unwrap();
    assert_eq!(attempt_of(&r).task.kind, TaskKind::Reduce);
    let lost_map = Some(LostMap { index, attempt: current });
    let lost = Outcome::Failed { kind: FailureKind::MapOutputLost, message: "not found".into(), lost_map };
    let (taken, actions) = c.report(w, &attempt_of(&r), lost, clock.now());
    taken.unwrap();
    actions
}

/// A core whose store is a local directory and whose failure budget is 4.
fn file_core() -> Core {
    let mut c = core();
    c.cfg.store = StoreUrl::parse("file:///tmp/store/").unwrap();
    c.cfg.max_attempts = 4;
    c
}

#[test]
fn the_max_attempts_th_loss_of_one_map_s_output_fails_the_job_naming_the_store() {
    let clock = Clock::new();
    let mut c = file_core();
    let w = worker(&mut c, &clock);
    let id = c.submit(spec("memory:///out/", 1, 0), splits(1), 1);
    for time in 1..=3 {
        run_one(&mut c, &w, &clock, 1);
        let actions = lose_map_output(&mut c, &w, &id, 0, &clock);
        assert!(matches!(&actions[..], [Action::Delete(_)]), "loss {time}: {actions:?}");
        assert!(c.job(&id).unwrap().is_running(), "loss {time} runs the map again");
    }
    run_one(&mut c, &w, &clock, 1);
    let actions = lose_map_output(&mut c, &w, &id, 0, &clock);
    assert!(matches!(&actions[..], [Action::Delete(_), Action::Cleanup { .. }]), "{actions:?}");
    let job = c.job(&id).unwrap();
    match job.state() {
        JobState::Failed { error, .. } => assert_eq!(
            error,
            "map 0's output was lost 4 times: do the workers share the store? \
             (a file:// store must be a shared file system)"
        ),
        s => panic!("{s:?}"),
    }
    assert_eq!(job.runs()[0].tasks(TaskKind::Reduce)[0].failures, 0, "the reducer was never at fault");
    assert!(c.poll(&w, 1, clock.now()).unwrap().is_empty(), "nothing runs again");
}

#[test]
fn losses_are_counted_per_map_and_a_job_below_the_bound_still_succeeds() {
    let clock = Clock::new();
    let mut c = file_core();
    let w = worker(&mut c, &clock);
    let id = c.submit(spec("memory:///out/", 1, 0), splits(2), 1);
    // Three losses of each map: six in all, but no map reaches four.
    for _ in 0..3 {
        for index in 0..2 {
            while !c.job(&id).unwrap().runs()[0].maps_complete() {
                run_one(&mut c, &w, &clock, 1);
            }
            lose_map_output(&mut c, &w, &id, index, &clock);
        }
    }
    while !c.job(&id).unwrap().runs()[0].maps_complete() {
        run_one(&mut c, &w, &clock, 1);
    }
    let actions = run_one(&mut c, &w, &clock, 1);
    assert!(matches!(&actions[..], [Action::WriteSuccess { .. }]), "{actions:?}");
    let maps = c.job(&id).unwrap().runs()[0].tasks(TaskKind::Map);
    assert_eq!((maps[0].outputs_lost, maps[1].outputs_lost), (3, 3));
}

#[test]
fn the_count_survives_a_coordinator_restart_and_the_hint_follows_the_store() {
    let clock = Clock::new();
    let mut a = file_core();
    a.cfg.store = StoreUrl::parse("s3://bucket/store/").unwrap();
    let w = worker(&mut a, &clock);
    let id = a.submit(spec("memory:///out/", 1, 0), splits(1), 1);
    for _ in 0..3 {
        run_one(&mut a, &w, &clock, 1);
        lose_map_output(&mut a, &w, &id, 0, &clock);
    }
    run_one(&mut a, &w, &clock, 1);
    let mut b = file_core();
    b.cfg.store = a.cfg.store.clone();
    b.replay(a.take_journal());
    assert_eq!(b.job(&id).unwrap().runs()[0].tasks(TaskKind::Map)[0].outputs_lost, 3, "replayed");
    let w2 = worker(&mut b, &clock);
    lose_map_output(&mut b, &w2, &id, 0, &clock);
    match b.job(&id).unwrap().state() {
        JobState::Failed { error, .. } => assert_eq!(
            error,
            "map 0's output was lost 4 times: do the workers share the store? \
             (every worker's AWS_* settings must reach the same S3 service for s3://bucket/store/)"
        ),
        s => panic!("{s:?}"),
    }
}
