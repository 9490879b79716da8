//! `deckhand operator` against a real kube-apiserver, with the real binary, the real
//! SQLite store and the offline planner: an AIRequest's whole life (planned, a stale hash
//! refused, approved and run, restored), and leader election between two replicas (only
//! the Lease holder acts; when it dies the other takes over; on SIGTERM it hands over),
//! and the identity webhook (the API server sends AIRequests through the operator's
//! admission webhook; the operator runs as whoever the API server says approved).

#![allow(clippy::unwrap_used)]

mod common;

use common::{tools_dir, WAIT};
use deckhand_crds::{AIConversation, AIRequest, AIRequestSpec, Phase};
use deckhand_testkit::KubeApiServer;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `deckhand operator`; killed when dropped.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn start(dir: &Path, kubeconfig: &Path, identity: &str) -> Self {
        Self::start_with(dir, kubeconfig, identity, &[])
    }

    fn start_with(dir: &Path, kubeconfig: &Path, identity: &str, extra: &[String]) -> Self {
        let log = dir.join(format!("operator-{identity}.log"));
        let child = common::deckhand(dir)
            .args(["operator", "--identity", identity, "--lease-seconds", "4"])
            .args(extra)
            .arg("--builtin-tools-dir")
            .arg(tools_dir())
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--workspace")
            .arg(dir.join("workspace"))
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start deckhand operator");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "no exit on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn cluster() -> (KubeApiServer, Client) {
    let cluster = KubeApiServer::start().await.expect("control plane");
    let client = cluster.client().await.expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in deckhand_crds::crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    for crd in deckhand_crds::crds() {
        let name = crd.metadata.name.unwrap();
        wait_for(&format!("{name} Established"), || {
            let crds = crds.clone();
            let name = name.clone();
            async move {
                crds.get(&name)
                    .await
                    .unwrap()
                    .status
                    .and_then(|s| s.conditions)
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            }
        })
        .await;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["deckhand", "shop"] {
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
    }
    let web: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "registry.local/web:1.0"}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), "shop")
        .create(&PostParams::default(), &web)
        .await
        .unwrap();
    (cluster, client)
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn request_in(
    requests: &Api<AIRequest>,
    name: &str,
    phase: Phase,
    operators: &[&Operator],
) -> AIRequest {
    let deadline = Instant::now() + WAIT;
    loop {
        let request = requests.get(name).await.unwrap();
        if request.phase() == phase {
            return request;
        }
        assert!(
            request.phase() != Phase::Failed || phase == Phase::Failed,
            "{name} failed: {:#?}\n{}",
            request.status,
            operators
                .iter()
                .map(|o| o.log())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        assert!(
            Instant::now() < deadline,
            "{name} never reached {phase:?}: {:#?}\n{}",
            request.status,
            operators
                .iter()
                .map(|o| o.log())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn replicas(client: &Client) -> Option<i32> {
    Api::<Deployment>::namespaced(client.clone(), "shop")
        .get("web")
        .await
        .unwrap()
        .spec
        .and_then(|spec| spec.replicas)
}

fn scale_request(name: &str) -> AIRequest {
    AIRequest::new(
        name,
        AIRequestSpec {
            request_text: "scale web to 3 in shop".into(),
            user: "alice@example.com".into(),
            namespace: "shop".into(),
            context: None,
            approve: None,
            restore: None,
        },
    )
}

async fn patch_spec(requests: &Api<AIRequest>, name: &str, spec: serde_json::Value) {
    requests
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn an_airequest_is_planned_approved_run_and_restored() {
    let (cluster, client) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let operator = Operator::start(dir.path(), cluster.kubeconfig(), "solo");
    let requests: Api<AIRequest> = Api::namespaced(client.clone(), "shop");
    requests
        .create(&PostParams::default(), &scale_request("scale-web"))
        .await
        .unwrap();

    let planned = request_in(
        &requests,
        "scale-web",
        Phase::AwaitingApproval,
        &[&operator],
    )
    .await;
    let status = planned.status.clone().unwrap();
    let hash = status.plan_hash.clone().expect("a plan hash");
    assert!(hash.starts_with("sha256:"), "{hash}");
    assert!(status.thread_id.is_some());
    assert!(
        !status.response.clone().unwrap_or_default().is_empty(),
        "Jamie's explanation"
    );
    assert_eq!(status.observed_generation, planned.metadata.generation);
    let tools: Vec<String> = status.plan.as_ref().unwrap()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["tool"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(tools.contains(&"kube_scale".to_owned()), "{tools:?}");
    assert_eq!(
        replicas(&client).await,
        Some(1),
        "nothing runs before approval"
    );

    // A hash that is not the plan's is refused, with a condition and an Event.
    let stale = format!("sha256:{}", "f".repeat(64));
    patch_spec(&requests, "scale-web", json!({"approve": stale})).await;
    wait_for("the stale hash refused", || {
        let requests = requests.clone();
        async move {
            let request = requests.get("scale-web").await.unwrap();
            request.status.as_ref().is_some_and(|status| {
                status.conditions.iter().any(|c| {
                    c.type_ == "Approved"
                        && c.reason == "StaleHash"
                        && c.observed_generation == request.metadata.generation
                })
            })
        }
    })
    .await;
    assert_eq!(
        requests.get("scale-web").await.unwrap().phase(),
        Phase::AwaitingApproval
    );
    assert_eq!(
        replicas(&client).await,
        Some(1),
        "a stale hash runs nothing"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), "shop");
    wait_for("a StaleHash Event", || {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .any(|event| event.reason.as_deref() == Some("StaleHash"))
        }
    })
    .await;

    // The plan's hash runs it.
    patch_spec(&requests, "scale-web", json!({"approve": hash})).await;
    let done = request_in(&requests, "scale-web", Phase::Succeeded, &[&operator]).await;
    assert_eq!(replicas(&client).await, Some(3));
    let status = done.status.clone().unwrap();
    assert_eq!(status.plan_hash.as_deref(), Some(hash.as_str()));
    assert!(status
        .conditions
        .iter()
        .any(|c| c.type_ == "Succeeded" && c.reason == "Succeeded"));

    // The conversation is mirrored: the person's request, Jamie's explanation and report.
    let conversation = Api::<AIConversation>::namespaced(client.clone(), "shop")
        .get("scale-web")
        .await
        .unwrap();
    assert_eq!(Some(conversation.spec.thread_id.clone()), status.thread_id);
    let messages = conversation.spec.messages.unwrap();
    assert!(messages.len() >= 3, "{messages:#?}");
    assert_eq!(messages[0].text, "scale web to 3 in shop");

    // Restore.
    patch_spec(&requests, "scale-web", json!({"restore": true})).await;
    let restored = request_in(&requests, "scale-web", Phase::Restored, &[&operator]).await;
    assert_eq!(replicas(&client).await, Some(1), "{:#?}", restored.status);

    // Nothing happens twice: a restarted operator leaves the finished request alone.
    drop(operator);
    let again = Operator::start(dir.path(), cluster.kubeconfig(), "again");
    wait_for("the restarted operator to lead", || {
        let lease = Api::<Lease>::namespaced(client.clone(), "deckhand");
        async move {
            lease
                .get_opt("deckhand-operator")
                .await
                .unwrap()
                .and_then(|lease| lease.spec)
                .and_then(|spec| spec.holder_identity)
                .as_deref()
                == Some("again")
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = requests.get("scale-web").await.unwrap();
    assert_eq!(after.phase(), Phase::Restored, "{}", again.log());
    assert_eq!(after.status.unwrap().thread_id, status.thread_id);
    assert_eq!(replicas(&client).await, Some(1));
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("deckhand-operator")
        .await
        .unwrap()
        .and_then(|lease| lease.spec)
        .and_then(|spec| spec.holder_identity)
}

#[tokio::test]
async fn only_the_leader_reconciles_and_another_takes_over() {
    let (cluster, client) = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "deckhand");
    let mut first = Operator::start(dir.path(), cluster.kubeconfig(), "first");
    wait_for("first to lead", || {
        let leases = leases.clone();
        async move { holder(&leases).await.as_deref() == Some("first") }
    })
    .await;
    let mut second = Operator::start(dir.path(), cluster.kubeconfig(), "second");
    let requests: Api<AIRequest> = Api::namespaced(client.clone(), "shop");
    requests
        .create(&PostParams::default(), &scale_request("one"))
        .await
        .unwrap();
    request_in(
        &requests,
        "one",
        Phase::AwaitingApproval,
        &[&first, &second],
    )
    .await;
    // Give the follower time to act if it (wrongly) did.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(holder(&leases).await.as_deref(), Some("first"));
    assert!(!second.log().contains("leading"), "{}", second.log());
    // One thread per request: the follower did not plan it again.
    let threads = Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .args(["threads", "list", "--json", "--data-dir"])
        .arg(dir.path().join("data"))
        .env_remove("DECKHAND_DATABASE_URL")
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&threads.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    // The leader dies without handing over: the other takes the Lease once it expires.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    wait_for("second to take over", || {
        let leases = leases.clone();
        async move { holder(&leases).await.as_deref() == Some("second") }
    })
    .await;
    requests
        .create(&PostParams::default(), &scale_request("two"))
        .await
        .unwrap();
    request_in(&requests, "two", Phase::AwaitingApproval, &[&second]).await;

    // On SIGTERM the leader hands the Lease over.
    second.terminate();
    assert_eq!(holder(&leases).await, None, "{}", second.log());
    let transitions = leases
        .get("deckhand-operator")
        .await
        .unwrap()
        .spec
        .and_then(|spec| spec.lease_transitions);
    assert_eq!(transitions, Some(1));
}

/// A client acting as `user` in `groups` (impersonated by the test's admin).
async fn client_as(cluster: &KubeApiServer, user: &str, groups: &[&str]) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    config.auth_info.impersonate = Some(user.to_owned());
    config.auth_info.impersonate_groups = Some(groups.iter().map(|g| (*g).to_owned()).collect());
    Client::try_from(config).unwrap()
}

/// A CA and a serving certificate for 127.0.0.1 signed by it: (cert file, key file, CA PEM).
fn webhook_certificate(dir: &Path) -> (PathBuf, PathBuf, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let (cert_path, key_path) = (dir.join("webhook.crt"), dir.join("webhook.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path, ca.pem())
}

fn record(request: &AIRequest, key: &str) -> Option<serde_json::Value> {
    request
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(key))
        .map(|text| serde_json::from_str(text).unwrap())
}

async fn create_in_shop<K>(client: &Client, value: serde_json::Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
{
    let object: K = serde_json::from_value(value).unwrap();
    Api::<K>::namespaced(client.clone(), "shop")
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_webhook_records_who_asked_and_approved_and_the_operator_acts_as_them() {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    use k8s_openapi::ByteString;

    let (cluster, admin) = cluster().await;
    // Everyone in `requesters` may write AIRequests in shop; only `shop-team` may change
    // the Deployments there.
    for (role, rules) in [
        (
            "airequest-editor",
            json!([{"apiGroups": ["deckhand.dev"], "resources": ["airequests"], "verbs": ["*"]}]),
        ),
        (
            "shop-admin",
            json!([{"apiGroups": ["", "apps"], "resources": ["*"], "verbs": ["*"]}]),
        ),
    ] {
        create_in_shop::<k8s_openapi::api::rbac::v1::Role>(
            &admin,
            json!({
            "metadata": {"name": role, "namespace": "shop"}, "rules": rules}),
        )
        .await;
    }
    for (role, group) in [
        ("airequest-editor", "requesters"),
        ("shop-admin", "shop-team"),
    ] {
        create_in_shop::<k8s_openapi::api::rbac::v1::RoleBinding>(&admin, json!({
            "metadata": {"name": format!("{role}-{group}"), "namespace": "shop"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]})).await;
    }
    let bob = client_as(&cluster, "bob", &["requesters"]).await;
    let carol = client_as(&cluster, "carol", &["requesters", "shop-team"]).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("deckhand.toml"),
        "[cluster]\nimpersonate = true\n",
    )
    .unwrap();
    let (cert, key, ca) = webhook_certificate(dir.path());
    let port = deckhand_testkit::process::free_port().unwrap();
    let operator = Operator::start_with(
        dir.path(),
        cluster.kubeconfig(),
        "attesting",
        &[
            "--identity-source".into(),
            "attested".into(),
            "--webhook-listen".into(),
            format!("127.0.0.1:{port}"),
            "--webhook-cert".into(),
            cert.display().to_string(),
            "--webhook-key".into(),
            key.display().to_string(),
        ],
    );

    // Written before the webhook is registered: no record, so the operator will not act
    // on it.
    let admin_requests: Api<AIRequest> = Api::namespaced(admin.clone(), "shop");
    admin_requests
        .create(&PostParams::default(), &scale_request("unrecorded"))
        .await
        .unwrap();
    let unrecorded = request_in(&admin_requests, "unrecorded", Phase::Failed, &[&operator]).await;
    let conditions = unrecorded.status.unwrap().conditions;
    assert!(
        conditions
            .iter()
            .any(|c| c.reason == "NoAttestedIdentity"
                && c.message.contains("deckhand.dev/requested-by")),
        "{conditions:#?}"
    );

    wait_for("the webhook's port", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    let mut configuration: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "deckhand-identity"},
        "webhooks": [{
            "name": "identity.deckhand.dev",
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/mutate-airequests")},
            "rules": [{"apiGroups": ["deckhand.dev"], "apiVersions": ["*"],
                       "operations": ["CREATE", "UPDATE"], "resources": ["airequests"],
                       "scope": "Namespaced"}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10,
        }]
    }))
    .unwrap();
    configuration.webhooks.as_mut().unwrap()[0]
        .client_config
        .ca_bundle = Some(ByteString(ca.into_bytes()));
    Api::<MutatingWebhookConfiguration>::all(admin.clone())
        .create(&PostParams::default(), &configuration)
        .await
        .unwrap();
    // The API server picks the configuration up within a moment: probe with dry runs.
    let bob_requests: Api<AIRequest> = Api::namespaced(bob.clone(), "shop");
    wait_for("the webhook to be called", || {
        let bob_requests = bob_requests.clone();
        async move {
            let probe = bob_requests
                .create(
                    &PostParams {
                        dry_run: true,
                        ..PostParams::default()
                    },
                    &scale_request("probe"),
                )
                .await
                .unwrap();
            record(&probe, "deckhand.dev/requested-by").is_some()
        }
    })
    .await;

    // Bob writes carol's name and a forged approval record: the API server stores his.
    let mut forged = scale_request("bob-alone");
    forged.spec.user = "carol".into();
    forged.metadata.annotations = Some(
        [(
            "deckhand.dev/approved-by".to_owned(),
            json!({"user": "carol", "groups": ["shop-team"]}).to_string(),
        )]
        .into(),
    );
    let stored = bob_requests
        .create(&PostParams::default(), &forged)
        .await
        .unwrap();
    assert_eq!(stored.spec.user, "bob");
    let requested = record(&stored, "deckhand.dev/requested-by").unwrap();
    assert_eq!(requested["user"], "bob");
    assert!(
        requested["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("requesters")),
        "{requested}"
    );
    assert_eq!(record(&stored, "deckhand.dev/approved-by"), None);

    // Planned for bob, who is told up front that he may not scale web.
    let planned = request_in(
        &bob_requests,
        "bob-alone",
        Phase::AwaitingApproval,
        &[&operator],
    )
    .await;
    let status = planned.status.unwrap();
    assert!(
        status.conditions.iter().any(|c| c.type_ == "Permitted"
            && c.reason == "MissingPermissions"
            && c.message.contains("bob")),
        "{:#?}",
        status.conditions
    );
    // His own approval runs as him: the API server refuses the write.
    patch_spec(
        &bob_requests,
        "bob-alone",
        json!({"approve": status.plan_hash.unwrap()}),
    )
    .await;
    let failed = request_in(&bob_requests, "bob-alone", Phase::Failed, &[&operator]).await;
    assert_eq!(
        record(&failed, "deckhand.dev/approved-by").unwrap()["user"],
        "bob"
    );
    assert_eq!(replicas(&admin).await, Some(1), "bob may not scale web");

    // The same request, approved by carol, runs as carol.
    bob_requests
        .create(&PostParams::default(), &scale_request("carol-approves"))
        .await
        .unwrap();
    let planned = request_in(
        &bob_requests,
        "carol-approves",
        Phase::AwaitingApproval,
        &[&operator],
    )
    .await;
    let hash = planned.status.unwrap().plan_hash.unwrap();
    // Bob cannot write carol's approval into the annotations himself.
    bob_requests
        .patch(
            "carol-approves",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {
                "deckhand.dev/approved-by": json!({"user": "carol", "value": hash}).to_string()
            }}})),
        )
        .await
        .unwrap();
    let unchanged = bob_requests.get("carol-approves").await.unwrap();
    assert_eq!(record(&unchanged, "deckhand.dev/approved-by"), None);
    assert_eq!(unchanged.phase(), Phase::AwaitingApproval);

    let carol_requests: Api<AIRequest> = Api::namespaced(carol.clone(), "shop");
    patch_spec(&carol_requests, "carol-approves", json!({"approve": hash})).await;
    let done = request_in(
        &carol_requests,
        "carol-approves",
        Phase::Succeeded,
        &[&operator],
    )
    .await;
    let approved = record(&done, "deckhand.dev/approved-by").unwrap();
    assert_eq!(approved["user"], "carol");
    assert_eq!(approved["value"], json!(hash));
    assert_eq!(done.spec.user, "bob", "who asked stays bob");
    assert_eq!(replicas(&admin).await, Some(3));
    let conditions = done.status.unwrap().conditions;
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Approved" && c.message.contains("approved by carol")),
        "{conditions:#?}"
    );

    // Carol asks to put it back; the restore runs as her.
    patch_spec(&carol_requests, "carol-approves", json!({"restore": true})).await;
    let restored = request_in(
        &carol_requests,
        "carol-approves",
        Phase::Restored,
        &[&operator],
    )
    .await;
    assert_eq!(
        record(&restored, "deckhand.dev/restore-requested-by").unwrap()["user"],
        "carol"
    );
    assert_eq!(replicas(&admin).await, Some(1));
    let log = operator.log();
    assert!(log.contains("admission review"), "{log}");
}
