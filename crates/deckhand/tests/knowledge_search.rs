//! Knowledge search by meaning through the real binary: `deckhand knowledge search` and
//! `GET /api/knowledge` of `deckhand serve`, on a real SQLite store, with an embedding
//! server on 127.0.0.1 speaking Ollama's `/api/embed` wire format. A stored entry that
//! shares no word with the question is found only when the model answers (hybrid); with
//! no model configured, or the model down (nothing listening, or answering 503), the
//! search is full text, still answers, and says so.

#![allow(clippy::unwrap_used)]

mod common;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use common::serve;
use deckhand_runtime::knowledge::KnowledgeEntry;
use deckhand_runtime::ThreadId;
use deckhand_store::{Database, Embedding};
use deckhand_testkit::process::free_port;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const MODEL: &str = "meaning-test";
/// No word in common with the stored entry about memory.
const PARAPHRASE: &str = "application terminated for exceeding allowed ram";

/// The model's idea of meaning: a direction per topic, by the words that name it.
fn meaning(text: &str) -> Vec<f32> {
    let text = text.to_lowercase();
    let mut vector = vec![0.01; 8];
    let topics: [(&[&str], usize); 2] = [
        (&["ram", "memory", "oomkilled"], 0),
        (&["certificate", "tls"], 5),
    ];
    let mut any = false;
    for (words, axis) in topics {
        if words.iter().any(|word| text.contains(word)) {
            vector[axis] = 1.0;
            any = true;
        }
    }
    if !any {
        vector[7] = 1.0;
    }
    vector
}

/// What the embedding server received, and whether it is failing.
#[derive(Default)]
struct Model {
    received: Mutex<Vec<Value>>,
    /// Answer 503, as a server whose model is being reloaded does.
    failing: AtomicBool,
}

/// An embedding server on 127.0.0.1: `POST /api/embed`, answered as Ollama does.
async fn embedding_server() -> (String, Arc<Model>, tokio::task::JoinHandle<()>) {
    async fn embed(
        State(model): State<Arc<Model>>,
        Json(body): Json<Value>,
    ) -> Result<Json<Value>, (StatusCode, &'static str)> {
        model.received.lock().unwrap().push(body.clone());
        if model.failing.load(Ordering::SeqCst) {
            return Err((StatusCode::SERVICE_UNAVAILABLE, "model is loading"));
        }
        let inputs: Vec<String> = match &body["input"] {
            Value::String(text) => vec![text.clone()],
            Value::Array(texts) => texts
                .iter()
                .map(|text| text.as_str().unwrap_or_default().to_owned())
                .collect(),
            _ => Vec::new(),
        };
        let embeddings: Vec<Vec<f32>> = inputs.iter().map(|text| meaning(text)).collect();
        Ok(Json(json!({
            "model": body["model"],
            "embeddings": embeddings,
            "total_duration": 14_143_917u64,
            "load_duration": 1_019_500u64,
            "prompt_eval_count": 8,
        })))
    }
    let model = Arc::new(Model::default());
    let app = Router::new()
        .route("/api/embed", post(embed))
        .with_state(model.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, model, task)
}

/// `dir/deckhand.toml`, with an embedding model at `endpoint` when given.
fn configure(dir: &Path, endpoint: Option<&str>) {
    let embeddings = endpoint.map_or_else(String::new, |endpoint| {
        format!(
            "[knowledge.embeddings]\nprovider = \"ollama\"\nendpoint = \"{endpoint}\"\n\
             model = \"{MODEL}\"\ntimeout_secs = 5\n"
        )
    });
    std::fs::write(dir.join("deckhand.toml"), embeddings).unwrap();
}

/// Two resolved threads' knowledge, each with its vector from the model.
async fn remember(dir: &Path) -> (KnowledgeEntry, KnowledgeEntry) {
    let database = Database::open_sqlite(&dir.join("data/deckhand.db"))
        .await
        .unwrap();
    let mut stored = Vec::new();
    for (request, summary) in [
        (
            "checkout pods restarting: OOMKilled",
            "raised the limit to 512Mi",
        ),
        (
            "ingress certificate expired",
            "renewed it with cert-manager",
        ),
    ] {
        let mut entry = KnowledgeEntry::new(ThreadId::new(), "eks-prod", request, "resolved");
        entry.resolution_summary = summary.into();
        entry.rating = Some(90);
        database.upsert_knowledge_entry(&entry).await.unwrap();
        database
            .upsert_knowledge_embedding(entry.id, &Embedding::new(MODEL, meaning(request)))
            .await
            .unwrap();
        stored.push(entry);
    }
    database.close().await;
    let certificate = stored.pop().unwrap();
    (stored.pop().unwrap(), certificate)
}

/// `deckhand knowledge search TEXT [--json]` in `dir`: exit code, stdout, stderr.
async fn search(dir: &Path, text: &str, as_json: bool) -> (i32, String, String) {
    let mut command = tokio::process::Command::from(common::deckhand(dir));
    command
        .args(["knowledge", "search", text])
        .env_remove("RUST_LOG");
    if as_json {
        command.arg("--json");
    }
    let output = command.output().await.unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn search_json(dir: &Path, text: &str) -> (Vec<Value>, String) {
    let (code, out, err) = search(dir, text, true).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let hits: Value =
        serde_json::from_str(&out).unwrap_or_else(|error| panic!("not JSON ({error}): {out}"));
    (hits.as_array().unwrap().clone(), err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_finds_by_meaning_only_with_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, _) = remember(dir.path()).await;
    let (url, model, server) = embedding_server().await;

    // No model configured: full text, which shares no word with the question.
    configure(dir.path(), None);
    let (hits, _) = search_json(dir.path(), PARAPHRASE).await;
    assert!(hits.is_empty(), "{hits:#?}");
    let (code, out, _) = search(dir.path(), PARAPHRASE, false).await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with("by words only (no embedding model configured)"),
        "{out}"
    );
    assert!(out.contains("no resolved thread matches"), "{out}");
    assert!(model.received.lock().unwrap().is_empty());

    // The model configured: the paraphrase finds the entry by meaning alone.
    configure(dir.path(), Some(&url));
    let (hits, _) = search_json(dir.path(), PARAPHRASE).await;
    assert_eq!(hits.len(), 1, "{hits:#?}");
    assert_eq!(hits[0]["search"], "hybrid");
    assert_eq!(hits[0]["entry"]["id"], memory.id.to_string());
    assert_eq!(hits[0]["entry"]["thread_id"], memory.thread_id.to_string());
    assert_eq!(hits[0]["text_score"], Value::Null);
    assert!(hits[0]["similarity"].as_f64().unwrap() > 0.9, "{hits:#?}");
    assert_eq!(
        model.received.lock().unwrap().last().unwrap(),
        &json!({"model": MODEL, "input": [PARAPHRASE]})
    );
    let (code, out, _) = search(dir.path(), PARAPHRASE, false).await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("by words and meaning ({MODEL})")),
        "{out}"
    );
    assert!(out.contains(&memory.thread_id.to_string()), "{out}");
    assert!(out.contains("matched by meaning, similarity"), "{out}");

    // The model down (nothing listens): words still find what they match, and the
    // output says how.
    server.abort();
    let _ = server.await;
    let (hits, err) = search_json(dir.path(), PARAPHRASE).await;
    assert!(hits.is_empty(), "{hits:#?}");
    assert!(err.contains("embedding model unavailable"), "{err}");
    let (hits, _) = search_json(dir.path(), "checkout OOMKilled").await;
    assert_eq!(hits.len(), 1, "{hits:#?}");
    assert_eq!(hits[0]["search"], "full_text");
    assert_eq!(hits[0]["entry"]["id"], memory.id.to_string());
    let (code, out, _) = search(dir.path(), "checkout OOMKilled", false).await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with("by words only: the embedding model did not answer"),
        "{out}"
    );
    assert!(out.contains("matched by words"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_finds_by_meaning_only_with_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let (memory, _) = remember(dir.path()).await;
    let (url, model, server) = embedding_server().await;
    configure(dir.path(), Some(&url));
    let port = free_port().unwrap();
    let mut process = serve(dir.path(), port, None, "info").await;
    let token = std::fs::read_to_string(dir.path().join("data/initial-admin-token")).unwrap();
    let http = reqwest::Client::new();
    let knowledge = |q: &str| {
        let request = http
            .get(format!("http://127.0.0.1:{port}/api/knowledge"))
            .query(&[("q", q)])
            .bearer_auth(token.trim());
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let hits: Value = response.json().await.unwrap();
            hits.as_array().unwrap().clone()
        }
    };

    let hits = knowledge(PARAPHRASE).await;
    assert_eq!(hits.len(), 1, "{hits:#?}");
    assert_eq!(hits[0]["thread_id"], memory.thread_id.to_string());
    assert_eq!(hits[0]["search"], "hybrid");
    assert!(hits[0]["similarity"].as_f64().unwrap() > 0.9, "{hits:#?}");
    assert!(model
        .received
        .lock()
        .unwrap()
        .contains(&json!({"model": MODEL, "input": [PARAPHRASE]})));

    // The model failing: full text answers, and says so.
    model.failing.store(true, Ordering::SeqCst);
    assert!(knowledge(PARAPHRASE).await.is_empty());
    let hits = knowledge("checkout OOMKilled").await;
    assert_eq!(hits.len(), 1, "{hits:#?}");
    assert_eq!(hits[0]["thread_id"], memory.thread_id.to_string());
    assert_eq!(hits[0]["search"], "full_text");
    assert_eq!(hits[0].get("similarity"), None);
    server.abort();
    process.stop();
    let log = std::fs::read_to_string(process.log()).unwrap();
    assert!(log.contains("embedding model unavailable"), "{log}");
}
