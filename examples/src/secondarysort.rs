//! `secondarysort`: for `KEY<TAB>VALUE` input lines, one `KEY<TAB>V1,V2,...` line per key with
//! its values in byte order — sorted by the framework's shuffle, not in memory: the map key is
//! (key, value), sorted by both, and grouped by the key alone (Hadoop's secondary sort with a
//! grouping comparator).

use quern_api::{Data, DecodeError, Job, JobError, MapContext, OutputContext, Partitioning, Record};

/// (key, value), encoded so that byte order is (key, value) order: the key with 0x00 escaped
/// as 0x00 0x01 and ended by 0x00 0x00, then the value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Composite {
    /// Groups by this.
    pub key: String,
    /// Sorts within a group by this.
    pub value: String,
}

impl Data for Composite {
    fn encode(&self, out: &mut Vec<u8>) {
        for &b in self.key.as_bytes() {
            if b == 0 {
                out.extend_from_slice(&[0, 1]);
            } else {
                out.push(b);
            }
        }
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(self.value.as_bytes());
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let bad = || DecodeError::new("secondarysort: malformed key");
        let end = group_end(bytes).ok_or_else(bad)?;
        let mut key = Vec::with_capacity(end);
        let mut i = 0;
        // The escaped key is bytes[..end - 2]; the terminator follows.
        while i < end - 2 {
            if bytes[i] == 0 {
                key.push(0);
                i += 2;
            } else {
                key.push(bytes[i]);
                i += 1;
            }
        }
        Ok(Composite {
            key: String::from_utf8(key).map_err(|_| bad())?,
            value: String::from_utf8(bytes[end..].to_vec()).map_err(|_| bad())?,
        })
    }
}

/// Length of the escaped key and its 0x00 0x00 terminator.
fn group_end(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == 0 {
            if bytes[i + 1] == 0 {
                return Some(i + 2);
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    None
}

/// The job.
#[derive(Debug, Clone, Copy)]
pub struct SecondarySort;

impl Job for SecondarySort {
    type Key = Composite;
    type Value = String;

    fn map(&self, rec: &Record<'_>, ctx: &mut MapContext<'_, Composite, String>) -> Result<(), JobError> {
        if let Some((key, value)) = rec.line.split_once('\t') {
            ctx.emit_owned(Composite { key: key.to_string(), value: value.to_string() }, value.to_string());
        }
        Ok(())
    }

    fn reduce(
        &self,
        first: Composite,
        values: &mut dyn Iterator<Item = String>,
        out: &mut OutputContext<'_>,
    ) -> Result<(), JobError> {
        let all: Vec<String> = values.collect();
        out.emit(first.key, all.join(","));
        Ok(())
    }

    /// Grouped by the key alone: the escaped key and its terminator.
    fn partitioning(&self) -> Partitioning {
        Partitioning::hash().grouped(|key| group_end(key).unwrap_or(key.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quern_api::data::to_bytes;

    #[test]
    fn composite_keys_sort_by_key_then_value_and_round_trip() {
        let c = |k: &str, v: &str| Composite { key: k.into(), value: v.into() };
        let mut keys = vec![c("b", "1"), c("a", "z"), c("a\0x", "a"), c("a", "b"), c("ab", "a")];
        let mut by_bytes = keys.clone();
        by_bytes.sort_by_key(to_bytes);
        keys.sort_by(|x, y| x.key.as_bytes().cmp(y.key.as_bytes()).then(x.value.cmp(&y.value)));
        assert_eq!(by_bytes, keys);
        for k in &keys {
            assert_eq!(&Composite::decode(&to_bytes(k)).unwrap(), k);
        }
        let e = to_bytes(&c("a\0x", "val"));
        assert_eq!(&e[..SecondarySort.partitioning().group_len(&e)], &to_bytes(&c("a\0x", ""))[..]);
    }
}
