//! What the integration tests share: the catalog deckhand plans against, built from the
//! real wasm tool manifests, the analyzers, and the cluster tools.

// Test helpers outside #[test] functions: a panic is the failure report here too.
#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use deckhand_runtime::ToolCatalog;
use deckhand_tools::ToolSpec;
use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The built-in wasm tools' manifests, the analyzers and the cluster tools' real
/// manifests (from crates/tools).
pub fn catalog() -> ToolCatalog {
    let mut specs: Vec<ToolSpec> = Vec::new();
    let dist = repo_root().join("tools-wasm/dist");
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&dist)
        .unwrap_or_else(|error| {
            panic!(
                "{}: {error}; build the wasm tools first (scripts/build-tools-wasm.sh)",
                dist.display()
            )
        })
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    manifests.sort();
    for path in manifests {
        specs.push(serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap());
    }
    specs.extend(deckhand_tools::cluster::cluster_tool_specs());
    let analyzers = deckhand_agents::tools::analyzer_tools();
    let mut all: Vec<&ToolSpec> = specs.iter().collect();
    all.extend(analyzers.iter().map(deckhand_tools::Tool::spec));
    deckhand_agents::tools::catalog_from_specs(all)
}
