//! `read_file`: reads a UTF-8 text file from the workspace, up to a byte limit.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use deckhand_tool_protocol::{run, workspace_path, ToolError};
use serde::{Deserialize, Serialize};
use std::io::Read;

/// Files larger than this are cut unless the caller asks for more (up to [`MAX_BYTES`]).
const DEFAULT_MAX_BYTES: u64 = 256 * 1024;
/// The most a caller may ask for: the host caps stdout anyway, this keeps the error clear.
const MAX_BYTES: u64 = 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Path relative to the workspace root.
    path: String,
    /// Read at most this many bytes.
    max_bytes: Option<u64>,
}

#[derive(Serialize)]
struct Output {
    path: String,
    content: String,
    /// Size of the whole file in bytes.
    size: u64,
    /// True when `content` holds only the first `max_bytes` bytes.
    truncated: bool,
}

fn read_file(input: Input) -> Result<Output, ToolError> {
    let max_bytes = input.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
    if max_bytes > MAX_BYTES {
        return Err(ToolError::new(
            "invalid_input",
            format!("max_bytes {max_bytes} is above the limit of {MAX_BYTES}"),
        ));
    }
    let path = workspace_path(&input.path)?;
    let file = std::fs::File::open(&path).map_err(|e| ToolError::io(&input.path, &e))?;
    let metadata = file.metadata().map_err(|e| ToolError::io(&input.path, &e))?;
    if !metadata.is_file() {
        return Err(ToolError::new("not_a_file", format!("{} is not a regular file", input.path)));
    }
    let mut bytes = Vec::new();
    file.take(max_bytes)
        .read_to_end(&mut bytes)
        .map_err(|e| ToolError::io(&input.path, &e))?;
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
        Err(_) => {
            return Err(ToolError::new(
                "not_text",
                format!("{} is not UTF-8 text", input.path),
            ))
        }
    };
    Ok(Output { path: input.path, content, size: metadata.len(), truncated })
}

fn main() {
    run(read_file);
}
