//! Building the tool registry from the configured directories: the built-in tools and any
//! plugin directories, all in one sandbox with the same limits.

use crate::error::Result;
use deckhand_tools::loader::SkippedTool;
use deckhand_tools::{load_tool_dir, SandboxConfig, SandboxLimits, ToolRegistry, WasmSandbox};
use std::path::PathBuf;
use std::sync::Arc;

/// Where tools come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolsConfig {
    /// The built-in tools (`NAME.wasm` + `NAME.json`), e.g. `tools-wasm/dist`.
    pub builtin_dir: PathBuf,
    /// Third-party plugin directories, loaded after the built-ins; a plugin never replaces
    /// a tool that is already loaded.
    pub plugin_dirs: Vec<PathBuf>,
    /// Where compiled modules are cached between runs.
    pub compile_cache_dir: Option<PathBuf>,
    /// Limits of every call.
    pub limits: SandboxLimits,
    /// The terraform binary `terraform_plan` runs; `None`: no such tool.
    pub terraform: Option<deckhand_tools::terraform::TerraformConfig>,
}

/// The loaded tools, and those that were found but refused.
pub struct Toolbox {
    /// The registry agents and the CLI call tools through.
    pub registry: ToolRegistry,
    /// Tools found but not loaded, with the reason.
    pub skipped: Vec<SkippedTool>,
}

/// Sets up the sandbox and loads the built-in tools and the plugins. A missing built-in
/// directory is reported as a skipped entry (deckhand still serves); a plugin directory the
/// user named must exist.
pub fn build(config: &ToolsConfig) -> Result<Toolbox> {
    let sandbox = Arc::new(WasmSandbox::new(SandboxConfig {
        limits: config.limits.clone(),
        compile_cache_dir: config.compile_cache_dir.clone(),
    })?);
    let mut registry = ToolRegistry::new();
    let mut skipped = Vec::new();
    match load_tool_dir(&sandbox, &config.builtin_dir, &mut registry) {
        Ok(report) => skipped.extend(report.skipped),
        Err(error) => skipped.push(SkippedTool {
            path: config.builtin_dir.clone(),
            error,
        }),
    }
    for dir in &config.plugin_dirs {
        let report = load_tool_dir(&sandbox, dir, &mut registry)?;
        skipped.extend(report.skipped);
    }
    if let Some(terraform) = &config.terraform {
        // PATH and the allow-listed variables come from deckhand's environment, read at
        // each call so rotated credentials are seen.
        let tool = deckhand_tools::terraform::TerraformPlan::new(terraform)?
            .with_env(Arc::new(|name: &str| std::env::var_os(name)));
        deckhand_tools::terraform::register_terraform(&mut registry, tool)?;
    }
    for tool in &skipped {
        tracing::warn!(path = %tool.path.display(), error = %tool.error, "tool not loaded");
    }
    Ok(Toolbox { registry, skipped })
}
