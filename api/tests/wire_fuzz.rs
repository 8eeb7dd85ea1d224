//! Property tests (bounded fuzzing) of everything that parses strings off the wire or the
//! command line: storage URLs, formats, ids, parameters. Any input gives a value or an
//! error, never a panic, and what parses behaves (joins, base names, round trips).
#![allow(clippy::unwrap_used, missing_docs)]

use proptest::prelude::*;
use quern_api::{AttemptId, InputFormat, JobId, OutputFormat, Params, StoreUrl, pb};

/// Strings that look like what is expected, and anything at all.
fn url_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "(file|memory|s3|s3a|http|)(:|://|:///)[a-z\u{e9}/.%?#:@ _-]{0,30}",
        "\\PC{0,40}",
        "[/.a-z\u{e9}%]{0,30}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// `join` takes names Quern builds itself (ids it validated, part numbers): `.` and `..`
    /// segments there would be resolved by the URL, so they are not tried.
    #[test]
    fn storage_urls_parse_or_fail_cleanly(s in url_like(), name in "[a-z/\u{e9}% ]{0,12}") {
        for u in [StoreUrl::parse(&s), StoreUrl::from_user(&s)].into_iter().flatten() {
            let _ = (u.base_name(), u.path(), u.parent_dir(), u.is_dir());
            let joined = u.join(&name);
            prop_assert!(joined.as_str().starts_with(u.as_dir().as_str()));
            // A URL Quern made from a parsed one parses again.
            prop_assert!(StoreUrl::parse(u.as_str()).is_ok(), "{} does not parse again", u.as_str());
        }
    }

    #[test]
    fn formats_parse_or_fail_cleanly(s in prop_oneof!["fixed:\\PC{0,12}", "fixed:[0-9]{0,12}", "\\PC{0,12}"]) {
        if let Ok(f) = s.parse::<InputFormat>() {
            prop_assert_eq!(f.to_string().parse::<InputFormat>().unwrap(), f);
        }
        if let Ok(f) = s.parse::<OutputFormat>() {
            prop_assert_eq!(f.to_string().parse::<OutputFormat>().unwrap(), f);
        }
    }

    #[test]
    fn ids_and_attempts_off_the_wire_parse_or_fail_cleanly(
        job in "\\PC{0,80}|job_[0-9]{1,20}_[0-9]{1,6}",
        kind in any::<i32>(),
        index in any::<u32>(),
        attempt in any::<u32>(),
    ) {
        if let Ok(id) = JobId::parse(&job) {
            prop_assert_eq!(id.as_str(), job.as_str());
        }
        let r = pb::AttemptRef { job_id: job, kind, index, attempt };
        if let Ok(a) = AttemptId::try_from(&r) {
            prop_assert_eq!(pb::AttemptRef::from(&a), r);
        }
    }

    #[test]
    fn parameters_parse_or_fail_cleanly(pairs in proptest::collection::vec("\\PC{0,20}", 0..6), key in "\\PC{0,6}") {
        if let Ok(p) = Params::parse_pairs(&pairs) {
            let _ = (p.parse_or::<u64>(&key, 0), p.parse_or::<f64>(&key, 0.0), p.parse_or::<bool>(&key, false));
            let _ = p.allow_only(&["n"]);
        }
    }
}
