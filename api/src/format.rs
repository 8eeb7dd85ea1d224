//! Input and output formats: how objects become records and records become parts.
//!
//! A job reads its input in one [`InputFormat`] (`--input-format`, else the job's own
//! [`crate::Io::input_format`] from [`crate::Job::io`], else `auto`) and writes its parts in
//! one [`OutputFormat`] (`--output-format`, else [`crate::Io::output_format`], else `text`). Formats travel as
//! the short strings their `Display` and `FromStr` agree on: `auto`, `text`, `whole`,
//! `fixed:N`, `arrow`, `parquet`.
//!
//! | input       | one record is                    | splittable                    |
//! |-------------|----------------------------------|-------------------------------|
//! | `text`      | a line (`\n` or `\r\n` ends it)  | yes (Hadoop's line rule); `.gz`/`.zst` objects: no |
//! | `whole`     | a whole object                   | no                            |
//! | `fixed:N`   | N bytes                          | yes, at record boundaries     |
//! | `arrow`     | a row of an Arrow IPC file or stream | files by record batch (see [`crate::input::arrow_split`]); streams no |
//! | `parquet`   | a row of a Parquet file          | by row group (see [`crate::input::parquet_split`]) |
//!
//! `auto` picks by name: `.parquet` → parquet; `.arrow`, `.arrows`, `.ipc`, `.feather` →
//! arrow; anything else → text. Arrow and Parquet rows reach `map` rendered as a text line:
//! columns in schema order joined by tabs, a null as an empty field, trailing nulls dropped
//! (so a `KEY<TAB>VALUE` part written as Parquet reads back as the same lines).
//!
//! | output      | a part holds                                                       |
//! |-------------|--------------------------------------------------------------------|
//! | `text`      | `KEY<TAB>VALUE\n` lines, `emit_line` lines, `emit_bytes` bytes as they are |
//! | `fixed:N`   | every record's bytes back to back; each must be exactly N bytes    |
//! | `arrow`     | an Arrow IPC file: nullable columns `key`, `value` (Utf8) for `emit`/`emit_line` records, `record` (Binary) for `emit_bytes` ones |
//! | `parquet`   | a Parquet file with the same columns                                |
//!
//! Reading a row with a non-null binary `record` column back gives that value as the
//! record's bytes, so binary records survive a trip through Arrow or Parquet.

//!
//! ```
//! use quern_api::format::{InputFormat, ObjectFormat};
//! use quern_api::OutputFormat;
//!
//! let input: InputFormat = "fixed:100".parse().unwrap();
//! assert!(input.resolve("s3://bucket/tera/part-00000").splittable());
//! assert_eq!(InputFormat::Auto.resolve("file:///data/rows.parquet"), ObjectFormat::Parquet);
//! assert_eq!("parquet".parse::<OutputFormat>().unwrap().reader().to_string(), "parquet");
//! assert!("csv".parse::<InputFormat>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use crate::split::Compression;

/// The largest fixed record length accepted (a sanity bound against typos).
pub const MAX_RECORD_LEN: u32 = 1 << 20;

/// How a job's input objects are cut into records. Serialised as its format string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum InputFormat {
    /// By each object's name (see the module docs).
    #[default]
    Auto,
    /// Text lines; compressed by name (`.gz`, `.zst`).
    Text,
    /// One record per object.
    Whole,
    /// Records of exactly this many bytes.
    Fixed(u32),
    /// Rows of Arrow IPC files (file or stream format).
    Arrow,
    /// Rows of Parquet files.
    Parquet,
}

/// How one input object is read: an [`InputFormat`] resolved for the object's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectFormat {
    /// Text lines, decompressed first if compressed.
    Text(Option<Compression>),
    /// The whole (decompressed) object.
    Whole(Option<Compression>),
    /// Fixed-length records of the (decompressed) object.
    Fixed(u32, Option<Compression>),
    /// Arrow IPC rows.
    Arrow,
    /// Parquet rows.
    Parquet,
}

impl ObjectFormat {
    /// Whether the object can be cut into byte ranges without reading it. Parquet objects
    /// and Arrow IPC files are cut too, but at the row groups or record batches their footers
    /// list ([`crate::listing::split_inputs`]).
    pub fn splittable(self) -> bool {
        matches!(self, ObjectFormat::Text(None) | ObjectFormat::Fixed(_, None))
    }
}

impl InputFormat {
    /// How the object at `url` is read in this format.
    pub fn resolve(self, url: &str) -> ObjectFormat {
        let c = Compression::of(url);
        match self {
            InputFormat::Text => ObjectFormat::Text(c),
            InputFormat::Whole => ObjectFormat::Whole(c),
            InputFormat::Fixed(n) => ObjectFormat::Fixed(n, c),
            InputFormat::Arrow => ObjectFormat::Arrow,
            InputFormat::Parquet => ObjectFormat::Parquet,
            InputFormat::Auto => {
                let name = url.rsplit('/').next().unwrap_or(url).to_ascii_lowercase();
                let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
                match ext {
                    "parquet" => ObjectFormat::Parquet,
                    "arrow" | "arrows" | "ipc" | "feather" => ObjectFormat::Arrow,
                    _ => ObjectFormat::Text(c),
                }
            }
        }
    }
}

/// How a job's parts are written. Serialised as its format string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum OutputFormat {
    /// Text lines.
    #[default]
    Text,
    /// Fixed-length binary records, back to back.
    Fixed(u32),
    /// An Arrow IPC file.
    Arrow,
    /// A Parquet file.
    Parquet,
}

/// A format string that names no format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {given:?} (expected {expected})")]
pub struct FormatError {
    given: String,
    expected: &'static str,
}

fn fixed_len(given: &str, expected: &'static str) -> Result<Option<u32>, FormatError> {
    let Some(n) = given.strip_prefix("fixed:") else { return Ok(None) };
    match n.parse::<u32>() {
        Ok(n) if (1..=MAX_RECORD_LEN).contains(&n) => Ok(Some(n)),
        _ => Err(FormatError { given: given.into(), expected }),
    }
}

impl FromStr for InputFormat {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, FormatError> {
        const EXPECTED: &str = "auto, text, whole, fixed:N (1..=1048576), arrow or parquet";
        if let Some(n) = fixed_len(s, EXPECTED)? {
            return Ok(InputFormat::Fixed(n));
        }
        Ok(match s {
            "" | "auto" => InputFormat::Auto,
            "text" => InputFormat::Text,
            "whole" => InputFormat::Whole,
            "arrow" => InputFormat::Arrow,
            "parquet" => InputFormat::Parquet,
            _ => return Err(FormatError { given: s.into(), expected: EXPECTED }),
        })
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputFormat::Auto => f.write_str("auto"),
            InputFormat::Text => f.write_str("text"),
            InputFormat::Whole => f.write_str("whole"),
            InputFormat::Fixed(n) => write!(f, "fixed:{n}"),
            InputFormat::Arrow => f.write_str("arrow"),
            InputFormat::Parquet => f.write_str("parquet"),
        }
    }
}

impl FromStr for OutputFormat {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, FormatError> {
        const EXPECTED: &str = "text, fixed:N (1..=1048576), arrow or parquet";
        if let Some(n) = fixed_len(s, EXPECTED)? {
            return Ok(OutputFormat::Fixed(n));
        }
        Ok(match s {
            "" | "text" => OutputFormat::Text,
            "arrow" => OutputFormat::Arrow,
            "parquet" => OutputFormat::Parquet,
            _ => return Err(FormatError { given: s.into(), expected: EXPECTED }),
        })
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputFormat::Text => f.write_str("text"),
            OutputFormat::Fixed(n) => write!(f, "fixed:{n}"),
            OutputFormat::Arrow => f.write_str("arrow"),
            OutputFormat::Parquet => f.write_str("parquet"),
        }
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl TryFrom<String> for $t {
            type Error = FormatError;
            fn try_from(s: String) -> Result<Self, FormatError> {
                s.parse()
            }
        }
        impl From<$t> for String {
            fn from(f: $t) -> String {
                f.to_string()
            }
        }
    };
}
string_serde!(InputFormat);
string_serde!(OutputFormat);

impl OutputFormat {
    /// The input format that reads this output back record for record.
    pub fn reader(self) -> InputFormat {
        match self {
            OutputFormat::Text => InputFormat::Text,
            OutputFormat::Fixed(n) => InputFormat::Fixed(n),
            OutputFormat::Arrow => InputFormat::Arrow,
            OutputFormat::Parquet => InputFormat::Parquet,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_print_and_resolve() {
        for s in ["auto", "text", "whole", "fixed:100", "arrow", "parquet"] {
            assert_eq!(s.parse::<InputFormat>().unwrap().to_string(), s);
        }
        for s in ["text", "fixed:7", "arrow", "parquet"] {
            assert_eq!(s.parse::<OutputFormat>().unwrap().to_string(), s);
        }
        for bad in ["csv", "fixed:0", "fixed:x", "fixed:", "fixed:99999999"] {
            assert!(bad.parse::<InputFormat>().is_err(), "{bad}");
        }
        assert!("whole".parse::<OutputFormat>().is_err());
        let auto = InputFormat::Auto;
        assert_eq!(auto.resolve("file:///d/x.parquet"), ObjectFormat::Parquet);
        assert_eq!(auto.resolve("file:///d/x.Arrow"), ObjectFormat::Arrow);
        assert_eq!(auto.resolve("file:///d/x.txt.gz"), ObjectFormat::Text(Some(Compression::Gzip)));
        assert_eq!(auto.resolve("file:///d/part-00000"), ObjectFormat::Text(None));
        assert!(InputFormat::Fixed(100).resolve("file:///d/a").splittable());
        assert!(!InputFormat::Fixed(100).resolve("file:///d/a.zst").splittable());
        assert!(!InputFormat::Whole.resolve("file:///d/a").splittable());
    }
}
