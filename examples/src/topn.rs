//! `topn` (`--param n=N`): the N largest `KEY<TAB>COUNT` lines of its input (such as a word
//! count's output), by descending count, ties by key in byte order, in one part. Each map keeps
//! only its own top N (the combiner), so the shuffle stays small. With `wordcount` before it,
//! it is the `topwords` pipeline.

use quern_api::{Combiner, Data, DecodeError, Job, JobError, MapContext, OutputContext, ParamError, Params, Record};

/// (count, key) pairs, at most a few times N of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Top(pub Vec<(u64, String)>);

impl Data for Top {
    fn encode(&self, out: &mut Vec<u8>) {
        for (count, key) in &self.0 {
            out.extend_from_slice(&count.to_be_bytes());
            out.extend_from_slice(&(key.len() as u32).to_be_bytes());
            out.extend_from_slice(key.as_bytes());
        }
    }

    fn decode(mut bytes: &[u8]) -> Result<Self, DecodeError> {
        let bad = || DecodeError::new("topn: malformed value");
        let mut v = Vec::new();
        while !bytes.is_empty() {
            let count = u64::from_be_bytes(bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(bad)?);
            let len = u32::from_be_bytes(bytes.get(8..12).and_then(|b| b.try_into().ok()).ok_or_else(bad)?) as usize;
            let key = bytes.get(12..12 + len).ok_or_else(bad)?;
            v.push((count, String::from_utf8(key.to_vec()).map_err(|_| bad())?));
            bytes = &bytes[12 + len..];
        }
        Ok(Top(v))
    }
}

/// Keeps the `n` largest counts.
#[derive(Debug, Clone, Copy)]
pub struct TopN {
    n: usize,
}

impl TopN {
    /// Builds the job from `--param n=N` (default 10).
    pub fn from_params(p: &Params) -> Result<Self, ParamError> {
        let n: usize = p.parse_or("n", 10)?;
        if n == 0 || n > 1_000_000 {
            return Err(ParamError { key: "n".into(), reason: format!("{n} is not between 1 and 1000000") });
        }
        Ok(TopN { n })
    }

    /// Sorts by descending count then key, and keeps the first n.
    fn trim(&self, v: &mut Vec<(u64, String)>) {
        v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.as_bytes().cmp(b.1.as_bytes())));
        v.truncate(self.n);
    }
}

impl Job for TopN {
    type Key = u32;
    type Value = Top;
    fn map(&self, rec: &Record<'_>, ctx: &mut MapContext<'_, u32, Top>) -> Result<(), JobError> {
        let Some((key, count)) = rec.line.rsplit_once('\t') else {
            return Err(JobError::new(format!("topn: line at offset {} of {} has no tab", rec.offset, rec.source)));
        };
        let count = count.trim().parse::<u64>().map_err(|_| {
            JobError::new(format!("topn: count {count:?} at offset {} of {} is not a number", rec.offset, rec.source))
        })?;
        // One group: the single reducer sees every map's top n.
        ctx.emit_owned(0, Top(vec![(count, key.to_string())]));
        Ok(())
    }

    fn combiner(&self) -> Option<Combiner<'_, Top>> {
        Some(Combiner::new(|acc: &mut Top, more: Top| {
            acc.0.extend(more.0);
            if acc.0.len() > 2 * self.n {
                self.trim(&mut acc.0);
            }
        }))
    }

    fn reduce(
        &self,
        _key: u32,
        tops: &mut dyn Iterator<Item = Top>,
        out: &mut OutputContext<'_>,
    ) -> Result<(), JobError> {
        let mut all = Vec::new();
        for t in tops {
            all.extend(t.0);
            if all.len() > 2 * self.n {
                self.trim(&mut all);
            }
        }
        self.trim(&mut all);
        for (count, key) in all {
            out.emit(key, count);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_values_round_trip_and_trim_orders_by_count_then_key() {
        let t = Top(vec![(3, "b".into()), (3, "a".into()), (9, "z".into())]);
        let mut buf = Vec::new();
        t.encode(&mut buf);
        assert_eq!(Top::decode(&buf).unwrap(), t);
        assert!(Top::decode(&buf[..5]).is_err());
        let job = TopN { n: 2 };
        let mut v = t.0;
        job.trim(&mut v);
        assert_eq!(v, vec![(9, "z".to_string()), (3, "a".to_string())]);
    }
}
