//! Helpers of the privileged tests: the root check, test-made network namespaces joined by
//! veth pairs, a private pin directory, and a packet builder. Everything a test creates
//! is removed on drop, also when the test fails.

pub mod agent;
pub mod crowdsec;
pub mod net;
pub mod packet;
pub mod redis;
pub mod report;
pub mod xdp;

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{Mutex, MutexGuard},
};

/// Privileged tests of one binary run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// `Some(guard)` when the test may run. Not root: the test is skipped with a message, or
/// fails when `BAN_AGENT_REQUIRE_PRIVILEGED=1` (as in CI).
pub fn privileged(test: &str) -> Option<MutexGuard<'static, ()>> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        let required = std::env::var("BAN_AGENT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{test}: needs root, and BAN_AGENT_REQUIRE_PRIVILEGED=1 forbids skipping"
        );
        eprintln!("SKIPPED {test}: needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)");
        return None;
    }
    Some(
        SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    )
}

/// Skips `test` for `why` (a peer tool missing), with a message; fails instead when
/// `BAN_AGENT_REQUIRE_PRIVILEGED=1` (as in CI), where every peer is installed.
#[allow(dead_code, reason = "the benchmarks include this file")]
pub fn skip(test: &str, why: &str) {
    let required = std::env::var("BAN_AGENT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: {why}, and BAN_AGENT_REQUIRE_PRIVILEGED=1 forbids skipping"
    );
    eprintln!("SKIPPED {test}: {why}");
}

/// Creates the app's log at `path` if it is not there yet, as an app does at its start
/// (the agent refuses a jail whose log is missing); what it holds is kept.
pub fn app_log(path: &std::path::Path) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("create the log {}: {e}", path.display()));
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace made by the test, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!("ba-{tag}-{}", std::process::id());
        // A namespace left by a crashed earlier run of the same pid is replaced.
        let _stale = Command::new("ip").args(["netns", "del", &name]).output();
        sh(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// `ip -n NAME args...`
    pub fn ip(&self, args: &[&str]) -> Output {
        sh(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs inside this namespace (network only: bpffs stays visible,
    /// which `ip netns exec` would hide behind a fresh /sys).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Runs `f` on a thread that has entered this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let file = File::open(&path)
                        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
                    // SAFETY: a valid namespace fd; setns changes only this thread.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(
                        rc,
                        0,
                        "setns {}: {}",
                        path.display(),
                        std::io::Error::last_os_error()
                    );
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _gone = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair with one end in each namespace, up, with the given addresses (CIDR).
pub fn veth(a: &Netns, a_if: &str, a_addrs: &[&str], b: &Netns, b_if: &str, b_addrs: &[&str]) {
    sh(Command::new("ip").args([
        "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]));
    for (ns, ifname, addrs) in [(a, a_if, a_addrs), (b, b_if, b_addrs)] {
        for addr in addrs {
            ns.ip(&["addr", "add", addr, "dev", ifname, "nodad"]);
        }
        ns.ip(&["link", "set", ifname, "up"]);
    }
}

/// A pin directory of the test's own under /sys/fs/bpf; detached and removed on drop.
pub struct Pins {
    pub dir: PathBuf,
}

impl Pins {
    pub fn new(tag: &str) -> Self {
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/ban-agent-test-{tag}-{}",
            std::process::id()
        ));
        let _stale = ban_agent::datapath::detach(&dir);
        Self { dir }
    }

    pub fn arg(&self) -> String {
        self.dir.display().to_string()
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        if let Err(e) = ban_agent::datapath::detach(&self.dir) {
            eprintln!("cleanup of {}: {e}", self.dir.display());
        }
    }
}
