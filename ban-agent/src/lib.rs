//! ban-agent: bans brute-forcing clients at packet level.
//!
//! The agent follows logs, counts failures per address and writes bans into BPF maps; the
//! XDP program `ban-ebpf` drops banned sources in the kernel. See `shared/ARCHITECTURE.md`
//! in the steering repository for the plan, and `README.md` for use.

pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod detect;
pub mod events;
pub mod filter;
pub mod ignore;
pub mod metrics;
pub mod sample;
pub mod store;
pub mod tail;
pub mod tracker;
