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
