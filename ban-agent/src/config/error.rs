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
