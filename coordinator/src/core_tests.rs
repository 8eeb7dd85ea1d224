//! Job-lifecycle tests of [`Core`] with a fake clock: no network, no runtime, no store.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use quern_api::split::Split;
use quern_api::{AttemptId, Counters, StoreUrl, TaskKind, WorkerId, pb};

use super::*;
use crate::job::{JobSpec, JobState};
use crate::policy::PriorityFifo;

pub(super) struct Clock(Instant, u64);

impl Clock {
    pub(super) fn new() -> Self {
        Clock(Instant::now(), 1_000)
    }
    pub(super) fn now(&self) -> Now {
        Now { at: self.0, wall_ms: self.1 }
    }
    pub(super) fn advance(&mut self, d: Duration) {
        self.0 += d;
        self.1 += d.as_millis() as u64;
    }
}

pub(super) fn core() -> Core {
    Core::new(
        CoreConfig {
            store: StoreUrl::parse("memory:///store/").unwrap(),
            heartbeat_timeout: Duration::from_secs(5),
            max_attempts: 2,
            epoch_ms: 7,
            speculation: Some(crate::job::Speculation::default()),
            max_jobs: 100,
            job_wait: Duration::from_secs(30),
            task_timeout: Duration::from_secs(60),
            poll_bytes: 1 << 20,
            preemption: None,
            history: crate::core::History::default(),
            delay: crate::placement::Delay::default(),
        },
        Box::new(PriorityFifo),
    )
}

pub(super) fn spec(output: &str, reducers: u32, priority: i32) -> JobSpec {
    JobSpec {
        name: "wordcount".into(),
        inputs: vec![StoreUrl::parse("memory:///in/").unwrap()],
        output: StoreUrl::parse(output).unwrap(),
        reducers,
        split_size: 100,
        params: Default::default(),
        priority,
        skip_bad_records: false,
        stages: Vec::new(),
        side: Default::default(),
        formats: Default::default(),
        generate_rows: 0,
    }
}

pub(super) fn splits(n: usize) -> Vec<Split> {
    (0..n).map(|i| Split { url: format!("memory:///in/{i}"), start: 0, end: 10, object_size: 10 }).collect()
}

pub(super) fn worker(c: &mut Core, clock: &Clock) -> WorkerId {
    c.register("h".into(), "r".into(), 1, BTreeSet::from(["wordcount".to_string()]), clock.now())
}

pub(super) fn attempt_of(a: &pb::TaskAssignment) -> AttemptId {
    AttemptId::try_from(a.attempt.as_ref()).unwrap()
}

pub(super) fn map_ok(a: &pb::TaskAssignment, reducers: usize) -> Outcome {
    assert!(matches!(&a.task, Some(pb::task_assignment::Task::Map(_))), "not a map");
    let mut counters = Counters::new();
    counters.add("MAP_INPUT_RECORDS", 10);
    Outcome::Succeeded { counters, segments: Some(vec![Segment::default(); reducers]) }
}

pub(super) fn reduce_ok() -> Outcome {
    let mut counters = Counters::new();
    counters.add("REDUCE_OUTPUT_RECORDS", 1);
    Outcome::Succeeded { counters, segments: None }
}

/// Runs one task on `w` to success (committing reduces); returns the actions.
pub(super) fn run_one(c: &mut Core, w: &WorkerId, clock: &Clock, reducers: usize) -> Vec<Action> {
    let a = c.poll(w, 1, clock.now()).unwrap().pop().expect("a task");
    let id = attempt_of(&a);
    let outcome = if id.task.kind == TaskKind::Map {
        map_ok(&a, reducers)
    } else {
        c.commit(w, &id).unwrap();
        c.commit_done(&id);
        reduce_ok()
    };
    let (r, actions) = c.report(w, &id, outcome, clock.now());
    r.unwrap();
    actions
}

#[test]
fn a_job_runs_maps_then_reduces_then_commits() {
    let clock = Clock::new();
    let mut c = core();
    let w = worker(&mut c, &clock);
    let id = c.submit(spec("memory:///out/", 2, 0), splits(3), 1);
    assert!(!c.job(&id).unwrap().started());
    for _ in 0..3 {
        assert!(run_one(&mut c, &w, &clock, 2).is_empty());
    }
    // Reduces see every map output.
    let a = c.poll(&w, 1, clock.now()).unwrap().pop().unwrap();
    match &a.task {
        Some(pb::task_assignment::Task::Reduce(r)) => {
            assert_eq!(r.inputs.len(), 3);
            assert_eq!(r.part_url, "memory:///out/part-00000");
        }
        _ => panic!("expected a reduce"),
    }
    let id0 = attempt_of(&a);
    c.commit(&w, &id0).unwrap();
    c.report(&w, &id0, reduce_ok(), clock.now()).0.unwrap();
    let actions = run_one(&mut c, &w, &clock, 2);
    assert_eq!(
        actions,
        vec![Action::WriteSuccess {
            job: id.clone(),
            output: StoreUrl::parse("memory:///out/").unwrap(),
            temporary: StoreUrl::parse(&format!("memory:///out/_temporary/{id}/")).unwrap()
        }]
    );
    assert_eq!(c.job(&id).unwrap().state(), &JobState::Committing);
    let cleanup = c.finalized(&id, Ok(()), 5);
    assert!(matches!(&cleanup[..], [Action::Cleanup { objects, .. }] if objects.is_empty()));
    let job = c.job(&id).unwrap();
    assert_eq!(job.state(), &JobState::Succeeded { finished_ms: 5 });
    assert_eq!(job.counters().get("MAP_INPUT_RECORDS"), 30);
    assert_eq!(job.counters().get("REDUCE_OUTPUT_RECORDS"), 2);
    assert_eq!(job.state().finished_ms(), Some(5));
}

#[test]
fn reduces_wait_for_every_map() {
    let clock = Clock::new();
    let mut c = core();
    let (w1, w2) = (worker(&mut c, &clock), worker(&mut c, &clock));
    c.submit(spec("memory:///out/", 1, 0), splits(2), 1);
    let a = c.poll(&w1, 1, clock.now()).unwrap().pop().unwrap();
    run_one(&mut c, &w2, &clock, 1);
    // One map still running: nothing for w2.
    assert!(c.poll(&w2, 1, clock.now()).unwrap().is_empty());
    c.report(&w1, &attempt_of(&a), map_ok(&a, 1), clock.now()).0.unwrap();
    let next = c.poll(&w2, 1, clock.now()).unwrap();
    assert_eq!(attempt_of(&next[0]).task.kind, TaskKind::Reduce);
}

#[test]
fn a_lost_worker_s_attempt_runs_elsewhere_and_its_late_report_is_rejected() {
    let mut clock = Clock::new();
    let mut c = core();
    let (w1, w2) = (worker(&mut c, &clock), worker(&mut c, &clock));
    let id = c.submit(spec("memory:///out/", 1, 0), splits(1), 1);
    let a1 = c.poll(&w1, 1, clock.now()).unwrap().pop().unwrap();
    // w2 keeps heartbeating, w1 goes silent past the timeout.
    clock.advance(Duration::from_secs(3));
    c.heartbeat(&w2, clock.now()).unwrap();
    clock.advance(Duration::from_secs(3));
    assert!(c.tick(clock.now()));
    assert!(c.heartbeat(&w1, clock.now()).is_none(), "lost worker must register again");
    let a2 = c.poll(&w2, 1, clock.now()).unwrap().pop().unwrap();
    assert_eq!(attempt_of(&a2).attempt, 2);
    // The zombie's success is rejected and its output deleted.
    let (r, actions) = c.report(&w1, &attempt_of(&a1), map_ok(&a1, 1), clock.now());
    assert!(r.is_err());
    assert!(matches!(&actions[..], [Action::Delete(_)]));
    c.report(&w2, &attempt_of(&a2), map_ok(&a2, 1), clock.now()).0.unwrap();
    assert_eq!(c.job(&id).unwrap().counters().get("MAP_INPUT_RECORDS"), 10, "counted once");
}

#[test]
fn a_finished_map_of_a_lost_worker_is_not_run_again() {
    let mut clock = Clock::new();
    let mut c = core();
    let (w1, w2) = (worker(&mut c, &clock), worker(&mut c, &clock));
    let id = c.submit(spec("memory:///out/", 1, 0), splits(2), 1);
    run_one(&mut c, &w1, &clock, 1);
    clock.advance(Duration::from_secs(6));
    c.heartbeat(&w2, clock.now()).unwrap();
    c.tick(clock.now());
    run_one(&mut c, &w2, &clock, 1);
    let job = c.job(&id).unwrap();
    assert!(job.runs()[0].maps_complete());
    assert_eq!(job.runs()[0].tasks(TaskKind::Map).iter().map(|t| t.attempts).sum::<u32>(), 2);
}

#[test]
fn failures_exhaust_attempts_then_the_job_fails_and_cleans_up() {
    let clock = Clock::new();
    let mut c = core();
    let w = worker(&mut c, &clock);
    let id = c.submit(spec("memory:///out/", 2, 0), splits(1), 1);
    let fail = |msg: &str| Outcome::Failed { kind: FailureKind::UserCode, message: msg.into(), lost_map: None };
    let a = c.poll(&w, 1, clock.now()).unwrap().pop().unwrap();
    assert!(c.report(&w, &attempt_of(&a), fail("boom 1"), clock.now()).1.is_empty());
    let a = c.poll(&w, 1, clock.now()).unwrap().pop().unwrap();
    assert_eq!(attempt_of(&a).attempt, 2);
    let (_, actions) = c.report(&w, &attempt_of(&a), fail("boom 2"), clock.now());
    assert!(matches!(&actions[..], [Action::Cleanup { .. }]));
    match c.job(&id).unwrap().state() {
        JobState::Failed { error, .. } => assert!(error.contains("map task 0") && error.contains("boom 2"), "{error}"),
        s => panic!("{s:?}"),
    }
    assert!(c.poll(&w, 1, clock.now()).unwrap().is_empty());
}

#[test]
fn lost_map_output_reruns_the_map_without_counting_against_the_reducer() {
    let clock = Clock::new();
    let mut c = core();
    let w = worker(&mut c, &clock);
    let id = c.submit(spec("memory:///out/", 1, 0), splits(1), 1);
    run_one(&mut c, &w, &clock, 1);
    let r = c.poll(&w, 1, clock.now()).unwrap().pop().unwrap();
    let first = match &c.job(&id).unwrap().runs()[0].tasks(TaskKind::Map)[0].state {
        crate::task::TaskState::Succeeded { output: Some(o), .. } => o.clone(),
        s => panic!("{s:?}"),
    };
    let lost_map = Some(LostMap { index: 0, attempt: first.attempt });
    let lost = Outcome::Failed { kind: FailureKind::MapOutputLost, message: "crc".into(), lost_map };
    let (_, actions) = c.report(&w, &attempt_of(&r), lost, clock.now());
    let bad = c.job(&id).unwrap().runs()[0].shuffle_url_of(0, &first);
    assert_eq!(actions, vec![Action::Delete(bad)], "the bad output, named by the coordinator, is deleted");
    let next = c.poll(&w, 1, clock.now()).unwrap().pop().unwrap();
    assert_eq!(attempt_of(&next).task.kind, TaskKind::Map);
    assert_eq!(attempt_of(&next).attempt, 2);
    c.report(&w, &attempt_of(&next), map_ok(&next, 1), clock.now()).0.unwrap();
    // A second reducer reporting the same (old) object does not undo the re-run.
    let w2 = worker(&mut c, &clock);
    let r2 = c.poll(&w2, 1, clock.now()).unwrap().pop().unwrap();
    let again = Outcome::Failed { kind: FailureKind::MapOutputLost, message: "crc".into(), lost_map };
    c.report(&w2, &attempt_of(&r2), again, clock.now()).0.unwrap();
    assert!(c.job(&id).unwrap().runs()[0].maps_complete(), "the new output stands");
    let job = c.job(&id).unwrap();
    assert_eq!(job.runs()[0].tasks(TaskKind::Reduce)[0].failures, 0);
    // The lost run's counters are gone with it: the map's records count once.
    assert_eq!(job.counters().get("MAP_INPUT_RECORDS"), 10);
    run_one(&mut c, &w, &clock, 1);
    assert_eq!(c.job(&id).unwrap().state(), &JobState::Committing);
}

#[test]
fn kill_cancels_running_attempts_and_deletes_committed_parts() {
    let clock = Clock::new();
    let mut c = core();
    let (w1, w2) = (worker(&mut c, &clock), worker(&mut c, &clock));
    let id = c.submit(spec("memory:///out/", 2, 0), splits(1), 1);
    run_one(&mut c, &w1, &clock, 2);
    run_one(&mut c, &w1, &clock, 2); // reduce 0 committed
    let running = c.poll(&w2, 1, clock.now()).unwrap().pop().unwrap();
    let (state, actions) = c.kill(&id, 9).unwrap();
    assert!(matches!(state, JobState::Killed { .. }));
    match &actions[..] {
        [Action::Cleanup { objects: delete, dirs, .. }] => {
            assert_eq!(dirs.len(), 2, "scratch and temporary directories");
            assert_eq!(delete, &vec![StoreUrl::parse("memory:///out/part-00000").unwrap()])
        }
        a => panic!("{a:?}"),
    }
    assert_eq!(c.heartbeat(&w2, clock.now()).unwrap(), vec![attempt_of(&running)]);
    // Its report after the kill is refused, and a commit too.
    assert!(c.commit(&w2, &attempt_of(&running)).is_err());
    assert!(c.report(&w2, &attempt_of(&running), reduce_ok(), clock.now()).0.is_err());
}

#[test]
fn a_commit_in_flight_outlives_its_lost_attempt_and_a_failed_job_deletes_its_part() {
    let mut clock = Clock::new();
    let mut c = core();
    let (w1, w2) = (worker(&mut c, &clock), worker(&mut c, &clock));
    let id = c.submit(spec("memory:///out/", 1, 0), splits(1), 1);
    run_one(&mut c, &w1, &clock, 1);
    let first = attempt_of(&c.poll(&w1, 1, clock.now()).unwrap().pop().unwrap());
    c.commit(&w1, &first).unwrap();
    // w1 is lost while the store completes its part: the reduce runs again on w2, whose
    // commit must wait until the store has answered for the first.
    clock.advance(Duration::from_secs(3));
    c.heartbeat(&w2, clock.now()).unwrap();
    clock.advance(Duration::from_secs(3));
    assert!(c.tick(clock.now()));
    let second = attempt_of(&c.poll(&w2, 1, clock.now()).unwrap().pop().unwrap());
    assert_eq!(c.commit(&w2, &second), Err("a part of this task is being made visible"));
    c.commit_done(&first);
    assert!(c.commit(&w2, &second).is_ok(), "granted once the first is settled");
    // The job is killed before the second reports: the part it may have written goes.
    let (_, actions) = c.kill(&id, 9).unwrap();
    match &actions[..] {
        [Action::Cleanup { objects, .. }] => {
            assert_eq!(objects, &vec![StoreUrl::parse("memory:///out/part-00000").unwrap()]);
        }
        a => panic!("{a:?}"),
    }
}

#[test]
fn higher_priority_first_then_submission_order_and_only_on_capable_workers() {
    let clock = Clock::new();
    let mut c = core();
    let low = c.submit(spec("memory:///a/", 1, 0), splits(1), 1);
    let high = c.submit(spec("memory:///b/", 1, 5), splits(1), 1);
    let other = c.register("h".into(), "r".into(), 4, BTreeSet::from(["grep".to_string()]), clock.now());
    assert!(c.poll(&other, 4, clock.now()).unwrap().is_empty(), "worker cannot run wordcount");
    let w = c.register("h".into(), "r".into(), 2, BTreeSet::from(["wordcount".to_string()]), clock.now());
    let got = c.poll(&w, 5, clock.now()).unwrap();
    assert_eq!(got.len(), 2, "slots limit the assignments");
    assert_eq!(attempt_of(&got[0]).task.job, high);
    assert_eq!(attempt_of(&got[1]).task.job, low);
    assert_eq!(c.output_in_use(&StoreUrl::parse("memory:///a").unwrap()), Some(&low));
}

#[test]
fn a_journal_replayed_into_a_new_core_resumes_without_rerunning_committed_tasks() {
    let clock = Clock::new();
    let mut a = core();
    let w = worker(&mut a, &clock);
    let id = a.submit(spec("memory:///out/", 1, 0), splits(3), 1);
    run_one(&mut a, &w, &clock, 1);
    run_one(&mut a, &w, &clock, 1);
    let _running = a.poll(&w, 1, clock.now()).unwrap();
    // Through JSON, as the journal stores it.
    let text: Vec<String> = a.take_journal().iter().map(|r| serde_json::to_string(r).unwrap()).collect();
    let records: Vec<crate::journal::Record> = text.iter().map(|t| serde_json::from_str(t).unwrap()).collect();
    assert_eq!(records.len(), 3, "submit and two successes; the running attempt is not journalled");

    let mut b = core();
    assert!(b.replay(records).is_empty());
    let job = b.job(&id).unwrap();
    assert_eq!(job.progress(TaskKind::Map), (3, 2, 0));
    assert_eq!(job.counters().get("MAP_INPUT_RECORDS"), 20);
    // Only the unfinished map runs again, with a fresh attempt number.
    let w2 = worker(&mut b, &clock);
    let next = b.poll(&w2, 1, clock.now()).unwrap().pop().unwrap();
    assert_eq!(attempt_of(&next).task.index, 2);
    b.report(&w2, &attempt_of(&next), map_ok(&next, 1), clock.now()).0.unwrap();
    let actions = run_one(&mut b, &w2, &clock, 1);
    assert!(matches!(&actions[..], [Action::WriteSuccess { .. }]));
}

#[test]
fn a_committing_job_is_committed_again_after_a_replay() {
    let clock = Clock::new();
    let mut a = core();
    let w = worker(&mut a, &clock);
    let id = a.submit(spec("memory:///out/", 1, 0), splits(1), 1);
    run_one(&mut a, &w, &clock, 1);
    run_one(&mut a, &w, &clock, 1);
    assert_eq!(a.job(&id).unwrap().state(), &JobState::Committing);
    let mut b = core();
    let actions = b.replay(a.take_journal());
    assert!(matches!(&actions[..], [Action::WriteSuccess { job, .. }] if *job == id));
    b.finalized(&id, Ok(()), 3);
    // The whole history: a's decisions, then b's after its replay.
    let mut a_again = core();
    let w2 = worker(&mut a_again, &clock);
    a_again.submit(spec("memory:///out/", 1, 0), splits(1), 1);
    run_one(&mut a_again, &w2, &clock, 1);
    run_one(&mut a_again, &w2, &clock, 1);
    let mut history = a_again.take_journal();
    history.extend(b.take_journal());
    let mut c = core();
    assert!(c.replay(history).is_empty(), "an ended job needs nothing more");
    assert!(matches!(c.job(&id).unwrap().state(), JobState::Succeeded { .. }));
}

#[test]
fn few_tasks_are_spread_over_workers_in_proportion_to_their_free_slots() {
    let clock = Clock::new();
    let mut c = core();
    let jobs = || BTreeSet::from(["wordcount".to_string()]);
    let big = c.register("a".into(), "r".into(), 6, jobs(), clock.now());
    let small = c.register("b".into(), "r".into(), 2, jobs(), clock.now());
    c.submit(spec("memory:///out/", 1, 0), splits(4), 1);
    // 4 tasks for 8 free slots: the 6-slot worker gets 3, the 2-slot one 1.
    assert_eq!(c.poll(&big, 6, clock.now()).unwrap().len(), 3);
    assert_eq!(c.poll(&small, 2, clock.now()).unwrap().len(), 1);
    // With more tasks than slots, everyone fills up.
    c.submit(spec("memory:///out2/", 1, 0), splits(20), 1);
    assert_eq!(c.poll(&big, 3, clock.now()).unwrap().len(), 3);
    assert_eq!(c.poll(&small, 1, clock.now()).unwrap().len(), 1);
}

#[test]
fn a_reduce_goes_to_the_worker_caching_most_of_its_partition() {
    let clock = Clock::new();
    let mut c = core();
    let w = worker(&mut c, &clock);
    let id = c.submit(spec("memory:///out/", 3, 0), splits(2), 1);
    // Two maps whose outputs hold (partition 0, 1, 2) = (10, 500, 40) and (20, 0, 30) bytes.
    for sizes in [[10u64, 500, 40], [20, 0, 30]] {
        let a = c.poll(&w, 1, clock.now()).unwrap().pop().unwrap();
        let segments = sizes.iter().map(|&length| Segment { length, ..Default::default() }).collect();
        let out = Outcome::Succeeded { counters: Counters::new(), segments: Some(segments) };
        c.report(&w, &attempt_of(&a), out, clock.now()).0.unwrap();
    }
    let job = c.job(&id).unwrap();
    let url0 = match &job.runs()[0].tasks(TaskKind::Map)[0].state {
        crate::task::TaskState::Succeeded { output: Some(o), .. } => job.runs()[0].shuffle_url_of(0, o),
        s => panic!("{s:?}"),
    };
    let cached = vec![crate::convert::CachedRange { url: url0, start: 0, end: 550 }];
    assert_eq!(job.runs()[0].best_reduce_for(0..3, &cached), Some(1), "partition 1 has 500 bytes in the cached output");
    assert_eq!(job.runs()[0].best_reduce_for([0, 2].into_iter(), &cached), Some(2));
    assert_eq!(job.runs()[0].best_reduce_for(0..3, &[]), None, "nothing cached: no preference");
}

#[test]
fn a_pipeline_runs_its_stages_in_order_and_replays_from_the_journal() {
    let clock = Clock::new();
    let mut c = core();
    let w = c.register(
        "h".into(),
        "r".into(),
        1,
        BTreeSet::from(["wordcount".to_string(), "topn".to_string()]),
        clock.now(),
    );
    let mut s = spec("memory:///out/", 3, 0);
    s.name = "topwords".into();
    s.stages = vec![
        crate::job::Stage {
            job: "wordcount".into(),
            params: Default::default(),
            reducers: 2,
            formats: Default::default(),
            inputs: Vec::new(),
        },
        crate::job::Stage {
            job: "topn".into(),
            params: Default::default(),
            reducers: 1,
            formats: Default::default(),
            inputs: Vec::new(),
        },
    ];
    let id = c.submit(s, splits(1), 1);
    run_one(&mut c, &w, &clock, 2);
    run_one(&mut c, &w, &clock, 2);
    assert!(c.take_actions().is_empty(), "a chain's second stage waits for the first");
    let actions = run_one(&mut c, &w, &clock, 2);
    let (output, next) = match &actions[..] {
        [Action::ClearStage { output, .. }, Action::StartStage { stage: 1, inputs, .. }] => {
            (output.clone(), inputs.clone())
        }
        a => panic!("{a:?}"),
    };
    assert!(output.as_str().contains(&format!("jobs/{id}/stage-0/")), "{output}");
    assert_eq!(next, vec![output.clone()], "a chain reads the stage before");
    assert!(c.poll(&w, 1, clock.now()).unwrap().is_empty(), "nothing runs until the next stage is listed");
    c.start_stage(&id, 1, splits(2));
    assert_eq!(c.job(&id).unwrap().shown_stages(), vec![1]);
    let next = c.poll(&w, 1, clock.now()).unwrap().pop().unwrap();
    assert_eq!(next.job, "topn");
    assert!(attempt_of(&next).attempt > 10_000, "stage attempts never collide with the last stage's");
    c.report(&w, &attempt_of(&next), map_ok(&next, 1), clock.now()).0.unwrap();
    run_one(&mut c, &w, &clock, 1);
    let last = run_one(&mut c, &w, &clock, 1);
    assert!(matches!(&last[..], [Action::WriteSuccess { output, .. }] if output.as_str() == "memory:///out/"));
    assert_eq!(c.job(&id).unwrap().counters().get("MAP_INPUT_RECORDS"), 30, "both stages count");

    // A restarted coordinator is back in stage 2, committing.
    let mut b = core();
    let resume = b.replay(c.take_journal());
    assert!(matches!(&resume[..], [Action::WriteSuccess { .. }]));
    assert_eq!(b.job(&id).unwrap().shown_stages(), vec![1]);
    assert_eq!(status_name(&b, &id), "topwords");
}

fn status_name(c: &Core, id: &quern_api::JobId) -> String {
    crate::status::job_status(c.job(id).unwrap()).job
}

#[test]
fn forged_reports_change_nothing_and_delete_only_names_the_coordinator_built() {
    let clock = Clock::new();
    let mut c = core();
    let (w, intruder) = (worker(&mut c, &clock), worker(&mut c, &clock));
    let id = c.submit(spec("memory:///out/", 1, 0), splits(2), 1);
    let a = c.poll(&w, 1, clock.now()).unwrap().pop().unwrap();
    let held = attempt_of(&a);
    // Another worker reports the attempt w holds: refused, and nothing is deleted (w may
    // be writing that object right now).
    let (r, actions) = c.report(&intruder, &held, map_ok(&a, 1), clock.now());
    assert_eq!(r, Err("attempt is not live"));
    assert!(actions.is_empty(), "{actions:?}");
    // An attempt number never handed out: refused, nothing deleted.
    let never = AttemptId { attempt: 99, ..held.clone() };
    let (r, actions) = c.report(&w, &never, map_ok(&a, 1), clock.now());
    assert!(r.is_err() && actions.is_empty(), "{actions:?}");
    // The real report is taken; a replay of it afterwards deletes nothing: the object is
    // the task's output now.
    c.report(&w, &held, map_ok(&a, 1), clock.now()).0.unwrap();
    let (r, actions) = c.report(&w, &held, map_ok(&a, 1), clock.now());
    assert!(r.is_err() && actions.is_empty(), "the winning output is never deleted: {actions:?}");
    // A lost-map report from a worker holding no reduce attempt changes nothing.
    let lost = Outcome::Failed {
        kind: FailureKind::MapOutputLost,
        message: "forged".into(),
        lost_map: Some(LostMap { index: held.task.index, attempt: held.attempt }),
    };
    let fake_reduce = AttemptId { task: TaskId { job: id.clone(), kind: TaskKind::Reduce, index: 0 }, attempt: 1 };
    let (r, actions) = c.report(&intruder, &fake_reduce, lost, clock.now());
    assert!(r.is_err() && actions.is_empty());
    assert!(c.job(&id).unwrap().runs()[0].tasks(TaskKind::Map)[held.task.index as usize].is_done());
    // A stale report of an attempt its worker really ran deletes that attempt's object,
    // whose name the coordinator builds from the ids.
    let b = c.poll(&w, 1, clock.now()).unwrap().pop().unwrap();
    let second = attempt_of(&b);
    c.worker_lost(&w, clock.now());
    let (_, actions) = c.report(&intruder, &second, map_ok(&b, 1), clock.now());
    assert!(actions.is_empty(), "a worker that did not run the attempt deletes nothing");
    let (r, actions) = c.report(&w, &second, map_ok(&b, 1), clock.now());
    assert_eq!(r, Err("attempt is not live"));
    let expected = c.job(&id).unwrap().runs()[0].shuffle_url(second.task.index, second.attempt);
    assert!(expected.as_str().starts_with("memory:///store/jobs/"), "{expected}");
    assert_eq!(actions, vec![Action::Delete(expected)]);
}

#[test]
fn an_attempt_the_worker_no_longer_lists_fails_and_frees_its_slot() {
    let mut clock = Clock::new();
    let mut c = core();
    let w = worker(&mut c, &clock);
    let id = c.submit(spec("memory:///out/", 1, 0), splits(1), 1);
    let a = attempt_of(&c.poll(&w, 1, clock.now()).unwrap().pop().unwrap());
    let listed = BTreeSet::from([a.clone()]);
    let none = BTreeSet::new();
    // Just handed out: a heartbeat sent before the assignment arrived does not list it yet.
    assert!(c.dropped_attempts(&w, &none, clock.now()).is_empty());
    clock.advance(Duration::from_secs(11));
    assert!(c.dropped_attempts(&w, &listed, clock.now()).is_empty(), "listed: still running");
    assert!(c.workers()[&w].running.contains(&a));
    c.dropped_attempts(&w, &none, clock.now());
    assert!(c.workers()[&w].running.is_empty(), "the slot is free again");
    let job = c.job(&id).unwrap();
    assert_eq!(job.runs()[0].tasks(TaskKind::Map)[0].failures, 1, "a vanished attempt counts as a failure");
    let again = attempt_of(&c.poll(&w, 1, clock.now()).unwrap().pop().unwrap());
    assert_eq!(again.attempt, 2);
}

#[test]
fn an_attempt_without_progress_for_the_task_timeout_fails_and_runs_again() {
    let mut clock = Clock::new();
    let mut c = core();
    let (w1, w2) = (worker(&mut c, &clock), worker(&mut c, &clock));
    let id = c.submit(spec("memory:///out/", 1, 0), splits(1), 1);
    let a = attempt_of(&c.poll(&w1, 1, clock.now()).unwrap().pop().unwrap());
    // Progress keeps it alive past the timeout.
    for steps in 1..=3 {
        clock.advance(Duration::from_secs(40));
        c.heartbeat(&w1, clock.now());
        c.heartbeat(&w2, clock.now());
        c.progressed(&w1, &[(a.clone(), steps)], clock.now());
        assert!(c.fail_stalled(clock.now()).is_empty(), "progressing at {steps}");
    }
    // The same count again is no progress.
    clock.advance(Duration::from_secs(40));
    c.progressed(&w1, &[(a.clone(), 3)], clock.now());
    c.heartbeat(&w1, clock.now());
    c.heartbeat(&w2, clock.now());
    assert!(c.fail_stalled(clock.now()).is_empty());
    clock.advance(Duration::from_secs(30));
    c.heartbeat(&w1, clock.now());
    c.heartbeat(&w2, clock.now());
    c.fail_stalled(clock.now());
    let task = &c.job(&id).unwrap().runs()[0].tasks(TaskKind::Map)[0];
    assert_eq!(task.failures, 1);
    assert_eq!(c.heartbeat(&w1, clock.now()).unwrap(), vec![a], "the stalled attempt is cancelled at its worker");
    let again = c.poll(&w2, 1, clock.now()).unwrap().pop().expect("re-run elsewhere");
    assert_eq!(attempt_of(&again).attempt, 2);
}

#[test]
fn a_job_its_worker_cannot_build_fails_at_once() {
    let clock = Clock::new();
    let mut c = core();
    let w = worker(&mut c, &clock);
    let id = c.submit(spec("memory:///out/", 1, 0), splits(2), 1);
    let a = attempt_of(&c.poll(&w, 1, clock.now()).unwrap().pop().unwrap());
    let config = Outcome::Failed { kind: FailureKind::Config, message: "bad parameter".into(), lost_map: None };
    c.report(&w, &a, config, clock.now()).0.unwrap();
    match c.job(&id).unwrap().state() {
        JobState::Failed { error, .. } => assert!(error.contains("bad parameter"), "{error}"),
        s => panic!("{s:?}"),
    }
}

#[test]
fn a_malformed_success_fails_the_attempt_at_once() {
    let clock = Clock::new();
    let mut c = core();
    let w = worker(&mut c, &clock);
    let id = c.submit(spec("memory:///out/", 1, 0), splits(1), 1);
    let a = attempt_of(&c.poll(&w, 1, clock.now()).unwrap().pop().unwrap());
    let wrong = Outcome::Succeeded { counters: Counters::new(), segments: Some(vec![Segment::default(); 5]) };
    c.report(&w, &a, wrong, clock.now()).0.unwrap();
    let task = &c.job(&id).unwrap().runs()[0].tasks(TaskKind::Map)[0];
    assert_eq!(task.failures, 1);
    assert!(task.last_error.as_deref().unwrap_or_default().contains("wrong number of partitions"));
    assert!(c.workers()[&w].running.is_empty(), "its slot is free");
}

#[test]
fn a_lost_map_report_naming_no_current_output_counts_against_the_reducer() {
    let clock = Clock::new();
    let mut c = core();
    let w = worker(&mut c, &clock);
    let id = c.submit(spec("memory:///out/", 1, 0), splits(1), 1);
    run_one(&mut c, &w, &clock, 1);
    let r = attempt_of(&c.poll(&w, 1, clock.now()).unwrap().pop().unwrap());
    let stale = Outcome::Failed {
        kind: FailureKind::MapOutputLost,
        message: "crc".into(),
        lost_map: Some(LostMap { index: 0, attempt: 7 }),
    };
    let (_, actions) = c.report(&w, &r, stale, clock.now());
    assert!(actions.is_empty(), "nothing is deleted");
    let job = c.job(&id).unwrap();
    assert_eq!(job.runs()[0].tasks(TaskKind::Reduce)[0].failures, 1, "counted");
    assert!(job.runs()[0].tasks(TaskKind::Map)[0].is_done(), "the map output stands");
}

#[test]
fn a_poll_response_stays_within_the_message_budget_and_an_oversized_task_fails_its_job() {
    let clock = Clock::new();
    let mut c = core();
    c.cfg.poll_bytes = 600;
    let w = c.register("h".into(), "r".into(), 8, BTreeSet::from(["wordcount".to_string()]), clock.now());
    let id = c.submit(spec("memory:///out/", 1, 0), splits(8), 1);
    let first = c.poll(&w, 8, clock.now()).unwrap();
    let bytes: usize = first.iter().map(prost::Message::encoded_len).sum();
    assert!(!first.is_empty() && first.len() < 8 && bytes <= 600, "{} tasks, {bytes} bytes", first.len());
    assert_eq!(c.workers()[&w].running.len(), first.len(), "only what was sent is running");
    assert!(c.job(&id).unwrap().is_running());

    let mut big = spec("memory:///big/", 1, 0);
    big.params.insert("stopwords".into(), "x".repeat(1000));
    big.priority = 10;
    let big_id = c.submit(big, splits(1), 2);
    let w2 = c.register("h2".into(), "r".into(), 1, BTreeSet::from(["wordcount".to_string()]), clock.now());
    let got = c.poll(&w2, 1, clock.now()).unwrap();
    assert!(got.iter().all(|a| a.job == "wordcount" && attempt_of(a).task.job == id), "the other job's task fits");
    match c.job(&big_id).unwrap().state() {
        JobState::Failed { error, .. } => assert!(error.contains("more than a message may carry"), "{error}"),
        s => panic!("{s:?}"),
    }
    assert!(matches!(&c.take_actions()[..], [Action::Cleanup { .. }]));
}

#[test]
fn only_an_ended_job_is_marked_cleaned_once_and_the_mark_survives_a_replay() {
    let mut a = core();
    let id = a.submit(spec("memory:///out/", 1, 0), splits(1), 1);
    a.cleaned(&id);
    assert!(!a.job(&id).unwrap().is_cleaned(), "a running job keeps its data");
    a.kill(&id, 2);
    a.cleaned(&id);
    a.cleaned(&id);
    let journal = a.take_journal();
    let marks = journal.iter().filter(|r| matches!(r, crate::journal::Record::JobCleaned { .. })).count();
    assert_eq!(marks, 1);
    let mut b = core();
    b.replay(journal);
    assert!(b.job(&id).unwrap().is_cleaned());
}

#[test]
fn a_snapshot_replays_to_the_same_jobs_as_the_records_it_compacts() {
    use crate::snapshot::Compactor;
    use crate::status::{job_status, job_tasks};
    let clock = Clock::new();
    let mut c = core();
    let w = worker(&mut c, &clock);
    // Succeeded (2 maps, 2 reduces) and its data deleted; killed after a map; running with
    // one map of two done, whose output index its reduces still need.
    let done = c.submit(spec("memory:///a/", 2, 0), splits(2), 1);
    for _ in 0..4 {
        run_one(&mut c, &w, &clock, 2);
    }
    c.finalized(&done, Ok(()), 5);
    c.cleaned(&done);
    let killed = c.submit(spec("memory:///b/", 2, 0), splits(2), 2);
    run_one(&mut c, &w, &clock, 2);
    c.kill(&killed, 6);
    let running = c.submit(spec("memory:///c/", 2, 0), splits(2), 3);
    run_one(&mut c, &w, &clock, 2);
    let records = c.take_journal();
    let snapshot: Vec<Record> = Compactor::new(records.clone()).records().cloned().collect();
    assert!(snapshot.len() < records.len(), "the succeeded job's start of commit goes");

    let (mut a, mut b) = (core(), core());
    a.replay(records);
    b.replay(snapshot.clone());
    for id in [&done, &killed, &running] {
        let (ja, jb) = (a.job(id).unwrap(), b.job(id).unwrap());
        assert_eq!(job_status(ja), job_status(jb));
        assert_eq!(job_tasks(ja, clock.now()), job_tasks(jb, clock.now()));
        assert_eq!(ja.is_cleaned(), jb.is_cleaned());
    }
    for r in &snapshot {
        if let Record::TaskSucceeded { job, output: Some(o), .. } = r {
            assert_eq!(o.segments.is_empty(), *job != running, "only a running job keeps its map output index");
        }
    }
    // A snapshot of a snapshot is the same snapshot, and ids go on after it.
    assert_eq!(Compactor::new(snapshot.clone()).records().cloned().collect::<Vec<_>>(), snapshot);
    let next = b.submit(spec("memory:///d/", 1, 0), splits(1), 7);
    assert!(![&done, &killed, &running].contains(&&next));
    let w2 = worker(&mut b, &clock);
    let first = attempt_of(&b.poll(&w2, 1, clock.now()).unwrap().pop().unwrap());
    assert_eq!((&first.task.job, first.task.kind, first.task.index), (&running, TaskKind::Map, 1), "its other map");
}

#[test]
fn the_attempt_list_shows_each_attempt_on_the_wall_clock_and_open_ones_as_killed_at_the_job_end() {
    use crate::status::job_tasks;
    let mut clock = Clock::new();
    let mut c = core();
    let w = worker(&mut c, &clock);
    let id = c.submit(spec("memory:///out/", 1, 0), splits(1), 1);
    let a = attempt_of(&c.poll(&w, 1, clock.now()).unwrap().pop().unwrap());
    let started = clock.now().wall_ms;
    clock.advance(Duration::from_secs(2));
    let failed = Outcome::Failed { kind: FailureKind::UserCode, message: "<boom>".into(), lost_map: None };
    assert!(c.report(&w, &a, failed, clock.now()).0.is_ok());
    clock.advance(Duration::from_secs(1));
    let retry = c.poll(&w, 1, clock.now()).unwrap().pop().unwrap();
    assert_eq!(attempt_of(&retry).attempt, 2);
    clock.advance(Duration::from_secs(1));
    c.kill(&id, 99_000);
    clock.advance(Duration::from_secs(5));
    let tasks = job_tasks(c.job(&id).unwrap(), clock.now());
    let got: Vec<_> = tasks[0]
        .attempt_list
        .iter()
        .map(|a| (a.attempt, a.state.as_str(), a.started_ms, a.finished_ms, a.error.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "failed", started, Some(started + 2_000), Some("<boom>")),
            (2, "killed", started + 3_000, Some(99_000), None),
        ]
    );
}
