//! `cargo xtask test`: set up, then formatting, lints, every test, the package's check, the
//! container demo and 20 s of fuzzing per target, each phase under a heading with its duration, and one verdict at the end:
//! the fuzz targets', then `summary: N passed, N failed` for the tests.
//!
//! The build stays quiet: cargo replays the eBPF build's nested cargo lines (which aya-build
//! passes on as `warning: ban-agent@…: Compiling …`) on every invocation; those are dropped.
//! libFuzzer's output goes to `target/fuzz-logs/TARGET.log`, shown when a target fails.

use std::{
    io::{BufRead as _, BufReader, Read, Write as _},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::{Workspace, fuzz};

/// What `cargo test` reported, summed over its test binaries.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

pub fn test(ws: &Workspace) -> anyhow::Result<()> {
    let started = Instant::now();
    phase("setup", || crate::ensure_setup(ws))?;
    phase("format (cargo fmt --check)", || {
        quiet(&mut ws.cargo(&["fmt", "--all", "--check"])).map(drop)
    })?;
    phase("lints (cargo clippy -D warnings)", || {
        quiet(&mut ws.cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])).map(drop)
    })?;
    // fail2ban's client and server, which the fail2ban-client test runs beside ours.
    let fail2ban = phase("fail2ban, unpacked as a peer (not installed)", || {
        crate::bench::fail2ban(ws)
    })?;
    // CrowdSec's Local API and firewall bouncer, which the CrowdSec test runs.
    let crowdsec = phase("crowdsec, unpacked as a peer (not installed)", || {
        crate::bench::crowdsec(ws)
    })?;
    let mut counts = Counts::default();
    let tests = phase("tests (cargo test)", || {
        let mut cargo = ws.cargo(&["test"]);
        cargo.env("BAN_AGENT_FAIL2BAN_ROOT", &fail2ban.root);
        cargo.env("BAN_AGENT_CROWDSEC_ROOT", &crowdsec);
        let (ok, output) = quiet(&mut cargo)?;
        counts = count(&output);
        if !ok {
            bail!("some tests failed");
        }
        Ok(())
    });
    let tests = tests.and_then(|()| {
        phase(
            "conformance (fail2ban's own filter tests, targets of issue 17)",
            || crate::conformance::conformance(ws, &crate::conformance::ConformanceArgs::check(ws)),
        )
    });
    let tests = tests.and_then(|()| {
        phase("package (cargo xtask dist --image --check)", || {
            let built = crate::dist::dist(ws)?;
            for line in crate::dist::check(ws, &built)? {
                println!("package: {line}");
            }
            if !crate::is_root() {
                return skip_privileged("the agent's image (mmdebstrap and buildah need root)");
            }
            crate::image::image(ws, &built)?;
            for line in crate::image::check(ws, &built)? {
                println!("image: {line}");
            }
            Ok(())
        })
    });
    let tests = tests.and_then(|()| {
        phase(
            "container demo (cargo xtask demo --container: the app under dockerd)",
            || container_demo(ws),
        )
    });
    let tests = tests.and_then(|()| {
        phase(
            "chaos (cargo xtask chaos --minutes 2 --seed 1: one host and a fleet of three, faults under load)",
            || chaos(ws),
        )
    });
    let fuzzed = match tests {
        Ok(()) => phase("fuzz (20 s per target)", || {
            fuzz::fuzz_quietly(ws, &fuzz::FuzzArgs::every_target(20))
        }),
        Err(_) => Ok(Vec::new()),
    };
    println!("\n== done in {}", minutes(started));
    if let Ok(verdicts) = &fuzzed
        && !verdicts.is_empty()
    {
        println!("fuzz: {}", verdicts.join("; "));
    }
    println!(
        "summary: {} passed, {} failed, {} skipped",
        counts.passed, counts.failed, counts.ignored
    );
    tests?;
    fuzzed.map(drop)
}

/// The short chaos run: faults under load on one host and on a fleet of three, every
/// invariant checked. It needs root; without root it is skipped, unless
/// `BAN_AGENT_REQUIRE_PRIVILEGED=1`.
fn chaos(ws: &Workspace) -> anyhow::Result<()> {
    if !crate::is_root() {
        return skip_privileged("the chaos run (namespaces, mounts and BPF need root)");
    }
    crate::chaos::chaos(ws, &crate::chaos::ChaosArgs::ci())
}

/// The demo with a real container runtime, as a test: it fails unless the attacker of the
/// containerized app is banned from the container's log. It needs root (namespaces, dockerd);
/// without root it is skipped, unless `BAN_AGENT_REQUIRE_PRIVILEGED=1`.
fn container_demo(ws: &Workspace) -> anyhow::Result<()> {
    if !crate::is_root() {
        return skip_privileged("the container demo (network namespaces and dockerd need root)");
    }
    crate::demo::demo(ws, &crate::demo::DemoArgs { container: true })
}

/// Says that `what` is skipped without root; an error instead with
/// `BAN_AGENT_REQUIRE_PRIVILEGED=1`, as for the privileged tests.
fn skip_privileged(what: &str) -> anyhow::Result<()> {
    if std::env::var_os("BAN_AGENT_REQUIRE_PRIVILEGED").is_some_and(|value| value == "1") {
        bail!("{what}: not root, and BAN_AGENT_REQUIRE_PRIVILEGED=1 forbids skipping it");
    }
    println!("skipped: {what}");
    Ok(())
}

/// Runs `work` under a heading, and says how long it took.
fn phase<T>(name: &str, work: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    println!("\n== {name}");
    let _flushed = std::io::stdout().flush();
    let started = Instant::now();
    let result = work();
    let verdict = if result.is_ok() { "ok" } else { "FAILED" };
    println!("== {name}: {verdict} in {}", minutes(started));
    result
}

fn minutes(started: Instant) -> String {
    let seconds = started.elapsed().as_secs();
    format!("{}m {:02}s", seconds / 60, seconds % 60)
}

/// Runs `cmd`, passing its output on without the replayed build lines; whether it
/// succeeded, and its standard output.
pub fn quiet(cmd: &mut Command) -> anyhow::Result<(bool, String)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let (out, ()) = std::thread::scope(|scope| {
        let errors = scope.spawn(|| forward(stderr, false));
        let out = forward(stdout, true);
        (out, errors.join().map(drop).unwrap_or(()))
    });
    let status = child.wait().context("cannot wait for cargo")?;
    Ok((status.success(), out))
}

/// Copies `from` line by line to stdout or stderr, dropping noise; returns what it kept
/// when `keep` asks.
fn forward(from: impl Read, to_stdout: bool) -> String {
    let mut kept = String::new();
    for line in BufReader::new(from).lines() {
        let Ok(line) = line else { break };
        if is_noise(&line) {
            continue;
        }
        if to_stdout {
            println!("{line}");
            kept.push_str(&line);
            kept.push('\n');
        } else {
            eprintln!("{line}");
        }
    }
    kept
}

/// A line cargo replays from the eBPF build script: the nested cargo's progress.
fn is_noise(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("warning: ban-agent@") else {
        return false;
    };
    let Some((_, message)) = rest.split_once(':') else {
        return false;
    };
    let message = message.trim_start();
    message.is_empty()
        || [
            "Compiling",
            "Finished",
            "Downloaded",
            "Downloading",
            "Updating",
            "Locking",
            "Adding",
            "Fresh",
            "Blocking",
            "Checking",
        ]
        .iter()
        .any(|word| message.starts_with(word))
}

/// The sum of cargo test's `test result:` lines.
fn count(output: &str) -> Counts {
    let mut counts = Counts::default();
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            continue;
        };
        let number = |word: &str| {
            rest.split(';')
                .find_map(|part| {
                    part.trim()
                        .strip_suffix(word)?
                        .trim()
                        .rsplit(' ')
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0)
        };
        counts.passed += number(" passed");
        counts.failed += number(" failed");
        counts.ignored += number(" ignored");
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replayed_build_lines_are_noise_and_real_warnings_are_not() {
        assert!(is_noise(
            "warning: ban-agent@0.1.0:    Compiling ban-ebpf v0.1.0 (/x)"
        ));
        assert!(is_noise(
            "warning: ban-agent@0.1.0:     Finished `release` profile"
        ));
        assert!(is_noise("warning: ban-agent@0.1.0: "));
        assert!(!is_noise("warning: ban-agent@0.1.0: unused variable `x`"));
        assert!(!is_noise("warning: unused import"));
        assert!(!is_noise("   Compiling ban-agent v0.1.0"));
    }

    #[test]
    fn test_results_are_summed() {
        let output = "running 3 tests\n\
            test result: ok. 111 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 6.53s\n\
            test result: FAILED. 2 passed; 1 failed; 3 ignored; 0 measured; 0 filtered out; finished in 1s\n";
        assert_eq!(
            count(output),
            Counts {
                passed: 113,
                failed: 1,
                ignored: 3
            }
        );
    }
}
