//! What the Parquet and Arrow IPC splits share: ranged reads whose length is checked, their
//! error, and the rule that cuts an object at the blocks its footer lists.
//!
//! Both formats list their blocks (row groups, record batches) in a footer; a split
//! `[start, end)` owns the blocks whose first byte lies in it, so any cover of the object by
//! disjoint ranges reads every block exactly once.

use std::future::Future;
use std::ops::Range;

use bytes::Bytes;

use super::InputError;
use crate::StoreError;
use crate::split::Split;

/// Why a split's bytes could not be read: the store failed, or the object is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The object is not valid Parquet or Arrow IPC, or past a limit.
    #[error(transparent)]
    Input(#[from] InputError),
}

/// Reads `range` with `get`, refusing a store that answers with another length (the object
/// changed since it was listed); `format` names the format in that error.
pub(super) async fn fetch<F, Fut>(get: &F, range: Range<u64>, format: &'static str) -> Result<Bytes, ReadError>
where
    F: Fn(Range<u64>) -> Fut,
    Fut: Future<Output = Result<Bytes, StoreError>>,
{
    let want = range.end - range.start;
    let got = get(range).await?;
    if got.len() as u64 != want {
        let what = format!("a read of {want} bytes returned {}: the object changed", got.len());
        return Err(InputError::Malformed { format, what }.into());
    }
    Ok(got)
}

/// Splits of an object of `size` bytes whose blocks span `blocks` (`[first byte, end)`, in
/// object order): consecutive blocks gathered while they fit in `split_size` bytes, a larger
/// block alone. Each split starts where its first block starts (the first at 0) and ends
/// where the next split starts (the last at the object's end), so the splits cover the
/// object once; without blocks, the object is one split.
pub(super) fn cut(url: &str, size: u64, blocks: impl Iterator<Item = (u64, u64)>, split_size: u64) -> Vec<Split> {
    let split_size = split_size.max(1);
    let mut cuts = vec![0u64];
    let mut open: Option<u64> = None;
    for (start, end) in blocks {
        match open {
            Some(from) if end.saturating_sub(from) <= split_size => {}
            Some(_) => {
                cuts.push(start);
                open = Some(start);
            }
            None => open = Some(start),
        }
    }
    cuts.dedup();
    cuts.push(size);
    cuts.windows(2)
        .filter(|w| w[1] > w[0])
        .map(|w| Split { url: url.to_string(), start: w[0], end: w[1], object_size: size })
        .collect()
}

/// `ranges` (sorted, disjoint) gathered into fewer reads: a range joins the read before it
/// when the gap between them is at most `gap` bytes and the read stays within `max_len`
/// bytes. Each read lists the ranges it serves.
pub(super) fn coalesce(ranges: &[Range<u64>], gap: u64, max_len: u64) -> Vec<(Range<u64>, Vec<Range<u64>>)> {
    let mut out: Vec<(Range<u64>, Vec<Range<u64>>)> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some((read, served))
                if r.start >= read.end && r.start - read.end <= gap && r.end - read.start <= max_len =>
            {
                read.end = r.end;
                served.push(r.clone());
            }
            _ => out.push((r.clone(), vec![r.clone()])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_ranges_are_read_together_within_the_length() {
        let reads = coalesce(&[0..10, 12..20, 100..110, 111..200, 201..500], 5, 100);
        let shape: Vec<(Range<u64>, usize)> = reads.iter().map(|(r, s)| (r.clone(), s.len())).collect();
        assert_eq!(shape, vec![(0..20, 2), (100..200, 2), (201..500, 1)]);
        assert!(coalesce(&[], 5, 100).is_empty());
    }

    #[test]
    fn blocks_are_gathered_up_to_the_split_size() {
        let blocks = [(8u64, 58u64), (58, 108), (108, 158), (158, 400)];
        let shape = |n| cut("u", 500, blocks.into_iter(), n).iter().map(|s| (s.start, s.end)).collect::<Vec<_>>();
        assert_eq!(shape(100), vec![(0, 108), (108, 158), (158, 500)]);
        assert_eq!(shape(1), vec![(0, 58), (58, 108), (108, 158), (158, 500)]);
        assert_eq!(shape(u64::MAX), vec![(0, 500)]);
        assert_eq!(cut("u", 500, std::iter::empty(), 1).len(), 1, "no blocks: one split");
    }
}
