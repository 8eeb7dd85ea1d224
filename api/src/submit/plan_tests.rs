//! The planning rules, without a store or a coordinator.

use super::*;
use std::num::NonZeroU32;

use crate::{Io, Job, JobError, MapContext, MapOnlyJob, OutputContext, Record};

/// A job with no opinions: reads input, any reducer count.
struct Plain;
impl Job for Plain {
    type Key = String;
    type Value = u64;
    fn map(&self, _: &Record<'_>, _: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
        Ok(())
    }
    fn reduce(&self, _: String, _: &mut dyn Iterator<Item = u64>, _: &mut OutputContext<'_>) -> Result<(), JobError> {
        Ok(())
    }
}

/// A map-only generator of `rows` records.
struct Gen(u64);
impl MapOnlyJob for Gen {
    fn map(&self, _: &Record<'_>, _: &mut OutputContext<'_>) -> Result<(), JobError> {
        Ok(())
    }
    fn io(&self) -> Io {
        Io::default().generate(self.0)
    }
}

/// A job that must run with exactly one reducer.
struct One;
impl Job for One {
    type Key = String;
    type Value = u64;
    fn map(&self, _: &Record<'_>, _: &mut MapContext<'_, String, u64>) -> Result<(), JobError> {
        Ok(())
    }
    fn reduce(&self, _: String, _: &mut dyn Iterator<Item = u64>, _: &mut OutputContext<'_>) -> Result<(), JobError> {
        Ok(())
    }
    fn reducers(&self) -> Option<NonZeroU32> {
        Some(NonZeroU32::MIN)
    }
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("plain", "", &["k"], |_| Ok(Plain));
    r.register_map_only("gen", "", &["rows"], |p| Ok(Gen(p.parse_or("rows", 0u64)?)));
    r.register("one", "", &[], |_| Ok(One));
    r.register_pipeline("twostep", "", &[], |_| {
        Ok(vec![Stage::new("plain", Params::default()), Stage::new("one", Params::default()).with_reducers(1)])
    });
    r.register_pipeline("lategen", "", &[], |_| {
        Ok(vec![Stage::new("plain", Params::default()), Stage::new("gen", Params::default())])
    });
    r
}

fn request(job: &str, inputs: &[&str]) -> Request {
    let mut r = Request::new(job);
    r.inputs = inputs.iter().map(|s| s.to_string()).collect();
    r.output = Some("/tmp/quern-plan-test/out".into());
    r
}

fn planned(req: &Request) -> Result<Plan, PlanError> {
    plan(req, &registry(), Params::new(req.params.clone()), BTreeMap::new())
}

#[test]
fn reducers_come_from_the_job_then_the_caller_then_the_default() {
    assert_eq!(planned(&request("plain", &["/in/"])).unwrap().spec.reducers, DEFAULT_REDUCERS);
    let mut asked = request("plain", &["/in/"]);
    asked.reducers = Some(7);
    assert_eq!(planned(&asked).unwrap().spec.reducers, 7);
    assert_eq!(planned(&request("one", &["/in/"])).unwrap().spec.reducers, 1);
    let mut wrong = request("one", &["/in/"]);
    wrong.reducers = Some(3);
    let e = planned(&wrong).unwrap_err();
    assert!(matches!(e, PlanError::Reducers { required: 1, asked: 3, .. }), "{e}");
    assert!(e.to_string().contains("1 reducer"), "{e}");
}

#[test]
fn generators_take_rows_and_no_input_and_readers_take_input_and_no_maps() {
    let mut gen_req = request("gen", &[]);
    gen_req.params.insert("rows".into(), "10".into());
    gen_req.maps = Some(2);
    let spec = planned(&gen_req).unwrap().spec;
    assert_eq!((spec.generate_rows, spec.maps, spec.reducers), (10, 2, 0));
    assert!(spec.inputs.is_empty());

    let mut with_input = gen_req.clone();
    with_input.inputs = vec!["/in/".into()];
    assert!(matches!(planned(&with_input), Err(PlanError::InputGiven { .. })));
    let mut reducers = gen_req.clone();
    reducers.reducers = Some(2);
    let e = planned(&reducers).unwrap_err();
    assert!(e.to_string().contains("map-only"), "{e}");
    assert!(matches!(planned(&request("gen", &[])), Err(PlanError::NothingToGenerate { .. })));

    assert!(matches!(planned(&request("plain", &[])), Err(PlanError::InputRequired { .. })));
    assert!(matches!(planned(&request("plain", &["  "])), Err(PlanError::InputRequired { .. })));
    let mut maps = request("plain", &["/in/"]);
    maps.maps = Some(3);
    assert!(matches!(planned(&maps), Err(PlanError::MapsWithoutGenerator { .. })));
}

#[test]
fn unknown_jobs_bad_urls_and_a_missing_output_are_refused() {
    assert!(matches!(planned(&request("nosuch", &["/in/"])), Err(PlanError::Lookup(_))));
    let e = planned(&request("plain", &["ftp://host/x"])).unwrap_err();
    assert!(matches!(e, PlanError::BadUrl { role: "input", .. }), "{e}");
    let mut out = request("plain", &["/in/"]);
    out.output = Some("ftp://host/out".into());
    assert!(matches!(planned(&out), Err(PlanError::BadUrl { role: "output", .. })));
    out.output = None;
    assert!(matches!(planned(&out), Err(PlanError::OutputRequired { .. })));
}

#[test]
fn pipelines_plan_every_stage_and_only_the_first_may_generate() {
    let mut req = request("twostep", &["/in/"]);
    req.reducers = Some(5);
    let spec = planned(&req).unwrap().spec;
    assert_eq!(spec.stages.len(), 2);
    // The caller's count is for the job (its first stage); a stage's own count wins.
    assert_eq!((spec.stages[0].reducers, spec.stages[1].reducers, spec.reducers), (5, 1, 5));
    assert_eq!(spec.stages[1].input_format, OutputFormat::default().reader().to_string());
    assert!(matches!(planned(&request("lategen", &["/in/"])), Err(PlanError::LateGenerator { .. })));
}

#[test]
fn the_spec_carries_the_callers_settings() {
    let mut req = request("plain", &["/in/a.txt", "/in/b/"]);
    req.priority = 3;
    req.split_size = 1 << 20;
    req.skip_bad_records = true;
    req.params.insert("k".into(), "v".into());
    let spec = planned(&req).unwrap().spec;
    assert_eq!(spec.inputs, ["file:///in/a.txt", "file:///in/b/"]);
    assert_eq!(spec.output, "file:///tmp/quern-plan-test/out");
    assert_eq!((spec.priority, spec.split_size, spec.skip_bad_records), (3, 1 << 20, true));
    assert_eq!(spec.params.get("k").map(String::as_str), Some("v"));
}

#[test]
fn a_job_that_panics_while_planned_is_an_error_not_a_crash() {
    let mut r = registry();
    r.register("boom", "", &[], |_| -> Result<Plain, crate::ParamError> { panic!("factory blew up") });
    let client = crate::submit::Client::new("http://127.0.0.1:1", Default::default()).with_registry(r);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let job = client.job("boom").input("/tmp/quern-plan-test/in/").output("/tmp/quern-plan-test/out");
    let e = rt.block_on(job.to_spec()).unwrap_err();
    assert!(matches!(e, crate::submit::SubmitError::JobPanicked { .. }), "{e}");
    assert!(e.to_string().contains("factory blew up"), "{e}");
}
