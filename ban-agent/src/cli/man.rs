//! The manual pages: `ban-agent(8)` and a page per verb, from the clap definitions (so
//! that they never disagree with `--help`), each with the EXAMPLES of its `--help`, the
//! FILES the agent uses and a SEE ALSO whose every page is written beside it; and
//! `ban-agent.toml(5)`, made from the README's configuration reference, the one text of
//! it, so that the page and the README cannot drift apart.

use std::{fs, path::Path};

use anyhow::Context as _;

/// The README, whose "Configuration reference" section is the configuration's page.
const README: &str = include_str!("../../../README.md");
/// The example configuration the page shows.
const EXAMPLE: &str = include_str!("../../../examples/fastapi-auth/ban-agent.toml");

/// The files every page lists.
const FILES: [(&str, &str); 7] = [
    (
        "/etc/ban-agent/ban-agent.toml",
        "the configuration (ban-agent.toml(5)); `run`, `check` and `reload` read it",
    ),
    (
        "/etc/ban-agent/filter.d/",
        "ban-agent's own filters, NAME.toml, for `filter = \"NAME\"`",
    ),
    (
        "/etc/fail2ban/",
        "fail2ban's configuration: its filter.d/ filters are read in place, and \
         import-fail2ban reads its jails",
    ),
    (
        "/var/lib/ban-agent/state.db",
        "the state (SQLite): bans, ban history, failures inside findtime, log positions",
    ),
    (
        "/run/ban-agent.sock",
        "the control socket the verbs talk to",
    ),
    (
        "/sys/fs/bpf/ban-agent/",
        "the pinned ban maps and links, which bpftool(8) reads too",
    ),
    (
        "/var/lib/fail2ban/fail2ban.sqlite3",
        "fail2ban's database, which `import-fail2ban --bans` reads",
    ),
];

/// Writes every page into `dir`; returns their paths.
pub fn write(command: &clap::Command, dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    write_pages(command, "ban-agent", None, dir, &mut written)?;
    let path = dir.join("ban-agent.toml.5");
    fs::write(&path, ascii(&configuration_page()))
        .with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    Ok(written)
}

/// The page of `command` (section 8: a daemon and its administration), then one per
/// visible subcommand, named as man(1) finds them: `man ban-agent-test-filter`.
fn write_pages(
    command: &clap::Command,
    name: &str,
    parent: Option<&str>,
    dir: &Path,
    written: &mut Vec<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let page = command
        .clone()
        .name(name.to_owned())
        .display_name(name.to_owned());
    let man = clap_mangen::Man::new(page.clone()).section("8");
    let mut text = Vec::new();
    let render = |text: &mut Vec<u8>| -> std::io::Result<()> {
        man.render_title(text)?;
        man.render_name_section(text)?;
        man.render_synopsis_section(text)?;
        man.render_description_section(text)?;
        if page.get_arguments().any(|arg| !arg.is_hide_set()) {
            man.render_options_section(text)?;
        }
        if page.has_subcommands() {
            man.render_subcommands_section(text)?;
        }
        Ok(())
    };
    render(&mut text).with_context(|| format!("cannot render the page of {name}"))?;
    let mut text = String::from_utf8_lossy(&text).into_owned();
    if let Some(examples) = examples(command) {
        text.push_str(&examples);
    }
    text.push_str(&files());
    let subpages: Vec<String> = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
        .map(|sub| format!("{name}-{}", sub.get_name()))
        .collect();
    let mut see = Vec::new();
    if let Some(parent) = parent {
        see.push(format!("{parent}(8)"));
    }
    see.extend(subpages.iter().map(|page| format!("{page}(8)")));
    see.push("ban-agent.toml(5)".to_owned());
    text.push_str(&see_also(&see));
    let path = dir.join(format!("{name}.8"));
    fs::write(&path, ascii(&text)).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
    {
        write_pages(
            sub,
            &format!("{name}-{}", sub.get_name()),
            Some(name),
            dir,
            written,
        )?;
    }
    Ok(())
}

/// The examples of a verb's `--help` (its text after `Examples:`), as an EXAMPLES section.
fn examples(command: &clap::Command) -> Option<String> {
    let after = command.get_after_help()?.to_string();
    let (_, rest) = after
        .split_once("Examples:\n")
        .or_else(|| after.split_once("Example:\n"))?;
    let mut section = String::from(".SH EXAMPLES\n.nf\n");
    for line in rest.lines() {
        section.push_str(&escape_line(line.strip_prefix("  ").unwrap_or(line)));
        section.push('\n');
    }
    section.push_str(".fi\n");
    Some(section)
}

fn files() -> String {
    let mut section = String::from(".SH FILES\n");
    for (path, what) in FILES {
        section.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{}\n",
            escape(path),
            inline(what)
        ));
    }
    section
}

fn see_also(pages: &[String]) -> String {
    let list: Vec<String> = pages
        .iter()
        .map(|page| match page.split_once('(') {
            Some((name, section)) => format!("\\fB{}\\fR({section}", escape(name)),
            None => escape(page),
        })
        .collect();
    format!(".SH \"SEE ALSO\"\n{}\n", list.join(", "))
}

/// `ban-agent.toml(5)`: the README's configuration reference, then the example app's
/// configuration.
fn configuration_page() -> String {
    let mut page = String::from(
        ".TH ban-agent.toml 5 \"\" \"ban-agent\" \"File formats\"\n\
         .SH NAME\nban\\-agent.toml \\- the configuration of ban\\-agent(8)\n\
         .SH SYNOPSIS\n\\fB/etc/ban\\-agent/ban\\-agent.toml\\fR\n.SH DESCRIPTION\n",
    );
    page.push_str(&markdown_to_roff(configuration_reference()));
    page.push_str(".SH EXAMPLES\nThe example FastAPI app's configuration:\n.PP\n.nf\n");
    for line in EXAMPLE.lines() {
        page.push_str(&escape_line(line));
        page.push('\n');
    }
    page.push_str(".fi\n");
    page.push_str(&files());
    page.push_str(&see_also(&[
        "ban-agent(8)".to_owned(),
        "ban-agent-check(8)".to_owned(),
        "ban-agent-run(8)".to_owned(),
        "ban-agent-import-fail2ban(8)".to_owned(),
    ]));
    page
}

/// The README's "Configuration reference" section, without its heading.
fn configuration_reference() -> &'static str {
    let start = README
        .find("## Configuration reference\n")
        .map_or(0, |at| at + "## Configuration reference\n".len());
    let end = README[start..]
        .find("\n## ")
        .map_or(README.len(), |at| start + at);
    &README[start..end]
}

/// The README's Markdown (paragraphs, tables of keys, code blocks, inline code, links)
/// as roff: a table row becomes a tagged paragraph (`key`, then its default and meaning).
fn markdown_to_roff(markdown: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    let mut header: Vec<String> = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            out.push_str(if in_code { ".fi\n" } else { ".PP\n.nf\n" });
            in_code = !in_code;
            continue;
        }
        if in_code {
            out.push_str(&escape_line(line));
            out.push('\n');
            continue;
        }
        if let Some(row) = line.strip_prefix('|') {
            let cells: Vec<String> = split_row(row);
            if cells
                .iter()
                .all(|cell| cell.chars().all(|c| c == '-' || c == ':'))
            {
                continue;
            }
            if header.is_empty() {
                header = cells;
                continue;
            }
            out.push_str(&format!(".TP\n{}\n", inline(&cells[0])));
            let rest: Vec<String> = cells[1..]
                .iter()
                .zip(header.iter().skip(1))
                .map(|(cell, name)| match name.as_str() {
                    "default" => format!("Default: {}.", inline(cell)),
                    _ => inline(cell),
                })
                .collect();
            out.push_str(&rest.join(" "));
            out.push('\n');
            continue;
        }
        header.clear();
        if line.trim().is_empty() {
            out.push_str(".PP\n");
            continue;
        }
        out.push_str(&escape_line(&inline(line)));
        out.push('\n');
    }
    out
}

/// A table row's cells (`\|` is a bar inside a cell).
fn split_row(row: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cell).trim().to_owned()),
            c => cell.push(c),
        }
    }
    if !cell.trim().is_empty() {
        cells.push(cell.trim().to_owned());
    }
    cells
}

/// Inline Markdown: `code` in bold, [text](link) as its text, **strong** in bold.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '`'
            && let Some(end) = rest[1..].find('`')
        {
            out.push_str(&format!("\\fB{}\\fR", escape(&rest[1..=end])));
            rest = &rest[end + 2..];
            continue;
        }
        if c == '['
            && let Some(close) = rest.find("](")
            && let Some(end) = rest[close..].find(')')
        {
            out.push_str(&inline(&rest[1..close]));
            rest = &rest[close + end + 1..];
            continue;
        }
        if let Some(strong) = rest.strip_prefix("**")
            && let Some(end) = strong.find("**")
        {
            out.push_str(&format!("\\fB{}\\fR", escape(&strong[..end])));
            rest = &strong[end + 2..];
            continue;
        }
        out.push_str(&escape(&c.to_string()));
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Text in roff: backslashes and dashes escaped.
fn escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

/// Characters past ASCII as roff's `\[uXXXX]` (groff reads no UTF-8 without preconv).
fn ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    out
}

/// A line that roff must not read as a request (one starting with `.` or `'`).
fn escape_line(line: &str) -> String {
    let line = if line.contains("\\f") {
        line.to_owned()
    } else {
        escape(line)
    };
    if line.starts_with('.') || line.starts_with('\'') {
        format!("\\&{line}")
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use clap::CommandFactory as _;

    use super::*;

    /// Every page has its sections, every page SEE ALSO names is written too, and groff
    /// reads each without a warning.
    #[test]
    fn every_page_has_its_sections_and_its_references_resolve() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = crate::cli::Cli::command().disable_help_subcommand(true);
        command.build();
        let pages = write(&command, dir.path()).expect("write the pages");
        assert!(pages.len() > 20, "{pages:?}");
        for page in &pages {
            let text = fs::read_to_string(page).expect("read");
            let name = page.file_name().expect("name").to_string_lossy();
            for section in [
                "NAME",
                "SYNOPSIS",
                "DESCRIPTION",
                "FILES",
                "EXAMPLES",
                "\"SEE ALSO\"",
            ] {
                assert!(
                    text.contains(&format!(".SH {section}\n")),
                    "{name}: no {section}"
                );
            }
            assert!(
                !text.contains("ban\\-agent\\-help"),
                "{name} names a help page"
            );
            let see = text.split(".SH \"SEE ALSO\"\n").nth(1).expect("SEE ALSO");
            for reference in see.split(", ") {
                let reference = reference
                    .trim()
                    .replace("\\fB", "")
                    .replace("\\fR", "")
                    .replace("\\-", "-");
                let (name, section) = reference.split_once('(').expect("NAME(N)");
                let file = dir
                    .path()
                    .join(format!("{name}.{}", section.trim_end_matches(')')));
                assert!(file.is_file(), "{page:?} names {reference}, not written");
            }
            let groff = Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(page)
                .output();
            if let Ok(groff) = groff {
                assert!(
                    groff.status.success() && groff.stderr.is_empty(),
                    "{name}: {}",
                    String::from_utf8_lossy(&groff.stderr)
                );
            }
        }
    }

    #[test]
    fn the_configuration_page_is_the_readmes_reference() {
        let page = configuration_page();
        assert_eq!(ascii("a\u{2014}b"), "a\\[u2014]b");
        for key in [
            "state_dir",
            "bantime_increment",
            "max_bans_per_minute",
            "ignoreip",
        ] {
            assert!(
                page.contains(&format!(".TP\n\\fB{}\\fR\n", escape(key))),
                "{key} has no entry"
            );
        }
        assert!(page.contains("Default: \\fB10m\\fR."), "findtime's default");
        assert!(page.contains("[jail.fastapi\\-auth]"), "the example");
    }
}
