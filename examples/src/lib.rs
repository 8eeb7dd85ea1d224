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
//! | `join`      | key       | left and right rows of each matching pair |
//! | `secondarysort` | key   | its values in byte order, comma-separated |
//! | `sort`      | the input's lines in byte order (total order across parts) | |
//! | `topn`      | key       | count: the N largest `KEY<TAB>COUNT` input lines |
//! | `topwords`  | word      | count of the N most frequent (pipeline: wordcount, topn) |
//! | `wordstats` | word      | `COUNT<TAB>N doc1,doc2,...` (DAG pipeline: wordcount and indexer, joined) |
//! | `teragen`, `terasort`, `teravalidate` | Hadoop's TeraSort suite (100-byte records) | |
//! | `identity`  | each input record as it is (map-only)                                  | |
//!
//! A word is a maximal run of characters for which `char::is_alphabetic` is true, case kept.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod grep;
pub mod indexer;
pub mod join;
pub mod secondarysort;
pub mod sort;
pub mod tera;
pub mod teravalidate;
pub mod topn;
pub mod wordcount;

use quern_api::{Params, Registry, Stage, StageInput};

/// The jobs of the stock `quern` binary.
pub fn builtin() -> Registry {
    let mut r = Registry::new();
    r.register(
        "wordcount",
        "count words (runs of alphabetic characters; --param combiner=false, --param stopwords=SIDE)",
        &["combiner", "stopwords"],
        wordcount::WordCount::from_params,
    );
    r.register("grep", "count matches of --param pattern=REGEX", &["pattern"], grep::Grep::from_params);
    r.register(
        "join",
        "inner join of two tab-separated inputs (--param left=PREFIX, key=N)",
        &["left", "key"],
        join::Join::from_params,
    );
    r.register(
        "secondarysort",
        "KEY<TAB>VALUE lines to KEY<TAB>V1,V2,... with values sorted by the shuffle",
        &[],
        |_| Ok(secondarysort::SecondarySort),
    );
    r.register("sort", "the input's lines in byte order, globally across parts", &[], |_| Ok(sort::Sort));
    r.register("topn", "the N largest KEY<TAB>COUNT lines of its input (--param n=N)", &["n"], topn::TopN::from_params);
    // topwords: word count, then the top n words, as one pipeline job.
    r.register_pipeline("topwords", "the N most frequent words (--param n=N)", &["n"], |p| {
        let n = p.get("n").unwrap_or("10").to_string();
        topn::TopN::from_params(&Params::new([("n".to_string(), n.clone())].into()))?;
        Ok(vec![
            Stage::new("wordcount", Params::default()),
            Stage::new("topn", Params::new([("n".to_string(), n)].into())).with_reducers(1),
        ])
    });
    r.register_map_only(
        "teragen",
        "Hadoop TeraGen: --param rows=N 100-byte records (map-only, no input)",
        &["rows"],
        tera::TeraGen::from_params,
    );
    r.register("terasort", "Hadoop TeraSort: 100-byte records sorted by 10-byte key across parts", &[], |_| {
        Ok(tera::TeraSort)
    });
    r.register("teravalidate", "Hadoop TeraValidate: checksum line, and an error line per misorder", &[], |_| {
        Ok(teravalidate::TeraValidate)
    });
    r.register_map_only("identity", "each input record as it is (map-only; converts between formats)", &[], |_| {
        Ok(Identity)
    });
    // wordstats: a DAG. Word count and the inverted index both read the input; a join of
    // the two (stage 0's parts are named stage0-part-*) gives each word's count and documents.
    r.register_pipeline("wordstats", "per word: occurrences, number of documents and their names", &[], |_| {
        let join = Params::new([("left".to_string(), "stage0-".to_string())].into());
        Ok(vec![
            Stage::new("wordcount", Params::default()),
            Stage::new("indexer", Params::default()).reading(&[StageInput::JobInput]),
            Stage::new("join", join).reading(&[StageInput::Stage(0), StageInput::Stage(1)]),
        ])
    });
    r.register("indexer", "inverted index: word -> number of documents and their names", &[], |_| Ok(indexer::Indexer));
    r
}

/// `identity`: writes every input record as it is, map-only: a text line stays a line (its
/// bytes exactly, even when they are not UTF-8), a whole object or a fixed-length record stays
/// bytes, an Arrow or Parquet row its line (or its binary `record`). With `--input-format` and
/// `--output-format` it converts between formats.
pub struct Identity;

impl quern_api::MapOnlyJob for Identity {
    fn map(
        &self,
        rec: &quern_api::Record<'_>,
        out: &mut quern_api::OutputContext<'_>,
    ) -> Result<(), quern_api::JobError> {
        use quern_api::RecordKind;
        match rec.kind {
            // A line stays a line; one that is not UTF-8 is kept byte for byte.
            RecordKind::Line => match std::str::from_utf8(rec.bytes) {
                Ok(line) => out.emit_line(line),
                Err(_) => {
                    let mut bytes = rec.bytes.to_vec();
                    bytes.push(b'\n');
                    out.emit_bytes(&bytes);
                }
            },
            RecordKind::Row if rec.line.as_bytes() == rec.bytes => out.emit_line(rec.line),
            RecordKind::Generated => {}
            _ => out.emit_bytes(rec.bytes),
        }
        Ok(())
    }
}

/// Calls `f` on every word of `line`: maximal runs of alphabetic characters.
pub fn for_each_word<'a>(line: &'a str, mut f: impl FnMut(&'a str)) {
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

    /// Parameters arrive from anyone who can submit (even past the CLI, over raw gRPC): every
    /// built-in job and pipeline answers hostile values with Ok or an error, never a panic.
    #[test]
    fn hostile_parameters_never_panic_a_builder() {
        let keys = [
            "n",
            "rows",
            "pattern",
            "crash",
            "stall",
            "stall_ms",
            "reduce_crash",
            "reduce_stall",
            "panic_word",
            "left",
            "key",
            "combiner",
            "stopwords",
            "__cuts",
            "unknown",
        ];
        let long = "\u{e9}".repeat(50_000);
        let values = [
            "",
            "a\u{e9}b",
            "-1",
            "0",
            "18446744073709551616",
            "99999999999999999999999999999",
            "NaN",
            "-inf",
            "1e309",
            "(",
            "a{99999}{99999}",
            "\0",
            "0x10",
            " 1",
            "true\n",
            &long,
        ];
        let r = builtin();
        for job in r.all_names() {
            for key in keys {
                for value in values {
                    let p = Params::new([(key.to_string(), value.to_string())].into());
                    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let _ = r.pipeline(&job, &p);
                        let _ = r.create(&job, &p).map_err(|e| e.to_string());
                    }));
                    assert!(built.is_ok(), "{job} panicked on {key}={:?}", value.get(..20.min(value.len())));
                }
            }
        }
    }
}
