//! `ban-agent generate DIR` (hidden): the manual pages and shell completions, made from
//! the clap definitions so that they never disagree with `--help`. `cargo xtask dist`
//! puts them in the package.

use std::{fs, path::Path};

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::Cli;

/// Writes `DIR/man/ban-agent.8` and a page per subcommand (`ban-agent-run.8`, ...), and
/// `DIR/completions/{ban-agent.bash,_ban-agent,ban-agent.fish}`.
pub fn run(dir: &Path) -> anyhow::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for folder in [&man, &completions] {
        fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
    }
    let mut command = Cli::command();
    command.build();
    write_pages(&command, "ban-agent", &man)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        let path = clap_complete::generate_to(shell, &mut command, "ban-agent", &completions)
            .with_context(|| format!("cannot write the {shell} completions"))?;
        println!("{}", path.display());
    }
    Ok(())
}

/// The page of `command` (section 8: a daemon and its administration), then one per
/// visible subcommand, named as man(1) finds them: `man ban-agent-test-filter`.
fn write_pages(command: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<()> {
    let page = command
        .clone()
        .name(name.to_owned())
        .display_name(name.to_owned());
    let mut text = Vec::new();
    clap_mangen::Man::new(page)
        .section("8")
        .render(&mut text)
        .with_context(|| format!("cannot render the page of {name}"))?;
    let path = dir.join(format!("{name}.8"));
    fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    println!("{}", path.display());
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}
