//! `teravalidate`: checks that 100-byte records are sorted by key within and across parts
//! (in name order) and sums their CRC-32s, as Hadoop's TeraValidate.
//!
//! Every map emits, under one key, a [`Summary`] of the records it saw: per run of adjacent
//! records (same object, consecutive offsets) the first and last keys, plus the checksum sum
//! and every order violation inside the run. The combiner and the single reducer merge
//! summaries, joining runs that meet (and checking the order where they join); the reducer
//! then checks the order between what remains (the parts, in name order) and writes one
//! `error` line per violation and the `checksum` line.

use quern_api::data::Data;
use std::num::NonZeroU32;

use quern_api::{Combiner, DecodeError, InputFormat, Io, Job, JobError, MapContext, OutputContext, Record};

use crate::tera::{KEY_LEN, RECORD_LEN, record_crc};

/// Records seen by part of a validation: runs of adjacent records, checksum, violations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    runs: Vec<Run>,
    checksum: u128,
    records: u64,
    errors: Vec<String>,
}

/// Adjacent records of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Run {
    /// The object's URL.
    source: String,
    start: u64,
    end: u64,
    first: Vec<u8>,
    last: Vec<u8>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Summary {
    /// Merges `other` in: runs sorted by (object, offset), runs that meet joined, with an
    /// error where the joined keys are out of order.
    fn merge(&mut self, mut other: Summary) {
        self.checksum = self.checksum.wrapping_add(other.checksum);
        self.records += other.records;
        self.errors.append(&mut other.errors);
        // The common case, a map's next record: extend the last run without sorting.
        if let ([next], Some(prev)) = (other.runs.as_mut_slice(), self.runs.last_mut())
            && prev.source == next.source
            && prev.end == next.start
        {
            if prev.last > next.first {
                self.errors.push(misorder(&next.source, next.start, &next.first, &prev.last));
            }
            prev.end = next.end;
            std::mem::swap(&mut prev.last, &mut next.last);
            return;
        }
        self.runs.append(&mut other.runs);
        self.runs.sort_by(|a, b| (&a.source, a.start).cmp(&(&b.source, b.start)));
        let mut joined: Vec<Run> = Vec::with_capacity(self.runs.len());
        for r in self.runs.drain(..) {
            match joined.last_mut() {
                Some(prev) if prev.source == r.source && prev.end == r.start => {
                    if prev.last > r.first {
                        self.errors.push(misorder(&r.source, r.start, &r.first, &prev.last));
                    }
                    prev.end = r.end;
                    prev.last = r.last;
                }
                _ => joined.push(r),
            }
        }
        self.runs = joined;
    }
}

fn misorder(source: &str, offset: u64, key: &[u8], after: &[u8]) -> String {
    format!("misorder in {source} at offset {offset}: {} after {}", hex(key), hex(after))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// Reads the encoding back, failing on truncated or inconsistent bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::new("teravalidate summary is truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().map_err(|_| DecodeError::new("bad u32"))?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().map_err(|_| DecodeError::new("bad u64"))?))
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError::new("teravalidate summary: bad text"))
    }
}

impl Data for Summary {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.checksum.to_be_bytes());
        out.extend_from_slice(&self.records.to_be_bytes());
        out.extend_from_slice(&(self.runs.len() as u32).to_be_bytes());
        for r in &self.runs {
            put_bytes(out, r.source.as_bytes());
            out.extend_from_slice(&r.start.to_be_bytes());
            out.extend_from_slice(&r.end.to_be_bytes());
            put_bytes(out, &r.first);
            put_bytes(out, &r.last);
        }
        out.extend_from_slice(&(self.errors.len() as u32).to_be_bytes());
        for e in &self.errors {
            put_bytes(out, e.as_bytes());
        }
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let checksum = u128::from_be_bytes(r.take(16)?.try_into().map_err(|_| DecodeError::new("bad checksum"))?);
        let records = r.u64()?;
        let runs = (0..r.u32()?)
            .map(|_| {
                Ok(Run {
                    source: r.string()?,
                    start: r.u64()?,
                    end: r.u64()?,
                    first: r.bytes()?.to_vec(),
                    last: r.bytes()?.to_vec(),
                })
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        let errors = (0..r.u32()?).map(|_| r.string()).collect::<Result<Vec<_>, _>>()?;
        Ok(Summary { runs, checksum, records, errors })
    }
}

/// `teravalidate`: one reducer, one `checksum` line, an `error` line per violation.
pub struct TeraValidate;

impl Job for TeraValidate {
    type Key = ();
    type Value = Summary;
    fn map(&self, rec: &Record<'_>, ctx: &mut MapContext<'_, (), Summary>) -> Result<(), JobError> {
        if rec.bytes.len() != RECORD_LEN {
            return Err(JobError::new(format!("{} at {}: not a {RECORD_LEN}-byte record", rec.source, rec.offset)));
        }
        let key = rec.bytes[..KEY_LEN].to_vec();
        // Runs are keyed by the object's full URL: parts of different directories never mix,
        // and URL order is name order within a directory.
        let run = Run {
            source: rec.url.to_string(),
            start: rec.offset,
            end: rec.offset + RECORD_LEN as u64,
            first: key.clone(),
            last: key,
        };
        let one =
            Summary { runs: vec![run], checksum: u128::from(record_crc(rec.bytes)), records: 1, errors: Vec::new() };
        ctx.emit_owned((), one);
        Ok(())
    }

    fn combiner(&self) -> Option<Combiner<'_, Summary>> {
        Some(Combiner::new(|acc: &mut Summary, s: Summary| acc.merge(s)))
    }

    fn reduce(
        &self,
        _: (),
        all: &mut dyn Iterator<Item = Summary>,
        out: &mut OutputContext<'_>,
    ) -> Result<(), JobError> {
        let mut total = Summary::default();
        for s in all {
            total.merge(s);
        }
        // What is left are the parts (in name order, as sorted by merge): each must start at
        // or after the key the one before ended with.
        for w in total.runs.windows(2) {
            if w[0].last > w[1].first {
                total.errors.push(format!(
                    "misorder between {} and {}: {} after {}",
                    w[0].source,
                    w[1].source,
                    hex(&w[1].first),
                    hex(&w[0].last)
                ));
            }
        }
        for e in &total.errors {
            out.emit("error", e);
        }
        out.count("TERAVALIDATE_RECORDS", total.records as i64);
        out.emit("checksum", format!("{:x}", total.checksum));
        Ok(())
    }

    fn io(&self) -> Io {
        Io::default().input(InputFormat::Fixed(RECORD_LEN as u32))
    }

    /// One reducer sees every part's runs.
    fn reducers(&self) -> Option<NonZeroU32> {
        Some(NonZeroU32::MIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(source: &str, start: u64, first: u8, last: u8) -> Summary {
        Summary {
            runs: vec![Run {
                source: source.into(),
                start,
                end: start + 100,
                first: vec![first; KEY_LEN],
                last: vec![last; KEY_LEN],
            }],
            checksum: 1,
            records: 1,
            errors: Vec::new(),
        }
    }

    #[test]
    fn merging_joins_adjacent_runs_and_flags_misorder() {
        let mut s = run("p0", 100, 5, 6);
        s.merge(run("p0", 0, 1, 2));
        s.merge(run("p1", 0, 3, 3));
        assert_eq!(s.runs.len(), 2);
        assert_eq!((s.runs[0].start, s.runs[0].end), (0, 200));
        assert!(s.errors.is_empty());
        s.merge(run("p0", 200, 4, 4));
        assert_eq!(s.errors.len(), 1, "4 after 6 is out of order");
        assert_eq!(s.checksum, 4);
        assert_eq!(Summary::decode(&quern_api::data::to_bytes(&s)).unwrap(), s);
        assert!(Summary::decode(&[1, 2, 3]).is_err());
    }
}
