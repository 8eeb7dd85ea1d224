//! The jobs a binary can run, by name, and their typed parameters.
//!
//! The stock `quern` binary registers the built-in jobs; a user's own binary registers its
//! own next to (or instead of) them. Workers advertise the names they have, and the CLI
//! validates a job's parameters before submitting it.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{LookupError, ParamError};
use crate::job::{Job, MapOnlyJob};
use crate::runner::{DynJob, JobRunner, MapOnlyRunner};

/// Job parameters (`--param KEY=VALUE`), read through typed accessors, and the job's side
/// data (`--side NAME=URL`: small files every task gets, Hadoop's distributed cache).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    values: BTreeMap<String, String>,
    side: BTreeMap<String, bytes::Bytes>,
}

impl Params {
    /// Wraps a map of parameters.
    pub fn new(map: BTreeMap<String, String>) -> Self {
        Params { values: map, side: BTreeMap::new() }
    }

    /// Adds side data file `name`.
    pub fn with_side(mut self, name: &str, bytes: bytes::Bytes) -> Self {
        self.side.insert(name.to_string(), bytes);
        self
    }

    /// The contents of side data file `name`.
    ///
    /// ```
    /// use quern_api::Params;
    ///
    /// let p = Params::parse_pairs(&["stopwords=stop"]).unwrap().with_side("stop", "the\nand\n".into());
    /// let name = p.require("stopwords").unwrap();
    /// let words: Vec<&[u8]> = p.side(name).unwrap().split(|&b| b == b'\n').filter(|w| !w.is_empty()).collect();
    /// assert_eq!(words, [&b"the"[..], b"and"]);
    /// ```
    pub fn side(&self, name: &str) -> Option<&[u8]> {
        self.side.get(name).map(|b| &b[..])
    }

    /// Parses `KEY=VALUE` strings, refusing malformed or repeated keys.
    pub fn parse_pairs<S: AsRef<str>>(pairs: &[S]) -> Result<Self, ParamError> {
        let mut map = BTreeMap::new();
        for p in pairs {
            let p = p.as_ref();
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| ParamError { key: p.to_string(), reason: "expected KEY=VALUE".into() })?;
            if k.is_empty() {
                return Err(ParamError { key: p.to_string(), reason: "empty key".into() });
            }
            if map.insert(k.to_string(), v.to_string()).is_some() {
                return Err(ParamError { key: k.to_string(), reason: "given more than once".into() });
            }
        }
        Ok(Params::new(map))
    }

    /// The raw value, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The raw value; an error if it is missing.
    pub fn require(&self, key: &str) -> Result<&str, ParamError> {
        self.get(key).ok_or_else(|| ParamError { key: key.into(), reason: "is required".into() })
    }

    /// The value parsed as `T`, or `default` when absent.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, ParamError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => {
                v.parse().map_err(|e: T::Err| ParamError { key: key.into(), reason: format!("{}: {e}", shown(v)) })
            }
        }
    }

    /// Refuses any parameter not in `known`, so typos fail loudly. Framework-internal
    /// parameters (names starting with `__`, such as total-order cut points) always pass.
    /// [`Registry`] does this with the parameters a job declares before building it.
    pub fn allow_only(&self, known: &[&str]) -> Result<(), ParamError> {
        match self.values.keys().find(|k| !k.starts_with("__") && !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(ParamError {
                key: k.clone(),
                reason: if known.is_empty() {
                    "this job takes no parameters".into()
                } else {
                    format!("unknown parameter (this job takes: {})", known.join(", "))
                },
            }),
        }
    }

    /// The map of parameters.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.values
    }
}

/// Longest part of a parameter value quoted back in an error.
const SHOWN_CHARS: usize = 64;

/// A parameter value as quoted in an error message: in quotes, escaped, and cut (at a
/// character boundary) after [`SHOWN_CHARS`] characters, so a hostile megabyte-long value
/// still gives one short line.
pub fn shown(value: &str) -> String {
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(SHOWN_CHARS).collect();
    if chars.next().is_some() { format!("{head:?}... ({} bytes)", value.len()) } else { format!("{head:?}") }
}

type Factory = dyn Fn(&Params) -> Result<Arc<dyn DynJob>, ParamError> + Send + Sync;
type StagesFn = dyn Fn(&Params) -> Result<Vec<Stage>, ParamError> + Send + Sync;

/// One MapReduce stage of a pipeline: a registered job, its parameters, its reducers (None:
/// the `--reducers` the user gave) and what it reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    /// Registered job name.
    pub job: String,
    /// Its parameters.
    pub params: Params,
    /// Its reduce tasks, or None for the user's `--reducers`.
    pub reducers: Option<u32>,
    /// What it reads; empty: the previous stage's output (the pipeline's input for the first
    /// stage), which makes a chain. Stages that read several sources make a DAG.
    pub inputs: Vec<StageInput>,
}

/// A source a pipeline stage reads. Serialised as on the wire: -1 for the job's input, k for
/// stage k.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub enum StageInput {
    /// The pipeline's `--input`.
    JobInput,
    /// The output of an earlier stage (by index).
    Stage(usize),
}

impl TryFrom<i64> for StageInput {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        match n {
            -1 => Ok(StageInput::JobInput),
            k => usize::try_from(k).map(StageInput::Stage).map_err(|_| format!("no stage {k}")),
        }
    }
}

impl From<StageInput> for i64 {
    fn from(i: StageInput) -> i64 {
        match i {
            StageInput::JobInput => -1,
            StageInput::Stage(k) => k as i64,
        }
    }
}

impl Stage {
    /// Stage running `job` with `params`, the user's reducers, reading the previous stage.
    pub fn new(job: &str, params: Params) -> Self {
        Stage { job: job.to_string(), params, reducers: None, inputs: Vec::new() }
    }

    /// With a fixed number of reduce tasks.
    pub fn with_reducers(mut self, reducers: u32) -> Self {
        self.reducers = Some(reducers);
        self
    }

    /// Reading these sources (every one an earlier stage, or the pipeline's input).
    pub fn reading(mut self, inputs: &[StageInput]) -> Self {
        self.inputs = inputs.to_vec();
        self
    }
}

struct PipelineEntry {
    about: String,
    params: Vec<String>,
    stages: Arc<StagesFn>,
}

struct Entry {
    about: String,
    params: Vec<String>,
    factory: Arc<Factory>,
}

/// Named jobs a binary can run.
#[derive(Default, Clone)]
pub struct Registry {
    jobs: BTreeMap<String, Arc<Entry>>,
    pipelines: BTreeMap<String, Arc<PipelineEntry>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("jobs", &self.jobs.keys().collect::<Vec<_>>())
            .field("pipelines", &self.pipelines.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers job `name`, taking the parameters named in `params` (any other is refused
    /// before `factory` runs), built from them by `factory` (which validates their values).
    /// A later registration of the same name replaces the earlier one.
    ///
    /// ```
    /// use quern_api::{Params, Registry};
    /// # use quern_api::{Job, JobError, MapContext, OutputContext, Record};
    /// # struct Grep { pattern: String }
    /// # impl Job for Grep {
    /// #     type Key = String;
    /// #     type Value = u64;
    /// #     fn map(&self, r: &Record<'_>, c: &mut MapContext<'_, String, u64>) -> Result<(), JobError> { if r.line.contains(&self.pattern) { c.emit(r.line, 1) } Ok(()) }
    /// #     fn reduce(&self, k: String, v: &mut dyn Iterator<Item = u64>, o: &mut OutputContext<'_>) -> Result<(), JobError> { o.emit(k, v.sum::<u64>()); Ok(()) }
    /// # }
    ///
    /// let mut r = Registry::new();
    /// r.register("grep", "lines containing --param pattern=TEXT", &["pattern"], |p| {
    ///     Ok(Grep { pattern: p.require("pattern")?.to_string() })
    /// });
    /// let typo = Params::parse_pairs(&["patern=x"]).unwrap();
    /// assert!(r.create("grep", &typo).is_err()); // unknown parameter: refused
    /// ```
    pub fn register<J, F>(&mut self, name: &str, about: &str, params: &[&str], factory: F) -> &mut Self
    where
        J: Job,
        F: Fn(&Params) -> Result<J, ParamError> + Send + Sync + 'static,
    {
        let factory: Arc<Factory> = Arc::new(move |p: &Params| {
            let job = factory(p)?;
            Ok(Arc::new(JobRunner::new(job, p)?) as Arc<dyn DynJob>)
        });
        self.insert(name, about, params, factory)
    }

    /// Registers a map-only job (see [`MapOnlyJob`]) as [`Registry::register`] does a job.
    pub fn register_map_only<J, F>(&mut self, name: &str, about: &str, params: &[&str], factory: F) -> &mut Self
    where
        J: MapOnlyJob,
        F: Fn(&Params) -> Result<J, ParamError> + Send + Sync + 'static,
    {
        let factory: Arc<Factory> =
            Arc::new(move |p: &Params| Ok(Arc::new(MapOnlyRunner(factory(p)?)) as Arc<dyn DynJob>));
        self.insert(name, about, params, factory)
    }

    fn insert(&mut self, name: &str, about: &str, params: &[&str], factory: Arc<Factory>) -> &mut Self {
        let params = params.iter().map(|p| p.to_string()).collect();
        self.jobs.insert(name.to_string(), Arc::new(Entry { about: about.to_string(), params, factory }));
        self
    }

    /// Registers pipeline `name`: registered jobs run as stages of one job, each reading the
    /// output of the one before (a chain) or the sources it names (a DAG, see
    /// [`Stage::reading`]), submitted and tracked as one job. `stages` builds them from the
    /// pipeline's parameters (and validates them). Stages run one after the other in the
    /// order given, so a stage may read only the pipeline's input and earlier stages. As for
    /// a job, parameters not named in `params` are refused.
    ///
    /// ```
    /// use quern_api::{Params, Registry, Stage};
    /// # use quern_api::{Job, JobError, MapContext, OutputContext, Record};
    /// # struct Count;
    /// # impl Job for Count {
    /// #     type Key = String;
    /// #     type Value = u64;
    /// #     fn map(&self, r: &Record<'_>, c: &mut MapContext<'_, String, u64>) -> Result<(), JobError> { c.emit(r.line, 1); Ok(()) }
    /// #     fn reduce(&self, k: String, v: &mut dyn Iterator<Item = u64>, o: &mut OutputContext<'_>) -> Result<(), JobError> { o.emit(k, v.sum::<u64>()); Ok(()) }
    /// # }
    ///
    /// let mut r = Registry::new();
    /// r.register("count", "count lines", &[], |_| Ok(Count));
    /// // Count, then count the counts: two stages, one job; the second in a single part.
    /// r.register_pipeline("histogram", "how many lines occur how often", &[], |_| {
    ///     Ok(vec![
    ///         Stage::new("count", Params::default()),
    ///         Stage::new("count", Params::default()).with_reducers(1),
    ///     ])
    /// });
    /// let stages = r.pipeline("histogram", &Params::default()).unwrap().unwrap();
    /// assert_eq!(stages.len(), 2);
    /// ```
    pub fn register_pipeline<F>(&mut self, name: &str, about: &str, params: &[&str], stages: F) -> &mut Self
    where
        F: Fn(&Params) -> Result<Vec<Stage>, ParamError> + Send + Sync + 'static,
    {
        let entry = PipelineEntry {
            about: about.to_string(),
            params: params.iter().map(|p| p.to_string()).collect(),
            stages: Arc::new(stages),
        };
        self.pipelines.insert(name.to_string(), Arc::new(entry));
        self
    }

    /// The stages of pipeline `name` for `params`, each checked against the registered jobs;
    /// None if no pipeline has that name.
    pub fn pipeline(&self, name: &str, params: &Params) -> Option<Result<Vec<Stage>, LookupError>> {
        let entry = self.pipelines.get(name)?;
        let declared: Vec<&str> = entry.params.iter().map(String::as_str).collect();
        let stages = match params.allow_only(&declared).and_then(|()| (entry.stages)(params)) {
            Ok(s) => s,
            Err(error) => return Some(Err(LookupError::Params { job: name.to_string(), error })),
        };
        for (k, s) in stages.iter().enumerate() {
            if let Err(e) = self.create(&s.job, &s.params) {
                return Some(Err(e));
            }
            if let Some(StageInput::Stage(j)) = s.inputs.iter().find(|i| matches!(i, StageInput::Stage(j) if *j >= k)) {
                let error = ParamError {
                    key: "pipeline".into(),
                    reason: format!("stage {k} reads stage {j}, which does not run before it"),
                };
                return Some(Err(LookupError::Params { job: name.to_string(), error }));
            }
        }
        Some(Ok(stages))
    }

    /// Adds every job and pipeline of `other`.
    pub fn extend(&mut self, other: &Registry) -> &mut Self {
        for (k, v) in &other.jobs {
            self.jobs.insert(k.clone(), v.clone());
        }
        for (k, v) in &other.pipelines {
            self.pipelines.insert(k.clone(), v.clone());
        }
        self
    }

    /// Builds job `name` with `params`.
    pub fn create(&self, name: &str, params: &Params) -> Result<Arc<dyn DynJob>, LookupError> {
        let entry = self
            .jobs
            .get(name)
            .ok_or_else(|| LookupError::UnknownJob { name: name.to_string(), known: self.all_names().join(", ") })?;
        let declared: Vec<&str> = entry.params.iter().map(String::as_str).collect();
        params
            .allow_only(&declared)
            .and_then(|()| (entry.factory)(params))
            .map_err(|error| LookupError::Params { job: name.to_string(), error })
    }

    /// The parameters job or pipeline `name` takes, if it is registered.
    pub fn params(&self, name: &str) -> Option<&[String]> {
        self.jobs.get(name).map(|e| &e.params[..]).or_else(|| self.pipelines.get(name).map(|e| &e.params[..]))
    }

    /// Registered job and pipeline names, sorted.
    pub fn all_names(&self) -> Vec<String> {
        self.describe().into_iter().map(|(n, _)| n).collect()
    }

    /// Registered job names, sorted (what a worker can run).
    pub fn names(&self) -> Vec<String> {
        self.jobs.keys().cloned().collect()
    }

    /// (name, one-line description) pairs of jobs and pipelines, sorted by name.
    pub fn describe(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self.jobs.iter().map(|(k, v)| (k.clone(), v.about.clone())).collect();
        all.extend(self.pipelines.iter().map(|(k, v)| (k.clone(), format!("{} (pipeline)", v.about))));
        all.sort();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse_and_bad_ones_are_refused() {
        let p = Params::parse_pairs(&["n=3", "pattern=a=b"]).unwrap();
        assert_eq!(p.get("pattern"), Some("a=b"));
        assert_eq!(p.parse_or("n", 0usize).unwrap(), 3);
        assert!(Params::parse_pairs(&["novalue"]).is_err());
        assert!(Params::parse_pairs(&["=x"]).is_err());
        assert!(Params::parse_pairs(&["a=1", "a=2"]).is_err());
        assert!(p.parse_or::<usize>("pattern", 0).is_err());
        assert!(p.allow_only(&["n"]).is_err());
        assert!(p.allow_only(&["n", "pattern"]).is_ok());
    }

    #[test]
    fn hostile_values_give_short_errors_not_panics() {
        let long = "é".repeat(100_000);
        let p =
            Params::parse_pairs(&[format!("n={long}"), "big=99999999999999999999999999".into(), "e=".into()]).unwrap();
        let e = p.parse_or::<u64>("n", 0).unwrap_err().to_string();
        assert!(e.len() < 300 && e.contains("200000 bytes"), "{e}");
        assert!(p.parse_or::<u64>("big", 0).is_err());
        assert!(p.parse_or::<u32>("e", 0).is_err());
        assert_eq!(shown("ab"), "\"ab\"");
        let e = Params::parse_pairs(&[format!("{long}=1")]).unwrap().allow_only(&["n"]).unwrap_err().to_string();
        assert!(e.len() < 300, "{e}");
        let e = Registry::new().create(&long, &Params::default()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.len() < 300, "{e}");
    }
}
