//! Knowledge search latency (p50/p95) over growing numbers of stored threads on SQLite
//! and PostgreSQL, and insert throughput (one entry per transaction, and batches).
//!
//! ```sh
//! cargo bench -p deckhand-store --bench knowledge                    # 10 000 threads
//! DECKHAND_BENCH_SIZES=10000,100000,1000000 cargo bench -p deckhand-store --bench knowledge
//! ```
//!
//! `DECKHAND_BENCH_BACKENDS` (default `sqlite,postgres`) picks the backends,
//! `DECKHAND_BENCH_QUERIES` (default 200) the searches per size.
//! `DECKHAND_BENCH_HYBRID_MAX` (default 100 000; 0 turns it off): up to that size every
//! entry also gets an embedding of `DECKHAND_BENCH_DIMS` (default 384) components and
//! the hybrid search (full text fused with cosine similarity) is measured too. Vectors
//! are synthetic: each entry's lies near one of 64 topic directions, as is each query's,
//! so about one candidate in 64 passes the similarity threshold, as related entries
//! would; every candidate's vector is compared whatever the threshold. Hybrid search is
//! measured three ways: with the candidate vectors already in memory (the usual case),
//! right after this process wrote a vector (the copy is updated in place), and right
//! after another connection pool (another process) wrote one (the candidates are read
//! again from the database). The corpus is synthetic
//! and deterministic: DevOps requests over a vocabulary of common terms, service names
//! (skewed: a few are frequent) and rare words, ratings 0–100, ages up to two years.
//! PostgreSQL is the testkit's (fsync off), so its insert figures are an upper bound.
#![allow(clippy::unwrap_used)] // a benchmark panics on what it did not expect

use chrono::{Duration as Age, Utc};
use deckhand_runtime::knowledge::KnowledgeEntry;
use deckhand_runtime::ThreadId;
use deckhand_store::{Database, Embedding};
use deckhand_testkit::{Postgres, SqliteFile};
use std::time::{Duration, Instant};

/// Entries inserted one transaction each, per size step (the rest go in batches).
const SINGLE_INSERTS: usize = 2_000;
/// Entries per transaction in the bulk phase.
const BATCH: usize = 1_000;

const COMMON: &[&str] = &[
    "pod",
    "crashloop",
    "backoff",
    "deployment",
    "service",
    "ingress",
    "certificate",
    "tls",
    "oomkilled",
    "memory",
    "cpu",
    "limits",
    "requests",
    "hpa",
    "autoscaling",
    "configmap",
    "secret",
    "volume",
    "pvc",
    "storage",
    "node",
    "taint",
    "toleration",
    "affinity",
    "image",
    "pull",
    "registry",
    "timeout",
    "latency",
    "dns",
    "coredns",
    "network",
    "policy",
    "rbac",
    "role",
    "binding",
    "serviceaccount",
    "helm",
    "chart",
    "terraform",
    "module",
    "rollout",
    "rollback",
    "restart",
    "probe",
    "readiness",
    "liveness",
    "port",
    "502",
    "503",
    "error",
    "logs",
    "alert",
    "prometheus",
    "grafana",
    "cronjob",
    "job",
    "namespace",
    "quota",
    "eviction",
    "drain",
    "upgrade",
    "kubelet",
    "etcd",
    "apiserver",
    "webhook",
    "admission",
    "gatekeeper",
    "argocd",
    "flux",
    "gitops",
    "canary",
    "database",
    "postgres",
    "redis",
    "kafka",
    "queue",
];
const VERBS: &[&str] = &[
    "fix",
    "scale",
    "debug",
    "explain",
    "restart",
    "rotate",
    "increase",
    "reduce",
    "check",
    "investigate",
    "migrate",
    "deploy",
    "patch",
    "tune",
    "secure",
];

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[self.below(words.len())]
    }
    /// A service name, skewed so a few are frequent (like real clusters).
    fn service(&mut self) -> String {
        let x = self.below(1_000) as f64 / 1_000.0;
        format!("svc{}", (x * x * x * 20_000.0) as usize)
    }
    /// A rare word: one of 200 000.
    fn rare(&mut self) -> String {
        format!("zq{}", self.below(200_000))
    }
    fn words(&mut self, count: usize) -> String {
        (0..count)
            .map(|_| match self.below(10) {
                0 => self.service(),
                1 => self.rare(),
                _ => self.pick(COMMON).to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn entry(rng: &mut Rng) -> KnowledgeEntry {
    let service = rng.service();
    let request = format!(
        "{} {service} in ns{}: {} {}",
        rng.pick(VERBS),
        rng.below(50),
        rng.words(6),
        rng.rare()
    );
    let mut entry = KnowledgeEntry::new(
        ThreadId::new(),
        format!("cluster-{}", rng.below(8)),
        request,
        rng.words(30),
    );
    entry.resolution_summary = rng.words(12);
    entry.resolution_steps = (0..3).map(|_| rng.words(6)).collect();
    entry.tags = vec![rng.pick(COMMON).to_owned(), rng.pick(COMMON).to_owned()];
    entry.keywords = vec![service, rng.rare()];
    entry.rating = Some(rng.below(101) as u8);
    entry.created_at = Utc::now() - Age::minutes(rng.below(2 * 365 * 24 * 60) as i64);
    entry
}

fn query(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => format!(
            "why is {} {} in ns{}?",
            rng.service(),
            rng.pick(COMMON),
            rng.below(50)
        ),
        1 => format!(
            "{} {} {}",
            rng.pick(VERBS),
            rng.pick(COMMON),
            rng.pick(COMMON)
        ),
        _ => format!("{} {} {}", rng.pick(COMMON), rng.service(), rng.rare()),
    }
}

/// Topic directions the synthetic vectors lean towards.
const TOPICS: usize = 64;
/// The embedding model's name in the benchmark.
const MODEL: &str = "bench-embed";

/// Synthetic embeddings: a topic direction plus noise.
struct Vectors {
    rng: Rng,
    topics: Vec<Vec<f32>>,
}

impl Vectors {
    fn new(dims: usize) -> Self {
        let mut rng = Rng(0x94D0_49BB_1331_11EB);
        let topics = (0..TOPICS).map(|_| noise(&mut rng, dims, 1.0)).collect();
        Self { rng, topics }
    }
    fn next(&mut self) -> Embedding {
        let topic = self.rng.below(TOPICS);
        let dims = self.topics[topic].len();
        let noise = noise(&mut self.rng, dims, 0.5);
        let vector = self.topics[topic]
            .iter()
            .zip(noise)
            .map(|(direction, noise)| direction + noise)
            .collect();
        Embedding::new(MODEL, vector)
    }
}

fn noise(rng: &mut Rng, dims: usize, scale: f32) -> Vec<f32> {
    (0..dims)
        .map(|_| (rng.below(20_001) as f32 / 10_000.0 - 1.0) * scale)
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// What to measure besides full-text search.
struct Hybrid {
    /// Largest size whose entries get embeddings (0: none).
    max_size: usize,
    dims: usize,
}

async fn run(
    name: &str,
    db: &Database,
    other: &Database,
    sizes: &[usize],
    queries: usize,
    hybrid: &Hybrid,
) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut vectors = Vectors::new(hybrid.dims.max(1));
    let mut stored = 0;
    for &size in sizes {
        let embedding = size <= hybrid.max_size;
        // Ids of this step's entries, to embed them after the timed inserts.
        let mut ids = Vec::new();
        // Single-entry transactions: what deckhand does when a thread is resolved.
        let singles = SINGLE_INSERTS.min(size - stored);
        let started = Instant::now();
        for _ in 0..singles {
            let entry = entry(&mut rng);
            db.upsert_knowledge_entry(&entry).await.unwrap();
            if embedding {
                ids.push(entry.id);
            }
        }
        let single_rate = singles as f64 / started.elapsed().as_secs_f64();
        stored += singles;
        // Bulk: batches of BATCH per transaction (imports).
        let started = Instant::now();
        let bulk = size - stored;
        while stored < size {
            let batch: Vec<_> = (0..BATCH.min(size - stored))
                .map(|_| entry(&mut rng))
                .collect();
            db.upsert_knowledge_batch(&batch).await.unwrap();
            stored += batch.len();
            if embedding {
                ids.extend(batch.iter().map(|entry| entry.id));
            }
        }
        let bulk_rate = bulk as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let started = Instant::now();
        for chunk in ids.chunks(BATCH) {
            let batch: Vec<_> = chunk.iter().map(|id| (*id, vectors.next())).collect();
            db.upsert_knowledge_embeddings(&batch).await.unwrap();
        }
        let embed_rate = ids.len() as f64 / started.elapsed().as_secs_f64().max(1e-9);

        // Warm the caches the way a running deckhand would have them warm.
        let mut query_rng = Rng(0xD1B5_4A32_D192_ED03);
        for _ in 0..20 {
            db.search_knowledge(&query(&mut query_rng), 10)
                .await
                .unwrap();
        }
        let mut latencies = Vec::with_capacity(queries);
        let mut hits = 0;
        for _ in 0..queries {
            let text = query(&mut query_rng);
            let started = Instant::now();
            hits += db.search_knowledge(&text, 10).await.unwrap().len();
            latencies.push(started.elapsed());
        }
        latencies.sort();
        let size_query = match db.backend() {
            deckhand_store::Backend::Sqlite => {
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
            }
            deckhand_store::Backend::Postgres => "SELECT pg_database_size(current_database())",
        };
        let bytes: i64 = sqlx::Row::get(
            &sqlx::query(size_query).fetch_one(db.pool()).await.unwrap(),
            0,
        );
        println!(
            "{name:<8} {size:>9} threads  search p50 {:>8.2} ms  p95 {:>8.2} ms  max {:>8.2} ms  \
             ({:.1} hits/query)  insert {:>7.0}/s single, {}  database {:.0} MB",
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.95)),
            ms(*latencies.last().unwrap()),
            hits as f64 / queries as f64,
            single_rate,
            if bulk > 0 {
                format!("{bulk_rate:>7.0}/s in batches of {BATCH}")
            } else {
                "no batches".to_owned()
            },
            bytes as f64 / 1e6,
        );
        if embedding {
            hybrid_search(name, db, size, queries, &mut vectors, embed_rate).await;
            hybrid_after_writes(name, db, other, size, &ids, &mut vectors).await;
        }
    }
}

/// Hybrid search latency: each query's text with a vector of a random topic.
async fn hybrid_search(
    name: &str,
    db: &Database,
    size: usize,
    queries: usize,
    vectors: &mut Vectors,
    embed_rate: f64,
) {
    let mut query_rng = Rng(0xA076_1D64_78BD_642F);
    for _ in 0..20 {
        let vector = vectors.next();
        db.search_knowledge_hybrid(&query(&mut query_rng), Some(&vector), 10)
            .await
            .unwrap();
    }
    let mut latencies = Vec::with_capacity(queries);
    let (mut hits, mut similar) = (0, 0);
    for _ in 0..queries {
        let text = query(&mut query_rng);
        let vector = vectors.next();
        let started = Instant::now();
        let found = db
            .search_knowledge_hybrid(&text, Some(&vector), 10)
            .await
            .unwrap();
        latencies.push(started.elapsed());
        hits += found.len();
        similar += found.iter().filter(|hit| hit.similarity.is_some()).count();
    }
    latencies.sort();
    println!(
        "{name:<8} {size:>9} threads  hybrid p50 {:>8.2} ms  p95 {:>8.2} ms  max {:>8.2} ms  \
         ({:.1} hits/query, {:.1} by similarity)  embeddings stored {:>7.0}/s in batches of {BATCH}",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.95)),
        ms(*latencies.last().unwrap()),
        hits as f64 / queries as f64,
        similar as f64 / queries as f64,
        embed_rate,
    );
}

/// Searches made right after a vector was written: by this process (its copy of the
/// candidates is updated in place) and by another pool on the same database (standing
/// for another process: the candidates are read again).
async fn hybrid_after_writes(
    name: &str,
    db: &Database,
    other: &Database,
    size: usize,
    ids: &[uuid::Uuid],
    vectors: &mut Vectors,
) {
    const ROUNDS: usize = 30;
    let mut query_rng = Rng(0xE703_7ED1_A0B4_28DB);
    let mut figures = Vec::new();
    for writer in [db, other] {
        let mut latencies = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            let id = ids[(round * 7_919) % ids.len()];
            writer
                .upsert_knowledge_embedding(id, &vectors.next())
                .await
                .unwrap();
            let text = query(&mut query_rng);
            let vector = vectors.next();
            let started = Instant::now();
            db.search_knowledge_hybrid(&text, Some(&vector), 10)
                .await
                .unwrap();
            latencies.push(started.elapsed());
        }
        latencies.sort();
        figures.push(format!(
            "p50 {:>8.2} ms  p95 {:>8.2} ms",
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.95))
        ));
    }
    println!(
        "{name:<8} {size:>9} threads  hybrid after a write here {}  after another process's write {}  ({ROUNDS} each)",
        figures[0], figures[1],
    );
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

#[tokio::main]
async fn main() {
    let mut sizes: Vec<usize> = env_list("DECKHAND_BENCH_SIZES", "10000")
        .iter()
        .map(|size| size.replace('_', "").parse().unwrap())
        .collect();
    sizes.sort_unstable();
    let queries: usize = std::env::var("DECKHAND_BENCH_QUERIES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200);
    let hybrid = Hybrid {
        max_size: std::env::var("DECKHAND_BENCH_HYBRID_MAX")
            .ok()
            .map(|value| value.replace('_', "").parse().unwrap())
            .unwrap_or(100_000),
        dims: std::env::var("DECKHAND_BENCH_DIMS")
            .ok()
            .map(|value| value.parse().unwrap())
            .unwrap_or(384),
    };
    for backend in env_list("DECKHAND_BENCH_BACKENDS", "sqlite,postgres") {
        match backend.as_str() {
            "sqlite" => {
                let file = SqliteFile::new().unwrap();
                let db = Database::open_sqlite(file.path()).await.unwrap();
                let other = Database::open_sqlite(file.path()).await.unwrap();
                run("sqlite", &db, &other, &sizes, queries, &hybrid).await;
                other.close().await;
                db.close().await;
            }
            "postgres" => {
                let server = Postgres::start().await.unwrap();
                let url = server.create_database("bench").await.unwrap();
                let db = Database::connect(&url).await.unwrap();
                let other = Database::connect(&url).await.unwrap();
                run("postgres", &db, &other, &sizes, queries, &hybrid).await;
                other.close().await;
                db.close().await;
            }
            other => panic!("unknown backend {other:?} (sqlite, postgres)"),
        }
    }
}
