//! fail2ban-client's output, line for line: what `ban-agent` prints for fail2ban's own
//! forms (`get JAIL banip`), and for every verb when the binary runs as `fail2ban-client`.
//! Scripts and exporters read these shapes (`status`'s tree with its tabs, `banip` as one
//! line separated by spaces, `banned` as Python's lists), so they are kept exactly as
//! fail2ban 1.0.2's client prints its server's answers.

use ipnet::IpNet;

use crate::{
    clock::local_text,
    control::protocol::{BanInfo, JailKey, JailStatus, Setting},
    datapath::show,
};

/// fail2ban's end of a permanent ban, as its client prints it (its `MAX_TIME` is past the
/// year 9999, which Python's time formatting stops at).
const PERMANENT_END: &str = "9999-12-31 23:59:59";

/// `status`: the number of jails and their names.
pub fn overview(jails: &[String]) -> String {
    format!(
        "Status\n|- Number of jail:\t{}\n`- Jail list:\t{}",
        jails.len(),
        jails.join(", ")
    )
}

/// `status JAIL`: its failures and files, then its bans.
pub fn jail_status(s: &JailStatus) -> String {
    let banned: Vec<String> = s.banned.iter().map(show).collect();
    [
        format!("Status for the jail: {}", s.name),
        "|- Filter".to_owned(),
        format!("|  |- Currently failed:\t{}", s.currently_failed),
        format!("|  |- Total failed:\t{}", s.total_failed),
        format!("|  `- File list:\t{}", s.files.join(" ")),
        "`- Actions".to_owned(),
        format!("   |- Currently banned:\t{}", s.currently_banned),
        format!("   |- Total banned:\t{}", s.total_banned),
        format!("   `- Banned IP list:\t{}", banned.join(" ")),
    ]
    .join("\n")
}

/// `get JAIL KEY` (and `set`'s answer, the value it leaves).
pub fn setting(jail: &str, key: JailKey, value: &Setting) -> String {
    let items = match value {
        Setting::Number(n) => return n.to_string(),
        Setting::List(items) => items,
    };
    let (none, heading) = match key {
        JailKey::Ignoreip => (
            "No IP address/network is ignored".to_owned(),
            "These IP addresses/networks are ignored:",
        ),
        JailKey::Logpath => (
            "No file is currently monitored".to_owned(),
            "Current monitored log file(s):",
        ),
        JailKey::Actions => {
            if items.is_empty() {
                return format!("No actions for jail {jail}");
            }
            return format!(
                "The jail {jail} has the following actions:\n{}",
                items.join(", ")
            );
        }
        JailKey::Maxretry | JailKey::Findtime | JailKey::Bantime | JailKey::Maxlines => {
            return items.join(" ");
        }
    };
    if items.is_empty() {
        return none;
    }
    let mut text = heading.to_owned();
    for (i, item) in items.iter().enumerate() {
        let branch = if i + 1 == items.len() { "`-" } else { "|-" };
        text.push_str(&format!("\n{branch} {item}"));
    }
    text
}

/// `get JAIL banip [SEPARATOR | --with-time]`: the addresses on one line, or a ban a line
/// with its start, its length in seconds and its end in local time.
pub fn ban_list(bans: &[BanInfo], with_time: bool, separator: Option<&str>) -> String {
    if !with_time {
        let addresses: Vec<String> = bans.iter().map(|ban| show(&ban.target)).collect();
        return addresses.join(separator.unwrap_or(" "));
    }
    let lines: Vec<String> = bans
        .iter()
        .map(|ban| {
            let start = ban.banned_at.map_or_else(|| "-".to_owned(), local_text);
            let (seconds, end) = match (ban.banned_at, ban.expires_at) {
                (_, None) => (-1, PERMANENT_END.to_owned()),
                (Some(start), Some(end)) => ((end - start) / 1000, local_text(end)),
                (None, Some(end)) => (
                    i64::try_from(ban.seconds_left.unwrap_or(0)).unwrap_or(i64::MAX),
                    local_text(end),
                ),
            };
            format!("{} \t{start} + {seconds} = {end}", show(&ban.target))
        })
        .collect();
    lines.join("\n")
}

/// `banned [IP...]`: without addresses, each jail's bans (`[{'JAIL': ['IP', ...]}, ...]`);
/// with them, the jails that ban each (`[['JAIL'], []]`), as Python prints the lists
/// fail2ban's server returns.
pub fn banned(jails: &[String], bans: &[BanInfo], asked: &[IpNet]) -> String {
    if asked.is_empty() {
        let per_jail: Vec<String> = jails
            .iter()
            .map(|jail| {
                let targets: Vec<String> = bans
                    .iter()
                    .filter(|ban| &ban.jail == jail)
                    .map(|ban| python_str(&show(&ban.target)))
                    .collect();
                format!("{{{}: [{}]}}", python_str(jail), targets.join(", "))
            })
            .collect();
        return format!("[{}]", per_jail.join(", "));
    }
    let per_address: Vec<String> = asked
        .iter()
        .map(|target| {
            let target = target.trunc();
            let holding: Vec<String> = jails
                .iter()
                .filter(|jail| {
                    bans.iter()
                        .any(|ban| &ban.jail == *jail && ban.target == target)
                })
                .map(|jail| python_str(jail))
                .collect();
            format!("[{}]", holding.join(", "))
        })
        .collect();
    format!("[{}]", per_address.join(", "))
}

/// A string as Python's `repr` writes it (quoted with `'`).
fn python_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().expect("a network")
    }

    fn ban(jail: &str, target: &str, banned_at: i64, seconds: Option<i64>) -> BanInfo {
        BanInfo {
            jail: jail.into(),
            target: net(target),
            seconds_left: seconds.map(|s| s as u64),
            expires_at: seconds.map(|s| banned_at + s * 1000),
            failures: 0,
            banned_at: Some(banned_at),
        }
    }

    #[test]
    fn status_is_fail2bans_tree() {
        assert_eq!(
            overview(&["auth".into(), "sshd".into()]),
            "Status\n|- Number of jail:\t2\n`- Jail list:\tauth, sshd"
        );
        let status = JailStatus {
            name: "auth".into(),
            currently_failed: 1,
            total_failed: 7,
            files: vec!["/var/log/a.log".into(), "/var/log/b.log".into()],
            currently_banned: 2,
            total_banned: 3,
            banned: vec![net("192.0.2.7/32"), net("2001:db8::/64")],
            ..JailStatus::default()
        };
        assert_eq!(
            jail_status(&status),
            "Status for the jail: auth\n\
             |- Filter\n\
             |  |- Currently failed:\t1\n\
             |  |- Total failed:\t7\n\
             |  `- File list:\t/var/log/a.log /var/log/b.log\n\
             `- Actions\n   \
             |- Currently banned:\t2\n   \
             |- Total banned:\t3\n   \
             `- Banned IP list:\t192.0.2.7 2001:db8::/64"
        );
    }

    #[test]
    fn settings_are_numbers_or_trees() {
        assert_eq!(
            setting("auth", JailKey::Bantime, &Setting::Number(-1)),
            "-1"
        );
        assert_eq!(
            setting(
                "auth",
                JailKey::Ignoreip,
                &Setting::List(vec!["192.0.2.0/24".into(), "198.51.100.9".into()])
            ),
            "These IP addresses/networks are ignored:\n|- 192.0.2.0/24\n`- 198.51.100.9"
        );
        assert_eq!(
            setting("auth", JailKey::Ignoreip, &Setting::List(Vec::new())),
            "No IP address/network is ignored"
        );
        assert_eq!(
            setting("auth", JailKey::Logpath, &Setting::List(vec!["/l".into()])),
            "Current monitored log file(s):\n`- /l"
        );
        assert_eq!(
            setting(
                "auth",
                JailKey::Actions,
                &Setting::List(vec!["kernel".into(), "email".into()])
            ),
            "The jail auth has the following actions:\nkernel, email"
        );
    }

    #[test]
    fn bans_are_listed_as_fail2ban_client_lists_them() {
        let bans = [
            ban("auth", "192.0.2.7/32", 1_000_000_000_000, Some(600)),
            ban("auth", "198.51.100.0/24", 1_000_000_000_000, None),
        ];
        assert_eq!(ban_list(&bans, false, None), "192.0.2.7 198.51.100.0/24");
        assert_eq!(
            ban_list(&bans, false, Some(",")),
            "192.0.2.7,198.51.100.0/24"
        );
        let start = local_text(1_000_000_000_000);
        let end = local_text(1_000_000_600_000);
        assert_eq!(
            ban_list(&bans, true, None),
            format!(
                "192.0.2.7 \t{start} + 600 = {end}\n198.51.100.0/24 \t{start} + -1 = {PERMANENT_END}"
            )
        );
        let jails = ["auth".to_owned(), "ssh".to_owned()];
        assert_eq!(
            banned(&jails, &bans, &[]),
            "[{'auth': ['192.0.2.7', '198.51.100.0/24']}, {'ssh': []}]"
        );
        assert_eq!(
            banned(&jails, &bans, &[net("192.0.2.7/32"), net("192.0.2.8/32")]),
            "[['auth'], []]"
        );
        assert_eq!(banned(&[], &[], &[]), "[]");
        assert_eq!(python_str("it's"), "'it\\'s'");
    }
}
