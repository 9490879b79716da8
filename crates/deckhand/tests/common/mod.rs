//! What the end-to-end tests of the real binary share: the command with a scrubbed
//! environment (the offline model, no ambient database or cloud keys), `deckhand serve`
//! started and healthy, and an HTTP caller with a bearer token.
//!
//! Each test file includes this with `mod common;` and uses what it needs.

#![allow(dead_code, clippy::unwrap_used)]

use deckhand_testkit::process::ServerProcess;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Generous: the machine may be busy compiling, and the first run compiles the tools.
pub const WAIT: Duration = Duration::from_secs(180);

/// The built-in wasm tools.
pub fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools-wasm/dist")
}

/// The real binary run in `dir` with nothing from the test's environment that would change
/// what it does: HOME and the wasm cache in `dir`, the offline model (Ollama pointed at a
/// closed port), no database URLs, no cloud model keys, no cluster unless the caller sets
/// `KUBECONFIG`.
pub fn deckhand(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deckhand"));
    command
        .current_dir(dir)
        .env("HOME", dir)
        .env("RUST_LOG", "info")
        .env("DECKHAND_WASM_CACHE", dir.join("wasm-cache"))
        .env_remove("KUBECONFIG")
        .env_remove("POD_NAME")
        .env_remove("DECKHAND_DATABASE_URL")
        .env_remove("DECKHAND_SHARED_DATABASE_URL")
        .env_remove("DECKHAND_IDENTITY_SOURCE")
        .env_remove("DECKHAND_WEBHOOK_LISTEN")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("GEMINI_API_KEY")
        .env_remove("AZURE_OPENAI_ENDPOINT")
        .env("OLLAMA_HOST", "http://127.0.0.1:9");
    command
}

/// `deckhand serve` in `dir` on `port` (its `deckhand.toml`, if any, applies), against the
/// cluster of `kubeconfig` when given, logging at `rust_log`; returns once `/healthz`
/// answers.
pub async fn serve(
    dir: &Path,
    port: u16,
    kubeconfig: Option<&Path>,
    rust_log: &str,
) -> ServerProcess {
    let mut command = deckhand(dir);
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--builtin-tools-dir")
        .arg(tools_dir())
        .env("RUST_LOG", rust_log);
    if let Some(path) = kubeconfig {
        command.env("KUBECONFIG", path);
    }
    let log = dir.join(format!("deckhand-{port}.log"));
    let mut process = ServerProcess::spawn("deckhand", command, &log).expect("spawn deckhand");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await {
            if response.status().is_success() {
                return process;
            }
        }
        process.check_running().expect("deckhand keeps running");
        assert!(Instant::now() < deadline, "no /healthz within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client of one deckhand with one token.
#[derive(Clone)]
pub struct Caller {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Caller {
    /// The first admin of the deckhand serving `dir` on `port` (its initial token).
    pub fn admin(dir: &Path, port: u16) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{port}"),
            token: std::fs::read_to_string(dir.join("data/initial-admin-token"))
                .unwrap()
                .trim()
                .to_owned(),
        }
    }

    /// `method path` with the token and an optional JSON body: the status and the body
    /// (JSON, else its text as a JSON string).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}
