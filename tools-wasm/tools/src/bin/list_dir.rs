//! `list_dir`: lists a workspace folder, optionally recursively, bounded.

#![forbid(unsafe_code)]

use deckhand_tool_protocol::{run, ToolError, ToolInfo, WorkspaceAccess};
use deckhand_wasm_tools::files::{walk, EntryKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const DEFAULT_MAX_ENTRIES: usize = 1000;
const MAX_ENTRIES: usize = 10_000;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Folder to list, relative to the workspace root (default ".", the root).
    #[serde(default = "root")]
    path: String,
    /// List sub-folders too (default false).
    #[serde(default)]
    recursive: bool,
    /// Stop after this many entries (default 1000, at most 10000).
    #[schemars(range(min = 1, max = 10000))]
    max_entries: Option<usize>,
}

fn root() -> String {
    ".".to_owned()
}

#[derive(Serialize, JsonSchema)]
struct Item {
    /// Path relative to the workspace root.
    path: String,
    /// file, dir, symlink (never followed) or other.
    kind: EntryKind,
    /// Size in bytes, for files.
    size: u64,
}

#[derive(Serialize, JsonSchema)]
struct Output {
    /// The entries, sorted by path.
    entries: Vec<Item>,
    /// True when the listing stopped at max_entries.
    truncated: bool,
}

fn list_dir(input: Input) -> Result<Output, ToolError> {
    let max_entries = input.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES);
    if max_entries == 0 || max_entries > MAX_ENTRIES {
        return Err(ToolError::invalid_input(format!("max_entries must be between 1 and {MAX_ENTRIES}")));
    }
    let mut entries = Vec::new();
    let mut truncated = false;
    walk(&input.path, input.recursive, |entry| {
        if entries.len() == max_entries {
            truncated = true;
            return false;
        }
        entries.push(Item { path: entry.path, kind: entry.kind, size: entry.size });
        true
    })?;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Output { entries, truncated })
}

fn main() {
    run(
        ToolInfo {
            name: "list_dir",
            description: "List the files and folders of a workspace folder (optionally recursive). Symbolic links are shown, not followed.",
            workspace: WorkspaceAccess::Read,
        },
        list_dir,
    );
}
