//! `datapath ban`: a ban written straight into the maps, below the daemon.

use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::{
    clock::{self, Expiry},
    datapath::{self, Maps},
};

/// How long a ban by hand lasts when `--for` is not given.
const MANUAL_BAN: Duration = Duration::from_secs(3600);

/// `datapath ban`: below the daemon, the same rails (never loopback, unspecified or one of
/// this host's addresses), and more, since no configuration stands behind it: a prefix
/// that holds this host's addresses or its default gateway, or a jail that protects no
/// port, only with `--force`; a finite length unless asked otherwise.
pub(super) fn ban(
    jail: u32,
    target: &str,
    duration: Option<&str>,
    force: bool,
    pin_dir: &std::path::Path,
) -> anyhow::Result<()> {
    // The ban's length counts from now, not from after the checks below.
    let now = clock::boot_ns();
    let target = super::parse_target(target)?;
    let shown = datapath::show(&target);
    if let Some(why) = crate::ignore::IgnoreList::default().spares(&target) {
        bail!("{shown} is not banned: {why}");
    }
    let own = crate::ignore::own_addresses().context("cannot list this host's addresses")?;
    if target.prefix_len() == target.max_prefix_len() && own.contains(&target.addr()) {
        bail!("{shown} is not banned: it is one of this host's addresses");
    }
    let inside = |addrs: &[std::net::IpAddr], what: &str| {
        addrs
            .iter()
            .find(|addr| target.contains(*addr))
            .map(|addr| format!("{what} {addr}"))
    };
    let gateways = crate::ignore::default_gateways();
    if !force
        && let Some(held) =
            inside(&own, "this host's address").or_else(|| inside(&gateways, "the default gateway"))
    {
        bail!(
            "{shown} is not banned: it holds {held}, and banning it could cut this host off; \
             add --force if that is what you want"
        );
    }
    let mut maps = Maps::open_pinned(pin_dir)?;
    if !force && maps.protected_jails()? & (1u64 << (jail % 64)) == 0 {
        bail!(
            "jail {jail} protects no port here, so its bans would drop nothing: give it ports \
             with `ban-agent datapath attach --protect {jail}:tcp:PORT`, or add --force"
        );
    }
    let (expiry, how) = match duration.map(str::trim) {
        Some("permanent" | "-1") => (Expiry::Never, "permanently".to_owned()),
        Some(text) => {
            let length = crate::duration::parse(text).map_err(|e| {
                anyhow::anyhow!(
                    "--for: {e}; expected {}, or \"permanent\"",
                    crate::duration::UNITS_HELP
                )
            })?;
            let length = length.max(Duration::from_secs(1));
            (
                Expiry::after(now, length),
                format!("for {}", crate::duration::show(length)),
            )
        }
        None => (
            Expiry::after(now, MANUAL_BAN),
            format!(
                "for {} (the default; --for sets the length, --for permanent never ends)",
                crate::duration::show(MANUAL_BAN)
            ),
        ),
    };
    maps.ban(jail, target, expiry)?;
    println!("{shown} banned in jail {jail} {how}");
    Ok(())
}
