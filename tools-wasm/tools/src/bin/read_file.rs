//! `read_file`: reads a UTF-8 text file from the workspace, up to a byte limit.

#![forbid(unsafe_code)]

use deckhand_tool_protocol::{refuse_hard_links, run, workspace_path, ToolError, ToolInfo, WorkspaceAccess};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::io::Read;

/// Files larger than this are cut unless the caller asks for more (up to [`MAX_BYTES`]).
const DEFAULT_MAX_BYTES: u64 = 256 * 1024;
/// The most a caller may ask for: the host caps stdout anyway, this keeps the error clear.
const MAX_BYTES: u64 = 1024 * 1024;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Path of the file, relative to the workspace root.
    path: String,
    /// Read at most this many bytes (default 262144, at most 1048576).
    #[schemars(range(min = 1, max = 1048576))]
    max_bytes: Option<u64>,
}

#[derive(Serialize, JsonSchema)]
struct Output {
    /// The path that was read.
    path: String,
    /// The file's text (the first `max_bytes` bytes when truncated).
    content: String,
    /// Size of the whole file in bytes.
    size: u64,
    /// True when `content` holds only the beginning of the file.
    truncated: bool,
}

fn read_file(input: Input) -> Result<Output, ToolError> {
    let max_bytes = input.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
    if max_bytes == 0 || max_bytes > MAX_BYTES {
        return Err(ToolError::invalid_input(format!("max_bytes must be between 1 and {MAX_BYTES}, not {max_bytes}")));
    }
    let path = workspace_path(&input.path)?;
    let file = std::fs::File::open(&path).map_err(|e| ToolError::io(&input.path, &e))?;
    let metadata = file.metadata().map_err(|e| ToolError::io(&input.path, &e))?;
    if !metadata.is_file() {
        return Err(ToolError::new("not_a_file", format!("{} is not a regular file", input.path)));
    }
    refuse_hard_links(&input.path, &metadata)?;
    let mut bytes = Vec::new();
    file.take(max_bytes).read_to_end(&mut bytes).map_err(|e| ToolError::io(&input.path, &e))?;
    let truncated = metadata.len() > bytes.len() as u64;
    let content = match String::from_utf8(bytes) {
        Ok(text) => text,
        // A cut can split a multi-byte character: keep the valid prefix.
        Err(error) if truncated && error.utf8_error().error_len().is_none() => {
            let valid = error.utf8_error().valid_up_to();
            let mut bytes = error.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).map_err(|e| ToolError::new("internal", e.to_string()))?
        }
        Err(_) => return Err(ToolError::new("not_text", format!("{} is not UTF-8 text", input.path))),
    };
    Ok(Output { path: input.path, content, size: metadata.len(), truncated })
}

fn main() {
    run(
        ToolInfo {
            name: "read_file",
            description: "Read a UTF-8 text file from the workspace (up to max_bytes).",
            workspace: WorkspaceAccess::Read,
        },
        read_file,
    );
}
