//! Pipelines whose stages form a DAG, driven through [`Core`] with a fake clock: independent
//! stages run side by side, a stage starts once every stage it reads has finished, stale
//! attempts stay fenced per stage, and a replayed journal resumes every branch.

use std::collections::BTreeSet;

use quern_api::{StageInput, TaskKind, pb};

use super::tests::{Clock, attempt_of, core, map_ok, reduce_ok, spec, splits};
use super::*;
use crate::job::{JobState, Stage};
use crate::journal::Record;

/// The shape of the built-in `wordstats`: two stages reading the job's input, a third
/// joining both.
fn wordstats() -> JobSpec {
    let stage = |job: &str, reducers, inputs: &[StageInput]| Stage {
        job: job.into(),
        params: Default::default(),
        reducers,
        formats: Default::default(),
        inputs: inputs.to_vec(),
    };
    let mut s = spec("memory:///out/", 1, 0);
    s.name = "wordstats".into();
    s.stages = vec![
        stage("wordcount", 2, &[]),
        stage("indexer", 1, &[StageInput::JobInput]),
        stage("join", 1, &[StageInput::Stage(0), StageInput::Stage(1)]),
    ];
    s
}

fn dag_worker(c: &mut Core, clock: &Clock, slots: u32) -> WorkerId {
    let jobs = ["wordcount", "indexer", "join"].map(String::from);
    c.register("h".into(), "r".into(), slots, BTreeSet::from(jobs), clock.now())
}

/// Reports success for every assignment (committing parts first); returns the actions.
fn succeed_all(c: &mut Core, w: &WorkerId, clock: &Clock, tasks: &[pb::TaskAssignment]) -> Vec<Action> {
    let mut actions = Vec::new();
    for a in tasks {
        let id = attempt_of(a);
        let outcome = match id.task.kind {
            TaskKind::Map => map_ok(a, a.reducers as usize),
            TaskKind::Reduce => {
                c.commit(w, &id).unwrap();
                c.commit_done(&id);
                reduce_ok()
            }
        };
        let (r, more) = c.report(w, &id, outcome, clock.now());
        r.unwrap();
        actions.extend(more);
    }
    actions
}

fn starts(actions: &[Action]) -> Vec<(usize, Vec<StoreUrl>, usize)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartStage { stage, inputs, objects, .. } => Some((*stage, inputs.clone(), objects.len())),
            _ => None,
        })
        .collect()
}

fn by_job(tasks: &[pb::TaskAssignment]) -> Vec<&str> {
    tasks.iter().map(|a| a.job.as_str()).collect()
}

#[test]
fn independent_stages_run_side_by_side_and_the_join_waits_for_both() {
    let clock = Clock::new();
    let mut c = core();
    let w = dag_worker(&mut c, &clock, 8);
    let id = c.submit(wordstats(), splits(2), 1);
    // Stage 1 reads only the job's input: it is asked for at once, beside stage 0.
    let asked = c.take_actions();
    assert_eq!(starts(&asked), vec![(1, Vec::new(), 2)], "{asked:?}");
    c.start_stage(&id, 1, splits(2));

    // Both branches' maps are handed out before either finishes.
    let maps = c.poll(&w, 8, clock.now()).unwrap();
    assert_eq!(by_job(&maps), ["wordcount", "wordcount", "indexer", "indexer"]);
    let status = crate::status::job_status(c.job(&id).unwrap());
    assert_eq!((status.running_stages, status.stages, status.stage), (vec![1, 2], 3, 1));
    assert_eq!(status.running_stage_jobs, ["wordcount", "indexer"]);
    assert_eq!(status.maps.map(|p| (p.total, p.running)), Some((4, 4)));
    assert!(attempt_of(&maps[2]).attempt > 10_000, "stage 1's attempts are numbered apart");
    assert!(succeed_all(&mut c, &w, &clock, &maps).is_empty());

    // Reduces of both branches run side by side too.
    let reduces = c.poll(&w, 8, clock.now()).unwrap();
    assert_eq!(by_job(&reduces), ["wordcount", "wordcount", "indexer"]);
    let (stage0, stage1) = reduces.split_at(2);
    let done0 = succeed_all(&mut c, &w, &clock, stage0);
    assert!(matches!(&done0[..], [Action::ClearStage { .. }]), "the join still waits for stage 1: {done0:?}");
    assert_eq!(c.job(&id).unwrap().shown_stages(), vec![1]);

    // A stale attempt of the finished stage 0 is fenced: its numbers name stage 0 whatever
    // the task index, so it never commits in, uploads to or reports to stage 1 or 2.
    let stale = attempt_of(&stage0[0]);
    assert_eq!(stale.task.index, attempt_of(&stage1[0]).task.index, "the same task index in both stages");
    assert_eq!(c.commit(&w, &stale), Err("stage is not running"));
    assert_eq!(c.start_part(&w, &stale), Err("stage is not running"));
    assert_eq!(c.report(&w, &stale, reduce_ok(), clock.now()).0, Err("stage is not running"));
    let live = attempt_of(&stage1[0]);
    assert!(c.job(&id).unwrap().run_of(live.attempt).unwrap().tasks(TaskKind::Reduce)[0].is_live(live.attempt, &w));

    // Stage 1's last part starts the join, over both stages' output.
    let done1 = succeed_all(&mut c, &w, &clock, stage1);
    let started = starts(&done1);
    let dir = |k: usize| c.config().store.join(&format!("jobs/{id}/stage-{k}/"));
    assert_eq!(started, vec![(2, vec![dir(0), dir(1)], 0)], "{done1:?}");
    assert!(c.poll(&w, 8, clock.now()).unwrap().is_empty(), "nothing runs until the join's input is listed");
    c.start_stage(&id, 2, splits(2));
    let join = c.poll(&w, 8, clock.now()).unwrap();
    assert_eq!(by_job(&join), ["join", "join"]);
    assert!(attempt_of(&join[0]).attempt > 20_000);
    assert!(succeed_all(&mut c, &w, &clock, &join).is_empty());
    let last = c.poll(&w, 8, clock.now()).unwrap();
    let commit = succeed_all(&mut c, &w, &clock, &last);
    assert!(matches!(&commit[..], [Action::WriteSuccess { output, .. }] if output.as_str() == "memory:///out/"));
    let counters = c.job(&id).unwrap().counters();
    assert_eq!(counters.get("MAP_INPUT_RECORDS"), 60, "two maps in each of three stages");
    assert_eq!(counters.get("REDUCE_OUTPUT_RECORDS"), 4);

    // A restarted coordinator finds the job committing, with the same counters.
    let mut b = core();
    let resume = b.replay(c.take_journal());
    assert!(matches!(&resume[..], [Action::WriteSuccess { .. }]), "{resume:?}");
    assert_eq!(b.job(&id).unwrap().counters(), counters);
    assert_eq!(b.job(&id).unwrap().shown_stages(), vec![2]);
}

#[test]
fn a_replay_while_both_branches_run_resumes_both_and_asks_again_for_an_unstarted_stage() {
    let clock = Clock::new();
    let mut c = core();
    let w = dag_worker(&mut c, &clock, 8);
    let id = c.submit(wordstats(), splits(2), 1);
    c.take_actions();
    // Crash before stage 1 was listed: a new coordinator asks for it again.
    let mut b = core();
    let resume = b.replay(c.journal.clone());
    assert_eq!(starts(&resume), vec![(1, Vec::new(), 2)], "{resume:?}");

    c.start_stage(&id, 1, splits(2));
    let maps = c.poll(&w, 8, clock.now()).unwrap();
    // One map of each branch succeeds; the others are running at the crash.
    succeed_all(&mut c, &w, &clock, &[maps[0].clone(), maps[2].clone()]);
    let mut b = core();
    let resume = b.replay(c.take_journal());
    assert!(resume.is_empty(), "both branches have started: {resume:?}");
    let job = b.job(&id).unwrap();
    assert_eq!(job.shown_stages(), vec![0, 1]);
    for (stage, run) in job.runs().iter().enumerate() {
        assert_eq!(run.progress(TaskKind::Map), (2, 1, 0), "stage {stage}: the success stands, the rest runs again");
    }
    let w2 = dag_worker(&mut b, &clock, 8);
    assert_eq!(by_job(&b.poll(&w2, 8, clock.now()).unwrap()), ["wordcount", "indexer"]);
}

#[test]
fn a_journal_from_before_side_by_side_stages_replays_its_stage_starts_in_order() {
    let clock = Clock::new();
    let mut c = core();
    let w = dag_worker(&mut c, &clock, 8);
    let id = c.submit(wordstats(), splits(2), 1);
    let mut journal = c.take_journal();
    // An older coordinator ran stage 0, then stage 1, journalling starts that name no stage.
    let old: Record = serde_json::from_value(serde_json::json!({
        "event": "stage_started", "job": id.to_string(), "splits": [],
    }))
    .unwrap();
    assert!(matches!(&old, Record::StageStarted { stage: None, .. }));
    let maps = c.poll(&w, 8, clock.now()).unwrap();
    succeed_all(&mut c, &w, &clock, &maps);
    let reduces = c.poll(&w, 8, clock.now()).unwrap();
    succeed_all(&mut c, &w, &clock, &reduces);
    journal.extend(c.take_journal());
    journal.push(old);
    let mut b = core();
    let resume = b.replay(journal);
    let job = b.job(&id).unwrap();
    assert_eq!(job.shown_stages(), vec![1], "the record started stage 1; stage 0 is done");
    assert_eq!(job.state(), &JobState::Running);
    assert!(starts(&resume).is_empty(), "{resume:?}");
}

#[test]
fn a_chain_still_runs_one_stage_at_a_time() {
    let clock = Clock::new();
    let mut c = core();
    let w = dag_worker(&mut c, &clock, 8);
    let mut s = wordstats();
    for st in &mut s.stages {
        st.inputs.clear();
    }
    let id = c.submit(s, splits(2), 1);
    assert!(c.take_actions().is_empty(), "every later stage reads the one before");
    let maps = c.poll(&w, 8, clock.now()).unwrap();
    assert_eq!(by_job(&maps), ["wordcount", "wordcount"]);
    succeed_all(&mut c, &w, &clock, &maps);
    let reduces = c.poll(&w, 8, clock.now()).unwrap();
    let done = succeed_all(&mut c, &w, &clock, &reduces);
    let dir = c.config().store.join(&format!("jobs/{id}/stage-0/"));
    assert_eq!(starts(&done), vec![(1, vec![dir], 0)]);
    assert_eq!(c.job(&id).unwrap().runs().len(), 0, "between stages nothing runs");
    assert_eq!(c.job(&id).unwrap().shown_stages(), vec![1]);
}
