//! Word count, with a combiner: the classic.

use quern_api::{Job, JobError, MapContext, ReduceContext, TextRecord};

use crate::for_each_word;

/// Counts occurrences of every word.
#[derive(Debug, Clone, Copy)]
pub struct WordCount {
    /// Whether to pre-aggregate map output (`--param combiner=false` turns it off; the output
    /// is the same, the shuffle much larger).
    pub combiner: bool,
}

impl Default for WordCount {
    fn default() -> Self {
        WordCount { combiner: true }
    }
}

/// Word count that leaves out stop words: `--param stopwords=NAME` names side data
/// (`--side NAME=FILE`) holding one word per line.
#[derive(Debug, Clone, Default)]
pub struct StopWordCount {
    count: WordCount,
    stop: std::collections::HashSet<String>,
}

impl StopWordCount {
    /// Builds the job from its parameters and side data.
    pub fn from_params(p: &quern_api::Params) -> Result<Self, quern_api::ParamError> {
        p.allow_only(&["combiner", "stopwords"])?;
        let count = WordCount { combiner: p.parse_or("combiner", true)? };
        let stop = match p.get("stopwords") {
            None => Default::default(),
            Some(name) => {
                let bytes = p.side(name).ok_or_else(|| quern_api::ParamError {
                    key: "stopwords".into(),
                    reason: format!("no side data named {name:?} (give it with --side {name}=FILE)"),
                })?;
                String::from_utf8_lossy(bytes).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
            }
        };
        Ok(StopWordCount { count, stop })
    }
}

impl Job for StopWordCount {
    type Key = String;
    type Value = u64;
    const COMBINER: bool = true;

    fn uses_combiner(&self) -> bool {
        self.count.combiner
    }

    fn map(&self, rec: &TextRecord<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
        if self.stop.is_empty() {
            return self.count.map(rec, ctx);
        }
        for_each_word(rec.line, |w| {
            if !self.stop.contains(w) {
                ctx.emit_borrowed(w, 1)
            }
        });
        Ok(())
    }

    fn combine(&self, acc: &mut u64, n: u64) {
        *acc += n;
    }

    fn reduce(
        &self,
        word: String,
        counts: &mut dyn Iterator<Item = u64>,
        out: &mut ReduceContext<'_>,
    ) -> Result<(), JobError> {
        self.count.reduce(word, counts, out)
    }
}

impl Job for WordCount {
    type Key = String;
    type Value = u64;
    const COMBINER: bool = true;

    fn uses_combiner(&self) -> bool {
        self.combiner
    }

    fn map(&self, rec: &TextRecord<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
        // Borrowed keys: a word already in the combine table costs no allocation.
        for_each_word(rec.line, |w| ctx.emit_borrowed(w, 1));
        Ok(())
    }

    fn combine(&self, acc: &mut u64, n: u64) {
        *acc += n;
    }

    fn reduce(
        &self,
        word: String,
        counts: &mut dyn Iterator<Item = u64>,
        out: &mut ReduceContext<'_>,
    ) -> Result<(), JobError> {
        out.emit(word, counts.sum::<u64>());
        Ok(())
    }
}
