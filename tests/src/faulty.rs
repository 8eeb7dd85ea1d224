//! [`FaultyStore`]: an object store that fails, delays or corrupts chosen requests.
//!
//! It wraps any [`ObjectStore`] (like `object_store`'s `ThrottledStore`) and applies a list
//! of [`Rule`]s to every call. A rule selects requests by operation ([`Op`]) and object path
//! (a substring or a prefix of the path inside the store), injects one [`Fault`] (an error,
//! a delay, or one flipped byte in a GET's body), and does so for the first N requests it
//! selects or for every one. The store counts what each rule injected
//! ([`FaultyStore::injected`]) and logs each injection at WARN, so a test on separate
//! processes can find it in their logs.
//!
//! ```
//! # async fn example() -> object_store::Result<()> {
//! use object_store::{ObjectStoreExt, memory::InMemory, path::Path};
//! use quern_tests::faulty::{FaultyStore, Op, Rule};
//!
//! // The first two PUTs of a path containing `part-` fail; everything else passes.
//! let store = FaultyStore::new(InMemory::new(), vec![Rule::error().on(Op::Put).containing("part-").times(2)]);
//! assert!(store.put(&Path::from("out/part-0"), "x".into()).await.is_err());
//! assert!(store.put(&Path::from("out/part-0"), "x".into()).await.is_err());
//! store.put(&Path::from("out/part-0"), "x".into()).await?;
//! assert_eq!(store.injected(), vec![2]);
//! # Ok(())
//! # }
//! ```
//!
//! Rules also come as text ([`parse_rules`]), which the `quern-test` binary reads from
//! `QUERN_FAULT_STORE`: rules separated by `;`, each `OPS:KEY:FAULT[:TIMES]`:
//!
//! - `OPS`: `*` (every operation) or operations joined by `+`: `get`, `head`, `put`, `list`,
//!   `delete`, `copy`, `rename` (`get+put`);
//! - `KEY`: a substring of the object path, `^PREFIX` for a prefix of it, empty for any;
//! - `FAULT`: `error`, `corrupt` (GETs only) or `delay=DURATION` (`delay=200ms`);
//! - `TIMES`: inject into the first TIMES requests the rule selects; omitted: every one.
//!
//! `get:.arrows:corrupt:1;put:/part-:error:2` corrupts the first map output read and fails
//! the first two writes of a part. Paths contain no `:`, so the separators are unambiguous.
//!
//! A multipart upload is a `put` when it starts; its parts are not faulted. A listing's
//! path is its prefix; a copy or rename is selected by either of its paths.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// A kind of store request a [`Rule`] can select.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A GET of an object or of a range of it.
    Get,
    /// A HEAD (a GET of the metadata only).
    Head,
    /// A PUT, or the start of a multipart upload.
    Put,
    /// A listing (its path is the prefix listed).
    List,
    /// A delete of one path.
    Delete,
    /// A copy (selected by either path).
    Copy,
    /// A rename (selected by either path).
    Rename,
}

impl Op {
    const ALL: [Op; 7] = [Op::Get, Op::Head, Op::Put, Op::List, Op::Delete, Op::Copy, Op::Rename];

    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Head => "head",
            Op::Put => "put",
            Op::List => "list",
            Op::Delete => "delete",
            Op::Copy => "copy",
            Op::Rename => "rename",
        }
    }
}

/// What a [`Rule`] does to a request it selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The request fails with a generic (transient-looking) store error, never reaching the
    /// inner store.
    Error,
    /// The request waits this long before it goes ahead.
    Delay(Duration),
    /// A GET returns its body with one byte flipped (an empty body is left alone and does
    /// not count).
    Corrupt,
}

/// Which paths a [`Rule`] selects.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    Any,
    Containing(String),
    Prefix(String),
}

/// One fault to inject: which requests (operations and paths), what fault, how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Empty: every operation.
    ops: Vec<Op>,
    key: Key,
    fault: Fault,
    /// `None`: every selected request.
    times: Option<u64>,
}

impl Rule {
    /// A rule injecting `fault` into every request, until narrowed.
    pub fn new(fault: Fault) -> Self {
        Rule { ops: Vec::new(), key: Key::Any, fault, times: None }
    }

    /// Failing requests ([`Fault::Error`]).
    pub fn error() -> Self {
        Self::new(Fault::Error)
    }

    /// Delaying requests by `d` ([`Fault::Delay`]).
    pub fn delay(d: Duration) -> Self {
        Self::new(Fault::Delay(d))
    }

    /// Corrupting GET bodies ([`Fault::Corrupt`]).
    pub fn corrupt() -> Self {
        Self::new(Fault::Corrupt).on(Op::Get)
    }

    /// Selects `op` too (the first call narrows the rule from every operation to `op`).
    pub fn on(mut self, op: Op) -> Self {
        if !self.ops.contains(&op) {
            self.ops.push(op);
        }
        self
    }

    /// Selects only paths containing `s`.
    pub fn containing(mut self, s: &str) -> Self {
        self.key = Key::Containing(s.to_string());
        self
    }

    /// Selects only paths starting with `s`.
    pub fn with_prefix(mut self, s: &str) -> Self {
        self.key = Key::Prefix(s.to_string());
        self
    }

    /// Injects into the first `n` selected requests only, then lets them all pass.
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    fn selects(&self, op: Op, path: &str) -> bool {
        (self.ops.is_empty() || self.ops.contains(&op))
            && match &self.key {
                Key::Any => true,
                Key::Containing(s) => path.contains(s.as_str()),
                Key::Prefix(s) => path.starts_with(s.as_str()),
            }
    }
}

impl std::str::FromStr for Rule {
    type Err = String;

    /// One rule of the text form in the [module docs](self): `OPS:KEY:FAULT[:TIMES]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split(':').collect();
        let [ops, key, fault, rest @ ..] = parts.as_slice() else {
            return Err(format!("{s:?}: expected OPS:KEY:FAULT[:TIMES]"));
        };
        let fault = match *fault {
            "error" => Fault::Error,
            "corrupt" => Fault::Corrupt,
            f => match f.strip_prefix("delay=") {
                Some(d) => Fault::Delay(humantime::parse_duration(d).map_err(|e| format!("{s:?}: delay: {e}"))?),
                None => return Err(format!("{s:?}: unknown fault {f:?} (error, corrupt, delay=DURATION)")),
            },
        };
        let mut rule = Rule::new(fault);
        if *ops != "*" {
            for name in ops.split('+') {
                let op = Op::ALL.into_iter().find(|o| o.name() == name);
                rule = rule.on(op.ok_or_else(|| format!("{s:?}: unknown operation {name:?}"))?);
            }
        }
        if fault == Fault::Corrupt {
            if rule.ops.iter().any(|o| *o != Op::Get) {
                return Err(format!("{s:?}: only GETs can be corrupted"));
            }
            rule = rule.on(Op::Get);
        }
        rule.key = match (key.strip_prefix('^'), *key) {
            (_, "") => Key::Any,
            (Some(prefix), _) => Key::Prefix(prefix.to_string()),
            (None, k) => Key::Containing(k.to_string()),
        };
        match rest {
            [] => {}
            [n] => rule.times = Some(n.parse().map_err(|_| format!("{s:?}: TIMES must be a number, not {n:?}"))?),
            _ => return Err(format!("{s:?}: expected OPS:KEY:FAULT[:TIMES]")),
        }
        Ok(rule)
    }
}

impl fmt::Display for Rule {
    /// The text form [`FromStr`](std::str::FromStr) reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops: Vec<&str> = self.ops.iter().map(|o| o.name()).collect();
        f.write_str(if ops.is_empty() { "*".to_string() } else { ops.join("+") }.as_str())?;
        match &self.key {
            Key::Any => f.write_str(":")?,
            Key::Containing(s) => write!(f, ":{s}")?,
            Key::Prefix(s) => write!(f, ":^{s}")?,
        }
        match self.fault {
            Fault::Error => f.write_str(":error")?,
            Fault::Corrupt => f.write_str(":corrupt")?,
            Fault::Delay(d) => write!(f, ":delay={}", humantime::format_duration(d))?,
        }
        match self.times {
            Some(n) => write!(f, ":{n}"),
            None => Ok(()),
        }
    }
}

/// Parses rules separated by `;` (the text form in the [module docs](self)).
pub fn parse_rules(spec: &str) -> Result<Vec<Rule>, String> {
    spec.split(';').filter(|r| !r.trim().is_empty()).map(str::parse).collect()
}

/// A rule and what it has done so far.
#[derive(Debug)]
struct Armed {
    rule: Rule,
    /// Selected requests it has injected into.
    injected: AtomicU64,
}

impl Armed {
    /// Whether the rule still injects (without using up a turn).
    fn has_turns(&self) -> bool {
        self.rule.times.is_none_or(|n| self.injected.load(Ordering::Relaxed) < n)
    }

    /// Uses up one turn, if any is left.
    fn take(&self) -> bool {
        let limit = self.rule.times.unwrap_or(u64::MAX);
        self.injected.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < limit).then_some(n + 1)).is_ok()
    }
}

/// The rules of one store, shared with the streams it returns.
#[derive(Debug)]
struct Rules(Vec<Armed>);

impl Rules {
    /// Takes the turns of the delay and error rules selecting `(op, path)`: how long to
    /// wait, then whether to fail.
    fn plan(&self, op: Op, paths: &[&str]) -> (Duration, bool) {
        let (mut wait, mut fail) = (Duration::ZERO, false);
        for a in &self.0 {
            if !paths.iter().any(|p| a.rule.selects(op, p)) {
                continue;
            }
            match a.rule.fault {
                Fault::Delay(d) if a.take() => {
                    log(op, paths, "delay");
                    wait += d;
                }
                Fault::Error if a.take() => {
                    log(op, paths, "error");
                    fail = true;
                }
                _ => {}
            }
        }
        (wait, fail)
    }

    /// Waits and fails as [`plan`](Self::plan) says.
    async fn apply(&self, op: Op, paths: &[&str]) -> Result<()> {
        let (wait, fail) = self.plan(op, paths);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if fail { Err(injected(op, paths)) } else { Ok(()) }
    }

    /// A corrupting rule that selects a GET of `path` and has turns left.
    fn corrupter(&self, path: &str) -> Option<&Armed> {
        self.0.iter().find(|a| a.rule.fault == Fault::Corrupt && a.rule.selects(Op::Get, path) && a.has_turns())
    }
}

fn log(op: Op, paths: &[&str], fault: &str) {
    tracing::warn!(op = op.name(), path = paths.join(" "), fault, "fault injected");
}

fn injected(op: Op, paths: &[&str]) -> object_store::Error {
    let msg = format!("injected fault: {} {}", op.name(), paths.join(" "));
    object_store::Error::Generic { store: "FaultyStore", source: msg.into() }
}

/// An object store that injects faults into chosen requests (see the [module docs](self)).
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    rules: Arc<Rules>,
}

impl<S: ObjectStore> FaultyStore<S> {
    /// Wraps `inner`; every request passes through `rules`, in order (several may apply to
    /// one request: a delay and then an error).
    pub fn new(inner: S, rules: Vec<Rule>) -> Self {
        let rules = rules.into_iter().map(|rule| Armed { rule, injected: AtomicU64::new(0) }).collect();
        FaultyStore { inner, rules: Arc::new(Rules(rules)) }
    }

    /// How many requests each rule has injected into, in the order of the rules.
    pub fn injected(&self) -> Vec<u64> {
        self.rules.0.iter().map(|a| a.injected.load(Ordering::Relaxed)).collect()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// `got` with one byte of its body flipped, if a corrupting rule still selects `path`.
    async fn corrupt(&self, path: &str, got: GetResult) -> Result<GetResult> {
        if self.rules.corrupter(path).is_none() {
            return Ok(got);
        }
        let GetResult { payload, meta, range, attributes, extensions } = got;
        let whole =
            GetResult { payload, meta: meta.clone(), range: range.clone(), attributes: attributes.clone(), extensions };
        let mut body = whole.bytes().await?.to_vec();
        // Taken only now: a rule's turn goes to a body it can actually corrupt.
        if !body.is_empty() && self.rules.corrupter(path).is_some_and(Armed::take) {
            log(Op::Get, &[path], "corrupt");
            let mid = body.len() / 2;
            body[mid] ^= 0xff;
        }
        let body = Bytes::from(body);
        Ok(GetResult {
            payload: GetResultPayload::Stream(futures::stream::once(async move { Ok(body) }).boxed()),
            meta,
            range,
            attributes,
            extensions: Default::default(),
        })
    }
}

impl<S: fmt::Display> fmt::Display for FaultyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

/// `list`, after the rules' delay, or their error instead: decided when the listing is
/// first polled, as a real store's first page request would be.
fn faulty_list(
    rules: Arc<Rules>,
    prefix: String,
    list: BoxStream<'static, Result<ObjectMeta>>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    let mut list = Some(list);
    futures::stream::once(async move { rules.apply(Op::List, &[&prefix]).await })
        .flat_map(move |planned| match (planned, list.take()) {
            (Ok(()), Some(list)) => list,
            (Err(e), _) => futures::stream::iter([Err(e)]).boxed(),
            (Ok(()), None) => futures::stream::empty().boxed(),
        })
        .boxed()
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: ObjectStore> ObjectStore for FaultyStore<S> {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.rules.apply(Op::Put, &[location.as_ref()]).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.rules.apply(Op::Put, &[location.as_ref()]).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head { Op::Head } else { Op::Get };
        self.rules.apply(op, &[location.as_ref()]).await?;
        let got = self.inner.get_opts(location, options).await?;
        if op == Op::Head {
            return Ok(got);
        }
        self.corrupt(location.as_ref(), got).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        // Each range through `get_opts`, so every one is subject to the rules.
        object_store::coalesce_ranges(
            ranges,
            |range| object_store::ObjectStoreExt::get_range(self, location, range),
            object_store::OBJECT_STORE_COALESCE_DEFAULT,
        )
        .await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let rules = self.rules.clone();
        let checked = locations
            .then(move |path| {
                let rules = rules.clone();
                async move {
                    let path = path?;
                    rules.apply(Op::Delete, &[path.as_ref()]).await?;
                    Ok(path)
                }
            })
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        faulty_list(self.rules.clone(), key, self.inner.list(prefix))
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        faulty_list(self.rules.clone(), key, self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.rules.apply(Op::List, &[&key]).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.rules.apply(Op::Copy, &[from.as_ref(), to.as_ref()]).await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        // Delegated: the trait's default would turn an atomic rename into copy and delete.
        self.rules.apply(Op::Rename, &[from.as_ref(), to.as_ref()]).await?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
#[path = "faulty_tests.rs"]
mod tests;
