//! `ban-agent import-fail2ban`: fail2ban's jails as a configuration, and (`--bans`) its
//! bans in force carried over.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use crate::{
    config::Config,
    control::{
        client::{self, ClientError},
        protocol::{Reply, Request},
    },
    fail2ban::bans::CarriedBan,
    ignore::IgnoreList,
    store::{Changes, SavedBan, Store},
};

/// Bans sent to the daemon in one request: each is about 150 bytes of JSON, and a request
/// is at most `MAX_LINE` (1 MiB).
const CHUNK: usize = 4096;

/// `import-fail2ban`: the configuration on standard output (or `--output`), what was
/// left out on standard error.
pub fn run(dir: &Path, output: Option<&Path>) -> anyhow::Result<()> {
    let dir = std::path::absolute(dir)
        .with_context(|| format!("cannot make {} absolute", dir.display()))?;
    let services_text = std::fs::read_to_string("/etc/services").unwrap_or_default();
    let tcp = crate::fail2ban::jails::services_from(&services_text, "all");
    // fail2ban's `<fq-hostname>`, in its mail actions' addresses.
    let host = crate::host_name().unwrap_or_else(|| "localhost".to_owned());
    let imported = crate::fail2ban::jails::import(&dir, &|name| tcp.get(name).copied(), &host)
        .with_context(|| format!("importing fail2ban's jails from {}", dir.display()))?;
    let text = imported.to_toml(&dir);
    match output {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    eprintln!(
        "import-fail2ban: {} imported ({}); {} left out{}",
        crate::plural(imported.jails.len() as u64, "jail", "jails"),
        imported.jails.join(", "),
        crate::plural(imported.notes.len() as u64, "setting", "settings"),
        if imported.notes.is_empty() { "" } else { ":" }
    );
    for note in &imported.notes {
        eprintln!("  {note}");
    }
    if imported.jails.is_empty() {
        anyhow::bail!(
            "no enabled jail in {}: enable one (enabled = true in jail.local) and import again",
            dir.display()
        );
    }
    Ok(())
}

/// `import-fail2ban --bans DB`: fail2ban's bans to the running daemon, else into the
/// state of the configuration at `config_path`.
pub fn bans(db: &Path, config_path: &Path, socket: Option<PathBuf>) -> anyhow::Result<()> {
    let read = crate::fail2ban::bans::read(db)?;
    for skipped in &read.skipped {
        eprintln!("import-fail2ban: passed over {skipped}");
    }
    let config = Config::load(config_path)?;
    let socket = socket.unwrap_or_else(|| config.global.socket.clone());
    match client::call(&socket, &Request::Ping) {
        Ok(_) => {
            let mut count = 0;
            for chunk in read.bans.chunks(CHUNK) {
                let request = Request::CarryBans {
                    bans: chunk.to_vec(),
                };
                match client::call(&socket, &request)? {
                    Reply::Count {
                        count: made,
                        message,
                    } => {
                        count += made;
                        println!("{message}");
                    }
                    Reply::Error { message } => anyhow::bail!("{message}"),
                    other => anyhow::bail!("the daemon answered with {other:?}"),
                }
            }
            println!(
                "import-fail2ban: {} in force now, by the daemon at {}",
                crate::plural(count, "ban", "bans"),
                socket.display()
            );
        }
        Err(ClientError::NotRunning { .. }) => {
            let now = jiff::Timestamp::now().as_millisecond();
            let said = into_state(&config, &read.bans, now)?;
            println!("{said}");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// fail2ban's bans written into the state for the daemon's next start, which puts those
/// still in force into the kernel: each in a jail of the configuration, not spared by its
/// `ignoreip` (nor loopback; the host's own addresses are checked at the start), not
/// banned in the state already; and every address's count of bans.
fn into_state(config: &Config, bans: &[CarriedBan], now: i64) -> anyhow::Result<String> {
    let dir = &config.global.state_dir;
    let mut store = Store::open(dir, now)?;
    let saved: BTreeSet<(String, ipnet::IpNet)> = store
        .load()?
        .bans
        .into_iter()
        .map(|ban| (ban.jail, ban.target))
        .collect();
    let mut changes = Changes::default();
    let mut count = 0u64;
    let mut passed_over = Vec::new();
    for ban in bans {
        let shown = crate::datapath::show(&ban.target);
        let Some(jail) = config.enabled().find(|jail| jail.name == ban.jail) else {
            passed_over.push(format!(
                "{shown} in {}: no such jail in the configuration",
                ban.jail
            ));
            continue;
        };
        if let Some(why) = IgnoreList::new(jail.ignoreip.clone(), Vec::new()).spares(&ban.target) {
            passed_over.push(format!("{shown} in {}: {why}", ban.jail));
            continue;
        }
        changes.count_bans(&ban.jail, ban.target, ban.bans, ban.banned_at);
        let key = (ban.jail.clone(), ban.target);
        if !ban.in_force(now) || saved.contains(&key) {
            continue;
        }
        changes.bans.insert(
            key,
            Some(SavedBan {
                jail: ban.jail.clone(),
                target: ban.target,
                expires_at: ban.expires_at,
                banned_at: ban.banned_at,
                failures: 0,
                origin: "fail2ban".to_owned(),
            }),
        );
        count += 1;
    }
    store.commit(&changes)?;
    let mut said = format!(
        "import-fail2ban: {} saved in {} (no daemon runs): the daemon bans them when it starts",
        crate::plural(count, "ban", "bans"),
        store.path().display()
    );
    if !passed_over.is_empty() {
        said.push_str(&format!("; passed over: {}", passed_over.join("; ")));
    }
    Ok(said)
}
