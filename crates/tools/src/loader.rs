//! Loading wasm tools from a directory: each `NAME.json` manifest with its `NAME.wasm`
//! module. Built-in tools and third-party plugins load the same way and get exactly the same
//! confinement and limits; a malformed manifest or module is reported and skipped, never
//! loaded half-way.

use crate::error::{Error, Result};
use crate::registry::{Tool, ToolContext, ToolFuture, ToolRegistry};
use crate::sandbox::{ToolModule, WasmSandbox};
use crate::spec::ToolSpec;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Manifests larger than this are refused before parsing.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// A tool run by the wasm sandbox.
pub struct WasmTool {
    spec: ToolSpec,
    module: Arc<ToolModule>,
    sandbox: Arc<WasmSandbox>,
}

impl WasmTool {
    /// Compiles `module_path` in `sandbox` as the tool `spec` describes.
    pub fn load(sandbox: Arc<WasmSandbox>, spec: ToolSpec, module_path: &Path) -> Result<Self> {
        let module = sandbox.load(&spec.name, module_path, spec.workspace)?;
        Ok(Self {
            spec,
            module: Arc::new(module),
            sandbox,
        })
    }
}

impl Tool for WasmTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call<'a>(&'a self, context: &'a ToolContext, input: &'a Value) -> ToolFuture<'a> {
        let sandbox = Arc::clone(&self.sandbox);
        let module = Arc::clone(&self.module);
        let workspace = context.workspace.clone();
        let name = self.spec.name.clone();
        let input = input.to_string().into_bytes();
        Box::pin(async move {
            // A call blocks for up to the time limit: keep it off the async workers.
            let outcome =
                tokio::task::spawn_blocking(move || sandbox.call(&module, &workspace, &input))
                    .await
                    .map_err(|error| Error::Crashed {
                        tool: name.clone(),
                        message: format!("the call's thread failed: {error}"),
                    })??;
            outcome.map_err(|failure| Error::Failed {
                tool: name,
                failure,
            })
        })
    }
}

/// A tool that was found but not loaded, and why.
#[derive(Debug)]
pub struct SkippedTool {
    /// The manifest or module.
    pub path: PathBuf,
    /// Why it was skipped.
    pub error: Error,
}

/// What loading a directory did.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Names of the tools registered.
    pub loaded: Vec<String>,
    /// Tools found but not loaded.
    pub skipped: Vec<SkippedTool>,
}

/// Loads every tool in `dir` into `registry`. `Err` only when the directory itself cannot
/// be read; each bad tool is skipped and reported in the [`LoadReport`].
pub fn load_tool_dir(
    sandbox: &Arc<WasmSandbox>,
    dir: &Path,
    registry: &mut ToolRegistry,
) -> Result<LoadReport> {
    let dir_error = |source| Error::ToolsDir {
        path: dir.to_owned(),
        source,
    };
    let mut manifests = Vec::new();
    let mut modules = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(dir_error)? {
        let path = entry.map_err(dir_error)?.path();
        match path.extension().and_then(|extension| extension.to_str()) {
            Some("json") => manifests.push(path),
            Some("wasm") => modules.push(path),
            _ => {}
        }
    }
    manifests.sort();
    let mut report = LoadReport::default();
    for module in modules {
        if !module.with_extension("json").is_file() {
            let error = Error::InvalidManifest {
                path: module.with_extension("json"),
                problems: vec!["the module has no manifest".into()],
            };
            report.skipped.push(SkippedTool {
                path: module,
                error,
            });
        }
    }
    for manifest in manifests {
        match load_one(sandbox, &manifest, registry) {
            Ok(name) => report.loaded.push(name),
            Err(error) => report.skipped.push(SkippedTool {
                path: manifest,
                error,
            }),
        }
    }
    Ok(report)
}

fn load_one(
    sandbox: &Arc<WasmSandbox>,
    manifest: &Path,
    registry: &mut ToolRegistry,
) -> Result<String> {
    let invalid = |problem: String| Error::InvalidManifest {
        path: manifest.to_owned(),
        problems: vec![problem],
    };
    let size = std::fs::metadata(manifest)
        .map_err(|error| invalid(error.to_string()))?
        .len();
    if size > MAX_MANIFEST_BYTES {
        return Err(invalid(format!(
            "{size} bytes is above the limit of {MAX_MANIFEST_BYTES}"
        )));
    }
    let text = std::fs::read_to_string(manifest).map_err(|error| invalid(error.to_string()))?;
    let spec: ToolSpec = serde_json::from_str(&text).map_err(|error| invalid(error.to_string()))?;
    let problems = spec.problems();
    if !problems.is_empty() {
        return Err(Error::InvalidManifest {
            path: manifest.to_owned(),
            problems,
        });
    }
    let stem = manifest
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or_default();
    if spec.name != stem {
        return Err(invalid(format!(
            "the manifest names tool {:?} but the file is {stem}.json",
            spec.name
        )));
    }
    if spec.mutating {
        return Err(invalid(
            "a wasm tool cannot be mutating: it can reach nothing outside the workspace".into(),
        ));
    }
    let tool = WasmTool::load(Arc::clone(sandbox), spec, &manifest.with_extension("wasm"))?;
    let name = tool.spec.name.clone();
    registry.register(Arc::new(tool), manifest.display().to_string())?;
    Ok(name)
}
