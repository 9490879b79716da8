//! The WebAssembly sandbox: runs tool modules under wasmtime, confined to one workspace.
//!
//! Every call gets a fresh instance of a pre-linked module ([`InstancePre`]), so no state
//! survives from one call to the next. The guest sees only what is passed in: its JSON
//! input on stdin, the workspace folder preopened at `/workspace` (read-only unless the
//! tool writes), and its own name as `argv[0]`. No environment variables, no other host
//! paths, no sockets. Each call runs under a CPU-time deadline (epoch interruption), a
//! memory limit (a [`ResourceLimiter`]) and caps on input and output size.
//!
//! The calls are synchronous and may block for up to the time limit: async callers run
//! them on `tokio::task::spawn_blocking`.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// Where the workspace appears inside the guest. Tools resolve their paths under it.
pub const WORKSPACE_GUEST_PATH: &str = "/workspace";

/// Default CPU-time budget of one call: tools do small, bounded work.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(2);
/// Default linear-memory cap of one call.
pub const DEFAULT_MEMORY_BYTES: usize = 64 * 1024 * 1024;
/// Default cap on what a call may write to stdout (and, separately, stderr).
pub const DEFAULT_OUTPUT_BYTES: usize = 1024 * 1024;
/// Default cap on a call's input document.
pub const DEFAULT_INPUT_BYTES: usize = 1024 * 1024;
/// Default number of calls that may run at once (the pooling allocator's slot count).
pub const DEFAULT_MAX_CONCURRENT_CALLS: u32 = 32;

/// How often the epoch ticker advances the engine's epoch. The time limit is enforced with
/// this granularity.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// How much of a tool's stderr is kept for error messages.
const STDERR_KEPT_BYTES: usize = 16 * 1024;

/// Limits that apply to every call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Wall-clock budget of one call while it runs wasm code.
    pub time_limit: Duration,
    /// Maximum linear memory of one call.
    pub memory_bytes: usize,
    /// Maximum bytes written to stdout by one call.
    pub output_bytes: usize,
    /// Maximum size of one call's input document.
    pub input_bytes: usize,
    /// How many calls may run at the same time.
    pub max_concurrent_calls: u32,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            time_limit: DEFAULT_TIME_LIMIT,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            output_bytes: DEFAULT_OUTPUT_BYTES,
            input_bytes: DEFAULT_INPUT_BYTES,
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
        }
    }
}

/// What a tool may do with the workspace. Its manifest declares it; the sandbox grants
/// exactly that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkspaceAccess {
    /// Nothing is preopened: the tool computes from its input alone.
    None,
    /// The workspace is preopened read-only.
    Read,
    /// The workspace is preopened read-write.
    Write,
}

/// A failure the tool itself reported (`{"ok": false, "error": {...}}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolFailure {
    /// Machine-readable kind, e.g. `not_found` or `outside_workspace`.
    pub kind: String,
    /// A sentence for people.
    pub message: String,
}

/// A compiled and pre-linked tool module, ready to be instantiated per call.
pub struct ToolModule {
    name: String,
    access: WorkspaceAccess,
    pre: InstancePre<CallState>,
}

impl ToolModule {
    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the tool may write the workspace.
    pub fn access(&self) -> WorkspaceAccess {
        self.access
    }
}

impl std::fmt::Debug for ToolModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolModule")
            .field("name", &self.name)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

/// The per-call state a wasmtime [`Store`] carries.
struct CallState {
    wasi: WasiP1Ctx,
    limiter: CallLimiter,
}

/// Caps memory and tables, and remembers whether it refused, so the caller can say why a
/// call failed.
struct CallLimiter {
    memory_bytes: usize,
    memory_refused: bool,
}

/// Tables hold function references; no honest tool needs more entries than this.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Advances the engine's epoch on a background thread so running calls hit their deadline.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("deckhand-wasm-epoch".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Configuration of a [`WasmSandbox`].
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    /// Limits applied to every call.
    pub limits: SandboxLimits,
    /// Where compiled modules are cached across runs (keyed by the module's hash and the
    /// engine's configuration). `None` compiles every module on every start.
    pub compile_cache_dir: Option<PathBuf>,
}

/// The wasm host. One per process; it is shared by reference between threads.
pub struct WasmSandbox {
    engine: Engine,
    linker: Linker<CallState>,
    limits: SandboxLimits,
    /// The pooling allocator has `max_concurrent_calls` instance slots; a call beyond
    /// them would be refused by wasmtime, so calls wait here for a slot instead.
    slots: CallSlots,
    // Declared last: dropped after the engine users above.
    _ticker: EpochTicker,
}

/// A counting semaphore for blocking threads (calls run on tokio's blocking pool).
#[derive(Debug)]
struct CallSlots {
    free: std::sync::Mutex<u32>,
    released: std::sync::Condvar,
}

/// One taken slot; given back on drop.
struct CallSlot<'a>(&'a CallSlots);

impl CallSlots {
    fn new(slots: u32) -> Self {
        Self {
            free: std::sync::Mutex::new(slots.max(1)),
            released: std::sync::Condvar::new(),
        }
    }

    /// Waits for a free slot.
    fn acquire(&self) -> CallSlot<'_> {
        // A poisoned lock only means a holder panicked; the count is still right.
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.released.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        CallSlot(self)
    }
}

impl Drop for CallSlot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.released.notify_one();
    }
}

impl std::fmt::Debug for WasmSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmSandbox")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn engine_error(error: impl std::fmt::Display) -> Error {
    Error::Engine {
        message: error.to_string(),
    }
}

impl WasmSandbox {
    /// Sets up the engine (Cranelift, epoch interruption, pooling allocator) and the WASI
    /// preview-1 linker.
    pub fn new(config: SandboxConfig) -> Result<Self> {
        let limits = config.limits;
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_core_instances(limits.max_concurrent_calls)
            .total_memories(limits.max_concurrent_calls)
            .total_tables(limits.max_concurrent_calls)
            .total_stacks(limits.max_concurrent_calls)
            .max_memory_size(limits.memory_bytes);
        let mut wasm_config = Config::new();
        wasm_config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        if let Some(dir) = &config.compile_cache_dir {
            // wasmtime wants an absolute cache path.
            std::fs::create_dir_all(dir).map_err(engine_error)?;
            let dir = std::fs::canonicalize(dir).map_err(engine_error)?;
            let mut cache_config = wasmtime::CacheConfig::new();
            cache_config.with_directory(dir);
            let cache = wasmtime::Cache::new(cache_config).map_err(engine_error)?;
            wasm_config.cache(Some(cache));
        }
        let engine = Engine::new(&wasm_config).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut CallState| &mut state.wasi)
            .map_err(engine_error)?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Self {
            engine,
            linker,
            slots: CallSlots::new(limits.max_concurrent_calls),
            limits,
            _ticker: ticker,
        })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// Compiles (or loads from the cache) and links the module at `path` as tool `name`.
    pub fn load(&self, name: &str, path: &Path, access: WorkspaceAccess) -> Result<ToolModule> {
        let bytes = std::fs::read(path).map_err(|source| Error::ReadModule {
            path: path.to_owned(),
            source,
        })?;
        self.load_bytes(name, &bytes, access)
    }

    /// Compiles and links a module given as bytes (binary or text format).
    pub fn load_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        access: WorkspaceAccess,
    ) -> Result<ToolModule> {
        let invalid = |error: wasmtime::Error| Error::InvalidModule {
            tool: name.to_owned(),
            message: format!("{error:#}"),
        };
        let module = Module::new(&self.engine, bytes).map_err(invalid)?;
        let pre = self.linker.instantiate_pre(&module).map_err(invalid)?;
        Ok(ToolModule {
            name: name.to_owned(),
            access,
            pre,
        })
    }

    /// Runs one call of `tool` on `workspace` with `input` (a JSON document).
    ///
    /// Returns `Ok(Ok(output))` when the tool succeeded, `Ok(Err(failure))` when the tool
    /// reported a failure of its own, and `Err` when the sandbox stopped it or it broke the
    /// protocol.
    pub fn call(
        &self,
        tool: &ToolModule,
        workspace: &Path,
        input: &[u8],
    ) -> Result<std::result::Result<serde_json::Value, ToolFailure>> {
        let name = tool.name.as_str();
        if input.len() > self.limits.input_bytes {
            return Err(Error::InputTooLarge {
                tool: name.to_owned(),
                size: input.len(),
                limit: self.limits.input_bytes,
            });
        }
        // Held until the call's store (declared later, so dropped first) gives its
        // instance slot back to the pool.
        let _slot = self.slots.acquire();
        // One byte over the limit lets us tell "exactly at the limit" from "overflowed".
        let stdout = MemoryOutputPipe::new(self.limits.output_bytes + 1);
        let stderr = MemoryOutputPipe::new(STDERR_KEPT_BYTES);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(input.to_vec()))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(&[name])
            // Calls already run on a blocking thread: do file I/O inline instead of handing
            // every read and open to another thread.
            .allow_blocking_current_thread(true);
        let perms = match tool.access {
            WorkspaceAccess::None => None,
            WorkspaceAccess::Read => Some(FsPerms::ReadOnly),
            WorkspaceAccess::Write => Some(FsPerms::ReadWrite),
        };
        if let Some(perms) = perms {
            wasi.preopened_dir(workspace, WORKSPACE_GUEST_PATH, perms)
                .map_err(|error| Error::Workspace {
                    tool: name.to_owned(),
                    path: workspace.to_owned(),
                    message: format!("{error:#}"),
                })?;
        }
        let state = CallState {
            wasi: wasi.build_p1(),
            limiter: CallLimiter {
                memory_bytes: self.limits.memory_bytes,
                memory_refused: false,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(deadline_ticks(self.limits.time_limit));
        store.epoch_deadline_trap();

        let run = tool.pre.instantiate(&mut store).and_then(|instance| {
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call(&mut store, ())
        });
        let memory_refused = store.data().limiter.memory_refused;
        drop(store);

        let stdout = stdout.contents();
        if stdout.len() > self.limits.output_bytes {
            return Err(Error::OutputLimit {
                tool: name.to_owned(),
                limit: self.limits.output_bytes,
            });
        }
        if let Err(error) = run {
            let exit_code = error.downcast_ref::<I32Exit>().map(|exit| exit.0);
            if exit_code != Some(0) {
                return Err(self.classify_failure(
                    name,
                    &error,
                    exit_code,
                    memory_refused,
                    &stderr,
                ));
            }
        }
        parse_result(name, &stdout)
    }

    fn classify_failure(
        &self,
        tool: &str,
        error: &wasmtime::Error,
        exit_code: Option<i32>,
        memory_refused: bool,
        stderr: &MemoryOutputPipe,
    ) -> Error {
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return Error::TimeLimit {
                tool: tool.to_owned(),
                limit: self.limits.time_limit,
            };
        }
        if memory_refused {
            return Error::MemoryLimit {
                tool: tool.to_owned(),
                limit: self.limits.memory_bytes,
            };
        }
        let mut message = match exit_code {
            Some(code) => format!("exited with status {code}"),
            None => format!("{error:#}"),
        };
        let stderr = stderr.contents();
        if !stderr.is_empty() {
            message.push_str("; stderr: ");
            message.push_str(String::from_utf8_lossy(&stderr).trim_end());
        }
        Error::Crashed {
            tool: tool.to_owned(),
            message,
        }
    }
}

/// Epoch ticks for `limit`, rounded up and never zero (zero would trap at once).
fn deadline_ticks(limit: Duration) -> u64 {
    let ticks = limit.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

/// The result document every tool writes to stdout.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultDocument {
    ok: bool,
    #[serde(default)]
    output: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<ToolFailure>,
}

fn parse_result(
    tool: &str,
    stdout: &[u8],
) -> Result<std::result::Result<serde_json::Value, ToolFailure>> {
    let malformed = |message: String| Error::MalformedResult {
        tool: tool.to_owned(),
        message,
    };
    if stdout.is_empty() {
        return Err(malformed("the tool wrote nothing to stdout".into()));
    }
    let document: ResultDocument = serde_json::from_slice(stdout)
        .map_err(|error| malformed(format!("stdout is not a result document: {error}")))?;
    match (document.ok, document.output, document.error) {
        (true, output, None) => Ok(Ok(output.unwrap_or(serde_json::Value::Null))),
        (false, None, Some(failure)) => Ok(Err(failure)),
        (true, _, Some(_)) => Err(malformed("\"ok\": true with an \"error\"".into())),
        (false, _, None) => Err(malformed("\"ok\": false without an \"error\"".into())),
        (false, Some(_), Some(_)) => Err(malformed("\"ok\": false with an \"output\"".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_beyond_the_slots_wait_instead_of_failing() {
        let slots = std::sync::Arc::new(CallSlots::new(1));
        let first = slots.acquire();
        let (sent, received) = std::sync::mpsc::channel();
        let waiter = {
            let slots = std::sync::Arc::clone(&slots);
            std::thread::spawn(move || {
                let _second = slots.acquire();
                sent.send(()).expect("send");
            })
        };
        assert!(
            received
                .recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "the second call waits while the only slot is taken"
        );
        drop(first);
        received
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the second call runs once the slot is free");
        waiter.join().expect("join");
    }

    #[test]
    fn deadline_is_rounded_up_and_never_zero() {
        assert_eq!(deadline_ticks(Duration::from_millis(2000)), 200);
        assert_eq!(deadline_ticks(Duration::from_millis(15)), 2);
        assert_eq!(deadline_ticks(Duration::ZERO), 1);
    }

    #[test]
    fn result_documents_are_checked() {
        assert_eq!(
            parse_result("t", br#"{"ok":true,"output":{"a":1}}"#).unwrap(),
            Ok(serde_json::json!({"a":1}))
        );
        let failure = parse_result(
            "t",
            br#"{"ok":false,"error":{"kind":"not_found","message":"x"}}"#,
        )
        .unwrap()
        .unwrap_err();
        assert_eq!(failure.kind, "not_found");
        for bad in [
            &b""[..],
            b"not json",
            br#"{"ok":false}"#,
            br#"{"ok":true,"error":{"kind":"a","message":"b"}}"#,
            br#"{"ok":true,"extra":1}"#,
        ] {
            assert!(
                matches!(parse_result("t", bad), Err(Error::MalformedResult { .. })),
                "{bad:?}"
            );
        }
    }

    fn sandbox(limits: SandboxLimits) -> WasmSandbox {
        WasmSandbox::new(SandboxConfig {
            limits,
            compile_cache_dir: None,
        })
        .expect("engine")
    }

    /// A module in the text format that loops forever: the deadline must stop it.
    #[test]
    fn an_infinite_loop_hits_the_time_limit() {
        let sandbox = sandbox(SandboxLimits {
            time_limit: Duration::from_millis(100),
            ..Default::default()
        });
        let tool = sandbox
            .load_bytes(
                "spin",
                br#"(module (func (export "_start") (loop br 0)) (memory (export "memory") 1))"#,
                WorkspaceAccess::Read,
            )
            .expect("load");
        let dir = tempfile::tempdir().expect("tempdir");
        let error = sandbox.call(&tool, dir.path(), b"{}").unwrap_err();
        assert!(matches!(error, Error::TimeLimit { .. }), "{error}");
    }

    /// A module that grows memory page by page until refused, then traps.
    #[test]
    fn a_memory_bomb_hits_the_memory_limit() {
        let sandbox = sandbox(SandboxLimits {
            memory_bytes: 4 * 1024 * 1024,
            ..Default::default()
        });
        let wat = br#"(module (memory (export "memory") 1)
            (func (export "_start")
              (loop (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable)) (br 0))))"#;
        let tool = sandbox
            .load_bytes("bomb", wat, WorkspaceAccess::Read)
            .expect("load");
        let dir = tempfile::tempdir().expect("tempdir");
        let error = sandbox.call(&tool, dir.path(), b"{}").unwrap_err();
        assert!(matches!(error, Error::MemoryLimit { .. }), "{error}");
    }

    #[test]
    fn oversized_input_is_refused_before_running() {
        let sandbox = sandbox(SandboxLimits {
            input_bytes: 8,
            ..Default::default()
        });
        let tool = sandbox
            .load_bytes(
                "noop",
                br#"(module (func (export "_start")) (memory (export "memory") 1))"#,
                WorkspaceAccess::Read,
            )
            .expect("load");
        let dir = tempfile::tempdir().expect("tempdir");
        let error = sandbox.call(&tool, dir.path(), b"0123456789").unwrap_err();
        assert!(
            matches!(
                error,
                Error::InputTooLarge {
                    size: 10,
                    limit: 8,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn a_module_importing_what_the_sandbox_lacks_is_refused_at_load() {
        let sandbox = sandbox(SandboxLimits::default());
        let wat = br#"(module (import "env" "open_socket" (func)) (func (export "_start")))"#;
        let error = sandbox
            .load_bytes("sneaky", wat, WorkspaceAccess::Read)
            .unwrap_err();
        assert!(matches!(error, Error::InvalidModule { .. }), "{error}");
    }
}
