//! Wire messages into Quern types: the one place where the coordinator reads what a peer
//! sent. Everything past this module is typed, bounded and parsed: store URLs are
//! [`StoreUrl`]s, formats are [`InputFormat`]/[`OutputFormat`], stage inputs are
//! [`StageInput`]s, and a worker's report names attempts and partitions, never objects: the
//! coordinator builds every object name it acts on from job and attempt ids.
//!
//! Every list, map and string that arrives has a limit here ([`limits`]), so a peer cannot
//! make the coordinator hold more than a bounded amount per message.

use std::collections::{BTreeMap, BTreeSet};

use quern_api::{AttemptId, Counters, InputFormat, OutputFormat, ProtocolError, StageInput, StoreUrl, pb};
use tonic::Status;

use crate::core::{FailureKind, LostMap, Outcome};
use crate::job::{Formats, JobSpec, Stage};
use crate::task::Segment;

/// The bounds on what one message may carry.
pub mod limits {
    /// Input URLs of one job.
    pub const INPUTS: usize = 10_000;
    /// Parameters of one job or stage.
    pub const PARAMS: usize = 256;
    /// Bytes of one parameter value (total-order cut points for many reducers are long).
    pub const PARAM_BYTES: usize = 1 << 20;
    /// Bytes of all parameter keys and values of one job, stages included.
    pub const ALL_PARAM_BYTES: usize = 4 << 20;
    /// Stages of one pipeline.
    pub const STAGES: usize = 64;
    /// Side data objects of one job.
    pub const SIDE: usize = 64;
    /// Bytes of a name: job, parameter key, side data name, host, rack.
    pub const NAME: usize = 256;
    /// Bytes of a URL.
    pub const URL: usize = 4096;
    /// Job names one worker may say it runs.
    pub const WORKER_JOBS: usize = 4096;
    /// `--local-data` prefixes of one worker.
    pub const LOCAL_DATA: usize = 1024;
    /// Task slots of one worker.
    pub const SLOTS: u32 = 1024;
    /// Cached ranges one heartbeat may list (more are ignored, not refused).
    pub const CACHED: usize = 100_000;
    /// Attempts one heartbeat may list as running (a worker has at most [`SLOTS`] slots).
    pub const RUNNING: usize = 4 * SLOTS as usize;
    /// Counters of one attempt.
    pub const COUNTERS: usize = 1024;
    /// Bytes of a failure message kept (longer ones are cut).
    pub const MESSAGE: usize = 4096;
    /// Log lines of a failed attempt kept (the last ones).
    pub const LOG_LINES: usize = 100;
    /// Bytes of one log line kept.
    pub const LOG_LINE: usize = 512;
    /// Reduce tasks (and so partitions) of one job, and map tasks of a generator.
    pub const REDUCERS: u32 = 100_000;
    /// Map tasks (input splits) of one job or stage.
    pub const MAPS: u32 = 100_000;
    /// Records a generator job may make (10^15: 100 PB of TeraGen records).
    pub const GENERATE_ROWS: u64 = 1_000_000_000_000_000;
}

/// A wire message the coordinator will not take.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// A required field is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A field has a value that is not allowed.
    #[error("{field}: {reason}")]
    Bad {
        /// Which field.
        field: String,
        /// Why.
        reason: String,
    },
    /// A list, map or string is over its limit.
    #[error("{what}: {given} is over the limit of {limit}")]
    TooMany {
        /// What was counted.
        what: String,
        /// How many (or how many bytes) were sent.
        given: usize,
        /// The limit.
        limit: usize,
    },
    /// An id or reference does not parse.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl From<ConvertError> for Status {
    fn from(e: ConvertError) -> Status {
        Status::invalid_argument(e.to_string())
    }
}

fn bad(field: impl Into<String>, reason: impl ToString) -> ConvertError {
    ConvertError::Bad { field: field.into(), reason: reason.to_string() }
}

fn at_most(what: impl Into<String>, given: usize, limit: usize) -> Result<(), ConvertError> {
    if given > limit { Err(ConvertError::TooMany { what: what.into(), given, limit }) } else { Ok(()) }
}

/// A name: non-empty after trimming, printable, at most [`limits::NAME`] bytes.
fn name(field: &str, s: String) -> Result<String, ConvertError> {
    at_most(format!("{field} length"), s.len(), limits::NAME)?;
    if s.trim().is_empty() {
        return Err(bad(field, "is empty"));
    }
    if s.chars().any(char::is_control) {
        return Err(bad(field, "holds control characters"));
    }
    Ok(s)
}

fn url(field: &str, s: &str) -> Result<StoreUrl, ConvertError> {
    at_most(format!("{field} length"), s.len(), limits::URL)?;
    StoreUrl::parse(s).map_err(|e| bad(field, e))
}

fn check_params(
    field: &str,
    p: BTreeMap<String, String>,
    total: &mut usize,
) -> Result<BTreeMap<String, String>, ConvertError> {
    at_most(format!("{field} count"), p.len(), limits::PARAMS)?;
    for (k, v) in &p {
        name(&format!("{field} key"), k.clone())?;
        at_most(format!("{field} {k:?} length"), v.len(), limits::PARAM_BYTES)?;
        *total += k.len() + v.len();
    }
    at_most(format!("{field} total bytes"), *total, limits::ALL_PARAM_BYTES)?;
    Ok(p)
}

fn formats(input: &str, output: &str) -> Result<Formats, ConvertError> {
    Ok(Formats {
        input: input.parse::<InputFormat>().map_err(|e| bad("input format", e))?,
        output: output.parse::<OutputFormat>().map_err(|e| bad("output format", e))?,
    })
}

fn reducers(field: &str, n: u32) -> Result<u32, ConvertError> {
    if n > limits::REDUCERS {
        return Err(bad(field, format!("must be between 0 and {}, not {n}", limits::REDUCERS)));
    }
    Ok(n)
}

/// A submission: the job and, for generators, how many map tasks were asked for (0: the
/// default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    /// The job.
    pub spec: JobSpec,
    /// Map tasks of a generator job.
    pub maps: u32,
}

/// Default split size: 64 MiB, as Hadoop's block size.
pub const DEFAULT_SPLIT_SIZE: u64 = 64 * 1024 * 1024;

impl TryFrom<pb::JobSpec> for Submission {
    type Error = ConvertError;
    fn try_from(spec: pb::JobSpec) -> Result<Self, ConvertError> {
        let job = name("job name", spec.job)?;
        let maps = spec.maps;
        at_most("inputs", spec.inputs.len(), limits::INPUTS)?;
        at_most("pipeline stages", spec.stages.len(), limits::STAGES)?;
        at_most("side data", spec.side.len(), limits::SIDE)?;
        if spec.inputs.is_empty() && spec.generate_rows == 0 {
            return Err(bad("input", "none given"));
        }
        if !spec.inputs.is_empty() && spec.generate_rows > 0 {
            return Err(bad("input", "a generator job reads no input"));
        }
        if spec.generate_rows > limits::GENERATE_ROWS {
            return Err(bad(
                "generate_rows",
                format!("a generator makes at most {} records, not {}", limits::GENERATE_ROWS, spec.generate_rows),
            ));
        }
        if spec.maps > limits::REDUCERS {
            return Err(bad("maps", format!("must be at most {}, not {}", limits::REDUCERS, spec.maps)));
        }
        let inputs = spec.inputs.iter().map(|u| url("input", u)).collect::<Result<Vec<_>, _>>()?;
        let output = url("output", &spec.output)?;
        let mut total = 0;
        let params = check_params("param", spec.params, &mut total)?;
        let stage_count = spec.stages.len();
        let stages = spec
            .stages
            .into_iter()
            .enumerate()
            .map(|(k, s)| {
                let field = format!("pipeline stage {k}");
                at_most(format!("{field} inputs"), s.inputs.len(), limits::STAGES + 1)?;
                let mut inputs = Vec::new();
                for &i in &s.inputs {
                    let input = match StageInput::try_from(i64::from(i)) {
                        Ok(StageInput::Stage(j)) if j >= k => {
                            return Err(bad(&field, format!("cannot read stage {j}")));
                        }
                        Ok(input) => input,
                        Err(why) => return Err(bad(&field, why)),
                    };
                    // Each source once: duplicates would list (and read) it again and again.
                    if !inputs.contains(&input) {
                        inputs.push(input);
                    }
                }
                Ok(Stage {
                    job: name(&format!("{field} job"), s.job)?,
                    params: check_params(&format!("{field} param"), s.params, &mut total)?,
                    reducers: reducers(&format!("{field} reducers"), s.reducers)?,
                    formats: formats(&s.input_format, &s.output_format)?,
                    inputs,
                })
            })
            .collect::<Result<Vec<_>, ConvertError>>()?;
        debug_assert_eq!(stages.len(), stage_count);
        let side = spec
            .side
            .into_iter()
            .map(|(n, u)| {
                let n = name("side data name", n)?;
                let u = url(&format!("side data {n:?}"), &u)?;
                Ok((n, u))
            })
            .collect::<Result<BTreeMap<_, _>, ConvertError>>()?;
        let spec = JobSpec {
            name: job,
            inputs,
            output,
            reducers: reducers("reducers", spec.reducers)?,
            split_size: if spec.split_size == 0 { DEFAULT_SPLIT_SIZE } else { spec.split_size },
            params,
            priority: spec.priority,
            skip_bad_records: spec.skip_bad_records,
            stages,
            side,
            formats: formats(&spec.input_format, &spec.output_format)?,
            generate_rows: spec.generate_rows,
        };
        Ok(Submission { spec, maps })
    }
}

/// What a worker says about itself when it registers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// Host name, for locality.
    pub host: String,
    /// Rack name, for locality.
    pub rack: String,
    /// Tasks it runs at once (1..=[`limits::SLOTS`]).
    pub slots: u32,
    /// Jobs its binary can run.
    pub jobs: BTreeSet<String>,
    /// Input on its own disk: directory URLs (`--local-data`).
    pub local_data: Vec<StoreUrl>,
}

impl TryFrom<pb::RegisterRequest> for Registration {
    type Error = ConvertError;
    fn try_from(r: pb::RegisterRequest) -> Result<Self, ConvertError> {
        at_most("host length", r.host.len(), limits::NAME)?;
        at_most("rack length", r.rack.len(), limits::NAME)?;
        at_most("jobs", r.jobs.len(), limits::WORKER_JOBS)?;
        at_most("local data prefixes", r.local_data.len(), limits::LOCAL_DATA)?;
        if r.slots == 0 || r.slots > limits::SLOTS {
            return Err(bad("slots", format!("must be between 1 and {}, not {}", limits::SLOTS, r.slots)));
        }
        let jobs = r.jobs.into_iter().map(|j| name("job name", j)).collect::<Result<_, _>>()?;
        let mut local_data = Vec::new();
        for p in &r.local_data {
            // Only directories say where input lives; a bare object name is no prefix.
            let u = url("local data", p)?;
            if u.is_dir() {
                local_data.push(u);
            }
        }
        Ok(Registration { host: r.host, rack: r.rack, slots: r.slots, jobs, local_data })
    }
}

/// A byte range of an object that a worker's cache holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedRange {
    /// The object.
    pub url: StoreUrl,
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// The cached ranges of a heartbeat: well-formed ones, at most [`limits::CACHED`]. A cache
/// listing is a scheduling hint, so bad entries are dropped rather than refused.
pub fn cached_ranges(ranges: Vec<pb::CachedRange>) -> Vec<CachedRange> {
    ranges
        .into_iter()
        .take(limits::CACHED)
        .filter(|c| c.start <= c.end && c.url.len() <= limits::URL)
        .filter_map(|c| Some(CachedRange { url: StoreUrl::parse(&c.url).ok()?, start: c.start, end: c.end }))
        .collect()
}

/// The attempts a heartbeat says its worker runs, at most [`limits::RUNNING`].
pub fn running(refs: &[pb::AttemptRef]) -> Result<BTreeSet<AttemptId>, ConvertError> {
    at_most("running attempts", refs.len(), limits::RUNNING)?;
    refs.iter().map(|r| AttemptId::try_from(r).map_err(ConvertError::from)).collect()
}

/// The progress counts of a heartbeat, at most [`limits::RUNNING`].
pub fn progress(items: &[pb::AttemptProgress]) -> Result<Vec<(AttemptId, u64)>, ConvertError> {
    at_most("progress entries", items.len(), limits::RUNNING)?;
    items.iter().map(|p| Ok((AttemptId::try_from(p.attempt.as_ref())?, p.steps))).collect()
}

/// Takes the log lines a failure report carries: the last [`limits::LOG_LINES`], each cut to
/// [`limits::LOG_LINE`] bytes, control characters (which could pose as line breaks or drive
/// a terminal) made spaces. Other outcomes carry none.
pub fn log_tail(r: &mut pb::OutcomeReport) -> Vec<String> {
    let Some(pb::outcome_report::Outcome::Failed(f)) = &mut r.outcome else { return Vec::new() };
    let lines = std::mem::take(&mut f.log_tail);
    let skip = lines.len().saturating_sub(limits::LOG_LINES);
    lines
        .into_iter()
        .skip(skip)
        .map(|l| {
            let mut cut = l.len().min(limits::LOG_LINE);
            while !l.is_char_boundary(cut) {
                cut -= 1;
            }
            l[..cut].chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
        })
        .collect()
}

/// A report of an attempt's outcome: the attempt and what happened to it.
pub fn report(r: pb::OutcomeReport) -> Result<(AttemptId, Outcome), ConvertError> {
    let attempt = AttemptId::try_from(r.attempt.as_ref())?;
    let outcome = match r.outcome.ok_or(ConvertError::Missing("outcome"))? {
        pb::outcome_report::Outcome::Succeeded(s) => {
            at_most("counters", s.counters.len(), limits::COUNTERS)?;
            for k in s.counters.keys() {
                name("counter", k.clone())?;
            }
            let segments = match s.map_output {
                None => None,
                Some(m) => {
                    at_most("partitions", m.partitions.len(), limits::REDUCERS as usize)?;
                    Some(m.partitions.iter().map(Segment::from).collect())
                }
            };
            Outcome::Succeeded { counters: Counters::from(s.counters), segments }
        }
        pb::outcome_report::Outcome::Failed(f) => {
            let kind = FailureKind::from(pb::FailureKind::try_from(f.kind).unwrap_or(pb::FailureKind::Internal));
            let mut message = f.message;
            if message.len() > limits::MESSAGE {
                let mut cut = limits::MESSAGE;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
                message.push('…');
            }
            let lost_map = match (kind, f.lost_map_index) {
                (FailureKind::MapOutputLost, Some(index)) => Some(LostMap { index, attempt: f.lost_map_attempt }),
                _ => None,
            };
            Outcome::Failed { kind, message, lost_map }
        }
        pb::outcome_report::Outcome::Killed(_) => Outcome::Killed,
    };
    Ok((attempt, outcome))
}

impl From<pb::FailureKind> for FailureKind {
    fn from(k: pb::FailureKind) -> Self {
        match k {
            pb::FailureKind::UserCode => FailureKind::UserCode,
            pb::FailureKind::Input => FailureKind::Input,
            pb::FailureKind::MapOutputLost => FailureKind::MapOutputLost,
            pb::FailureKind::Store => FailureKind::Store,
            pb::FailureKind::Config => FailureKind::Config,
            pb::FailureKind::Internal | pb::FailureKind::Unspecified => FailureKind::Internal,
        }
    }
}

impl From<&pb::Segment> for Segment {
    fn from(s: &pb::Segment) -> Self {
        Segment { offset: s.offset, length: s.length, crc32: s.crc32, records: s.records }
    }
}

impl From<&Segment> for pb::Segment {
    fn from(s: &Segment) -> Self {
        pb::Segment { offset: s.offset, length: s.length, crc32: s.crc32, records: s.records }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> pb::JobSpec {
        pb::JobSpec {
            job: "wordcount".into(),
            inputs: vec!["file:///in/".into()],
            output: "file:///out/".into(),
            reducers: 2,
            ..Default::default()
        }
    }

    #[test]
    fn a_plain_spec_converts_with_defaults() {
        let s = Submission::try_from(spec()).unwrap().spec;
        assert_eq!(s.split_size, DEFAULT_SPLIT_SIZE);
        assert_eq!(s.formats, Formats::default());
        assert_eq!(s.inputs[0].as_str(), "file:///in/");
    }

    #[test]
    fn bad_specs_are_refused_with_the_field_named() {
        type Edit = Box<dyn Fn(&mut pb::JobSpec)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|s| s.job = " ".into()), "job name"),
            (Box::new(|s| s.inputs = vec!["/etc/passwd".into()]), "input"),
            (Box::new(|s| s.output = "http://x/".into()), "output"),
            (Box::new(|s| s.input_format = "csv".into()), "input format"),
            (Box::new(|s| s.reducers = 100_001), "reducers"),
            (Box::new(|s| s.inputs = vec!["file:///a".into(); limits::INPUTS + 1]), "inputs"),
            (
                Box::new(|s| s.params.insert("k".into(), "v".repeat(limits::PARAM_BYTES + 1)).map(drop).unwrap_or(())),
                "param",
            ),
            (Box::new(|s| s.side.insert("n".into(), "relative/path".into()).map(drop).unwrap_or(())), "side data"),
            (
                Box::new(|s| s.stages = vec![pb::StageSpec { job: "x".into(), inputs: vec![0], ..Default::default() }]),
                "cannot read stage 0",
            ),
            (
                Box::new(|s| {
                    s.stages = vec![pb::StageSpec { job: "x".into(), inputs: vec![-2], ..Default::default() }]
                }),
                "no stage -2",
            ),
        ];
        for (edit, field) in cases {
            let mut s = spec();
            edit(&mut s);
            let e = Submission::try_from(s).map(|_| ()).expect_err(field).to_string();
            assert!(e.contains(field), "{e:?} should name {field:?}");
        }
    }

    #[test]
    fn registrations_are_bounded() {
        let ok =
            pb::RegisterRequest { host: "h".into(), slots: 2, jobs: vec!["wordcount".into()], ..Default::default() };
        assert!(Registration::try_from(ok.clone()).is_ok());
        let mut r = ok.clone();
        r.jobs = vec!["j".into(); limits::WORKER_JOBS + 1];
        assert!(Registration::try_from(r).is_err());
        let mut r = ok.clone();
        r.slots = 0;
        assert!(Registration::try_from(r).is_err());
        let mut r = ok;
        r.host = "h".repeat(limits::NAME + 1);
        assert!(Registration::try_from(r).is_err());
    }

    #[test]
    fn a_failures_log_lines_are_cut_to_the_last_ones_short_and_without_control_characters() {
        let mut lines: Vec<String> = (0..limits::LOG_LINES + 50).map(|i| format!("line {i}")).collect();
        lines.push(format!("\u{1b}[2J{}\n", "é".repeat(limits::LOG_LINE)));
        let mut r = pb::OutcomeReport {
            outcome: Some(pb::outcome_report::Outcome::Failed(pb::Failed { log_tail: lines, ..Default::default() })),
            ..Default::default()
        };
        let kept = log_tail(&mut r);
        assert_eq!(kept.len(), limits::LOG_LINES);
        assert_eq!(kept[0], format!("line {}", 51), "the last ones");
        let last = kept.last().unwrap();
        assert!(last.len() <= limits::LOG_LINE && last.starts_with(" [2J"), "{last}");
        assert!(kept.iter().all(|l| !l.chars().any(char::is_control)));
        let Some(pb::outcome_report::Outcome::Failed(f)) = &r.outcome else { panic!("a failure") };
        assert!(f.log_tail.is_empty(), "taken out of the report");
        let mut ok = pb::OutcomeReport {
            outcome: Some(pb::outcome_report::Outcome::Succeeded(Default::default())),
            ..Default::default()
        };
        assert!(log_tail(&mut ok).is_empty());
    }

    #[test]
    fn reports_carry_no_names_and_long_messages_are_cut() {
        let r = pb::OutcomeReport {
            worker_id: "w".into(),
            worker_secret: String::new(),
            attempt: Some(pb::AttemptRef { job_id: "job_1_0001".into(), kind: 1, index: 0, attempt: 1 }),
            outcome: Some(pb::outcome_report::Outcome::Failed(pb::Failed {
                kind: pb::FailureKind::MapOutputLost as i32,
                message: "é".repeat(limits::MESSAGE),
                lost_map_index: Some(3),
                lost_map_attempt: 2,
                log_tail: Vec::new(),
            })),
        };
        let (_, outcome) = report(r).unwrap();
        let Outcome::Failed { message, lost_map, .. } = outcome else { panic!("not a failure") };
        assert!(message.len() <= limits::MESSAGE + '…'.len_utf8());
        assert_eq!(lost_map, Some(LostMap { index: 3, attempt: 2 }));
    }
}

#[cfg(test)]
#[path = "convert_fuzz.rs"]
mod fuzz;
