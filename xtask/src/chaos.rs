//! `cargo xtask chaos`: faults all at once, under load, judged against invariants
//! (`ban-agent/benches/chaos.rs`, which says what it runs and checks). Root.

use clap::Args;

use crate::{Workspace, is_root, run};

#[derive(Args)]
pub struct ChaosArgs {
    /// How long the load and the nemesis run.
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// The seed of the load and of the nemesis' schedule (a failed run prints its own;
    /// default: the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Lines a second written to the three logs (bursts three times that).
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
}

impl ChaosArgs {
    /// The run `cargo xtask test` makes: two minutes, a fixed seed (the same schedule on
    /// every CI run; a run with the clock's seed is one command away).
    pub fn ci() -> Self {
        Self {
            minutes: 2.0,
            seed: Some(1),
            rate: 2_000,
        }
    }
}

pub fn chaos(ws: &Workspace, args: &ChaosArgs) -> anyhow::Result<()> {
    if !is_root() {
        anyhow::bail!(
            "the chaos run builds namespaces, mounts a tmpfs and bpffs and loads BPF \
             programs: run it as root"
        );
    }
    let mut cmd = ws.cargo(&["bench", "--package", "ban-agent", "--bench", "chaos", "--"]);
    cmd.args(["--minutes", &args.minutes.to_string()])
        .args(["--rate", &args.rate.to_string()]);
    if let Some(seed) = args.seed {
        cmd.args(["--seed", &seed.to_string()]);
    }
    run(&mut cmd)
}
