//! Scheduling policy through [`Core::poll`] with a fake clock: delay scheduling's waits
//! (node-local, then rack-local, then anywhere), which job a freed slot serves, and where
//! cached data sends a task. The cluster tests only check that such jobs come out right;
//! these say which task runs where and when, with no timing involved.

use std::collections::BTreeSet;
use std::time::Duration;

use quern_api::split::Split;
use quern_api::{Counters, JobId, StoreUrl, TaskKind, WorkerId};

use super::tests::{Clock, attempt_of, core, map_ok, run_one, spec, splits, worker};
use super::*;
use crate::convert::{CachedRange, Registration};
use crate::job::JobState;
use crate::placement::{Delay, Level};
use crate::policy::{Fair, Fifo, PriorityFifo};

/// A one-slot wordcount worker on `host` in `rack` whose own disk holds `data` (prefixes).
fn placed(c: &mut Core, clock: &Clock, host: &str, rack: &str, data: &[&str]) -> WorkerId {
    let local_data = data.iter().map(|d| StoreUrl::parse(d).unwrap()).collect();
    let r = Registration {
        host: host.into(),
        rack: rack.into(),
        slots: 1,
        jobs: BTreeSet::from(["wordcount".to_string()]),
        local_data,
    };
    c.register_with(r, String::new(), clock.now())
}

/// Splits of whole 10-byte objects at these URLs.
fn splits_at(urls: &[&str]) -> Vec<Split> {
    urls.iter().map(|u| Split { url: (*u).into(), start: 0, end: 10, object_size: 10 }).collect()
}

/// What one poll of a one-slot worker hands out: the map's index, or None.
fn poll_map(c: &mut Core, w: &WorkerId, clock: &Clock) -> Option<u32> {
    let a = c.poll(w, 1, clock.now()).unwrap().pop()?;
    let id = attempt_of(&a);
    assert_eq!(id.task.kind, TaskKind::Map);
    Some(id.task.index)
}

/// Racks r1 (hosts a, b) and r2 (host c), each host with its own directory of input.
fn three_hosts(c: &mut Core, clock: &Clock) -> [WorkerId; 3] {
    [
        placed(c, clock, "a", "r1", &["file:///a/"]),
        placed(c, clock, "b", "r1", &["file:///b/"]),
        placed(c, clock, "c", "r2", &["file:///c/"]),
    ]
}

#[test]
fn delay_scheduling_waits_for_a_node_local_slot_then_a_rack_local_one_then_takes_any() {
    let mut clock = Clock::new();
    let mut c = core();
    c.cfg.delay = Delay { node_wait: Duration::from_secs(2), rack_wait: Duration::from_secs(3) };
    let [_a, b, w_c] = three_hosts(&mut c, &clock);
    // Both splits live on a's disk, and a is busy elsewhere (it never polls here).
    let id = c.submit(spec("memory:///out/", 1, 0), splits_at(&["file:///a/0", "file:///a/1"]), 1);
    assert_eq!(poll_map(&mut c, &w_c, &clock), None, "c is in another rack: the job waits");
    clock.advance(Duration::from_millis(1999));
    assert_eq!(poll_map(&mut c, &b, &clock), None, "b shares a's rack, but the node wait is not over");
    clock.advance(Duration::from_millis(1));
    assert_eq!(poll_map(&mut c, &w_c, &clock), None, "rack-local now, not remote");
    assert!(poll_map(&mut c, &b, &clock).is_some(), "b takes a split rack-local");
    clock.advance(Duration::from_millis(2999));
    assert_eq!(poll_map(&mut c, &w_c, &clock), None, "the rack wait is not over");
    clock.advance(Duration::from_millis(1));
    assert!(poll_map(&mut c, &w_c, &clock).is_some(), "after both waits any slot will do");
    let job = c.job(&id).unwrap();
    let running: Vec<_> = (0..2).map(|i| job.runs()[0].tasks(TaskKind::Map)[i].attempts).collect();
    assert_eq!(running, [1, 1], "each split started once");
}

#[test]
fn a_node_local_launch_ends_the_wait_and_the_next_wait_starts_from_zero() {
    let mut clock = Clock::new();
    let mut c = core();
    c.cfg.delay = Delay { node_wait: Duration::from_secs(1), rack_wait: Duration::from_secs(1) };
    let [a, b, _c] = three_hosts(&mut c, &clock);
    let id = c.submit(spec("memory:///out/", 1, 0), splits_at(&["file:///a/0", "file:///a/1"]), 1);
    assert_eq!(poll_map(&mut c, &b, &clock), None);
    clock.advance(Duration::from_millis(900));
    assert_eq!(poll_map(&mut c, &a, &clock), Some(0), "a takes its own split");
    assert_eq!(c.job(&id).unwrap().runs()[0].waiting_since(), None, "a node-local launch ends the wait");
    clock.advance(Duration::from_millis(500));
    // 1.4 s since the first pass, but only now does a new wait start.
    assert_eq!(poll_map(&mut c, &b, &clock), None);
    clock.advance(Duration::from_millis(999));
    assert_eq!(poll_map(&mut c, &b, &clock), None);
    clock.advance(Duration::from_millis(1));
    assert_eq!(poll_map(&mut c, &b, &clock), Some(1));
}

#[test]
fn every_map_is_counted_once_at_the_level_it_ran() {
    let mut clock = Clock::new();
    let mut c = core();
    let [a, b, w_c] = three_hosts(&mut c, &clock);
    let id = c.submit(
        spec("memory:///out/", 1, 0),
        splits_at(&["file:///a/0", "file:///a/1", "file:///a/2", "s3://bucket/3"]),
        1,
    );
    let mut ran = Vec::new();
    // Node-local on a; the split nobody holds goes at once to c; then, as the waits pass,
    // rack-local on b and remote on c.
    ran.push((a.clone(), c.poll(&a, 1, clock.now()).unwrap().pop().unwrap()));
    ran.push((w_c.clone(), c.poll(&w_c, 1, clock.now()).unwrap().pop().unwrap()));
    assert_eq!(attempt_of(&ran[1].1).task.index, 3, "data with no home never waits");
    assert_eq!(poll_map(&mut c, &b, &clock), None, "the job starts waiting");
    clock.advance(Duration::from_secs(1));
    ran.push((b.clone(), c.poll(&b, 1, clock.now()).unwrap().pop().unwrap()));
    for (w, task) in ran.drain(..) {
        c.report(&w, &attempt_of(&task), map_ok(&task, 1), clock.now()).0.unwrap();
    }
    clock.advance(Duration::from_secs(1));
    let last = c.poll(&w_c, 1, clock.now()).unwrap().pop().unwrap();
    c.report(&w_c, &attempt_of(&last), map_ok(&last, 1), clock.now()).0.unwrap();
    let job = c.job(&id).unwrap();
    assert_eq!(job.locality(), (1, 1, 2), "one node-local, one rack-local, two remote (one without a home)");
    assert_eq!(job.runs()[0].map_level(0), Some(Level::NodeLocal));
}

/// A core whose free slots go by `policy`, with two one-slot workers; a big low-priority
/// job holds both slots when a small high-priority one arrives.
fn busy_with_a_big_job(policy: Box<dyn crate::policy::Policy>) -> (Core, Clock, [WorkerId; 2], JobId, JobId) {
    let clock = Clock::new();
    let mut c = core();
    c.policy = policy;
    let ws = [worker(&mut c, &clock), worker(&mut c, &clock)];
    let big = c.submit(spec("memory:///big/", 1, 0), splits(8), 1);
    for w in &ws {
        assert_eq!(next_job(&mut c, w, &clock), big);
    }
    let small = c.submit(spec("memory:///small/", 1, 5), splits(2), 2);
    (c, clock, ws, big, small)
}

/// Reports the one map `w` runs done.
fn finish(c: &mut Core, w: &WorkerId, clock: &Clock) {
    let id = c.workers()[w].running.iter().next().cloned().expect("a running attempt");
    let ok = Outcome::Succeeded { counters: Counters::new(), segments: Some(vec![Segment::default()]) };
    c.report(w, &id, ok, clock.now()).0.unwrap();
}

/// The job of the task `w`'s next poll starts.
fn next_job(c: &mut Core, w: &WorkerId, clock: &Clock) -> JobId {
    attempt_of(&c.poll(w, 1, clock.now()).unwrap()[0]).task.job
}

#[test]
fn under_fair_sharing_a_later_high_priority_job_gets_the_first_freed_slot_and_keeps_one() {
    let (mut c, clock, [w1, w2], big, small) = busy_with_a_big_job(Box::new(Fair));
    finish(&mut c, &w1, &clock);
    assert_eq!(next_job(&mut c, &w1, &clock), small, "the first freed slot");
    // Weighted fair sharing: a job with nothing running goes first, so the big job keeps a
    // slot too; but each slot the small job frees comes back to it.
    finish(&mut c, &w2, &clock);
    assert_eq!(next_job(&mut c, &w2, &clock), big);
    finish(&mut c, &w1, &clock);
    assert_eq!(next_job(&mut c, &w1, &clock), small);
    finish(&mut c, &w1, &clock);
    run_one(&mut c, &w1, &clock, 1);
    assert_eq!(c.job(&small).unwrap().state(), &JobState::Committing, "the small job is done");
    assert!(
        !c.job(&big).unwrap().runs()[0].pending(TaskKind::Map).is_empty(),
        "while the big one still has maps to run"
    );
}

#[test]
fn under_priority_fifo_every_freed_slot_serves_the_higher_priority_and_under_fifo_the_earlier() {
    let (mut c, clock, [w1, w2], _big, small) = busy_with_a_big_job(Box::new(PriorityFifo));
    for w in [&w1, &w2] {
        finish(&mut c, w, &clock);
        assert_eq!(next_job(&mut c, w, &clock), small);
    }
    let (mut c, clock, [w1, _w2], big, _small) = busy_with_a_big_job(Box::new(Fifo));
    finish(&mut c, &w1, &clock);
    assert_eq!(next_job(&mut c, &w1, &clock), big, "priority means nothing to FIFO");
}

#[test]
fn a_cached_split_waits_for_the_worker_that_caches_it_and_runs_there_node_local() {
    let mut clock = Clock::new();
    let mut c = core();
    let a = placed(&mut c, &clock, "a", "r1", &[]);
    let w_c = placed(&mut c, &clock, "c", "r2", &[]);
    let object = StoreUrl::parse("s3://bucket/k").unwrap();
    c.set_cached(&w_c, vec![CachedRange { url: object.clone(), start: 0, end: 100 }]);
    let halves = vec![
        Split { url: object.as_str().into(), start: 0, end: 50, object_size: 200 },
        Split { url: object.as_str().into(), start: 100, end: 200, object_size: 200 },
    ];
    let id = c.submit(spec("memory:///out/", 1, 0), halves, 1);
    // a gets the uncached range (no home: it never waits), not the range c caches.
    assert_eq!(poll_map(&mut c, &a, &clock), Some(1));
    finish(&mut c, &a, &clock);
    assert_eq!(poll_map(&mut c, &a, &clock), None, "the cached range waits for its worker");
    clock.advance(Duration::from_millis(500));
    assert_eq!(poll_map(&mut c, &w_c, &clock), Some(0));
    finish(&mut c, &w_c, &clock);
    assert_eq!(c.job(&id).unwrap().runs()[0].map_level(0), Some(Level::NodeLocal), "a cache hit counts as node-local");
}

#[test]
fn a_freed_slot_gets_the_reduce_whose_partition_its_cache_holds_most_of() {
    let clock = Clock::new();
    let mut c = core();
    let (w1, w2) = (worker(&mut c, &clock), worker(&mut c, &clock));
    let id = c.submit(spec("memory:///out/", 3, 0), splits(1), 1);
    let a = c.poll(&w1, 1, clock.now()).unwrap().pop().unwrap();
    // The map's output holds partitions (0, 1, 2) in 10, 500 and 40 bytes, in that order.
    let segments = [10u64, 500, 40].iter().map(|&length| Segment { length, ..Default::default() }).collect();
    let out = Outcome::Succeeded { counters: Counters::new(), segments: Some(segments) };
    c.report(&w1, &attempt_of(&a), out, clock.now()).0.unwrap();
    let job = c.job(&id).unwrap();
    let url = match &job.runs()[0].tasks(TaskKind::Map)[0].state {
        crate::task::TaskState::Succeeded { output: Some(o), .. } => job.runs()[0].shuffle_url_of(0, o),
        s => panic!("{s:?}"),
    };
    c.set_cached(&w2, vec![CachedRange { url, start: 0, end: 550 }]);
    let got = attempt_of(&c.poll(&w2, 1, clock.now()).unwrap()[0]);
    assert_eq!((got.task.kind, got.task.index), (TaskKind::Reduce, 1));
    let plain = attempt_of(&c.poll(&w1, 1, clock.now()).unwrap()[0]);
    assert_eq!((plain.task.kind, plain.task.index), (TaskKind::Reduce, 0), "no cache: the first pending");
}
