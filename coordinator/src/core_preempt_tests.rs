//! Fair-share preemption with a fake clock: only after the wait, only the deficit, the
//! youngest attempts of the job above its share, and never a failure.

use std::collections::BTreeSet;
use std::time::Duration;

use quern_api::{AttemptId, JobId, TaskKind, WorkerId};

use super::tests::{Clock, attempt_of, core, spec, splits};
use super::*;
use crate::policy::Fair;

const WAIT: Duration = Duration::from_secs(15);

fn fair_core(preemption: Option<Duration>) -> Core {
    Core::new(CoreConfig { preemption, ..core().config().clone() }, Box::new(Fair))
}

fn two_slot_worker(c: &mut Core, clock: &Clock, host: &str) -> WorkerId {
    c.register(host.into(), "r".into(), 2, BTreeSet::from(["wordcount".to_string()]), clock.now())
}

/// Job A fills both workers' 2 slots (w1 first, w2 a second later), then job B of the same
/// weight arrives: each's fair share is 2 slots, and B runs none.
fn a_fills_the_cluster_then_b_arrives(
    preemption: Option<Duration>,
) -> (Core, Clock, [WorkerId; 2], JobId, JobId, Vec<AttemptId>) {
    let mut clock = Clock::new();
    let mut c = fair_core(preemption);
    let w1 = two_slot_worker(&mut c, &clock, "h1");
    let w2 = two_slot_worker(&mut c, &clock, "h2");
    let a = c.submit(spec("memory:///a/", 0, 0), splits(10), 1);
    let mut started: Vec<AttemptId> = c.poll(&w1, 2, clock.now()).unwrap().iter().map(attempt_of).collect();
    clock.advance(Duration::from_secs(1));
    started.extend(c.poll(&w2, 2, clock.now()).unwrap().iter().map(attempt_of));
    assert_eq!(started.len(), 4, "job A runs on every slot");
    let b = c.submit(spec("memory:///b/", 0, 0), splits(10), 2);
    (c, clock, [w1, w2], a, b, started)
}

fn heartbeat_all(c: &mut Core, ws: &[WorkerId; 2], clock: &Clock) -> Vec<AttemptId> {
    ws.iter().flat_map(|w| c.heartbeat(w, clock.now()).unwrap()).collect()
}

#[test]
fn starvation_shorter_than_the_wait_preempts_nothing() {
    let (mut c, mut clock, ws, a, _b, _) = a_fills_the_cluster_then_b_arrives(Some(WAIT));
    assert_eq!(c.preempt(clock.now()), 0, "starvation starts");
    clock.advance(WAIT - Duration::from_secs(1));
    assert_eq!(c.preempt(clock.now()), 0, "not starved long enough");
    assert!(heartbeat_all(&mut c, &ws, &clock).is_empty());
    assert_eq!(c.job(&a).unwrap().running(), 4);
    assert_eq!(c.job(&a).unwrap().counters().get(quern_api::counters::names::PREEMPTED_ATTEMPTS), 0);
}

#[test]
fn a_job_starved_past_the_wait_takes_exactly_its_deficit_from_the_youngest_attempts() {
    let (mut c, mut clock, ws, a, b, started) = a_fills_the_cluster_then_b_arrives(Some(WAIT));
    assert_eq!(c.preempt(clock.now()), 0);
    clock.advance(WAIT + Duration::from_secs(1));
    assert_eq!(c.preempt(clock.now()), 2, "B's share is 2 of the 4 slots");
    // The two attempts started last (on w2) are cancelled at w2's heartbeat, nothing on w1.
    assert!(c.heartbeat(&ws[0], clock.now()).unwrap().is_empty());
    let cancelled: BTreeSet<AttemptId> = c.heartbeat(&ws[1], clock.now()).unwrap().into_iter().collect();
    assert_eq!(cancelled, started[2..].iter().cloned().collect::<BTreeSet<_>>());
    let job = c.job(&a).unwrap();
    assert_eq!(job.running(), 2, "A keeps its own share");
    assert_eq!(job.runs()[0].pending(TaskKind::Map).len(), 8, "the preempted tasks are pending again");
    assert_eq!(job.counters().get(quern_api::counters::names::PREEMPTED_ATTEMPTS), 2);
    for t in job.runs()[0].tasks(TaskKind::Map) {
        assert_eq!((t.failures, t.excused), (0, 0), "a preemption is no failure");
        assert!(t.failed_on.is_empty(), "nor held against its worker");
    }
    // The same starvation does not take more before it has lasted another wait.
    assert_eq!(c.preempt(clock.now()), 0);
    // The preempted attempts are fenced: their late success and their kill are refused.
    let late = &started[2];
    let outcome = Outcome::Succeeded { counters: quern_api::Counters::new(), segments: None };
    assert!(c.report(&ws[1], late, outcome, clock.now()).0.is_err(), "a preempted attempt never succeeds");
    assert!(c.report(&ws[1], &started[3], Outcome::Killed, clock.now()).0.is_err());
    // The freed slots go to B.
    let next: Vec<AttemptId> = c.poll(&ws[1], 2, clock.now()).unwrap().iter().map(attempt_of).collect();
    assert_eq!(next.len(), 2);
    assert!(next.iter().all(|n| n.task.job == b), "{next:?}");
    assert_eq!(c.job(&b).unwrap().counters().get(quern_api::counters::names::PREEMPTED_ATTEMPTS), 0);
}

#[test]
fn with_preemption_off_nothing_is_preempted() {
    let (mut c, mut clock, ws, a, _b, _) = a_fills_the_cluster_then_b_arrives(None);
    assert_eq!(c.preempt(clock.now()), 0);
    clock.advance(WAIT * 4);
    assert_eq!(c.preempt(clock.now()), 0);
    assert!(heartbeat_all(&mut c, &ws, &clock).is_empty());
    assert_eq!(c.job(&a).unwrap().running(), 4);
}

#[test]
fn a_job_at_its_share_or_without_waiting_tasks_is_not_starved() {
    let (mut c, mut clock, ws, a, b, _) = a_fills_the_cluster_then_b_arrives(Some(WAIT));
    // B finishes being starved: it is killed, so it has nothing waiting.
    c.kill(&b, 3).unwrap();
    assert_eq!(c.preempt(clock.now()), 0);
    clock.advance(WAIT * 2);
    assert_eq!(c.preempt(clock.now()), 0, "no job waits for slots");
    assert!(heartbeat_all(&mut c, &ws, &clock).is_empty());
    assert_eq!(c.job(&a).unwrap().running(), 4);
}
