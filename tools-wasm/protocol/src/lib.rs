//! The protocol every deckhand wasm tool speaks with the host, its manifest, and the
//! workspace path rules.
//!
//! A tool is a WASI command module. The host writes the tool's input as one JSON document
//! to stdin and preopens the thread's workspace at [`WORKSPACE_GUEST_PATH`]; the tool writes
//! exactly one JSON document to stdout:
//!
//! - success: `{"ok": true, "output": <tool-specific JSON>}`
//! - failure: `{"ok": false, "error": {"kind": "<machine-readable>", "message": "<for people>"}}`
//!
//! Built natively and run with `--manifest`, the same program prints its manifest instead:
//! name, description, workspace access and the JSON Schemas of its input and output,
//! generated from its Rust types. The build writes it next to the module as `NAME.json`;
//! third-party plugins ship the same file.
//!
//! The sandbox itself (WASI capabilities) is what confines a tool; the path checks here only
//! turn an attempt to leave the workspace into a clear error instead of a bare errno.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
// The link count of a file is only exposed by std's unstable WASI extension. The wasm
// build already runs with RUSTC_BOOTSTRAP (for -Zbuild-std); this is its one other use.
#![cfg_attr(target_os = "wasi", feature(wasi_ext))]

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// Where the host preopens the workspace inside the guest.
pub const WORKSPACE_GUEST_PATH: &str = "/workspace";

/// What a tool may do with the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkspaceAccess {
    /// The tool does not touch the workspace.
    None,
    /// The tool reads the workspace.
    Read,
    /// The tool reads and writes the workspace.
    Write,
}

/// What the manifest says about a tool besides its schemas.
#[derive(Debug, Clone, Copy)]
pub struct ToolInfo {
    /// The tool's name: lowercase, digits and `_`; the module is `NAME.wasm`.
    pub name: &'static str,
    /// What the tool does, for people and for the LLM choosing tools.
    pub description: &'static str,
    /// What the tool may do with the workspace.
    pub workspace: WorkspaceAccess,
}

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

    /// An `invalid_input` error.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new("invalid_input", message)
    }

    /// Maps an I/O error on `path` to a tool error with a precise kind.
    pub fn io(path: &str, error: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        let kind = match error.kind() {
            ErrorKind::NotFound => "not_found",
            ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => "permission_denied",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::InvalidData => "invalid_data",
            _ => "io",
        };
        Self::new(kind, format!("{path}: {error}"))
    }
}

/// Resolves a workspace-relative path to the guest path under [`WORKSPACE_GUEST_PATH`].
///
/// Refuses absolute paths, `..` components, NUL bytes and empty paths, so that an LLM that
/// tries to wander off gets told so. WASI would refuse the escape anyway. `"."` is the
/// workspace root.
pub fn workspace_path(relative: &str) -> Result<PathBuf, ToolError> {
    if relative.is_empty() {
        return Err(ToolError::invalid_input("path is empty"));
    }
    if relative.contains('\0') {
        return Err(ToolError::invalid_input("path contains a NUL byte"));
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

/// The workspace-relative form of a guest path under [`WORKSPACE_GUEST_PATH`], with `/`
/// separators (`"."` for the root).
pub fn relative_display(guest_path: &Path) -> String {
    let relative = guest_path.strip_prefix(WORKSPACE_GUEST_PATH).unwrap_or(guest_path);
    let text = relative.to_string_lossy().replace('\\', "/");
    if text.is_empty() {
        ".".to_owned()
    } else {
        text
    }
}

/// Refuses a file with more than one hard link. A hard link made on the host to a file
/// outside the workspace is indistinguishable from the file itself inside the sandbox;
/// nothing a tool does can create one, so a shared inode means someone outside did.
pub fn refuse_hard_links(path: &str, metadata: &std::fs::Metadata) -> Result<(), ToolError> {
    if metadata.is_file() && link_count(metadata) > 1 {
        return Err(ToolError::new(
            "outside_workspace",
            format!("{path} has several hard links; it may be a file outside the workspace"),
        ));
    }
    Ok(())
}

#[cfg(target_os = "wasi")]
fn link_count(metadata: &std::fs::Metadata) -> u64 {
    std::os::wasi::fs::MetadataExt::nlink(metadata)
}

#[cfg(unix)]
fn link_count(metadata: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::nlink(metadata)
}

#[cfg(not(any(unix, target_os = "wasi")))]
fn link_count(_metadata: &std::fs::Metadata) -> u64 {
    1
}

/// The manifest of a tool with input `I` and output `O`.
pub fn manifest<I: JsonSchema, O: JsonSchema>(info: &ToolInfo) -> serde_json::Value {
    serde_json::json!({
        "name": info.name,
        "description": info.description,
        "workspace": info.workspace,
        "mutating": false,
        "input_schema": schemars::schema_for!(I),
        "output_schema": schemars::schema_for!(O),
    })
}

/// Runs a tool: with `--manifest` as the first argument prints the manifest; otherwise
/// reads the JSON input from stdin, calls `tool` and writes the JSON result to stdout.
/// The exit status is 0 either way: the result document says whether the tool failed.
pub fn run<I, O>(info: ToolInfo, tool: impl FnOnce(I) -> Result<O, ToolError>)
where
    I: DeserializeOwned + JsonSchema,
    O: Serialize + JsonSchema,
{
    let document = if std::env::args().nth(1).as_deref() == Some("--manifest") {
        manifest::<I, O>(&info)
    } else {
        match read_input::<I>().and_then(tool) {
            Ok(output) => match serde_json::to_value(output) {
                Ok(output) => serde_json::json!({ "ok": true, "output": output }),
                Err(error) => error_document(&ToolError::new("internal", error.to_string())),
            },
            Err(error) => error_document(&error),
        }
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
        .map_err(|error| ToolError::invalid_input(format!("cannot read stdin: {error}")))?;
    serde_json::from_slice(&raw).map_err(|error| ToolError::invalid_input(format!("input is not valid: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_under_the_workspace() {
        assert_eq!(workspace_path("a/b.txt").unwrap(), PathBuf::from("/workspace/a/b.txt"));
        assert_eq!(workspace_path("./a").unwrap(), PathBuf::from("/workspace/a"));
        assert_eq!(workspace_path(".").unwrap(), PathBuf::from("/workspace"));
        assert_eq!(relative_display(&PathBuf::from("/workspace/a/b")), "a/b");
        assert_eq!(relative_display(&PathBuf::from("/workspace")), ".");
    }

    #[test]
    fn escapes_are_refused_with_a_kind() {
        assert_eq!(workspace_path("../etc/passwd").unwrap_err().kind, "outside_workspace");
        assert_eq!(workspace_path("a/../../b").unwrap_err().kind, "outside_workspace");
        assert_eq!(workspace_path("/etc/passwd").unwrap_err().kind, "outside_workspace");
        assert_eq!(workspace_path("a\0b").unwrap_err().kind, "invalid_input");
        assert_eq!(workspace_path("").unwrap_err().kind, "invalid_input");
    }

    #[test]
    fn hard_linked_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("protocol-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let original = dir.join("a");
        std::fs::write(&original, "x").unwrap();
        assert!(refuse_hard_links("a", &std::fs::metadata(&original).unwrap()).is_ok());
        std::fs::hard_link(&original, dir.join("b")).unwrap();
        let error = refuse_hard_links("a", &std::fs::metadata(&original).unwrap()).unwrap_err();
        assert_eq!(error.kind, "outside_workspace");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[derive(serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Input {
        /// The path.
        path: String,
    }

    #[test]
    fn the_manifest_carries_schemas_generated_from_the_types() {
        let info = ToolInfo { name: "t", description: "d", workspace: WorkspaceAccess::Read };
        let manifest = manifest::<Input, String>(&info);
        assert_eq!(manifest["name"], "t");
        assert_eq!(manifest["workspace"], "read");
        assert_eq!(manifest["input_schema"]["properties"]["path"]["type"], "string");
        assert_eq!(manifest["input_schema"]["required"][0], "path");
        assert_eq!(manifest["output_schema"]["type"], "string");
    }
}
