//! The entry points, one per hook, each a thin adapter around one verdict: parse the
//! packet ([`parse`]), judge it ([`verdict::judge_packet`]: find the jails that protect its
//! destination, look its source up in their bans, decide, count), return the hook's code.
//!
//! - `ban_xdp`: XDP, declaring multi-buffer support (`xdp.frags`), for native drivers.
//! - `ban_xdp_linear`: the same without frags, for kernels before 5.18.
//! - `ban_tc`: tc ingress (TCX link or clsact filter), where native XDP would cost the
//!   interface its offloads; it sees GRO aggregates, once each, and copies nothing.
//!
//! The clock is read only once a ban has matched: legitimate traffic never pays for it.
#![no_std]
#![no_main]

mod parse;
mod verdict;

use aya_ebpf::{
    EbpfContext,
    bindings::{__sk_buff, xdp_action},
    helpers::{bpf_skb_load_bytes, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use aya_log_ebpf::debug;
use ban_common::{TC_DROP, TC_PASS};
use parse::{Bytes, Cursor, Packet, Source};
use verdict::Size;

#[xdp(frags)]
pub fn ban_xdp(ctx: XdpContext) -> u32 {
    let size = || Size {
        // SAFETY: the context of this program run.
        bytes: unsafe { bpf_xdp_get_buff_len(ctx.ctx) },
        packets: 1,
    };
    let rest = XdpFrags(&ctx);
    let cursor = Cursor::new(ctx.data(), ctx.data_end(), &rest);
    decide(&ctx, &cursor, size, XDP_CODES)
}

#[xdp]
pub fn ban_xdp_linear(ctx: XdpContext) -> u32 {
    let size = || Size {
        bytes: (ctx.data_end() - ctx.data()) as u64,
        packets: 1,
    };
    let cursor = Cursor::new(ctx.data(), ctx.data_end(), &Linear);
    decide(&ctx, &cursor, size, XDP_CODES)
}

#[classifier]
pub fn ban_tc(ctx: TcContext) -> i32 {
    let size = || {
        let skb = ctx.as_ptr().cast::<__sk_buff>();
        // SAFETY: the context of this program run; gso_segs is readable from tc.
        let segments = unsafe { (*skb).gso_segs };
        Size {
            bytes: u64::from(ctx.len()),
            packets: u64::from(segments.max(1)),
        }
    };
    let rest = SkbPaged(&ctx);
    let cursor = Cursor::new(ctx.data(), ctx.data_end(), &rest);
    decide(&ctx, &cursor, size, (TC_PASS, TC_DROP))
}

/// XDP's return codes: pass, drop.
const XDP_CODES: (u32, u32) = (xdp_action::XDP_PASS, xdp_action::XDP_DROP);

/// Every entry: parse, judge (find the jails, look up, decide, count), and return the
/// hook's code of pass or drop.
#[inline(always)]
fn decide<C: EbpfContext, B: Bytes, R>(
    ctx: &C,
    cursor: &Cursor<B>,
    size: impl FnOnce() -> Size,
    (pass, drop): (R, R),
) -> R {
    let Some(packet) = parse::parse(cursor) else {
        return pass;
    };
    match verdict::judge_packet(&packet, size) {
        None => pass,
        Some(jail) => {
            log_drop(ctx, &packet, jail);
            drop
        }
    }
}

/// The later buffers of a multi-buffer XDP frame.
struct XdpFrags<'a>(&'a XdpContext);

impl Bytes for XdpFrags<'_> {
    #[inline(always)]
    fn load(&self, offset: usize, dst: &mut [u8]) -> bool {
        // SAFETY: `dst` is valid for `dst.len()` bytes; the helper checks the range.
        let loaded = unsafe {
            bpf_xdp_load_bytes(
                self.0.ctx,
                offset as u32,
                dst.as_mut_ptr().cast(),
                dst.len() as u32,
            )
        };
        loaded == 0
    }
}

/// A single-buffer XDP frame: nothing beyond the direct part.
struct Linear;

impl Bytes for Linear {
    #[inline(always)]
    fn load(&self, _offset: usize, _dst: &mut [u8]) -> bool {
        false
    }
}

/// The paged part of an skb (a GRO aggregate's headers can sit past the linear head).
struct SkbPaged<'a>(&'a TcContext);

impl Bytes for SkbPaged<'_> {
    #[inline(always)]
    fn load(&self, offset: usize, dst: &mut [u8]) -> bool {
        // SAFETY: as for XDP; the helper checks the range against the skb.
        let loaded = unsafe {
            bpf_skb_load_bytes(
                self.0.as_ptr(),
                offset as u32,
                dst.as_mut_ptr().cast(),
                dst.len() as u32,
            )
        };
        loaded == 0
    }
}

/// A debug event per drop. At the default log level the agent sets `AYA_LOG_LEVEL` below
/// debug at load time, and the verifier removes this code as dead.
#[inline(always)]
fn log_drop<C: EbpfContext>(ctx: &C, packet: &Packet, jail: u32) {
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
