use std::process::ExitCode;

fn main() -> ExitCode {
    ban_agent::cli::main(std::env::args_os().collect())
}
