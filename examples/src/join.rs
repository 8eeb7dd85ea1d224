//! `join`: a reduce-side inner join of two tab-separated text inputs on a key column.
//!
//! Rows of input objects whose name starts with `--param left=PREFIX` form the left table,
//! all others the right one; `--param key=N` (default 0) is the key column. For every key
//! present on both sides, every (left row, right row) pair is written as
//! `KEY<TAB>LEFT-REST<TAB>RIGHT-REST` (the rows without their key column), left rows and then
//! right rows in byte order, so the output is deterministic.

use quern_api::{Data, DecodeError, Job, JobError, MapContext, OutputContext, ParamError, Params, Record};

/// A row of one side, without its key column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    /// True for the left table.
    pub left: bool,
    /// The other columns, tab-separated.
    pub rest: String,
}

impl Data for Side {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.left));
        out.extend_from_slice(self.rest.as_bytes());
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (&tag, rest) = bytes.split_first().ok_or_else(|| DecodeError::new("join: empty value"))?;
        let rest = String::from_utf8(rest.to_vec()).map_err(|_| DecodeError::new("join: value is not UTF-8"))?;
        Ok(Side { left: tag == 1, rest })
    }
}

/// The join.
#[derive(Debug, Clone)]
pub struct Join {
    left: String,
    key: usize,
}

impl Join {
    /// Builds the job from `--param left=PREFIX [--param key=N]`.
    pub fn from_params(p: &Params) -> Result<Self, ParamError> {
        let left = p.require("left")?.to_string();
        if left.is_empty() {
            return Err(ParamError { key: "left".into(), reason: "must not be empty".into() });
        }
        Ok(Join { left, key: p.parse_or("key", 0)? })
    }
}

impl Job for Join {
    type Key = String;
    type Value = Side;

    fn map(&self, rec: &Record<'_>, ctx: &mut MapContext<'_, String, Side>) -> Result<(), JobError> {
        if rec.line.is_empty() {
            return Ok(());
        }
        let cols: Vec<&str> = rec.line.split('\t').collect();
        // Rows too short to have the key column have nothing to join on.
        let Some(key) = cols.get(self.key) else { return Ok(()) };
        let rest: Vec<&str> = cols.iter().enumerate().filter(|(i, _)| *i != self.key).map(|(_, c)| *c).collect();
        ctx.emit_owned(key.to_string(), Side { left: rec.source.starts_with(&self.left), rest: rest.join("\t") });
        Ok(())
    }

    fn reduce(
        &self,
        key: String,
        rows: &mut dyn Iterator<Item = Side>,
        out: &mut OutputContext<'_>,
    ) -> Result<(), JobError> {
        let (mut left, mut right): (Vec<Side>, Vec<Side>) = rows.partition(|s| s.left);
        left.sort_by(|a, b| a.rest.as_bytes().cmp(b.rest.as_bytes()));
        right.sort_by(|a, b| a.rest.as_bytes().cmp(b.rest.as_bytes()));
        for l in &left {
            for r in &right {
                out.emit(&key, format_args!("{}\t{}", l.rest, r.rest));
            }
        }
        Ok(())
    }
}
