//! fail2ban's jails (`jail.conf`, `jail.d/*.conf`, `jail.local`, `jail.d/*.local`, with
//! their `paths-*.conf` includes and interpolation) as a ban-agent configuration: each
//! enabled jail's filter (the `.conf` file in place, with its options), logs, ports,
//! counting and ban settings. What has no counterpart is listed with where it is written
//! and why, never dropped silently.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use toml::{Table, Value};

use super::{
    Fail2banError, FilterRef,
    ini::Ini,
    interpolate::{Absent, Vars},
};

/// Sections of jail files that are not jails.
const NOT_JAILS: [&str; 2] = ["INCLUDES", "DEFAULT"];

/// Jail options with no counterpart, and why.
const UNMAPPED: [(&str, &str); 9] = [
    (
        "bantime.formula",
        "ban-agent's increment is bantime × factor × 2^(bans − 1), capped by maxtime",
    ),
    (
        "bantime.multipliers",
        "ban-agent's increment is bantime × factor × 2^(bans − 1), capped by maxtime",
    ),
    (
        "bantime.rndtime",
        "no random extra ban time: bans expire when the kernel says",
    ),
    (
        "ignorecommand",
        "no command decides who is spared: list them in ignoreip",
    ),
    (
        "ignorecache",
        "no command decides who is spared: list them in ignoreip",
    ),
    (
        "logtimezone",
        "dates without a zone are read in the system time zone",
    ),
    (
        "logencoding",
        "logs are read as UTF-8; other bytes become replacement characters",
    ),
    (
        "maxmatches",
        "ban-agent keeps no matched lines per address (mail has log_lines)",
    ),
    (
        "maxlines",
        "set maxlines in the filter's .local file: the filter reads it",
    ),
];

/// Something of fail2ban's configuration the import leaves out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// `file:line` where it is written.
    pub at: String,
    pub jail: String,
    pub key: String,
    pub why: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: [{}] {}: {}", self.at, self.jail, self.key, self.why)
    }
}

/// The import: a configuration, the jails it has, and what it left out.
#[derive(Clone, Debug)]
pub struct Imported {
    pub config: Table,
    pub jails: Vec<String>,
    pub notes: Vec<Note>,
}

impl Imported {
    /// The configuration as TOML, its notes as comments at the end.
    pub fn to_toml(&self, dir: &Path) -> String {
        let mut out = format!(
            "# Imported from {} by `ban-agent import-fail2ban`: its enabled jails, with\n\
             # their filters read in place. Add `interfaces` (the NICs clients come in on).\n\n",
            dir.display()
        );
        out.push_str(&self.config.to_string());
        if !self.notes.is_empty() {
            out.push_str("\n# Not imported:\n");
            for note in &self.notes {
                out.push_str(&format!("#   {note}\n"));
            }
        }
        out
    }
}

/// Reads fail2ban's jails in `dir` (`/etc/fail2ban`). `services` resolves port names
/// (`ssh`, `http`), as `/etc/services` does; `host` is this host's name (fail2ban's
/// `<fq-hostname>`).
pub fn import(
    dir: &Path,
    services: &dyn Fn(&str) -> Option<u16>,
    host: &str,
) -> Result<Imported, Fail2banError> {
    let ini = Ini::read_stack(&dir.join("jail"))?;
    let mut config = Table::new();
    config.insert(
        "fail2ban_dir".into(),
        Value::String(dir.display().to_string()),
    );
    let mut jails = Table::new();
    let mut names = Vec::new();
    let mut notes = Vec::new();
    for name in ini.sections.keys() {
        if NOT_JAILS.contains(&name.as_str()) || name.starts_with("KNOWN/") || name.contains('?') {
            continue;
        }
        let jail = JailReader {
            ini: &ini,
            name,
            dir,
            host,
            notes: Vec::new(),
        };
        let (table, jail_notes) = jail.read(services)?;
        notes.extend(jail_notes);
        if let Some(table) = table {
            jails.insert(name.clone(), Value::Table(table));
            names.push(name.clone());
        }
    }
    config.insert("jail".into(), Value::Table(jails));
    Ok(Imported {
        config,
        jails: names,
        notes,
    })
}

struct JailReader<'a> {
    ini: &'a Ini,
    name: &'a str,
    dir: &'a Path,
    /// This host's name, for fail2ban's `<fq-hostname>` in mail addresses.
    host: &'a str,
    notes: Vec<Note>,
}

impl JailReader<'_> {
    /// An option's interpolated value; `None` when unset.
    fn get(&self, key: &str) -> Result<Option<String>, Fail2banError> {
        match self.ini.get(self.name, key, &Vars::new()) {
            Ok(value) => Ok(Some(value)),
            Err(Ok(Absent::Option | Absent::Section)) => Ok(None),
            Err(Err(error)) => Err(error),
        }
    }

    /// Where `key` is written for this jail: its section, else `[DEFAULT]`.
    fn at(&self, key: &str) -> String {
        self.ini
            .section(self.name)
            .and_then(|s| s.get(key))
            .or_else(|| self.ini.defaults.get(key))
            .map_or_else(|| format!("[{}]", self.name), |e| e.at())
    }

    /// An option's value as written, before interpolation.
    fn raw(&self, key: &str) -> Option<String> {
        self.ini
            .section(self.name)
            .and_then(|s| s.get(key))
            .or_else(|| self.ini.defaults.get(key))
            .map(|e| e.value.trim().to_owned())
    }

    fn note(&mut self, key: &str, why: impl Into<String>) {
        self.notes.push(Note {
            at: self.at(key),
            jail: self.name.to_owned(),
            key: key.to_owned(),
            why: why.into(),
        });
    }

    /// The jail as a TOML table (`None` when it is not enabled or cannot run), with what
    /// was left out.
    fn read(
        mut self,
        services: &dyn Fn(&str) -> Option<u16>,
    ) -> Result<(Option<Table>, Vec<Note>), Fail2banError> {
        let table = self.table(services)?;
        Ok((table, self.notes))
    }

    fn table(
        &mut self,
        services: &dyn Fn(&str) -> Option<u16>,
    ) -> Result<Option<Table>, Fail2banError> {
        let enabled = self.get("enabled")?.map(|v| truthy(&v)).unwrap_or(false);
        if !enabled {
            return Ok(None);
        }
        let mut table = Table::new();
        let backend = self.get("backend")?.unwrap_or_else(|| "auto".into());
        let journal = backend.trim().starts_with("systemd");
        let Some(filter) = self.filter()? else {
            return Ok(None);
        };
        table.insert("filter".into(), Value::String(filter));
        if journal {
            // The journal of the system; the filter's journalmatch selects the entries.
            let backend = FilterRef::parse(&backend)?;
            let options: Vec<String> = backend
                .options
                .iter()
                .filter(|(k, _)| matches!(k.as_str(), "journalpath" | "journalfiles"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let value = if options.is_empty() {
                "systemd".to_owned()
            } else {
                format!("systemd[{}]", options.join(", "))
            };
            table.insert("backend".into(), Value::String(value));
            if let Some(matches) = self.get("journalmatch")? {
                table.insert("journalmatch".into(), Value::String(matches));
            }
            return Ok(Some(self.finish(table, services)?));
        }
        let logpath: Vec<Value> = self
            .get("logpath")?
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(|path| Value::String(path.to_owned()))
            .collect();
        if logpath.is_empty() {
            self.note("logpath", "no logpath: the jail has nothing to read");
            return Ok(None);
        }
        table.insert("logpath".into(), Value::Array(logpath));
        self.finish(table, services).map(Some)
    }

    /// Ports, counting, ban and ignore settings, and notes, common to file and journal
    /// jails.
    fn finish(
        &mut self,
        mut table: Table,
        services: &dyn Fn(&str) -> Option<u16>,
    ) -> Result<Table, Fail2banError> {
        let protocol = self.get("protocol")?.unwrap_or_else(|| "tcp".into());
        let protocol = protocol.trim().to_lowercase();
        if matches!(protocol.as_str(), "tcp" | "udp" | "all") {
            table.insert("protocol".into(), Value::String(protocol.clone()));
        } else {
            self.note(
                "protocol",
                format!("{protocol:?}: ban-agent bans tcp, udp or all; left at tcp"),
            );
        }
        if let Some(ports) = self.ports(services, &protocol)? {
            table.insert("ports".into(), ports);
        }
        if let Some(maxretry) = self.get("maxretry")? {
            match maxretry.trim().parse::<i64>() {
                Ok(n) => {
                    table.insert("maxretry".into(), Value::Integer(n));
                }
                Err(_) => self.note("maxretry", format!("{maxretry:?} is not a number")),
            }
        }
        for key in ["findtime", "bantime"] {
            if let Some(value) = self.get(key)? {
                let value = value.trim();
                let value = if key == "bantime" && value.starts_with('-') {
                    "permanent"
                } else {
                    value
                };
                table.insert(key.into(), Value::String(value.to_owned()));
            }
        }
        self.increment(&mut table)?;
        self.ignore(&mut table)?;
        self.actions(&mut table)?;
        self.unmapped()?;
        Ok(table)
    }

    /// `filter = NAME[options]` as a path to the `.conf` file in place, with its options
    /// (a journal jail's filter gets `logtype=journal` from the configuration).
    fn filter(&mut self) -> Result<Option<String>, Fail2banError> {
        let Some(text) = self.get("filter")?.filter(|t| !t.trim().is_empty()) else {
            self.note("filter", "no filter: the jail is left out");
            return Ok(None);
        };
        let mut reference = FilterRef::parse(&text)?;
        let filter_dir = self.dir.join("filter.d");
        let file = PathBuf::from(format!("{}.conf", reference.base(&filter_dir).display()));
        if !file.is_file() {
            self.note(
                "filter",
                format!("{} does not exist: the jail is left out", file.display()),
            );
            return Ok(None);
        }
        if let Some(datepattern) = self.get("datepattern")? {
            reference.options.push(("datepattern".into(), datepattern));
        }
        let options: Vec<String> = reference
            .options
            .iter()
            .map(|(k, v)| {
                if v.contains([',', ']', '"']) || v.starts_with('\'') {
                    format!("{k}='{v}'")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        let path = file.display().to_string();
        Ok(Some(if options.is_empty() {
            path
        } else {
            format!("{path}[{}]", options.join(", "))
        }))
    }

    /// `port = ssh,http,8000:8010` as numbers and ranges; every port gives none.
    fn ports(
        &mut self,
        services: &dyn Fn(&str) -> Option<u16>,
        protocol: &str,
    ) -> Result<Option<Value>, Fail2banError> {
        let Some(text) = self.get("port")? else {
            return Ok(None);
        };
        let mut ports = Vec::new();
        for word in text
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|w| !w.is_empty())
        {
            if let Some((low, high)) = word.split_once(':') {
                let range = (low.parse::<u32>(), high.parse::<u32>());
                match range {
                    (Ok(0 | 1), Ok(65535)) => return Ok(None),
                    (Ok(low), Ok(high)) if low <= high && high <= 65535 => {
                        ports.push(Value::String(format!("{low}-{high}")));
                    }
                    _ => self.note("port", format!("{word:?} is not a port range")),
                }
            } else if let Ok(port) = word.parse::<u16>() {
                ports.push(Value::Integer(i64::from(port)));
            } else if let Some(port) = services(word) {
                ports.push(Value::Integer(i64::from(port)));
            } else {
                self.note(
                    "port",
                    format!(
                        "{word:?} is no port number, nor a {protocol} service in /etc/services"
                    ),
                );
            }
        }
        Ok((!ports.is_empty()).then_some(Value::Array(ports)))
    }

    /// `bantime.increment` and its `factor`, `maxtime`, `overalljails`.
    fn increment(&mut self, table: &mut Table) -> Result<(), Fail2banError> {
        let Some(enabled) = self.get("bantime.increment")? else {
            return Ok(());
        };
        if !truthy(&enabled) {
            return Ok(());
        }
        let mut increment = Table::new();
        increment.insert("enabled".into(), Value::Boolean(true));
        if let Some(factor) = self.get("bantime.factor")? {
            match factor.trim().parse::<f64>() {
                Ok(f) => {
                    increment.insert("factor".into(), Value::Float(f));
                }
                Err(_) => self.note("bantime.factor", format!("{factor:?} is not a number")),
            }
        }
        if let Some(maxtime) = self.get("bantime.maxtime")? {
            increment.insert("maxtime".into(), Value::String(maxtime.trim().to_owned()));
        }
        if let Some(all) = self.get("bantime.overalljails")? {
            increment.insert("overall_jails".into(), Value::Boolean(truthy(&all)));
        }
        table.insert("bantime_increment".into(), Value::Table(increment));
        Ok(())
    }

    /// `ignoreip` (addresses and networks; host names are not resolved) and `ignoreself`.
    fn ignore(&mut self, table: &mut Table) -> Result<(), Fail2banError> {
        if let Some(text) = self.get("ignoreip")? {
            let mut nets = Vec::new();
            for word in text.split([' ', ',', '\t', '\n']).filter(|w| !w.is_empty()) {
                let net = word
                    .parse::<IpNet>()
                    .ok()
                    .or_else(|| word.parse::<std::net::IpAddr>().ok().map(IpNet::from));
                match net {
                    Some(_) => nets.push(Value::String(word.to_owned())),
                    None => self.note(
                        "ignoreip",
                        format!("{word:?} is not an address or network (names are not resolved)"),
                    ),
                }
            }
            if !nets.is_empty() {
                table.insert("ignoreip".into(), Value::Array(nets));
            }
        }
        if let Some(value) = self.get("ignoreself")?
            && !truthy(&value)
        {
            self.note(
                "ignoreself",
                "false: ignoreself is global in ban-agent (and on by default)",
            );
        }
        Ok(())
    }

    /// Notes for options with no counterpart that are set to something other than
    /// fail2ban's stock value, and for ban actions other than the stock one.
    fn unmapped(&mut self) -> Result<(), Fail2banError> {
        for (key, why) in UNMAPPED {
            let Some(value) = self.get(key)? else {
                continue;
            };
            let stock = match key {
                "logencoding" => matches!(value.trim(), "auto" | "utf-8" | "UTF-8" | "utf8"),
                "maxmatches" => self.raw(key).as_deref() == Some("%(maxretry)s"),
                _ => value.trim().is_empty(),
            };
            if !stock {
                self.note(key, why);
            }
        }
        if let Some(usedns) = self.get("usedns")?
            && !matches!(usedns.trim(), "no" | "warn" | "raw")
        {
            self.note(
                "usedns",
                format!("{usedns}: host names in logs are never resolved (fail2ban's `no`)"),
            );
        }
        Ok(())
    }

    /// `action`: a firewall's action is the kernel ban; fail2ban's mail actions become
    /// `on_ban.email`, their `dest` and `sender` carried (with the log lines of the
    /// `-lines` and `-matches` ones); any other is noted.
    fn actions(&mut self, table: &mut Table) -> Result<(), Fail2banError> {
        let Some(value) = self.get("action")? else {
            return Ok(());
        };
        let mut email: Option<Table> = None;
        let mut others = Vec::new();
        for text in split_actions(&value) {
            let reference = FilterRef::parse(&text)?;
            let name = reference.name.trim_end_matches(".conf");
            let name = name.rsplit('/').next().unwrap_or(name).to_owned();
            if super::action::is_firewall(&name) {
                continue;
            }
            let Some(log_lines) = mail_log_lines(&name) else {
                others.push(text);
                continue;
            };
            let option = |key: &str| {
                reference
                    .options
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.trim().to_owned())
            };
            let to: Vec<Value> = option("dest")
                .unwrap_or_else(|| "root".to_owned())
                .split([',', ' '])
                .filter(|address| !address.is_empty())
                .map(|address| Value::String(mailbox(address, "localhost", self.host)))
                .collect();
            let sender = option("sender").unwrap_or_else(|| "fail2ban".to_owned());
            let mut mail = Table::new();
            mail.insert("to".into(), Value::Array(to));
            mail.insert(
                "from".into(),
                Value::String(mailbox(&sender, self.host, self.host)),
            );
            mail.insert("log_lines".into(), Value::Integer(log_lines));
            if let Some(host) = option("host").filter(|_| name == "smtp.py") {
                mail.insert("smtp".into(), Value::String(host));
            }
            if email.replace(mail).is_some() {
                self.note(
                    "action",
                    "two mail actions: the last one's settings are kept",
                );
            }
        }
        if let Some(email) = email {
            let mut on_ban = Table::new();
            on_ban.insert("email".into(), Value::Table(email));
            table.insert("on_ban".into(), Value::Table(on_ban));
        }
        // The other actions run as fail2ban runs them, read in place from action.d.
        if !others.is_empty() {
            let list = others.into_iter().map(Value::String).collect();
            table.insert("action".into(), Value::Array(list));
        }
        Ok(())
    }
}

/// For fail2ban's mail actions, the log lines their mails carry (the `-lines` and
/// `-matches` ones carry the failing lines; ban-agent's mail takes the lines of the logs
/// that hold the address); `None` for an action that is no mail.
fn mail_log_lines(name: &str) -> Option<i64> {
    let lines = name.ends_with("-lines") || name.contains("matches");
    let mail = name == "smtp.py"
        || ["mail", "sendmail"]
            .iter()
            .any(|family| name == *family || name.starts_with(&format!("{family}-")));
    mail.then_some(if lines { 20 } else { 0 })
}

/// A mail address as fail2ban's mail actions complete it: `<fq-hostname>` is this host's
/// name, and a bare user (`root`, as sendmail delivers locally) gets `@domain`.
fn mailbox(text: &str, domain: &str, host: &str) -> String {
    let text = text
        .trim_matches(['"', '\''])
        .replace("<fq-hostname>", host);
    if text.contains('@') {
        text
    } else {
        format!("{text}@{domain}")
    }
}

/// A jail's `action` value: one action a line, or several on a line separated by blanks
/// outside their `[...]` options (fail2ban's `splitWithOptions`).
pub fn split_actions(value: &str) -> Vec<String> {
    let mut actions = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for c in value.chars() {
        match (c, quote) {
            ('"' | '\'', None) if depth > 0 => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            ('[', None) => depth += 1,
            (']', None) => depth = depth.saturating_sub(1),
            (c, None) if c.is_whitespace() && depth == 0 => {
                if !current.is_empty() {
                    actions.push(std::mem::take(&mut current));
                }
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.is_empty() {
        actions.push(current);
    }
    actions
}

/// fail2ban's booleans.
fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_lowercase().as_str(),
        "true" | "yes" | "1" | "on" | "enabled"
    )
}

/// Port names from an `/etc/services` text, for `protocol`.
pub fn services_from(text: &str, protocol: &str) -> BTreeMap<String, u16> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let (Some(name), Some(port)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((number, proto)) = port.split_once('/') else {
            continue;
        };
        if protocol != "all" && proto != protocol {
            continue;
        }
        if let Ok(number) = number.parse::<u16>() {
            map.entry(name.to_owned()).or_insert(number);
            for alias in words {
                map.entry(alias.to_owned()).or_insert(number);
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services(name: &str) -> Option<u16> {
        match name {
            "ssh" => Some(22),
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        }
    }

    #[test]
    fn an_enabled_jail_with_paths_defaults_and_unmapped_options() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write(
            "jail.conf",
            "[INCLUDES]\nbefore = paths-x.conf\n[DEFAULT]\nbantime = 10m\nfindtime = 10m\n\
             maxretry = 5\nmode = normal\nfilter = %(__name__)s[mode=%(mode)s]\nport = 0:65535\n\
             action = %(action_mw)s\naction_mw = mail-whois\nignoreip = 127.0.0.1/8 ::1 localhost\n\
             [sshd]\nport = ssh\nlogpath = %(sshd_log)s\n[nginx-http-auth]\nport = http,https\n\
             logpath = /var/log/nginx/error.log\n",
        );
        write("paths-x.conf", "[DEFAULT]\nsshd_log = /var/log/auth.log\n");
        write(
            "jail.d/local.conf",
            "[sshd]\nenabled = true\nmode = aggressive\nbantime = -1\nbantime.formula = x\n",
        );
        write(
            "filter.d/sshd.conf",
            "[Definition]\nfailregex = ^x <HOST>$\n",
        );
        let imported = import(dir.path(), &services, "host.example.org").expect("imports");
        assert_eq!(imported.jails, vec!["sshd".to_owned()]);
        let sshd = imported.config["jail"]["sshd"].as_table().expect("table");
        let filter = sshd["filter"].as_str().expect("filter");
        assert!(
            filter.ends_with("filter.d/sshd.conf[mode=aggressive]"),
            "{filter}"
        );
        assert_eq!(
            sshd["ports"].as_array().expect("ports")[0].as_integer(),
            Some(22)
        );
        assert_eq!(sshd["bantime"].as_str(), Some("permanent"));
        assert_eq!(sshd["logpath"][0].as_str(), Some("/var/log/auth.log"));
        let notes: Vec<String> = imported.notes.iter().map(|n| n.to_string()).collect();
        let all = notes.join("\n");
        assert!(
            all.contains("bantime.formula") && all.contains("local.conf:5"),
            "{all}"
        );
        assert!(all.contains("\"localhost\""), "{all}");
        // `mail-whois` is carried into on_ban.email, fail2ban's defaults completed.
        assert!(!all.contains("action"), "{all}");
        let email = sshd["on_ban"]["email"].as_table().expect("email");
        assert_eq!(email["to"][0].as_str(), Some("root@localhost"));
        assert_eq!(email["from"].as_str(), Some("fail2ban@host.example.org"));
        assert_eq!(email["log_lines"].as_integer(), Some(0));
        let text = imported.to_toml(dir.path());
        let parsed: Table = text.parse().expect("the output is TOML");
        assert!(parsed.contains_key("jail"));
    }

    /// The seed's kind of jail: a firewall action (the kernel ban), a mail action whose
    /// addresses are carried, and another action carried as it is.
    #[test]
    fn mail_actions_become_on_ban_email_and_firewall_ones_the_kernel_ban() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("filter.d")).expect("mkdir");
        std::fs::write(
            dir.path().join("filter.d/fastapi-auth.conf"),
            "[Definition]\nfailregex = ^<HOST> failed$\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("jail.conf"),
            "[fastapi-auth]\nenabled = true\nfilter = fastapi-auth\nlogpath = /var/log/a.log\nport = 8000\n\
             action = iptables-multiport[name=fastapi, port=\"8000\", protocol=tcp]\n\
             \x20        sendmail-whois-lines[dest=\"admin@example.com, ops@example.com\", sender=ban@example.com] abuseipdb[abuseipdb_apikey=K]\n",
        )
        .expect("write");
        let imported = import(dir.path(), &services, "web1").expect("imports");
        let notes: Vec<String> = imported.notes.iter().map(|n| n.to_string()).collect();
        let jail = imported.config["jail"]
            .get("fastapi-auth")
            .and_then(Value::as_table)
            .unwrap_or_else(|| panic!("no jail: {notes:?}"));
        let email = jail["on_ban"]["email"].as_table().expect("email");
        let to: Vec<&str> = email["to"]
            .as_array()
            .expect("to")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(to, ["admin@example.com", "ops@example.com"]);
        assert_eq!(email["from"].as_str(), Some("ban@example.com"));
        assert_eq!(email["log_lines"].as_integer(), Some(20));
        assert!(notes.is_empty(), "{notes:?}");
        // The other command action runs as fail2ban runs it.
        assert_eq!(
            jail["action"].as_array().expect("action")[0].as_str(),
            Some("abuseipdb[abuseipdb_apikey=K]")
        );
        // The written configuration is read back in config's tests.
    }

    #[test]
    fn actions_split_as_fail2ban_splits_them() {
        assert_eq!(
            split_actions("a[x=\"1 2\", y=3] b\n  c[z='] ['] d"),
            ["a[x=\"1 2\", y=3]", "b", "c[z='] [']", "d"]
        );
        assert_eq!(mail_log_lines("sendmail-whois"), Some(0));
        assert_eq!(mail_log_lines("mail-whois-lines"), Some(20));
        assert_eq!(mail_log_lines("sendmail-whois-ipjailmatches"), Some(20));
        assert_eq!(mail_log_lines("smtp.py"), Some(0));
        assert_eq!(mail_log_lines("mailgun"), None);
        assert_eq!(mailbox("root", "localhost", "h"), "root@localhost");
        assert_eq!(
            mailbox("fail2ban@<fq-hostname>", "h", "web1"),
            "fail2ban@web1"
        );
    }

    #[test]
    fn services_are_read_for_the_protocol() {
        let map = services_from("ssh 22/tcp\nhttp 80/tcp www # web\nsyslog 514/udp\n", "tcp");
        assert_eq!(map.get("www"), Some(&80));
        assert_eq!(map.get("syslog"), None);
    }
}
