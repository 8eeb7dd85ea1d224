//! Network hardening against real processes: TLS and mutual TLS (certificates made here with
//! rcgen), the token on the status pages, an idle-connection flood past `--max-connections`,
//! and an oversized message. Every failure must be one clear line and a non-zero exit.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use quern_tests::data::{read_output, word_count, write_corpus};
use quern_tests::{Mode, TestCluster, eventually, ok_stdout, quern};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};

/// A CA and files signed by it, in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = tempfile::Builder::new().prefix("quern-pki-").tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca }
    }

    fn ca(&self) -> String {
        self.dir.path().join("ca.pem").display().to_string()
    }

    /// Writes `NAME.pem` and `NAME.key` for a certificate naming 127.0.0.1 and localhost.
    fn issue(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (c, k) = (self.file(&format!("{name}.pem")), self.file(&format!("{name}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c.display().to_string(), k.display().to_string())
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails with a non-zero exit and exactly one stderr line containing `needle`.
fn assert_fails(o: &Output, needle: &str) {
    assert!(!o.status.success(), "expected failure, got success: {}", String::from_utf8_lossy(&o.stdout));
    let err = stderr(o);
    assert_eq!(err.trim_end().lines().count(), 1, "one line on stderr, got: {err}");
    assert!(err.contains(needle), "stderr {err:?} should mention {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Runs word count through `quern submit --wait` and compares with a sequential count.
fn word_count_is_exact(c: &TestCluster, name: &str) {
    let input = c.path(&format!("{name}-in"));
    write_corpus(&input, 3, 20_000, 17).unwrap();
    let out = c.path(&format!("{name}-out"));
    let o = c.cli(
        "submit",
        &[
            "--job",
            "wordcount",
            "--input",
            &format!("{}/", input.display()),
            "--output",
            &out.display().to_string(),
            "--reducers",
            "3",
            "--wait",
        ],
    );
    ok_stdout(&o);
    assert_eq!(read_output(&out, 3, true), word_count(&input));
}

fn list(url: &str, extra: &[&str]) -> Output {
    let mut args = vec!["list", "--coordinator", url];
    args.extend_from_slice(extra);
    quern(&args)
}

#[test]
fn tls_word_count_is_exact_and_plain_or_untrusting_clients_fail_clearly() {
    let pki = Pki::new("quern test CA");
    let (cert, key) = pki.issue("server");
    let ca = pki.ca();
    let c = TestCluster::start_with_clients(
        Mode::Processes,
        2,
        &["--tls-cert", &cert, "--tls-key", &key],
        &["--tls-ca", &ca],
    )
    .unwrap();
    assert!(c.url().starts_with("https://"), "{}", c.url());
    word_count_is_exact(&c, "tls");

    // No CA given: the platform's roots do not know our test CA.
    assert_fails(&list(c.url(), &[]), "--tls-ca");
    // A CA that did not sign the server's certificate.
    let other = Pki::new("another CA");
    assert_fails(&list(c.url(), &["--tls-ca", &other.ca()]), "--tls-ca");
    // Plain text against the TLS port: refused with what to do.
    let plain = c.url().replace("https://", "http://");
    assert_fails(&list(&plain, &[]), "requires TLS");
    // TLS options with an http:// address are never sent in plain text.
    assert_fails(&list(&plain, &["--tls-ca", &ca]), "https://");
    // A worker that speaks plain text gives up at once with the same line.
    let w = quern(&["worker", "--coordinator", &plain, "--reconnect-budget", "30s"]);
    assert!(!w.status.success());
    assert!(stderr(&w).contains("requires TLS"), "{}", stderr(&w));
    // A worker that does not trust the certificate says why when it gives up.
    let w = quern(&["worker", "--coordinator", c.url(), "--tls-ca", &other.ca(), "--reconnect-budget", "1s"]);
    assert!(!w.status.success());
    let last = stderr(&w).lines().last().unwrap_or_default().to_string();
    assert!(last.contains("UnknownIssuer") && last.contains("--tls-ca"), "{}", stderr(&w));
}

#[test]
fn https_against_a_plain_coordinator_fails_clearly() {
    let pki = Pki::new("quern test CA");
    let c = TestCluster::start(Mode::Processes, 0).unwrap();
    let https = c.url().replace("http://", "https://");
    assert_fails(&list(&https, &["--tls-ca", &pki.ca()]), "is it serving TLS");
    assert!(c.answers());
}

#[test]
fn mutual_tls_requires_a_client_certificate() {
    let pki = Pki::new("quern test CA");
    let (cert, key) = pki.issue("server");
    let (client, client_key) = pki.issue("client");
    let ca = pki.ca();
    let c = TestCluster::start_with_clients(
        Mode::Processes,
        2,
        &["--tls-cert", &cert, "--tls-key", &key, "--tls-client-ca", &ca],
        &["--tls-ca", &ca, "--tls-cert", &client, "--tls-key", &client_key],
    )
    .unwrap();
    word_count_is_exact(&c, "mtls");

    assert_fails(&list(c.url(), &["--tls-ca", &ca]), "requires a client certificate");
    // A certificate from a CA the coordinator does not trust fails the handshake.
    let other = Pki::new("another CA");
    let (stranger, stranger_key) = other.issue("stranger");
    let o = list(c.url(), &["--tls-ca", &ca, "--tls-cert", &stranger, "--tls-key", &stranger_key]);
    assert!(!o.status.success());
    assert_eq!(stderr(&o).trim_end().lines().count(), 1, "{}", stderr(&o));
    // A certificate without its key is a usage error.
    assert!(!list(c.url(), &["--tls-ca", &ca, "--tls-cert", &client]).status.success());
}

fn http_get(base: &str, path: &str, token: Option<&str>) -> u16 {
    quern_tests::http_get(base, path, token).0
}

#[test]
fn status_pages_require_the_token_unless_public() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let tf = token_file.display().to_string();
    let c = TestCluster::start_with_clients(
        Mode::Processes,
        0,
        &["--token-file", &tf, "--http", "127.0.0.1:0"],
        &["--token-file", &tf],
    )
    .unwrap();
    let http = c.http_url().unwrap();
    assert_eq!(http_get(&http, "/api/jobs", None), 401);
    assert_eq!(http_get(&http, "/", Some("wrong")), 401);
    assert_eq!(http_get(&http, "/api/jobs", Some("s3cret-token")), 200);
    assert_eq!(http_get(&http, "/", Some("s3cret-token")), 200);

    let public = TestCluster::start_with_clients(
        Mode::Processes,
        0,
        &["--token-file", &tf, "--http", "127.0.0.1:0", "--http-public"],
        &["--token-file", &tf],
    )
    .unwrap();
    assert_eq!(http_get(&public.http_url().unwrap(), "/api/workers", None), 200);
    // gRPC still requires the token.
    assert_fails(&list(public.url(), &[]), "token");
}

#[test]
fn status_pages_over_tls() {
    use tokio_rustls::rustls;
    let pki = Pki::new("quern test CA");
    let (cert, key) = pki.issue("server");
    let c = TestCluster::start_with_clients(
        Mode::Processes,
        0,
        &["--tls-cert", &cert, "--tls-key", &key, "--http", "127.0.0.1:0"],
        &["--tls-ca", &pki.ca()],
    )
    .unwrap();
    let url = c.http_url().unwrap();
    assert!(url.starts_with("https://"), "{url}");
    let addr = url.trim_start_matches("https://").trim_end_matches('/').to_string();
    // Plain HTTP on the TLS port gets a refusal, not the pages.
    assert_eq!(http_get(&format!("http://{addr}"), "/api/jobs", None), 400);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
    let sock = TcpStream::connect(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(tls, "GET /api/jobs HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

/// Whether the server closed `s`: a read returns end-of-file or a reset (bounded by the
/// socket's read timeout; a timeout means still open).
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[test]
fn an_idle_connection_flood_does_not_stop_the_coordinator() {
    quern_api::fdlimit::raise_nofile();
    let c = TestCluster::start_with(
        Mode::Processes,
        2,
        &["--max-connections", "64", "--max-handshakes", "16", "--handshake-timeout", "1s", "--idle-timeout", "30s"],
    )
    .unwrap();
    let addr = c.url().trim_start_matches("http://").to_string();
    // Far more idle connections than the limit; they send nothing.
    let mut flood: Vec<TcpStream> = Vec::new();
    for _ in 0..3_000 {
        match TcpStream::connect(&addr) {
            Ok(s) => flood.push(s),
            // The backlog may refuse some under load; what matters is that the server lives.
            Err(_) => continue,
        }
    }
    assert!(flood.len() > 64, "only {} connections opened", flood.len());
    // Every one sent nothing: closed as the oldest of too many handshakes, or after the
    // handshake timeout (the last ones).
    assert!(closed_by_server(&mut flood[0]), "an idle connection was left open");
    let last = flood.len() - 1;
    assert!(closed_by_server(&mut flood[last]), "an idle connection was left open");
    // One that starts HTTP/2 and stalls is closed too.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"PRI * HTTP").unwrap();
    assert!(closed_by_server(&mut slow), "a stalled handshake was left open");
    // The workers' connections were never at risk, and a new client gets through.
    assert!(eventually(Duration::from_secs(60), || c.answers()), "the coordinator stopped answering");
    word_count_is_exact(&c, "flood");
    drop(flood);
}

#[test]
fn keepalive_holds_long_polls_and_watch_streams_past_the_idle_timeout() {
    // Tasks start only after 3 s, so workers' long polls and the client's watch stream sit
    // quiet far longer than the idle timeout; the server's pings keep them open.
    let mut c = TestCluster::start_with(Mode::Processes, 0, &["--idle-timeout", "1s", "--keepalive", "200ms"]).unwrap();
    c.start_worker_slow(Duration::from_secs(3)).unwrap();
    c.start_worker_slow(Duration::from_secs(3)).unwrap();
    word_count_is_exact(&c, "quiet");
    // A peer that completes the preface and then says nothing is dropped.
    let mut silent = TcpStream::connect(c.url().trim_start_matches("http://")).unwrap();
    silent.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    let mut drained = 0;
    let mut buf = [0u8; 4096];
    silent.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server's SETTINGS and pings arrive first; then the connection ends.
    let closed = loop {
        match silent.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) if drained < 1 << 20 => drained += n,
            Ok(_) => break false,
            Err(e) => break !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    };
    assert!(closed, "a silent HTTP/2 peer was left open");
    let o = quern(&["coordinator", "--listen", "127.0.0.1:0", "--store", "file:///tmp/x", "--idle-timeout", "1s"]);
    assert_fails(&o, "--idle-timeout must be longer than --keepalive");
}

fn too_large(s: &tonic::Status) -> bool {
    matches!(s.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted) && s.message().contains("too large")
}

#[test]
fn an_oversized_message_is_refused_and_the_coordinator_lives() {
    use quern_api::client::{ConnectOptions, job_client};
    use quern_api::pb;
    let c = TestCluster::start_with(Mode::Processes, 1, &["--max-message", "64KiB"]).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = rt.block_on(async {
        let mut client = job_client(c.url(), &ConnectOptions::default()).await.unwrap();
        let mut spec = pb::JobSpec { job: "wordcount".into(), ..Default::default() };
        spec.params.insert("padding".into(), "x".repeat(1 << 20));
        client.submit(pb::SubmitRequest { spec: Some(spec) }).await.unwrap_err()
    });
    assert!(too_large(&status), "{status:?}");
    assert!(c.answers());
    word_count_is_exact(&c, "after");
    // A client's own limit on what it accepts: the job list is larger than 100 bytes.
    assert_fails(&c.cli("list", &["--json", "--max-message", "100"]), "--max-message");
    assert!(c.answers());
}
