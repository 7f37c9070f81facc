//! Developer tasks that a build script should not do: set the machine up, build, test,
//! benchmark. Every command runs `setup` first when something is missing.

mod bench;
mod chaos;
mod conformance;
mod demo;
mod dist;
mod example;
mod fuzz;
mod image;
mod install;
mod report;
mod rootfs;
mod run;
mod setup;
mod test;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "ban-agent's developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the eBPF nightly, bpf-linker and the system packages the tests use.
    Setup,
    /// The Debian package and a tarball of the same files, in target/dist/; with --check,
    /// install it into a temporary root, run it, remove and purge it.
    Dist {
        #[arg(long)]
        check: bool,
        /// Also the agent's OCI image, from the package (mmdebstrap, buildah; root):
        /// target/dist/*.oci.tar and *.docker.tar, tagged ban-agent:VERSION.
        #[arg(long)]
        image: bool,
    },
    /// Build the agent (with its embedded XDP program) in release mode.
    Build,
    /// Build and run the agent (root). With no configuration: the example app and its
    /// configuration, on the interface of the default route.
    Run(run::RunArgs),
    /// A FastAPI app brute-forced and the attacker banned, narrated, in namespaces (root).
    Demo(demo::DemoArgs),
    /// Check formatting and lints, run every test (privileged tests need root), then fuzz
    /// each target for a minute.
    Test,
    /// Fuzz the log filter, configuration, control protocol and state file (cargo-fuzz),
    /// each target for a bounded time over its committed seeds.
    Fuzz(fuzz::FuzzArgs),
    /// Install the binary, an example configuration and the systemd unit (root).
    Install(install::Layout),
    /// Run fail2ban's own filter tests through test-filter; write docs/conformance.md.
    Conformance(conformance::ConformanceArgs),
    /// Faults all at once under load, the invariants checked (root): kill -9, SIGTERM,
    /// reload, logrotate, a full disk, the interface down, bpffs unmounted, operators.
    Chaos(chaos::ChaosArgs),
    /// Run benchmarks and write CSV under docs/benchmarks/ (xdp needs root).
    Bench {
        /// Which benchmark; all when omitted.
        #[arg(value_enum)]
        which: Option<Bench>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Bench {
    /// Nanoseconds per packet through BPF_PROG_TEST_RUN, 0 to 1M bans (root).
    Xdp,
    /// A 1M-line log through the pipeline, test-filter and the daemon: lines/s, CPU, peak memory, vs. fail2ban-regex.
    Throughput,
    /// Each built-in filter on a 1M-line log of its format: test-filter vs. fail2ban-regex.
    Filters,
    /// The filter alone, per line (criterion).
    Matcher,
    /// Failure written -> ban effective, ban-agent vs. fail2ban's server (root).
    Latency,
    /// Installing and restoring 1k-100k bans, vs. fail2ban's iptables and nftables actions (root).
    Bans,
    /// Flood of banned packets and a legitimate client, 0-1M bans: XDP vs. iptables, nftables, ipset (root).
    Packets,
    /// The daemon's resident memory: idle, 100k and 1M tracked addresses, 1M bans (root).
    Memory,
    /// Several agents on one redis-server: ban propagation, the engine's load under a flood, catch-up of 10k bans (root).
    Fleet,
    /// CrowdSec decision -> kernel: ban-agent's bouncer mode vs. crowdsec-firewall-bouncer on one Local API (root).
    Crowdsec,
    /// Only write docs/BENCHMARKS.md, its plots and the README's figures from the CSV files.
    Report,
}

/// Paths and pins of this checkout.
pub struct Workspace {
    root: PathBuf,
    tools: PathBuf,
    nightly: String,
}

impl Workspace {
    fn find() -> anyhow::Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask has no parent directory")?
            .to_owned();
        let manifest = root.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("cannot read {}", manifest.display()))?;
        let value: toml::Table = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", manifest.display()))?;
        let nightly = value
            .get("workspace")
            .and_then(|w| w.get("metadata"))
            .and_then(|m| m.get("ebpf"))
            .and_then(|e| e.get("toolchain"))
            .and_then(|t| t.as_str())
            .with_context(|| {
                format!(
                    "{}: [workspace.metadata.ebpf] toolchain is missing",
                    manifest.display()
                )
            })?
            .to_owned();
        let tools = std::env::var_os("BAN_AGENT_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".tools"));
        Ok(Self {
            root,
            tools,
            nightly,
        })
    }

    fn cargo(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.args(args)
            .current_dir(&self.root)
            .env("BAN_AGENT_TOOLS", &self.tools);
        cmd
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let ws = Workspace::find()?;
    match cli.command {
        Task::Setup => setup::setup(&ws),
        Task::Build => {
            ensure_setup(&ws)?;
            run(&mut ws.cargo(&["build", "--release", "--package", "ban-agent"]))
        }
        Task::Install(layout) => {
            ensure_setup(&ws)?;
            install::install(&ws, &layout)
        }
        Task::Run(args) => {
            ensure_setup(&ws)?;
            run::run_agent(&ws, &args)
        }
        Task::Demo(args) => {
            ensure_setup(&ws)?;
            demo::demo(&ws, &args)
        }
        Task::Dist { check, image } => {
            ensure_setup(&ws)?;
            let built = dist::dist(&ws)?;
            if check {
                for line in dist::check(&ws, &built)? {
                    println!("package: {line}");
                }
            }
            if image {
                image::image(&ws, &built)?;
                if check {
                    for line in image::check(&ws, &built)? {
                        println!("image: {line}");
                    }
                }
            }
            Ok(())
        }
        Task::Test => test::test(&ws),
        Task::Chaos(args) => {
            ensure_setup(&ws)?;
            chaos::chaos(&ws, &args)
        }
        Task::Conformance(args) => {
            ensure_setup(&ws)?;
            conformance::conformance(&ws, &args)
        }
        Task::Fuzz(args) => {
            ensure_setup(&ws)?;
            fuzz::fuzz(&ws, &args)
        }
        Task::Bench { which } => {
            ensure_setup(&ws)?;
            setup::install_packages(&setup::BENCH_PACKAGES)?;
            Bench::run(&ws, which)?;
            // The document always shows the CSV files as they are now.
            report::report(&ws)
        }
    }
}

impl Bench {
    /// Runs this benchmark, or every one (`None`).
    fn run(ws: &Workspace, which: Option<Self>) -> anyhow::Result<()> {
        match which {
            Some(Self::Xdp) => bench::xdp(ws),
            Some(Self::Throughput) => bench::throughput(ws),
            Some(Self::Filters) => bench::filters(ws),
            Some(Self::Matcher) => bench::matcher(ws),
            Some(Self::Latency) => bench::latency(ws),
            Some(Self::Bans) => bench::bans(ws),
            Some(Self::Packets) => bench::packets(ws),
            Some(Self::Memory) => bench::memory(ws),
            Some(Self::Fleet) => bench::fleet(ws),
            Some(Self::Crowdsec) => bench::crowdsec_bench(ws),
            Some(Self::Report) => Ok(()),
            None => {
                let started = std::time::Instant::now();
                bench::throughput(ws)?;
                bench::filters(ws)?;
                bench::latency(ws)?;
                bench::bans(ws)?;
                bench::packets(ws)?;
                bench::memory(ws)?;
                bench::fleet(ws)?;
                bench::crowdsec_bench(ws)?;
                bench::xdp(ws)?;
                bench::matcher(ws)?;
                println!(
                    "every benchmark ran in {:.1} min",
                    started.elapsed().as_secs_f64() / 60.0
                );
                Ok(())
            }
        }
    }
}

pub(crate) fn ensure_setup(ws: &Workspace) -> anyhow::Result<()> {
    if setup::is_complete(ws) {
        return Ok(());
    }
    setup::setup(ws)
}

/// Runs a command, failing with its command line when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// A command's standard output; its status and standard error in the error when it fails.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Host paths a tool writes whatever its options (dockerd's `/etc/docker/key.json`,
/// buildah's blob cache under `/var/lib/containers`): those absent when this is made are
/// removed when it is dropped, so a run leaves the host as it found it.
pub struct MadeOnHost {
    absent: Vec<&'static Path>,
}

impl MadeOnHost {
    pub fn watch(paths: &[&'static str]) -> Self {
        Self {
            absent: paths
                .iter()
                .map(|path| Path::new(*path))
                .filter(|path| !path.exists())
                .collect(),
        }
    }
}

impl Drop for MadeOnHost {
    fn drop(&mut self) {
        for path in &self.absent {
            let _removed = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
        }
    }
}
