//! Decisions per second and p50/p99 latency of `Engine::evaluate`, one line per case:
//! the built-in guards alone, then with the 21 Gatekeeper-library-style templates in
//! `benches/library/` loaded. Each case runs on the three evaluation paths in the same
//! process: the reference path (as first written), the projected one without its
//! pre-filter (the Rego guards always run) and the default, with the ratios of their
//! medians. No path caches anything between decisions, so repeating one request
//! measures the real path. Run with
//! `cargo bench -p deckhand-policy --bench evaluate`; `-- --quick` measures each case
//! for a tenth of the time; `-- --profile` (or `-- --profile-reference`,
//! `-- --profile-unfiltered`) only evaluates
//! each built-ins case (or those whose name contains the next argument)
//! [`PROFILE_RUNS`] times on the default (or reference, or unfiltered) path,
//! untimed, for `valgrind --tool=callgrind`, whose instruction counts do not depend on
//! how busy the machine is.

use deckhand_policy::{
    guards, review, AdmissionRequest, Decision, Engine, EngineBuilder, EvaluationPath, GuardConfig,
    Inventory,
};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long each case is measured for, after its warm-up.
const MEASURE_FOR: Duration = Duration::from_secs(2);
/// Evaluations of each case under `--profile`.
const PROFILE_RUNS: usize = 500;
/// Evaluations before measuring, so caches and allocators settle.
const WARM_UP: usize = 200;

fn request(text: &str) -> AdmissionRequest {
    match AdmissionRequest::from_text(text) {
        Ok(request) => request,
        Err(error) => panic!("benchmark request does not parse: {error}"),
    }
}

/// One line's figures.
struct Figures {
    p50: Duration,
}

/// Runs `run` for `measure_for` after a warm-up and prints one line of figures.
fn time<T>(name: &str, measure_for: Duration, mut run: impl FnMut() -> T) -> Figures {
    for _ in 0..WARM_UP {
        std::hint::black_box(run());
    }
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < measure_for {
        let before = Instant::now();
        let outcome = run();
        latencies.push(before.elapsed());
        std::hint::black_box(outcome);
    }
    let total = started.elapsed();
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    println!(
        "{name:<56} {:>9.0} decisions/s  p50 {:>8.1} µs  p99 {:>8.1} µs  ({} runs)",
        latencies.len() as f64 / total.as_secs_f64(),
        percentile(0.50).as_secs_f64() * 1e6,
        percentile(0.99).as_secs_f64() * 1e6,
        latencies.len()
    );
    Figures {
        p50: percentile(0.50),
    }
}

/// The paths of one engine configuration.
struct Engines {
    reference: Engine,
    unfiltered: Engine,
    projected: Engine,
}

impl Engines {
    fn build(builder: impl Fn() -> EngineBuilder) -> Self {
        let build = |path| match builder().evaluation_path(path).build() {
            Ok(engine) => engine,
            Err(error) => panic!("the benchmark policies do not compile: {error}"),
        };
        Self {
            reference: build(EvaluationPath::Reference),
            unfiltered: build(EvaluationPath::Unfiltered),
            projected: build(EvaluationPath::Projected),
        }
    }
}

/// Measures one request on every path, after checking they decide alike and as expected.
fn measure(
    name: &str,
    engines: &Engines,
    request: &AdmissionRequest,
    expect_allowed: bool,
    measure_for: Duration,
) {
    let sorted = |mut decision: Decision| {
        decision
            .violations
            .sort_by(|a, b| (&a.policy, &a.message).cmp(&(&b.policy, &b.message)));
        decision
            .warnings
            .sort_by(|a, b| (&a.policy, &a.message).cmp(&(&b.policy, &b.message)));
        decision
    };
    let reference = sorted(engines.reference.evaluate(request));
    let unfiltered = sorted(engines.unfiltered.evaluate(request));
    let projected = sorted(engines.projected.evaluate(request));
    assert_eq!(reference, projected, "{name}: the paths disagree");
    assert_eq!(unfiltered, projected, "{name}: the paths disagree");
    assert_eq!(
        projected.allowed, expect_allowed,
        "{name}: {:?}",
        projected.violations
    );
    let before = time(&format!("{name} [reference]"), measure_for, || {
        engines.reference.evaluate(request)
    });
    let middle = time(&format!("{name} [unfiltered]"), measure_for, || {
        engines.unfiltered.evaluate(request)
    });
    let after = time(&format!("{name} [projected]"), measure_for, || {
        engines.projected.evaluate(request)
    });
    let ratio = |from: &Figures| from.p50.as_secs_f64() / after.p50.as_secs_f64().max(1e-9);
    println!(
        "{:<56} p50 {:.1}× faster than reference, {:.1}× than unfiltered",
        "",
        ratio(&before),
        ratio(&middle)
    );
}

fn main() {
    let quick = std::env::args().any(|argument| argument == "--quick");
    let measure_for = if quick { MEASURE_FOR / 10 } else { MEASURE_FOR };
    let deployment = request(include_str!("requests/deployment.yaml"));
    let mut apply = deployment.clone();
    apply.verb = Some("patch".into());
    apply.operation = Some("UPDATE".into());
    apply.options = Some(serde_json::json!({"kind": "PatchOptions", "fieldManager": "deckhand"}));
    apply.old_object = deployment.object.clone();
    let scale = request(include_str!("requests/scale.yaml"));
    let role_binding = request(include_str!("requests/rolebinding.yaml"));
    let binding = request(include_str!("requests/cluster_admin_binding.yaml"));
    let read = request(
        "{\"verb\":\"get\",\"kind\":{\"kind\":\"Pod\"},\"namespace\":\"team-a\",\"name\":\"web\"}",
    );
    let cases = [
        ("get Pod (allowed)", &read, true),
        ("create Deployment (allowed)", &deployment, true),
        ("apply Deployment (allowed)", &apply, true),
        ("scale Deployment (allowed)", &scale, true),
        ("create RoleBinding (allowed)", &role_binding, true),
        ("cluster-admin binding (denied)", &binding, false),
    ];

    let builtins = Engines::build(Engine::builder);
    let profile = std::env::args().find(|argument| argument.starts_with("--profile"));
    if let Some(profile) = profile {
        let engine = match profile.as_str() {
            "--profile-reference" => &builtins.reference,
            "--profile-unfiltered" => &builtins.unfiltered,
            _ => &builtins.projected,
        };
        // An argument after the flag keeps only the cases whose name contains it.
        let only: Option<String> = std::env::args()
            .skip_while(|argument| !argument.starts_with("--profile"))
            .nth(1);
        for (name, request, _) in &cases {
            if only
                .as_ref()
                .is_some_and(|only| !name.contains(only.as_str()))
            {
                continue;
            }
            for _ in 0..PROFILE_RUNS {
                std::hint::black_box(engine.evaluate(request));
            }
        }
        return;
    }
    // The Rust layer alone, to show where the time of a decision goes.
    let config = GuardConfig::default();
    let inventory = Inventory::default();
    for (name, request, _) in &cases[1..] {
        time(&format!("rust guards only: {name}"), measure_for, || {
            let reviews = review::expand(request).expect("expands");
            reviews
                .iter()
                .map(|review| guards::check(review, &config, &inventory).len())
                .sum::<usize>()
        });
    }

    for (name, request, allowed) in &cases {
        measure(
            &format!("built-ins: {name}"),
            &builtins,
            request,
            *allowed,
            measure_for,
        );
    }

    let library = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/library");
    let with_library = Engines::build(|| Engine::builder().policy_directory(&library));
    let (_, templates, constraints) = with_library.projected.user_policy_counts();
    let interpreted = with_library.projected.interpreted_rule_count();
    println!("# {templates} templates, {constraints} constraints, {interpreted} rules on the interpreter");
    for (name, request, allowed) in &cases {
        measure(
            &format!("+library: {name}"),
            &with_library,
            request,
            *allowed,
            measure_for,
        );
    }
}
