//! `deckhand policy`: judge one request against the built-in guards and the user's
//! policies (`check`), or run policy fixtures (`test`).
//!
//! Exit codes: `check` 0 allowed, 1 denied, 2 unreadable input or policies that do not
//! load; `test` 0 every case passed, 1 some failed, 2 nothing could be run.

use clap::{Args, Subcommand};
use deckhand_policy::{fixtures, AdmissionRequest, Engine, Inventory};
use std::io::{Read, Write};
use std::path::PathBuf;

/// Exit status: allowed, or every test passed.
pub const EXIT_OK: u8 = 0;
/// Exit status: denied, or a test failed.
pub const EXIT_DENIED: u8 = 1;
/// Exit status: the input or the policies could not be read.
pub const EXIT_UNREADABLE: u8 = 2;

/// `deckhand policy`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// The `deckhand policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Judge one AdmissionReview or AdmissionRequest (JSON or YAML) and print the
    /// decision as JSON: exit 0 allowed, 1 denied, 2 unreadable.
    Check(CheckArgs),
    /// Run the PolicyTest fixtures under DIR against the policies under DIR (and the
    /// built-in guards) and print a pass/fail summary.
    Test(TestArgs),
}

/// `deckhand policy check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A directory of user policies (.rego, ConstraintTemplates, constraints); repeatable.
    #[arg(long = "policies", value_name = "DIR")]
    pub policies: Vec<PathBuf>,
    /// Objects already in the cluster (YAML/JSON, several documents or a List), for
    /// `data.inventory`.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// The request file, or `-` for standard input.
    #[arg(value_name = "FILE|-", default_value = "-")]
    pub input: String,
}

/// `deckhand policy test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The directory holding the policies and their PolicyTest fixtures.
    #[arg(value_name = "DIR")]
    pub directory: PathBuf,
}

/// Runs a `deckhand policy` subcommand, writing results to `out` and problems to `err`,
/// and returns the exit status.
pub fn run(args: PolicyArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let status = match args.command {
        PolicyCommand::Check(args) => check(args, out, err),
        PolicyCommand::Test(args) => test(args, out, err),
    };
    // The binary exits right after; nothing may stay in a buffer.
    let _ = out.flush();
    let _ = err.flush();
    status
}

fn check(args: CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let text = if args.input == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    } else {
        std::fs::read_to_string(&args.input)
    };
    let text = match text {
        Ok(text) => text,
        Err(error) => {
            let _ = writeln!(err, "error: cannot read {}: {error}", args.input);
            return EXIT_UNREADABLE;
        }
    };
    let request = match AdmissionRequest::from_text(&text) {
        Ok(request) => request,
        Err(error) => {
            let _ = writeln!(err, "error: {}: {error}", args.input);
            return EXIT_UNREADABLE;
        }
    };
    let mut builder = Engine::builder();
    for directory in &args.policies {
        builder = builder.policy_directory(directory);
    }
    if let Some(path) = &args.inventory {
        let inventory = std::fs::read_to_string(path)
            .map_err(|error| error.to_string())
            .and_then(|text| {
                Inventory::from_text(&text, &path.display().to_string()).map_err(|e| e.to_string())
            });
        match inventory {
            Ok(inventory) => builder = builder.inventory(inventory),
            Err(error) => {
                let _ = writeln!(err, "error: inventory {}: {error}", path.display());
                return EXIT_UNREADABLE;
            }
        }
    }
    let engine = match builder.build() {
        Ok(engine) => engine,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            return EXIT_UNREADABLE;
        }
    };
    let decision = engine.evaluate(&request);
    match serde_json::to_string(&decision) {
        Ok(json) => {
            let _ = writeln!(out, "{json}");
        }
        Err(error) => {
            let _ = writeln!(err, "error: cannot print the decision: {error}");
            return EXIT_UNREADABLE;
        }
    }
    if decision.allowed {
        EXIT_OK
    } else {
        EXIT_DENIED
    }
}

fn test(args: TestArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let results = match fixtures::run_directory(&args.directory) {
        Ok(results) => results,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            return EXIT_UNREADABLE;
        }
    };
    if results.is_empty() {
        let _ = writeln!(
            err,
            "error: no PolicyTest cases under {}",
            args.directory.display()
        );
        return EXIT_UNREADABLE;
    }
    let mut failed = 0;
    for result in &results {
        match &result.failure {
            None => {
                let _ = writeln!(out, "PASS {}: {}", result.file.display(), result.name);
            }
            Some(reason) => {
                failed += 1;
                let _ = writeln!(
                    out,
                    "FAIL {}: {}: {reason}",
                    result.file.display(),
                    result.name
                );
            }
        }
    }
    let _ = writeln!(out, "{} passed, {failed} failed", results.len() - failed);
    if failed == 0 {
        EXIT_OK
    } else {
        EXIT_DENIED
    }
}
