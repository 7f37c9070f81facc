//! Configuration errors, located: file, line, column and key.

use std::{ops::Range, path::PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}; check the path and its permissions", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Untrusted(#[from] crate::trust::TrustError),
    #[error("{}:{line}:{column}: `{key}`: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
}

/// A TOML file being read: turns byte spans into line and column, and names the key at a
/// position for errors that serde reports without one.
pub(super) struct Source<'a> {
    pub path: PathBuf,
    pub text: &'a str,
}

impl Source<'_> {
    pub fn error(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.line_column(span.start);
        ConfigError::Invalid {
            path: self.path.clone(),
            line,
            column,
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// A TOML syntax or type error, with the key found at its position.
    pub fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        let span = error.span().unwrap_or(0..0);
        let key = self.key_at(span.start);
        let message = error.message().trim_end().replace('\n', " ");
        let message = unknown_key(&message)
            .or_else(|| invalid_type(&message))
            .unwrap_or(message);
        self.error(span, &key, message)
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// The dotted key written at or above `offset`: the nearest `[table]` header and the
    /// `key =` of the line (or of the line that opened a multi-line value).
    fn key_at(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        let end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        let mut key = None;
        for line in self.text[..end].lines().rev() {
            let line = line.trim();
            if let Some(header) = line.strip_prefix('[') {
                let table = header.trim_start_matches('[');
                let table = table.split(']').next().unwrap_or(table).trim();
                return match key {
                    Some(key) => format!("{table}.{key}"),
                    None => table.to_owned(),
                };
            }
            if key.is_none()
                && let Some((name, _)) = line.split_once('=')
                && !name.trim().is_empty()
                && !name.contains(['"', '\''])
            {
                key = Some(name.trim().to_owned());
            }
        }
        key.unwrap_or_else(|| "(top level)".to_owned())
    }
}

/// serde's "invalid type: string \"five\", expected i64" in our words.
fn invalid_type(message: &str) -> Option<String> {
    let (found, expected) = message
        .strip_prefix("invalid type: ")?
        .split_once(", expected ")?;
    let expected = match expected {
        "i64" | "u64" | "u32" | "i32" => "a whole number (no quotes)",
        "f64" => "a number (no quotes)",
        "a boolean" => "true or false (no quotes)",
        "a string" => "a string in double quotes",
        "a sequence" => "a list in brackets, [ ... ]",
        other => other,
    };
    Some(format!("{found} where {expected} is expected"))
}

/// fail2ban's names for what has another name here, or no place.
const FAIL2BAN_KEYS: [(&str, &str); 10] = [
    ("port", "ban-agent's is `ports`, a list: ports = [80, 443]"),
    (
        "bantime.increment",
        "ban-agent's is the table [jail.NAME.bantime_increment]",
    ),
    (
        "banaction",
        "ban-agent bans in its own eBPF program: nothing to choose",
    ),
    (
        "action",
        "ban-agent bans in its own eBPF program; notifications are `on_ban` and `on_unban`",
    ),
    ("usedns", "ban-agent bans addresses only, never names"),
    (
        "chain",
        "ban-agent drops before netfilter: there is no chain",
    ),
    ("protocols", "ban-agent's is `protocol`: tcp, udp or all"),
    (
        "ignoreself",
        "`ignoreself` is a global key here, at the top of the file",
    ),
    (
        "dbfile",
        "bans and history are kept under the global `state_dir`",
    ),
    (
        "mode",
        "a fail2ban filter takes its mode as an option: filter = \"sshd[mode=aggressive]\"",
    ),
];

/// serde's "unknown field `x`, expected one of `a`, `b`" in our words: what the key may be
/// (a near name, or fail2ban's name for one of ours) and the keys allowed there.
fn unknown_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let allowed: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let hint = FAIL2BAN_KEYS
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, ours)| format!(" (a fail2ban key: {ours})"))
        .or_else(|| {
            allowed
                .iter()
                .map(|name| (strsim::jaro_winkler(key, name), *name))
                .filter(|(score, _)| *score > 0.85)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, name)| format!(": did you mean `{name}`?"))
        })
        .unwrap_or_default();
    let end = if hint.ends_with('?') { " " } else { ". " };
    Some(format!(
        "unknown key `{key}`{hint}{end}Keys allowed here: {}",
        allowed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_become_lines_columns_and_keys() {
        let text = "state_dir = 1\n[jail.web]\nmaxretry = 3\nports = [\n  80,\n  \"x\",\n]\n";
        let source = Source {
            path: PathBuf::from("a.toml"),
            text,
        };
        assert_eq!(source.line_column(0), (1, 1));
        let x = text.find("\"x\"").expect("x");
        assert_eq!(source.line_column(x), (6, 3));
        assert_eq!(source.key_at(x), "jail.web.ports");
        assert_eq!(
            source.key_at(text.find('3').expect("3")),
            "jail.web.maxretry"
        );
        assert_eq!(source.key_at(text.find('1').expect("1")), "state_dir");
        assert_eq!(source.key_at(text.find("[jail").expect("h")), "jail.web");
    }
}
