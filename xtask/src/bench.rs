//! `cargo xtask bench`: runs the benchmarks of `ban-agent/benches/` with what each needs
//! (root for XDP, fail2ban-regex as the detection peer) and writes their CSV files under
//! `docs/benchmarks/`.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{Workspace, is_root, run};

/// `cargo bench --bench NAME`. A benchmark that loads BPF programs, builds namespaces or
/// writes firewall rules says it needs root before anything is compiled.
fn cargo_bench(ws: &Workspace, name: &str, needs_root: bool) -> anyhow::Result<Command> {
    if needs_root && !is_root() {
        bail!(
            "the {name} benchmark loads BPF programs, builds namespaces or writes firewall \
             rules: run it as root"
        );
    }
    Ok(ws.cargo(&["bench", "--package", "ban-agent", "--bench", name]))
}

/// Nanoseconds per packet through BPF_PROG_TEST_RUN, 0 to 1M bans (root).
pub fn xdp(ws: &Workspace) -> anyhow::Result<()> {
    run(&mut cargo_bench(ws, "xdp", true)?)
}

/// Log throughput, CPU and peak memory: the pipeline, test-filter and the daemon (when
/// root), against fail2ban-regex and fail2ban-rs's dry run.
pub fn throughput(ws: &Workspace) -> anyhow::Result<()> {
    let mut cmd = cargo_bench(ws, "throughput", false)?;
    with_fail2ban_regex(ws, &mut cmd, "throughput");
    match fail2ban_rs(ws) {
        Ok(binary) => {
            cmd.env("BAN_AGENT_FAIL2BAN_RS", binary);
        }
        Err(error) => eprintln!("bench throughput: no fail2ban-rs to compare with: {error:#}"),
    }
    run(&mut cmd)
}

/// Points benchmark `name`'s `cmd` at fail2ban-regex, the detection peer; without it, the
/// benchmark measures ban-agent alone.
fn with_fail2ban_regex(ws: &Workspace, cmd: &mut Command, name: &str) {
    match fail2ban(ws) {
        Ok(peer) => {
            cmd.env("BAN_AGENT_FAIL2BAN_REGEX", &peer.regex)
                .env("BAN_AGENT_FAIL2BAN_PYTHONPATH", &peer.pythonpath);
        }
        Err(error) => eprintln!("bench {name}: no fail2ban-regex to compare with: {error:#}"),
    }
}

/// Each built-in filter on a log of its format, against fail2ban-regex with the
/// equivalent filter.
pub fn filters(ws: &Workspace) -> anyhow::Result<()> {
    let mut cmd = cargo_bench(ws, "filters", false)?;
    with_fail2ban_regex(ws, &mut cmd, "filters");
    run(&mut cmd)
}

/// The version of fail2ban-rs measured (the benchmark checks its `--version`).
const FAIL2BAN_RS_VERSION: &str = "1.5.4";

/// fail2ban-rs, the Rust rewrite of fail2ban on crates.io, built once into the tools
/// folder with `cargo install --locked` at a pinned version: a benchmark peer, never run
/// as a service.
fn fail2ban_rs(ws: &Workspace) -> anyhow::Result<PathBuf> {
    let root = ws.tools.join(format!("fail2ban-rs-{FAIL2BAN_RS_VERSION}"));
    let binary = root.join("bin/fail2ban-rs");
    if !binary.is_file() {
        let root_arg = root.to_string_lossy();
        run(&mut ws.cargo(&[
            "install",
            "--locked",
            "--version",
            FAIL2BAN_RS_VERSION,
            "--root",
            &root_arg,
            "fail2ban-rs",
        ]))?;
    }
    Ok(binary)
}

/// Detection latency, ban-agent against fail2ban's server (root).
pub fn latency(ws: &Workspace) -> anyhow::Result<()> {
    let mut cmd = cargo_bench(ws, "latency", true)?;
    let peer = fail2ban(ws)?;
    run(cmd
        .env("BAN_AGENT_FAIL2BAN_SERVER", &peer.server)
        .env("BAN_AGENT_FAIL2BAN_PYTHONPATH", &peer.pythonpath))
}

/// Installing and restoring 1k to 100k bans, ban-agent vs. fail2ban's iptables and
/// nftables actions (root).
pub fn bans(ws: &Workspace) -> anyhow::Result<()> {
    run(&mut cargo_bench(ws, "bans", true)?)
}

/// The packet path under a flood, XDP vs. iptables, nftables and ipset, 0 to 1M bans
/// (root).
pub fn packets(ws: &Workspace) -> anyhow::Result<()> {
    run(&mut cargo_bench(ws, "packets", true)?)
}

/// The daemon's resident memory idle, tracking 100k and 1M addresses, holding 1M bans
/// (root).
pub fn memory(ws: &Workspace) -> anyhow::Result<()> {
    run(&mut cargo_bench(ws, "memory", true)?)
}

/// Several agents sharing one redis-server (started by the benchmark): propagation, the
/// engine's load under a flood, catch-up (root).
pub fn fleet(ws: &Workspace) -> anyhow::Result<()> {
    run(&mut cargo_bench(ws, "fleet", true)?)
}

/// CrowdSec decision -> kernel, ban-agent's bouncer mode beside Debian's firewall bouncer,
/// on CrowdSec's Local API (both unpacked from Debian's packages, see [`crowdsec`]).
pub fn crowdsec_bench(ws: &Workspace) -> anyhow::Result<()> {
    let root = crowdsec(ws)?;
    let mut cmd = cargo_bench(ws, "crowdsec", true)?;
    cmd.env("BAN_AGENT_CROWDSEC_ROOT", root);
    run(&mut cmd)
}

/// The filter alone (criterion); the medians go to `docs/benchmarks/matcher.csv`.
pub fn matcher(ws: &Workspace) -> anyhow::Result<()> {
    run(&mut cargo_bench(ws, "matcher", false)?)?;
    let criterion = ws.root.join("target/criterion");
    let mut csv = String::from("group,benchmark,median_ns\n");
    let mut table = String::from("| group | benchmark | median ns |\n|---|---|---:|\n");
    for (group, bench) in [
        ("fastapi-auth", "failure"),
        ("fastapi-auth", "failure_ipv6"),
        ("fastapi-auth", "success"),
        ("fastapi-auth", "other_logger"),
        ("unmatched_line", "1_failregexes"),
        ("unmatched_line", "50_failregexes"),
        ("near_miss_line", "1_failregexes"),
        ("near_miss_line", "50_failregexes"),
    ] {
        let path = criterion.join(group).join(bench).join("new/estimates.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let median = json["median"]["point_estimate"]
            .as_f64()
            .with_context(|| format!("{}: no median.point_estimate", path.display()))?;
        let _ = writeln!(csv, "{group},{bench},{median:.1}");
        let _ = writeln!(table, "| {group} | {bench} | {median:.1} |");
    }
    for (name, text) in [("matcher.csv", csv), ("matcher.md", table)] {
        let out = ws.root.join("docs/benchmarks").join(name);
        std::fs::write(&out, &text).with_context(|| format!("cannot write {}", out.display()))?;
    }
    println!("wrote docs/benchmarks/matcher.csv and matcher.md");
    Ok(())
}

/// fail2ban's scripts and the PYTHONPATH they need.
pub(crate) struct Fail2ban {
    /// Where the packages are unpacked (`usr/bin`, `usr/lib/python3/dist-packages`).
    pub(crate) root: PathBuf,
    pub(crate) regex: PathBuf,
    server: PathBuf,
    pub(crate) pythonpath: PathBuf,
}

/// fail2ban (and python3-pyinotify, for its inotify backend) from the distribution's
/// packages, unpacked into the tools folder, not installed: no fail2ban service starts on
/// the machine (it is only a benchmark peer), and every run uses the same version.
pub(crate) fn fail2ban(ws: &Workspace) -> anyhow::Result<Fail2ban> {
    let root = ws.tools.join("fail2ban");
    let pythonpath = root.join("usr/lib/python3/dist-packages");
    for (package, proof) in [
        ("fail2ban", root.join("usr/bin/fail2ban-server")),
        ("python3-pyinotify", pythonpath.join("pyinotify.py")),
    ] {
        if !proof.is_file() {
            unpack(ws, package, &root)?;
        }
    }
    Ok(Fail2ban {
        regex: root.join("usr/bin/fail2ban-regex"),
        server: root.join("usr/bin/fail2ban-server"),
        pythonpath,
        root,
    })
}

/// CrowdSec's Local API, `cscli` and its firewall bouncer from the distribution's
/// packages, unpacked into the tools folder, not installed: the `crowdsec` package's
/// setup registers with CrowdSec's central API, which these machines cannot reach, and
/// its services must not start on the machine (the tests and the benchmark start their
/// own, each in a namespace, with a configuration of its own). Returns the root.
pub(crate) fn crowdsec(ws: &Workspace) -> anyhow::Result<PathBuf> {
    let root = ws.tools.join("crowdsec");
    for (package, proof) in [
        ("crowdsec", root.join("usr/bin/cscli")),
        (
            "crowdsec-firewall-bouncer",
            root.join("usr/bin/crowdsec-firewall-bouncer"),
        ),
    ] {
        if !proof.is_file() {
            unpack(ws, package, &root)?;
        }
    }
    Ok(root)
}

/// `apt-get download PACKAGE` and `dpkg -x` it into `root`.
fn unpack(ws: &Workspace, package: &str, root: &Path) -> anyhow::Result<()> {
    let download = ws.tools.join(format!("{package}-deb"));
    std::fs::create_dir_all(&download)
        .with_context(|| format!("cannot create {}", download.display()))?;
    let fetch = || {
        Command::new("apt-get")
            .args(["download", "-q", package])
            .current_dir(&download)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !fetch() {
        // The package lists may be missing on a fresh machine.
        run(Command::new("apt-get").args(["update", "-q"]))?;
        if !fetch() {
            bail!(
                "apt-get download {package} failed in {}",
                download.display()
            );
        }
    }
    let deb = std::fs::read_dir(&download)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("no .deb in {}", download.display()))?;
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(root))
}
