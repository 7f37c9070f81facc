//! `cargo xtask bench`: runs the benchmarks of `ban-agent/benches/` with what each needs
//! (root for XDP, fail2ban-regex as the detection peer) and writes their CSV files under
//! `docs/benchmarks/`.

use std::{fmt::Write as _, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::{Workspace, is_root, run};

/// Nanoseconds per packet through BPF_PROG_TEST_RUN, 0 to 1M bans (root).
pub fn xdp(ws: &Workspace) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the xdp benchmark loads XDP programs: run as root");
    }
    run(&mut ws.cargo(&["bench", "--package", "ban-agent", "--bench", "xdp"]))
}

/// Lines per second and peak memory of detection, against fail2ban-regex.
pub fn detect(ws: &Workspace) -> anyhow::Result<()> {
    let mut cmd = ws.cargo(&["bench", "--package", "ban-agent", "--bench", "detect"]);
    match fail2ban(ws) {
        Ok(peer) => {
            cmd.env("BAN_AGENT_FAIL2BAN_REGEX", &peer.script);
            if let Some(path) = &peer.pythonpath {
                cmd.env("BAN_AGENT_FAIL2BAN_PYTHONPATH", path);
            }
        }
        Err(error) => eprintln!("bench detect: no fail2ban-regex to compare with: {error:#}"),
    }
    run(&mut cmd)
}

/// The filter alone (criterion); the medians go to `docs/benchmarks/matcher.csv`.
pub fn matcher(ws: &Workspace) -> anyhow::Result<()> {
    run(&mut ws.cargo(&["bench", "--package", "ban-agent", "--bench", "matcher"]))?;
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
    let out = ws.root.join("docs/benchmarks/matcher.csv");
    std::fs::write(&out, csv).with_context(|| format!("cannot write {}", out.display()))?;
    println!("{table}\nwrote {}", out.display());
    Ok(())
}

/// How to run fail2ban-regex.
struct Fail2ban {
    script: PathBuf,
    pythonpath: Option<PathBuf>,
}

/// fail2ban-regex from the system when installed, else from the Debian package unpacked
/// into the tools folder: unpacked, not installed, so that no fail2ban service starts on
/// the machine (it is only a benchmark peer).
fn fail2ban(ws: &Workspace) -> anyhow::Result<Fail2ban> {
    let system = PathBuf::from("/usr/bin/fail2ban-regex");
    if system.is_file() {
        return Ok(Fail2ban {
            script: system,
            pythonpath: None,
        });
    }
    let root = ws.tools.join("fail2ban");
    let script = root.join("usr/bin/fail2ban-regex");
    let pythonpath = root.join("usr/lib/python3/dist-packages");
    if !script.is_file() {
        let download = ws.tools.join("fail2ban-deb");
        std::fs::create_dir_all(&download)
            .with_context(|| format!("cannot create {}", download.display()))?;
        let fetch = || {
            Command::new("apt-get")
                .args(["download", "-q", "fail2ban"])
                .current_dir(&download)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !fetch() {
            // The package lists may be missing on a fresh machine.
            run(Command::new("apt-get").args(["update", "-q"]))?;
            if !fetch() {
                bail!("apt-get download fail2ban failed in {}", download.display());
            }
        }
        let deb = std::fs::read_dir(&download)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .with_context(|| format!("no .deb in {}", download.display()))?;
        run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))?;
    }
    Ok(Fail2ban {
        script,
        pythonpath: Some(pythonpath),
    })
}
