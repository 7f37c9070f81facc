//! The verdict, written once for every hook: find the jails that protect the packet's
//! destination (one array lookup), look its source up in those jails' bans, decide, count.
//! The maps live here; the entry points in `main.rs` only adapt context and return codes.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    btf_maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    helpers::bpf_ktime_get_boot_ns,
    macros::btf_map,
};
use ban_common::{
    Ban, BanKeyV4, BanKeyV6, DEFAULT_MAX_BANS_V4, DEFAULT_MAX_BANS_V6, DEFAULT_MAX_PREFIX_BANS,
    JAIL_PORTS_LEN, JailCounters, MAX_JAILS, PREFIX_JAIL_BITS, PortJails, PrefixV4, PrefixV6,
    port_slot, proto, unknown_port_slot,
};

use crate::parse::{Packet, Source};

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
static JAIL_PORTS: Array<PortJails, { JAIL_PORTS_LEN as usize }> = Array::new();

#[btf_map(name = "jail_counters", pin_by_name)]
static COUNTERS: PerCpuArray<JailCounters, { MAX_JAILS as usize }> = PerCpuArray::new();

/// How much of the wire a packet is: bytes, and the segments a GRO aggregate stands for.
#[derive(Clone, Copy)]
pub struct Size {
    pub bytes: u64,
    pub packets: u64,
}

/// The jail that drops `packet`, or `None` to let it through. `size` is asked only for a
/// packet to a protected destination, so other traffic never pays for it.
#[inline(always)]
pub fn judge_packet(packet: &Packet, size: impl FnOnce() -> Size) -> Option<u32> {
    let slot = match packet.port {
        Some(port) if packet.proto != proto::OTHER => port_slot(packet.proto, port),
        _ => unknown_port_slot(packet.proto),
    };
    let dest = JAIL_PORTS.get(slot)?;
    if dest.jails == 0 {
        return None;
    }
    let size = size();
    let jail = match packet.source {
        Source::V4(addr) => judge(V4(addr), dest, size),
        Source::V6(addr) => judge(V6(addr), dest, size),
    };
    (jail != NOT_BANNED).then_some(jail)
}

/// Verdict meaning "let it through".
pub const NOT_BANNED: u32 = u32::MAX;

/// The jail that drops the packet, or [`NOT_BANNED`]; counts either way.
///
/// Most destinations are protected by one jail: it is looked up directly. Several jails
/// are walked by [`walk_jails`].
#[inline(always)]
fn judge<A: Address>(addr: A, dest: &PortJails, size: Size) -> u32 {
    if dest.jail_count != 1 {
        let jail = walk_jails(addr, dest.jails, dest.prefix_jails);
        if jail == NOT_BANNED {
            count_each_passed(dest.jails, size);
        } else {
            count(jail, size, true);
        }
        return jail;
    }
    let jail = dest.first_jail;
    let mut now = Clock::Unread;
    if banned(&addr, jail, dest.prefix_jails, &mut now) {
        count(jail, size, true);
        jail
    } else {
        count(jail, size, false);
        NOT_BANNED
    }
}

/// Whether `jail` holds a live ban of `addr`, exact or by prefix.
#[inline(always)]
fn banned<A: Address>(addr: &A, jail: u32, prefix_jails: u64, now: &mut Clock) -> bool {
    addr.exact_ban(jail).is_some_and(|ban| now.active(ban))
        || (prefix_jails & (1u64 << (jail & 63)) != 0
            && addr.prefix_ban(jail).is_some_and(|ban| now.active(ban)))
}

/// The first jail of `jails` that bans `addr`, or [`NOT_BANNED`].
///
/// A separate BPF function that takes only numbers: the verifier checks its loop once,
/// however many parse paths lead to it, instead of once per path.
#[inline(never)]
fn walk_jails<A: Address>(addr: A, jails: u64, prefix_jails: u64) -> u32 {
    let mut now = Clock::Unread;
    let mut rest = jails;
    let mut jail = 0u32;
    while jail < MAX_JAILS && rest != 0 {
        if rest & 1 != 0 && banned(&addr, jail, prefix_jails, &mut now) {
            return jail;
        }
        rest >>= 1;
        jail += 1;
    }
    NOT_BANNED
}

/// An address family's view of the ban maps.
trait Address {
    /// The exact ban of this address in `jail`.
    fn exact_ban(&self, jail: u32) -> Option<&Ban>;
    /// The longest prefix ban covering this address in `jail`.
    fn prefix_ban(&self, jail: u32) -> Option<&Ban>;
}

/// An IPv4 source, network order.
#[derive(Clone, Copy)]
struct V4([u8; 4]);

/// An IPv6 source, network order.
#[derive(Clone, Copy)]
struct V6([u8; 16]);

impl Address for V4 {
    #[inline(always)]
    fn exact_ban(&self, jail: u32) -> Option<&Ban> {
        let key = BanKeyV4 { jail, addr: self.0 };
        // SAFETY: the kernel keeps a map value valid for the rest of this program run;
        // the agent replaces a ban's 8-byte value whole.
        BAN_V4.get_ptr(&key).map(|ban| unsafe { &*ban })
    }

    #[inline(always)]
    fn prefix_ban(&self, jail: u32) -> Option<&Ban> {
        let key = PrefixV4 { jail, addr: self.0 };
        PREFIX_V4.get(&Key::new(PREFIX_JAIL_BITS + 32, key))
    }
}

impl Address for V6 {
    #[inline(always)]
    fn exact_ban(&self, jail: u32) -> Option<&Ban> {
        let key = BanKeyV6 { jail, addr: self.0 };
        // SAFETY: as for IPv4.
        BAN_V6.get_ptr(&key).map(|ban| unsafe { &*ban })
    }

    #[inline(always)]
    fn prefix_ban(&self, jail: u32) -> Option<&Ban> {
        let key = PrefixV6 {
            jail,
            addr: self.0,
            reserved: 0,
        };
        PREFIX_V6.get(&Key::new(PREFIX_JAIL_BITS + 128, key))
    }
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
fn count(jail: u32, size: Size, dropped: bool) {
    if let Some(counters) = COUNTERS.get_ptr_mut(jail) {
        // SAFETY: the per-CPU slot belongs to this CPU, and neither XDP nor tc ingress
        // (softirq, bottom halves off) preempts itself on a CPU.
        let counters = unsafe { &mut *counters };
        if dropped {
            counters.dropped_packets += size.packets;
            counters.dropped_bytes += size.bytes;
        } else {
            counters.passed_packets += size.packets;
            counters.passed_bytes += size.bytes;
        }
    }
}

/// Counts a passed packet for every jail in `jails`; a separate BPF function for the same
/// reason as [`walk_jails`].
#[inline(never)]
fn count_each_passed(jails: u64, size: Size) {
    let mut rest = jails;
    let mut jail = 0u32;
    while jail < MAX_JAILS && rest != 0 {
        if rest & 1 != 0 {
            count(jail, size, false);
        }
        rest >>= 1;
        jail += 1;
    }
}
