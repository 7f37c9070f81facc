//! `ban-agent import-fail2ban`: fail2ban's jails as a configuration.

use std::path::Path;

use anyhow::Context as _;

/// `import-fail2ban`: the configuration on standard output (or `--output`), what was
/// left out on standard error.
pub fn run(dir: &Path, output: Option<&Path>) -> anyhow::Result<()> {
    let dir = std::path::absolute(dir)
        .with_context(|| format!("cannot make {} absolute", dir.display()))?;
    let services_text = std::fs::read_to_string("/etc/services").unwrap_or_default();
    let tcp = crate::fail2ban::jails::services_from(&services_text, "all");
    let imported = crate::fail2ban::jails::import(&dir, &|name| tcp.get(name).copied())
        .with_context(|| format!("importing fail2ban's jails from {}", dir.display()))?;
    let text = imported.to_toml(&dir);
    match output {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    eprintln!(
        "import-fail2ban: {} imported ({}); {} left out{}",
        crate::plural(imported.jails.len() as u64, "jail", "jails"),
        imported.jails.join(", "),
        crate::plural(imported.notes.len() as u64, "setting", "settings"),
        if imported.notes.is_empty() { "" } else { ":" }
    );
    for note in &imported.notes {
        eprintln!("  {note}");
    }
    if imported.jails.is_empty() {
        anyhow::bail!(
            "no enabled jail in {}: enable one (enabled = true in jail.local) and import again",
            dir.display()
        );
    }
    Ok(())
}
