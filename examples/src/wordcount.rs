//! Word count, with a combiner: the classic. Optionally without stop words, read from side
//! data (`--side NAME=FILE --param stopwords=NAME`, one word per line).

use std::collections::HashSet;

use quern_api::words::for_each_ascii_word;
use quern_api::{Block, ByteCounts, Combiner, Job, JobError, MapContext, OutputContext, ParamError, Params, Record};

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

/// The user counter of words counted (map output records count pairs, and a block's pairs
/// are its distinct words).
pub const WORDS: &str = "WORDS";

impl WordCount {
    /// Calls `f` with every word of `text` not among the stop words.
    fn for_each_counted<'t>(&self, text: &'t str, mut f: impl FnMut(&'t str)) {
        let stop = &self.stop;
        let mut counted = |w: &'t str| {
            if stop.is_empty() || !stop.contains(w) {
                f(w)
            }
        };
        if !text.is_ascii() {
            return for_each_word(text, counted);
        }
        // Alphabetic ASCII is all of `char::is_alphabetic` in ASCII text: a scan by letter
        // masks.
        for_each_ascii_word(text.as_bytes(), |r| counted(&text[r]));
    }

    /// In-mapper combining: counts the words of `text` in a table of its own, then emits each
    /// distinct word once, so the framework's combine table sees one pair per word of the
    /// vocabulary, not one per word of the text.
    fn count_block(&self, text: &str, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
        // Sized by the text (a word and its separator take two bytes at least), up to a
        // vocabulary's worth; the table grows past that if it must.
        let mut counts = ByteCounts::with_capacity((text.len() / 8).min(1 << 16));
        let mut words = 0;
        self.for_each_counted(text, |w| {
            // `w` lies in `text`: where it starts lets the table load it with one read.
            counts.add_at(text.as_bytes(), w.as_ptr() as usize - text.as_ptr() as usize, w.len(), 1);
            words += 1;
        });
        for (word, n) in counts.iter() {
            // Words are slices of `text` cut at character boundaries: valid UTF-8.
            ctx.emit(std::str::from_utf8(word)?, n);
        }
        ctx.count(WORDS, words);
        Ok(())
    }
}

impl Job for WordCount {
    type Key = String;
    type Value = u64;
    fn map(&self, rec: &Record<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
        let mut words = 0;
        self.for_each_counted(rec.line, |w| {
            ctx.emit(w, 1);
            words += 1;
        });
        ctx.count(WORDS, words);
        Ok(())
    }

    /// A run of lines at once: no word spans a line (`\n` is not alphabetic), so the block's
    /// text is scanned in one pass instead of a call per line, and (with the combiner on)
    /// counted before it is emitted.
    fn map_block(&self, block: &Block<'_>, ctx: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
        if self.combiner {
            return self.count_block(block.text(), ctx);
        }
        let mut words = 0;
        self.for_each_counted(block.text(), |w| {
            ctx.emit(w, 1);
            words += 1;
        });
        ctx.count(WORDS, words);
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
        let plain = Params::parse_pairs(&["combiner=false"]).unwrap();
        for params in [Params::default(), stop, plain] {
            let job = JobRunner::new(WordCount::from_params(&params).unwrap(), &params).unwrap();
            for text in [
                &b"the cat, the hat\nsat42on\r\nmat"[..],
                "wörld the öl\nx\u{e9}y the\n".as_bytes(),
                b"a\xffb c\n",
                // Keys past the table's 16 inline bytes, and a 16-byte one at the very end.
                b"supercalifragilisticexpialidocious the supercalifragilisticexpialidocious\nsixteenletterswd",
            ] {
                let block = Block::new("f", "", 0, text);
                let (mut whole, mut lines) = (Pairs::default(), Pairs::default());
                let (mut c_whole, mut c_lines) = (Counters::new(), Counters::new());
                let task = TaskInfo::local();
                job.map_records(Records::Block(&block), &mut whole, &mut c_whole, &task, MapOptions::default())
                    .unwrap();
                // Skipping mode maps line by line.
                let opts = MapOptions::skipping(true);
                job.map_records(Records::Block(&block), &mut lines, &mut c_lines, &task, opts).unwrap();
                assert_eq!(c_whole.get(WORDS), c_lines.get(WORDS));
                assert!(c_whole.get(WORDS) > 0);
                whole.0.sort();
                lines.0.sort();
                assert_eq!(whole.0, lines.0, "{}", String::from_utf8_lossy(text));
                assert!(!whole.0.is_empty());
            }
        }
    }
}
