//! Separate hosts on one machine: Linux network namespaces joined by a bridge.
//!
//! [`Network::new`] makes a bridge in the root namespace holding the first address of a
//! small block of TEST-NET-1 (192.0.2.0/24, RFC 5737: documentation addresses that are never
//! routed), and [`Network::host`] a namespace per host, joined to the bridge by a veth pair,
//! with the next address, its own temporary and working directories. [`Host::spawn`] starts
//! a process inside a host (`ip netns exec NAME PROGRAM ...`) with only the environment it
//! is given; [`Network::kill_host`] kills every process of a host and deletes it, as when a
//! machine dies. Processes in the root namespace (a server bound to [`Network::gateway`],
//! the test itself as a client) reach every host over the bridge.
//!
//! Names carry the test process's id and a tag, so runs and tests never collide; blocks of
//! 16 addresses keep concurrent networks apart, and a block holding an address the machine
//! itself uses (its own network may be TEST-NET-1 too) is refused. Everything is deleted on
//! drop, after a panic too. It needs root (CAP_NET_ADMIN): [`Network::new`] fails saying so
//! otherwise.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::{eventually, wait_bounded};

/// How long one `ip` command may take.
const IP_TIMEOUT: Duration = Duration::from_secs(30);

/// A bridge and the hosts joined to it; torn down on drop.
pub struct Network {
    /// `q<pid><tag>`: the prefix of every interface name (at most 15 bytes in all).
    short: String,
    /// `quern-<pid>-<tag>`: the prefix of every namespace name.
    long: String,
    bridge: String,
    /// The block's first address (192.0.2.16·block).
    base: Ipv4Addr,
    hosts: Vec<HostRecord>,
    dir: TempDir,
}

struct HostRecord {
    ns: String,
    veth: String,
    alive: bool,
}

/// One host: a network namespace with an address, a temporary and a working directory.
#[derive(Clone, Debug)]
pub struct Host {
    /// Its short name (`coordinator`, `worker-0`).
    pub name: String,
    /// Its namespace's name.
    pub ns: String,
    /// Its address on the bridge.
    pub addr: Ipv4Addr,
    /// Its temporary directory (`TMPDIR` of its processes).
    pub tmp: PathBuf,
    /// Its processes' working directory.
    pub work: PathBuf,
}

/// A process started in a host, killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fails unless this process runs as root.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid(2) has no preconditions and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "this test needs root: it creates network namespaces, a bridge and veth pairs \
             (run it as root, e.g. `sudo -E cargo test -p quern-tests --test it hosts::`)"
        );
    }
    Ok(())
}

impl Network {
    /// A bridge with 192.0.2.(16·block + 1)/28; `tag` (one letter) tells apart the networks
    /// of one test process. Hosts get the following addresses of the block.
    pub fn new(tag: char, block: u8) -> Result<Network> {
        require_root()?;
        if block > 15 || !tag.is_ascii_alphanumeric() {
            bail!("a block is 0 to 15 and a tag one letter or digit");
        }
        let base = Ipv4Addr::new(192, 0, 2, 16 * block);
        if let Some(used) =
            in_use().into_iter().find(|a| a.octets()[..3] == base.octets()[..3] && a.octets()[3] & 0xf0 == 16 * block)
        {
            bail!(
                "{base}/28 holds {used}, which this machine already uses (an address, gateway or \
                 neighbour of its own): give the network another block"
            );
        }
        let pid = std::process::id();
        let short = format!("q{pid}{tag}");
        let net = Network {
            bridge: format!("{short}b"),
            long: format!("quern-{pid}-{tag}"),
            short,
            base,
            hosts: Vec::new(),
            dir: tempfile::Builder::new().prefix("quern-hosts-").tempdir()?,
        };
        // Left over by a run that was killed and whose pid came round again.
        let _ = ip(&["link", "del", &net.bridge]);
        // A fixed (locally administered) address: otherwise the bridge takes the lowest of its
        // ports' addresses, and killing the host that owns it changes the gateway's address
        // under every other host's ARP cache, cutting them off for a while.
        let mac = format!("02:71:{:02x}:{:02x}:{:02x}:{block:02x}", (pid >> 16) as u8, (pid >> 8) as u8, tag as u8);
        ip(&["link", "add", &net.bridge, "address", &mac, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}/28", net.gateway()), "dev", &net.bridge])?;
        ip(&["link", "set", &net.bridge, "up"])?;
        Ok(net)
    }

    /// The bridge's address in the root namespace: where a shared server listens.
    pub fn gateway(&self) -> Ipv4Addr {
        self.nth(1)
    }

    fn nth(&self, n: u8) -> Ipv4Addr {
        let [a, b, c, d] = self.base.octets();
        Ipv4Addr::new(a, b, c, d + n)
    }

    /// A directory of the test's own (in the root namespace), deleted on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Adds a host named `name` (letters, digits and `-`).
    pub fn host(&mut self, name: &str) -> Result<Host> {
        let i = self.hosts.len();
        if i >= 13 {
            bail!("a block holds 13 hosts");
        }
        let ns = format!("{}-{name}", self.long);
        let veth = format!("{}{i}", self.short);
        let addr = self.nth(2 + i as u8);
        let _ = ip(&["netns", "del", &ns]);
        ip(&["netns", "add", &ns])?;
        // Recorded at once, so that drop deletes whatever part of the host was made.
        self.hosts.push(HostRecord { ns: ns.clone(), veth: veth.clone(), alive: true });
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
        ip(&["link", "set", &veth, "master", &self.bridge, "up"])?;
        ip(&["-n", &ns, "addr", "add", &format!("{addr}/28"), "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        let (tmp, work) = (self.dir.path().join(name).join("tmp"), self.dir.path().join(name).join("work"));
        std::fs::create_dir_all(&tmp)?;
        std::fs::create_dir_all(&work)?;
        Ok(Host { name: name.to_string(), ns, addr, tmp, work })
    }

    /// Kills every process in `host` (SIGKILL) and deletes its namespace and link: the
    /// machine is gone.
    pub fn kill_host(&mut self, host: &Host) -> Result<()> {
        let Some(rec) = self.hosts.iter_mut().find(|r| r.ns == host.ns) else {
            bail!("no host {}", host.ns);
        };
        tear_down(rec)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for rec in &mut self.hosts {
            if let Err(e) = tear_down(rec) {
                eprintln!("cleaning up {}: {e:#}", rec.ns);
            }
        }
        if let Err(e) = ip(&["link", "del", &self.bridge]) {
            eprintln!("cleaning up {}: {e:#}", self.bridge);
        }
    }
}

/// Kills a host's processes, then deletes its namespace and its end of the veth pair (gone
/// with the namespace, unless a process held it). Idempotent.
fn tear_down(rec: &mut HostRecord) -> Result<()> {
    if !rec.alive {
        return Ok(());
    }
    let gone = eventually(Duration::from_secs(10), || {
        let pids = pids(&rec.ns);
        for pid in &pids {
            // SAFETY: kill(2) on a pid listed in our own namespace; no memory is involved.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        pids.is_empty()
    });
    rec.alive = false;
    let deleted = ip(&["netns", "del", &rec.ns]);
    let _ = ip(&["link", "del", &rec.veth]);
    if !gone {
        bail!("processes of {} survived SIGKILL for 10 s", rec.ns);
    }
    deleted
}

/// IPv4 addresses the root namespace already uses: its own, its routes' gateways and its
/// neighbours. A block holding one of them would cut the machine off from it (this
/// machine's own network may well be TEST-NET-1 too).
fn in_use() -> Vec<Ipv4Addr> {
    let mut found = Vec::new();
    for args in [&["-4", "-o", "addr", "show"][..], &["-4", "route", "show"], &["-4", "neigh", "show"]] {
        let text = ip_output(args);
        // Every word that is an address, with or without a prefix length.
        found.extend(text.split_whitespace().filter_map(|w| w.split('/').next()?.parse::<Ipv4Addr>().ok()));
    }
    found
}

/// The processes in namespace `ns` (none if it is gone).
fn pids(ns: &str) -> Vec<i32> {
    ip_output(&["netns", "pids", ns]).split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

/// What `ip ARGS` prints on stdout (bounded in time; empty if it fails).
fn ip_output(args: &[&str]) -> String {
    let out = wait_bounded(
        Command::new("ip")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ip"),
        IP_TIMEOUT,
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `ip ARGS`, failing with its error output.
fn ip(args: &[&str]) -> Result<()> {
    let child = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ip (iproute2)")?;
    let out = wait_bounded(child, IP_TIMEOUT);
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Host {
    /// `program ARGS` inside this host, with exactly `env` plus `PATH` and `TMPDIR` (this
    /// host's), in this host's working directory; stdout discarded, stderr to `stderr`.
    pub fn command(&self, program: &Path, args: &[&str], env: &[(String, String)]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TMPDIR", &self.tmp)
            .envs(env.iter().cloned())
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    /// Starts `program ARGS` inside this host (see [`command`](Self::command)), its stderr
    /// in the file `log`.
    pub fn spawn(&self, program: &Path, args: &[&str], env: &[(String, String)], log: &Path) -> Result<Proc> {
        let log = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = self.command(program, args, env).stderr(log).spawn().context("ip netns exec")?;
        Ok(Proc(child))
    }
}
