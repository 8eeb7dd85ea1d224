//! Total order: cut points that send keys to reduce partitions in key order, so the parts
//! concatenated in name order are globally sorted (Hadoop's `TotalOrderPartitioner`).
//!
//! The client samples the input for cut points ([`TotalOrder::from_sample`]) and passes them
//! to the job as the [`CUTS_PARAM`] parameter; the framework reads them back when it builds a
//! job whose partitioning is [`crate::Partitioning::total_order`] ([`TotalOrder::from_params`])
//! and asks [`TotalOrder::partition`] for each key. The parameter comes off the wire, so
//! reading it never trusts it.

/// The framework-internal parameter carrying total-order cut points.
pub const CUTS_PARAM: &str = "__cuts";

/// A total-order partitioner: sorted cut points; keys below the first go to partition 0,
/// keys from cut i up to cut i+1 to partition i+1. Concatenating the parts in name order then
/// gives globally sorted output.
///
/// The client builds one from a sample of the input's keys (see
/// [`crate::Partitioning::total_order`]) and hands it to the job as a parameter:
///
/// ```
/// use quern_api::job::TotalOrder;
///
/// let sample = ["pear", "apple", "fig", "kiwi", "plum", "date"].map(|s| s.as_bytes().to_vec());
/// let order = TotalOrder::from_sample(sample.to_vec(), 3);
/// let part = |k: &str| order.partition(k.as_bytes(), 3);
/// assert!(part("apple") <= part("lime") && part("lime") <= part("zucchini"));
/// assert_eq!((part("a"), part("zzz")), (0, 2));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TotalOrder {
    cuts: Vec<Vec<u8>>,
}

impl TotalOrder {
    /// Cut points from a sorted sample of keys, for `reducers` partitions.
    pub fn from_sample(mut sample: Vec<Vec<u8>>, reducers: u32) -> Self {
        sample.sort();
        let n = sample.len();
        let mut cuts: Vec<Vec<u8>> =
            (1..reducers as usize).filter_map(|i| sample.get(i * n / reducers as usize).cloned()).collect();
        cuts.dedup();
        // An empty cut sends no key below it (nothing sorts before ""), and its parameter
        // form would be an empty string, which reads back as no cut at all.
        cuts.retain(|c| !c.is_empty());
        TotalOrder { cuts }
    }

    /// The partitioner of a job's parameters, if they carry cut points. The value comes off
    /// the wire (anyone may submit a spec), so anything but comma-separated, non-decreasing
    /// hex strings is a parameter error, never a panic.
    pub fn from_params(p: &crate::Params) -> Result<Option<Self>, crate::ParamError> {
        let Some(text) = p.get(CUTS_PARAM) else { return Ok(None) };
        let bad = |reason: String| crate::ParamError { key: CUTS_PARAM.into(), reason };
        let cuts = text
            .split(',')
            .filter(|s| !s.is_empty())
            .enumerate()
            .map(|(i, hex)| {
                decode_hex(hex).ok_or_else(|| {
                    bad(format!("cut point {i} ({}) is not an even number of hex digits", crate::registry::shown(hex)))
                })
            })
            .collect::<Result<Vec<Vec<u8>>, _>>()?;
        if let Some(i) = cuts.windows(2).position(|w| w[0] > w[1]) {
            return Err(bad(format!("cut points must not decrease (cut point {} is below the one before)", i + 1)));
        }
        Ok(Some(TotalOrder { cuts }))
    }

    /// The parameter value carrying these cut points.
    pub fn to_param(&self) -> String {
        self.cuts.iter().map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>()).collect::<Vec<_>>().join(",")
    }

    /// The partition of `key`, never beyond `reducers - 1`.
    pub fn partition(&self, key: &[u8], reducers: u32) -> u32 {
        let p = self.cuts.partition_point(|c| c.as_slice() <= key) as u32;
        p.min(reducers.saturating_sub(1))
    }
}

/// The bytes spelled by an even number of hex digits (either case); None for anything else.
/// Works on bytes, so a multi-byte character is simply not a digit.
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let digit = |b: u8| char::from(b).to_digit(16);
    let bytes = hex.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes.chunks_exact(2).map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_order_cuts_partition_in_order_and_round_trip() {
        let sample: Vec<Vec<u8>> = (0..100u8).rev().map(|b| vec![b]).collect();
        let t = TotalOrder::from_sample(sample, 4);
        let parts: Vec<u32> = (0..100u8).map(|b| t.partition(&[b], 4)).collect();
        assert!(parts.windows(2).all(|w| w[0] <= w[1]), "monotonic");
        assert_eq!((parts[0], parts[99]), (0, 3));
        let p = crate::Params::new([(CUTS_PARAM.to_string(), t.to_param())].into());
        assert_eq!(TotalOrder::from_params(&p).unwrap(), Some(t));
        let bad = crate::Params::new([(CUTS_PARAM.to_string(), "zz".to_string())].into());
        assert!(TotalOrder::from_params(&bad).is_err());
    }

    fn cuts(value: &str) -> crate::Params {
        crate::Params::new([(CUTS_PARAM.to_string(), value.to_string())].into())
    }

    #[test]
    fn cut_points_that_are_not_hex_are_an_error_even_inside_a_character() {
        // "aéb" is 4 bytes: slicing it in byte pairs would cut "é" in half.
        for bad in ["a\u{e9}b", "\u{e9}", "0g", "abc", "61,\u{1F600}\u{1F600}", "62,61"] {
            let e = TotalOrder::from_params(&cuts(bad)).unwrap_err();
            assert_eq!(e.key, CUTS_PARAM, "{bad:?}");
        }
        let ok = TotalOrder::from_params(&cuts("61,,6162,FF")).unwrap().unwrap();
        assert_eq!(ok.to_param(), "61,6162,ff");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn any_cut_points_parse_or_fail_cleanly(value in "\\PC{0,40}|[0-9a-fA-F,\u{e9}]{0,40}") {
            if let Ok(Some(order)) = TotalOrder::from_params(&cuts(&value)) {
                // What parses survives its own round trip and partitions within range.
                let again = TotalOrder::from_params(&cuts(&order.to_param())).unwrap().unwrap();
                proptest::prop_assert_eq!(&again, &order);
                proptest::prop_assert!(order.partition(value.as_bytes(), 3) < 3);
            }
        }

        #[test]
        fn sampled_cut_points_round_trip(sample in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6), 0..50), reducers in 0u32..9) {
            let order = TotalOrder::from_sample(sample, reducers);
            let again = TotalOrder::from_params(&cuts(&order.to_param())).unwrap().unwrap();
            proptest::prop_assert_eq!(again, order);
        }
    }
}
