//! How long redaction takes on what agents send: a pod log with credentials sprinkled in,
//! a multi-document manifest with a Secret, and a JSON tool output. Redaction runs on every
//! message of every request, so its cost per megabyte matters for long logs.
//!
//! `cargo bench -p deckhand-llm --bench redact`

#![allow(clippy::unwrap_used, missing_docs)]

use deckhand_llm::Redactor;
use std::time::{Duration, Instant};

fn log(lines: usize) -> String {
    (0..lines)
        .map(|i| match i % 50 {
            0 => format!("2026-11-22T10:{:02}:{:02}Z ERROR auth failed: Authorization: Bearer abcdefgh{i}.ijklmnop\n", i % 60, i % 60),
            25 => format!("2026-11-22T10:{:02}:{:02}Z INFO connecting to postgres://app:pw{i}@db:5432/orders\n", i % 60, i % 60),
            _ => format!("2026-11-22T10:{:02}:{:02}Z INFO GET /api/orders/{i} 200 12ms user=u{i} trace=9f8e7d6c5b4a\n", i % 60, i % 60),
        })
        .collect()
}

fn manifests(copies: usize) -> String {
    let one = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n        env:\n        - name: DB_PASSWORD\n          value: hunter2\n        - name: LOG_LEVEL\n          value: info\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: aHVudGVyMg==\n  user: YWRtaW4=\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  mode: fast\n---\n";
    one.repeat(copies)
}

fn json_output(items: usize) -> String {
    let items: Vec<serde_json::Value> = (0..items)
        .map(|i| serde_json::json!({"kind": "Pod", "metadata": {"name": format!("web-{i}"), "namespace": "shop"},
            "status": {"phase": "Running", "restartCount": i % 7}, "token": format!("t{i}")}))
        .collect();
    serde_json::json!({"items": items}).to_string()
}

fn measure(name: &str, redactor: &Redactor, text: &str) {
    let (_, count) = redactor.redact(text);
    let mut runs = 0u32;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) || runs < 3 {
        std::hint::black_box(redactor.redact(std::hint::black_box(text)));
        runs += 1;
    }
    let each = started.elapsed() / runs;
    let mib = text.len() as f64 / (1024.0 * 1024.0);
    println!(
        "{name:<28} {:>8.1} KiB  {:>9.2?} per call  {:>7.1} MiB/s  {count} redactions",
        text.len() as f64 / 1024.0,
        each,
        mib / each.as_secs_f64(),
    );
}

fn main() {
    let redactor = Redactor::new(&["ACME-[0-9]{6}".to_owned()]).unwrap();
    measure(
        "chat message (200 B)",
        &redactor,
        "Why is web in CrashLoopBackOff in namespace shop? It started after the deploy.",
    );
    measure("pod log (1 MiB)", &redactor, &log(12_000));
    measure("manifests (256 KiB)", &redactor, &manifests(500));
    measure("JSON tool output (256 KiB)", &redactor, &json_output(1800));
}
