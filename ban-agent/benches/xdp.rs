//! `cargo xtask bench xdp`: nanoseconds per packet through each entry point of the verdict
//! (`BPF_PROG_TEST_RUN`): the XDP program, its single-buffer twin and the tc program, for
//! the pass and drop verdicts, IPv4 and IPv6, with 0, 10k, 100k and 1M bans in the maps.
//! Writes `docs/benchmarks/xdp.csv` and prints a table. Needs root. Each figure is the
//! median of several runs of many repetitions; each is compared with the empty-map cost
//! and with the XDP program's cost measured in the same run.

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, bail};
// The frames are the ones the verdict tests build.
#[path = "../tests/common/packet.rs"]
#[allow(dead_code, reason = "the benchmark needs only TCP frames")]
mod packet;
mod shared;

use aya::programs::{TestRun as _, TestRunOptions};
use ban_agent::{
    clock::{Expiry, boot_ns},
    datapath::{self, Datapath},
};
use ipnet::IpNet;
use packet::{Frame, L4};

const LEVELS: [u32; 4] = [0, 10_000, 100_000, 1_000_000];
const REPEAT: u32 = 200_000;
/// Runs per packet, the programs interleaved run by run so that each ratio to XDP compares
/// samples taken side by side on this noisy machine.
const RUNS: usize = 11;
const PORT: u16 = 8000;
const BANNED_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const CLEAN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
const BANNED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa);
const CLEAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xb);

/// The entry points measured: name, and the return codes of pass and drop.
const PROGRAMS: [(&str, u32, u32); 3] = [
    ("xdp", 2, 1),
    ("xdp-linear", 2, 1),
    ("tc", ban_common::TC_PASS as u32, ban_common::TC_DROP as u32),
];

struct Row {
    program: &'static str,
    family: &'static str,
    bans: u32,
    verdict: &'static str,
    ns: f64,
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; nothing else is accepted.
    if std::env::args().skip(1).any(|a| a != "--bench") {
        bail!("usage: cargo xtask bench xdp");
    }
    shared::require_root("xdp", "loads a BPF program")?;
    let pin_dir = PathBuf::from(format!(
        "/sys/fs/bpf/ban-agent-bench-{}",
        std::process::id()
    ));
    let result = measure(&pin_dir);
    datapath::detach(&pin_dir).context("remove the benchmark's pins")?;
    let rows = result?;
    write_report(&rows)
}

fn measure(pin_dir: &std::path::Path) -> anyhow::Result<Vec<Row>> {
    let mut dp = shared::one_jail_datapath(pin_dir.to_owned(), PORT)?;
    let expiry = Expiry::after(boot_ns(), Duration::from_secs(3600));
    dp.maps()
        .ban(0, IpNet::from(std::net::IpAddr::V4(BANNED_V4)), expiry)?;
    dp.maps()
        .ban(0, IpNet::from(std::net::IpAddr::V6(BANNED_V6)), expiry)?;
    let packets = [
        (
            "ipv4",
            "pass",
            Frame::v4(CLEAN_V4.octets(), L4::Tcp(PORT)).bytes(),
        ),
        (
            "ipv4",
            "drop",
            Frame::v4(BANNED_V4.octets(), L4::Tcp(PORT)).bytes(),
        ),
        (
            "ipv6",
            "pass",
            Frame::v6(CLEAN_V6.octets(), L4::Tcp(PORT)).bytes(),
        ),
        (
            "ipv6",
            "drop",
            Frame::v6(BANNED_V6.octets(), L4::Tcp(PORT)).bytes(),
        ),
    ];
    let mut rows = Vec::new();
    let mut filled = 0u32;
    // BAN_AGENT_BENCH_QUICK=1 measures the empty maps only, to compare program variants.
    let quick = std::env::var("BAN_AGENT_BENCH_QUICK").is_ok_and(|v| v == "1");
    let levels = if quick { &LEVELS[..1] } else { &LEVELS[..] };
    for &bans in levels {
        eprintln!("filling the maps to {bans} bans per family");
        for i in filled..bans {
            // Filler keys only: no traffic is ever sent to or from them.
            let v4 = Ipv4Addr::from(0x0b00_0000 + i);
            let v6 = Ipv6Addr::from(0x2001_0db8_ffff_0000_0000_0000_0000_0000u128 + u128::from(i));
            dp.maps()
                .ban(0, IpNet::from(std::net::IpAddr::V4(v4)), expiry)?;
            dp.maps()
                .ban(0, IpNet::from(std::net::IpAddr::V6(v6)), expiry)?;
        }
        filled = bans;
        for (family, verdict, bytes) in &packets {
            let medians = median_ns(&mut dp, bytes, *verdict == "pass")?;
            for ((program, _, _), ns) in PROGRAMS.into_iter().zip(medians) {
                rows.push(Row {
                    program,
                    family,
                    bans,
                    verdict,
                    ns,
                });
            }
        }
    }
    Ok(rows)
}

/// The median ns per packet of each of [`PROGRAMS`] on `bytes`, the programs taking turns.
fn median_ns(dp: &mut Datapath, bytes: &[u8], pass: bool) -> anyhow::Result<[f64; PROGRAMS.len()]> {
    let mut samples: [Vec<f64>; PROGRAMS.len()] = Default::default();
    for _ in 0..RUNS {
        for (i, (program, pass_code, drop_code)) in PROGRAMS.into_iter().enumerate() {
            let expected = if pass { pass_code } else { drop_code };
            let options = TestRunOptions {
                data_in: Some(bytes),
                repeat: REPEAT,
                ..TestRunOptions::new()
            };
            let result = match program {
                "xdp" => dp.program()?.test_run(options)?,
                "xdp-linear" => dp.xdp_linear_program()?.test_run(options)?,
                _ => dp.tc_program()?.test_run(options)?,
            };
            if result.return_value != expected {
                bail!(
                    "{program}: verdict {} instead of {expected}: the benchmark measures the \
                     wrong path",
                    result.return_value
                );
            }
            // The kernel reports the mean time of one repetition.
            samples[i].push(result.duration.as_nanos() as f64);
        }
    }
    Ok(samples.map(shared::median))
}

fn write_report(rows: &[Row]) -> anyhow::Result<()> {
    let find = |program: &str, family: &str, verdict: &str, bans: u32| {
        rows.iter()
            .find(|r| {
                r.program == program && r.family == family && r.verdict == verdict && r.bans == bans
            })
            .map_or(f64::NAN, |r| r.ns)
    };
    let mut csv =
        String::from("program,family,bans,verdict,ns_per_packet,ratio_to_empty_map,ratio_to_xdp\n");
    let mut table = String::from(
        "| program | family | bans | verdict | ns/packet | vs. empty map | vs. XDP |\n\
         |---|---|---:|---|---:|---:|---:|\n",
    );
    for r in rows {
        let empty = r.ns / find(r.program, r.family, r.verdict, 0);
        let xdp = r.ns / find("xdp", r.family, r.verdict, r.bans);
        writeln!(
            csv,
            "{},{},{},{},{:.1},{empty:.3},{xdp:.3}",
            r.program, r.family, r.bans, r.verdict, r.ns
        )?;
        writeln!(
            table,
            "| {} | {} | {} | {} | {:.1} | {empty:.2} | {xdp:.2} |",
            r.program, r.family, r.bans, r.verdict, r.ns
        )?;
    }
    // Over every packet shape and ban count: what each program costs beside XDP.
    for (program, _, _) in PROGRAMS {
        let ratios: Vec<f64> = rows
            .iter()
            .filter(|r| r.program == program)
            .map(|r| r.ns / find("xdp", r.family, r.verdict, r.bans))
            .collect();
        writeln!(
            table,
            "| {program} | all | all | all | | | median {:.2} |",
            shared::median(ratios)
        )?;
    }
    shared::publish("xdp", &csv, &table)
}
