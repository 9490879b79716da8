//! Knowledge embeddings and the hybrid search, on a real SQLite file and a real
//! PostgreSQL server: vectors stored exactly, per model; a paraphrase sharing no word with
//! an entry found only by its vector; the rating threshold holding on the vector side
//! too; vectors of another model never compared; both rankings fused; the in-memory
//! copy of the candidate vectors following writes made here and by another process.
#![allow(clippy::unwrap_used)] // test helpers panic on what a test did not expect

mod common;

use common::TestStore;
use deckhand_runtime::knowledge::KnowledgeEntry;
use deckhand_runtime::ThreadId;
use deckhand_store::{Database, Embedding, Error, HybridOptions};

both_backends!(
    vectors_are_stored_exactly_with_their_model,
    a_paraphrase_is_found_only_with_embeddings,
    poorly_rated_entries_are_never_found_by_meaning,
    vectors_of_another_model_are_never_compared,
    entries_found_both_ways_rank_first,
    another_process_s_writes_are_seen,
    this_process_s_writes_keep_the_newest_candidates,
);

const MODEL: &str = "nomic-embed-text";

/// A unit-ish vector of 8 components leaning towards the given axes.
fn toward(axes: &[(usize, f32)]) -> Vec<f32> {
    let mut vector = vec![0.01; 8];
    for (axis, weight) in axes {
        vector[*axis] = *weight;
    }
    vector
}

async fn entry(store: &TestStore, request: &str, rating: Option<u8>) -> KnowledgeEntry {
    let mut entry = KnowledgeEntry::new(ThreadId::new(), "eks-prod", request, "resolved");
    entry.resolution_summary = "raised the limit".into();
    entry.rating = rating;
    store.database.upsert_knowledge_entry(&entry).await.unwrap();
    entry
}

async fn embed(store: &TestStore, entry: &KnowledgeEntry, vector: Vec<f32>) {
    store
        .database
        .upsert_knowledge_embedding(entry.id, &Embedding::new(MODEL, vector))
        .await
        .unwrap();
}

async fn vectors_are_stored_exactly_with_their_model(store: &TestStore) {
    let db = &store.database;
    let stored = entry(store, "checkout pods restart", Some(90)).await;
    // Values whose decimal text would not survive a trip through f64 and back.
    let vector = vec![0.1, -1.0e-38, 3.402_823_5e38, f32::MIN_POSITIVE, -0.0];
    let embedding = Embedding::new(MODEL, vector.clone());
    db.upsert_knowledge_embedding(stored.id, &embedding)
        .await
        .unwrap();
    assert_eq!(
        db.knowledge_embedding(stored.id).await.unwrap(),
        Some(embedding)
    );
    // A new model replaces the old vector: one vector per entry.
    let other = Embedding::new("bge-small-en-v1.5", vec![0.5; 3]);
    db.upsert_knowledge_embedding(stored.id, &other)
        .await
        .unwrap();
    assert_eq!(
        db.knowledge_embedding(stored.id).await.unwrap(),
        Some(other)
    );
    let rows: i64 = sqlx::Row::get(
        &sqlx::query("SELECT COUNT(*) FROM knowledge_embeddings")
            .fetch_one(db.pool())
            .await
            .unwrap(),
        0,
    );
    assert_eq!(rows, 1);

    let missing = uuid::Uuid::new_v4();
    assert!(matches!(
        db.upsert_knowledge_embedding(missing, &Embedding::new(MODEL, vec![1.0]))
            .await,
        Err(Error::KnowledgeNotFound { id }) if id == missing
    ));
    assert!(matches!(
        db.upsert_knowledge_embedding(stored.id, &Embedding::new(MODEL, vec![f32::NAN]))
            .await,
        Err(Error::InvalidEmbedding { .. })
    ));
    assert!(db.knowledge_embedding(missing).await.unwrap().is_none());
}

async fn a_paraphrase_is_found_only_with_embeddings(store: &TestStore) {
    let db = &store.database;
    let memory = entry(store, "checkout pods restarting: OOMKilled", Some(90)).await;
    embed(store, &memory, toward(&[(0, 1.0), (1, 0.3)])).await;
    let certificate = entry(store, "ingress certificate expired", Some(90)).await;
    embed(store, &certificate, toward(&[(5, 1.0)])).await;

    // Not one word in common with either entry.
    let question = "application terminated after exceeding its ram quota";
    assert!(db.search_knowledge(question, 5).await.unwrap().is_empty());
    assert!(db
        .search_knowledge_hybrid(question, None, 5)
        .await
        .unwrap()
        .is_empty());

    let asked = Embedding::new(MODEL, toward(&[(0, 0.9), (1, 0.4)]));
    let hits = db
        .search_knowledge_hybrid(question, Some(&asked), 5)
        .await
        .unwrap();
    assert_eq!(hits.len(), 1, "only the similar entry: {hits:#?}");
    let hit = &hits[0];
    assert_eq!(hit.entry.id, memory.id);
    assert_eq!(hit.entry.cluster_id, "eks-prod");
    assert_eq!(hit.entry.thread_id, memory.thread_id);
    assert_eq!(hit.text_score, None);
    assert!(hit.similarity.unwrap() > 0.9, "{hit:#?}");

    // An empty query text still searches by meaning.
    let hits = db
        .search_knowledge_hybrid("", Some(&asked), 5)
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].entry.id, memory.id);
}

async fn poorly_rated_entries_are_never_found_by_meaning(store: &TestStore) {
    let db = &store.database;
    let direction = toward(&[(2, 1.0)]);
    let unrated = entry(store, "first", None).await;
    let low = entry(store, "second", Some(59)).await;
    let enough = entry(store, "third", Some(60)).await;
    for stored in [&unrated, &low, &enough] {
        embed(store, stored, direction.clone()).await;
    }
    let asked = Embedding::new(MODEL, direction);
    let hits = db
        .search_knowledge_hybrid("quota", Some(&asked), 10)
        .await
        .unwrap();
    let found: Vec<_> = hits.iter().map(|hit| hit.entry.id).collect();
    assert_eq!(found, vec![enough.id]);

    // Rating the thread below the threshold takes it out as well.
    let thread = deckhand_runtime::Thread::new("eks-prod", "ana", "third");
    deckhand_runtime::ThreadStore::create_thread(db, &thread)
        .await
        .unwrap();
    let mut rated = enough.clone();
    rated.thread_id = thread.id;
    db.upsert_knowledge_entry(&rated).await.unwrap();
    assert_eq!(
        db.search_knowledge_hybrid("quota", Some(&asked), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    db.insert_rating(&deckhand_runtime::Rating::new(thread.id, 20, "", "ana").unwrap())
        .await
        .unwrap();
    assert!(db
        .search_knowledge_hybrid("quota", Some(&asked), 10)
        .await
        .unwrap()
        .is_empty());
}

async fn vectors_of_another_model_are_never_compared(store: &TestStore) {
    let db = &store.database;
    let stored = entry(store, "node disk pressure", Some(100)).await;
    let vector = toward(&[(3, 1.0)]);
    embed(store, &stored, vector.clone()).await;
    let other_model = Embedding::new("all-minilm", vector.clone());
    assert!(db
        .search_knowledge_hybrid("unrelated words", Some(&other_model), 5)
        .await
        .unwrap()
        .is_empty());
    // Same model, another length (a reconfigured dimension): not comparable either.
    let shorter = Embedding::new(MODEL, vector[..4].to_vec());
    assert!(db
        .search_knowledge_hybrid("unrelated words", Some(&shorter), 5)
        .await
        .unwrap()
        .is_empty());
    let same = Embedding::new(MODEL, vector);
    assert_eq!(
        db.search_knowledge_hybrid("unrelated words", Some(&same), 5)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn entries_found_both_ways_rank_first(store: &TestStore) {
    let db = &store.database;
    let query_vector = toward(&[(4, 1.0)]);
    // The best text match, but about something else.
    let words = entry(store, "disk full on node worker-3 disk full", Some(100)).await;
    embed(store, &words, toward(&[(6, 1.0)])).await;
    // Some of the words, and the same meaning.
    let both = entry(store, "disk full", Some(90)).await;
    embed(store, &both, toward(&[(4, 1.0), (7, 0.3)])).await;
    // The closest meaning, none of the words.
    let meaning = entry(store, "volume ran out of space", Some(90)).await;
    embed(store, &meaning, query_vector.clone()).await;

    let asked = Embedding::new(MODEL, query_vector);
    let hits = db
        .search_knowledge_hybrid("disk full on node worker-3", Some(&asked), 10)
        .await
        .unwrap();
    let found: Vec<_> = hits.iter().map(|hit| hit.entry.id).collect();
    assert_eq!(found.len(), 3, "{hits:#?}");
    assert_eq!(
        found[0], both.id,
        "agreement of both rankings wins: {hits:#?}"
    );
    assert!(hits[0].text_score.is_some() && hits[0].similarity.is_some());
    assert!(found.contains(&words.id) && found.contains(&meaning.id));
    assert!(hits.windows(2).all(|pair| pair[0].score >= pair[1].score));
    // The limit holds, keeping the best.
    let top = db
        .search_knowledge_hybrid("disk full on node worker-3", Some(&asked), 1)
        .await
        .unwrap();
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].entry.id, both.id);
}

/// The ids a hybrid search for `vector` finds, in order.
async fn found(db: &Database, vector: &[f32]) -> Vec<uuid::Uuid> {
    db.search_knowledge_hybrid("", Some(&Embedding::new(MODEL, vector.to_vec())), 10)
        .await
        .unwrap()
        .iter()
        .map(|hit| hit.entry.id)
        .collect()
}

async fn generation(db: &Database) -> i64 {
    sqlx::Row::get(
        &sqlx::query("SELECT generation FROM knowledge_vectors_generation")
            .fetch_one(db.pool())
            .await
            .unwrap(),
        0,
    )
}

async fn another_process_s_writes_are_seen(store: &TestStore) {
    let db = &store.database;
    // A second pool on the same database stands for another deckhand process.
    let other = Database::connect(&store.url).await.unwrap();
    let direction = toward(&[(1, 1.0)]);
    let first = entry(store, "first", Some(90)).await;
    embed(store, &first, direction.clone()).await;
    assert_eq!(found(db, &direction).await, vec![first.id]);

    // A new vector written elsewhere.
    let mut second = KnowledgeEntry::new(ThreadId::new(), "eks-prod", "second", "done");
    second.rating = Some(80);
    other.upsert_knowledge_entry(&second).await.unwrap();
    other
        .upsert_knowledge_embedding(second.id, &Embedding::new(MODEL, direction.clone()))
        .await
        .unwrap();
    let mut both = found(db, &direction).await;
    both.sort();
    let mut expected = vec![first.id, second.id];
    expected.sort();
    assert_eq!(both, expected);

    // A vector replaced elsewhere: the old direction no longer finds it.
    other
        .upsert_knowledge_embedding(first.id, &Embedding::new(MODEL, toward(&[(6, 1.0)])))
        .await
        .unwrap();
    assert_eq!(found(db, &direction).await, vec![second.id]);
    assert_eq!(found(db, &toward(&[(6, 1.0)])).await, vec![first.id]);

    // Re-rated below the threshold, or its vector deleted, by hand: gone.
    sqlx::query("UPDATE knowledge SET rating = 10 WHERE id = $1")
        .bind(second.id.to_string())
        .execute(other.pool())
        .await
        .unwrap();
    assert!(found(db, &direction).await.is_empty());
    sqlx::query("DELETE FROM knowledge_embeddings WHERE knowledge_id = $1")
        .bind(first.id.to_string())
        .execute(other.pool())
        .await
        .unwrap();
    assert!(found(db, &toward(&[(6, 1.0)])).await.is_empty());

    // A vector that arrived before its entry (replication replays it so) counts once
    // the entry arrives.
    let mut late = KnowledgeEntry::new(ThreadId::new(), "eks-prod", "late", "done");
    late.rating = Some(70);
    sqlx::query(
        "INSERT INTO knowledge_embeddings (knowledge_id, model, dimensions, vector, updated_at) \
         VALUES ($1, $2, 8, $3, 0)",
    )
    .bind(late.id.to_string())
    .bind(MODEL)
    .bind(Embedding::new(MODEL, direction.clone()).to_bytes())
    .execute(other.pool())
    .await
    .unwrap();
    assert!(found(db, &direction).await.is_empty());
    other.upsert_knowledge_entry(&late).await.unwrap();
    assert_eq!(found(db, &direction).await, vec![late.id]);

    // An entry with no vector, the usual first write of a resolved thread, does not make
    // every process read the vectors again.
    let before = generation(db).await;
    entry(store, "no vector yet", Some(90)).await;
    assert_eq!(generation(db).await, before);
    other.close().await;
}

async fn this_process_s_writes_keep_the_newest_candidates(store: &TestStore) {
    // Two candidates: the third-newest vector is never compared.
    let options = HybridOptions {
        vector_candidates: 2,
        ..HybridOptions::default()
    };
    let db = store.database.clone().with_hybrid_options(options);
    let direction = toward(&[(2, 1.0)]);
    let mut entries = Vec::new();
    for request in ["oldest", "older", "newer"] {
        let stored = entry(store, request, Some(90)).await;
        embed(store, &stored, direction.clone()).await;
        entries.push(stored);
    }
    // What a process that kept nothing in memory finds, to compare with.
    let fresh = || async {
        let fresh = Database::connect(&store.url)
            .await
            .unwrap()
            .with_hybrid_options(options);
        let mut ids = found(&fresh, &direction).await;
        fresh.close().await;
        ids.sort();
        ids
    };
    let sorted = |mut ids: Vec<uuid::Uuid>| {
        ids.sort();
        ids
    };
    let mut expected = vec![entries[1].id, entries[2].id];
    expected.sort();
    assert_eq!(sorted(found(&db, &direction).await), expected);

    // A newer vector takes the oldest candidate's place.
    let newest = entry(store, "newest", Some(90)).await;
    db.upsert_knowledge_embedding(newest.id, &Embedding::new(MODEL, direction.clone()))
        .await
        .unwrap();
    let mut expected = vec![entries[2].id, newest.id];
    expected.sort();
    assert_eq!(sorted(found(&db, &direction).await), expected);
    assert_eq!(fresh().await, expected);

    // An older entry's new vector stays out; a candidate's new vector is compared.
    db.upsert_knowledge_embedding(entries[0].id, &Embedding::new(MODEL, direction.clone()))
        .await
        .unwrap();
    let away = toward(&[(7, 1.0)]);
    db.upsert_knowledge_embedding(entries[2].id, &Embedding::new(MODEL, away.clone()))
        .await
        .unwrap();
    assert_eq!(found(&db, &direction).await, vec![newest.id]);
    assert_eq!(found(&db, &away).await, vec![entries[2].id]);
    assert_eq!(fresh().await, vec![newest.id]);

    // A candidate moving to another model leaves a place the next older one takes.
    db.upsert_knowledge_embedding(newest.id, &Embedding::new("all-minilm", direction.clone()))
        .await
        .unwrap();
    let expected = vec![entries[1].id];
    assert_eq!(found(&db, &direction).await, expected);
    assert_eq!(fresh().await, expected);

    // A batch written here, two of three newer than every candidate.
    let mut batch = Vec::new();
    for request in ["batch one", "batch two"] {
        batch.push(entry(store, request, Some(90)).await);
    }
    let pairs: Vec<_> = batch
        .iter()
        .map(|stored| (stored.id, Embedding::new(MODEL, direction.clone())))
        .chain([(entries[0].id, Embedding::new(MODEL, direction.clone()))])
        .collect();
    assert_eq!(db.upsert_knowledge_embeddings(&pairs).await.unwrap(), 3);
    let expected = sorted(batch.iter().map(|stored| stored.id).collect());
    assert_eq!(sorted(found(&db, &direction).await), expected);
    assert_eq!(fresh().await, expected);
}
