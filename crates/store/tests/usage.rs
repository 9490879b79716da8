//! LLM usage per thread on real SQLite and PostgreSQL: every call stored as the router's
//! sink hands it over, read back per thread with totals per model and overall.

// Test helpers outside #[test] functions: a panic is the failure report here too.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, Duration, Utc};
use common::TestStore;
use deckhand_store::{LlmUsage, LlmUsageTotals};

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_000_000 + seconds, 0).unwrap()
}

fn call(thread: Option<&str>, seconds: i64, backend: &str, model: &str) -> LlmUsage {
    LlmUsage {
        thread_id: thread.map(str::to_owned),
        at: at(seconds),
        agent: "planner".into(),
        backend: backend.into(),
        model: model.into(),
        purpose: "chat".into(),
        tokens_in: 0,
        tokens_out: 0,
        latency_ms: 0,
        answered: true,
        error_kind: None,
        error_message: None,
        cost_usd: None,
        redactions: 0,
    }
}

async fn usage_of_a_thread_with_totals(store: &TestStore) {
    let db = &store.database;
    let thread = "0b5f7d1e-4c1a-4b7e-9a51-6f0d2f7c9e11";
    let gpt = LlmUsage {
        tokens_in: 1200,
        tokens_out: 300,
        latency_ms: 850,
        cost_usd: Some(0.006),
        redactions: 2,
        ..call(Some(thread), 1, "gpt", "gpt-4o")
    };
    let repair = LlmUsage {
        purpose: "repair".into(),
        tokens_in: 1500,
        tokens_out: 250,
        latency_ms: 700,
        cost_usd: Some(0.00625),
        ..call(Some(thread), 2, "gpt", "gpt-4o")
    };
    let failed = LlmUsage {
        answered: false,
        latency_ms: 10_000,
        error_kind: Some("timeout".into()),
        error_message: Some("backend local: total timeout after 10s".into()),
        ..call(Some(thread), 3, "local", "qwen2.5-coder:1.5b")
    };
    let summary = LlmUsage {
        agent: "copilot".into(),
        purpose: "summary".into(),
        tokens_in: 4000,
        tokens_out: 400,
        latency_ms: 9_000,
        ..call(Some(thread), 4, "local", "qwen2.5-coder:1.5b")
    };
    // Another thread's call and a call outside any thread are not counted.
    let other = LlmUsage {
        tokens_in: 99,
        ..call(Some("another-thread"), 5, "gpt", "gpt-4o")
    };
    let threadless = LlmUsage {
        tokens_in: 77,
        ..call(None, 6, "gpt", "gpt-4o")
    };
    for usage in [&gpt, &repair, &failed, &summary, &other, &threadless] {
        db.record_llm_usage(usage).await.unwrap();
    }

    let usage = db.thread_llm_usage(thread).await.unwrap();
    assert_eq!(usage.thread_id, thread);
    assert_eq!(usage.calls, vec![gpt, repair, failed.clone(), summary]);
    let LlmUsageTotals {
        calls,
        answered,
        errors,
        tokens_in,
        tokens_out,
        latency_ms,
        cost_usd,
        redactions,
    } = usage.total.clone();
    assert_eq!(
        (calls, answered, errors, tokens_in, tokens_out, latency_ms, redactions),
        (4, 3, 1, 6700, 950, 20_550, 2)
    );
    assert!((cost_usd - 0.01225).abs() < 1e-9, "{cost_usd}");

    let groups: Vec<(&str, &str, &str, u64, u64)> = usage
        .by_model
        .iter()
        .map(|g| {
            (
                g.agent.as_str(),
                g.backend.as_str(),
                g.model.as_str(),
                g.totals.calls,
                g.totals.tokens_in,
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("copilot", "local", "qwen2.5-coder:1.5b", 1, 4000),
            ("planner", "gpt", "gpt-4o", 2, 2700),
            ("planner", "local", "qwen2.5-coder:1.5b", 1, 0),
        ]
    );
    let local_planner = &usage.by_model[2].totals;
    assert_eq!((local_planner.errors, local_planner.answered), (1, 0));
    assert_eq!(local_planner.cost_usd, 0.0, "no prices: no cost");
    assert_eq!(
        usage.calls[2].error_message.as_deref(),
        failed.error_message.as_deref()
    );

    let none = db.thread_llm_usage("a-thread-with-no-calls").await.unwrap();
    assert!(none.calls.is_empty() && none.by_model.is_empty());
    assert_eq!(none.total, LlmUsageTotals::default());
}

async fn calls_keep_their_order_and_large_counts(store: &TestStore) {
    let db = &store.database;
    let thread = "ordering";
    // Stored out of order; two at the same instant keep the order they were stored in.
    let late = LlmUsage {
        tokens_in: u64::from(u32::MAX) * 4,
        ..call(Some(thread), 10, "b", "m")
    };
    let early = call(Some(thread), -10, "b", "m");
    let same_a = LlmUsage {
        purpose: "chat".into(),
        ..call(Some(thread), 0, "b", "m")
    };
    let same_b = LlmUsage {
        purpose: "repair".into(),
        ..call(Some(thread), 0, "b", "m")
    };
    for usage in [&late, &early, &same_a, &same_b] {
        db.record_llm_usage(usage).await.unwrap();
    }
    let usage = db.thread_llm_usage(thread).await.unwrap();
    assert_eq!(usage.calls, vec![early, same_a, same_b, late.clone()]);
    assert_eq!(usage.total.tokens_in, late.tokens_in);
    // Microsecond timestamps round-trip.
    let precise = LlmUsage {
        at: at(20) + Duration::microseconds(123_456),
        ..call(Some("precise"), 0, "b", "m")
    };
    db.record_llm_usage(&precise).await.unwrap();
    assert_eq!(
        db.thread_llm_usage("precise").await.unwrap().calls,
        vec![precise]
    );
}

both_backends!(
    usage_of_a_thread_with_totals,
    calls_keep_their_order_and_large_counts
);
