//! fail2ban's own files, read as fail2ban reads them: filter `.conf` files with their
//! includes, overlays and interpolation ([`definition`]), Python's regex dialect and
//! fail2ban's tags translated to Rust's ([`regex`]), jails ([`jails`]). A filter read
//! here is a [`crate::filter::Filter`] like any other: this module runs no lines.
//!
//! fail2ban's readers (`client/configparserinc.py`, `client/configreader.py`,
//! `server/failregex.py`, `server/filter.py`, `server/datedetector.py`) are the
//! specification; this is our own reading of them, tested against fail2ban's annotated
//! sample logs by `cargo xtask conformance`.

pub mod action;
pub mod bans;
pub mod definition;
pub mod ini;
pub mod interpolate;
pub mod jails;
pub mod regex;

use std::path::PathBuf;

pub use definition::{Definition, FilterRef};

/// Where fail2ban keeps its filters on every distribution.
pub const FILTER_DIR: &str = "/etc/fail2ban/filter.d";

/// What is wrong with a fail2ban file, said with where.
#[derive(Debug, thiserror::Error)]
pub enum Fail2banError {
    #[error(
        "{} does not exist: give fail2ban's configuration folder (filter.d holds its filters, jail.conf its jails), or the path of a filter's .conf file",
        tried.display()
    )]
    Missing { tried: PathBuf },
    #[error(
        "no action {name:?}: {} does not exist (fail2ban's actions are in its action.d)",
        tried.display()
    )]
    MissingAction { name: String, tried: PathBuf },
    #[error(
        "{name}: a Python action, which fail2ban runs inside its server; ban-agent runs \
         .conf actions (for smtp.py's mail, set on_ban.email)"
    )]
    PythonAction { name: String },
    #[error("cannot read {}: {source}", file.display())]
    Unreadable {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: [INCLUDES] nest more than 16 deep: do two files include each other?", file.display())]
    IncludeLoop { file: PathBuf },
    #[error("{}:{line}: {problem}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("{at}: [{section}] {key}: {problem}")]
    Interpolation {
        at: String,
        section: String,
        key: String,
        problem: String,
    },
    #[error("<{tag}> refers to <{found}> in a loop: fail2ban cannot resolve it either")]
    TagLoop { tag: String, found: String },
    #[error(
        "filter options {text:?}: {problem} (write name[key=value, key2=\"value, with comma\"])"
    )]
    Options { text: String, problem: String },
    #[error("{at}: [Definition] {key}: {value:?} is not {expected}")]
    Value {
        at: String,
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{at}: [Definition] failregex: the filter has no failregex: it would never match")]
    NoFailregex { at: String },
    #[error("{at}: [Definition] datepattern: {pattern:?}: {problem}")]
    DatePattern {
        at: String,
        pattern: String,
        problem: String,
    },
    #[error("{at}: [Definition] {key} #{}: {regex:?}: {problem}", index + 1)]
    Regex {
        at: String,
        key: String,
        index: usize,
        regex: String,
        problem: String,
    },
}
