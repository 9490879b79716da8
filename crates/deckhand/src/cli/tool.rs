//! `deckhand tool list|schema|run`: the tool registry from the command line.
//!
//! `run` prints the tool's JSON result, `{"ok":true,"output":...}` or
//! `{"ok":false,"error":{"kind":"...","message":"..."}}`, and exits 0 on success, 1 when
//! the tool failed or a limit was hit, 2 for a usage error or an input that fails the schema.

use crate::toolbox::{self, Toolbox, ToolsConfig};
use deckhand_tools::{Error as ToolError, ToolContext};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// Exit status when the tool ran and failed (or was stopped by a limit).
const EXIT_TOOL_FAILED: u8 = 1;
/// Exit status for usage errors and inputs that fail the schema.
const EXIT_USAGE: u8 = 2;

fn load(config: &ToolsConfig) -> Result<Toolbox, ExitCode> {
    toolbox::build(config).map_err(|error| {
        // The whole chain: "cannot read tools directory X: No such file or directory".
        eprintln!("error: {}", crate::error::with_causes(&error));
        ExitCode::from(EXIT_USAGE)
    })
}

/// Prints `value` as pretty JSON on stdout.
fn print_json(value: &Value) {
    let mut stdout = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut stdout, value);
    let _ = writeln!(stdout);
}

/// `deckhand tool list [--json]`: one line per tool, or every manifest as JSON.
pub fn list(config: &ToolsConfig, as_json: bool) -> ExitCode {
    let toolbox = match load(config) {
        Ok(toolbox) => toolbox,
        Err(code) => return code,
    };
    if as_json {
        let specs: Vec<&deckhand_tools::ToolSpec> = toolbox.registry.specs().collect();
        print_json(&json!(specs));
    } else {
        let width = toolbox
            .registry
            .specs()
            .map(|spec| spec.name.len())
            .max()
            .unwrap_or(0);
        for spec in toolbox.registry.specs() {
            let access = serde_json::to_value(spec.workspace)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            println!("{:width$}  {:5}  {}", spec.name, access, spec.description);
        }
    }
    for skipped in &toolbox.skipped {
        eprintln!("skipped {}: {}", skipped.path.display(), skipped.error);
    }
    ExitCode::SUCCESS
}

/// `deckhand tool schema NAME`: the tool's manifest with its input and output schemas.
pub fn schema(config: &ToolsConfig, name: &str) -> ExitCode {
    let toolbox = match load(config) {
        Ok(toolbox) => toolbox,
        Err(code) => return code,
    };
    match toolbox.registry.get(name) {
        Some(tool) => {
            print_json(&json!(tool.spec()));
            ExitCode::SUCCESS
        }
        None => {
            let known: Vec<&str> = toolbox
                .registry
                .specs()
                .map(|spec| spec.name.as_str())
                .collect();
            eprintln!(
                "error: no tool named {name:?}; known tools: {}",
                known.join(", ")
            );
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `deckhand tool run NAME --workspace DIR --input JSON`.
pub async fn run(config: &ToolsConfig, name: &str, workspace: &Path, input: &str) -> ExitCode {
    let usage = |kind: &str, message: String| {
        print_json(&json!({"ok": false, "error": {"kind": kind, "message": message}}));
        ExitCode::from(EXIT_USAGE)
    };
    let input: Value = match serde_json::from_str(input) {
        Ok(input) => input,
        Err(error) => return usage("invalid_input", format!("--input is not JSON: {error}")),
    };
    if !workspace.is_dir() {
        return usage(
            "workspace",
            format!("workspace {} is not a directory", workspace.display()),
        );
    }
    let workspace = match std::fs::canonicalize(workspace) {
        Ok(path) => path,
        Err(error) => {
            return usage(
                "workspace",
                format!("workspace {}: {error}", workspace.display()),
            )
        }
    };
    let toolbox = match load(config) {
        Ok(toolbox) => toolbox,
        Err(code) => return code,
    };
    match toolbox
        .registry
        .call(
            name,
            &ToolContext {
                workspace,
                requested_by: crate::cli::session::whoami(),
                ..ToolContext::default()
            },
            &input,
        )
        .await
    {
        Ok(output) => {
            print_json(&json!({"ok": true, "output": output}));
            ExitCode::SUCCESS
        }
        Err(error) => {
            let mut report =
                json!({"ok": false, "error": {"kind": error.kind(), "message": error.to_string()}});
            if let ToolError::InvalidInput { problems, .. } = &error {
                report["error"]["problems"] = json!(problems);
            }
            print_json(&report);
            ExitCode::from(if error.is_usage_error() {
                EXIT_USAGE
            } else {
                EXIT_TOOL_FAILED
            })
        }
    }
}
