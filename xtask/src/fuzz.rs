//! `cargo xtask fuzz`: the cargo-fuzz targets of `ban-agent/fuzz`, each for a bounded time
//! over its committed seeds (`ban-agent/fuzz/seeds/TARGET`). `cargo xtask test` builds every
//! target in one cargo run (the agent and its eBPF object once), then runs each for 20 s;
//! longer runs are `cargo xtask fuzz --seconds 3600 [TARGET]`.
//!
//! What a run finds goes to `target/fuzz-corpus/TARGET` (kept between runs, never
//! committed), not to the seeds: add an input to the seeds by hand when it is worth keeping. A crash leaves its input under
//! `ban-agent/fuzz/artifacts/TARGET/` and fails the command.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{Workspace, run, setup};

/// Every target, in the order they run.
pub const TARGETS: [&str; 6] = [
    "filter_line",
    "container_log",
    "fail2ban_filter",
    "config_toml",
    "control_request",
    "state_file",
];

/// libFuzzer's limits: an input over 64 KiB is not tried, 1 GiB of memory or 10 s on one
/// input is a failure ("no unbounded memory"); new functions are not listed as found.
const LIBFUZZER_LIMITS: [&str; 4] = [
    "-max_len=65536",
    "-rss_limit_mb=1024",
    "-timeout=10",
    "-print_funcs=0",
];

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// One target (filter_line, container_log, fail2ban_filter, config_toml,
    /// control_request, state_file);
    /// all when omitted.
    target: Option<String>,
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    seconds: u32,
}

impl FuzzArgs {
    pub fn every_target(seconds: u32) -> Self {
        Self {
            target: None,
            seconds,
        }
    }
}

pub fn fuzz(ws: &Workspace, args: &FuzzArgs) -> anyhow::Result<()> {
    for target in targets(args)? {
        eprintln!("fuzz: {target} for {} s", args.seconds);
        run(&mut command(ws, target, args.seconds)?)?;
    }
    Ok(())
}

/// Every target of `args`, libFuzzer's output in `target/fuzz-logs/TARGET.log` (its last
/// lines shown when the target fails); one verdict per target.
pub fn fuzz_quietly(ws: &Workspace, args: &FuzzArgs) -> anyhow::Result<Vec<String>> {
    let logs = ws.root.join("target/fuzz-logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let mut verdicts = Vec::new();
    let mut failed = Vec::new();
    // One build for every target: each `cargo fuzz run` then only runs.
    let log = logs.join("build.log");
    let file =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let built = cargo_fuzz(ws)
        .args(["build", "--release", "--debug-assertions"])
        .stdout(file.try_clone().context("cannot share the log")?)
        .stderr(file)
        .status()
        .context("cannot start cargo fuzz build")?;
    if !built.success() {
        show_tail(&std::fs::read_to_string(&log).unwrap_or_default());
        bail!(
            "cargo fuzz build failed ({built}); its log: {}",
            log.display()
        );
    }
    for target in targets(args)? {
        let log = logs.join(format!("{target}.log"));
        let file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let status = command(ws, target, args.seconds)?
            .stdout(file.try_clone().context("cannot share the log")?)
            .stderr(file)
            .status()
            .with_context(|| format!("cannot start cargo fuzz for {target}"))?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let runs = text.lines().rev().find_map(|line| {
            line.strip_prefix("Done ")?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        });
        if status.success() {
            let runs = runs.map_or_else(|| "?".to_owned(), |n| n.to_string());
            println!("fuzz: {target} ok, {runs} runs in {} s", args.seconds);
            verdicts.push(format!("{target} ok ({runs} runs)"));
        } else {
            show_tail(&text);
            eprintln!(
                "fuzz: {target} FAILED ({status}); its log: {}",
                log.display()
            );
            verdicts.push(format!("{target} FAILED"));
            failed.push(target);
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzzing found a problem in {failed:?}: the input is under ban-agent/fuzz/artifacts/"
        );
    }
    Ok(verdicts)
}

/// The last 40 lines of a log, indented, on standard error.
fn show_tail(text: &str) {
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    for line in tail.into_iter().rev() {
        eprintln!("  {line}");
    }
}

fn targets(args: &FuzzArgs) -> anyhow::Result<Vec<&str>> {
    Ok(match &args.target {
        Some(target) if TARGETS.contains(&target.as_str()) => vec![target.as_str()],
        Some(target) => bail!("no fuzz target {target:?}: the targets are {TARGETS:?}"),
        None => TARGETS.to_vec(),
    })
}

/// `cargo fuzz run` of one target for `seconds` over its seeds, new inputs kept in
/// `target/fuzz-corpus/TARGET`.
fn command(ws: &Workspace, target: &str, seconds: u32) -> anyhow::Result<Command> {
    let fuzz_dir = ws.root.join("ban-agent/fuzz");
    let corpus = ws.root.join("target/fuzz-corpus").join(target);
    std::fs::create_dir_all(&corpus)
        .with_context(|| format!("cannot create {}", corpus.display()))?;
    let seeds = fuzz_dir.join("seeds").join(target);
    let mut cmd = cargo_fuzz(ws);
    // Debug assertions on: an arithmetic overflow is a crash, as it is in tests.
    cmd.args(["run", "--release", "--debug-assertions", target])
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(LIBFUZZER_LIMITS);
    Ok(cmd)
}

/// cargo-fuzz under the eBPF nightly (it needs `-Z` flags), run from `ban-agent/`.
fn cargo_fuzz(ws: &Workspace) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", &ws.nightly])
        .arg(setup::cargo_fuzz(ws))
        .arg("fuzz")
        .current_dir(ws.root.join("ban-agent"))
        .env("BAN_AGENT_TOOLS", &ws.tools)
        .env("RUSTUP_AUTO_INSTALL", "0");
    cmd
}
