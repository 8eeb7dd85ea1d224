//! Word count, with a combiner: the classic. Optionally without stop words, read from side
//! data (`--side NAME=FILE --param stopwords=NAME`, one word per line).

use std::collections::HashSet;

use quern_api::{Combiner, Job, JobError, MapContext, OutputContext, ParamError, Params, Record};

use crate::for_each_word;

/// Counts occurrences of every word.
#[derive(Debug, Clone)]
pub struct WordCount {
    /// Whether to pre-aggregate map output (`--param combiner=false` turns it off; the output
    /// is the same, the shuffle much larger).
    pub combiner: bool,
    /// Words not to count.
    pub stop: HashSet<String>,
}

impl Default for WordCount {
    fn default() -> Self {
        WordCount { combiner: true, stop: HashSet::new() }
    }
}

impl WordCount {
    /// Builds the job from `--param combiner=BOOL` and `--param stopwords=NAME` (side data).
    pub fn from_params(p: &Params) -> Result<Self, ParamError> {
        let combiner = p.parse_or("combiner", true)?;
        let stop = match p.get("stopwords") {
            None => HashSet::new(),
            Some(name) => {
                let bytes = p.side(name).ok_or_else(|| ParamError {
                    key: "stopwords".into(),
                    reason: format!(
                        "no side data named {} (give it with --side NAME=FILE)",
                        quern_api::registry::shown(name)
                    ),
                })?;
                String::from_utf8_lossy(bytes).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
            }
        };
        Ok(WordCount { combiner, stop })
    }
}

impl Job for WordCount {
    type Key = String;
    type Value = u64;
    fn map(&self, rec: &Record<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
        // Borrowed keys: a word already in the combine table costs no allocation.
        if self.stop.is_empty() {
            for_each_word(rec.line, |w| ctx.emit(w, 1));
        } else {
            for_each_word(rec.line, |w| {
                if !self.stop.contains(w) {
                    ctx.emit(w, 1)
                }
            });
        }
        Ok(())
    }

    fn combiner(&self) -> Option<Combiner<'_, u64>> {
        self.combiner.then(Combiner::sum)
    }

    fn reduce(
        &self,
        word: String,
        counts: &mut dyn Iterator<Item = u64>,
        out: &mut OutputContext<'_>,
    ) -> Result<(), JobError> {
        out.emit(word, counts.sum::<u64>());
        Ok(())
    }
}
