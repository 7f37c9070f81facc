//! A fail2ban filter file read as fail2ban's `FilterReader` reads it: the stack of files,
//! `[Definition]` with the jail's options, `[Init]`, then `<tag>` substitution, giving the
//! regexes and settings the matcher compiles.

use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;

use super::{
    Fail2banError,
    ini::Ini,
    interpolate::{Absent, Vars, substitute_tags},
    regex::to_rust,
};
use crate::filter::{Filter, FilterError, ModelSpec, Source};

/// The options of `[Definition]` a filter is made of (fail2ban's `FilterReader._configOpts`).
const OPTIONS: [&str; 7] = [
    "usedns",
    "prefregex",
    "ignoreregex",
    "failregex",
    "maxlines",
    "datepattern",
    "journalmatch",
];

/// A filter, every option resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Definition {
    /// `sshd[mode=aggressive]`, for messages.
    pub name: String,
    /// The filter's main file.
    pub file: PathBuf,
    /// Every file read, includes and overlays with it, in the order merged.
    pub files: Vec<PathBuf>,
    /// Where each option was written (`file:line`), for messages.
    pub locations: std::collections::BTreeMap<String, String>,
    pub prefregex: Option<String>,
    pub failregex: Vec<String>,
    pub ignoreregex: Vec<String>,
    pub maxlines: usize,
    /// One pattern per line, as written; `None`: fail2ban's default templates.
    pub datepattern: Option<String>,
    /// `journalctl`-style matches, one per line (`_SYSTEMD_UNIT=sshd.service + _COMM=sshd`).
    pub journalmatch: Vec<String>,
    /// `usedns` of the filter, when it sets one (`no` leaves hostnames out of `<HOST>`).
    pub usedns: Option<String>,
}

/// A filter named the way jails name them: `sshd`, `sshd[mode=aggressive]`, or a path to
/// a `.conf` file with options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterRef {
    pub name: String,
    pub options: Vec<(String, String)>,
}

impl FilterRef {
    /// Parses `name[key=value, key="value, with comma"]`.
    pub fn parse(text: &str) -> Result<Self, Fail2banError> {
        let text = text.trim();
        let Some(open) = text.find('[') else {
            return Ok(Self {
                name: text.to_owned(),
                options: Vec::new(),
            });
        };
        let bad = |problem: &str| Fail2banError::Options {
            text: text.to_owned(),
            problem: problem.to_owned(),
        };
        let inner = text[open + 1..]
            .strip_suffix(']')
            .ok_or_else(|| bad("the options do not end with ']'"))?;
        Ok(Self {
            name: text[..open].trim().to_owned(),
            options: split_options(inner).map_err(|p| bad(&p))?,
        })
    }

    /// The filter's files without extension: `dir/NAME`, or the path given without `.conf`.
    pub fn base(&self, dir: &Path) -> PathBuf {
        let name = self
            .name
            .strip_suffix(".conf")
            .or_else(|| self.name.strip_suffix(".local"))
            .unwrap_or(&self.name);
        if name.contains('/') {
            PathBuf::from(name)
        } else {
            dir.join(name)
        }
    }
}

/// `key=value, key2="a, b", key3='x'` into pairs.
fn split_options(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut options = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("{rest:?} is not key=value"))?;
        let key = rest[..eq].trim().to_owned();
        if key.is_empty() || key.contains([',', ' ']) {
            return Err(format!("{:?} is not an option name", &rest[..eq]));
        }
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
            let end = rest[1..]
                .find(quote)
                .ok_or_else(|| format!("the value of {key} has no closing {quote}"))?;
            value = rest[1..end + 1].to_owned();
            rest = rest[end + 2..].trim_start();
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        options.push((key, value));
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(options)
}

/// Reads filter `reference` from `dir` (usually `/etc/fail2ban/filter.d`).
pub fn read(dir: &Path, reference: &FilterRef) -> Result<Definition, Fail2banError> {
    let base = reference.base(dir);
    let ini = Ini::read_stack(&base)?;
    let mut definition = resolve(&ini, reference)?;
    // The filter's own file, not the first of its includes.
    let own = PathBuf::from(format!("{}.conf", base.display()));
    if own.is_file() {
        definition.file = own;
    }
    Ok(definition)
}

/// `[Init]` values are tags (and `known/` tags); the jail's options win over them, and
/// over `[Definition]`'s.
fn init_tags(
    ini: &Ini,
    reference: &FilterRef,
    tags: &mut Vec<(String, String)>,
) -> Result<(), Fail2banError> {
    let mut init: Vec<(String, String)> = reference.options.clone();
    if let Some(section) = ini.section("Init") {
        for key in section.keys() {
            let value = match ini.get("Init", key, &Vars::new()) {
                Ok(value) => value,
                Err(Ok(_)) => continue,
                Err(Err(error)) => return Err(error),
            };
            if !key.starts_with("known/") {
                init.push((format!("known/{key}"), value.clone()));
            }
            if !init.iter().any(|(k, _)| k == key) {
                init.push((key.clone(), value));
            }
        }
    }
    for (key, value) in init {
        match tags.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => tags.push((key, value)),
        }
    }
    Ok(())
}

/// The filter that read files (`ini`) define, with the options of `reference`.
pub fn resolve(ini: &Ini, reference: &FilterRef) -> Result<Definition, Fail2banError> {
    let jail: Vars = reference.options.iter().cloned().collect();
    let mut tags: Vec<(String, String)> = Vec::new();
    for option in OPTIONS {
        if jail.contains_key(option) {
            continue;
        }
        match ini.get("Definition", option, &jail) {
            Ok(value) => tags.push((option.to_owned(), value)),
            Err(Ok(_)) => {}
            Err(Err(error)) => return Err(error),
        }
    }
    init_tags(ini, reference, &mut tags)?;
    let ignore: Vec<String> = tags
        .iter()
        .filter_map(|(k, _)| k.split_once('?').map(|(base, _)| base.to_owned()))
        .collect();
    let lookup = |name: &str| match ini.get_ex("Definition", name, &jail) {
        Ok(value) => Ok(Some(value)),
        Err(Ok(Absent::Option | Absent::Section)) => Ok(None),
        Err(Err(error)) => Err(error),
    };
    substitute_tags(&mut tags, &ignore, &lookup)?;
    let value = |key: &str| tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let lines = |key: &str| -> Vec<String> {
        value(key)
            .map(|v| {
                v.split('\n')
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let maxlines = match value("maxlines") {
        None => 1,
        Some(text) => text
            .trim()
            .parse::<usize>()
            .map_err(|_| Fail2banError::Value {
                at: entry_at(ini, "maxlines"),
                key: "maxlines",
                value: text.to_owned(),
                expected: "a whole number of lines",
            })?
            .max(1),
    };
    Ok(Definition {
        name: display_name(reference),
        file: ini.files.first().cloned().unwrap_or_default(),
        files: ini.files.clone(),
        locations: OPTIONS
            .iter()
            .map(|key| ((*key).to_owned(), entry_at(ini, key)))
            .collect(),
        prefregex: value("prefregex").filter(|v| !v.trim().is_empty()),
        failregex: lines("failregex"),
        ignoreregex: lines("ignoreregex"),
        maxlines,
        datepattern: value("datepattern").filter(|v| !v.trim().is_empty()),
        journalmatch: lines("journalmatch"),
        usedns: value("usedns"),
    })
}

impl Definition {
    /// The filter as the engine takes it: its regexes in Rust's syntax, tags expanded
    /// (`<HOST>` also takes host names unless the filter sets `usedns = no`).
    pub fn spec(&self) -> ModelSpec {
        let use_dns = self.usedns.as_deref().map(str::trim) != Some("no");
        let source = |written: &String| Source {
            written: written.clone(),
            rust: to_rust(written, use_dns),
        };
        ModelSpec {
            prefregex: self.prefregex.as_ref().map(source),
            failregex: self.failregex.iter().map(source).collect(),
            ignoreregex: self.ignoreregex.iter().map(source).collect(),
            maxlines: self.maxlines,
            datepattern: self.datepattern.clone(),
            journalmatch: self.journalmatch.clone(),
        }
    }

    /// Compiles the filter; `zone` is the log's time zone, `year` this year. A problem
    /// is said with the file and line of the option that has it.
    pub fn compile(&self, zone: TimeZone, year: i16) -> Result<Filter, Fail2banError> {
        Filter::compile_model(&self.spec(), zone, year).map_err(|error| match error {
            FilterError::Regex {
                kind,
                index,
                regex,
                message,
            } => Fail2banError::Regex {
                at: self.at(kind),
                key: kind.to_owned(),
                index,
                regex,
                problem: message,
            },
            FilterError::Tag {
                index,
                regex,
                problem,
            } => Fail2banError::Regex {
                at: self.at("failregex"),
                key: "failregex".to_owned(),
                index,
                regex,
                problem: problem.to_owned(),
            },
            FilterError::DatePattern { pattern, problem } => Fail2banError::DatePattern {
                at: self.at("datepattern"),
                pattern,
                problem,
            },
            FilterError::Empty | FilterError::Option(_) | FilterError::Json(_) => {
                Fail2banError::NoFailregex {
                    at: self.at("failregex"),
                }
            }
        })
    }

    /// Where `key` was written (`file:line`), or the filter's file.
    pub fn at(&self, key: &str) -> String {
        self.locations
            .get(key)
            .cloned()
            .unwrap_or_else(|| self.file.display().to_string())
    }
}

/// `file:line` of `[Definition] key`, or the filter's first file.
fn entry_at(ini: &Ini, key: &str) -> String {
    ini.section("Definition")
        .and_then(|s| s.get(key))
        .or_else(|| ini.defaults.get(key))
        .map(|e| e.at())
        .unwrap_or_else(|| {
            ini.files
                .first()
                .map(|f| f.display().to_string())
                .unwrap_or_default()
        })
}

fn display_name(reference: &FilterRef) -> String {
    if reference.options.is_empty() {
        return reference.name.clone();
    }
    let options: Vec<String> = reference
        .options
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{}[{}]", reference.name, options.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_references_with_options() {
        let r = FilterRef::parse("sshd[mode=aggressive, __pam_auth='pam_ldap', x=\"a, b\"]")
            .expect("parses");
        assert_eq!(r.name, "sshd");
        assert_eq!(
            r.options,
            vec![
                ("mode".to_owned(), "aggressive".to_owned()),
                ("__pam_auth".to_owned(), "pam_ldap".to_owned()),
                ("x".to_owned(), "a, b".to_owned()),
            ]
        );
        assert!(FilterRef::parse("sshd[mode=aggressive").is_err());
        assert_eq!(
            FilterRef::parse("/x/y.conf")
                .expect("path")
                .base(Path::new("/d")),
            PathBuf::from("/x/y")
        );
    }

    #[test]
    fn a_filter_with_includes_modes_and_init() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write");
        };
        write(
            "common.conf",
            "[DEFAULT]\nlogtype = file\n__prefix_line = <lt_<logtype>/__prefix_line>\n[lt_file]\n__prefix_line = F:\n[lt_journal]\n__prefix_line = J:\n",
        );
        write(
            "f.conf",
            "[INCLUDES]\nbefore = common.conf\n[Definition]\nfailregex = ^%(__prefix_line)s bad <HOST>$\n            <mdre-<mode>>\nmdre-normal =\nmdre-ddos = ^ddos <HOST>\nmode = normal\n[Init]\nmaxlines = 2\n",
        );
        let read = |text: &str| read(dir.path(), &FilterRef::parse(text).expect("ref"));
        let normal = read("f").expect("reads");
        assert_eq!(normal.failregex, vec!["^F: bad <HOST>$".to_owned()]);
        assert_eq!(normal.maxlines, 2);
        let ddos = read("f[mode=ddos, logtype=journal]").expect("reads");
        assert_eq!(
            ddos.failregex,
            vec!["^J: bad <HOST>$".to_owned(), "^ddos <HOST>".to_owned()]
        );
    }

    // fail2ban's model at work on regexes of its dialect.
    use crate::filter::multiline::Matcher;

    const NOW: i64 = 1_124_013_600_000;

    fn matcher(failregex: &[&str], prefregex: Option<&str>, maxlines: usize) -> Matcher {
        let definition = Definition {
            prefregex: prefregex.map(str::to_owned),
            failregex: failregex.iter().map(|s| (*s).to_owned()).collect(),
            maxlines,
            ..Definition::default()
        };
        Matcher::new(&definition.spec(), TimeZone::UTC, 2026).expect("compiles")
    }

    #[test]
    fn the_date_is_cut_before_matching() {
        let mut m = matcher(
            &[r"^ host sshd: Failed for <F-USER>\S+</F-USER> from <HOST>$"],
            None,
            1,
        );
        let hits = m.line(
            "2005-08-14 10:00:00 host sshd: Failed for root from 192.0.2.1",
            NOW,
        );
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].id.as_deref(), Some("192.0.2.1"));
        assert_eq!(hits[0].user.as_deref(), Some("root"));
        assert_eq!(hits[0].time, Some(NOW));
    }

    #[test]
    fn prefregex_content_is_what_failregexes_see() {
        let mut m = matcher(
            &[r"^Failed from <HOST>$"],
            Some(r"^\S+ sshd\[\d+\]: <F-CONTENT>.+</F-CONTENT>$"),
            1,
        );
        assert_eq!(m.line("host sshd[1]: Failed from 192.0.2.9", NOW).len(), 1);
        assert!(
            m.line("host other[1]: Failed from 192.0.2.9", NOW)
                .is_empty()
        );
    }

    #[test]
    fn a_connection_id_carries_the_address_to_a_later_line() {
        let mut m = matcher(
            &[
                r"^Connection from <HOST>",
                r"^<F-NOFAIL>Accepted</F-NOFAIL>",
                r"^Failed password for <F-USER>\S+</F-USER>",
            ],
            Some(r"^sshd\[<F-MLFID>\d+</F-MLFID>\]: <F-CONTENT>.+</F-CONTENT>$"),
            1,
        );
        // Seen with the address, as fail2ban's test suite does (check_all).
        m.check_all = true;
        let first = m.line("sshd[7]: Connection from 192.0.2.4", NOW);
        assert_eq!(first.len(), 1);
        let failed = m.line("sshd[7]: Failed password for bob", NOW);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].id.as_deref(), Some("192.0.2.4"));
        assert_eq!(failed[0].user.as_deref(), Some("bob"));
        assert!(!failed[0].nofail);
    }

    #[test]
    fn lines_are_counted_as_fail2ban_regex_counts_them() {
        use crate::filter::{LineCount, LineKind};
        let definition = Definition {
            failregex: vec![
                r"^begin$\n^failed from <HOST>$".into(),
                r"^<F-NOFAIL>probe</F-NOFAIL> from <HOST>$".into(),
                r"^named <HOST>$".into(),
            ],
            ignoreregex: vec![r"from 192\.0\.2\.99$".into()],
            maxlines: 2,
            ..Definition::default()
        };
        let mut m = Matcher::new(&definition.spec(), TimeZone::UTC, 2026).expect("compiles");
        m.check_all = true;
        m.keep_count(true);
        let mut count = |line: &str| {
            m.judge(line, NOW, None);
            m.count()
        };
        let of = |kind, consumed, host_names| LineCount {
            kind,
            consumed,
            host_names,
        };
        assert_eq!(count("begin"), of(LineKind::Missed, 0, false));
        // The failure takes the buffered "begin" with it: counted matched from now on.
        assert_eq!(
            count("failed from 192.0.2.1"),
            of(LineKind::Matched, 1, false)
        );
        assert_eq!(
            count("probe from 192.0.2.2"),
            of(LineKind::Ignored, 0, false)
        );
        assert_eq!(count("begin"), of(LineKind::Missed, 0, false));
        // Vetoed by the ignoreregex, the failure still takes its lines out of the buffer,
        // and fail2ban-regex counts the buffered one matched.
        assert_eq!(
            count("failed from 192.0.2.99"),
            of(LineKind::Ignored, 1, false)
        );
        assert_eq!(count("named example.org"), of(LineKind::Matched, 0, true));
    }

    #[test]
    fn a_regex_without_an_address_is_refused() {
        let definition = Definition {
            failregex: vec!["^no address$".into()],
            ..Definition::default()
        };
        let error = definition
            .compile(TimeZone::UTC, 2026)
            .expect_err("refused");
        assert!(error.to_string().contains("<HOST>"), "{error}");
    }
}
