//! `cargo xtask bench packets` (root): the packet path under a flood, with 0 to 1M bans.
//!
//! Each filter gets a scene of three namespaces made here: `gen` and `cli` each joined to
//! `srv` by a veth pair. trafgen floods `srv`'s port 8000 from `gen` with TCP SYNs from
//! 250 banned IPv6 sources spread over the ban list, while a legitimate client in `cli`
//! (never banned) measures its TCP throughput (1 and 4 streams) and round-trip time to a
//! server on the same port. The filters, each with the same bans:
//!
//! - no filter at all: the baseline every other row is a ratio to;
//! - ban-agent as `mode = "auto"` attaches it on a veth: tc ingress;
//! - ban-agent forced to native XDP (`mode = "xdp"`), and to generic XDP;
//! - an nftables set, looked up from a prerouting chain at raw priority;
//! - crowdsec-firewall-bouncer's nftables set, as its 0.0.25 makes it (`bench crowdsec`
//!   runs it): a set with timeouts, looked up from an input chain at filter priority;
//! - an ipset (hash:ip), matched from iptables' raw table;
//! - iptables one rule per address (`-s ADDR -j DROP`), in the raw table, the earliest
//!   place iptables can drop (fail2ban's default action puts them later, in `filter`).
//!
//! Measured per filter and ban count, in the same run, interleaved: the client's
//! throughput and median round trip without flood; under flood, banned packets dropped
//! per second, softirq CPU time per dropped packet on the flooding core, and the
//! client's throughput. trafgen runs on CPU 0, the client and server on the last CPU.
//! Every flood is bounded in packets and time. Addresses are from 2001:db8::/32. Writes
//! `docs/benchmarks/packets.csv`, `packets.md` and a table.

use std::{
    fmt::Write as _,
    io::{ErrorKind, Read as _, Write as _},
    net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::{
        fd::{AsRawFd as _, RawFd},
        unix::process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ban_agent::{
    clock::{Expiry, boot_ns},
    datapath::{AttachMode, Datapath, Hook},
};
use ipnet::IpNet;
// The privileged tests' namespaces, veth pairs and pin directories.
#[path = "../tests/common/mod.rs"]
#[allow(dead_code, reason = "a benchmark uses a part of the tests' helpers")]
mod common;
mod shared;
use common::{
    Netns, Pins,
    packet::{Frame, L4},
    veth,
};

const SIZES: [u32; 3] = [0, 100_000, 1_000_000];
/// Parallel streams of the legitimate client: one, and several (the GRO/GSO case).
const STREAMS: [usize; 2] = [1, 4];
const RUNS: usize = 5;
const PORT: u16 = 8000;
/// Banned sources the flood comes from, spread evenly over the ban list.
const FLOOD_SOURCES: u32 = 250;
/// The flood runs this long before the measurement window opens.
const WARMUP: Duration = Duration::from_millis(300);
const WINDOW: Duration = Duration::from_secs(2);
/// A flood never sends more than this (about 10 s at the fastest rate seen here).
const FLOOD_MAX_PACKETS: u64 = 10_000_000;
/// iptables is not loaded with more rules than this: 1M rules take over 1 GB and about
/// 11 s to load, and every packet would walk them; 100k already shows the trend.
const IPTABLES_MAX: u32 = 100_000;

/// The flood's link: the addresses of the frames `common::packet` builds.
const SERVER_GEN: &str = "2001:db8::1";
const GEN: &str = "2001:db8::2";
const SERVER_GEN_MAC: &str = "02:00:00:00:00:01";
const GEN_MAC: &str = "02:00:00:00:00:02";
const SERVER_CLI: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
const CLIENT: &str = "2001:db8:2::2";

fn banned(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xba, 0, 0, 0, (i >> 16) as u16, i as u16)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    NoFilter,
    Agent(AttachMode),
    Nftables,
    CrowdsecNft,
    Ipset,
    Iptables,
}

const TOOLS: [Tool; 8] = [
    Tool::NoFilter,
    Tool::Agent(AttachMode::Auto),
    Tool::Agent(AttachMode::Xdp),
    Tool::Agent(AttachMode::XdpGeneric),
    Tool::Nftables,
    Tool::CrowdsecNft,
    Tool::Ipset,
    Tool::Iptables,
];

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Self::NoFilter => "no filter",
            Self::Agent(AttachMode::Auto) => "ban-agent auto (tc)",
            Self::Agent(AttachMode::Tc) => "ban-agent tc",
            Self::Agent(AttachMode::Xdp) => "ban-agent xdp (native)",
            Self::Agent(AttachMode::XdpGeneric) => "ban-agent xdp-generic",
            Self::Nftables => "nftables set",
            Self::CrowdsecNft => "crowdsec-firewall-bouncer's nftables set",
            Self::Ipset => "ipset",
            Self::Iptables => "iptables rule per address",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Self::NoFilter => "none",
            Self::Agent(AttachMode::Auto) => "auto",
            Self::Agent(AttachMode::Tc) => "tc",
            Self::Agent(AttachMode::Xdp) => "xdp",
            Self::Agent(AttachMode::XdpGeneric) => "gen",
            Self::Nftables => "nft",
            Self::CrowdsecNft => "csn",
            Self::Ipset => "ips",
            Self::Iptables => "ipt",
        }
    }

    fn max_bans(self) -> u32 {
        match self {
            Self::Iptables => IPTABLES_MAX,
            Self::NoFilter => 0,
            _ => u32::MAX,
        }
    }
}

/// One measurement of one filter with some bans.
#[derive(Clone, Copy, Default)]
struct Sample {
    /// The client's throughput without flood, bits/s, with each of [`STREAMS`].
    legit_bps: [f64; STREAMS.len()],
    /// The client's median round trip without flood, µs.
    rtt_us: f64,
    /// Under flood (not measured with 0 bans: nothing to drop).
    flood: Option<Flood>,
}

#[derive(Clone, Copy, Default)]
struct Flood {
    drops_per_s: f64,
    softirq_ns_per_drop: f64,
    legit_bps: f64,
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    shared::require_root("packets", "builds namespaces and loads XDP")?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus < 2 {
        bail!("the packets benchmark needs 2 CPUs: one floods, the other serves the client");
    }
    // The client, the server and every command started from here run on the last CPU;
    // trafgen pins itself to CPU 0.
    pin_to(cpus - 1)?;
    let tmp = tempfile::tempdir().context("temp dir")?;
    let mut scenes = Vec::new();
    for tool in TOOLS {
        scenes.push(Scene::new(tool, tmp.path())?);
    }
    let mut rows: Vec<(Tool, u32, usize, Sample)> = Vec::new();
    let mut loaded = 0;
    for size in SIZES {
        eprintln!("packets: loading {size} bans into each filter");
        for scene in scenes.iter_mut().filter(|s| size <= s.tool.max_bans()) {
            scene.grow(loaded, size)?;
        }
        loaded = size;
        for run in 1..=RUNS {
            // No filter is measured beside every ban count: each ratio compares runs made
            // minutes apart at most.
            for scene in scenes
                .iter_mut()
                .filter(|s| size <= s.tool.max_bans() || s.tool == Tool::NoFilter)
            {
                eprintln!(
                    "packets: {} with {size} bans, run {run}/{RUNS}",
                    scene.tool.name()
                );
                let flood = size > 0 && scene.tool != Tool::NoFilter;
                rows.push((scene.tool, size, run, scene.measure(flood)?));
            }
        }
    }
    drop(scenes);
    report(&rows)
}

fn pin_to(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and sched_setaffinity get valid
    // pointers to it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
            bail!("pin to CPU {cpu}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One filter's namespaces, server and flood configuration.
struct Scene {
    tool: Tool,
    filter: Filter,
    sink: Sink,
    flood_conf: PathBuf,
    /// nftables: the flood counter's total (each read resets it).
    nft_dropped: u64,
    // Dropped last: the filter and the server go first.
    cli: Netns,
    flooder: Netns,
    srv: Netns,
}

enum Filter {
    Agent {
        datapath: Box<Datapath>,
        expiry: Expiry,
        _pins: Pins,
    },
    /// A firewall in `srv`, read through its counters.
    Firewall,
    None,
}

impl Filter {
    /// What `tool` puts in `srv` to drop the banned: our datapath on both of its
    /// interfaces, a firewall's rules, or nothing.
    fn install(tool: Tool, srv: &Netns, tmp: &Path) -> anyhow::Result<Self> {
        Ok(match tool {
            Tool::NoFilter => Filter::None,
            Tool::Agent(mode) => {
                let pins = Pins::new(&format!("bench-packets-{}", tool.tag()));
                let pin_dir = pins.dir.clone();
                let datapath = srv.run(move || -> anyhow::Result<Datapath> {
                    let mut dp = shared::one_jail_datapath(pin_dir, PORT)?;
                    for interface in ["s-gen", "s-cli"] {
                        let attached = dp.attach(interface, mode)?;
                        eprintln!("packets: {} on {interface}: {attached}", tool.name());
                        if mode == AttachMode::Auto && attached.hook != Hook::Tc {
                            bail!(
                                "auto chose {} on a veth, not tc: {}",
                                attached.hook,
                                attached.why
                            );
                        }
                    }
                    Ok(dp)
                })?;
                Filter::Agent {
                    datapath: Box::new(datapath),
                    expiry: Expiry::after(boot_ns(), Duration::from_secs(3600)),
                    _pins: pins,
                }
            }
            Tool::Iptables => {
                for rule in [
                    "-N banned",
                    // The flood's jump first: its counter is the flood's drops (every
                    // flood source is banned).
                    "-A PREROUTING -i s-gen -p tcp --dport 8000 -j banned",
                    "-A PREROUTING -i s-cli -p tcp --dport 8000 -j banned",
                ] {
                    in_ns(srv, "ip6tables", &format!("-w -t raw {rule}"))?;
                }
                Filter::Firewall
            }
            Tool::Nftables => {
                let conf = tmp.join("bench.nft");
                std::fs::write(
                    &conf,
                    "table inet bench {\n  counter flood { }\n  \
                 set banned { type ipv6_addr; size 2097152; }\n  \
                 chain pre {\n    type filter hook prerouting priority raw; policy accept;\n    \
                 tcp dport 8000 ip6 saddr @banned counter name flood drop\n  }\n}\n",
                )?;
                in_ns(srv, "nft", &format!("-f {}", conf.display()))?;
                Filter::Firewall
            }
            Tool::CrowdsecNft => {
                // The bouncer's own table, chain and set (read from a running
                // crowdsec-firewall-bouncer 0.0.25), with a named counter for the flood.
                let conf = tmp.join("crowdsec.nft");
                std::fs::write(
                    &conf,
                    "table ip6 crowdsec6 {\n  counter flood { }\n  \
                     set crowdsec6-blacklists { type ipv6_addr; flags timeout; }\n  \
                     chain crowdsec6-chain {\n    \
                     type filter hook input priority filter; policy accept;\n    \
                     ip6 saddr @crowdsec6-blacklists counter name flood drop\n  }\n}\n",
                )?;
                in_ns(srv, "nft", &format!("-f {}", conf.display()))?;
                Filter::Firewall
            }
            Tool::Ipset => {
                in_ns(
                    srv,
                    "ipset",
                    "create banned hash:ip family inet6 maxelem 2097152",
                )?;
                in_ns(
                    srv,
                    "ip6tables",
                    "-w -t raw -A PREROUTING -p tcp --dport 8000 -m set --match-set banned src -j DROP",
                )?;
                Filter::Firewall
            }
        })
    }
}

impl Scene {
    fn new(tool: Tool, tmp: &Path) -> anyhow::Result<Self> {
        let srv = Netns::new(&format!("pk-{}-srv", tool.tag()));
        let flooder = Netns::new(&format!("pk-{}-gen", tool.tag()));
        let cli = Netns::new(&format!("pk-{}-cli", tool.tag()));
        veth(
            &flooder,
            "g-srv",
            &[&format!("{GEN}/64")],
            &srv,
            "s-gen",
            &[&format!("{SERVER_GEN}/64")],
        );
        srv.ip(&["link", "set", "dev", "s-gen", "address", SERVER_GEN_MAC]);
        flooder.ip(&["link", "set", "dev", "g-srv", "address", GEN_MAC]);
        veth(
            &cli,
            "c-srv",
            &[&format!("{CLIENT}/64")],
            &srv,
            "s-cli",
            &[&format!("{SERVER_CLI}/64")],
        );
        let filter = Filter::install(tool, &srv, tmp)?;
        let sink = Sink::start(&srv)?;
        Ok(Self {
            tool,
            filter,
            sink,
            flood_conf: tmp.join(format!("flood-{}.trafgen", tool.tag())),
            nft_dropped: 0,
            cli,
            flooder,
            srv,
        })
    }

    /// Bans `banned(from..to)` and points the flood at sources spread over `0..to`.
    fn grow(&mut self, from: u32, to: u32) -> anyhow::Result<()> {
        if to == 0 {
            return Ok(());
        }
        let batch = self.flood_conf.with_extension("batch");
        match &mut self.filter {
            Filter::None => return Ok(()),
            Filter::Agent {
                datapath, expiry, ..
            } => {
                for i in from..to {
                    let target = IpNet::from(IpAddr::V6(banned(i)));
                    datapath.maps().ban(0, target, *expiry)?;
                }
            }
            Filter::Firewall => {
                let (program, args, text) = match self.tool {
                    Tool::Iptables => {
                        let mut text = String::from("*raw\n");
                        for i in from..to {
                            let _ = writeln!(text, "-A banned -s {}/128 -j DROP", banned(i));
                        }
                        text.push_str("COMMIT\n");
                        ("ip6tables-restore", "--noflush", text)
                    }
                    Tool::Nftables => {
                        let addresses: Vec<String> =
                            (from..to).map(|i| banned(i).to_string()).collect();
                        let text = format!(
                            "add element inet bench banned {{ {} }}\n",
                            addresses.join(",\n")
                        );
                        ("nft", "-f", text)
                    }
                    Tool::CrowdsecNft => {
                        let addresses: Vec<String> = (from..to)
                            .map(|i| format!("{} timeout 1h", banned(i)))
                            .collect();
                        let text = format!(
                            "add element ip6 crowdsec6 crowdsec6-blacklists {{ {} }}\n",
                            addresses.join(",\n")
                        );
                        ("nft", "-f", text)
                    }
                    _ => {
                        let mut text = String::new();
                        for i in from..to {
                            let _ = writeln!(text, "add banned {}", banned(i));
                        }
                        ("ipset", "restore -f", text)
                    }
                };
                std::fs::write(&batch, text)?;
                in_ns(&self.srv, program, &format!("{args} {}", batch.display()))?;
            }
        }
        self.write_flood(to)
    }

    /// trafgen's configuration: one TCP SYN to the server's port per flood source.
    fn write_flood(&self, bans: u32) -> anyhow::Result<()> {
        let mut conf = String::new();
        for k in 0..FLOOD_SOURCES {
            let source = banned((u64::from(k) * u64::from(bans) / u64::from(FLOOD_SOURCES)) as u32);
            // A SYN to the server's port from 02:00:00:00:00:02 to 02:00:00:00:00:01 and
            // 2001:db8::1, the addresses `Scene::new` gives the link.
            let frame = Frame::v6(source.octets(), L4::Tcp(PORT)).bytes();
            let bytes: Vec<String> = frame.iter().map(|b| format!("0x{b:02x}")).collect();
            let _ = writeln!(conf, "{{ {} }}", bytes.join(", "));
        }
        std::fs::write(&self.flood_conf, conf)
            .with_context(|| format!("cannot write {}", self.flood_conf.display()))
    }

    fn measure(&mut self, flood: bool) -> anyhow::Result<Sample> {
        let mut legit_bps = [0.0; STREAMS.len()];
        for (bps, streams) in legit_bps.iter_mut().zip(STREAMS) {
            *bps = self.throughput(Duration::from_secs(1), streams)?;
        }
        let rtt_us = self.rtt_us()?;
        let flood = if flood { Some(self.flood()?) } else { None };
        Ok(Sample {
            legit_bps,
            rtt_us,
            flood,
        })
    }

    /// Packets the filter has dropped from the flood so far.
    fn dropped(&mut self) -> anyhow::Result<u64> {
        match &mut self.filter {
            Filter::None => Ok(0),
            Filter::Agent { datapath, .. } => Ok(datapath
                .maps()
                .counters()?
                .iter()
                .map(|(_, c)| c.dropped_packets)
                .sum()),
            // Listing anything of a table with a 1M-element set takes seconds; resetting
            // its named counter (which prints the count) takes milliseconds.
            Filter::Firewall if self.tool == Tool::Nftables => {
                let out = in_ns(&self.srv, "nft", "reset counter inet bench flood")?;
                self.nft_dropped += number_after(&out, "packets ")?;
                Ok(self.nft_dropped)
            }
            Filter::Firewall if self.tool == Tool::CrowdsecNft => {
                let out = in_ns(&self.srv, "nft", "reset counter ip6 crowdsec6 flood")?;
                self.nft_dropped += number_after(&out, "packets ")?;
                Ok(self.nft_dropped)
            }
            // iptables and ipset: the counter of the raw table's first rule.
            Filter::Firewall => {
                let out = in_ns(&self.srv, "ip6tables", "-w -t raw -L PREROUTING 1 -v -x -n")?;
                out.split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .with_context(|| format!("no packet count in {out:?}"))
            }
        }
    }

    fn flood(&mut self) -> anyhow::Result<Flood> {
        let child = self
            .flooder
            .command("trafgen")
            .args(["--dev", "g-srv", "--conf"])
            .arg(&self.flood_conf)
            .args(["--cpus", "1", "--num", &FLOOD_MAX_PACKETS.to_string()])
            .args(["--no-sock-mem", "--notouch-irq", "--no-cpu-stats"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .context("cannot start trafgen (package netsniff-ng)")?;
        let mut generator = Generator(child);
        std::thread::sleep(WARMUP);
        if let Some(status) = generator.0.try_wait()? {
            let mut error = String::new();
            if let Some(mut pipe) = generator.0.stderr.take() {
                pipe.read_to_string(&mut error)?;
            }
            bail!("trafgen exited early ({status}): {error}");
        }
        let (d0, s0, t0) = (self.dropped()?, softirq_ticks(0)?, Instant::now());
        let legit_bps = self.throughput(WINDOW, 1)?;
        let (d1, s1, t1) = (self.dropped()?, softirq_ticks(0)?, Instant::now());
        drop(generator);
        let drops = d1.saturating_sub(d0);
        if drops == 0 {
            bail!(
                "{}: no flood packet dropped: the sources are not banned",
                self.tool.name()
            );
        }
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok(Flood {
            drops_per_s: drops as f64 / (t1 - t0).as_secs_f64(),
            softirq_ns_per_drop: (s1 - s0) as f64 / hz * 1e9 / drops as f64,
            legit_bps,
        })
    }

    fn connect(&self) -> anyhow::Result<TcpStream> {
        let server = SocketAddr::from((SERVER_CLI, PORT));
        let stream = self
            .cli
            .run(|| TcpStream::connect_timeout(&server, Duration::from_secs(5)))
            .with_context(|| {
                format!("{}: the legitimate client cannot connect", self.tool.name())
            })?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Bits per second the server received from `streams` TCP streams in `window`.
    fn throughput(&self, window: Duration, streams: usize) -> anyhow::Result<f64> {
        let connections = (0..streams)
            .map(|_| self.connect())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let before = self.sink.received.load(Ordering::Relaxed);
        let started = Instant::now();
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let senders: Vec<_> = connections
                .into_iter()
                .map(|stream| scope.spawn(move || send_for(stream, window)))
                .collect();
            for sender in senders {
                sender
                    .join()
                    .map_err(|_| anyhow::anyhow!("a client stream panicked"))??;
            }
            Ok(())
        })?;
        let bytes = self.sink.received.load(Ordering::Relaxed) - before;
        let seconds = started.elapsed().as_secs_f64();
        Ok(bytes as f64 * 8.0 / seconds)
    }

    /// Median round trip of one byte echoed, over up to 200 trips or half a second.
    fn rtt_us(&self) -> anyhow::Result<f64> {
        let mut stream = self.connect()?;
        stream.write_all(b"E")?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut trips = Vec::new();
        let started = Instant::now();
        let mut byte = [0u8];
        while trips.len() < 200 && started.elapsed() < Duration::from_millis(500) {
            let sent = Instant::now();
            stream.write_all(&byte)?;
            stream
                .read_exact(&mut byte)
                .context("legitimate client: echo")?;
            trips.push(sent.elapsed().as_secs_f64() * 1e6);
        }
        reset(&stream);
        Ok(shared::median(trips))
    }
}

/// Sends as fast as the stream takes for `window`, then resets it.
fn send_for(mut stream: TcpStream, window: Duration) -> anyhow::Result<()> {
    stream.write_all(b"T")?;
    stream.set_write_timeout(Some(Duration::from_millis(50)))?;
    let chunk = vec![0u8; 64 * 1024];
    let started = Instant::now();
    while started.elapsed() < window {
        match stream.write(&chunk) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e).context("legitimate client: send"),
        }
    }
    reset(&stream);
    Ok(())
}

/// Closes with a reset: unsent data is discarded instead of trickling on after the
/// measurement.
fn reset(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a valid option of the right size.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of_val(&linger) as libc::socklen_t,
        );
    }
}

/// The flood generator, in a process group of its own (trafgen forks its workers); the
/// whole group is stopped on drop.
struct Generator(Child);

impl Drop for Generator {
    fn drop(&mut self) {
        let group = -(self.0.id() as i32);
        // SAFETY: signalling our own process group; no memory is involved.
        unsafe { libc::kill(group, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: as above; whatever is left of the group is killed.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _reaped = self.0.wait();
    }
}

/// The legitimate client's server: `T` then data (counted and discarded), or `E` then
/// bytes echoed back.
struct Sink {
    received: Arc<AtomicU64>,
    listener: RawFd,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn start(srv: &Netns) -> anyhow::Result<Self> {
        let address = SocketAddr::from((SERVER_CLI, PORT));
        let listener = srv
            .run(|| TcpListener::bind(address))
            .with_context(|| format!("bind {address}"))?;
        let received = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&received);
        let fd = listener.as_raw_fd();
        let thread = std::thread::spawn(move || {
            // Ends when `drop` shuts the listener down.
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || serve(stream, &counter));
            }
        });
        Ok(Self {
            received,
            listener: fd,
            thread: Some(thread),
        })
    }
}

fn serve(mut stream: TcpStream, received: &AtomicU64) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut kind = [0u8];
    if stream.read_exact(&mut kind).is_err() {
        return;
    }
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) if kind[0] == b'E' => {
                if stream.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
            Ok(n) => {
                received.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // SAFETY: the listener is open until its thread ends; shutting it down makes
        // accept fail, which ends the thread.
        unsafe { libc::shutdown(self.listener, libc::SHUT_RDWR) };
        if let Some(thread) = self.thread.take() {
            let _joined = thread.join();
        }
    }
}

/// `PROGRAM ARGS` (split on spaces) in `ns`; its stdout.
fn in_ns(ns: &Netns, program: &str, args: &str) -> anyhow::Result<String> {
    let out = ns
        .command(program)
        .args(args.split(' '))
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` in {} failed: {}",
            args.chars().take(200).collect::<String>(),
            ns.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn number_after(text: &str, key: &str) -> anyhow::Result<u64> {
    text.split_once(key)
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no {key:?} in {text:?}"))
}

/// Softirq clock ticks CPU `cpu` has spent so far (`/proc/stat`).
fn softirq_ticks(cpu: usize) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    let prefix = format!("cpu{cpu} ");
    let line = stat
        .lines()
        .find(|l| l.starts_with(&prefix))
        .with_context(|| format!("no {prefix:?} in /proc/stat"))?;
    // cpuN user nice system idle iowait irq softirq ...
    line.split_whitespace()
        .nth(7)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected /proc/stat line {line:?}"))
}

fn report(rows: &[(Tool, u32, usize, Sample)]) -> anyhow::Result<()> {
    let mut csv = String::from(
        "tool,bans,run,legit_mbit_s,legit_mbit_s_4_streams,legit_rtt_us,flood_drops_per_s,flood_softirq_ns_per_drop,legit_mbit_s_under_flood\n",
    );
    for (tool, bans, run, s) in rows {
        let f = s.flood.unwrap_or_default();
        let _ = writeln!(
            csv,
            "{},{bans},{run},{:.1},{:.1},{:.1},{:.0},{:.0},{:.1}",
            tool.name(),
            s.legit_bps[0] / 1e6,
            s.legit_bps[1] / 1e6,
            s.rtt_us,
            f.drops_per_s,
            f.softirq_ns_per_drop,
            f.legit_bps / 1e6
        );
    }
    let med = |tool: Tool, bans: u32, f: &dyn Fn(&Sample) -> Option<f64>| {
        let values: Vec<f64> = rows
            .iter()
            .filter(|r| r.0 == tool && r.1 == bans)
            .filter_map(|r| f(&r.3))
            .collect();
        (!values.is_empty()).then(|| shared::median(values))
    };
    let mut table = String::from(
        "| bans | filter | client Mbit/s, 1 stream | vs. no filter | client Mbit/s, 4 streams | vs. no filter | client RTT µs | flood drops/s | drops vs. nftables set | softirq ns/drop | client Mbit/s under flood |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let cell =
        |v: Option<f64>, digits: usize| v.map_or(String::from("—"), |v| format!("{v:.digits$}"));
    for bans in SIZES {
        for tool in TOOLS {
            if tool == Tool::NoFilter && bans > 0 {
                continue;
            }
            if bans > tool.max_bans() {
                let _ = writeln!(
                    table,
                    "| {bans} | {} | not run: over {IPTABLES_MAX} rules | | | | | | | | |",
                    tool.name()
                );
                continue;
            }
            // The baseline: no filter, measured in the same runs as this ban count.
            let legit = |i: usize| med(tool, bans, &|s| Some(s.legit_bps[i]));
            let base = |i: usize| med(Tool::NoFilter, bans, &|s| Some(s.legit_bps[i]));
            let ratio = |i: usize| legit(i).zip(base(i)).map(|(l, b)| l / b);
            let rtt = med(tool, bans, &|s| Some(s.rtt_us));
            let drops = med(tool, bans, &|s| s.flood.map(|f| f.drops_per_s));
            let nft = med(Tool::Nftables, bans, &|s| s.flood.map(|f| f.drops_per_s));
            let softirq = med(tool, bans, &|s| s.flood.map(|f| f.softirq_ns_per_drop));
            let under = med(tool, bans, &|s| s.flood.map(|f| f.legit_bps / 1e6));
            let _ = writeln!(
                table,
                "| {bans} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                tool.name(),
                cell(legit(0).map(|v| v / 1e6), 0),
                cell(ratio(0), 2),
                cell(legit(1).map(|v| v / 1e6), 0),
                cell(ratio(1), 2),
                cell(rtt, 0),
                cell(drops, 0),
                cell(drops.zip(nft).map(|(d, n)| d / n), 2),
                cell(softirq, 0),
                cell(under, 0),
            );
        }
    }
    shared::publish("packets", &csv, &table)
}
