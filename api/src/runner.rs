//! Jobs with their types erased: [`DynJob`] is what workers run and clients plan with;
//! [`JobRunner`] and [`MapOnlyRunner`] adapt a typed [`Job`] or [`MapOnlyJob`] to it. Everything
//! crossing this boundary is encoded bytes.

use std::panic::AssertUnwindSafe;

use crate::context::{FastMap, MapContext, MapMode, PairSink, TaskInfo};
use crate::counters::{Counters, names};
use crate::data::Data;
use crate::error::{JobError, ParamError};
use crate::format::{InputFormat, OutputFormat};
use crate::job::{Block, Job, MapOnlyJob, Partitioning, Record};
use crate::output::{OutputContext, PartWriter};
use crate::registry::Params;
use crate::total_order::TotalOrder;

/// The records of one chunk of a split, as the worker hands them to a job.
pub enum Records<'a, 'r> {
    /// Whole lines of text input, in one piece (see [`Job::map_block`]).
    Block(&'a Block<'r>),
    /// Records one by one (every other input format).
    Each(&'a mut dyn Iterator<Item = Record<'r>>),
}

/// How a map run treats records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MapOptions {
    /// A record whose map call panics is skipped (its pairs or output dropped) and counted in
    /// `SKIPPED_RECORDS` (MapReduce paper, 4.6).
    pub skip_panics: bool,
}

impl MapOptions {
    /// Options with record skipping on or off.
    pub fn skipping(skip_panics: bool) -> Self {
        MapOptions { skip_panics }
    }
}

/// A job with its types erased: what the worker runs. Everything is encoded bytes.
pub trait DynJob: Send + Sync {
    /// Maps a run of records, pushing encoded pairs (pre-combined when the job has a
    /// combiner) into `sink`.
    fn map_records(
        &self,
        records: Records<'_, '_>,
        sink: &mut dyn PairSink,
        counters: &mut Counters,
        task: &TaskInfo,
        opts: MapOptions,
    ) -> Result<(), JobError>;

    /// Maps a run of records of a job running without reducers straight into output
    /// records: a [`MapOnlyJob`]'s map writes them; a [`Job`] run with `--reducers 0` has
    /// each pair go through its `reduce` on its own (a group of one value, in map order).
    fn map_to_part(
        &self,
        records: Records<'_, '_>,
        out: &mut PartWriter,
        counters: &mut Counters,
        task: &TaskInfo,
        opts: MapOptions,
    ) -> Result<(), JobError>;

    /// Whether the job combines map output.
    fn has_combiner(&self) -> bool;

    /// Combines the runs of equal keys in `pairs` (sorted by key) into one pair each, pushed
    /// into `sink` in order; a key seen once passes as it is.
    fn combine_sorted(&self, pairs: &[(&[u8], &[u8])], sink: &mut dyn PairSink) -> Result<(), JobError>;

    /// Reduces one key group.
    fn reduce_encoded(
        &self,
        key: &[u8],
        values: &mut dyn Iterator<Item = &[u8]>,
        out: &mut OutputContext<'_>,
    ) -> Result<(), JobError>;

    /// The partition of an encoded key.
    fn partition(&self, key: &[u8], reducers: u32) -> u32;

    /// How many leading bytes of an encoded key form its reduce group.
    fn group_len(&self, key: &[u8]) -> usize;

    /// Whether the job's output is totally ordered, so the client samples its input for cut
    /// points (see [`Partitioning::total_order`]).
    fn total_order(&self) -> bool;

    /// For a total-order job: the encoded key a record maps to; None otherwise.
    fn sample_key(&self, record: &Record<'_>) -> Option<Vec<u8>>;

    /// The job's default input format.
    fn input_format(&self) -> InputFormat;

    /// The job's default output format.
    fn output_format(&self) -> OutputFormat;

    /// The reducers the job requires: `Some(0)` for a map-only job, `Some(n)` for
    /// [`Job::reducers`], None for the user's choice.
    fn reducers(&self) -> Option<u32>;

    /// For a generator, the records it makes.
    fn generate(&self) -> Option<u64>;
}

/// Adapts a typed [`Job`] to [`DynJob`], with its partitioning (and total-order cut points,
/// read from the parameters) worked out once.
pub struct JobRunner<J> {
    job: J,
    partitioning: Partitioning,
    order: Option<TotalOrder>,
}

impl<J: Job> JobRunner<J> {
    /// The runner of `job`, built with `params` (which may carry total-order cut points).
    pub fn new(job: J, params: &Params) -> Result<Self, ParamError> {
        let partitioning = job.partitioning();
        let order = if partitioning.is_total_order() { TotalOrder::from_params(params)? } else { None };
        Ok(JobRunner { job, partitioning, order })
    }

    /// Runs `map` (or `map_block`) over `records` into `sink`, combining when `combine`.
    fn map_into(
        &self,
        records: Records<'_, '_>,
        sink: &mut dyn PairSink,
        counters: &mut Counters,
        task: &TaskInfo,
        opts: MapOptions,
        combine: bool,
    ) -> Result<(), JobError> {
        let job = &self.job;
        let combiner = if combine { job.combiner() } else { None };
        let mut user = Counters::new();
        let (inputs, skipped);
        let (emitted, table) = {
            let mode = match &combiner {
                Some(c) => MapMode::Combining { table: table_sized_like_last(), combiner: c },
                None => MapMode::Direct { sink: &mut *sink, kbuf: Vec::new(), vbuf: Vec::new() },
            };
            let mut ctx = MapContext::new(mode, &mut user, task);
            let skip = opts.skip_panics;
            (inputs, skipped) = drive(
                records,
                &mut ctx,
                skip,
                |block, ctx| job.map_block(block, ctx),
                |rec, ctx| if skip { map_one_skipping(job, rec, ctx) } else { job.map(rec, ctx).map(|()| false) },
            )?;
            let table = match ctx.mode {
                MapMode::Combining { table, .. } => Some(table),
                MapMode::Direct { .. } => None,
            };
            (ctx.emitted, table)
        };
        if let Some(table) = table {
            TABLE_SIZE.set(table.len());
            let (mut kbuf, mut vbuf) = (Vec::new(), Vec::new());
            for (k, v) in table {
                kbuf.clear();
                vbuf.clear();
                k.encode(&mut kbuf);
                v.encode(&mut vbuf);
                sink.push(&kbuf, &vbuf);
            }
            counters.add(names::COMBINE_INPUT_RECORDS, emitted as i64);
        }
        counters.add(names::MAP_INPUT_RECORDS, inputs);
        if skipped > 0 {
            counters.add(names::SKIPPED_RECORDS, skipped);
        }
        counters.add(names::MAP_OUTPUT_RECORDS, emitted as i64);
        counters.merge(&user);
        Ok(())
    }
}

thread_local! {
    /// Keys in this thread's last combine table: the next chunk's is sized for as many, so it
    /// does not grow (and rehash) from empty every time.
    static TABLE_SIZE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn table_sized_like_last<K, V>() -> FastMap<K, V> {
    // Capped: one odd chunk must not make every later one allocate a huge table.
    FastMap::with_capacity_and_hasher(TABLE_SIZE.get().min(1 << 20), Default::default())
}

/// Feeds `records` to a job: a block whole through `block`, unless skipping, when each of its
/// lines goes alone (so a panicking one can be skipped), as other records always do, through
/// `one` (which says whether it skipped the record). Returns (records read, records skipped).
fn drive<S>(
    records: Records<'_, '_>,
    state: &mut S,
    skipping: bool,
    block: impl FnOnce(&Block<'_>, &mut S) -> Result<(), JobError>,
    mut one: impl FnMut(&Record<'_>, &mut S) -> Result<bool, JobError>,
) -> Result<(i64, i64), JobError> {
    let (mut inputs, mut skipped) = (0i64, 0i64);
    match records {
        Records::Block(b) if !skipping => {
            inputs = crate::split::lines(b.bytes).count() as i64;
            block(b, state)?;
        }
        Records::Block(b) => {
            for rec in b.records() {
                inputs += 1;
                skipped += i64::from(one(&rec, state)?);
            }
        }
        Records::Each(recs) => {
            for rec in recs {
                inputs += 1;
                skipped += i64::from(one(&rec, state)?);
            }
        }
    }
    Ok((inputs, skipped))
}

/// Maps one record under a panic guard, its pairs held back until the call returns normally;
/// returns whether it panicked (and was skipped).
fn map_one_skipping<J: Job>(
    job: &J,
    rec: &Record<'_>,
    ctx: &mut MapContext<'_, J::Key, J::Value>,
) -> Result<bool, JobError> {
    ctx.staging = Some(Vec::new());
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| job.map(rec, ctx)));
    let staged = ctx.staging.take().unwrap_or_default();
    match result {
        Ok(Ok(())) => {
            staged.into_iter().for_each(|(k, v)| ctx.emit_owned(k, v));
            Ok(false)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(true),
    }
}

/// Encoded pairs in map order (a `Job` run without reducers).
#[derive(Default)]
struct InOrder(Vec<(Vec<u8>, Vec<u8>)>);

impl PairSink for InOrder {
    fn push(&mut self, key: &[u8], value: &[u8]) {
        self.0.push((key.to_vec(), value.to_vec()));
    }
}

/// Runs `f` writing into `out`; with `skip`, a panic drops what it wrote and counts one
/// skipped record (returns true).
fn guarded(
    out: &mut PartWriter,
    skip: bool,
    f: impl FnOnce(&mut PartWriter) -> Result<(), JobError>,
) -> Result<bool, JobError> {
    if !skip {
        return f(out).map(|()| false);
    }
    let mark = out.mark();
    match std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut *out))) {
        Ok(r) => r.map(|()| false),
        Err(_) => {
            out.rollback(mark);
            Ok(true)
        }
    }
}

impl<J: Job> DynJob for JobRunner<J> {
    fn map_records(
        &self,
        records: Records<'_, '_>,
        sink: &mut dyn PairSink,
        counters: &mut Counters,
        task: &TaskInfo,
        opts: MapOptions,
    ) -> Result<(), JobError> {
        self.map_into(records, sink, counters, task, opts, true)
    }

    fn map_to_part(
        &self,
        records: Records<'_, '_>,
        out: &mut PartWriter,
        counters: &mut Counters,
        task: &TaskInfo,
        opts: MapOptions,
    ) -> Result<(), JobError> {
        // Pairs pass on in map order, never combined.
        let mut pairs = InOrder::default();
        self.map_into(records, &mut pairs, counters, task, opts, false)?;
        let mut user = Counters::new();
        let mut skipped = 0i64;
        for (k, v) in &pairs.0 {
            skipped += i64::from(guarded(out, opts.skip_panics, |out| {
                let mut ctx = OutputContext::new(out, &mut user, task);
                self.reduce_encoded(k, &mut std::iter::once(&v[..]), &mut ctx)
            })?);
        }
        if skipped > 0 {
            counters.add(names::SKIPPED_RECORDS, skipped);
        }
        counters.merge(&user);
        Ok(())
    }

    fn has_combiner(&self) -> bool {
        self.job.combiner().is_some()
    }

    fn combine_sorted(&self, pairs: &[(&[u8], &[u8])], sink: &mut dyn PairSink) -> Result<(), JobError> {
        // One combiner for the whole run: building it may cost the job (its closure's captures).
        let Some(combiner) = self.job.combiner() else {
            return Err(JobError::msg("this job has no combiner"));
        };
        let mut value = Vec::new();
        for run in pairs.chunk_by(|a, b| a.0 == b.0) {
            let [(key, first), rest @ ..] = run else { continue };
            if rest.is_empty() {
                sink.push(key, first);
                continue;
            }
            let mut acc = J::Value::decode(first)?;
            for (_, bytes) in rest {
                combiner.call(&mut acc, J::Value::decode(bytes)?);
            }
            value.clear();
            acc.encode(&mut value);
            sink.push(key, &value);
        }
        Ok(())
    }

    fn reduce_encoded(
        &self,
        key: &[u8],
        values: &mut dyn Iterator<Item = &[u8]>,
        out: &mut OutputContext<'_>,
    ) -> Result<(), JobError> {
        let key = J::Key::decode(key)?;
        let mut err = None;
        let mut decoded = values.map_while(|b| match J::Value::decode(b) {
            Ok(v) => Some(v),
            Err(e) => {
                err = Some(e);
                None
            }
        });
        let reduced = self.job.reduce(key, &mut decoded, out);
        drop(decoded);
        // A value that did not decode cut the values short: that, not whatever the job made
        // of the shortened group, is the failure.
        match err {
            Some(e) => Err(e.into()),
            None => reduced,
        }
    }

    fn partition(&self, key: &[u8], reducers: u32) -> u32 {
        self.partitioning.partition(key, reducers, self.order.as_ref())
    }

    fn group_len(&self, key: &[u8]) -> usize {
        self.partitioning.group_len(key)
    }

    fn total_order(&self) -> bool {
        self.partitioning.is_total_order()
    }

    fn sample_key(&self, record: &Record<'_>) -> Option<Vec<u8>> {
        self.partitioning.sample(record)
    }

    fn input_format(&self) -> InputFormat {
        self.job.io().input_format
    }

    fn output_format(&self) -> OutputFormat {
        self.job.io().output_format
    }

    fn reducers(&self) -> Option<u32> {
        self.job.reducers().map(u32::from)
    }

    fn generate(&self) -> Option<u64> {
        self.job.io().generate
    }
}

/// Adapts a typed [`MapOnlyJob`] to [`DynJob`]: it has no map output, combiner or reduce.
pub struct MapOnlyRunner<J>(pub J);

impl<J: MapOnlyJob> DynJob for MapOnlyRunner<J> {
    fn map_records(
        &self,
        _: Records<'_, '_>,
        _: &mut dyn PairSink,
        _: &mut Counters,
        _: &TaskInfo,
        _: MapOptions,
    ) -> Result<(), JobError> {
        Err(JobError::msg("a map-only job runs without reducers"))
    }

    fn map_to_part(
        &self,
        records: Records<'_, '_>,
        out: &mut PartWriter,
        counters: &mut Counters,
        task: &TaskInfo,
        opts: MapOptions,
    ) -> Result<(), JobError> {
        let job = &self.0;
        let written = out.records();
        let mut user = Counters::new();
        let (inputs, skipped) = drive(
            records,
            &mut (&mut *out, &mut user),
            opts.skip_panics,
            |block, (out, user)| job.map_block(block, &mut OutputContext::new(out, user, task)),
            |rec, (out, user)| {
                guarded(out, opts.skip_panics, |out| job.map(rec, &mut OutputContext::new(out, user, task)))
            },
        )?;
        counters.add(names::MAP_INPUT_RECORDS, inputs);
        counters.add(names::MAP_OUTPUT_RECORDS, (out.records() - written) as i64);
        if skipped > 0 {
            counters.add(names::SKIPPED_RECORDS, skipped);
        }
        counters.merge(&user);
        Ok(())
    }

    fn has_combiner(&self) -> bool {
        false
    }

    fn combine_sorted(&self, _: &[(&[u8], &[u8])], _: &mut dyn PairSink) -> Result<(), JobError> {
        Err(JobError::msg("a map-only job has no combiner"))
    }

    fn reduce_encoded(
        &self,
        _: &[u8],
        _: &mut dyn Iterator<Item = &[u8]>,
        _: &mut OutputContext<'_>,
    ) -> Result<(), JobError> {
        Err(JobError::msg("a map-only job has no reduce"))
    }

    fn partition(&self, _: &[u8], _: u32) -> u32 {
        0
    }

    fn group_len(&self, key: &[u8]) -> usize {
        key.len()
    }

    fn total_order(&self) -> bool {
        false
    }

    fn sample_key(&self, _: &Record<'_>) -> Option<Vec<u8>> {
        None
    }

    fn input_format(&self) -> InputFormat {
        self.0.io().input_format
    }

    fn output_format(&self) -> OutputFormat {
        self.0.io().output_format
    }

    fn reducers(&self) -> Option<u32> {
        Some(0)
    }

    fn generate(&self) -> Option<u64> {
        self.0.io().generate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Combiner;
    use crate::output::OutRecord;

    struct Words;
    impl Job for Words {
        type Key = String;
        type Value = u64;
        fn map(&self, rec: &Record<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
            for w in rec.line.split_whitespace() {
                ctx.emit(w, 1);
            }
            Ok(())
        }
        fn combiner(&self) -> Option<Combiner<'_, u64>> {
            Some(Combiner::sum())
        }
        fn reduce(
            &self,
            k: String,
            vs: &mut dyn Iterator<Item = u64>,
            out: &mut OutputContext<'_>,
        ) -> Result<(), JobError> {
            out.emit(k, vs.sum::<u64>());
            Ok(())
        }
    }

    struct Collect(Vec<(Vec<u8>, Vec<u8>)>);
    impl PairSink for Collect {
        fn push(&mut self, key: &[u8], value: &[u8]) {
            self.0.push((key.to_vec(), value.to_vec()));
        }
    }

    fn runner() -> JobRunner<Words> {
        JobRunner::new(Words, &Params::default()).unwrap()
    }

    #[test]
    fn combining_map_counts_and_reduce_writes_lines() {
        let job = runner();
        let task = TaskInfo::local();
        let lines = ["a b a", "b a"];
        let mut recs = lines.iter().map(|l| Record::text("x", 0, l));
        let mut sink = Collect(Vec::new());
        let mut counters = Counters::new();
        job.map_records(Records::Each(&mut recs), &mut sink, &mut counters, &task, MapOptions::default()).unwrap();
        sink.0.sort();
        assert_eq!(
            sink.0,
            vec![(b"a".to_vec(), 3u64.to_be_bytes().to_vec()), (b"b".to_vec(), 2u64.to_be_bytes().to_vec())]
        );
        assert_eq!(counters.get(names::MAP_INPUT_RECORDS), 2);
        assert_eq!(counters.get(names::MAP_OUTPUT_RECORDS), 5);

        let mut out = PartWriter::new();
        let mut rc = Counters::new();
        let one = 1u64.to_be_bytes();
        let two = 2u64.to_be_bytes();
        let mut vals = [&one[..], &two[..]].into_iter();
        job.reduce_encoded(b"a", &mut vals, &mut OutputContext::new(&mut out, &mut rc, &task)).unwrap();
        assert_eq!(String::from_utf8(out.into_bytes()).unwrap(), "a\t3\n");
    }

    #[test]
    fn sorted_runs_combine_into_one_pair_per_key() {
        let job = runner();
        let (one, two) = (1u64.to_be_bytes(), 2u64.to_be_bytes());
        let pairs: [(&[u8], &[u8]); 4] = [(b"a", &one), (b"a", &two), (b"b", &two), (b"c", &one)];
        let mut sink = Collect(Vec::new());
        job.combine_sorted(&pairs, &mut sink).unwrap();
        let sums: Vec<(&[u8], u64)> =
            sink.0.iter().map(|(k, v)| (&k[..], u64::from_be_bytes(v[..].try_into().unwrap()))).collect();
        assert_eq!(sums, vec![(&b"a"[..], 3), (&b"b"[..], 2), (&b"c"[..], 1)]);
        let bad: [(&[u8], &[u8]); 2] = [(b"a", &one), (b"a", b"xyz")];
        assert!(job.combine_sorted(&bad, &mut sink).unwrap_err().is_decode());
    }

    #[test]
    fn a_block_maps_like_its_lines() {
        let job = runner();
        let task = TaskInfo::local();
        let block = Block::new("x", "", 0, b"a b a\nb a\n");
        let (mut by_block, mut by_line) = (Collect(Vec::new()), Collect(Vec::new()));
        let (mut c1, mut c2) = (Counters::new(), Counters::new());
        job.map_records(Records::Block(&block), &mut by_block, &mut c1, &task, MapOptions::default()).unwrap();
        let opts = MapOptions::skipping(true);
        job.map_records(Records::Block(&block), &mut by_line, &mut c2, &task, opts).unwrap();
        by_block.0.sort();
        by_line.0.sort();
        assert_eq!(by_block.0, by_line.0);
        assert_eq!((c1.get(names::MAP_INPUT_RECORDS), c2.get(names::MAP_INPUT_RECORDS)), (2, 2));
    }

    #[test]
    fn corrupt_values_are_a_decode_error_not_a_panic() {
        let job = runner();
        let task = TaskInfo::local();
        let mut out = PartWriter::new();
        let mut rc = Counters::new();
        let mut vals = [&b"xyz"[..]].into_iter();
        let e = job.reduce_encoded(b"a", &mut vals, &mut OutputContext::new(&mut out, &mut rc, &task)).unwrap_err();
        assert!(e.is_decode(), "{e}");
    }

    #[test]
    fn output_records_keep_their_kind_through_append_and_rollback() {
        let task = TaskInfo::local();
        let (mut a, mut b) = (PartWriter::new(), PartWriter::new());
        let mut c = Counters::new();
        OutputContext::new(&mut a, &mut c, &task).emit("k\u{e9}", 7);
        let mark = a.mark();
        OutputContext::new(&mut a, &mut c, &task).emit_line("dropped");
        a.rollback(mark);
        OutputContext::new(&mut b, &mut c, &task).emit_line("a\tline");
        OutputContext::new(&mut b, &mut c, &task).emit_bytes(&[0, 159, 10]);
        a.append(b);
        assert!(a.iter().any(|r| matches!(r, OutRecord::Bytes(_))));
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![OutRecord::Pair("k\u{e9}", "7"), OutRecord::Line("a\tline"), OutRecord::Bytes(&[0, 159, 10])]
        );
        assert_eq!(a.records(), 3);
        assert_eq!(a.into_bytes(), b"k\xc3\xa9\t7\na\tline\n\x00\x9f\n".to_vec());
    }

    /// Emits, for every record, which attempt and worker mapped it.
    struct WhoAmI;
    impl Job for WhoAmI {
        type Key = String;
        type Value = String;
        fn map(&self, _: &Record<'_>, ctx: &mut MapContext<'_, String, String>) -> Result<(), JobError> {
            let (attempt, worker) = (ctx.task().attempt.to_string(), ctx.task().worker.to_string());
            ctx.emit_owned(attempt, worker);
            Ok(())
        }
        fn reduce(
            &self,
            _: String,
            _: &mut dyn Iterator<Item = String>,
            _: &mut OutputContext<'_>,
        ) -> Result<(), JobError> {
            Ok(())
        }
    }

    #[test]
    fn map_code_sees_the_task_it_runs_in() {
        let job = JobRunner::new(WhoAmI, &Params::default()).unwrap();
        let task = TaskInfo::local();
        let mut recs = std::iter::once(Record::text("x", 0, "a"));
        let mut sink = Collect(Vec::new());
        job.map_records(Records::Each(&mut recs), &mut sink, &mut Counters::new(), &task, MapOptions::default())
            .unwrap();
        let (k, v) = &sink.0[0];
        assert_eq!((&k[..], &v[..]), (task.attempt.to_string().as_bytes(), task.worker.to_string().as_bytes()));
    }

    #[test]
    fn undeclared_parameters_are_refused_before_the_job_is_built() {
        let mut r = crate::Registry::new();
        r.register("who", "", &["n"], |_| Ok(WhoAmI));
        let p = |kv: &str| Params::parse_pairs(&[kv]).unwrap();
        assert!(r.create("who", &p("n=1")).is_ok());
        assert!(r.create("who", &p("__cuts=00")).is_ok(), "framework parameters always pass");
        let e = r.create("who", &p("m=1")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("unknown parameter") && e.contains("this job takes: n"), "{e}");
    }

    struct Upper;
    impl MapOnlyJob for Upper {
        fn map(&self, rec: &Record<'_>, out: &mut OutputContext<'_>) -> Result<(), JobError> {
            if rec.line == "boom" {
                panic!("bad record");
            }
            out.emit_line(rec.line.to_uppercase());
            Ok(())
        }
    }

    #[test]
    fn a_map_only_job_writes_output_in_input_order_and_skips_panics() {
        let job = MapOnlyRunner(Upper);
        let task = TaskInfo::local();
        let block = Block::new("x", "", 0, b"b\nboom\na\n");
        let mut out = PartWriter::new();
        let mut c = Counters::new();
        job.map_to_part(Records::Block(&block), &mut out, &mut c, &task, MapOptions::skipping(true)).unwrap();
        assert_eq!(out.into_bytes(), b"B\nA\n");
        assert_eq!((c.get(names::MAP_INPUT_RECORDS), c.get(names::SKIPPED_RECORDS)), (3, 1));
        assert_eq!(c.get(names::MAP_OUTPUT_RECORDS), 2);
        assert_eq!(job.reducers(), Some(0));
    }
}
