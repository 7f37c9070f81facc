//! The bounded packet cursor: from the Ethernet header to the source address and the
//! destination port, with every loop bounded and every read checked against the end of
//! the packet, so the verifier accepts it and a truncated packet simply yields less.
//!
//! What it reads: Ethernet, up to [`MAX_VLAN_TAGS`] 802.1Q/802.1ad tags, IPv4 (with
//! options, by IHL) or IPv6 (walking up to [`MAX_IPV6_EXT_HEADERS`] hop-by-hop, routing,
//! destination-options, fragment and AH headers), then the TCP or UDP destination port.

use ban_common::proto;
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    vlan::VlanHdr,
};

/// 802.1Q and 802.1ad (QinQ) tags are walked up to this depth.
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers walked before giving up on the port. RFC 8200 §4.1 orders at
/// most seven (destination options may occur twice); eight leaves room for one more.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;
/// Furthest offset at which the cursor reads. Keeps the verifier's range of every
/// variable offset bounded; real headers end long before.
const MAX_OFFSET: usize = 4096;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

/// Source address of a packet, network order.
#[derive(Clone, Copy)]
pub enum Source {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// What the verdict needs to know about a packet.
#[derive(Clone, Copy)]
pub struct Packet {
    pub source: Source,
    /// Transport class, one of [`ban_common::proto`].
    pub proto: u32,
    /// Destination port; `None` for non-first fragments, packets truncated before the
    /// port, and protocols without ports.
    pub port: Option<u16>,
}

/// The first four bytes of TCP and UDP headers alike.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ports {
    _source: [u8; 2],
    dest: [u8; 2],
}

/// Two bytes every walkable IPv6 extension header starts with.
#[repr(C)]
#[derive(Clone, Copy)]
struct ExtHeader {
    next_header: u8,
    len: u8,
}

/// IPv6 fragment header (RFC 8200 §4.5).
#[repr(C)]
#[derive(Clone, Copy)]
struct FragmentHeader {
    next_header: u8,
    _reserved: u8,
    offset_flags: [u8; 2],
    _id: [u8; 4],
}

/// Where the bytes past the directly readable part come from: the hook's load-bytes
/// helper (`bpf_xdp_load_bytes` for the later buffers of a multi-buffer XDP frame,
/// `bpf_skb_load_bytes` for the paged part of an skb).
pub trait Bytes {
    /// Copies `dst.len()` bytes at `offset` from the packet start; `false` when the packet
    /// is shorter.
    fn load(&self, offset: usize, dst: &mut [u8]) -> bool;
}

/// A packet seen as `[start, end)` (the part the program may read directly) and the rest
/// through [`Bytes`], with checked, typed reads.
pub struct Cursor<'a, B: Bytes> {
    start: usize,
    end: usize,
    rest: &'a B,
}

impl<'a, B: Bytes> Cursor<'a, B> {
    #[inline(always)]
    pub fn new(start: usize, end: usize, rest: &'a B) -> Self {
        Self { start, end, rest }
    }

    /// A `T` at `offset`, if the packet holds all of it: read in place when it lies in the
    /// direct part (always, for headers of ordinary frames), copied by the helper otherwise.
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        if offset > MAX_OFFSET {
            return None;
        }
        let at = self.start + offset;
        if at + core::mem::size_of::<T>() <= self.end {
            // SAFETY: [at, at + size_of::<T>()) lies inside the packet (checked above), and
            // every T read here is a #[repr(C)] struct of bytes, valid for any bit pattern
            // and of alignment 1 or read by the BPF target's unaligned-tolerant loads.
            return Some(unsafe { *(at as *const T) });
        }
        let mut value = core::mem::MaybeUninit::<T>::uninit();
        // SAFETY: the slice covers exactly the bytes of `value`, which outlives it.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(
                value.as_mut_ptr().cast::<u8>(),
                core::mem::size_of::<T>(),
            )
        };
        if !self.rest.load(offset, bytes) {
            return None;
        }
        // SAFETY: every byte was written by the helper, and any bit pattern is a valid T.
        Some(unsafe { value.assume_init() })
    }
}

/// Parses a frame; `None` when it is not IP or is cut before the source address.
#[inline(always)]
pub fn parse<B: Bytes>(cursor: &Cursor<B>) -> Option<Packet> {
    let eth: EthHdr = cursor.read(0)?;
    let mut ether_type = u16::from_be(eth.ether_type);
    let mut offset = EthHdr::LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let vlan: VlanHdr = cursor.read(offset)?;
        ether_type = u16::from_be(vlan.ether_type);
        offset += VlanHdr::LEN;
    }
    match ether_type {
        ETH_P_IPV4 => parse_ipv4(cursor, offset),
        ETH_P_IPV6 => parse_ipv6(cursor, offset),
        _ => None,
    }
}

#[inline(always)]
fn parse_ipv4<B: Bytes>(cursor: &Cursor<B>, offset: usize) -> Option<Packet> {
    let ip: Ipv4Hdr = cursor.read(offset)?;
    let source = Source::V4(ip.src_addr);
    let header_len = usize::from(ip.vihl & 0x0f) * 4;
    let fragment_offset = u16::from_be_bytes(ip.frags) & 0x1fff;
    let (proto, port) = if ip.vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN {
        // Not a header we can walk past: the address is known, the port is not.
        (proto::OTHER, None)
    } else if fragment_offset != 0 {
        (transport_class(ip.proto), None)
    } else {
        transport(cursor, ip.proto, offset + header_len)
    };
    Some(Packet {
        source,
        proto,
        port,
    })
}

#[inline(always)]
fn parse_ipv6<B: Bytes>(cursor: &Cursor<B>, offset: usize) -> Option<Packet> {
    let ip: Ipv6Hdr = cursor.read(offset)?;
    let source = Source::V6(ip.src_addr);
    let mut next_header = ip.next_hdr;
    let mut offset = offset + Ipv6Hdr::LEN;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next_header {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let Some(ext) = cursor.read::<ExtHeader>(offset) else {
                    return Some(unknown_port(source, next_header));
                };
                next_header = ext.next_header;
                offset += (usize::from(ext.len) + 1) * 8;
            }
            IPPROTO_AH => {
                let Some(ext) = cursor.read::<ExtHeader>(offset) else {
                    return Some(unknown_port(source, next_header));
                };
                next_header = ext.next_header;
                offset += (usize::from(ext.len) + 2) * 4;
            }
            IPPROTO_FRAGMENT => {
                let Some(frag) = cursor.read::<FragmentHeader>(offset) else {
                    return Some(unknown_port(source, next_header));
                };
                next_header = frag.next_header;
                if u16::from_be_bytes(frag.offset_flags) >> 3 != 0 {
                    return Some(unknown_port(source, next_header));
                }
                offset += core::mem::size_of::<FragmentHeader>();
            }
            _ => {
                let (proto, port) = transport(cursor, next_header, offset);
                return Some(Packet {
                    source,
                    proto,
                    port,
                });
            }
        }
    }
    // More extension headers than any valid packet carries.
    Some(unknown_port(source, next_header))
}

#[inline(always)]
fn unknown_port(source: Source, next_header: u8) -> Packet {
    Packet {
        source,
        proto: transport_class(next_header),
        port: None,
    }
}

/// Transport class and destination port of the L4 header at `offset`.
#[inline(always)]
fn transport<B: Bytes>(cursor: &Cursor<B>, ip_proto: u8, offset: usize) -> (u32, Option<u16>) {
    let class = transport_class(ip_proto);
    if class == proto::OTHER {
        return (class, None);
    }
    let port = cursor
        .read::<Ports>(offset)
        .map(|ports| u16::from_be_bytes(ports.dest));
    (class, port)
}

#[inline(always)]
fn transport_class(ip_proto: u8) -> u32 {
    match ip_proto {
        IPPROTO_TCP => proto::TCP,
        IPPROTO_UDP => proto::UDP,
        _ => proto::OTHER,
    }
}
