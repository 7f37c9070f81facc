//! The verdict, top to bottom: parse the packet, find the jails that protect its port,
//! look its source up in those jails' bans, drop it if a live ban matches, count.
//!
//! The clock is read only once a ban has matched: legitimate traffic never pays for it.
#![no_std]
#![no_main]

mod parse;

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, xdp_action},
    btf_maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    helpers::bpf_ktime_get_boot_ns,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use ban_common::{
    Ban, BanKeyV4, BanKeyV6, DEFAULT_MAX_BANS_V4, DEFAULT_MAX_BANS_V6, DEFAULT_MAX_PREFIX_BANS,
    DatapathConfig, JAIL_PORTS_LEN, JailCounters, MAX_JAILS, PREFIX_JAIL_BITS, PrefixV4, PrefixV6,
    proto,
};
use parse::{Cursor, Packet, Source};

const NO_PREALLOC: usize = BPF_F_NO_PREALLOC as usize;

#[btf_map(name = "ban_v4", pin_by_name)]
static BAN_V4: HashMap<BanKeyV4, Ban, { DEFAULT_MAX_BANS_V4 as usize }, NO_PREALLOC> =
    HashMap::new();

#[btf_map(name = "ban_v6", pin_by_name)]
static BAN_V6: HashMap<BanKeyV6, Ban, { DEFAULT_MAX_BANS_V6 as usize }, NO_PREALLOC> =
    HashMap::new();

#[btf_map(name = "ban_prefix_v4", pin_by_name)]
static PREFIX_V4: LpmTrie<PrefixV4, Ban, { DEFAULT_MAX_PREFIX_BANS as usize }> = LpmTrie::new();

#[btf_map(name = "ban_prefix_v6", pin_by_name)]
static PREFIX_V6: LpmTrie<PrefixV6, Ban, { DEFAULT_MAX_PREFIX_BANS as usize }> = LpmTrie::new();

#[btf_map(name = "jail_ports", pin_by_name)]
static JAIL_PORTS: Array<u64, { JAIL_PORTS_LEN as usize }> = Array::new();

#[btf_map(name = "datapath_config", pin_by_name)]
static CONFIG: Array<DatapathConfig, 1> = Array::new();

#[btf_map(name = "jail_counters", pin_by_name)]
static COUNTERS: PerCpuArray<JailCounters, { MAX_JAILS as usize }> = PerCpuArray::new();

#[xdp]
pub fn ban_xdp(ctx: XdpContext) -> u32 {
    let cursor = Cursor::new(ctx.data(), ctx.data_end());
    let Some(packet) = parse::parse(&cursor) else {
        return xdp_action::XDP_PASS;
    };
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let port = match packet.port {
        Some(port) => u32::from(port),
        None => UNKNOWN_PORT,
    };
    let jail = match packet.source {
        Source::V4(addr) => verdict(V4(u32::from_ne_bytes(addr)), packet.proto, port, bytes),
        Source::V6(addr) => {
            let (high, low) = addr.split_at(8);
            let addr = V6 {
                high: to_u64(high),
                low: to_u64(low),
            };
            verdict(addr, packet.proto, port, bytes)
        }
    };
    if jail == NOT_BANNED {
        return xdp_action::XDP_PASS;
    }
    log_drop(&ctx, &packet, jail);
    xdp_action::XDP_DROP
}

/// `port` argument of [`verdict`] when the packet's port is unknown.
const UNKNOWN_PORT: u32 = 0x1_0000;
/// Verdict meaning "let it through".
const NOT_BANNED: u32 = u32::MAX;

/// The jail that drops the packet, or [`NOT_BANNED`]; counts either way.
///
/// A separate BPF function (one per address family) that takes only numbers: the verifier
/// checks its jail loop once, however many parse paths lead to it, instead of once per path.
#[inline(never)]
fn verdict<A: Address>(addr: A, class: u32, port: u32, bytes: u64) -> u32 {
    let Some(config) = CONFIG.get(0) else {
        return NOT_BANNED;
    };
    let jails = protecting_jails(config, class, port);
    if jails == 0 {
        return NOT_BANNED;
    }
    let prefix_jails = A::prefix_jails(config);
    let mut now = Clock::Unread;
    let mut rest = jails;
    let mut jail = 0u32;
    while jail < MAX_JAILS && rest != 0 {
        if rest & 1 != 0
            && (addr.exact_ban(jail).is_some_and(|ban| now.active(ban))
                || (prefix_jails & (1u64 << jail) != 0
                    && addr.prefix_ban(jail).is_some_and(|ban| now.active(ban))))
        {
            count(jail, bytes, true);
            return jail;
        }
        rest >>= 1;
        jail += 1;
    }
    count_passed(jails, bytes);
    NOT_BANNED
}

/// An address family's view of the ban maps.
trait Address {
    /// Jails with prefix bans of this family.
    fn prefix_jails(config: &DatapathConfig) -> u64;
    /// The exact ban of this address in `jail`.
    fn exact_ban(&self, jail: u32) -> Option<&Ban>;
    /// The longest prefix ban covering this address in `jail`.
    fn prefix_ban(&self, jail: u32) -> Option<&Ban>;
}

/// An IPv4 source, its bytes in network order packed in a `u32`.
#[derive(Clone, Copy)]
struct V4(u32);

/// An IPv6 source, its 16 network-order bytes packed in two `u64`s.
#[derive(Clone, Copy)]
struct V6 {
    high: u64,
    low: u64,
}

impl V6 {
    #[inline(always)]
    fn octets(&self) -> [u8; 16] {
        let mut addr = [0u8; 16];
        addr[..8].copy_from_slice(&self.high.to_ne_bytes());
        addr[8..].copy_from_slice(&self.low.to_ne_bytes());
        addr
    }
}

impl Address for V4 {
    #[inline(always)]
    fn prefix_jails(config: &DatapathConfig) -> u64 {
        config.prefix_v4
    }

    #[inline(always)]
    fn exact_ban(&self, jail: u32) -> Option<&Ban> {
        let key = BanKeyV4 {
            jail,
            addr: self.0.to_ne_bytes(),
        };
        // SAFETY: the kernel keeps a map value valid for the rest of this program run;
        // the agent replaces a ban's 8-byte value whole.
        BAN_V4.get_ptr(&key).map(|ban| unsafe { &*ban })
    }

    #[inline(always)]
    fn prefix_ban(&self, jail: u32) -> Option<&Ban> {
        let key = PrefixV4 {
            jail,
            addr: self.0.to_ne_bytes(),
        };
        PREFIX_V4.get(&Key::new(PREFIX_JAIL_BITS + 32, key))
    }
}

impl Address for V6 {
    #[inline(always)]
    fn prefix_jails(config: &DatapathConfig) -> u64 {
        config.prefix_v6
    }

    #[inline(always)]
    fn exact_ban(&self, jail: u32) -> Option<&Ban> {
        let key = BanKeyV6 {
            jail,
            addr: self.octets(),
        };
        // SAFETY: as for IPv4.
        BAN_V6.get_ptr(&key).map(|ban| unsafe { &*ban })
    }

    #[inline(always)]
    fn prefix_ban(&self, jail: u32) -> Option<&Ban> {
        let key = PrefixV6 {
            jail,
            addr: self.octets(),
            reserved: 0,
        };
        PREFIX_V6.get(&Key::new(PREFIX_JAIL_BITS + 128, key))
    }
}

#[inline(always)]
fn to_u64(bytes: &[u8]) -> u64 {
    let mut out = [0u8; 8];
    out.copy_from_slice(bytes);
    u64::from_ne_bytes(out)
}

/// Mask of the jails that protect a destination. A packet whose port is unknown
/// (non-first fragment, truncated, no ports) is protected only by all-ports jails.
#[inline(always)]
fn protecting_jails(config: &DatapathConfig, class: u32, port: u32) -> u64 {
    let all_ports = match class {
        proto::TCP => config.all_ports[0],
        proto::UDP => config.all_ports[1],
        _ => return config.all_ports[2],
    };
    if port > u32::from(u16::MAX) {
        return all_ports;
    }
    all_ports | JAIL_PORTS.get(class * 65536 + port).copied().unwrap_or(0)
}

/// The boot clock, read at most once per packet and only when a ban matched.
enum Clock {
    Unread,
    Read(u64),
}

impl Clock {
    #[inline(always)]
    fn active(&mut self, ban: &Ban) -> bool {
        if ban.expires_at_ns == ban_common::PERMANENT {
            return true;
        }
        let now = match *self {
            Clock::Read(now) => now,
            Clock::Unread => {
                // SAFETY: a helper without arguments or side effects.
                let now = unsafe { bpf_ktime_get_boot_ns() };
                *self = Clock::Read(now);
                now
            }
        };
        ban.active_at(now)
    }
}

#[inline(always)]
fn count(jail: u32, bytes: u64, dropped: bool) {
    if let Some(counters) = COUNTERS.get_ptr_mut(jail) {
        // SAFETY: the per-CPU slot belongs to this CPU, and XDP does not preempt itself.
        let counters = unsafe { &mut *counters };
        if dropped {
            counters.dropped_packets += 1;
            counters.dropped_bytes += bytes;
        } else {
            counters.passed_packets += 1;
            counters.passed_bytes += bytes;
        }
    }
}

#[inline(always)]
fn count_passed(jails: u64, bytes: u64) {
    let mut rest = jails;
    let mut jail = 0u32;
    while jail < MAX_JAILS && rest != 0 {
        if rest & 1 != 0 {
            count(jail, bytes, false);
        }
        rest >>= 1;
        jail += 1;
    }
}

/// A debug event per drop. At the default log level the agent sets `AYA_LOG_LEVEL` below
/// debug at load time, and the verifier removes this code as dead.
#[inline(always)]
fn log_drop(ctx: &XdpContext, packet: &Packet, jail: u32) {
    match packet.source {
        Source::V4(addr) => {
            debug!(ctx, "drop {:i} jail {}", u32::from_be_bytes(addr), jail)
        }
        Source::V6(addr) => debug!(ctx, "drop {:i} jail {}", addr, jail),
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
