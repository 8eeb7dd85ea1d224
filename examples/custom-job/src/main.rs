//! A user's own Quern binary: one job of its own (`wordlengths`) next to the built-ins.
//!
//! This binary is a complete `quern` CLI: run the job in-process for debugging,
//!
//! ```text
//! my-quern run --job wordlengths --input examples/data/ --output /tmp/lengths
//! ```
//!
//! or start it as workers of a real cluster (`my-quern worker --coordinator URL`) and
//! `my-quern submit --job wordlengths ...` to it: the coordinator sends `wordlengths` tasks
//! only to workers that advertise the job.

use quern_api::{Combiner, Job, JobError, MapContext, OutputContext, Record};

/// Counts words by their length in characters.
struct WordLengths {
    /// Ignore words shorter than this (`--param min=N`, default 1).
    min: u64,
}

impl Job for WordLengths {
    type Key = u64;
    type Value = u64;

    fn map(&self, rec: &Record<'_>, ctx: &mut MapContext<'_, u64, u64>) -> Result<(), JobError> {
        for word in rec.line.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()) {
            let len = word.chars().count() as u64;
            if len >= self.min {
                ctx.emit(&len, 1);
            }
        }
        Ok(())
    }

    fn combiner(&self) -> Option<Combiner<'_, u64>> {
        Some(Combiner::sum())
    }

    fn reduce(
        &self,
        len: u64,
        counts: &mut dyn Iterator<Item = u64>,
        out: &mut OutputContext<'_>,
    ) -> Result<(), JobError> {
        out.emit(len, counts.sum::<u64>());
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    let mut jobs = quern_examples::builtin();
    // Parameters not declared here (`--param mni=3`) are refused before the job is built.
    jobs.register("wordlengths", "count words by length (--param min=N)", &["min"], |params| {
        Ok(WordLengths { min: params.parse_or("min", 1)? })
    });
    quern_cli::main_with(jobs)
}
