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

impl ChaosArgs {
    /// The run `cargo xtask test` makes: two minutes, a fixed seed (the same schedule on
    /// every CI run; a run with the clock's seed is one command away).
    pub fn ci() -> Self {
        Self {
            minutes: 2.0,
            seed: Some(1),
            rate: 2_000,
            publish: false,
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

/// Resident memory and open descriptors of the restarted agent and of a fleet agent alive
/// the whole run, the state file's size and the bans in the kernel, one panel each,
/// against minutes.
fn plot_soak(csv: &str, path: &std::path::Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|line| line.split(',').filter_map(|x| x.parse().ok()).collect())
        .filter(|row: &Vec<f64>| row.len() == 7)
        .collect();
    let font = std::fs::read(crate::report::FONT)
        .with_context(|| format!("cannot read the plots' font {}", crate::report::FONT))?;
    // plotters keeps the font for the life of the process.
    plotters::style::register_font("sans-serif", FontStyle::Normal, font.leak())
        .map_err(|_| anyhow::anyhow!("{} is not a font plotters can read", crate::report::FONT))?;
    let root = BitMapBackend::new(path, (960, 960)).into_drawing_area();
    root.fill(&WHITE)?;
    let minutes = rows.last().map_or(1.0, |row| row[0] / 60.0).max(1.0);
    /// A title, the scale of its values, its (column, name) series.
    type Panel = (&'static str, f64, &'static [(usize, &'static str)]);
    let panels: [Panel; 4] = [
        (
            "resident memory, MB",
            1.0 / 1024.0,
            &[(1, "restarted agent"), (5, "fleet agent (never restarted)")],
        ),
        (
            "open descriptors",
            1.0,
            &[(2, "restarted agent"), (6, "fleet agent (never restarted)")],
        ),
        (
            "state file, MB",
            1.0 / 1_048_576.0,
            &[(3, "state.db + WAL")],
        ),
        ("bans in the kernel", 1.0, &[(4, "one host")]),
    ];
    for (area, (title, scale, series)) in root.split_evenly((4, 1)).iter().zip(panels) {
        let top = rows
            .iter()
            .flat_map(|r| series.iter().map(move |(c, _)| r[*c] * scale))
            .fold(1.0, f64::max)
            * 1.2;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..minutes, 0.0..top)?;
        chart.configure_mesh().x_desc("minutes").draw()?;
        for ((column, name), color) in series.iter().zip([BLUE, RED]) {
            let points: Vec<(f64, f64)> = rows
                .iter()
                .map(|r| (r[0] / 60.0, r[*column] * scale))
                .collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
