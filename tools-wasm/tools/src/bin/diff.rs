//! `diff`: the unified diff of two workspace files.

#![forbid(unsafe_code)]

use deckhand_tool_protocol::{run, ToolError, ToolInfo, WorkspaceAccess};
use deckhand_wasm_tools::files::{read_text, MAX_TEXT_FILE_BYTES};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// The original file, relative to the workspace root.
    old_path: String,
    /// The changed file, relative to the workspace root.
    new_path: String,
    /// Lines of context around each change (default 3, at most 100).
    #[schemars(range(max = 100))]
    context: Option<usize>,
}

#[derive(Serialize, JsonSchema)]
struct Output {
    /// The unified diff ("" when the files are equal).
    diff: String,
    /// Whether the files differ.
    changed: bool,
    /// Lines added.
    added: usize,
    /// Lines removed.
    removed: usize,
}

fn diff(input: Input) -> Result<Output, ToolError> {
    let context = input.context.unwrap_or(3);
    if context > 100 {
        return Err(ToolError::invalid_input("context must be at most 100"));
    }
    let old = read_text(&input.old_path, MAX_TEXT_FILE_BYTES)?;
    let new = read_text(&input.new_path, MAX_TEXT_FILE_BYTES)?;
    let text_diff = similar::TextDiff::from_lines(&old, &new);
    let (mut added, mut removed) = (0, 0);
    for change in text_diff.iter_all_changes() {
        match change.tag() {
            similar::ChangeTag::Insert => added += 1,
            similar::ChangeTag::Delete => removed += 1,
            similar::ChangeTag::Equal => {}
        }
    }
    let diff = text_diff
        .unified_diff()
        .context_radius(context)
        .header(&format!("a/{}", input.old_path), &format!("b/{}", input.new_path))
        .to_string();
    Ok(Output { changed: added + removed > 0, diff, added, removed })
}

fn main() {
    run(
        ToolInfo {
            name: "diff",
            description: "Show the unified diff of two workspace files.",
            workspace: WorkspaceAccess::Read,
        },
        diff,
    );
}
