//! The test servers are real: a Kubernetes control plane that stores and reconciles
//! objects, and a PostgreSQL that runs SQL.

use deckhand_testkit::{KubeApiServer, Postgres};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ListParams, PostParams};
use kube::Api;
use std::time::{Duration, Instant};

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "web", "image": "nginx:1.25" }] }
            }
        }
    }))
    .expect("valid Deployment")
}

#[tokio::test]
async fn kube_apiserver_stores_and_reconciles_objects() {
    let cluster = KubeApiServer::start().await.expect("control plane starts");
    let client = cluster.client().await.expect("client");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "payments" }
    }))
    .expect("valid Namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create namespace");
    let read = namespaces.get("payments").await.expect("read namespace");
    assert_eq!(read.metadata.name.as_deref(), Some("payments"));
    assert!(read.metadata.uid.is_some(), "the server assigns a uid");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "payments");
    deployments
        .create(&PostParams::default(), &deployment("checkout"))
        .await
        .expect("create deployment");
    let read = deployments.get("checkout").await.expect("read deployment");
    assert_eq!(read.spec.as_ref().and_then(|spec| spec.replicas), Some(2));
    let containers = &read
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec")
        .containers;
    assert_eq!(containers[0].image.as_deref(), Some("nginx:1.25"));

    // The controller manager runs: the Deployment gets its ReplicaSet.
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client, "payments");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = replica_sets
            .list(&ListParams::default().labels("app=checkout"))
            .await
            .expect("list");
        if let Some(replica_set) = list.items.first() {
            let owner = &replica_set
                .metadata
                .owner_references
                .as_ref()
                .expect("owner")[0];
            assert_eq!(
                (owner.kind.as_str(), owner.name.as_str()),
                ("Deployment", "checkout")
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no ReplicaSet for the Deployment within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn postgres_runs_sql_survives_a_restart_and_isolates_databases() {
    use sqlx::{Connection, Row};
    let mut postgres = Postgres::start().await.expect("postgres starts");
    let url = postgres
        .create_database("deckhand_test")
        .await
        .expect("create database");

    let mut connection = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::query("CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&mut connection)
        .await
        .expect("create table");
    sqlx::query("INSERT INTO notes VALUES ($1, $2)")
        .bind(1_i64)
        .bind("kept")
        .execute(&mut connection)
        .await
        .expect("insert");
    connection.close().await.expect("close");

    postgres.restart().await.expect("restart");
    let mut connection = sqlx::PgConnection::connect(&url).await.expect("reconnect");
    let row = sqlx::query("SELECT body FROM notes WHERE id = $1")
        .bind(1_i64)
        .fetch_one(&mut connection)
        .await
        .expect("select");
    assert_eq!(row.get::<String, _>(0), "kept");

    // Another database on the same server does not see the table.
    let other = postgres
        .create_database("other")
        .await
        .expect("create second database");
    let mut other = sqlx::PgConnection::connect(&other)
        .await
        .expect("connect second");
    let missing = sqlx::query("SELECT body FROM notes")
        .fetch_all(&mut other)
        .await;
    assert!(missing.is_err(), "databases are isolated");
}
