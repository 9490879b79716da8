//! `write_file`: writes a UTF-8 text file in the workspace, creating parent folders.

#![forbid(unsafe_code)]

use deckhand_tool_protocol::{refuse_hard_links, run, workspace_path, ToolError, ToolInfo, WorkspaceAccess};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Largest file this tool writes; the host's input limit is the other bound.
const MAX_CONTENT_BYTES: usize = 1024 * 1024;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Path of the file, relative to the workspace root. Parent folders are created.
    path: String,
    /// The complete new text of the file.
    content: String,
    /// Replace the file if it exists (default true). With false, an existing file is an error.
    #[serde(default = "default_true")]
    overwrite: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Serialize, JsonSchema)]
struct Output {
    /// The path written.
    path: String,
    /// Bytes written.
    bytes: usize,
    /// True when the file did not exist before.
    created: bool,
}

fn write_file(input: Input) -> Result<Output, ToolError> {
    if input.content.len() > MAX_CONTENT_BYTES {
        return Err(ToolError::invalid_input(format!(
            "content is {} bytes, above the limit of {MAX_CONTENT_BYTES}",
            input.content.len()
        )));
    }
    let path = workspace_path(&input.path)?;
    if path == std::path::Path::new(deckhand_tool_protocol::WORKSPACE_GUEST_PATH) {
        return Err(ToolError::invalid_input("path names the workspace itself, not a file"));
    }
    let existing = match std::fs::symlink_metadata(&path) {
        Ok(metadata) => Some(metadata),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(ToolError::io(&input.path, &error)),
    };
    if let Some(metadata) = &existing {
        if metadata.file_type().is_symlink() {
            return Err(ToolError::new("not_a_file", format!("{} is a symbolic link; not writing through it", input.path)));
        }
        if !metadata.is_file() {
            return Err(ToolError::new("not_a_file", format!("{} exists and is not a regular file", input.path)));
        }
        refuse_hard_links(&input.path, metadata)?;
        if !input.overwrite {
            return Err(ToolError::new("already_exists", format!("{} exists and overwrite is false", input.path)));
        }
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ToolError::io(&input.path, &e))?;
    }
    std::fs::write(&path, input.content.as_bytes()).map_err(|e| ToolError::io(&input.path, &e))?;
    Ok(Output { path: input.path, bytes: input.content.len(), created: existing.is_none() })
}

fn main() {
    run(
        ToolInfo {
            name: "write_file",
            description: "Write a UTF-8 text file in the workspace (whole content), creating parent folders.",
            workspace: WorkspaceAccess::Write,
        },
        write_file,
    );
}
