//! `ban-agent generate DIR` (hidden): the manual pages and shell completions, made from
//! the clap definitions so that they never disagree with `--help`. `cargo xtask dist`
//! puts them in the package.

use std::{fs, path::Path};

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::Cli;

/// Writes `DIR/man/ban-agent.8`, a page per subcommand (`ban-agent-run.8`, ...) and
/// `ban-agent.toml.5` ([`super::man`]), and
/// `DIR/completions/{ban-agent.bash,_ban-agent,ban-agent.fish}`.
pub fn run(dir: &Path) -> anyhow::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for folder in [&man, &completions] {
        fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
    }
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    for page in super::man::write(&command, &man)? {
        println!("{}", page.display());
    }
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        let path = clap_complete::generate_to(shell, &mut command, "ban-agent", &completions)
            .with_context(|| format!("cannot write the {shell} completions"))?;
        if shell == clap_complete::Shell::Bash {
            let text = fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            fs::write(&path, mend_bash(&text, &hidden(&command)))
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        println!("{}", path.display());
    }
    Ok(())
}

/// The names of the subcommands `--help` does not show.
fn hidden(command: &clap::Command) -> Vec<String> {
    command
        .get_subcommands()
        .filter(|sub| sub.is_hide_set())
        .map(|sub| sub.get_name().to_owned())
        .collect()
}

/// Works around two faults of clap_complete's bash script (4.6) for a program whose name
/// has a dash:
/// - the case labels of the subcommands' completions spell the program's name with the
///   separator inside it (`ban__subcmd__agent__subcmd__get`) while the state they are
///   matched against does not (`ban__agent__subcmd__get`), so nothing after the first word
///   completed;
/// - the first word offers hidden subcommands (`generate`).
///
/// Checked by sourcing the script in bash and asking it (the tests below).
fn mend_bash(script: &str, hidden: &[String]) -> String {
    let mut mended = script.replace("ban__subcmd__agent__subcmd__", "ban__agent__subcmd__");
    // The first word's case: the subcommands are listed in its `opts`.
    let first = "ban__agent)\n            opts=\"";
    if let Some(start) = mended.find(first) {
        let start = start + first.len();
        if let Some(len) = mended[start..].find('"') {
            let words: Vec<&str> = mended[start..start + len]
                .split(' ')
                .filter(|word| !hidden.iter().any(|name| name == word))
                .collect();
            mended.replace_range(start..start + len, &words.join(" "));
        }
    }
    mended
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// What bash offers for `line` (the word being completed is its last, maybe empty),
    /// with the generated script sourced.
    fn complete(script: &Path, line: &str) -> Vec<String> {
        let mut words: Vec<&str> = line.split(' ').collect();
        if words.is_empty() {
            words.push("");
        }
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let cword = words.len() - 1;
        let previous = if cword > 0 { words[cword - 1] } else { "" };
        let program = format!(
            "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={cword}\n\
             _ban__agent ban-agent '{}' '{previous}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            quoted.join(" "),
            words[cword],
        );
        let out = Command::new("bash")
            .args(["--norc", "-c", &program])
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn bash_completes_verbs_their_flags_and_values_and_hides_generate() {
        let dir = tempfile::tempdir().expect("temp dir");
        run(dir.path()).expect("generate");
        let script = dir.path().join("completions/ban-agent.bash");
        let first = complete(&script, "ban-agent ");
        for verb in ["status", "get", "test-filter", "ban", "unban", "reload"] {
            assert!(first.contains(&verb.to_owned()), "{verb} in {first:?}");
        }
        assert!(!first.contains(&"generate".to_owned()), "{first:?}");
        let keys = complete(&script, "ban-agent get fastapi-auth ");
        for key in ["bantime", "findtime", "maxretry"] {
            assert!(keys.contains(&key.to_owned()), "{key} in {keys:?}");
        }
        let status = complete(&script, "ban-agent status --");
        assert!(status.contains(&"--json".to_owned()), "{status:?}");
        let test_filter = complete(&script, "ban-agent test-filter --");
        assert!(
            test_filter.contains(&"--filter".to_owned()),
            "{test_filter:?}"
        );
        assert!(
            test_filter.contains(&"--json".to_owned()),
            "{test_filter:?}"
        );
    }

    #[test]
    fn the_mended_script_has_no_label_with_the_separator_inside_the_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        run(dir.path()).expect("generate");
        let text = fs::read_to_string(dir.path().join("completions/ban-agent.bash")).expect("read");
        assert!(!text.contains("ban__subcmd__agent"));
        assert!(text.contains("ban__agent__subcmd__test__subcmd__filter)"));
    }
}
