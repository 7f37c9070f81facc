//! ban-agent: bans brute-forcing clients at packet level.
//!
//! The agent follows logs, counts failures per address and writes bans into BPF maps; the
//! eBPF programs of `ban-ebpf` (XDP or tc) drop banned sources in the kernel. See
//! `docs/architecture.md` for the layers of modules (checked by `layers.rs`), and
//! `README.md` for use.

// Unit tests read as one story each: the 80-line limit on functions (clippy.toml) is for
// the product's code, which the build without `cfg(test)` checks.
#![cfg_attr(test, allow(clippy::too_many_lines))]

pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod crowdsec;
pub mod daemon;
pub mod datapath;
pub mod detect;
pub mod duration;
pub mod events;
pub mod fail2ban;
pub mod filter;
pub mod fleet;
pub mod ignore;
#[cfg(test)]
mod layers;
pub mod logging;
pub mod metrics;
pub mod sample;
pub mod store;
pub mod tail;
pub mod tracker;
pub mod trust;

/// This host's name, as the kernel has it (the fleet's default name, fail2ban's
/// `<fq-hostname>`).
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// `1 address`, `2 addresses`: a count with its noun.
pub fn plural(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// An error and its causes on one line, leaving out a cause whose text the message already
/// holds: the error types here quote their source in their own message, so `{:#}` would
/// say it twice.
pub fn error_text(error: &anyhow::Error) -> String {
    cause_text(error.as_ref())
}

/// [`error_text`] for any error: aya's errors keep the kernel's words (errno, the netlink
/// extended ack) in their sources.
pub fn cause_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut cause = Some(error);
    while let Some(error) = cause {
        let part = error.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        cause = error.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_quoted_by_its_error_is_said_once() {
        let io = std::io::Error::other("disk on fire");
        let quoted = anyhow::Error::new(crate::store::StoreError::Io {
            op: "write",
            path: "/var/lib/ban-agent/state.json".into(),
            source: io,
        });
        let text = super::error_text(&quoted);
        assert_eq!(text.matches("disk on fire").count(), 1, "{text}");
        let chained = anyhow::anyhow!("disk on fire").context("cannot save");
        assert_eq!(super::error_text(&chained), "cannot save: disk on fire");
    }
}
