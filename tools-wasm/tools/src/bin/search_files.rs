//! `search_files`: searches workspace files line by line with a regular expression, bounded
//! in matches, file size and pattern size.

#![forbid(unsafe_code)]

use deckhand_tool_protocol::{run, ToolError, ToolInfo, WorkspaceAccess};
use deckhand_wasm_tools::files::{read_text, walk, EntryKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const DEFAULT_MAX_MATCHES: usize = 200;
const MAX_MATCHES: usize = 5000;
/// Files above this size are skipped (and counted) rather than read.
const MAX_SEARCHED_FILE_BYTES: u64 = 1024 * 1024;
/// Caps the compiled pattern, so a pathological regex fails fast instead of eating memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Long lines are cut in the output.
const MAX_LINE_CHARS: usize = 400;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Regular expression (Rust regex syntax) matched against each line.
    pattern: String,
    /// Folder to search, relative to the workspace root (default ".").
    #[serde(default = "root")]
    path: String,
    /// Only search files whose name matches this glob, e.g. "*.yaml".
    glob: Option<String>,
    /// Match case-insensitively (default false).
    #[serde(default)]
    case_insensitive: bool,
    /// Stop after this many matching lines (default 200, at most 5000).
    #[schemars(range(min = 1, max = 5000))]
    max_matches: Option<usize>,
}

fn root() -> String {
    ".".to_owned()
}

#[derive(Serialize, JsonSchema)]
struct Match {
    /// File path relative to the workspace root.
    path: String,
    /// 1-based line number.
    line: usize,
    /// The line's text (cut at 400 characters).
    text: String,
}

#[derive(Serialize, JsonSchema)]
struct Output {
    /// Matching lines, by file then line.
    matches: Vec<Match>,
    /// Files searched.
    files_searched: usize,
    /// Files skipped: too large or not UTF-8 text.
    files_skipped: usize,
    /// True when the search stopped at max_matches.
    truncated: bool,
}

fn search_files(input: Input) -> Result<Output, ToolError> {
    let max_matches = input.max_matches.unwrap_or(DEFAULT_MAX_MATCHES);
    if max_matches == 0 || max_matches > MAX_MATCHES {
        return Err(ToolError::invalid_input(format!("max_matches must be between 1 and {MAX_MATCHES}")));
    }
    let regex = regex::RegexBuilder::new(&input.pattern)
        .case_insensitive(input.case_insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|error| ToolError::invalid_input(format!("pattern is not a valid regular expression: {error}")))?;
    let glob = input
        .glob
        .as_deref()
        .map(glob::Pattern::new)
        .transpose()
        .map_err(|error| ToolError::invalid_input(format!("glob is not valid: {error}")))?;

    let mut output = Output { matches: Vec::new(), files_searched: 0, files_skipped: 0, truncated: false };
    walk(&input.path, true, |entry| {
        if entry.kind != EntryKind::File {
            return true;
        }
        let name = entry.path.rsplit('/').next().unwrap_or(&entry.path);
        if glob.as_ref().is_some_and(|glob| !glob.matches(name)) {
            return true;
        }
        let Ok(text) = read_text(&entry.path, MAX_SEARCHED_FILE_BYTES) else {
            output.files_skipped += 1;
            return true;
        };
        output.files_searched += 1;
        for (index, line) in text.lines().enumerate() {
            if !regex.is_match(line) {
                continue;
            }
            if output.matches.len() == max_matches {
                output.truncated = true;
                return false;
            }
            output.matches.push(Match { path: entry.path.clone(), line: index + 1, text: line.chars().take(MAX_LINE_CHARS).collect() });
        }
        true
    })?;
    Ok(output)
}

fn main() {
    run(
        ToolInfo {
            name: "search_files",
            description: "Search workspace files line by line with a regular expression, optionally only files matching a glob.",
            workspace: WorkspaceAccess::Read,
        },
        search_files,
    );
}
