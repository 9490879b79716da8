//! `deckhand-confine [--read PATH | --write PATH]... -- PROGRAM [ARGS]...`: restricts
//! itself with Landlock to the grants, then becomes PROGRAM (see `deckhand_tools::confine`).
//! `deckhand confine` does the same; this binary lets the crate's own tests run terraform
//! confined without the deckhand binary. Exit status 126 when it cannot confine or run.

use deckhand_tools::confine::{exec_confined, Grants};
use std::process::ExitCode;

fn main() -> ExitCode {
    let error = match Grants::parse_launcher_args(std::env::args_os().skip(1)) {
        Ok((grants, program, args)) => exec_confined(&grants, &program, &args),
        Err(error) => error,
    };
    eprintln!("error: {error}");
    ExitCode::from(126)
}
