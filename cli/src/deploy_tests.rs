//! Keeps `deploy/` honest without a cluster or an image registry: every manifest under
//! `deploy/k8s/` parses, and every container's arguments are parsed by this very CLI (clap),
//! so a renamed or removed flag or subcommand fails here. Then, per container: its probes
//! and scrape annotations point at declared ports that its `--http` binds, with paths the
//! servers serve; its `--listen` port is declared; every file a flag reads lies in a mounted
//! Secret that holds it; a worker's memory covers `--slots` x `--task-memory`; Services
//! select pods and target their ports; the kustomizations name files that exist; and the
//! Dockerfile builds and runs the binary the manifests run.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;
use serde_norway::Value;

use crate::args::{Cli, Command};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every YAML file under `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Every document of every manifest, with its file.
fn documents() -> Vec<(PathBuf, Value)> {
    let mut docs = Vec::new();
    for file in yaml_files(&deploy_dir().join("k8s")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if !value.is_null() {
                docs.push((file.clone(), value));
            }
        }
    }
    assert!(!docs.is_empty(), "no manifests found");
    docs
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path)?.as_str()
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn seq<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path).and_then(Value::as_sequence).map(Vec::as_slice).unwrap_or_default()
}

/// A container of a workload, with its pod spec and pod annotations.
struct Container<'a> {
    file: String,
    workload: String,
    pod: &'a Value,
    annotations: BTreeMap<String, String>,
    c: &'a Value,
}

fn containers(docs: &[(PathBuf, Value)]) -> Vec<Container<'_>> {
    let mut out = Vec::new();
    for (file, doc) in docs {
        if !matches!(s(doc, &["kind"]), Some("Deployment" | "StatefulSet" | "DaemonSet")) {
            continue;
        }
        let Some(pod) = at(doc, &["spec", "template", "spec"]) else { continue };
        let annotations: BTreeMap<String, String> = at(doc, &["spec", "template", "metadata", "annotations"])
            .and_then(Value::as_mapping)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        for c in seq(pod, &["containers"]) {
            out.push(Container {
                file: file.display().to_string(),
                workload: s(doc, &["metadata", "name"]).unwrap_or("?").to_string(),
                pod,
                annotations: annotations.clone(),
                c,
            });
        }
    }
    out
}

/// What one container runs, as this CLI reads its arguments.
struct Role {
    /// Ports the arguments bind: (flag, port).
    binds: Vec<(&'static str, u16)>,
    /// The `--http` port, and whether it serves TLS.
    http: Option<(u16, bool)>,
    /// Paths the server serves on `--http`.
    pages: &'static [&'static str],
    /// Files read from Secrets: (flag, path).
    secret_files: Vec<(&'static str, PathBuf)>,
    /// Directories written to: (flag, path).
    dirs: Vec<(&'static str, PathBuf)>,
    /// Bytes of task buffers at most (workers): slots x task memory.
    task_memory: Option<u64>,
    /// Whether it talks to an S3 store whose credentials come from the environment.
    s3: bool,
}

fn role(ctx: &str, args: &[String]) -> Role {
    let argv = std::iter::once("quern".to_string()).chain(args.iter().cloned());
    let cli =
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{ctx}: the CLI refuses the arguments {args:?}: {e}"));
    let port = |a: &SocketAddr| a.port();
    let files = |list: Vec<(&'static str, &Option<PathBuf>)>| {
        list.into_iter().filter_map(|(flag, p)| Some((flag, p.clone()?))).collect::<Vec<_>>()
    };
    match cli.command {
        Command::Coordinator(a) => {
            let tls = a.net.tls_cert.is_some();
            let mut binds = vec![("--listen", port(&a.listen))];
            binds.extend(a.http.as_ref().map(|h| ("--http", port(h))));
            Role {
                binds,
                http: a.http.as_ref().map(|h| (port(h), tls)),
                pages: &["/healthz", "/readyz", "/metrics"],
                secret_files: files(vec![
                    ("--token-file", &a.token_file),
                    ("--tls-cert", &a.net.tls_cert),
                    ("--tls-key", &a.net.tls_key),
                    ("--tls-client-ca", &a.net.tls_client_ca),
                ]),
                dirs: Vec::new(),
                task_memory: None,
                s3: a.store.starts_with("s3://"),
            }
        }
        Command::Worker(a) => {
            let mut dirs = files(vec![("--spill-dir", &a.spill_dir), ("--cache-dir", &a.cache_dir)]);
            dirs.extend(a.local_data.iter().map(|d| ("--local-data", d.clone())));
            Role {
                binds: a.http.as_ref().map(|h| ("--http", port(h))).into_iter().collect(),
                http: a.http.as_ref().map(|h| (port(h), false)),
                pages: &["/healthz", "/metrics"],
                secret_files: files(vec![
                    ("--token-file", &a.token_file),
                    ("--tls-ca", &a.net.tls_ca),
                    ("--tls-cert", &a.net.tls_cert),
                    ("--tls-key", &a.net.tls_key),
                ]),
                dirs,
                task_memory: Some(u64::from(a.slots) * a.task_memory),
                // Workers use the store the coordinator names; they need its credentials
                // whenever the coordinator does.
                s3: true,
            }
        }
        other => panic!("{ctx}: runs {other:?}, not a coordinator or worker"),
    }
}

/// The container's declared ports, by name and number.
fn declared_ports(c: &Value) -> BTreeMap<String, u16> {
    let mut ports = BTreeMap::new();
    for p in seq(c, &["ports"]) {
        let n = at(p, &["containerPort"]).and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok()).unwrap();
        ports.insert(n.to_string(), n);
        if let Some(name) = s(p, &["name"]) {
            ports.insert(name.to_string(), n);
        }
    }
    ports
}

/// A port given as a number or a name (probes, Services).
fn port_ref(v: &Value) -> String {
    v.as_u64().map(|n| n.to_string()).or_else(|| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// A Kubernetes memory quantity (`512Mi`, `2Gi`, `1G`, plain bytes) in bytes.
fn quantity(q: &str) -> u64 {
    let units: [(&str, u64); 6] =
        [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("K", 1_000), ("M", 1_000_000), ("G", 1_000_000_000)];
    for (suffix, mult) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<u64>().unwrap() * mult;
        }
    }
    q.parse().unwrap()
}

#[test]
fn every_container_runs_flags_the_cli_has_on_ports_and_files_it_declares() {
    let docs = documents();
    let all = containers(&docs);
    let mut seen = Vec::new();
    // (flag, Secret) of every file a flag reads, across containers.
    let mut secrets: Vec<(&str, String)> = Vec::new();
    for k in &all {
        let ctx = format!("{} ({}/{})", k.file, k.workload, s(k.c, &["name"]).unwrap_or("?"));
        assert_eq!(s(k.c, &["image"]), Some("quern"), "{ctx}: the image the kustomization names");
        assert!(at(k.c, &["command"]).is_none(), "{ctx}: the image's ENTRYPOINT (quern) runs the args");
        let args: Vec<String> = seq(k.c, &["args"]).iter().map(|a| a.as_str().unwrap().to_string()).collect();
        let r = role(&ctx, &args);
        seen.push(args[0].clone());
        let ports = declared_ports(k.c);

        for (flag, p) in &r.binds {
            assert!(ports.values().any(|d| d == p), "{ctx}: {flag} binds {p}, not a declared containerPort");
        }
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            let Some(get) = at(k.c, &[probe, "httpGet"]) else { continue };
            let path = s(get, &["path"]).unwrap_or_default();
            assert!(r.pages.contains(&path), "{ctx}: {probe} on {path}, which is not served");
            let port = ports.get(&port_ref(at(get, &["port"]).unwrap())).copied();
            let (http, tls) = r.http.unwrap_or_else(|| panic!("{ctx}: {probe} without --http"));
            assert_eq!(port, Some(http), "{ctx}: {probe} must probe the --http port");
            let scheme = s(get, &["scheme"]).unwrap_or("HTTP");
            assert_eq!(scheme, if tls { "HTTPS" } else { "HTTP" }, "{ctx}: {probe} scheme");
        }
        assert!(at(k.c, &["livenessProbe", "httpGet"]).is_some(), "{ctx}: no liveness probe");
        if args[0] == "coordinator" {
            assert_eq!(s(k.c, &["readinessProbe", "httpGet", "path"]), Some("/readyz"), "{ctx}: readiness");
        }
        if k.annotations.get("prometheus.io/scrape").map(String::as_str) == Some("true") {
            let (http, tls) = r.http.unwrap_or_else(|| panic!("{ctx}: scraped without --http"));
            assert_eq!(k.annotations.get("prometheus.io/port"), Some(&http.to_string()), "{ctx}: scrape port");
            assert!(ports.values().any(|d| *d == http), "{ctx}: scrape port not declared");
            assert_eq!(k.annotations.get("prometheus.io/path").map(String::as_str), Some("/metrics"), "{ctx}");
            let scheme = k.annotations.get("prometheus.io/scheme").map(String::as_str).unwrap_or("http");
            assert_eq!(scheme, if tls { "https" } else { "http" }, "{ctx}: scrape scheme");
        } else {
            panic!("{ctx}: no Prometheus scrape annotations");
        }

        // Files the flags read: in a mounted Secret, under the key the flag names.
        let mounts: Vec<(&str, &str)> = seq(k.c, &["volumeMounts"])
            .iter()
            .map(|m| (s(m, &["mountPath"]).unwrap(), s(m, &["name"]).unwrap()))
            .collect();
        let volume = |name: &str| seq(k.pod, &["volumes"]).iter().find(|v| s(v, &["name"]) == Some(name));
        for (flag, file) in &r.secret_files {
            let (dir, name) = mounts
                .iter()
                .find(|(dir, _)| file.parent() == Some(Path::new(dir)))
                .unwrap_or_else(|| panic!("{ctx}: {flag} {} is in no mounted directory", file.display()));
            let v = volume(name).unwrap_or_else(|| panic!("{ctx}: mount {dir} has no volume {name}"));
            let secret = at(v, &["secret"]).unwrap_or_else(|| panic!("{ctx}: {flag} must come from a Secret"));
            secrets.push((flag, s(secret, &["secretName"]).unwrap_or_default().to_string()));
            let base = file.file_name().unwrap().to_str().unwrap();
            let items = seq(secret, &["items"]);
            assert!(
                items.is_empty() || items.iter().any(|i| s(i, &["path"]) == Some(base)),
                "{ctx}: {flag} reads {base}, which the Secret volume {name} does not project"
            );
        }
        for (flag, dir) in &r.dirs {
            assert!(
                mounts.iter().any(|(m, name)| dir.starts_with(m) && volume(name).is_some()),
                "{ctx}: {flag} {} is on no mounted volume (the root file system is read-only)",
                dir.display()
            );
        }
        if r.s3 {
            let from_secret = seq(k.c, &["envFrom"]).iter().any(|e| s(e, &["secretRef", "name"]).is_some());
            assert!(from_secret, "{ctx}: S3 credentials come from a Secret (envFrom)");
        }
        if let Some(buffers) = r.task_memory {
            let limit = quantity(s(k.c, &["resources", "limits", "memory"]).expect("a memory limit"));
            let request = quantity(s(k.c, &["resources", "requests", "memory"]).expect("a memory request"));
            assert!(request >= buffers, "{ctx}: memory request {request} below --slots x --task-memory {buffers}");
            assert!(limit >= request, "{ctx}: memory limit below the request");
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["coordinator", "worker"], "both roles are deployed");
    // One token for everyone, and workers trust the CA of the coordinator's certificate.
    let of = |flag: &str| {
        let mut names: Vec<&str> = secrets.iter().filter(|(f, _)| *f == flag).map(|(_, n)| n.as_str()).collect();
        names.sort();
        names.dedup();
        names
    };
    assert_eq!(of("--token-file").len(), 1, "every --token-file from one Secret: {secrets:?}");
    assert_eq!(of("--tls-ca"), of("--tls-cert"), "the CA workers trust is in the coordinator's TLS Secret");
}

#[test]
fn services_select_pods_and_target_their_ports() {
    let docs = documents();
    let all = containers(&docs);
    for (file, svc) in docs.iter().filter(|(_, d)| s(d, &["kind"]) == Some("Service")) {
        let ctx = format!("{} ({})", file.display(), s(svc, &["metadata", "name"]).unwrap_or("?"));
        let selector = at(svc, &["spec", "selector"]).and_then(Value::as_mapping).expect("a selector");
        let selected: Vec<&Container<'_>> = docs
            .iter()
            .filter(|(_, d)| {
                let labels = at(d, &["spec", "template", "metadata", "labels"]);
                selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
            })
            .filter_map(|(_, d)| s(d, &["metadata", "name"]))
            .flat_map(|name| all.iter().filter(move |c| c.workload == name))
            .collect();
        assert!(!selected.is_empty(), "{ctx}: selects no pods");
        for p in seq(svc, &["spec", "ports"]) {
            let target = port_ref(at(p, &["targetPort"]).or_else(|| at(p, &["port"])).unwrap());
            for c in &selected {
                assert!(declared_ports(c.c).contains_key(&target), "{ctx}: targetPort {target} not declared");
            }
        }
    }
}

#[test]
fn kustomizations_name_files_that_exist_and_every_manifest_is_applied() {
    let k8s = deploy_dir().join("k8s");
    let mut used = vec![k8s.join("kustomization.yaml")];
    let mut dirs = vec![k8s.clone()];
    while let Some(dir) = dirs.pop() {
        let k: Value =
            serde_norway::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap()).unwrap();
        used.push(dir.join("kustomization.yaml"));
        for r in seq(&k, &["resources"]).iter().chain(seq(&k, &["patches"]).iter().filter_map(|p| p.get("path"))) {
            let path = dir.join(r.as_str().unwrap());
            assert!(path.is_file(), "{}: names {} that does not exist", dir.display(), path.display());
            used.push(path);
        }
        for c in seq(&k, &["components"]) {
            dirs.push(dir.join(c.as_str().unwrap()));
        }
        if dir == k8s {
            // The optional standby component is commented out; it must still be whole.
            dirs.push(k8s.join("standby"));
            let images: Vec<&str> = seq(&k, &["images"]).iter().filter_map(|i| s(i, &["name"])).collect();
            assert_eq!(images, ["quern"], "the image the containers name");
        }
    }
    used.sort();
    used.dedup();
    assert_eq!(used, yaml_files(&k8s), "every manifest is a resource, patch or kustomization");
}

#[test]
fn the_dockerfile_builds_the_binary_the_manifests_run() {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
    assert!(lines.iter().any(|l| l.starts_with("FROM rust:1.95")), "a Rust 1.95 builder");
    assert!(text.contains("cargo build --release --locked --bin quern"), "builds the quern binary");
    assert!(text.contains("target/release/quern"));
    assert!(lines.iter().any(|l| l.starts_with("COPY --from=build") && l.ends_with("/usr/local/bin/quern")));
    assert!(lines.iter().any(|l| l.starts_with("USER ") && !l.starts_with("USER root") && !l.starts_with("USER 0")));
    let entry = lines.iter().rev().find(|l| l.starts_with("ENTRYPOINT")).expect("an ENTRYPOINT");
    assert_eq!(*entry, r#"ENTRYPOINT ["quern"]"#);
    // The binary the stock CLI builds is `quern`, the one every container runs.
    assert_eq!(<Cli as clap::CommandFactory>::command().get_name(), "quern");
}
