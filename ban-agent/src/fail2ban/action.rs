//! A fail2ban action read as fail2ban's `ActionReader` reads it: the stack of
//! `action.d/NAME.conf` files with their includes and `.local` overlays, `[Definition]`'s
//! commands, `[Init]`'s tags and the options the jail gives it (`sendmail-whois[dest=...]`),
//! the static tags substituted (`<name>`, `<dest>`, `<mailcmd>`), the dynamic ones left for
//! each ban (`<ip>`, `<failures>`, `<matches>`, ...). A firewall action is not run: the
//! kernel ban does what it would.

use std::{path::Path, time::Duration};

use super::{
    Fail2banError,
    definition::FilterRef,
    ini::Ini,
    interpolate::{Absent, Vars, substitute_tags},
};

/// fail2ban's actions that ban in a firewall, by the start of their name: ban-agent's
/// kernel ban takes their place.
pub const FIREWALL: [&str; 7] = [
    "iptables",
    "ip6tables",
    "nftables",
    "firewallcmd",
    "ufw",
    "shorewall",
    "route",
];

/// Whether the action `name` bans in a firewall (the kernel ban does it).
pub fn is_firewall(name: &str) -> bool {
    FIREWALL.iter().any(|prefix| name.starts_with(prefix))
}

/// The tags an action's commands get at each ban, left in place when it is read.
pub const DYNAMIC: [&str; 17] = [
    "ip",
    "ip-rev",
    "ip-host",
    "fid",
    "failures",
    "ipfailures",
    "ipjailfailures",
    "matches",
    "ipmatches",
    "ipjailmatches",
    "time",
    "bantime",
    "bancount",
    "restored",
    "family",
    "fq-hostname",
    "sh-hostname",
];

/// fail2ban's default for a command's time (`timeout`, in seconds).
const TIMEOUT: Duration = Duration::from_secs(60);

/// A fail2ban action read (ban-agent's own `on_ban` hooks are `config::Action`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fail2banAction {
    /// As fail2ban names it in `get JAIL actions`: the file's name.
    pub name: String,
    pub kind: ActionKind,
    /// Every file read (their commands run as the agent's user).
    pub files: Vec<std::path::PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionKind {
    /// A firewall's: the kernel ban does it.
    Kernel,
    /// Commands run by `sh -c`.
    Commands(Commands),
}

/// An action's commands, its static tags substituted; an empty one is not run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commands {
    pub start: String,
    pub stop: String,
    pub ban: String,
    pub unban: String,
    /// How long one command may run (fail2ban's `timeout`, 60 s by default).
    pub timeout: Duration,
    /// `norestored = 1`: bans restored at a start are not announced again (ban-agent
    /// announces no restored ban to any action: the kernel kept them).
    pub norestored: bool,
}

/// Reads the action `reference` names (`sendmail-whois[dest=admin@example.com]`) from
/// `dir` (fail2ban's `action.d`) for the jail `jail`, which gives it `name`, `port` and
/// `protocol` unless the reference does.
pub fn read(
    dir: &Path,
    reference: &FilterRef,
    jail: &Vars,
) -> Result<Fail2banAction, Fail2banError> {
    let base = reference.base(dir);
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.ends_with(".py") {
        return Err(Fail2banError::PythonAction { name });
    }
    if is_firewall(&name) {
        return Ok(Fail2banAction {
            name,
            kind: ActionKind::Kernel,
            files: Vec::new(),
        });
    }
    let conf = base.with_file_name(format!("{name}.conf"));
    let local = base.with_file_name(format!("{name}.local"));
    if !conf.is_file() && !local.is_file() {
        return Err(Fail2banError::MissingAction {
            name: reference.name.clone(),
            tried: conf,
        });
    }
    let ini = Ini::read_stack(&base)?;
    let commands = resolve(&ini, reference, jail)?;
    Ok(Fail2banAction {
        name,
        kind: ActionKind::Commands(commands),
        files: ini.files.clone(),
    })
}

/// The commands of the read files `ini`, with the options of `reference` and `jail`.
fn resolve(ini: &Ini, reference: &FilterRef, jail: &Vars) -> Result<Commands, Fail2banError> {
    let mut vars: Vars = jail.clone();
    for (key, value) in &reference.options {
        vars.insert(key.clone(), value.clone());
    }
    let keys = [
        "actionstart",
        "actionstop",
        "actionban",
        "actionunban",
        "norestored",
        "timeout",
    ];
    let mut tags: Vec<(String, String)> = Vec::new();
    for key in keys {
        match ini.get("Definition", key, &vars) {
            Ok(value) => tags.push((key.to_owned(), value)),
            Err(Ok(_)) => {}
            Err(Err(error)) => return Err(error),
        }
    }
    // `[Init]` values are tags, the options given win over them.
    let mut init: Vec<(String, String)> =
        vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some(section) = ini.section("Init") {
        for key in section.keys() {
            if init.iter().any(|(k, _)| k == key) {
                continue;
            }
            match ini.get("Init", key, &vars) {
                Ok(value) => init.push((key.clone(), value)),
                Err(Ok(_)) => {}
                Err(Err(error)) => return Err(error),
            }
        }
    }
    for (key, value) in init {
        if !tags.iter().any(|(k, _)| *k == key) {
            tags.push((key, value));
        }
    }
    let ignore: Vec<String> = DYNAMIC.iter().map(|tag| (*tag).to_owned()).collect();
    let lookup = |name: &str| match ini.get_ex("Definition", name, &vars) {
        Ok(value) => Ok(Some(value)),
        Err(Ok(Absent::Option | Absent::Section)) => Ok(None),
        Err(Err(error)) => Err(error),
    };
    // The dynamic tags are never taken from the files, even where `[Init]` sets one.
    tags.retain(|(key, _)| !ignore.contains(key) || keys.contains(&key.as_str()));
    substitute_tags(&mut tags, &ignore, &lookup)?;
    let value = |key: &str| {
        tags.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    };
    let timeout = match value("timeout") {
        text if text.is_empty() => TIMEOUT,
        text => crate::duration::parse(&text)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| Fail2banError::Value {
                at: at(ini, "timeout"),
                key: "timeout",
                value: text.clone(),
                expected: "a duration (seconds, or such as 1m)",
            })?,
    };
    let norestored = matches!(
        value("norestored").to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    );
    Ok(Commands {
        start: value("actionstart"),
        stop: value("actionstop"),
        ban: value("actionban"),
        unban: value("actionunban"),
        timeout,
        norestored,
    })
}

/// Where `[Definition] key` was written, for messages.
fn at(ini: &Ini, key: &str) -> String {
    ini.section("Definition")
        .and_then(|section| section.get(key))
        .map_or_else(
            || {
                ini.files
                    .first()
                    .map(|f| f.display().to_string())
                    .unwrap_or_default()
            },
            super::ini::IniValue::at,
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jail() -> Vars {
        [("name", "auth"), ("port", "8000"), ("protocol", "tcp")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// An action with an include, `[Init]` defaults the jail's options override, and
    /// dynamic tags left for the ban.
    #[test]
    fn an_action_is_read_with_its_includes_init_and_options() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("common.conf"),
            "[DEFAULT]\n_who = whois <ip>\n[Definition]\nactionstart = echo start <name>\n\
             [Init]\ndest = root\nsender = fail2ban\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("notify.conf"),
            "[INCLUDES]\nbefore = common.conf\n[Definition]\nnorestored = 1\ntimeout = 5\n\
             actionban = printf %%b \"<ip> <failures> <port>/<protocol>\" | mail -s <name> <dest> # `%(_who)s`\n\
             actionunban =\n[Init]\nname = default\n",
        )
        .expect("write");
        let reference = FilterRef::parse("notify[dest=ops@example.org]").expect("parse");
        let action = read(dir.path(), &reference, &jail()).expect("read");
        assert_eq!(action.name, "notify");
        assert_eq!(action.files.len(), 2, "{:?}", action.files);
        let ActionKind::Commands(commands) = action.kind else {
            panic!("a command action");
        };
        assert_eq!(commands.start, "echo start auth");
        assert_eq!(
            commands.ban,
            "printf %b \"<ip> <failures> 8000/tcp\" | mail -s auth ops@example.org # `whois <ip>`"
        );
        assert_eq!(commands.unban, "");
        assert_eq!(commands.timeout, Duration::from_secs(5));
        assert!(commands.norestored);
    }

    #[test]
    fn a_firewalls_action_is_the_kernel_ban_and_a_missing_one_says_where() {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["iptables-multiport", "nftables[type=allports]", "ufw"] {
            let reference = FilterRef::parse(name).expect("parse");
            let action = read(dir.path(), &reference, &jail()).expect("read");
            assert_eq!(action.kind, ActionKind::Kernel, "{name}");
        }
        let reference = FilterRef::parse("nope").expect("parse");
        let missing = read(dir.path(), &reference, &jail()).expect_err("missing");
        assert!(missing.to_string().contains("nope.conf"), "{missing}");
        std::fs::write(
            dir.path().join("slow.conf"),
            "[Definition]\nactionban = x\ntimeout = soon\n",
        )
        .expect("write");
        let reference = FilterRef::parse("slow").expect("parse");
        let bad = read(dir.path(), &reference, &jail()).expect_err("bad timeout");
        assert!(bad.to_string().contains("timeout"), "{bad}");
    }
}
