//! `crashtest`: word count that misbehaves on purpose, for fault-tolerance tests. A port of
//! the crash test of MIT 6.824's MapReduce lab: map and reduce calls make the *worker process*
//! exit or stall at random.
//!
//! Parameters (all optional):
//! - `crash=P`: each map task (rolled at the first line of each input object, so use one
//!   split per object) exits the process with probability P;
//! - `stall=P`, `stall_ms=N`: ...or sleeps up to N ms (default 2000) with probability P;
//! - `reduce_crash=P`, `reduce_stall=P`: the same rolls for every reduce key group;
//! - `panic_word=W`: the map function panics on every line containing W (a deterministic
//!   bad record, for skipping mode);
//! - `fail_once=PATH`: the first map attempt to create the file PATH fails (a forced retry);
//! - `hang_once=PATH`: the first map attempt to create the file PATH hangs for `stall_ms`
//!   (a task that makes no progress, for `--task-timeout`).

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quern_api::{Combiner, Job, JobError, MapContext, OutputContext, ParamError, Params, Record};

use quern_examples::wordcount::WordCount;

/// The misbehaving word count.
#[derive(Debug, Clone)]
pub struct CrashTest {
    crash: f64,
    stall: f64,
    stall_ms: u64,
    reduce_crash: f64,
    reduce_stall: f64,
    panic_word: Option<String>,
    fail_once: Option<std::path::PathBuf>,
    hang_once: Option<std::path::PathBuf>,
}

fn probability(p: &Params, key: &str) -> Result<f64, ParamError> {
    let v: f64 = p.parse_or(key, 0.0)?;
    if !(0.0..=1.0).contains(&v) {
        return Err(ParamError { key: key.into(), reason: format!("{v} is not a probability in [0, 1]") });
    }
    Ok(v)
}

/// Longest stall: a stall is a slow machine, not a slot taken for good.
const MAX_STALL_MS: u64 = 3_600_000;

fn stall_ms(p: &Params) -> Result<u64, ParamError> {
    let ms = p.parse_or("stall_ms", 2000)?;
    if ms > MAX_STALL_MS {
        return Err(ParamError {
            key: "stall_ms".into(),
            reason: format!("{ms} is more than {MAX_STALL_MS} (an hour)"),
        });
    }
    Ok(ms)
}

/// The parameters `crashtest` takes.
pub const PARAMS: &[&str] =
    &["crash", "stall", "stall_ms", "reduce_crash", "reduce_stall", "panic_word", "fail_once", "hang_once"];

impl CrashTest {
    /// Builds the job from its parameters.
    pub fn from_params(p: &Params) -> Result<Self, ParamError> {
        Ok(CrashTest {
            crash: probability(p, "crash")?,
            stall: probability(p, "stall")?,
            stall_ms: stall_ms(p)?,
            reduce_crash: probability(p, "reduce_crash")?,
            reduce_stall: probability(p, "reduce_stall")?,
            panic_word: p.get("panic_word").filter(|w| !w.is_empty()).map(str::to_string),
            fail_once: p.get("fail_once").filter(|w| !w.is_empty()).map(std::path::PathBuf::from),
            hang_once: p.get("hang_once").filter(|w| !w.is_empty()).map(std::path::PathBuf::from),
        })
    }

    /// Exits the process with probability `crash`, else stalls with probability `stall`.
    fn roll(&self, crash: f64, stall: f64) {
        let r = random();
        if r < crash {
            // Like a machine dying: no cleanup, no report.
            std::process::exit(1);
        }
        if r < crash + stall {
            let ms = (random() * self.stall_ms as f64) as u64;
            std::thread::sleep(Duration::from_millis(ms));
        }
    }
}

/// A uniform number in [0, 1): xorshift per thread, seeded from the clock, the process and
/// the thread, so that restarted workers roll differently.
fn random() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
            let here = &nanos as *const u64 as u64;
            (nanos ^ u64::from(std::process::id()).rotate_left(32) ^ here) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

impl Job for CrashTest {
    type Key = String;
    type Value = u64;
    fn map(&self, rec: &Record<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
        if rec.offset == 0 {
            self.roll(self.crash, self.stall);
            // Exactly one forced failure per job: the first map attempt to create the marker.
            if let Some(marker) = &self.fail_once
                && std::fs::OpenOptions::new().write(true).create_new(true).open(marker).is_ok()
            {
                // A line of the user's own, for `quern logs` to bring back.
                tracing::warn!(source = %rec.source, "crashtest: failing this attempt on purpose");
                return Err(JobError::new("crashtest: forced failure (fail_once)"));
            }
            if let Some(marker) = &self.hang_once
                && std::fs::OpenOptions::new().write(true).create_new(true).open(marker).is_ok()
            {
                std::thread::sleep(Duration::from_millis(self.stall_ms));
            }
        }
        if let Some(w) = &self.panic_word
            && rec.line.contains(w.as_str())
        {
            panic!("crashtest: bad record at offset {} of {}", rec.offset, rec.source);
        }
        WordCount::default().map(rec, ctx)
    }

    fn combiner(&self) -> Option<Combiner<'_, u64>> {
        Some(Combiner::sum())
    }

    fn reduce(
        &self,
        word: String,
        counts: &mut dyn Iterator<Item = u64>,
        out: &mut OutputContext<'_>,
    ) -> Result<(), JobError> {
        self.roll(self.reduce_crash, self.reduce_stall);
        WordCount::default().reduce(word, counts, out)
    }
}
