//! The sandbox's speed, side by side with spawning a native process that does the same.
//! Run with `cargo bench -p deckhand-tools --bench sandbox` (after
//! `scripts/build-tools-wasm.sh`). One line per case.
//!
//! - warm call: `read_file` of a 1 KiB file through `WasmSandbox::call` (a fresh instance
//!   of a pre-linked module per call), p50/p99;
//! - the same through the registry (schema checks, output check, a blocking thread);
//! - spawning `cat` on the same file with `std::process::Command`, p50/p99, and the ratio;
//! - cold first call: a new sandbox loading the module with and without the compile cache;
//! - calls per second with one caller per core.

use deckhand_tools::{
    load_tool_dir, SandboxConfig, ToolContext, ToolRegistry, WasmSandbox, WorkspaceAccess,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WARM_CALLS: usize = 2000;
const SPAWNS: usize = 500;
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(3);

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn summarize(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    println!(
        "{name:<44} n={:<5} p50={:>9.1?} p99={:>9.1?}",
        samples.len(),
        p50,
        p99
    );
    p50
}

fn main() {
    let dist = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools-wasm/dist");
    let module = dist.join("read_file.wasm");
    assert!(
        module.is_file(),
        "{} is missing: run scripts/build-tools-wasm.sh",
        module.display()
    );
    let workspace = tempfile::tempdir().expect("workspace");
    std::fs::write(workspace.path().join("file.txt"), "x".repeat(1024)).expect("file");
    let input = br#"{"path":"file.txt"}"#;

    // Warm calls through the sandbox.
    let sandbox = Arc::new(WasmSandbox::new(SandboxConfig::default()).expect("sandbox"));
    let tool = Arc::new(
        sandbox
            .load("read_file", &module, WorkspaceAccess::Read)
            .expect("load"),
    );
    for _ in 0..50 {
        sandbox
            .call(&tool, workspace.path(), input)
            .expect("call")
            .expect("ok");
    }
    let samples = (0..WARM_CALLS)
        .map(|_| {
            let start = Instant::now();
            sandbox
                .call(&tool, workspace.path(), input)
                .expect("call")
                .expect("ok");
            start.elapsed()
        })
        .collect();
    let wasm_p50 = summarize("warm call read_file 1KiB (sandbox)", samples);

    // The same through the registry, as agents call it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut registry = ToolRegistry::new();
    load_tool_dir(&sandbox, &dist, &mut registry).expect("load tools");
    let context = ToolContext {
        workspace: workspace.path().to_owned(),
        ..ToolContext::default()
    };
    let value = serde_json::json!({"path": "file.txt"});
    let samples = runtime.block_on(async {
        let mut samples = Vec::with_capacity(WARM_CALLS);
        for _ in 0..WARM_CALLS {
            let start = Instant::now();
            registry
                .call("read_file", &context, &value)
                .await
                .expect("call");
            samples.push(start.elapsed());
        }
        samples
    });
    summarize("warm call read_file 1KiB (registry)", samples);

    // A native process doing the same.
    let file = workspace.path().join("file.txt");
    let samples = (0..SPAWNS)
        .map(|_| {
            let start = Instant::now();
            let output = std::process::Command::new("cat")
                .arg(&file)
                .output()
                .expect("cat");
            assert_eq!(output.stdout.len(), 1024);
            start.elapsed()
        })
        .collect();
    let spawn_p50 = summarize("spawn `cat` 1KiB (std::process::Command)", samples);
    println!(
        "{:<44} {:.1}x faster than spawning a process (p50)",
        "ratio",
        spawn_p50.as_secs_f64() / wasm_p50.as_secs_f64()
    );

    // Cold first call: a new engine, compiling, or loading from the compile cache.
    let cache = tempfile::tempdir().expect("cache dir");
    for (name, cache_dir) in [
        ("cold first call, no cache (compile)", None),
        ("cold first call, cache filled", Some(cache.path())),
        ("cold first call, from cache", Some(cache.path())),
    ] {
        let start = Instant::now();
        let sandbox = WasmSandbox::new(SandboxConfig {
            compile_cache_dir: cache_dir.map(|d| d.to_owned()),
            ..Default::default()
        })
        .expect("sandbox");
        let tool = sandbox
            .load("read_file", &module, WorkspaceAccess::Read)
            .expect("load");
        sandbox
            .call(&tool, workspace.path(), input)
            .expect("call")
            .expect("ok");
        println!("{name:<44} {:>9.1?}", start.elapsed());
    }

    // Throughput: one caller per core for a fixed window.
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let deadline = Instant::now() + THROUGHPUT_WINDOW;
    let handles: Vec<_> = (0..cores)
        .map(|_| {
            let (sandbox, tool, dir) = (
                Arc::clone(&sandbox),
                Arc::clone(&tool),
                workspace.path().to_owned(),
            );
            std::thread::spawn(move || {
                let mut calls = 0_u64;
                while Instant::now() < deadline {
                    sandbox.call(&tool, &dir, input).expect("call").expect("ok");
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    let total: u64 = handles
        .into_iter()
        .map(|handle| handle.join().expect("thread"))
        .sum();
    println!(
        "{:<44} {:.0} calls/s with {cores} threads",
        "throughput read_file 1KiB",
        total as f64 / THROUGHPUT_WINDOW.as_secs_f64()
    );
}
