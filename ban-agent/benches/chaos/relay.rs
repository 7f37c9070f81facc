//! A fleet host's way to the engine, with faults: delay, loss and a partition.
//!
//! netem would make all three, but it is not in every kernel (not in this project's CI
//! kernel: `CONFIG_NET_SCH_NETEM` is unset, and so is `sch_fq`, which would honour
//! delivery times set by a BPF program). So:
//! - **loss and partition** are packets dropped by nftables on the host's link, in both
//!   directions: a random 10% (`numgen random`), or all of them;
//! - **delay** is a relay in the host's namespace: its connections to the engine's ports
//!   are redirected (nftables `redirect`) to a relay on loopback, which forwards each
//!   chunk it reads after 50 to 150 ms when the delay is on (never out of order), at once
//!   when it is off. The engine sees the relay's connections; a reset, an end or a
//!   timeout on either side ends both.
//!
//! Written here rather than taken from a crate: a delaying TCP relay that runs inside a
//! namespace, switched on and off by the run, is a few dozen lines; the proxies on
//! crates.io are servers of their own to configure.

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{common::Netns, shared::Rng};

/// The relay listens on each engine port plus this, on loopback.
const OFFSET: u16 = 10_000;

/// The faults of one host's way to the engine.
pub struct Link {
    /// The host's namespace (its owner deletes it).
    ns: PathBuf,
    dev: String,
    delay: Arc<AtomicBool>,
}

impl Link {
    /// Puts the relay and an nftables table `chaos` in `ns`: connections to `service` on
    /// `ports` go through the relay to `upstream` (another address of the engine, which
    /// the redirect leaves alone) out of `dev`.
    pub fn new(
        ns: &Netns,
        dev: &str,
        service: IpAddr,
        upstream: IpAddr,
        ports: &[u16],
        seed: u64,
    ) -> anyhow::Result<Self> {
        let delay = Arc::new(AtomicBool::new(false));
        let mut rules = String::from(
            "table ip chaos {\n chain relay { type nat hook output priority -100; }\n \
             chain sent { type filter hook output priority 0; }\n \
             chain received { type filter hook input priority 0; }\n}\n",
        );
        for port in ports {
            let listener = ns
                .run(|| TcpListener::bind(("127.0.0.1", port + OFFSET)))
                .with_context(|| format!("the relay's port {}", port + OFFSET))?;
            let (delay, target) = (Arc::clone(&delay), SocketAddr::new(upstream, *port));
            let rng = Rng(seed ^ u64::from(*port));
            spawn_in(ns.path(), move || accept(&listener, target, &delay, rng));
            rules.push_str(&format!(
                "add rule ip chaos relay ip daddr {service} tcp dport {port} redirect to :{}\n",
                port + OFFSET
            ));
        }
        let link = Self {
            ns: ns.path(),
            dev: dev.to_owned(),
            delay,
        };
        link.nft(&rules)?;
        Ok(link)
    }

    /// Delays what goes either way by 50 to 150 ms from now on, or no more.
    pub fn delay(&self, on: bool) {
        self.delay.store(on, Ordering::Relaxed);
    }

    /// Drops `percent` of the packets on the link either way (100: a partition); 0 none.
    pub fn loss(&self, percent: u8) -> anyhow::Result<()> {
        let mut rules = String::from("flush chain ip chaos sent\nflush chain ip chaos received\n");
        if percent > 0 {
            let drop = if percent >= 100 {
                "drop".to_owned()
            } else {
                format!("numgen random mod 100 < {percent} drop")
            };
            rules.push_str(&format!(
                "add rule ip chaos sent oifname {:?} {drop}\nadd rule ip chaos received iifname {:?} {drop}\n",
                self.dev, self.dev
            ));
        }
        self.nft(&rules)
    }

    fn nft(&self, rules: &str) -> anyhow::Result<()> {
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", self.ns.display()))
            .args(["--", "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("run nft (cargo xtask setup installs nftables)")?;
        child
            .stdin
            .take()
            .context("nft's input")?
            .write_all(rules.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "nft in {}: {}\n{rules}",
                self.ns.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

/// Runs `f` on a new thread in the namespace at `path` (threads it starts stay there).
fn spawn_in(path: PathBuf, f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        let entered = std::fs::File::open(&path).map(|file| {
            // SAFETY: a valid namespace descriptor; setns changes this thread only.
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }
        });
        if matches!(entered, Ok(0)) {
            f();
        } else {
            eprintln!("relay: cannot enter {}", path.display());
        }
    });
}

/// Relays every connection `listener` takes to `target`, until the process ends.
fn accept(listener: &TcpListener, target: SocketAddr, delay: &Arc<AtomicBool>, mut rng: Rng) {
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
            continue;
        };
        let pairs = [
            (client.try_clone(), upstream.try_clone()),
            (upstream.try_clone(), client.try_clone()),
        ];
        for (from, to) in pairs {
            let (Ok(from), Ok(to)) = (from, to) else {
                continue;
            };
            let (delay, rng) = (Arc::clone(delay), Rng(rng.next()));
            std::thread::spawn(move || pump(from, to, &delay, rng));
        }
    }
}

/// Copies `from` to `to`, each chunk after 50 to 150 ms while `delay` is on (in order);
/// when `from` ends or fails, both connections are shut down.
fn pump(mut from: TcpStream, to: TcpStream, delay: &AtomicBool, mut rng: Rng) {
    let _ = to.set_nodelay(true);
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = {
        let Ok(mut to) = to.try_clone() else { return };
        std::thread::spawn(move || {
            for (at, bytes) in rx {
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                if to.write_all(&bytes).is_err() {
                    break;
                }
            }
        })
    };
    let mut last = Instant::now();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let at = if delay.load(Ordering::Relaxed) {
            Instant::now() + rng.millis(50, 150)
        } else {
            Instant::now()
        };
        last = last.max(at);
        if tx.send((last, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.join();
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
