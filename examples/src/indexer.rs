//! Inverted index: for every word, the input objects that contain it.

use std::collections::BTreeSet;

use quern_api::{Combiner, Data, DecodeError, Job, JobError, MapContext, OutputContext, Record};

use crate::for_each_word;

/// A set of document names, encoded as length-prefixed UTF-8 strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocSet(pub BTreeSet<String>);

impl Data for DocSet {
    fn encode(&self, out: &mut Vec<u8>) {
        for d in &self.0 {
            out.extend_from_slice(&(d.len() as u32).to_be_bytes());
            out.extend_from_slice(d.as_bytes());
        }
    }

    fn decode(mut bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut set = BTreeSet::new();
        while !bytes.is_empty() {
            let bad = || DecodeError::new("indexer: malformed document set");
            let len = bytes.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes).ok_or_else(bad)? as usize;
            let name = bytes.get(4..4 + len).ok_or_else(bad)?;
            set.insert(String::from_utf8(name.to_vec()).map_err(|_| bad())?);
            bytes = &bytes[4 + len..];
        }
        Ok(DocSet(set))
    }
}

/// Builds the inverted index.
#[derive(Debug, Clone, Copy)]
pub struct Indexer;

impl Job for Indexer {
    type Key = String;
    type Value = DocSet;
    fn map(&self, rec: &Record<'_>, ctx: &mut MapContext<'_, String, DocSet>) -> Result<(), JobError> {
        for_each_word(rec.line, |w| ctx.emit(w, DocSet(BTreeSet::from([rec.source.to_string()]))));
        Ok(())
    }

    fn combiner(&self) -> Option<Combiner<'_, DocSet>> {
        Some(Combiner::new(|acc: &mut DocSet, more: DocSet| acc.0.extend(more.0)))
    }

    fn reduce(
        &self,
        word: String,
        sets: &mut dyn Iterator<Item = DocSet>,
        out: &mut OutputContext<'_>,
    ) -> Result<(), JobError> {
        let mut all = BTreeSet::new();
        for s in sets {
            all.extend(s.0);
        }
        let names: Vec<&str> = all.iter().map(String::as_str).collect();
        out.emit(word, format!("{} {}", names.len(), names.join(",")));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docsets_round_trip() {
        let s = DocSet(BTreeSet::from(["a.txt".to_string(), "b c".to_string()]));
        let mut buf = Vec::new();
        s.encode(&mut buf);
        assert_eq!(DocSet::decode(&buf).unwrap(), s);
        assert!(DocSet::decode(&[0, 0, 0, 9, b'x']).is_err());
    }
}
