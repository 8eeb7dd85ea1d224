//! Unit tests of [`FaultyStore`] and its rule text, on memory and local-file stores.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use super::*;

fn p(s: &str) -> Path {
    Path::from(s)
}

async fn filled(rules: Vec<Rule>) -> FaultyStore<InMemory> {
    let inner = InMemory::new();
    for name in ["jobs/a/map-1.arrows", "jobs/a/map-2.arrows", "out/part-0"] {
        inner.put(&p(name), Bytes::from_static(b"0123456789").into()).await.unwrap();
    }
    FaultyStore::new(inner, rules)
}

#[tokio::test]
async fn errors_hit_the_selected_operation_and_paths_n_times_then_pass() {
    let s = filled(vec![Rule::error().on(Op::Put).containing("part-").times(2)]).await;
    for _ in 0..2 {
        let e = s.put(&p("out/part-1"), "x".into()).await.unwrap_err();
        assert!(matches!(e, object_store::Error::Generic { .. }), "a transient-looking error: {e}");
        assert!(e.to_string().contains("injected fault: put out/part-1"), "{e}");
    }
    s.put(&p("out/part-1"), "x".into()).await.unwrap();
    s.put(&p("out/other"), "x".into()).await.unwrap();
    s.get(&p("out/part-0")).await.unwrap();
    assert_eq!(s.injected(), vec![2]);
    assert!(s.inner().head(&p("out/part-1")).await.is_ok(), "the third put went through");
}

#[tokio::test]
async fn an_endless_rule_never_lets_a_selected_request_through() {
    let s = filled(vec![Rule::error().with_prefix("jobs/")]).await;
    for _ in 0..5 {
        assert!(s.get(&p("jobs/a/map-1.arrows")).await.is_err());
    }
    assert!(s.get(&p("out/part-0")).await.is_ok(), "a prefix, not a substring");
    assert!(s.put(&p("x/jobs/y"), "x".into()).await.is_ok());
    assert_eq!(s.injected(), vec![5]);
}

#[tokio::test]
async fn corruption_flips_one_byte_of_whole_and_ranged_gets_once() {
    let s = filled(vec![Rule::corrupt().containing(".arrows").times(2)]).await;
    let whole = s.get(&p("jobs/a/map-1.arrows")).await.unwrap().bytes().await.unwrap();
    let diff = whole.iter().zip(b"0123456789").filter(|(a, b)| a != b).count();
    assert_eq!((whole.len(), diff), (10, 1));
    let ranged = s.get_range(&p("jobs/a/map-2.arrows"), 2..6).await.unwrap();
    assert_ne!(&ranged[..], b"2345");
    assert_eq!(ranged.len(), 4);
    assert_eq!(&s.get_range(&p("jobs/a/map-2.arrows"), 2..6).await.unwrap()[..], b"2345", "its turns are used up");
    assert_eq!(&s.get(&p("out/part-0")).await.unwrap().bytes().await.unwrap()[..], b"0123456789");
    assert_eq!(s.injected(), vec![2]);
}

#[tokio::test]
async fn corruption_reaches_bodies_read_from_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let s = FaultyStore::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap(), vec![Rule::corrupt().times(1)]);
    s.put(&p("f"), Bytes::from_static(b"abcdef").into()).await.unwrap();
    assert_ne!(&s.get(&p("f")).await.unwrap().bytes().await.unwrap()[..], b"abcdef");
    assert_eq!(&s.get(&p("f")).await.unwrap().bytes().await.unwrap()[..], b"abcdef");
}

#[tokio::test]
async fn an_empty_body_does_not_use_up_a_corruption() {
    let s = filled(vec![Rule::corrupt().times(1)]).await;
    s.inner().put(&p("empty"), Bytes::new().into()).await.unwrap();
    assert!(s.get(&p("empty")).await.unwrap().bytes().await.unwrap().is_empty());
    assert_eq!(s.injected(), vec![0]);
    assert_ne!(&s.get(&p("out/part-0")).await.unwrap().bytes().await.unwrap()[..], b"0123456789");
}

#[tokio::test]
async fn head_is_not_get() {
    let s = filled(vec![Rule::error().on(Op::Get)]).await;
    assert!(s.head(&p("out/part-0")).await.is_ok());
    assert!(s.get(&p("out/part-0")).await.is_err());
    let s = filled(vec![Rule::error().on(Op::Head)]).await;
    assert!(s.head(&p("out/part-0")).await.is_err());
    assert!(s.get(&p("out/part-0")).await.is_ok());
}

#[tokio::test]
async fn listings_and_deletes_fail_where_selected() {
    let s = filled(vec![Rule::error().on(Op::List).containing("jobs").times(1)]).await;
    let first: Result<Vec<_>> = s.list(Some(&p("jobs"))).try_collect().await;
    assert!(first.is_err());
    let again: Vec<_> = s.list(Some(&p("jobs"))).try_collect().await.unwrap();
    assert_eq!(again.len(), 2);
    assert_eq!(s.list_with_delimiter(None).await.unwrap().common_prefixes.len(), 2, "the root is not selected");

    let s = filled(vec![Rule::error().on(Op::Delete).containing("map-1")]).await;
    let paths = futures::stream::iter([Ok(p("jobs/a/map-1.arrows")), Ok(p("jobs/a/map-2.arrows"))]).boxed();
    let results: Vec<Result<Path>> = s.delete_stream(paths).collect().await;
    assert!(results[0].is_err() && results[1].is_ok(), "{results:?}");
    assert!(s.inner().head(&p("jobs/a/map-1.arrows")).await.is_ok(), "the failed delete deleted nothing");
    assert!(s.inner().head(&p("jobs/a/map-2.arrows")).await.is_err());
}

#[tokio::test]
async fn copies_and_renames_are_selected_by_either_path() {
    let s = filled(vec![Rule::error().on(Op::Rename).on(Op::Copy).containing("part-").times(2)]).await;
    assert!(s.rename(&p("out/part-0"), &p("out/renamed")).await.is_err());
    assert!(s.copy(&p("jobs/a/map-1.arrows"), &p("out/part-9")).await.is_err());
    s.rename(&p("out/part-0"), &p("out/renamed")).await.unwrap();
    assert_eq!(s.injected(), vec![2]);
}

#[tokio::test]
async fn a_delay_holds_the_request_and_then_lets_it_through() {
    let s = filled(vec![Rule::delay(Duration::from_millis(50)).on(Op::Get).times(1)]).await;
    let started = Instant::now();
    s.get(&p("out/part-0")).await.unwrap();
    // A lower bound only: sleeping never ends early.
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(s.injected(), vec![1]);
}

#[tokio::test]
async fn several_rules_apply_to_one_request_in_order() {
    let rules = vec![Rule::delay(Duration::from_millis(1)), Rule::error().on(Op::Put).times(1)];
    let s = filled(rules).await;
    assert!(s.put(&p("a"), "x".into()).await.is_err());
    assert!(s.put(&p("a"), "x".into()).await.is_ok());
    assert_eq!(s.injected(), vec![2, 1]);
}

#[test]
fn rules_parse_from_text() {
    let rules = parse_rules("get:.arrows:corrupt:1; put+get:^jobs/:error:2;*::delay=150ms;").unwrap();
    assert_eq!(
        rules,
        vec![
            Rule::corrupt().containing(".arrows").times(1),
            Rule::error().on(Op::Put).on(Op::Get).with_prefix("jobs/").times(2),
            Rule::delay(Duration::from_millis(150)),
        ]
    );
    assert_eq!(parse_rules("").unwrap(), vec![]);
    for bad in ["get", "get:x", "fetch:x:error", "get:x:boom", "get:x:error:lots", "put:x:corrupt", "get:x:delay=soon"]
    {
        assert!(parse_rules(bad).is_err(), "{bad}");
    }
}
