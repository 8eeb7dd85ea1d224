//! # quern-examples: the built-in jobs
//!
//! Each job is an ordinary user of the [`quern_api::Job`] API, registered by name in
//! [`builtin`]; the stock `quern` binary runs exactly these, and a user's own binary can add
//! them next to its own (see `examples/custom-job`).
//!
//! | name        | key       | value                          |
//! |-------------|-----------|--------------------------------|
//! | `wordcount` | word      | occurrences                    |
//! | `grep`      | match     | occurrences (`--param pattern=REGEX`) |
//! | `indexer`   | word      | `N doc1,doc2,...`              |
//! | `crashtest` | word      | occurrences, while crashing the worker at random |
//! | `join`      | key       | left and right rows of each matching pair |
//! | `secondarysort` | key   | its values in byte order, comma-separated |
//! | `sort`      | the input's lines in byte order (total order across parts) | |
//! | `topn`      | key       | count: the N largest `KEY<TAB>COUNT` input lines |
//! | `topwords`  | word      | count of the N most frequent (pipeline: wordcount, topn) |
//!
//! A word is a maximal run of characters for which `char::is_alphabetic` is true, case kept.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod crashtest;
pub mod grep;
pub mod indexer;
pub mod join;
pub mod secondarysort;
pub mod sort;
pub mod topn;
pub mod wordcount;

use quern_api::{Params, Registry, Stage};

/// The jobs of the stock `quern` binary.
pub fn builtin() -> Registry {
    let mut r = Registry::new();
    r.register(
        "wordcount",
        "count words (runs of alphabetic characters; --param combiner=false, --param stopwords=SIDE)",
        wordcount::WordCount::from_params,
    );
    r.register("grep", "count matches of --param pattern=REGEX", grep::Grep::from_params);
    r.register(
        "crashtest",
        "word count whose workers crash and stall at random (fault-tolerance tests)",
        crashtest::CrashTest::from_params,
    );
    r.register("join", "inner join of two tab-separated inputs (--param left=PREFIX, key=N)", join::Join::from_params);
    r.register(
        "secondarysort",
        "KEY<TAB>VALUE lines to KEY<TAB>V1,V2,... with values sorted by the shuffle",
        secondarysort::SecondarySort::from_params,
    );
    r.register("sort", "the input's lines in byte order, globally across parts", sort::Sort::from_params);
    r.register("topn", "the N largest KEY<TAB>COUNT lines of its input (--param n=N)", topn::TopN::from_params);
    // topwords: word count, then the top n words, as one pipeline job.
    r.register_pipeline("topwords", "the N most frequent words (--param n=N)", |p| {
        p.allow_only(&["n"])?;
        let n = p.get("n").unwrap_or("10").to_string();
        topn::TopN::from_params(&Params::new([("n".to_string(), n.clone())].into()))?;
        Ok(vec![
            Stage { job: "wordcount".into(), params: Params::default(), reducers: None },
            Stage { job: "topn".into(), params: Params::new([("n".to_string(), n)].into()), reducers: Some(1) },
        ])
    });
    r.register("indexer", "inverted index: word -> number of documents and their names", |p| {
        p.allow_only(&[])?;
        Ok(indexer::Indexer)
    });
    r
}

/// Calls `f` on every word of `line`: maximal runs of alphabetic characters.
pub fn for_each_word(line: &str, mut f: impl FnMut(&str)) {
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_alphabetic(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                f(&line[s..i]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        f(&line[s..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_alphabetic_runs() {
        let mut w = Vec::new();
        for_each_word("Hello, wörld! it's 42nd-time\u{FFFD}ok", |s| w.push(s.to_string()));
        assert_eq!(w, vec!["Hello", "wörld", "it", "s", "nd", "time", "ok"]);
    }
}
