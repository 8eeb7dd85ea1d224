//! Why an input object cannot be turned into records: broken data, or data past one of the
//! limits. Shared by a worker's map task and the sampling a total-order submission does.

/// An input object cannot be turned into records: broken data, or data past one of the
/// limits that keep a worker's memory bounded (see [`super::InputLimits`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The gzip decoder refused the data.
    #[error("gzip: {0}")]
    Gzip(String),
    /// The zstd decoder refused the data.
    #[error("zstd: {0}")]
    Zstd(String),
    /// Not an Arrow IPC file or stream, or a broken one.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// Not a Parquet file, or a broken one.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A Parquet or Arrow file whose footer or layout is invalid.
    #[error("not a valid {format} file: {what}")]
    Malformed {
        /// Which format.
        format: &'static str,
        /// What was wrong.
        what: String,
    },
    /// A third-party decoder panicked on the data (it is broken in a way it did not expect).
    #[error("{format} decoder failed on this data: {message}")]
    DecoderPanicked {
        /// Which decoder.
        format: &'static str,
        /// Its panic message.
        message: String,
    },
    /// A compressed object expands past the limit.
    #[error("decompresses to more than {limit} bytes (the limit for one object); split it before compressing")]
    DecompressedTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A text line is longer than the limit.
    #[error("has a line longer than {limit} bytes (the maximum line length)")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// What a task would hold in memory at once (a split, an object read whole, or the rows
    /// an Arrow or Parquet object decodes to) is over the limit.
    #[error("{what} is over the {limit}-byte limit for data a task holds at once")]
    TooLarge {
        /// What, with its size when known.
        what: String,
        /// The limit.
        limit: usize,
    },
    /// Fixed-length records that do not fit the data.
    #[error("{len} bytes is not a whole number of {record}-byte records")]
    PartialRecord {
        /// Bytes in the object.
        len: usize,
        /// Record length (0 is never a whole number).
        record: u32,
    },
    /// A row could not be rendered as text.
    #[error("rendering a row: {0}")]
    Render(#[from] std::fmt::Error),
}
