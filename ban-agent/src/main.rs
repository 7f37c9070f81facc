use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = ban_agent::cli::Cli::parse();
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ban-agent: {}", message(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, leaving out a cause whose text the message already holds
/// (error types that quote their source in their own message).
fn message(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}
