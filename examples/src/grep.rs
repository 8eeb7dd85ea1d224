//! Distributed grep: counts every substring matching a regular expression.

use quern_api::{Combiner, Job, JobError, MapContext, OutputContext, ParamError, Params, Record};
use regex::Regex;

/// Counts matches of `pattern`.
#[derive(Debug, Clone)]
pub struct Grep {
    pattern: Regex,
}

impl Grep {
    /// Builds the job from `--param pattern=REGEX`.
    pub fn from_params(p: &Params) -> Result<Self, ParamError> {
        let raw = p.require("pattern")?;
        if raw.is_empty() {
            return Err(ParamError { key: "pattern".into(), reason: "must not be empty".into() });
        }
        let pattern = Regex::new(raw).map_err(|e| ParamError {
            key: "pattern".into(),
            reason: format!(
                "not a valid regular expression: {}",
                e.to_string().lines().last().unwrap_or("").trim_start_matches("error: ")
            ),
        })?;
        Ok(Grep { pattern })
    }
}

impl Job for Grep {
    type Key = String;
    type Value = u64;
    fn map(&self, rec: &Record<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
        for m in self.pattern.find_iter(rec.line) {
            ctx.emit(m.as_str(), 1);
        }
        Ok(())
    }

    fn combiner(&self) -> Option<Combiner<'_, u64>> {
        Some(Combiner::sum())
    }

    fn reduce(
        &self,
        m: String,
        counts: &mut dyn Iterator<Item = u64>,
        out: &mut OutputContext<'_>,
    ) -> Result<(), JobError> {
        out.emit(m, counts.sum::<u64>());
        Ok(())
    }
}
