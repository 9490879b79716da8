//! `examples/embed.rs` run as part of the test suite: the embedding facade works
//! in-process with the embedder's own store and model router (and no cluster here).

#[path = "../examples/embed.rs"]
mod example;

#[tokio::test]
async fn the_embedding_example_runs_a_request_in_process() {
    let dir = tempfile::tempdir().expect("dir");
    example::embed(dir.path(), deckhand::cli::session::Cluster::None)
        .await
        .expect("the example runs");
}
