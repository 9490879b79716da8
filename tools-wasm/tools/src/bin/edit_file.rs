//! `edit_file`: exact search-and-replace in a workspace file. Refuses ambiguous matches, so
//! an edit never lands somewhere the caller did not mean.

#![forbid(unsafe_code)]

use deckhand_tool_protocol::{run, workspace_path, ToolError, ToolInfo, WorkspaceAccess};
use deckhand_wasm_tools::files::{read_text, MAX_TEXT_FILE_BYTES};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Path of the file, relative to the workspace root.
    path: String,
    /// The exact text to find (whitespace and line breaks included). Must occur exactly once
    /// unless replace_all is true.
    old_text: String,
    /// The text that replaces it.
    new_text: String,
    /// Replace every occurrence instead of requiring exactly one (default false).
    #[serde(default)]
    replace_all: bool,
}

#[derive(Serialize, JsonSchema)]
struct Output {
    /// The path edited.
    path: String,
    /// How many occurrences were replaced.
    replacements: usize,
    /// 1-based line numbers where the replaced text started.
    lines: Vec<usize>,
}

fn edit_file(input: Input) -> Result<Output, ToolError> {
    if input.old_text.is_empty() {
        return Err(ToolError::invalid_input("old_text is empty; give the exact text to replace"));
    }
    let text = read_text(&input.path, MAX_TEXT_FILE_BYTES)?;
    let starts: Vec<usize> = text.match_indices(&input.old_text).map(|(start, _)| start).collect();
    let lines: Vec<usize> = starts.iter().map(|&start| text[..start].matches('\n').count() + 1).collect();
    match starts.len() {
        0 => return Err(ToolError::new("no_match", format!("old_text does not occur in {}", input.path))),
        1 => {}
        count if !input.replace_all => {
            return Err(ToolError::new(
                "ambiguous_match",
                format!(
                    "old_text occurs {count} times in {} (lines {lines:?}); include more context to make it unique, or set replace_all",
                    input.path
                ),
            ))
        }
        _ => {}
    }
    let edited = text.replace(&input.old_text, &input.new_text);
    let path = workspace_path(&input.path)?;
    std::fs::write(&path, edited).map_err(|e| ToolError::io(&input.path, &e))?;
    Ok(Output { path: input.path, replacements: starts.len(), lines })
}

fn main() {
    run(
        ToolInfo {
            name: "edit_file",
            description: "Replace exact text in a workspace file. The text must occur exactly once unless replace_all is set.",
            workspace: WorkspaceAccess::Write,
        },
        edit_file,
    );
}
