//! The `closeup` command line (SPEC §4.3). Each subcommand lives in its own module under
//! `cli/`; this file parses arguments and turns errors into one readable line on stderr with
//! exit code 1 (clap reports bad usage itself, with exit code 2).

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Big per-step buffers are reused instead of re-faulted (docs/performance.md).
    closeup_autograd::kernels::alloc::retain_freed_memory();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its causes, outermost first; never a backtrace.
            let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::from(1)
        }
    }
}
