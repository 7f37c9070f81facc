//! The contract between the XDP program (`ban-ebpf`) and the agent (`ban-agent`).
//!
//! Everything both sides must agree on lives here and nowhere else: map names, pin paths,
//! the `#[repr(C)]` layout of every map key and value, and what the numbers mean.
//! Addresses are stored as bytes in network order, so `bpftool map dump` prints them in the
//! order a person reads them (`[192, 0, 2, 7]`).
//!
//! # Clock
//! Ban expiries are `CLOCK_BOOTTIME` nanoseconds: the XDP program reads
//! `bpf_ktime_get_boot_ns()`, the agent `clock_gettime(CLOCK_BOOTTIME)`. That clock keeps
//! counting while the machine is suspended and never jumps with the wall clock, so the kernel
//! can enforce the expiry alone, even when the agent is dead. It restarts at 0 on reboot,
//! which is why the agent keeps wall-clock expiries on disk and converts on restore.
#![no_std]

/// How many jails one datapath can serve. A jail is identified by its index `0..MAX_JAILS`;
/// masks of jails are `u64` bit sets (bit `j` = jail `j`).
pub const MAX_JAILS: u32 = 64;

/// Where the agent pins its maps and links (one directory on a bpffs mount).
pub const PIN_DIR: &str = "/sys/fs/bpf/ban-agent";

/// Programs in the object file: one verdict (parse, look up, decide, count), three entry
/// points that only adapt the context and the return codes.
pub mod programs {
    /// XDP, declaring multi-buffer (`xdp.frags`) support: jumbo frames on native drivers.
    pub const XDP: &str = "ban_xdp";
    /// The same XDP program without frags, for kernels before 5.18 that refuse the flag.
    pub const XDP_LINEAR: &str = "ban_xdp_linear";
    /// tc ingress (`sched_cls`, direct action): where native XDP would cost offloads.
    pub const TC: &str = "ban_tc";
}

/// Name of the XDP program in the object file (kept for tools that name it).
pub const PROGRAM_NAME: &str = programs::XDP;

/// tc return code of a packet the program lets through: `TC_ACT_UNSPEC`, so that the next
/// program of the TCX chain (or filter of the clsact qdisc) still sees it; at the end of
/// the chain it is passed.
pub const TC_PASS: i32 = -1;
/// tc return code of a dropped packet: `TC_ACT_SHOT`.
pub const TC_DROP: i32 = 2;

/// Map names. They are also the file names of the pins under [`PIN_DIR`], and at most
/// 15 bytes long, the kernel's limit for object names.
pub mod maps {
    /// Exact IPv4 bans: [`crate::BanKeyV4`] → [`crate::Ban`]. A hash map, not LRU: an LRU map
    /// would evict live bans under a flood.
    pub const BAN_V4: &str = "ban_v4";
    /// Exact IPv6 bans: [`crate::BanKeyV6`] → [`crate::Ban`].
    pub const BAN_V6: &str = "ban_v6";
    /// IPv4 prefix bans (any CIDR): LPM trie of [`crate::PrefixV4`] → [`crate::Ban`].
    pub const PREFIX_V4: &str = "ban_prefix_v4";
    /// IPv6 prefix bans (any CIDR): LPM trie of [`crate::PrefixV6`] → [`crate::Ban`].
    pub const PREFIX_V6: &str = "ban_prefix_v6";
    /// Which jails protect a destination: array of [`crate::PortJails`] indexed by
    /// [`crate::port_slot`] or [`crate::unknown_port_slot`].
    pub const JAIL_PORTS: &str = "jail_ports";
    /// Per-CPU [`crate::JailCounters`], indexed by jail.
    pub const COUNTERS: &str = "jail_counters";

    /// Every pinned map, for cleanup and inspection.
    pub const ALL: [&str; 6] = [BAN_V4, BAN_V6, PREFIX_V4, PREFIX_V6, JAIL_PORTS, COUNTERS];
}

/// Default capacities of the ban maps (entries). They are allocated on demand
/// (`BPF_F_NO_PREALLOC`), so a large capacity costs nothing until it is used.
pub const DEFAULT_MAX_BANS_V4: u32 = 1 << 20;
/// See [`DEFAULT_MAX_BANS_V4`].
pub const DEFAULT_MAX_BANS_V6: u32 = 1 << 20;
/// Capacity of each prefix trie.
pub const DEFAULT_MAX_PREFIX_BANS: u32 = 1 << 16;

/// Transport classes a jail can protect: the first half of [`port_slot`].
pub mod proto {
    /// TCP.
    pub const TCP: u32 = 0;
    /// UDP.
    pub const UDP: u32 = 1;
    /// Anything else (ICMP, SCTP, ESP, ...): only a jail that protects all ports of all
    /// protocols applies.
    pub const OTHER: u32 = 2;
    /// Number of classes.
    pub const COUNT: u32 = 3;
}

/// Number of entries of the `jail_ports` array: one per TCP port, one per UDP port, and
/// one per transport class for packets whose port is unknown.
pub const JAIL_PORTS_LEN: u32 = 2 * 65536 + proto::COUNT;

/// Index into the `jail_ports` array for a transport class ([`proto::TCP`] or
/// [`proto::UDP`]) and a destination port.
#[inline(always)]
pub const fn port_slot(proto: u32, port: u16) -> u32 {
    proto * 65536 + port as u32
}

/// Index into the `jail_ports` array for a packet of this transport class whose port is
/// unknown: non-first fragments, packets truncated before the port, and protocols without
/// ports ([`proto::OTHER`]). Only jails that protect all ports are listed there.
#[inline(always)]
pub const fn unknown_port_slot(proto: u32) -> u32 {
    2 * 65536 + proto
}

/// Key of the exact IPv4 ban map: one ban of one address in one jail.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BanKeyV4 {
    /// Jail index, `0..MAX_JAILS`.
    pub jail: u32,
    /// The banned address, network order.
    pub addr: [u8; 4],
}

/// Key of the exact IPv6 ban map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BanKeyV6 {
    /// Jail index, `0..MAX_JAILS`.
    pub jail: u32,
    /// The banned address, network order.
    pub addr: [u8; 16],
}

/// Data part of an IPv4 prefix-trie key. The trie's prefix length counts the jail's 32 bits
/// first, so a /24 ban is stored with prefix length `32 + 24`; see [`PREFIX_JAIL_BITS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrefixV4 {
    /// Jail index. Matched in full, so its byte order does not matter.
    pub jail: u32,
    /// The network's address, network order, host bits zero.
    pub addr: [u8; 4],
}

/// Data part of an IPv6 prefix-trie key; see [`PrefixV4`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrefixV6 {
    /// Jail index.
    pub jail: u32,
    /// The network's address, network order, host bits zero.
    pub addr: [u8; 16],
    /// Always zero, never matched (the prefix length stops before it). The trie stores the
    /// value right after the key data, so the data must be a multiple of the value's
    /// 8-byte alignment.
    pub reserved: u32,
}

/// Bits of a prefix-trie key taken by the jail before the address.
pub const PREFIX_JAIL_BITS: u32 = 32;

/// Value of every ban map: when the ban ends.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ban {
    /// `CLOCK_BOOTTIME` nanoseconds at which the ban stops dropping; [`PERMANENT`] for never.
    pub expires_at_ns: u64,
}

/// [`Ban::expires_at_ns`] of a ban that never expires.
pub const PERMANENT: u64 = 0;

impl Ban {
    /// Whether the ban still drops at boot-clock time `now_ns`.
    #[inline(always)]
    pub const fn active_at(&self, now_ns: u64) -> bool {
        self.expires_at_ns == PERMANENT || now_ns < self.expires_at_ns
    }
}

/// Value of one `jail_ports` slot: everything the program needs to judge a packet to that
/// destination, so that it is found with a single array lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortJails {
    /// Jails that protect this destination (jails that protect all ports included).
    pub jails: u64,
    /// Those of `jails` that hold at least one prefix ban: the tries are searched only for
    /// these, so legitimate traffic pays nothing for empty tries.
    pub prefix_jails: u64,
    /// The lowest jail in `jails`; when it is the only one, the program looks it up
    /// directly instead of walking the mask.
    pub first_jail: u32,
    /// Number of jails in `jails`.
    pub jail_count: u32,
}

/// Traffic counters of one jail on one CPU. "Passed" counts packets to a port the jail
/// protects from sources it does not ban; traffic to unprotected ports is not counted.
/// The tc hook sees GRO aggregates: it counts each as the segments it carries, so both
/// hooks count wire packets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JailCounters {
    /// Packets dropped because their source is banned.
    pub dropped_packets: u64,
    /// Bytes of those packets (from the Ethernet header on, every buffer of a multi-buffer
    /// frame included).
    pub dropped_bytes: u64,
    /// Packets to a protected port that were let through.
    pub passed_packets: u64,
    /// Bytes of those packets.
    pub passed_bytes: u64,
}

impl JailCounters {
    /// Sum of two counter sets (used to fold the per-CPU values).
    pub const fn add(self, other: Self) -> Self {
        Self {
            dropped_packets: self.dropped_packets.wrapping_add(other.dropped_packets),
            dropped_bytes: self.dropped_bytes.wrapping_add(other.dropped_bytes),
            passed_packets: self.passed_packets.wrapping_add(other.passed_packets),
            passed_bytes: self.passed_bytes.wrapping_add(other.passed_bytes),
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type is #[repr(C)], made only of integers and byte arrays, with no
    // padding (checked by the size assertions below), so any bit pattern is valid.
    unsafe impl aya::Pod for super::BanKeyV4 {}
    unsafe impl aya::Pod for super::BanKeyV6 {}
    unsafe impl aya::Pod for super::PrefixV4 {}
    unsafe impl aya::Pod for super::PrefixV6 {}
    unsafe impl aya::Pod for super::Ban {}
    unsafe impl aya::Pod for super::PortJails {}
    unsafe impl aya::Pod for super::JailCounters {}
}

// No padding anywhere: a padded key would make equal bans hash differently.
const _: () = {
    assert!(core::mem::size_of::<BanKeyV4>() == 8);
    assert!(core::mem::size_of::<BanKeyV6>() == 20);
    assert!(core::mem::size_of::<PrefixV4>() == 8);
    assert!(core::mem::size_of::<PrefixV6>() == 24);
    assert!(core::mem::size_of::<Ban>() == 8);
    assert!(core::mem::size_of::<PortJails>() == 24);
    assert!(core::mem::size_of::<JailCounters>() == 32);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_slots_do_not_overlap() {
        assert_eq!(port_slot(proto::TCP, 0), 0);
        assert_eq!(port_slot(proto::TCP, u16::MAX), 65535);
        assert_eq!(port_slot(proto::UDP, 0), 65536);
        assert_eq!(
            port_slot(proto::UDP, u16::MAX),
            unknown_port_slot(proto::TCP) - 1
        );
        assert_eq!(unknown_port_slot(proto::OTHER), JAIL_PORTS_LEN - 1);
    }

    #[test]
    fn expiry_is_exclusive_and_permanent_never_ends() {
        let ban = Ban { expires_at_ns: 100 };
        assert!(ban.active_at(99));
        assert!(!ban.active_at(100));
        assert!(
            Ban {
                expires_at_ns: PERMANENT
            }
            .active_at(u64::MAX)
        );
    }

    #[test]
    fn map_names_fit_the_kernel_limit() {
        for name in maps::ALL {
            assert!(name.len() <= 15, "{name} is longer than 15 bytes");
        }
    }
}
