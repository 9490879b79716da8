//! Reading text files and walking directories inside the workspace, with limits, never
//! following symbolic links out of it (WASI refuses those anyway; here they are skipped
//! and reported instead of failing a whole walk).

use deckhand_tool_protocol::{refuse_hard_links, relative_display, workspace_path, ToolError};
use std::io::Read;
use std::path::PathBuf;

/// Files larger than this are not read whole by tools that need the whole text.
pub const MAX_TEXT_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// How deep a recursive walk goes.
pub const MAX_WALK_DEPTH: usize = 32;

/// Reads the whole UTF-8 text of the workspace file `relative`, refusing non-files, hard
/// links, files over `max_bytes` and non-UTF-8 content.
pub fn read_text(relative: &str, max_bytes: u64) -> Result<String, ToolError> {
    let path = workspace_path(relative)?;
    let file = std::fs::File::open(&path).map_err(|e| ToolError::io(relative, &e))?;
    let metadata = file.metadata().map_err(|e| ToolError::io(relative, &e))?;
    if !metadata.is_file() {
        return Err(ToolError::new("not_a_file", format!("{relative} is not a regular file")));
    }
    refuse_hard_links(relative, &metadata)?;
    if metadata.len() > max_bytes {
        return Err(ToolError::new(
            "too_large",
            format!("{relative} is {} bytes, above the limit of {max_bytes}", metadata.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(max_bytes + 1).read_to_end(&mut bytes).map_err(|e| ToolError::io(relative, &e))?;
    String::from_utf8(bytes).map_err(|_| ToolError::new("not_text", format!("{relative} is not UTF-8 text")))
}

/// What a directory entry is. Symbolic links are reported, never followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else (a socket, a device).
    Other,
}

/// One entry found by [`walk`].
#[derive(Debug, Clone)]
pub struct Entry {
    /// Workspace-relative path with `/` separators.
    pub path: String,
    /// The guest path, for opening it.
    pub guest_path: PathBuf,
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes (files only).
    pub size: u64,
}

/// Lists `root` (a workspace-relative directory), recursively when `recursive`, in sorted
/// order, calling `visit` for each entry until it returns `false`. Directories that cannot
/// be read are skipped. Returns whether the walk was cut short by `visit`.
pub fn walk(root: &str, recursive: bool, mut visit: impl FnMut(Entry) -> bool) -> Result<bool, ToolError> {
    let start = workspace_path(root)?;
    let metadata = std::fs::symlink_metadata(&start).map_err(|e| ToolError::io(root, &e))?;
    if !metadata.is_dir() {
        return Err(ToolError::new("not_a_directory", format!("{root} is not a directory")));
    }
    let mut stack = vec![(start, 0_usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|entry| entry.file_name());
        let mut subdirs = Vec::new();
        for entry in entries {
            let guest_path = entry.path();
            let Ok(file_type) = entry.file_type() else { continue };
            let kind = if file_type.is_symlink() {
                EntryKind::Symlink
            } else if file_type.is_dir() {
                EntryKind::Dir
            } else if file_type.is_file() {
                EntryKind::File
            } else {
                EntryKind::Other
            };
            let size = match kind {
                EntryKind::File => entry.metadata().map(|m| m.len()).unwrap_or(0),
                _ => 0,
            };
            if kind == EntryKind::Dir && recursive && depth + 1 < MAX_WALK_DEPTH {
                subdirs.push(guest_path.clone());
            }
            let entry = Entry { path: relative_display(&guest_path), guest_path, kind, size };
            if !visit(entry) {
                return Ok(true);
            }
        }
        // Depth-first, in name order: push in reverse so the first name is visited first.
        stack.extend(subdirs.into_iter().rev().map(|dir| (dir, depth + 1)));
    }
    Ok(false)
}
