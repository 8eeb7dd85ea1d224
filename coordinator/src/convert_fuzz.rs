//! Property tests of the wire conversions: arbitrary bytes decoded as each request, and
//! arbitrary well-formed requests, never panic, and whatever converts satisfies the limits.

use proptest::prelude::*;
use prost::Message;
use quern_api::pb;

use super::*;

/// Strings that probe parsers: empty, unicode, path tricks, control characters, long runs.
fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("..".to_string()),
        Just("file:///a/../../etc/".to_string()),
        Just("file:///a/%2e%2e/b".to_string()),
        Just("s3://b/k".to_string()),
        Just("aéb".to_string()),
        Just("fixed:0".to_string()),
        Just("fixed:100".to_string()),
        "[a-z:/%.é\u{0}\n]{0,40}",
        "file:///[a-z/]{0,20}",
        ".{0,300}",
    ]
}

fn spec() -> impl Strategy<Value = pb::JobSpec> {
    (
        nasty(),
        proptest::collection::vec(nasty(), 0..4),
        nasty(),
        any::<u32>(),
        proptest::collection::btree_map(nasty(), nasty(), 0..4),
        (nasty(), nasty(), any::<u64>(), any::<u32>()),
        proptest::collection::vec((nasty(), any::<u32>(), proptest::collection::vec(-3i32..4, 0..3)), 0..3),
        proptest::collection::btree_map(nasty(), nasty(), 0..3),
    )
        .prop_map(|(job, inputs, output, reducers, params, (fin, fout, rows, maps), stages, side)| pb::JobSpec {
            job,
            inputs,
            output,
            reducers,
            split_size: 0,
            params,
            priority: 0,
            skip_bad_records: false,
            stages: stages
                .into_iter()
                .map(|(job, reducers, inputs)| pb::StageSpec { job, reducers, inputs, ..Default::default() })
                .collect(),
            side,
            input_format: fin,
            output_format: fout,
            generate_rows: rows,
            maps,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(s) = pb::JobSpec::decode(bytes.as_slice()) {
            let _ = Submission::try_from(s);
        }
        if let Ok(r) = pb::RegisterRequest::decode(bytes.as_slice()) {
            let _ = Registration::try_from(r);
        }
        if let Ok(r) = pb::OutcomeReport::decode(bytes.as_slice()) {
            let _ = report(r);
        }
        if let Ok(h) = pb::HeartbeatRequest::decode(bytes.as_slice()) {
            prop_assert!(cached_ranges(h.cached).len() <= limits::CACHED);
        }
    }

    #[test]
    fn well_formed_specs_convert_within_the_limits(s in spec()) {
        if let Ok(Submission { spec, .. }) = Submission::try_from(s) {
            prop_assert!(!spec.name.trim().is_empty() && spec.name.len() <= limits::NAME);
            prop_assert!(spec.reducers <= limits::REDUCERS);
            prop_assert!(spec.inputs.len() <= limits::INPUTS);
            prop_assert!(!spec.inputs.is_empty() || spec.generate_rows > 0);
            for (k, stage) in spec.stages.iter().enumerate() {
                for input in &stage.inputs {
                    prop_assert!(!matches!(input, StageInput::Stage(j) if *j >= k), "stage {k} reads {input:?}");
                }
            }
            // Whatever was taken prints back to something that parses again.
            for u in &spec.inputs {
                prop_assert!(StoreUrl::parse(u.as_str()).is_ok());
            }
        }
    }

    #[test]
    fn reports_keep_messages_bounded(msg in ".{0,6000}", kind in any::<i32>(), index in proptest::option::of(any::<u32>())) {
        let r = pb::OutcomeReport {
            worker_id: "w".into(),
            worker_secret: String::new(),
            attempt: Some(pb::AttemptRef { job_id: "job_1_0001".into(), kind: 2, index: 0, attempt: 1 }),
            outcome: Some(pb::outcome_report::Outcome::Failed(pb::Failed {
                kind,
                message: msg,
                lost_map_index: index,
                lost_map_attempt: 1,
                log_tail: Vec::new(),
            })),
        };
        if let Ok((_, Outcome::Failed { message, .. })) = report(r) {
            prop_assert!(message.len() <= limits::MESSAGE + '…'.len_utf8());
        }
    }
}
