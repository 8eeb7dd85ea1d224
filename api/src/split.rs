//! Input splits and Hadoop's TextInputFormat line rule.
//!
//! A text object is cut into byte ranges `[start, end)` of about `split_size` bytes. A split
//! owns exactly the lines that *start* at a position `p` with `start < p <= end`, plus the line
//! at 0 for the first split: so it skips past the first newline after its start (that line
//! belongs to the previous split) and reads on past its end to finish its last line. Every
//! line is read exactly once, whatever the split size.

use std::ops::Range;

use crate::format::{InputFormat, ObjectFormat};

/// An input object to split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputObject {
    /// Its URL.
    pub url: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A byte range of one input object.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Split {
    /// The object's URL.
    pub url: String,
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
    /// Size of the whole object.
    pub object_size: u64,
}

/// Compression of a text input, from its name (as Hadoop picks codecs by extension).
/// Compressed objects cannot be cut: each is one split, which its map task decompresses as a
/// stream (see [`crate::input::stream`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `.gz`, `.gzip` (several concatenated members allowed).
    Gzip,
    /// `.zst`, `.zstd` (several concatenated frames allowed).
    Zstd,
}

impl Compression {
    /// The compression of the object at `url`, if its name says it is compressed.
    pub fn of(url: &str) -> Option<Compression> {
        let name = url.rsplit('/').next().unwrap_or(url).to_ascii_lowercase();
        if name.ends_with(".gz") || name.ends_with(".gzip") {
            Some(Compression::Gzip)
        } else if name.ends_with(".zst") || name.ends_with(".zstd") {
            Some(Compression::Zstd)
        } else {
            None
        }
    }
}

/// The URL of generator splits: a job such as `teragen` reads no input; its split `[start,
/// end)` is a range of record numbers, each handed to `map` as a record at that offset.
pub const GENERATE_URL: &str = "generate:";

/// Cuts `rows` generated records into `maps` splits of nearly equal size (at least one row
/// each).
pub fn generator_splits(rows: u64, maps: u32) -> Vec<Split> {
    let maps = u64::from(maps.max(1)).min(rows.max(1));
    // In u128: rows * i overflows u64 for large row counts.
    let at = |i: u64| (u128::from(rows) * u128::from(i) / u128::from(maps)) as u64;
    (0..maps)
        .map(|i| Split { url: GENERATE_URL.into(), start: at(i), end: at(i + 1), object_size: rows })
        .filter(|s| s.end > s.start)
        .collect()
}

/// Hadoop lets the last split of a file run 10% over rather than leave a sliver.
const SLOP: f64 = 1.1;

/// Cuts objects into splits of about `split_size` bytes. Empty objects get no split; an
/// object no larger than `split_size` (times the slop), or one its format cannot cut (see
/// [`crate::format`]), gets exactly one. Fixed-length records are never cut: their splits
/// start at multiples of the record length.
pub fn compute_splits(objects: &[InputObject], split_size: u64, format: InputFormat) -> Vec<Split> {
    let mut out = Vec::new();
    for o in objects {
        let mut start = 0u64;
        let of = format.resolve(&o.url);
        let whole = !of.splittable();
        let split_size = match of {
            ObjectFormat::Fixed(n, _) => {
                // Formats parse only lengths from 1, but a zero must not divide here either.
                let n = u64::from(n.max(1));
                (split_size / n).max(1) * n
            }
            _ => split_size.max(1),
        };
        // A whole empty object is still one (empty) record, as Hadoop's whole-file formats do.
        if o.size == 0 && matches!(of, ObjectFormat::Whole(_)) {
            out.push(Split { url: o.url.clone(), start: 0, end: 0, object_size: 0 });
        }
        while start < o.size {
            let remaining = o.size - start;
            let len = if whole || (remaining as f64) <= split_size as f64 * SLOP { remaining } else { split_size };
            out.push(Split { url: o.url.clone(), start, end: start + len, object_size: o.size });
            start += len;
        }
    }
    out
}

/// Given `data`, the object's bytes from offset `start` onwards (at least through the first
/// newline at or after `end`, or to the end of the object), returns the byte range within
/// `data` of the lines the split `[start, end)` owns.
pub fn owned_range(data: &[u8], start: u64, end: u64) -> Range<usize> {
    let rel_end = usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX);
    let begin = if start == 0 {
        0
    } else {
        match data.iter().position(|&b| b == b'\n') {
            Some(i) => i + 1,
            None => return 0..0,
        }
    };
    if begin > rel_end || begin >= data.len() {
        return 0..0;
    }
    let stop = match data.get(rel_end..).and_then(|tail| tail.iter().position(|&b| b == b'\n')) {
        Some(i) => rel_end + i + 1,
        None => data.len(),
    };
    begin..stop
}

/// Whether `data` (the object from `start` on) reaches far enough to decide the split: it
/// holds a newline at or after relative offset `end - start`, or it reaches the object's end.
pub fn has_enough(data: &[u8], start: u64, end: u64, object_size: u64) -> bool {
    if start.saturating_add(data.len() as u64) >= object_size {
        return true;
    }
    let rel_end = usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX);
    data.get(rel_end..).is_some_and(|tail| tail.contains(&b'\n'))
}

/// The lines in `bytes` (a range from [`owned_range`]), each with its offset relative to
/// `bytes`, without `\n` or `\r\n`.
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        if pos >= bytes.len() {
            return None;
        }
        let rest = &bytes[pos..];
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], pos + i + 1),
            None => (rest, bytes.len()),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let at = pos;
        pos = next;
        Some((at, line))
    })
}

/// Cuts an owned range into about `pieces` chunks at line boundaries, for parallel mapping.
pub fn chunk_at_lines(bytes: &[u8], pieces: usize) -> Vec<Range<usize>> {
    let target = (bytes.len() / pieces.max(1)).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let mut end = (start + target).min(bytes.len());
        if end < bytes.len() {
            end = match bytes[end..].iter().position(|&b| b == b'\n') {
                Some(i) => end + i + 1,
                None => bytes.len(),
            };
        }
        out.push(start..end);
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all_lines(data: &[u8]) -> Vec<Vec<u8>> {
        lines(data).map(|(_, l)| l.to_vec()).collect()
    }

    /// Reads a split the way a worker does: from `start` to the first newline at or past `end`.
    fn read_split(data: &[u8], s: &Split) -> Vec<Vec<u8>> {
        let from = s.start as usize;
        let mut to = (s.end as usize).min(data.len());
        while !has_enough(&data[from..to], s.start, s.end, s.object_size) {
            to = (to + 3).min(data.len());
        }
        let buf = &data[from..to];
        let r = owned_range(buf, s.start, s.end);
        all_lines(&buf[r])
    }

    proptest! {
        #[test]
        fn every_line_is_read_exactly_once(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'x'), any::<u8>()], 0..400),
            split_size in 1u64..60,
        ) {
            let objects = [InputObject { url: "u".into(), size: data.len() as u64 }];
            let splits = compute_splits(&objects, split_size, InputFormat::Auto);
            let covered: u64 = splits.iter().map(|s| s.end - s.start).sum();
            prop_assert_eq!(covered, data.len() as u64);
            let mut got = Vec::new();
            for s in &splits {
                got.extend(read_split(&data, s));
            }
            prop_assert_eq!(got, all_lines(&data));
        }

        #[test]
        fn chunks_cover_the_bytes_at_line_boundaries(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..300),
            pieces in 1usize..9,
        ) {
            let chunks = chunk_at_lines(&data, pieces);
            let mut got = Vec::new();
            for c in &chunks {
                got.extend(all_lines(&data[c.clone()]));
                prop_assert!(c.end == data.len() || data[c.end - 1] == b'\n');
            }
            prop_assert_eq!(got, all_lines(&data));
        }
    }

    /// Object sizes worth trying: small, huge, and anything.
    fn size() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..2000, (u64::MAX - 2000)..=u64::MAX, any::<u64>()]
    }

    fn format() -> impl Strategy<Value = InputFormat> {
        prop_oneof![
            Just(InputFormat::Auto),
            Just(InputFormat::Text),
            Just(InputFormat::Whole),
            Just(InputFormat::Arrow),
            Just(InputFormat::Parquet),
            prop_oneof![1u32..5, 1u32..=1 << 20, Just(0u32), Just(u32::MAX)].prop_map(InputFormat::Fixed),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Every byte of every object is in exactly one split, in order, whatever the sizes.
        #[test]
        fn splits_cover_every_byte_exactly_once(
            sizes in proptest::collection::vec(size(), 0..5),
            split_size in prop_oneof![0u64..100, any::<u64>(), Just(u64::MAX)],
            format in format(),
            names in proptest::collection::vec(prop_oneof![Just(".txt"), Just(".gz"), Just(".zst"), Just(".parquet"), Just(".arrow")], 5),
        ) {
            // Keep the number of splits small enough to hold: that is the coordinator's business.
            prop_assume!(sizes.iter().all(|&s| s / split_size.max(1) < 100_000));
            let objects: Vec<InputObject> = sizes
                .iter()
                .enumerate()
                .map(|(i, &size)| InputObject { url: format!("file:///d/{i}{}", names[i]), size })
                .collect();
            let splits = compute_splits(&objects, split_size, format);
            for o in &objects {
                let mine: Vec<&Split> = splits.iter().filter(|s| s.url == o.url).collect();
                let of = format.resolve(&o.url);
                let mut at = 0u64;
                for s in &mine {
                    prop_assert_eq!(s.start, at);
                    prop_assert!(s.end > s.start || o.size == 0);
                    prop_assert_eq!(s.object_size, o.size);
                    if let ObjectFormat::Fixed(n, None) = of {
                        prop_assert_eq!(s.start % u64::from(n.max(1)), 0);
                    }
                    at = s.end;
                }
                prop_assert_eq!(at, o.size);
                if !of.splittable() && o.size > 0 {
                    prop_assert_eq!(mine.len(), 1);
                }
            }
        }

        #[test]
        fn generator_splits_cover_every_row_once(rows in size(), maps in prop_oneof![0u32..50, 0u32..10_000]) {
            let splits = generator_splits(rows, maps);
            let mut at = 0u64;
            for s in &splits {
                prop_assert_eq!(s.start, at);
                prop_assert!(s.end > s.start);
                at = s.end;
            }
            prop_assert_eq!(at, rows);
            prop_assert!(splits.len() as u64 <= u64::from(maps.max(1)));
        }

        /// The line rule never panics, whatever the bytes and offsets (even inconsistent ones).
        #[test]
        fn line_rule_never_panics_on_any_bytes_or_offsets(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            start in size(),
            end in size(),
            object_size in size(),
            pieces in 0usize..20,
        ) {
            let r = owned_range(&data, start, end);
            prop_assert!(r.start <= r.end && r.end <= data.len());
            let _ = has_enough(&data, start, end, object_size);
            let total: usize = lines(&data).map(|(_, l)| l.len()).sum();
            prop_assert!(total <= data.len());
            let chunks = chunk_at_lines(&data, pieces);
            prop_assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), data.len());
        }
    }

    #[test]
    fn small_objects_get_one_split_and_empty_ones_none() {
        let objs = [
            InputObject { url: "a".into(), size: 0 },
            InputObject { url: "b".into(), size: 10 },
            InputObject { url: "c".into(), size: 105 },
            InputObject { url: "d".into(), size: 250 },
        ];
        let s = compute_splits(&objs, 100, InputFormat::Auto);
        let shape: Vec<(&str, u64, u64)> = s.iter().map(|s| (s.url.as_str(), s.start, s.end)).collect();
        assert_eq!(shape, vec![("b", 0, 10), ("c", 0, 105), ("d", 0, 100), ("d", 100, 200), ("d", 200, 250)]);
    }

    #[test]
    fn compressed_objects_are_one_split() {
        let objs = [
            InputObject { url: "file:///d/a.txt.gz".into(), size: 1000 },
            InputObject { url: "file:///d/b.ZST".into(), size: 1000 },
            InputObject { url: "file:///d.gz/c.txt".into(), size: 1000 },
        ];
        let s = compute_splits(&objs, 100, InputFormat::Auto);
        assert_eq!(s.iter().filter(|s| s.url.ends_with("a.txt.gz")).count(), 1);
        assert_eq!(s.iter().filter(|s| s.url.ends_with("b.ZST")).count(), 1);
        assert_eq!(s.iter().filter(|s| s.url.ends_with("c.txt")).count(), 10, "a directory name does not count");
        assert_eq!(Compression::of("x.gzip"), Some(Compression::Gzip));
    }

    #[test]
    fn crlf_is_stripped() {
        assert_eq!(all_lines(b"a\r\nb\n\nc"), vec![b"a".to_vec(), b"b".to_vec(), b"".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn fixed_records_split_at_record_boundaries_and_generators_by_rows() {
        let objs = [InputObject { url: "f".into(), size: 1000 }];
        let s = compute_splits(&objs, 250, InputFormat::Fixed(100));
        let shape: Vec<(u64, u64)> = s.iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(shape, vec![(0, 200), (200, 400), (400, 600), (600, 800), (800, 1000)]);
        let s = compute_splits(&objs, 10, InputFormat::Fixed(100));
        assert_eq!(s.len(), 10, "at least one record per split");
        let g = generator_splits(10, 3);
        let shape: Vec<(u64, u64)> = g.iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(shape, vec![(0, 3), (3, 6), (6, 10)]);
        assert_eq!(generator_splits(2, 7).len(), 2, "no empty generator splits");
        let big = generator_splits(u64::MAX, 3);
        assert_eq!((big[0].start, big[2].end), (0, u64::MAX));
        assert!(big.windows(2).all(|w| w[0].end == w[1].start));
        let objs = [InputObject { url: "e".into(), size: 0 }, InputObject { url: "f".into(), size: 3 }];
        assert_eq!(compute_splits(&objs, 100, InputFormat::Whole).len(), 2, "an empty whole object is one record");
        assert_eq!(compute_splits(&objs, 100, InputFormat::Text).len(), 1, "an empty text object has no lines");
    }
}
