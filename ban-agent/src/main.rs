use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = ban_agent::cli::Cli::parse();
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ban-agent: {}", ban_agent::error_text(&error));
            ExitCode::FAILURE
        }
    }
}
