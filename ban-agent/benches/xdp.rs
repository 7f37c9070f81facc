//! `cargo xtask bench xdp`: nanoseconds per packet through the XDP program
//! (`BPF_PROG_TEST_RUN`), for the pass and drop verdicts, IPv4 and IPv6, with 0, 10k, 100k
//! and 1M bans in the maps. Writes `docs/benchmarks/xdp.csv` and prints a table.
//! Needs root. Each figure is the median of several runs of many repetitions, and the
//! pass cost is compared with the empty-map cost measured in the same run.

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
const RUNS: usize = 7;
const PORT: u16 = 8000;
const BANNED_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const CLEAN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
const BANNED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa);
const CLEAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xb);

struct Row {
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
            let ns = median_ns(&mut dp, bytes, if *verdict == "pass" { 2 } else { 1 })?;
            rows.push(Row {
                family,
                bans,
                verdict,
                ns,
            });
        }
    }
    Ok(rows)
}

fn median_ns(dp: &mut Datapath, bytes: &[u8], expected: u32) -> anyhow::Result<f64> {
    let program = dp.program()?;
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let result = program.test_run(TestRunOptions {
            data_in: Some(bytes),
            repeat: REPEAT,
            ..TestRunOptions::new()
        })?;
        if result.return_value != expected {
            bail!(
                "verdict {} instead of {expected}: the benchmark measures the wrong path",
                result.return_value
            );
        }
        // The kernel reports the mean time of one repetition.
        samples.push(result.duration.as_nanos() as f64);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[RUNS / 2])
}

fn write_report(rows: &[Row]) -> anyhow::Result<()> {
    let empty = |family: &str, verdict: &str| {
        rows.iter()
            .find(|r| r.family == family && r.verdict == verdict && r.bans == 0)
            .map_or(f64::NAN, |r| r.ns)
    };
    let mut csv = String::from("family,bans,verdict,ns_per_packet,ratio_to_empty_map\n");
    let mut table = String::from(
        "| family | bans | verdict | ns/packet | vs. empty map |\n|---|---:|---|---:|---:|\n",
    );
    for r in rows {
        let ratio = r.ns / empty(r.family, r.verdict);
        writeln!(
            csv,
            "{},{},{},{:.1},{:.3}",
            r.family, r.bans, r.verdict, r.ns, ratio
        )?;
        writeln!(
            table,
            "| {} | {} | {} | {:.1} | {:.2} |",
            r.family, r.bans, r.verdict, r.ns, ratio
        )?;
    }
    shared::publish("xdp", &csv, &table)
}
