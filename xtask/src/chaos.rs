//! `cargo xtask chaos`: faults all at once, under load, judged against invariants
//! (`ban-agent/benches/chaos.rs`, which says what it runs and checks). Root.

use anyhow::Context as _;
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
    /// Keep the run's report, its soak samples and their plot in docs/reliability/ (for
    /// the hour-long run that docs/reliability.md shows).
    #[arg(long)]
    publish: bool,
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
    let ran = run(&mut cmd);
    if args.publish {
        // A failed run is published too: its report says what broke.
        publish(ws)?;
    }
    ran
}

/// Copies the run's report and soak samples from target/chaos/ into docs/reliability/,
/// and plots the samples.
fn publish(ws: &Workspace) -> anyhow::Result<()> {
    let from = ws.root.join("target/chaos");
    let to = ws.root.join("docs/reliability");
    std::fs::create_dir_all(&to).with_context(|| format!("cannot create {}", to.display()))?;
    for file in ["report.md", "soak.csv"] {
        std::fs::copy(from.join(file), to.join(file))
            .with_context(|| format!("cannot copy {file} from {}", from.display()))?;
    }
    let csv = std::fs::read_to_string(to.join("soak.csv"))?;
    plot_soak(&csv, &to.join("soak.png"))?;
    println!("wrote docs/reliability/report.md, soak.csv and soak.png");
    Ok(())
}

/// Resident memory, open descriptors and the bans in the kernel over the run, one panel
/// each, against minutes.
fn plot_soak(csv: &str, path: &std::path::Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|line| line.split(',').filter_map(|x| x.parse().ok()).collect())
        .filter(|row: &Vec<f64>| row.len() == 5)
        .collect();
    let font = std::fs::read(crate::report::FONT)
        .with_context(|| format!("cannot read the plots' font {}", crate::report::FONT))?;
    // plotters keeps the font for the life of the process.
    plotters::style::register_font("sans-serif", FontStyle::Normal, font.leak())
        .map_err(|_| anyhow::anyhow!("{} is not a font plotters can read", crate::report::FONT))?;
    let root = BitMapBackend::new(path, (960, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let minutes = rows.last().map_or(1.0, |row| row[0] / 60.0).max(1.0);
    let panels = [
        ("resident memory, MB", 1, 1.0 / 1024.0),
        ("open descriptors", 2, 1.0),
        ("bans in the kernel", 4, 1.0),
    ];
    for (area, (title, column, scale)) in root.split_evenly((3, 1)).iter().zip(panels) {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| (r[0] / 60.0, r[column] * scale))
            .collect();
        let top = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.2;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..minutes, 0.0..top)?;
        chart.configure_mesh().x_desc("minutes").draw()?;
        chart.draw_series(LineSeries::new(points, BLUE.stroke_width(2)))?;
    }
    root.present()?;
    Ok(())
}
