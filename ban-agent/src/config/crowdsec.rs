//! `[crowdsec]`: CrowdSec's decisions enforced in the kernel, as its firewall bouncer
//! would, from the Local API's decision stream.
//!
//! ```toml
//! [crowdsec]
//! url = "http://127.0.0.1:8080/"                 # the Local API (default)
//! api_key_file = "/etc/ban-agent/crowdsec.key"   # `cscli bouncers add ban-agent -o raw`
//! interval = "1s"                                # between two reads of the stream
//! scopes = ["ip", "range"]                       # which decisions (default: both)
//! origins = ["crowdsec", "cscli", "CAPI"]        # whose (default: every origin)
//! jail = "crowdsec"                              # the jail its bans are in
//! max_bantime = "7d"                             # the longest ban a decision may set
//! ```
//!
//! The jail is a jail like the others (`status crowdsec`, `unban`, actions), which reads
//! no log: `[jail.crowdsec]` may set its `ports` (every port by default, as the firewall
//! bouncer bans), `ignoreip`, `max_bans_per_minute` (none by default: CrowdSec's
//! community blocklist brings thousands at once), its actions and `bantime` (for an
//! operator's `ban` in it).

use std::{path::Path, path::PathBuf, time::Duration};

use serde::Deserialize;
use toml::{Spanned, Value};

use super::{ConfigError, error::Source};

/// Where the Local API listens unless `url` says otherwise (its default).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/";
/// Between two reads of the stream unless `interval` says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// The jail of CrowdSec's bans unless `jail` says otherwise.
pub const DEFAULT_JAIL: &str = "crowdsec";

/// The bouncer's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrowdSec {
    /// The Local API's base URL, ending with `/`.
    pub url: String,
    /// A file holding the bouncer's API key (read at each connection, never logged).
    pub api_key_file: PathBuf,
    /// Between the starts of two reads of the stream.
    pub interval: Duration,
    /// The decisions' scopes applied (never empty).
    pub scopes: Vec<Scope>,
    /// The origins applied (`crowdsec`, `cscli`, `CAPI`, `lists`, ...); empty: all.
    pub origins: Vec<String>,
    /// The jail CrowdSec's bans are in.
    pub jail: String,
    /// The longest ban a decision may set here; `None`: the decision's own duration.
    pub max_bantime: Option<Duration>,
}

/// What a decision is about, of those a kernel ban can enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// One address (`Ip`).
    Ip,
    /// A network (`Range`).
    Range,
}

impl Scope {
    /// The Local API's name (its `scopes=` filter is not case-sensitive).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Range => "range",
        }
    }

    /// The scope a decision's `scope` names, whatever its case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "ip" => Some(Self::Ip),
            "range" => Some(Self::Range),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCrowdSec {
    url: Option<Spanned<String>>,
    api_key_file: Option<String>,
    interval: Option<Spanned<Value>>,
    scopes: Option<Spanned<Vec<String>>>,
    origins: Option<Spanned<Vec<String>>>,
    jail: Option<Spanned<String>>,
    max_bantime: Option<Spanned<Value>>,
}

pub(super) fn crowdsec(
    source: &Source,
    raw: &Spanned<RawCrowdSec>,
    base: &Path,
) -> Result<CrowdSec, ConfigError> {
    let span = raw.span();
    let raw = raw.get_ref();
    let url = match &raw.url {
        Some(url) => checked_url(url.get_ref())
            .map_err(|why| source.error(url.span(), "crowdsec.url", why))?,
        None => DEFAULT_URL.to_owned(),
    };
    let api_key_file = raw.api_key_file.as_ref().ok_or_else(|| {
        source.error(
            span.clone(),
            "crowdsec.api_key_file",
            "missing: expected the file that holds this bouncer's key, made with \
             `cscli bouncers add ban-agent -o raw > /etc/ban-agent/crowdsec.key`",
        )
    })?;
    let interval = match &raw.interval {
        Some(value) => {
            let interval = super::fleet::duration(source, value, "crowdsec.interval")?;
            if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&interval) {
                return Err(source.error(
                    value.span(),
                    "crowdsec.interval",
                    "out of range: expected 100ms to 1h (1s by default: a decision is \
                     enforced within about that long)",
                ));
            }
            interval
        }
        None => DEFAULT_INTERVAL,
    };
    Ok(CrowdSec {
        url,
        api_key_file: base.join(api_key_file),
        interval,
        scopes: scopes(source, raw.scopes.as_ref())?,
        origins: origins(source, raw.origins.as_ref())?,
        jail: match &raw.jail {
            Some(name) => super::fleet::word(source, name, "crowdsec.jail")?,
            None => DEFAULT_JAIL.to_owned(),
        },
        max_bantime: raw
            .max_bantime
            .as_ref()
            .map(|value| super::fleet::duration(source, value, "crowdsec.max_bantime"))
            .transpose()?,
    })
}

/// `url`: http or https, with a host; a `/` is added at its end.
fn checked_url(url: &str) -> Result<String, String> {
    let expected = "expected the Local API's address, e.g. \"http://127.0.0.1:8080/\" \
                    (`api.server.listen_uri` in CrowdSec's config.yaml)";
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL: {expected}"))?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        return Err(format!("{url:?} names no host: {expected}"));
    }
    if rest.contains('?') || rest.contains('#') {
        return Err(format!("{url:?} has a query: {expected}"));
    }
    Ok(if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    })
}

fn scopes(source: &Source, raw: Option<&Spanned<Vec<String>>>) -> Result<Vec<Scope>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(vec![Scope::Ip, Scope::Range]);
    };
    let mut scopes = Vec::new();
    for text in raw.get_ref() {
        let scope = Scope::parse(text).ok_or_else(|| {
            source.error(
                raw.span(),
                "crowdsec.scopes",
                format!(
                    "{text:?} is not a scope a kernel ban enforces: expected \"ip\" and/or \
                     \"range\" (a country's or an AS's decisions are for CrowdSec's own \
                     bouncers)"
                ),
            )
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err(source.error(
            raw.span(),
            "crowdsec.scopes",
            "empty: expected [\"ip\"], [\"range\"] or both (the default)",
        ));
    }
    scopes.sort_unstable();
    Ok(scopes)
}

fn origins(
    source: &Source,
    raw: Option<&Spanned<Vec<String>>>,
) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    for origin in raw.get_ref() {
        let fine = !origin.is_empty()
            && origin
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !fine {
            return Err(source.error(
                raw.span(),
                "crowdsec.origins",
                format!(
                    "{origin:?} is not an origin: expected names such as \"crowdsec\", \
                     \"cscli\", \"CAPI\" or \"lists\" (leave `origins` out for all)"
                ),
            ));
        }
    }
    Ok(raw.get_ref().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_end_with_a_slash() {
        assert_eq!(
            checked_url("http://127.0.0.1:8080").as_deref(),
            Ok("http://127.0.0.1:8080/")
        );
        assert_eq!(
            checked_url("https://lapi.internal/").as_deref(),
            Ok("https://lapi.internal/")
        );
        for wrong in [
            "127.0.0.1:8080",
            "ftp://x/",
            "http://",
            "http:///x",
            "http://x/?a=b",
        ] {
            assert!(checked_url(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn scopes_read_whatever_their_case() {
        assert_eq!(Scope::parse("Ip"), Some(Scope::Ip));
        assert_eq!(Scope::parse("RANGE"), Some(Scope::Range));
        assert_eq!(Scope::parse("Country"), None);
    }
}
