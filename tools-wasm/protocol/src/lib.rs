//! The protocol every deckhand wasm tool speaks with the host, and the workspace path rules.
//!
//! A tool is a WASI command module. The host writes the tool's input as one JSON document
//! to stdin and preopens the thread's workspace at [`WORKSPACE_GUEST_PATH`]; the tool writes
//! exactly one JSON document to stdout:
//!
//! - success: `{"ok": true, "output": <tool-specific JSON>}`
//! - failure: `{"ok": false, "error": {"kind": "<machine-readable>", "message": "<for people>"}}`
//!
//! The sandbox itself (WASI capabilities) is what confines a tool; the path checks here only
//! turn an attempt to leave the workspace into a clear error instead of a bare errno.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// Where the host preopens the workspace inside the guest.
pub const WORKSPACE_GUEST_PATH: &str = "/workspace";

/// A failure a tool reports to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolError {
    /// Machine-readable kind, e.g. `invalid_input`, `not_found`, `outside_workspace`.
    pub kind: String,
    /// A sentence for the person reading it.
    pub message: String,
}

impl ToolError {
    /// A tool error of `kind` with `message`.
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        Self { kind: kind.to_owned(), message: message.into() }
    }

    /// Maps an I/O error on `path` to a tool error with a precise kind.
    pub fn io(path: &str, error: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        let kind = match error.kind() {
            ErrorKind::NotFound => "not_found",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::InvalidData => "invalid_data",
            _ => "io",
        };
        Self::new(kind, format!("{path}: {error}"))
    }
}

/// Resolves a workspace-relative path to the guest path under [`WORKSPACE_GUEST_PATH`].
///
/// Refuses absolute paths, `..` components, NUL bytes and empty paths, so that an LLM that
/// tries to wander off gets told so. WASI would refuse the escape anyway.
pub fn workspace_path(relative: &str) -> Result<PathBuf, ToolError> {
    if relative.is_empty() {
        return Err(ToolError::new("invalid_input", "path is empty"));
    }
    if relative.contains('\0') {
        return Err(ToolError::new("invalid_input", "path contains a NUL byte"));
    }
    let mut resolved = PathBuf::from(WORKSPACE_GUEST_PATH);
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(part) => resolved.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(ToolError::new(
                    "outside_workspace",
                    format!("path {relative:?} uses '..'; paths must stay inside the workspace"),
                ))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ToolError::new(
                    "outside_workspace",
                    format!("path {relative:?} is absolute; give a path relative to the workspace"),
                ))
            }
        }
    }
    Ok(resolved)
}

/// Runs a tool: reads its JSON input from stdin, calls `tool`, writes the JSON result to
/// stdout. Exit status is 0 either way: the result document says whether the tool failed.
pub fn run<I, O>(tool: impl FnOnce(I) -> Result<O, ToolError>)
where
    I: DeserializeOwned,
    O: Serialize,
{
    let result = read_input::<I>().and_then(tool);
    let document = match result {
        Ok(output) => match serde_json::to_value(output) {
            Ok(output) => serde_json::json!({ "ok": true, "output": output }),
            Err(error) => error_document(&ToolError::new("internal", error.to_string())),
        },
        Err(error) => error_document(&error),
    };
    let mut stdout = std::io::stdout().lock();
    // If stdout is gone there is nobody left to tell; the host sees the missing result.
    let _ = serde_json::to_writer(&mut stdout, &document);
    let _ = stdout.flush();
}

fn error_document(error: &ToolError) -> serde_json::Value {
    serde_json::json!({ "ok": false, "error": error })
}

fn read_input<I: DeserializeOwned>() -> Result<I, ToolError> {
    let mut raw = Vec::new();
    std::io::stdin()
        .read_to_end(&mut raw)
        .map_err(|error| ToolError::new("invalid_input", format!("cannot read stdin: {error}")))?;
    serde_json::from_slice(&raw)
        .map_err(|error| ToolError::new("invalid_input", format!("input is not valid: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_under_the_workspace() {
        assert_eq!(workspace_path("a/b.txt").unwrap(), PathBuf::from("/workspace/a/b.txt"));
        assert_eq!(workspace_path("./a").unwrap(), PathBuf::from("/workspace/a"));
    }

    #[test]
    fn escapes_are_refused_with_a_kind() {
        assert_eq!(workspace_path("../etc/passwd").unwrap_err().kind, "outside_workspace");
        assert_eq!(workspace_path("a/../../b").unwrap_err().kind, "outside_workspace");
        assert_eq!(workspace_path("/etc/passwd").unwrap_err().kind, "outside_workspace");
        assert_eq!(workspace_path("a\0b").unwrap_err().kind, "invalid_input");
        assert_eq!(workspace_path("").unwrap_err().kind, "invalid_input");
    }
}
