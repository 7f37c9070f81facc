//! The kernel half, seen from user space: load the programs (XDP and tc, one verdict),
//! attach one of them to each interface, pin it, and read and write the maps. A program is
//! loaded, and so verified (about a second each), only when an interface needs its hook. The only
//! module that talks to BPF; which hook an interface gets is decided in [`hooks`].
//!
//! Everything is pinned under one directory (default [`ban_common::PIN_DIR`]): the maps by
//! name, and one link per interface (`link_<interface>` for XDP, `tc_<interface>` for tc).
//! A second [`Datapath::open`] finds the first's maps and reuses them, and
//! [`Datapath::attach`] swaps the new program into the pinned link atomically, so a
//! restart never lifts a ban nor leaves a window without protection. Dropping a
//! `Datapath` leaves everything in place; only [`detach`] removes it.

mod bans;
mod batch;
mod bpffs;
mod error;
pub mod ethtool;
mod hooks;

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, IterableMap as _, LpmTrie, MapData, MapError, PerCpuArray},
    programs::{
        SchedClassifier, Xdp,
        links::{FdLink, PinnedLink},
    },
    sys::SyscallError,
};
use ban_common::{
    Ban, BanKeyV4, BanKeyV6, JAIL_PORTS_LEN, JailCounters, MAX_JAILS, PortJails, PrefixV4,
    PrefixV6, maps, port_slot, programs, proto, unknown_port_slot,
};
pub use bans::{BanRecord, Target, map_of, show};
pub use error::DatapathError;
pub use hooks::{AttachMode, Attached, Hook};
use tracing::{info, warn};

/// The eBPF object built by `build.rs` from `ban-ebpf`.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ban-ebpf"));

/// How [`Datapath::open`] loads the program.
#[derive(Clone, Debug)]
pub struct DatapathOptions {
    /// Where maps and links are pinned; must be on bpffs.
    pub pin_dir: PathBuf,
    /// Capacity of the exact IPv4 ban map.
    pub max_bans_v4: u32,
    /// Capacity of the exact IPv6 ban map.
    pub max_bans_v6: u32,
    /// Capacity of each prefix-ban trie.
    pub max_prefix_bans: u32,
    /// Level up to which the program's `aya-log` events are compiled in; anything below
    /// is removed by the verifier as dead code, so it costs nothing.
    pub log_level: aya_log::Level,
    /// Load the single-buffer XDP twin, as on a kernel before 5.18 that refuses
    /// `xdp.frags` (for tests and benchmarks; the loader falls back to it by itself).
    pub xdp_linear: bool,
    /// Attach tc as a clsact filter even where TCX links exist, as on a kernel before 6.6
    /// (for tests; the agent falls back to it by itself).
    pub tc_clsact: bool,
}

impl Default for DatapathOptions {
    fn default() -> Self {
        Self {
            pin_dir: PathBuf::from(ban_common::PIN_DIR),
            max_bans_v4: ban_common::DEFAULT_MAX_BANS_V4,
            max_bans_v6: ban_common::DEFAULT_MAX_BANS_V6,
            max_prefix_bans: ban_common::DEFAULT_MAX_PREFIX_BANS,
            log_level: aya_log::Level::Info,
            xdp_linear: false,
            tc_clsact: false,
        }
    }
}

/// Which ports of which transport a jail protects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JailPorts {
    /// Jail index, `0..MAX_JAILS`.
    pub jail: u32,
    /// `None` for all ports (and, with [`Protocol::All`], all protocols).
    pub ports: Option<Vec<u16>>,
    /// Transport the ports belong to.
    pub protocol: Protocol,
}

/// Transport a jail protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Tcp,
    Udp,
    /// TCP and UDP ports; with all ports, every protocol.
    All,
}

/// The loaded program, with its maps.
pub struct Datapath {
    ebpf: Ebpf,
    /// The XDP program loaded, once one is: [`programs::XDP`] or its single-buffer twin.
    xdp_name: Option<&'static str>,
    /// [`DatapathOptions::xdp_linear`].
    xdp_linear: bool,
    /// [`DatapathOptions::tc_clsact`].
    tc_clsact: bool,
    maps: Maps,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

/// The pinned maps: everything needed to ban, unban, list and count, with or without the
/// program loaded in this process ([`Maps::open_pinned`] serves tools and tests).
pub struct Maps {
    pin_dir: PathBuf,
    ban_v4: HashMap<MapData, BanKeyV4, Ban>,
    ban_v6: HashMap<MapData, BanKeyV6, Ban>,
    prefix_v4: LpmTrie<MapData, PrefixV4, Ban>,
    prefix_v6: LpmTrie<MapData, PrefixV6, Ban>,
    jail_ports: Array<MapData, PortJails>,
    counters: PerCpuArray<MapData, JailCounters>,
    capacity: Capacity,
    /// Jails holding at least one prefix ban, as written into the `jail_ports` slots.
    prefix_jails: u64,
}

/// Capacities of the ban maps, for "map full" messages.
#[derive(Clone, Copy, Debug)]
struct Capacity {
    ban_v4: u32,
    ban_v6: u32,
    prefix_v4: u32,
    prefix_v6: u32,
}

impl Datapath {
    /// Loads the object, reusing the maps pinned in `options.pin_dir` if an earlier run left
    /// them (their bans stay in force), pinning new ones otherwise. Attaches nothing, and
    /// loads no program yet: [`Datapath::attach`] loads the one its hook needs.
    pub fn open(options: DatapathOptions) -> Result<Self, DatapathError> {
        let pin_dir = options.pin_dir.clone();
        bpffs::prepare_pin_dir(&pin_dir)?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pin_dir)
            .map_max_entries(maps::BAN_V4, options.max_bans_v4)
            .map_max_entries(maps::BAN_V6, options.max_bans_v6)
            .map_max_entries(maps::PREFIX_V4, options.max_prefix_bans)
            .map_max_entries(maps::PREFIX_V6, options.max_prefix_bans)
            .override_global(aya_log::LEVEL, &(options.log_level as u8), false)
            .load(PROGRAM)
            .map_err(|source| load_error(source, &pin_dir))?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => Some(logger),
            Err(e) => {
                warn!("kernel debug events are unavailable: {e}");
                None
            }
        };
        let mut take = |name| {
            ebpf.take_map(name)
                .ok_or(DatapathError::MissingObject { kind: "map", name })
        };
        let maps = Maps::from_parts(
            pin_dir,
            [
                take(maps::BAN_V4)?,
                take(maps::BAN_V6)?,
                take(maps::PREFIX_V4)?,
                take(maps::PREFIX_V6)?,
                take(maps::JAIL_PORTS)?,
                take(maps::COUNTERS)?,
            ],
        )?;
        Ok(Self {
            ebpf,
            xdp_name: None,
            xdp_linear: options.xdp_linear,
            tc_clsact: options.tc_clsact,
            maps,
            logger,
        })
    }

    /// The maps, to ban, unban, list and count.
    pub fn maps(&mut self) -> &mut Maps {
        &mut self.maps
    }

    /// Passes the program's pending debug events to the `log` facade (and so to the
    /// agent's log). A daemon calls this when [`Datapath::kernel_log_fd`] is readable.
    pub fn flush_kernel_log(&mut self) {
        if let Some(logger) = &mut self.logger {
            logger.flush();
        }
    }

    /// The descriptor that becomes readable when the program has logged events.
    pub fn kernel_log_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd as _;
        self.logger.as_ref().map(|logger| logger.as_fd())
    }

    /// Attaches the verdict to `interface` (a name in the caller's network namespace) in
    /// the hook `mode` asks for, and pins the link. If an earlier run pinned a link for it,
    /// the new program replaces the old one in that link atomically: no packet goes
    /// unfiltered in between. The log line says which hook and why.
    pub fn attach(&mut self, interface: &str, mode: AttachMode) -> Result<Attached, DatapathError> {
        let attached = hooks::attach(
            hooks::Programs {
                ebpf: &mut self.ebpf,
                xdp_name: &mut self.xdp_name,
                xdp_linear: self.xdp_linear,
                clsact: self.tc_clsact,
            },
            &self.maps.pin_dir,
            interface,
            mode,
        )?;
        info!(
            interface,
            hook = attached.hook.name(),
            replaced = attached.replaced,
            why = attached.why.as_str(),
            "datapath attached"
        );
        Ok(attached)
    }

    /// The XDP program (loaded now if it is not yet), for running it on test packets
    /// (`BPF_PROG_TEST_RUN`).
    pub fn program(&mut self) -> Result<&mut Xdp, DatapathError> {
        xdp_loaded(&mut self.ebpf, &mut self.xdp_name, self.xdp_linear)
    }

    /// The tc program (loaded now if it is not yet), for running it on test packets.
    pub fn tc_program(&mut self) -> Result<&mut SchedClassifier, DatapathError> {
        tc_loaded(&mut self.ebpf)
    }

    /// The single-buffer XDP twin, loaded on first use beside the program in use, so that
    /// tests and benchmarks run the same frames through both.
    pub fn xdp_linear_program(&mut self) -> Result<&mut Xdp, DatapathError> {
        let program: &mut Xdp = program_mut(&mut self.ebpf, programs::XDP_LINEAR)?;
        if program.fd().is_err() {
            program
                .load()
                .map_err(|e| DatapathError::program("load", e))?;
        }
        Ok(program)
    }

    /// Which XDP program is loaded (loading it now if it is not yet): multi-buffer, or its
    /// single-buffer twin.
    pub fn xdp_program_name(&mut self) -> Result<&'static str, DatapathError> {
        self.program()?;
        self.xdp_name.ok_or(DatapathError::MissingObject {
            kind: "program",
            name: programs::XDP,
        })
    }
}

impl Maps {
    /// Opens the maps an agent pinned in `pin_dir`, without loading the program.
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, DatapathError> {
        let open = |name: &'static str| {
            let path = pin_dir.join(name);
            let data = MapData::from_pin(&path).map_err(|e| match e {
                MapError::SyscallError(ref s)
                    if s.io_error.kind() == std::io::ErrorKind::NotFound =>
                {
                    DatapathError::NotPinned { path: path.clone() }
                }
                e => DatapathError::map("open the pin of", name, e),
            })?;
            aya::maps::Map::from_map_data(data).map_err(|e| DatapathError::map("open", name, e))
        };
        let [ban_v4, ban_v6, prefix_v4, prefix_v6, jail_ports, counters] = maps::ALL;
        let parts = [
            open(ban_v4)?,
            open(ban_v6)?,
            open(prefix_v4)?,
            open(prefix_v6)?,
            open(jail_ports)?,
            open(counters)?,
        ];
        Self::from_parts(pin_dir.to_owned(), parts)
    }

    /// Whether the maps are still pinned: `false` after bpffs was unmounted or the pins
    /// removed (the maps live on while a program or a descriptor holds them).
    pub fn pinned(&self) -> bool {
        maps::ALL
            .iter()
            .all(|name| self.pin_dir.join(name).exists())
    }

    /// Pins the maps again from the descriptors this process holds, so that the next run
    /// (and `bpftool`) finds them with their bans. The pin directory must be on bpffs again
    /// (`/sys/fs/bpf` is mounted when missing).
    pub fn repin(&self) -> Result<(), DatapathError> {
        bpffs::prepare_pin_dir(&self.pin_dir)?;
        let held: [(&str, &MapData); 6] = [
            (maps::BAN_V4, self.ban_v4.map()),
            (maps::BAN_V6, self.ban_v6.map()),
            (maps::PREFIX_V4, self.prefix_v4.map()),
            (maps::PREFIX_V6, self.prefix_v6.map()),
            (maps::JAIL_PORTS, self.jail_ports.map()),
            (maps::COUNTERS, self.counters.map()),
        ];
        for (name, data) in held {
            let path = self.pin_dir.join(name);
            if path.exists() {
                continue;
            }
            data.pin(&path).map_err(|e| DatapathError::Repin {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// Capacity of each ban map, by map name.
    pub fn capacities(&self) -> [(&'static str, u32); 4] {
        [
            (maps::BAN_V4, self.capacity.ban_v4),
            (maps::BAN_V6, self.capacity.ban_v6),
            (maps::PREFIX_V4, self.capacity.prefix_v4),
            (maps::PREFIX_V6, self.capacity.prefix_v6),
        ]
    }

    /// The directory holding the pins.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// `parts` in the order of [`ban_common::maps::ALL`].
    fn from_parts(pin_dir: PathBuf, parts: [aya::maps::Map; 6]) -> Result<Self, DatapathError> {
        let [ban_v4, ban_v6, prefix_v4, prefix_v6, jail_ports, counters] = parts;
        let capacity = Capacity {
            ban_v4: max_entries(&ban_v4, maps::BAN_V4)?,
            ban_v6: max_entries(&ban_v6, maps::BAN_V6)?,
            prefix_v4: max_entries(&prefix_v4, maps::PREFIX_V4)?,
            prefix_v6: max_entries(&prefix_v6, maps::PREFIX_V6)?,
        };
        let mut maps = Self {
            pin_dir,
            ban_v4: typed(ban_v4, maps::BAN_V4)?,
            ban_v6: typed(ban_v6, maps::BAN_V6)?,
            prefix_v4: typed(prefix_v4, maps::PREFIX_V4)?,
            prefix_v6: typed(prefix_v6, maps::PREFIX_V6)?,
            jail_ports: typed(jail_ports, maps::JAIL_PORTS)?,
            counters: typed(counters, maps::COUNTERS)?,
            capacity,
            prefix_jails: 0,
        };
        maps.prefix_jails = maps.jails_with_prefix_bans()?;
        Ok(maps)
    }

    /// Declares which ports every jail protects; jails not listed protect nothing (their
    /// bans stay in the maps but match no packet). Writes only the slots that change.
    pub fn set_jails(&mut self, jails: &[JailPorts]) -> Result<(), DatapathError> {
        let mut wanted = vec![0u64; JAIL_PORTS_LEN as usize];
        for spec in jails {
            let bit = jail_bit(spec.jail)?;
            let classes: &[u32] = match spec.protocol {
                Protocol::Tcp => &[proto::TCP],
                Protocol::Udp => &[proto::UDP],
                Protocol::All => &[proto::TCP, proto::UDP],
            };
            for &class in classes {
                let ports: Box<dyn Iterator<Item = u16>> = match &spec.ports {
                    Some(ports) => Box::new(ports.iter().copied()),
                    None => {
                        wanted[unknown_port_slot(class) as usize] |= bit;
                        Box::new(0..=u16::MAX)
                    }
                };
                for port in ports {
                    wanted[port_slot(class, port) as usize] |= bit;
                }
            }
            if spec.ports.is_none() && spec.protocol == Protocol::All {
                wanted[unknown_port_slot(proto::OTHER) as usize] |= bit;
            }
        }
        self.write_slots(|_, _| true, |slot, _| wanted[slot as usize])
    }

    /// Rewrites the slots whose value changes: `select` picks the slots to look at,
    /// `jails` gives each one's jail mask; the derived fields follow from it.
    fn write_slots(
        &mut self,
        select: impl Fn(u32, &PortJails) -> bool,
        jails: impl Fn(u32, &PortJails) -> u64,
    ) -> Result<(), DatapathError> {
        for (slot, current) in (0..).zip(self.slots()?) {
            if !select(slot, &current) {
                continue;
            }
            let mask = jails(slot, &current);
            let value = PortJails {
                jails: mask,
                prefix_jails: mask & self.prefix_jails,
                first_jail: if mask == 0 { 0 } else { mask.trailing_zeros() },
                jail_count: mask.count_ones(),
            };
            if current != value {
                self.jail_ports
                    .set(slot, &value, 0)
                    .map_err(|e| DatapathError::map("write", maps::JAIL_PORTS, e))?;
            }
        }
        Ok(())
    }

    /// The jails that protect at least one destination (a mask of jail bits).
    pub fn protected_jails(&self) -> Result<u64, DatapathError> {
        Ok(self.slots()?.iter().fold(0, |mask, slot| mask | slot.jails))
    }

    /// Every slot of `jail_ports`, in order: read in a few batch calls where the kernel
    /// has them, else a slot at a time (131k system calls, which were most of the agent's
    /// start).
    fn slots(&self) -> Result<Vec<PortJails>, DatapathError> {
        let batched =
            batch::entries::<u32, PortJails>(self.jail_ports.map()).map_err(|io_error| {
                let call = "bpf_map_lookup_batch";
                DatapathError::map(
                    "read",
                    maps::JAIL_PORTS,
                    SyscallError { call, io_error }.into(),
                )
            })?;
        let len = JAIL_PORTS_LEN as usize;
        if let Some(entries) = batched.filter(|entries| entries.len() == len) {
            let mut slots = vec![PortJails::default(); len];
            for (slot, value) in entries {
                if let Some(place) = slots.get_mut(slot as usize) {
                    *place = value;
                }
            }
            return Ok(slots);
        }
        (0..JAIL_PORTS_LEN)
            .map(|slot| {
                self.jail_ports
                    .get(&slot, 0)
                    .map_err(|e| DatapathError::map("read", maps::JAIL_PORTS, e))
            })
            .collect()
    }

    /// Packets and bytes dropped and passed per jail, summed over CPUs; jails with no
    /// traffic are left out.
    pub fn counters(&self) -> Result<Vec<(u32, JailCounters)>, DatapathError> {
        let mut out = Vec::new();
        for jail in 0..MAX_JAILS {
            let per_cpu = self
                .counters
                .get(&jail, 0)
                .map_err(|e| DatapathError::map("read", maps::COUNTERS, e))?;
            let total = per_cpu
                .iter()
                .fold(JailCounters::default(), |sum, c| sum.add(*c));
            if total != JailCounters::default() {
                out.push((jail, total));
            }
        }
        Ok(out)
    }
}

/// Fails with one message naming every interface of `interfaces` that this network
/// namespace does not have; called before anything is loaded or pinned, so that a typo
/// leaves nothing behind.
pub fn check_interfaces(interfaces: &[String]) -> Result<(), DatapathError> {
    let missing: Vec<&str> = interfaces
        .iter()
        .filter(|name| ethtool::interface_index(name).is_none())
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(DatapathError::NoInterface {
        interface: missing.join(", "),
    })
}

/// Detaches the verdict from every interface (XDP and tc links) and removes every pin under
/// `pin_dir`: all bans are lifted. Works from any process, with or without a running agent.
pub fn detach(pin_dir: &Path) -> Result<(), DatapathError> {
    let entries = match fs::read_dir(pin_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(DatapathError::Io {
                op: "read directory",
                path: pin_dir.to_owned(),
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| DatapathError::Io {
            op: "read directory",
            path: pin_dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Some(interface) = hooks::clsact_interface(&file_name) {
            hooks::remove_clsact_filter(interface)?;
            remove_file(&path)?;
            info!(pin = %path.display(), "clsact filter removed");
        } else if hooks::is_link_pin(&file_name) {
            // Unpinning drops the last reference: the kernel detaches the program.
            hooks::unpin_link(&path)?;
            info!(pin = %path.display(), "detached");
        } else {
            remove_file(&path)?;
        }
    }
    fs::remove_dir(pin_dir).map_err(|source| DatapathError::Io {
        op: "remove directory",
        path: pin_dir.to_owned(),
        source,
    })
}

/// The bpffs instance `pin_dir` is on (its parent's mount), `None` when that is not bpffs:
/// compared with the one seen at attach, it tells a pin directory removed on purpose from
/// one lost with an unmount.
pub fn pin_instance(pin_dir: &Path) -> Option<u64> {
    bpffs::instance(pin_dir)
}

/// The links (XDP or tc) of the attached interfaces, held open by the daemon. A link lives while a
/// pin or a descriptor holds it: held, the program stays attached when bpffs is unmounted
/// or the pins are removed, and the links can be pinned again.
pub struct HeldLinks {
    links: Vec<(PathBuf, Option<FdLink>)>,
}

impl HeldLinks {
    /// Opens the pinned link of each of `interfaces` that has one.
    pub fn hold(pin_dir: &Path, interfaces: &[String]) -> Result<Self, DatapathError> {
        let mut links = Vec::new();
        for path in interfaces
            .iter()
            .flat_map(|interface| hooks::link_pins(pin_dir, interface))
        {
            if !path.exists() {
                continue;
            }
            let link = PinnedLink::from_pin(&path).map_err(|e| DatapathError::Link {
                op: "open",
                path: path.clone(),
                detail: e.to_string(),
            })?;
            links.push((path, Some(FdLink::from(link))));
        }
        Ok(Self { links })
    }

    /// Whether every held link is still pinned.
    pub fn pinned(&self) -> bool {
        self.links.iter().all(|(path, _)| path.exists())
    }

    /// Pins the held links whose pins are gone (after [`Maps::repin`]).
    pub fn repin(&mut self) -> Result<(), DatapathError> {
        for (path, slot) in &mut self.links {
            if path.exists() {
                continue;
            }
            let Some(link) = slot.take() else { continue };
            let pinned = link.pin(&*path).map_err(|e| DatapathError::Repin {
                path: path.clone(),
                detail: e.to_string(),
            })?;
            *slot = Some(FdLink::from(pinned));
        }
        Ok(())
    }
}

/// The XDP program, loaded on first use: multi-buffer, or its single-buffer twin when the
/// kernel refuses `xdp.frags` (before 5.18) or `linear` asks for it; `name` keeps which.
fn xdp_loaded<'e>(
    ebpf: &'e mut Ebpf,
    name: &mut Option<&'static str>,
    linear: bool,
) -> Result<&'e mut Xdp, DatapathError> {
    let loaded = match *name {
        Some(loaded) => loaded,
        None => *name.insert(load_xdp(ebpf, linear)?),
    };
    program_mut(ebpf, loaded)
}

/// The tc program, loaded on first use.
fn tc_loaded(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, DatapathError> {
    let program: &mut SchedClassifier = program_mut(ebpf, programs::TC)?;
    if program.fd().is_err() {
        program
            .load()
            .map_err(|e| DatapathError::program("load", e))?;
    }
    Ok(program)
}

/// Loads the multi-buffer XDP program, or its single-buffer twin when the kernel refuses
/// `xdp.frags` (before 5.18) or `linear` asks for it; returns the name loaded.
fn load_xdp(ebpf: &mut Ebpf, linear: bool) -> Result<&'static str, DatapathError> {
    if !linear {
        let loaded = program_mut::<Xdp>(ebpf, programs::XDP)?.load();
        match loaded {
            Ok(()) => return Ok(programs::XDP),
            Err(e) => warn!(
                "this kernel refuses multi-buffer XDP ({}); loading the single-buffer \
                 program: frames larger than one buffer (jumbo MTUs) pass unjudged under \
                 native XDP, so use tc for them (Linux >= 5.18 takes xdp.frags)",
                crate::cause_text(&e)
            ),
        }
    }
    program_mut::<Xdp>(ebpf, programs::XDP_LINEAR)?
        .load()
        .map_err(|e| DatapathError::program("load", e))?;
    Ok(programs::XDP_LINEAR)
}

fn program_mut<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, DatapathError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(DatapathError::MissingObject {
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|e| DatapathError::program("find", e))
}

fn typed<T>(map: aya::maps::Map, name: &'static str) -> Result<T, DatapathError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    T::try_from(map).map_err(|e| DatapathError::map("open", name, e))
}

fn max_entries(map: &aya::maps::Map, name: &'static str) -> Result<u32, DatapathError> {
    use aya::maps::Map;
    let data = match map {
        Map::HashMap(data) | Map::LpmTrie(data) => data,
        _ => {
            return Err(DatapathError::MissingObject {
                kind: "hash or trie map",
                name,
            });
        }
    };
    data.info()
        .map(|info| info.max_entries())
        .map_err(|e| DatapathError::map("inspect", name, e))
}

fn load_error(source: aya::EbpfError, pin_dir: &Path) -> DatapathError {
    if let aya::EbpfError::MapError(MapError::IncompatiblePinnedMap {
        name,
        property,
        expected,
        actual,
    }) = &source
    {
        return DatapathError::IncompatiblePin {
            path: pin_dir.join(name),
            pin_dir: pin_dir.to_owned(),
            detail: format!("{property} is {actual}, this version needs {expected}"),
        };
    }
    DatapathError::Load {
        source: Box::new(source),
    }
}

fn jail_bit(jail: u32) -> Result<u64, DatapathError> {
    if jail >= MAX_JAILS {
        return Err(DatapathError::JailOutOfRange { jail });
    }
    Ok(1u64 << jail)
}

pub(crate) fn remove_file(path: &Path) -> Result<(), DatapathError> {
    fs::remove_file(path).map_err(|source| DatapathError::Io {
        op: "remove",
        path: path.to_owned(),
        source,
    })
}
