//! `docs/BENCHMARKS.md`, assembled from `docs/benchmarks/template.md`, the tables and CSV
//! files the benchmarks wrote beside it, the machine's description and PNG plots drawn
//! from the CSV files; and the README's headline figures, taken from the same files.
//! Runs after every `cargo xtask bench`, so the document always shows the CSV files.

use std::{
    collections::HashMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use plotters::{
    coord::{
        Shift,
        ranged1d::{SegmentValue, SegmentedCoord},
        types::{RangedCoordf64, RangedCoordusize},
    },
    prelude::*,
};

use crate::Workspace;

/// The plots' font (package fonts-dejavu-core).
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const HEADLINE_START: &str = "<!-- benchmarks:headline (written by cargo xtask bench) -->";
const HEADLINE_END: &str = "<!-- /benchmarks:headline -->";

pub fn report(ws: &Workspace) -> anyhow::Result<()> {
    let data = Data::load(ws.root.join("docs/benchmarks"))?;
    let font = std::fs::read(FONT).with_context(|| {
        format!("cannot read the plots' font {FONT}: apt-get install fonts-dejavu-core")
    })?;
    // plotters keeps the font for the life of the process.
    plotters::style::register_font("sans-serif", FontStyle::Normal, font.leak())
        .map_err(|_| anyhow::anyhow!("{FONT} is not a font plotters can read"))?;
    let template_path = data.dir.join("template.md");
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("cannot read {}", template_path.display()))?;
    let headline_doc = headline(&data)?;
    let mut out = String::new();
    for line in template.lines() {
        if let Some(name) = placeholder(line, "table") {
            let path = data.dir.join(format!("{name}.md"));
            match std::fs::read_to_string(&path) {
                Ok(table) => out.push_str(&table),
                Err(_) => {
                    let _ = writeln!(out, "_Not measured yet: `cargo xtask bench {name}`._");
                }
            }
        } else if let Some(name) = placeholder(line, "plot") {
            if plot(&data, name)? {
                let _ = writeln!(out, "![{name}](benchmarks/{name}.png)");
            }
        } else if line == "{{machine}}" {
            out.push_str(&machine(ws));
        } else if line == "{{headline}}" {
            let _ = writeln!(out, "{headline_doc}");
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    let path = ws.root.join("docs/BENCHMARKS.md");
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))?;
    let readme_path = ws.root.join("README.md");
    let readme = std::fs::read_to_string(&readme_path).context("cannot read README.md")?;
    let (Some(start), Some(end)) = (readme.find(HEADLINE_START), readme.find(HEADLINE_END)) else {
        bail!("README.md has no {HEADLINE_START} ... {HEADLINE_END} block to write the figures in");
    };
    let headline = readme_headline(&data)?;
    let readme = format!(
        "{}{HEADLINE_START}\n{headline}\n{}",
        &readme[..start],
        &readme[end..]
    );
    std::fs::write(&readme_path, readme).context("cannot write README.md")?;
    println!("wrote docs/BENCHMARKS.md, its plots, and the README's headline");
    Ok(())
}

/// `{{KIND NAME}}` on a line of its own.
fn placeholder<'a>(line: &'a str, kind: &str) -> Option<&'a str> {
    line.strip_prefix("{{")?
        .strip_suffix("}}")?
        .strip_prefix(kind)?
        .strip_prefix(' ')
}

/// The CSV files under `docs/benchmarks/`, each read once.
struct Data {
    dir: PathBuf,
    files: HashMap<String, Vec<Record>>,
}

type Record = HashMap<String, String>;

impl Data {
    fn load(dir: PathBuf) -> anyhow::Result<Self> {
        let mut files = HashMap::new();
        let entries = std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".csv"))
            else {
                continue;
            };
            let rows = csv::Reader::from_path(&path)
                .with_context(|| format!("read {}", path.display()))?
                .deserialize()
                .collect::<Result<Vec<Record>, _>>()
                .with_context(|| format!("{} is not the CSV a benchmark writes", path.display()))?;
            files.insert(name.to_owned(), rows);
        }
        Ok(Self { dir, files })
    }

    /// The rows of `NAME.csv`, or `None` when the benchmark has not run.
    fn rows(&self, name: &str) -> Option<&[Record]> {
        self.files.get(name).map(Vec::as_slice)
    }

    /// The values of column `key` of `NAME.csv`, each once, in the order they come.
    fn distinct(&self, name: &str, key: &str) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for value in self
            .rows(name)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r.get(key))
        {
            if !seen.contains(value) {
                seen.push(value.clone());
            }
        }
        seen
    }

    /// The median of column `value` over the rows of `NAME.csv` that match `filter`.
    fn median(&self, name: &str, filter: &[(&str, &str)], value: &str) -> anyhow::Result<f64> {
        let rows = self
            .rows(name)
            .with_context(|| format!("no docs/benchmarks/{name}.csv: run `cargo xtask bench`"))?;
        let values: Vec<f64> = rows
            .iter()
            .filter(|r| {
                filter
                    .iter()
                    .all(|(k, v)| r.get(*k).is_some_and(|x| x == v))
            })
            .filter_map(|r| number(r, value))
            .collect();
        if values.is_empty() {
            bail!(
                "docs/benchmarks/{name}.csv has no {value} for {filter:?}: run `cargo xtask bench`"
            );
        }
        Ok(median(values))
    }
}

fn number(record: &Record, key: &str) -> Option<f64> {
    record.get(key).and_then(|v| v.parse().ok())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The README's (with a link to the document) and the document's first paragraph of
/// figures.
/// The figures the headlines give, from the benchmarks' CSV files.
struct Figures {
    p50: f64,
    p99: f64,
    f2b_p50: f64,
    install: f64,
    peer_rate: f64,
    speed: f64,
    attack_speed: f64,
    memory: f64,
    rss: f64,
    one_stream: f64,
    four_streams: f64,
    drop_ratio: f64,
    softirq: f64,
    set_softirq: f64,
}

fn figures(data: &Data) -> anyhow::Result<Figures> {
    let ours = [("tool", "ban-agent")];
    let install = data.median(
        "bans",
        &[
            ("tool", "ban-agent"),
            ("operation", "install"),
            ("bans", "100000"),
        ],
        "seconds",
    )?;
    let peer_rates: Vec<f64> = data
        .rows("bans")
        .unwrap_or_default()
        .iter()
        .filter(|r| r.get("tool").is_some_and(|t| t.starts_with("fail2ban")))
        .filter_map(|r| Some(number(r, "done")? / number(r, "seconds")?))
        .collect();
    let site = ("log", "site: 300k clients");
    let botnet = ("log", "botnet: 1M addresses");
    let daemon = ("tool", "ban-agent daemon");
    let peer = ("tool", "fail2ban-regex 1.0.2");
    let rate = |filter: &[(&str, &str)]| -> anyhow::Result<f64> {
        Ok(data.median("throughput", filter, "lines")?
            / data.median("throughput", filter, "seconds")?)
    };
    // The packet path: ban-agent as auto attaches it (tc on veth), against no filter and
    // against the firewall a user would otherwise pick, an nftables set, with 1M bans.
    let auto = "ban-agent auto (tc)";
    let at_1m = |tool: &str, column: &str| {
        data.median("packets", &[("tool", tool), ("bans", "1000000")], column)
    };
    let vs_none = |column: &str| -> anyhow::Result<f64> {
        Ok(at_1m(auto, column)? / at_1m("no filter", column)?)
    };
    Ok(Figures {
        p50: data.median("latency", &ours, "p50_ms")?,
        p99: data.median("latency", &ours, "p99_ms")?,
        f2b_p50: data.median("latency", &[("tool", "fail2ban")], "p50_ms")?,
        install,
        peer_rate: median(peer_rates),
        speed: rate(&[site, daemon])? / rate(&[site, peer])?,
        attack_speed: rate(&[botnet, daemon])? / rate(&[botnet, peer])?,
        memory: data.median("throughput", &[site, daemon], "peak_mb")?
            / data.median("throughput", &[site, peer], "peak_mb")?,
        rss: data.median("memory", &[("state", "1M tracked addresses")], "rss_mb")?,
        one_stream: vs_none("legit_mbit_s")?,
        four_streams: vs_none("legit_mbit_s_4_streams")?,
        drop_ratio: at_1m(auto, "flood_drops_per_s")? / at_1m("nftables set", "flood_drops_per_s")?,
        softirq: at_1m(auto, "flood_softirq_ns_per_drop")?,
        set_softirq: at_1m("nftables set", "flood_softirq_ns_per_drop")?,
    })
}

/// The benchmarks' page's opening paragraph: every headline figure.
fn headline(data: &Data) -> anyhow::Result<String> {
    let Figures {
        p50,
        p99,
        f2b_p50,
        install,
        peer_rate,
        speed,
        attack_speed,
        memory,
        rss,
        one_stream,
        four_streams,
        drop_ratio,
        softirq,
        set_softirq,
    } = figures(data)?;
    Ok(format!(
        "On these benchmarks, ban-agent bans {p50:.2} ms (median; p99 {p99:.2} ms) after the failing \
         line is written, where fail2ban's server runs its ban action after {f2b_p50:.0} ms; \
         it puts 100,000 bans in place in {install:.2} s, where fail2ban's iptables and \
         nftables actions manage about {peer_rate:.0} a second; its daemon reads a FastAPI auth log \
         {speed:.0} times as fast as `fail2ban-regex`, with {:.0}% of its memory (an attack's \
         log, a new address on every line, {attack_speed:.0} times as fast), and follows \
         1M failing addresses in {rss:.0} MB. With 1M bans on a veth, where `auto` picks \
         the tc hook, a legitimate client's throughput is {one_stream:.2} times (one TCP \
         stream) and {four_streams:.2} times (four) what it is with no filter at all, in \
         the same runs (their noise here is 10 to 15%); under a flood from banned \
         addresses ban-agent drops {drop_ratio:.2} times as many packets a second as an \
         nftables set at raw priority, at {softirq:.0} ns of softirq time per drop against \
         the set's {set_softirq:.0}.",
        memory * 100.0,
    ))
}

/// The README's short paragraph of figures, with the link to the rest.
fn readme_headline(data: &Data) -> anyhow::Result<String> {
    let f = figures(data)?;
    Ok(format!(
        "Against fail2ban on a 2-core VM ([benchmarks](docs/BENCHMARKS.md), `cargo xtask \
         bench`): a ban is in the kernel {:.2} ms after the failing line is written (fail2ban \
         acts after {:.0} ms), 100,000 bans go in in {:.2} s (fail2ban's firewall actions: \
         about {:.0} a second), and the log is read {:.0} times as fast as `fail2ban-regex` \
         reads it; with 1M bans in force a legitimate client's throughput is {:.2} times what \
         it is with no filter at all.",
        f.p50, f.f2b_p50, f.install, f.peer_rate, f.speed, f.one_stream
    ))
}

/// The machine and the versions, for the document.
fn machine(ws: &Workspace) -> String {
    let first_line = |program: &str, args: &[&str]| -> String {
        Command::new(program)
            .args(args)
            .current_dir(&ws.root)
            .output()
            .ok()
            .and_then(|o| {
                // Some print their version on stderr, or exit 1 after printing it.
                let text = String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr);
                text.lines()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| String::from("not installed"))
    };
    let file_value = |path: &str, key: &str| -> String {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| l.strip_prefix(key)).map(|v| {
                    v.trim_start_matches([':', '=', ' ', '\t'])
                        .trim_matches('"')
                        .to_owned()
                })
            })
            .unwrap_or_else(|| String::from("unknown"))
    };
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let fail2ban_version = file_value(
        &ws.tools
            .join("fail2ban/usr/lib/python3/dist-packages/fail2ban/version.py")
            .display()
            .to_string(),
        "version",
    );
    let mut out = String::new();
    for (what, value) in [
        (
            "CPU",
            format!("{} × {cpus}", file_value("/proc/cpuinfo", "model name")),
        ),
        (
            "memory",
            memory_gib(&file_value("/proc/meminfo", "MemTotal")),
        ),
        ("kernel", first_line("uname", &["-r"])),
        ("system", file_value("/etc/os-release", "PRETTY_NAME")),
        ("rustc", first_line("rustc", &["--version"])),
        ("fail2ban", fail2ban_version),
        ("iptables", first_line("iptables", &["--version"])),
        ("nftables", first_line("nft", &["--version"])),
        ("ipset", first_line("ipset", &["--version"])),
        ("trafgen", first_line("trafgen", &["--version"])),
        ("bpftool", first_line("bpftool", &["--version"])),
    ] {
        let _ = writeln!(out, "- {what}: {value}");
    }
    out
}

/// `/proc/meminfo`'s "24684100 kB" as "23.5 GiB".
fn memory_gib(total: &str) -> String {
    total
        .split_whitespace()
        .next()
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or_else(
            || total.to_owned(),
            |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0),
        )
}

/// Draws `docs/benchmarks/NAME.png` from the CSV files; `false` when its data is missing.
fn plot(data: &Data, name: &str) -> anyhow::Result<bool> {
    let path = data.dir.join(format!("{name}.png"));
    const PLOTS: [&str; 7] = [
        "throughput",
        "memory",
        "latency",
        "bans",
        "packets-client",
        "packets-drops",
        "xdp",
    ];
    if !PLOTS.contains(&name) {
        bail!("docs/benchmarks/template.md asks for an unknown plot {name:?}");
    }
    let csv = name.strip_prefix("packets-").map_or(name, |_| "packets");
    if data.rows(csv).is_none() {
        return Ok(false);
    }
    match name {
        "throughput" => plot_throughput(data, &path)?,
        "memory" => plot_memory(data, &path)?,
        "latency" => plot_latency(data, &path)?,
        "bans" => plot_bans(data, &path)?,
        "packets-client" | "packets-drops" => plot_packets(data, &path, name)?,
        "xdp" => plot_xdp(data, &path)?,
        _ => unreachable!("checked against PLOTS"),
    }
    Ok(true)
}

/// One line per tool of `csv`, a point per x (missing where the tool was not run).
fn series(
    data: &Data,
    csv: &str,
    xs: &[&str],
    value: &dyn Fn(&str, &str) -> anyhow::Result<f64>,
) -> anyhow::Result<Vec<(String, Vec<Option<f64>>)>> {
    data.distinct(csv, "tool")
        .into_iter()
        .map(|tool| {
            let points = xs.iter().map(|x| value(&tool, x).ok()).collect();
            Ok((tool, points))
        })
        .collect()
}

/// Lines per second of each tool on each log.
fn plot_throughput(data: &Data, path: &Path) -> anyhow::Result<()> {
    let mut bars = Vec::new();
    for log in data.distinct("throughput", "log") {
        for tool in data.distinct("throughput", "tool") {
            let filter = [("log", log.as_str()), ("tool", tool.as_str())];
            // A tool measured on one log only (the Docker-wrapped one) has no bar for the
            // other.
            let (Ok(lines), Ok(seconds)) = (
                data.median("throughput", &filter, "lines"),
                data.median("throughput", &filter, "seconds"),
            ) else {
                continue;
            };
            bars.push((format!("{tool} ({log})"), lines / seconds));
        }
    }
    bar_chart(
        path,
        "Log throughput, 1M-line FastAPI logs",
        "lines per second (log)",
        &bars,
    )?;
    Ok(())
}

/// The daemon's resident memory in each state.
fn plot_memory(data: &Data, path: &Path) -> anyhow::Result<()> {
    let bars = data
        .distinct("memory", "state")
        .into_iter()
        .map(|state| {
            let rss = data.median("memory", &[("state", state.as_str())], "rss_mb")?;
            Ok((state, rss))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Rows of the state file alone (the daemon stopped) have no memory.
    let bars: Vec<(String, f64)> = bars.into_iter().filter(|(_, mb)| *mb > 0.0).collect();
    bar_chart(path, "ban-agent daemon, resident memory", "MB (log)", &bars)?;
    Ok(())
}

/// p50, p99 and max of each tool.
fn plot_latency(data: &Data, path: &Path) -> anyhow::Result<()> {
    let xs = ["p50_ms", "p99_ms", "max_ms"];
    let lines = series(data, "latency", &xs, &|tool, x| {
        data.median("latency", &[("tool", tool)], x)
    })?;
    line_chart(
        path,
        "Failure written -> ban effective",
        "ms (log)",
        &["p50", "p99", "max"],
        &lines,
    )?;
    Ok(())
}

/// Bans installed per second at each size.
fn plot_bans(data: &Data, path: &Path) -> anyhow::Result<()> {
    let xs = ["1000", "10000", "100000"];
    let lines = series(data, "bans", &xs, &|tool, x| {
        let filter = [("tool", tool), ("operation", "install"), ("bans", x)];
        let done = data.median("bans", &filter, "done")?;
        let seconds = data.median("bans", &filter, "seconds")?;
        Ok(done / seconds)
    })?;
    line_chart(
        path,
        "Installing bans",
        "bans per second (log)",
        &["1k", "10k", "100k"],
        &lines,
    )?;
    Ok(())
}

/// The legitimate client's throughput, or the drops under flood, at each number of bans.
fn plot_packets(data: &Data, path: &Path, name: &str) -> anyhow::Result<()> {
    let (xs, labels, column, title, unit): (&[&str], &[&str], _, _, _) = if name == "packets-client"
    {
        (
            &["0", "100000", "1000000"],
            &["0", "100k", "1M"],
            "legit_mbit_s_4_streams",
            "Legitimate client's TCP throughput (4 streams), no flood",
            "Mbit/s (log)",
        )
    } else {
        (
            &["100000", "1000000"],
            &["100k", "1M"],
            "flood_drops_per_s",
            "Banned packets dropped per second under flood",
            "packets/s (log)",
        )
    };
    let lines = series(data, "packets", xs, &|tool, x| {
        data.median("packets", &[("tool", tool), ("bans", x)], column)
    })?;
    line_chart(path, title, unit, labels, &lines)?;
    Ok(())
}

/// Nanoseconds per packet of each hook and verdict, by number of bans.
fn plot_xdp(data: &Data, path: &Path) -> anyhow::Result<()> {
    let levels = data.distinct("xdp", "bans");
    let mut lines = Vec::new();
    for program in ["xdp", "tc"] {
        for verdict in ["pass", "drop"] {
            let points = levels
                .iter()
                .map(|bans| {
                    let filter = [
                        ("program", program),
                        ("family", "ipv6"),
                        ("verdict", verdict),
                        ("bans", bans),
                    ];
                    data.median("xdp", &filter, "ns_per_packet").ok()
                })
                .collect();
            lines.push((format!("{program} ipv6 {verdict}"), points));
        }
    }
    let labels: Vec<&str> = levels.iter().map(String::as_str).collect();
    line_chart(
        path,
        "Verdict, ns per packet, XDP and tc (BPF_PROG_TEST_RUN)",
        "ns (log)",
        &labels,
        &lines,
    )?;
    Ok(())
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(127, 127, 127),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];

/// The log10 range that holds `values`, with some room.
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| *v > 0.0)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return 0.0..1.0;
    }
    (lo.log10().floor() - 0.05)..(hi.log10().ceil() + 0.05)
}

/// A tick of a log10 axis: labelled at powers of ten only.
fn si(log: f64) -> String {
    if (log - log.round()).abs() > 1e-6 {
        return String::new();
    }
    let power = log.round() as i32;
    match power {
        6.. => format!("{}M", 10u64.pow((power - 6) as u32)),
        3.. => format!("{}k", 10u64.pow((power - 3) as u32)),
        0.. => format!("{}", 10u64.pow(power as u32)),
        _ => format!("{}", 10f64.powi(power)),
    }
}

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<SegmentedCoord<RangedCoordusize>, RangedCoordf64>,
>;

/// A titled chart on `root` with one category per label along x and `range` (log10)
/// along y, its axes drawn.
fn chart<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    title: &str,
    y: &str,
    labels: &[String],
    range: std::ops::Range<f64>,
) -> anyhow::Result<Chart<'a, 'b>> {
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        // A segmented range 0..n has n + 1 segments.
        .build_cartesian_2d((0..labels.len().saturating_sub(1)).into_segmented(), range)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y)
        .y_label_formatter(&|v| si(*v))
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    Ok(chart)
}

fn bar_chart(path: &Path, title: &str, y: &str, bars: &[(String, f64)]) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (960, 480)).into_drawing_area();
    let range = log_range(bars.iter().map(|b| b.1));
    let base = range.start;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let mut chart = chart(&root, title, y, &labels, range)?;
    for (i, (_, value)) in bars.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), base),
                (
                    SegmentValue::Exact(i + 1),
                    value.max(f64::MIN_POSITIVE).log10(),
                ),
            ],
            color.filled(),
        );
        bar.set_margin(0, 0, 25, 25);
        chart.draw_series(std::iter::once(bar))?;
    }
    root.present()?;
    Ok(())
}

fn line_chart(
    path: &Path,
    title: &str,
    y: &str,
    labels: &[&str],
    lines: &[(String, Vec<Option<f64>>)],
) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (960, 480)).into_drawing_area();
    let range = log_range(lines.iter().flat_map(|l| l.1.iter().flatten().copied()));
    let labels: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
    let mut chart = chart(&root, title, y, &labels, range)?;
    for (i, (name, values)) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(SegmentValue<usize>, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(x, v)| {
                v.filter(|v| *v > 0.0)
                    .map(|v| (SegmentValue::CenterOf(x), v.log10()))
            })
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}
