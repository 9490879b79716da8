//! Decisions per second and p50/p99 latency of `Engine::evaluate`, one line per case:
//! the built-in guards alone, then with the 21 Gatekeeper-library-style templates in
//! `benches/library/` loaded. Run with `cargo bench -p deckhand-policy --bench evaluate`.

use deckhand_policy::{guards, review, AdmissionRequest, Engine, GuardConfig, Inventory};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long each case is measured for, after its warm-up.
const MEASURE_FOR: Duration = Duration::from_secs(2);
/// Evaluations before measuring, so caches and allocators settle.
const WARM_UP: usize = 200;

fn request(text: &str) -> AdmissionRequest {
    match AdmissionRequest::from_text(text) {
        Ok(request) => request,
        Err(error) => panic!("benchmark request does not parse: {error}"),
    }
}

fn measure(name: &str, engine: &Engine, request: &AdmissionRequest, expect_allowed: bool) {
    let decision = engine.evaluate(request);
    assert_eq!(
        decision.allowed, expect_allowed,
        "{name}: {:?}",
        decision.violations
    );
    time(name, || engine.evaluate(request));
}

/// Runs `run` for [`MEASURE_FOR`] after a warm-up and prints one line of figures.
fn time<T>(name: &str, mut run: impl FnMut() -> T) {
    for _ in 0..WARM_UP {
        std::hint::black_box(run());
    }
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < MEASURE_FOR {
        let before = Instant::now();
        let outcome = run();
        latencies.push(before.elapsed());
        std::hint::black_box(outcome);
    }
    let total = started.elapsed();
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    println!(
        "{name:<48} {:>9.0} decisions/s  p50 {:>8.1} µs  p99 {:>8.1} µs  ({} runs)",
        latencies.len() as f64 / total.as_secs_f64(),
        percentile(0.50).as_secs_f64() * 1e6,
        percentile(0.99).as_secs_f64() * 1e6,
        latencies.len()
    );
}

fn main() {
    let deployment = request(include_str!("requests/deployment.yaml"));
    let binding = request(include_str!("requests/cluster_admin_binding.yaml"));
    let read = request(
        "{\"verb\":\"get\",\"kind\":{\"kind\":\"Pod\"},\"namespace\":\"team-a\",\"name\":\"web\"}",
    );

    // The Rust layer alone, to show where the time of a decision goes.
    let config = GuardConfig::default();
    let inventory = Inventory::default();
    for (name, request) in [
        ("rust guards only: create Deployment", &deployment),
        ("rust guards only: cluster-admin binding", &binding),
    ] {
        time(name, || {
            let reviews = review::expand(request).expect("expands");
            reviews
                .iter()
                .map(|review| guards::check(review, &config, &inventory).len())
                .sum::<usize>()
        });
    }

    let builtins = Engine::with_builtins().expect("built-ins compile");
    measure("built-ins: get Pod (allowed)", &builtins, &read, true);
    measure(
        "built-ins: create Deployment (allowed)",
        &builtins,
        &deployment,
        true,
    );
    measure(
        "built-ins: cluster-admin binding (denied)",
        &builtins,
        &binding,
        false,
    );

    let library = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/library");
    let with_library = Engine::builder()
        .policy_directory(&library)
        .build()
        .expect("the benchmark library compiles");
    let (_, templates, constraints) = with_library.user_policy_counts();
    let interpreted = with_library.interpreted_rule_count();
    println!("# {templates} templates, {constraints} constraints, {interpreted} rules on the interpreter");
    measure("+library: get Pod (allowed)", &with_library, &read, true);
    measure(
        "+library: create Deployment (allowed)",
        &with_library,
        &deployment,
        true,
    );
    measure(
        "+library: cluster-admin binding (denied)",
        &with_library,
        &binding,
        false,
    );
}
