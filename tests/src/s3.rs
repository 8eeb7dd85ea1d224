//! A real S3 API server for the tests: `s3s-fs` on 127.0.0.1 (or `moto`'s server where a
//! test needs atomic create-only writes), one bucket, fixed test credentials. `.ci/run`
//! installs the pinned versions when they are missing; a test that cannot start its server
//! fails with the command that installs it (it never skips).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tempfile::TempDir;

/// The access key the test server accepts.
pub const ACCESS_KEY: &str = "quern-test";
/// Its secret key.
pub const SECRET_KEY: &str = "quern-test-secret";
/// How to install the server the tests use.
pub const INSTALL: &str = "cargo install s3s-fs --version 0.14.1 --features binary --locked";
/// How to install `moto`'s server.
pub const MOTO_INSTALL: &str = "python3 -m pip install --user 'moto[server]==5.2.1'";

/// A running `s3s-fs`, killed on drop.
pub struct S3Server {
    child: Child,
    /// The data directory of `s3s-fs` (None for `moto`, which keeps data in memory).
    root: Option<TempDir>,
    endpoint: String,
    bucket: String,
}

impl S3Server {
    /// Starts a server on a free loopback port with one bucket, `quern`.
    pub fn start() -> Result<Self> {
        Self::start_on("127.0.0.1")
    }

    /// Starts a server listening on `host` (an address other hosts of a test can reach).
    pub fn start_on(host: &str) -> Result<Self> {
        let bin = binary("s3s-fs").ok_or_else(|| anyhow!("s3s-fs is not installed; run: {INSTALL}"))?;
        let root = tempfile::Builder::new().prefix("quern-s3-").tempdir()?;
        let bucket = "quern".to_string();
        // A bucket of s3s-fs is a directory under its root.
        std::fs::create_dir(root.path().join(&bucket))?;
        let mut child = Command::new(&bin)
            .args(["--host", host, "--port", "0", "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        // Reads the address it bound (port 0 picks a free one), then drains its log so it
        // never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find("server is running at ")
                    && let Some(tx) = tx.take()
                {
                    let url = line[at + "server is running at ".len()..].trim().to_string();
                    let _ = tx.send(url);
                }
            }
        });
        let endpoint = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("s3s-fs did not report its address within 30 s");
            }
        };
        Ok(S3Server { child, root: Some(root), endpoint, bucket })
    }

    /// Starts `moto`'s S3 server on a free loopback port with one bucket, `quern`. Unlike
    /// `s3s-fs`, it honours create-only writes (`If-None-Match: *`) atomically under racing
    /// writers (8 racing writers, 20 rounds: one winner each), which the lease and the
    /// journal need for a standby coordinator.
    pub fn start_moto() -> Result<Self> {
        let bin = binary("moto_server").ok_or_else(|| anyhow!("moto_server is not installed; run: {MOTO_INSTALL}"))?;
        // moto cannot report a port it picked: take a free one and hand it over.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let bucket = "quern".to_string();
        let started = std::time::Instant::now();
        // Up once it creates the bucket (moto accepts unsigned requests).
        while http(port, &format!("PUT /{bucket} HTTP/1.1")).is_err() {
            if started.elapsed() > Duration::from_secs(30) || !matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("moto_server did not start on port {port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(S3Server { child, root: None, endpoint, bucket })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `s3://quern/PATH`.
    pub fn url(&self, path: &str) -> String {
        format!("s3://{}/{}", self.bucket, path.trim_start_matches('/'))
    }

    /// The environment a Quern process needs to use this server (the usual `AWS_*`).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// A client of the bucket for the test's own reads and writes.
    pub fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        Ok(Arc::new(self.client()?))
    }

    /// The same client's multipart interface (for peers that upload parts themselves).
    pub fn multipart(&self) -> Result<Arc<dyn object_store::multipart::MultipartStore>> {
        Ok(Arc::new(self.client()?))
    }

    /// The same client as its own type, for what only S3 has (e.g. listing page by page).
    pub fn client(&self) -> Result<AmazonS3> {
        Ok(AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_region("us-east-1")
            .with_bucket_name(&self.bucket)
            .build()?)
    }

    /// Writes `files` (name, bytes) under `dir/` in the bucket; returns `s3://quern/dir/`.
    pub fn upload(&self, dir: &str, files: &[(String, Vec<u8>)]) -> Result<String> {
        let store = self.store()?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            for (name, bytes) in files {
                let path = object_store::path::Path::from(format!("{}/{name}", dir.trim_matches('/')));
                store.put(&path, PutPayload::from(bytes.clone())).await?;
            }
            Ok::<_, object_store::Error>(())
        })?;
        Ok(self.url(&format!("{}/", dir.trim_matches('/'))))
    }

    /// Every object whose key starts with `prefix` (a plain string prefix: `out/part-`
    /// matches `out/part-00000`) as (key, bytes), sorted by key.
    pub fn download(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let store = self.store()?;
        let keys = self.keys(prefix)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            let mut out = Vec::new();
            for key in keys {
                let bytes = store.get(&object_store::path::Path::from(key.as_str())).await?.bytes().await?;
                out.push((key, bytes.to_vec()));
            }
            Ok::<_, object_store::Error>(out)
        })
        .map_err(Into::into)
    }

    /// Uploads every file of the local directory `local` to `dir/`; returns `s3://quern/dir/`.
    pub fn upload_dir(&self, local: &std::path::Path, dir: &str) -> Result<String> {
        let mut files = Vec::new();
        for e in std::fs::read_dir(local)? {
            let e = e?;
            files.push((e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path())?));
        }
        self.upload(dir, &files)
    }

    /// Downloads every object under `prefix` into the local directory `local` (keys relative
    /// to the prefix become file names; nested keys become subdirectories).
    pub fn download_dir(&self, prefix: &str, local: &std::path::Path) -> Result<()> {
        let prefix = format!("{}/", prefix.trim_matches('/'));
        for (key, bytes) in self.download(&prefix)? {
            let rel = key.strip_prefix(prefix.as_str()).unwrap_or(&key).trim_start_matches('/');
            let path = local.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, bytes)?;
        }
        std::fs::create_dir_all(local)?;
        Ok(())
    }

    /// Keys (relative to the bucket) that start with `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let store = self.store()?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        // The store lists whole path segments: list the prefix's directory, then filter.
        let prefix = prefix.trim_start_matches('/');
        let dir = object_store::path::Path::from(prefix.rsplit_once('/').map_or("", |(d, _)| d));
        rt.block_on(async {
            use futures::TryStreamExt;
            let metas: Vec<_> = store.list(Some(&dir)).try_collect().await?;
            let mut keys: Vec<String> =
                metas.into_iter().map(|m| m.location.to_string()).filter(|k| k.starts_with(prefix)).collect();
            keys.sort();
            Ok::<_, object_store::Error>(keys)
        })
        .map_err(Into::into)
    }

    /// Multipart uploads started and neither completed nor aborted (s3s-fs keeps one
    /// `.upload-ID.json` per upload in its root).
    pub fn pending_uploads(&self) -> usize {
        let Some(root) = &self.root else {
            // moto lists them (ListMultipartUploads), unsigned.
            let port = self.endpoint.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
            let listing = http(port, &format!("GET /{}?uploads HTTP/1.1", self.bucket)).expect("moto lists uploads");
            return listing.matches("<UploadId>").count();
        };
        std::fs::read_dir(root.path())
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.starts_with(".upload-") && n.ends_with(".json")
                    })
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request line to 127.0.0.1:`port` with an empty body; the response if it
/// was a 2xx.
fn http(port: u16, request_line: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(conn, "{request_line}\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    if !response.starts_with("HTTP/1.1 2") && !response.starts_with("HTTP/1.0 2") {
        bail!("{request_line}: {}", response.lines().next().unwrap_or_default());
    }
    Ok(response)
}

/// A test server's binary on the `PATH`, in Cargo's bin directory or in pip's user one.
fn binary(name: &str) -> Option<PathBuf> {
    let name = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(&name)).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let home = std::env::var_os("HOME").map(PathBuf::from);
    on_path
        .into_iter()
        .chain(cargo_home.map(|h| h.join("bin").join(&name)))
        .chain(home.map(|h| h.join(".local/bin").join(&name)))
        .find(|p| p.is_file())
}
