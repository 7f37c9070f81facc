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
    EbpfContext as _,
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
    xdp_verdict(&ctx, &XdpFrags(&ctx), size)
}

#[xdp]
pub fn ban_xdp_linear(ctx: XdpContext) -> u32 {
    let size = || Size {
        bytes: (ctx.data_end() - ctx.data()) as u64,
        packets: 1,
    };
    xdp_verdict(&ctx, &Linear, size)
}

/// Both XDP entries: the verdict, top to bottom, with XDP's return codes.
#[inline(always)]
fn xdp_verdict<B: Bytes>(ctx: &XdpContext, rest: &B, size: impl FnOnce() -> Size) -> u32 {
    let cursor = Cursor::new(ctx.data(), ctx.data_end(), rest);
    let Some(packet) = parse::parse(&cursor) else {
        return xdp_action::XDP_PASS;
    };
    match verdict::judge_packet(&packet, size) {
        None => xdp_action::XDP_PASS,
        Some(jail) => {
            log_drop(ctx, &packet, jail);
            xdp_action::XDP_DROP
        }
    }
}

#[classifier]
pub fn ban_tc(ctx: TcContext) -> i32 {
    let rest = SkbPaged(&ctx);
    let cursor = Cursor::new(ctx.data(), ctx.data_end(), &rest);
    let Some(packet) = parse::parse(&cursor) else {
        return TC_PASS;
    };
    let size = || {
        let skb = ctx.as_ptr().cast::<__sk_buff>();
        // SAFETY: the context of this program run; gso_segs is readable from tc.
        let segments = unsafe { (*skb).gso_segs };
        Size {
            bytes: u64::from(ctx.len()),
            packets: u64::from(segments.max(1)),
        }
    };
    match verdict::judge_packet(&packet, size) {
        None => TC_PASS,
        Some(jail) => {
            log_drop(&ctx, &packet, jail);
            TC_DROP
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
fn log_drop<C: aya_ebpf::EbpfContext>(ctx: &C, packet: &Packet, jail: u32) {
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
