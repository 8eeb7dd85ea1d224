//! Word count, with a combiner: the classic. Optionally without stop words, read from side
//! data (`--side NAME=FILE --param stopwords=NAME`, one word per line).

use std::collections::HashSet;

use quern_api::{Block, Combiner, Job, JobError, MapContext, OutputContext, ParamError, Params, Record};

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

impl WordCount {
    /// Emits every word of `text` not among the stop words. Borrowed keys: a word already in
    /// the combine table costs no allocation.
    fn count_words(&self, text: &str, ctx: &mut MapContext<'_, String, u64>) {
        let mut emit = |w: &str| {
            if self.stop.is_empty() || !self.stop.contains(w) {
                ctx.emit(w, 1)
            }
        };
        if text.is_ascii() {
            // Alphabetic ASCII is all of `char::is_alphabetic` in ASCII text: a byte scan.
            let bytes = text.as_bytes();
            let mut start = None;
            for (i, b) in bytes.iter().enumerate() {
                match (b.is_ascii_alphabetic(), start) {
                    (true, None) => start = Some(i),
                    (false, Some(s)) => {
                        emit(&text[s..i]);
                        start = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = start {
                emit(&text[s..]);
            }
        } else {
            for_each_word(text, emit);
        }
    }
}

impl Job for WordCount {
    type Key = String;
    type Value = u64;
    fn map(&self, rec: &Record<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
        self.count_words(rec.line, ctx);
        Ok(())
    }

    /// A run of lines at once: no word spans a line (`\n` is not alphabetic), so the block's
    /// text is scanned in one pass instead of a call per line.
    fn map_block(&self, block: &Block<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
        self.count_words(block.text(), ctx);
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

#[cfg(test)]
mod tests {
    use quern_api::context::PairSink;
    use quern_api::runner::JobRunner;
    use quern_api::{Counters, DynJob, MapOptions, Records, TaskInfo};

    use super::*;

    #[derive(Default)]
    struct Pairs(Vec<(Vec<u8>, Vec<u8>)>);
    impl PairSink for Pairs {
        fn push(&mut self, k: &[u8], v: &[u8]) {
            self.0.push((k.to_vec(), v.to_vec()));
        }
    }

    /// The block scan (ASCII fast path or not) counts what the line-by-line map counts.
    #[test]
    fn a_block_counts_the_words_its_lines_hold() {
        let stop = Params::parse_pairs(&["stopwords=s"]).unwrap().with_side("s", "the\n".into());
        for params in [Params::default(), stop] {
            let job = JobRunner::new(WordCount::from_params(&params).unwrap(), &params).unwrap();
            for text in
                [&b"the cat, the hat\nsat42on\r\nmat"[..], "wörld the öl\nx\u{e9}y the\n".as_bytes(), b"a\xffb c\n"]
            {
                let block = Block::new("f", "", 0, text);
                let (mut whole, mut lines) = (Pairs::default(), Pairs::default());
                let task = TaskInfo::local();
                job.map_records(Records::Block(&block), &mut whole, &mut Counters::new(), &task, MapOptions::default())
                    .unwrap();
                // Skipping mode maps line by line.
                let opts = MapOptions::skipping(true);
                job.map_records(Records::Block(&block), &mut lines, &mut Counters::new(), &task, opts).unwrap();
                whole.0.sort();
                lines.0.sort();
                assert_eq!(whole.0, lines.0, "{}", String::from_utf8_lossy(text));
                assert!(!whole.0.is_empty());
            }
        }
    }
}
