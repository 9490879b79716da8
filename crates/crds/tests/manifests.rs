//! deckhand's own manifests (`k8s/`) against a real kube-apiserver: the base and every
//! overlay render (with the test-side renderer in `support/kustomize.rs`, checked against
//! `kubectl kustomize` when kubectl is installed), the CRDs install and become
//! Established, every other object passes a server-side apply with `dryRun=All`, and the
//! RBAC, created for real, gives deckhand's ServiceAccount what it needs and nothing that
//! lets it take the cluster over (checked with SubjectAccessReview, and by acting as it).

#![allow(clippy::unwrap_used)]

mod support;

use deckhand_crds::{AIConversation, AIConversationSpec, AIRequest, AIRequestSpec, Phase};
use deckhand_testkit::KubeApiServer;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::{Client, Config};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::kustomize::{self, Identity};

/// deckhand's ServiceAccount as the API server names it.
const SERVICE_ACCOUNT: &str = "system:serviceaccount:deckhand:deckhand";
/// The groups every token of that ServiceAccount carries.
const SERVICE_ACCOUNT_GROUPS: [&str; 3] = [
    "system:serviceaccounts",
    "system:serviceaccounts:deckhand",
    "system:authenticated",
];
/// The field manager of this test's applies.
const MANAGER: &str = "deckhand-manifests-test";
/// The overlays next to the base, each rendered and applied.
const OVERLAYS: [&str; 5] = ["eks", "aks", "ai-nodes", "write-access", "operator"];

fn k8s_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../k8s")
}

fn render(relative: &str) -> Vec<Value> {
    let dir = k8s_dir().join(relative);
    kustomize::build(&dir).unwrap_or_else(|error| panic!("rendering k8s/{relative}: {error}"))
}

fn by_identity(objects: Vec<Value>) -> BTreeMap<Identity, Value> {
    objects
        .into_iter()
        .map(|mut object| {
            kustomize::normalize_numbers(&mut object);
            (kustomize::identity(&object), object)
        })
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn the_renderer_agrees_with_kubectl_kustomize() {
    for relative in
        std::iter::once("base".to_owned()).chain(OVERLAYS.map(|o| format!("overlays/{o}")))
    {
        let ours = by_identity(render(&relative));
        match kustomize::kubectl_build(&k8s_dir().join(&relative)) {
            None => {
                eprintln!(
                    "kubectl is not installed: k8s/{relative} is checked by the test renderer only"
                );
                return;
            }
            Some(theirs) => {
                let theirs = by_identity(theirs.unwrap());
                assert_eq!(
                    ours.keys().collect::<Vec<_>>(),
                    theirs.keys().collect::<Vec<_>>(),
                    "k8s/{relative}: the two renderings hold different objects"
                );
                for (id, object) in &ours {
                    assert_eq!(
                        object, &theirs[id],
                        "k8s/{relative}: {id:?} differs from kubectl kustomize"
                    );
                }
            }
        }
    }
}

#[test]
fn each_overlay_changes_exactly_what_it_is_for() {
    let base = by_identity(render("base"));
    let changed = |overlay: &str| -> Vec<(Identity, Value)> {
        by_identity(render(&format!("overlays/{overlay}")))
            .into_iter()
            .filter(|(id, object)| base.get(id) != Some(object))
            .collect()
    };

    let eks = changed("eks");
    assert_eq!(eks.len(), 1, "eks changes only the ServiceAccount");
    assert_eq!(eks[0].1["kind"], "ServiceAccount");
    assert!(
        eks[0].1["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:iam::")
    );

    let aks = changed("aks");
    let kinds: Vec<_> = aks.iter().map(|(id, _)| id.1.as_str()).collect();
    assert_eq!(kinds, ["Deployment", "ServiceAccount"]);
    let deployment = &aks[0].1;
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    // The selector is untouched: changing it would orphan the running ReplicaSet.
    assert_eq!(
        deployment["spec"]["selector"],
        base[&aks[0].0]["spec"]["selector"]
    );
    assert!(aks[1].1["metadata"]["annotations"]["azure.workload.identity/client-id"].is_string());

    let ai_nodes = changed("ai-nodes");
    assert_eq!(ai_nodes.len(), 1);
    let pod = &ai_nodes[0].1["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"], json!({"role": "ai"}));
    assert_eq!(pod["tolerations"][0]["key"], "role");
    // Everything else of the pod is the base's.
    assert_eq!(
        pod["containers"],
        base[&ai_nodes[0].0]["spec"]["template"]["spec"]["containers"]
    );

    let write_access = changed("write-access");
    let bindings: Vec<_> = write_access
        .iter()
        .map(|(id, object)| {
            (
                id.1.as_str(),
                id.2.as_str(),
                object["roleRef"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        bindings,
        [
            ("RoleBinding", "shop", "deckhand-write"),
            ("RoleBinding", "staging", "deckhand-write")
        ]
    );

    // The operator: its Deployment, volume, webhook Service, NetworkPolicy opening the
    // webhook port, and the webhook registration, all pointing at each other.
    let operator = changed("operator");
    let mut kinds: Vec<_> = operator
        .iter()
        .map(|(id, _)| format!("{} {}", id.1, id.3))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "Deployment deckhand-operator",
            "MutatingWebhookConfiguration deckhand-identity",
            "NetworkPolicy deckhand-operator-webhook",
            "PersistentVolumeClaim deckhand-operator-state",
            "Service deckhand-operator-webhook",
        ]
    );
    let object = |kind: &str| &operator.iter().find(|(id, _)| id.1 == kind).unwrap().1;
    let (deployment, webhook, service, policy) = (
        object("Deployment"),
        object("MutatingWebhookConfiguration"),
        object("Service"),
        object("NetworkPolicy"),
    );
    let pod = &deployment["spec"]["template"];
    let labels = pod["metadata"]["labels"].as_object().unwrap();
    let selects = |selector: &Value| {
        selector
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    };
    assert!(selects(&deployment["spec"]["selector"]["matchLabels"]));
    assert!(selects(&service["spec"]["selector"]));
    assert!(selects(&policy["spec"]["podSelector"]["matchLabels"]));
    // The server's Service and PDB must not pick the operator's pods up.
    assert!(!selects(
        &base[&by_kind_name(&base, "Service", "deckhand")]["spec"]["selector"]
    ));
    let container = &pod["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "operator");
    let after = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
    assert_eq!(after("--identity-source"), "attested");
    assert_eq!(after("--webhook-listen"), "0.0.0.0:8443");
    // (numbers are normalized to floats for the comparison with kubectl's rendering)
    assert_eq!(
        container["ports"][0]["containerPort"].as_f64(),
        Some(8443.0)
    );
    assert_eq!(
        policy["spec"]["ingress"][0]["ports"][0]["port"].as_f64(),
        Some(8443.0)
    );
    let target = &webhook["webhooks"][0]["clientConfig"]["service"];
    assert_eq!(target["name"], service["metadata"]["name"]);
    assert_eq!(target["path"], "/mutate-airequests");
    assert_eq!(target["port"], service["spec"]["ports"][0]["port"]);
    assert_eq!(webhook["webhooks"][0]["failurePolicy"], "Fail");
    assert_eq!(
        webhook["webhooks"][0]["rules"][0]["resources"],
        json!(["airequests"]),
        "never the status subresource: only the operator writes it"
    );
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
}

fn by_kind_name(objects: &BTreeMap<Identity, Value>, kind: &str, name: &str) -> Identity {
    objects
        .keys()
        .find(|id| id.1 == kind && id.3 == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
        .clone()
}

/// No rule in any rendering grants `*`, touches Secrets, or binds a built-in powerful role.
#[test]
fn no_rule_is_a_wildcard_and_none_reaches_secrets() {
    for relative in
        std::iter::once("base".to_owned()).chain(OVERLAYS.map(|o| format!("overlays/{o}")))
    {
        for object in render(&relative) {
            let kind = object["kind"].as_str().unwrap_or_default();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            if kind == "ClusterRole" || kind == "Role" {
                for rule in object["rules"].as_array().unwrap() {
                    for field in ["verbs", "resources", "apiGroups"] {
                        let values = rule[field].as_array().unwrap();
                        assert!(
                            values.iter().all(|v| v != "*"),
                            "k8s/{relative}: {kind} {name} has `*` in {field}"
                        );
                    }
                    assert!(
                        rule["resources"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .all(|r| r.as_str().is_some_and(|r| !r.starts_with("secrets"))),
                        "k8s/{relative}: {kind} {name} grants access to Secrets"
                    );
                    let verbs = rule["verbs"].as_array().unwrap();
                    assert!(
                        !verbs.iter().any(|v| v == "escalate" || v == "bind"),
                        "k8s/{relative}: {kind} {name} may escalate or bind"
                    );
                    if verbs.iter().any(|v| v == "impersonate") {
                        assert!(
                            rule["resourceNames"]
                                .as_array()
                                .is_some_and(|names| !names.is_empty()),
                            "k8s/{relative}: {kind} {name} impersonates without a list of names"
                        );
                    }
                }
            }
            if kind == "ClusterRoleBinding" || kind == "RoleBinding" {
                let role = object["roleRef"]["name"].as_str().unwrap();
                assert!(
                    role.starts_with("deckhand-"),
                    "k8s/{relative}: {kind} {name} binds {role}, not one of deckhand's own roles"
                );
            }
        }
    }
}

#[test]
fn the_pod_is_locked_down_and_probed() {
    let base = render("base");
    let pod = &find(&base, "Deployment", "deckhand")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["serviceAccountName"], "deckhand");
    for container in pod["containers"].as_array().unwrap() {
        let security = &container["securityContext"];
        assert_eq!(security["allowPrivilegeEscalation"], false);
        assert_eq!(security["readOnlyRootFilesystem"], true);
        assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
        assert!(container["resources"]["requests"]["memory"].is_string());
        assert!(container["resources"]["limits"]["memory"].is_string());
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        let mounts: BTreeMap<_, _> = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["mountPath"].as_str().unwrap(),
                    m["name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(mounts["/tmp"], "tmp");
        assert_eq!(mounts["/var/lib/deckhand"], "state");
    }
    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap();
    assert!(volume("tmp")["emptyDir"].is_object());
    assert_eq!(
        volume("state")["persistentVolumeClaim"]["claimName"],
        find(&base, "PersistentVolumeClaim", "deckhand-state")["metadata"]["name"]
    );
}

/// The Service, the PodDisruptionBudget and the NetworkPolicy select the Deployment's pods
/// (a typo in a label would leave them selecting nothing, silently), and every object is
/// labelled as part of deckhand and, when namespaced, lives in deckhand's namespace (the
/// write bindings of overlays/write-access excepted: they belong in the listed namespaces).
#[test]
fn selectors_find_the_pod_and_every_object_is_deckhands() {
    let base = render("base");
    let deployment = find(&base, "Deployment", "deckhand");
    let pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    let selects_the_pod = |selector: &Value| {
        let selector = selector.as_object().unwrap();
        !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
    };
    assert!(selects_the_pod(
        &deployment["spec"]["selector"]["matchLabels"]
    ));
    assert!(selects_the_pod(
        &find(&base, "Service", "deckhand")["spec"]["selector"]
    ));
    assert!(selects_the_pod(
        &find(&base, "PodDisruptionBudget", "deckhand")["spec"]["selector"]["matchLabels"]
    ));
    assert!(selects_the_pod(
        &find(&base, "NetworkPolicy", "deckhand")["spec"]["podSelector"]["matchLabels"]
    ));
    let ingress = find(&base, "Ingress", "deckhand");
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "deckhand"
    );
    assert_eq!(
        ingress["spec"]["tls"][0]["hosts"],
        json!([ingress["spec"]["rules"][0]["host"]])
    );

    for object in render("overlays/write-access") {
        let (_, kind, namespace, name) = kustomize::identity(&object);
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/part-of"], "deckhand",
            "{kind} {name} is not labelled as part of deckhand"
        );
        let cluster_scoped = [
            "Namespace",
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
        ];
        if cluster_scoped.contains(&kind.as_str()) {
            assert_eq!(namespace, "", "{kind} {name} is cluster-scoped");
        } else if !(kind == "RoleBinding" && name == "deckhand-write") {
            assert_eq!(
                namespace, "deckhand",
                "{kind} {name} is outside deckhand's namespace"
            );
        }
    }
}

/// The ConfigMap's deckhand.toml uses only keys deckhand knows: every key must appear in
/// deckhand.example.toml, which deckhand's own tests keep in step with its config types.
#[test]
fn the_config_uses_only_known_keys() {
    let base = render("base");
    let text = find(&base, "ConfigMap", "deckhand-config")["data"]["deckhand.toml"]
        .as_str()
        .unwrap()
        .to_owned();
    let ours: toml::Table = toml::from_str(&text).expect("deckhand.toml in the ConfigMap parses");
    let example_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deckhand.example.toml");
    let example: toml::Table =
        toml::from_str(&std::fs::read_to_string(example_path).unwrap()).unwrap();

    fn keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (key, value) in table {
            let path = format!("{prefix}{key}");
            match value {
                toml::Value::Table(inner) => keys(inner, &format!("{path}."), out),
                _ => out.push(path),
            }
        }
    }
    let (mut used, mut known) = (Vec::new(), Vec::new());
    keys(&ours, "", &mut used);
    keys(&example, "", &mut known);
    let unknown: Vec<_> = used.iter().filter(|key| !known.contains(key)).collect();
    assert!(
        unknown.is_empty(),
        "keys deckhand does not know: {unknown:?}"
    );
    assert_eq!(ours["listen"].as_str(), Some("0.0.0.0:8080"));
}

// ---- against the API server ----

fn gvk_of(object: &Value) -> GroupVersionKind {
    let api_version = object["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap())
}

/// The API for `object`. A Kubernetes 1.20 server has no policy/v1 (added in 1.21), so a
/// PodDisruptionBudget goes to policy/v1beta1 there: its fields are the same for what
/// k8s/ uses (selector, maxUnavailable). Anything else not served is a failure.
async fn api_for(client: &Client, object: &mut Value) -> Api<DynamicObject> {
    let mut gvk = gvk_of(object);
    let found = match kube::discovery::pinned_kind(client, &gvk).await {
        Ok(found) => found,
        Err(_)
            if gvk.group == "policy"
                && gvk.version == "v1"
                && gvk.kind == "PodDisruptionBudget" =>
        {
            gvk.version = "v1beta1".into();
            object["apiVersion"] = json!("policy/v1beta1");
            kube::discovery::pinned_kind(client, &gvk).await.unwrap()
        }
        Err(error) => panic!("the server does not serve {gvk:?}: {error}"),
    };
    let (resource, capabilities) = found;
    match capabilities.scope {
        kube::discovery::Scope::Namespaced => {
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or_else(|| {
                panic!("{gvk:?} {} has no namespace", object["metadata"]["name"])
            });
            Api::namespaced_with(client.clone(), namespace, &resource)
        }
        kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &resource),
    }
}

/// Server-side apply of `object`, for real or as a dry run; returns what the server
/// stored (or would store).
async fn apply(client: &Client, object: &Value, dry_run: bool) -> Value {
    let mut object = object.clone();
    let api = api_for(client, &mut object).await;
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    let mut params = PatchParams::apply(MANAGER).force();
    if dry_run {
        params = params.dry_run();
    }
    let stored = api
        .patch(&name, &params, &Patch::Apply(&object))
        .await
        .unwrap_or_else(|error| {
            panic!(
                "applying {} {name} (dry run: {dry_run}): {error}",
                object["kind"]
            )
        });
    let stored = serde_json::to_value(stored).unwrap();
    assert_kept(&object, &stored, &format!("{} {name}", object["kind"]));
    stored
}

/// Every field that was sent is in what the server stored, with the same value: nothing
/// was pruned, renamed or dropped as unknown. Quantities are compared as the server
/// normalizes them ("2" CPUs stays "2"; k8s/ writes them canonically).
fn assert_kept(sent: &Value, stored: &Value, path: &str) {
    match (sent, stored) {
        (Value::Object(sent), Value::Object(stored)) => {
            for (key, value) in sent {
                let child = format!("{path}.{key}");
                match stored.get(key) {
                    Some(stored_value) => assert_kept(value, stored_value, &child),
                    None => panic!("{child} was dropped by the server"),
                }
            }
        }
        (Value::Array(sent), Value::Array(stored)) => {
            assert_eq!(
                sent.len(),
                stored.len(),
                "{path} changed length on the server"
            );
            for (index, (a, b)) in sent.iter().zip(stored).enumerate() {
                assert_kept(a, b, &format!("{path}[{index}]"));
            }
        }
        (Value::Number(sent), Value::Number(stored)) => {
            assert_eq!(
                sent.as_f64(),
                stored.as_f64(),
                "{path} changed on the server"
            )
        }
        (sent, stored) => assert_eq!(sent, stored, "{path} changed on the server"),
    }
}

async fn wait_established(client: &Client, name: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let crd = crds.get(name).await.unwrap();
        let established = crd
            .status
            .and_then(|status| status.conditions)
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} not Established within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
}

/// A client that acts as deckhand's ServiceAccount (impersonated by the test's admin).
async fn client_as_deckhand(server: &KubeApiServer) -> Client {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.auth_info.impersonate = Some(SERVICE_ACCOUNT.into());
    config.auth_info.impersonate_groups = Some(
        SERVICE_ACCOUNT_GROUPS[..2]
            .iter()
            .map(|g| g.to_string())
            .collect(),
    );
    Client::try_from(config).unwrap()
}

/// One access question for the ServiceAccount: `verb` on `group/resource[/subresource]`
/// in `namespace` (empty: cluster-wide), for `name` (empty: any).
struct Question {
    verb: &'static str,
    resource: &'static str,
    namespace: &'static str,
    name: &'static str,
    expected: bool,
}

fn q(
    verb: &'static str,
    resource: &'static str,
    namespace: &'static str,
    expected: bool,
) -> Question {
    Question {
        verb,
        resource,
        namespace,
        name: "",
        expected,
    }
}

async fn allowed(client: &Client, question: &Question) -> bool {
    // "apps/deployments/scale" → group apps, resource deployments, subresource scale; a
    // core resource has an empty group: "/pods/log".
    let mut parts = question.resource.splitn(3, '/');
    let group = parts.next().unwrap();
    let resource = parts.next().unwrap();
    let subresource = parts.next();
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(SERVICE_ACCOUNT.into()),
            groups: Some(
                SERVICE_ACCOUNT_GROUPS
                    .iter()
                    .map(|g| g.to_string())
                    .collect(),
            ),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(question.verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource: subresource.map(str::to_owned),
                namespace: (!question.namespace.is_empty()).then(|| question.namespace.into()),
                name: (!question.name.is_empty()).then(|| question.name.into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = reviews
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    answer.status.unwrap().allowed
}

#[tokio::test]
async fn the_manifests_apply_and_the_rbac_is_least_privilege() {
    let server = KubeApiServer::start().await.unwrap();
    let client = server.client().await.unwrap();

    // The CRDs, for real, from the rendered base (that is, the committed YAML).
    let base = render("base");
    let (crds, others): (Vec<_>, Vec<_>) = base
        .iter()
        .partition(|o| o["kind"] == "CustomResourceDefinition");
    assert_eq!(crds.len(), 2);
    for crd in &crds {
        apply(&client, crd, false).await;
        wait_established(&client, crd["metadata"]["name"].as_str().unwrap()).await;
    }

    // deckhand's namespace for real (namespaced objects cannot be dry-run into a namespace
    // that does not exist), then every object of the base and each overlay as a dry run.
    let namespace = find(&base, "Namespace", "deckhand");
    apply(&client, namespace, false).await;
    for object in &others {
        apply(&client, object, true).await;
    }
    for overlay in OVERLAYS {
        if overlay == "write-access" {
            for listed in ["shop", "staging"] {
                create_namespace(&client, listed).await;
            }
        }
        for object in render(&format!("overlays/{overlay}")) {
            if object["kind"] != "CustomResourceDefinition" {
                apply(&client, &object, true).await;
            }
        }
    }
    // A dry run stores nothing.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "deckhand");
    assert!(config_maps
        .get_opt("deckhand-config")
        .await
        .unwrap()
        .is_none());

    // The RBAC (and the ServiceAccount) for real, with write access in shop and staging.
    for object in render("overlays/write-access") {
        let kind = object["kind"].as_str().unwrap();
        if kind.ends_with("Role") || kind.ends_with("RoleBinding") || kind == "ServiceAccount" {
            apply(&client, &object, false).await;
        }
    }
    create_namespace(&client, "default-apps").await;

    let questions = [
        // Never: the cluster's foundations, kube-system, Secrets, everything, escalation.
        q("delete", "/namespaces", "", false),
        Question {
            name: "shop",
            ..q("delete", "/namespaces", "", false)
        },
        q("create", "/namespaces", "", false),
        q("create", "apps/deployments", "kube-system", false),
        q("patch", "apps/deployments", "kube-system", false),
        q("patch", "/configmaps", "kube-system", false),
        q("delete", "/pods", "kube-system", false),
        q("get", "/secrets", "shop", false),
        q("list", "/secrets", "", false),
        q("get", "/secrets", "deckhand", false),
        q("*", "*/*", "", false),
        q("*", "*/*", "shop", false),
        q(
            "create",
            "rbac.authorization.k8s.io/clusterrolebindings",
            "",
            false,
        ),
        q(
            "create",
            "rbac.authorization.k8s.io/rolebindings",
            "shop",
            false,
        ),
        q(
            "escalate",
            "rbac.authorization.k8s.io/clusterroles",
            "",
            false,
        ),
        q("bind", "rbac.authorization.k8s.io/clusterroles", "", false),
        Question {
            name: "system:masters",
            ..q("impersonate", "/groups", "", false)
        },
        Question {
            name: "admin",
            ..q("impersonate", "/users", "", false)
        },
        q("impersonate", "/serviceaccounts", "kube-system", false),
        q("patch", "/nodes", "", false),
        q("delete", "/persistentvolumes", "", false),
        q("create", "/pods", "shop", false),
        q("create", "/pods/exec", "shop", false),
        q("patch", "apps/deployments", "default-apps", false),
        q(
            "create",
            "admissionregistration.k8s.io/validatingwebhookconfigurations",
            "",
            false,
        ),
        q("delete", "deckhand.dev/airequests", "shop", false),
        Question {
            name: "kube-controller-manager",
            ..q("update", "coordination.k8s.io/leases", "kube-system", false)
        },
        q("create", "coordination.k8s.io/leases", "default", false),
        // Needed: read everywhere, write where listed, its own resources and checks.
        q("get", "/pods", "", true),
        q("list", "/pods", "", true),
        q("watch", "apps/deployments", "", true),
        q("get", "/pods/log", "kube-system", true),
        q("list", "/events", "", true),
        q("patch", "apps/deployments", "shop", true),
        q("patch", "apps/deployments/scale", "staging", true),
        q("create", "/configmaps", "shop", true),
        q("delete", "/pods", "shop", true),
        q("update", "deckhand.dev/airequests/status", "shop", true),
        q("patch", "deckhand.dev/airequests/status", "", true),
        q("watch", "deckhand.dev/airequests", "", true),
        q("create", "deckhand.dev/aiconversations", "shop", true),
        q(
            "create",
            "authorization.k8s.io/subjectaccessreviews",
            "",
            true,
        ),
        q("create", "/events", "shop", true),
        Question {
            name: "deckhand-users",
            ..q("impersonate", "/groups", "", true)
        },
        Question {
            name: "alice@example.com",
            ..q("impersonate", "/users", "", true)
        },
        Question {
            name: "deckhand-operator",
            ..q("update", "coordination.k8s.io/leases", "deckhand", true)
        },
        q("create", "coordination.k8s.io/leases", "deckhand", true),
    ];
    let mut wrong = Vec::new();
    for question in &questions {
        let answer = allowed(&client, question).await;
        if answer != question.expected {
            wrong.push(format!(
                "{} {} in {:?} (name {:?}): allowed = {answer}, expected {}",
                question.verb,
                question.resource,
                question.namespace,
                question.name,
                question.expected
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "SubjectAccessReview answers:\n{}",
        wrong.join("\n")
    );

    // Acting as the ServiceAccount for real: what it may do works, the rest is Forbidden.
    let deckhand = client_as_deckhand(&server).await;
    let requests: Api<AIRequest> = Api::namespaced(client.clone(), "shop");
    let request = AIRequest::new(
        "scale-web",
        AIRequestSpec {
            request_text: "scale web to 3 replicas".into(),
            user: "alice@example.com".into(),
            namespace: "shop".into(),
            context: None,
            approve: None,
            restore: None,
        },
    );
    requests
        .create(&PostParams::default(), &request)
        .await
        .unwrap();
    let as_deckhand: Api<AIRequest> = Api::namespaced(deckhand.clone(), "shop");
    let status =
        json!({"status": {"phase": "Planned", "threadId": "t-1", "observedGeneration": 1}});
    let updated = as_deckhand
        .patch_status("scale-web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(updated.phase(), Phase::Planned);
    let conversations: Api<AIConversation> = Api::namespaced(deckhand.clone(), "shop");
    let conversation = AIConversation::new("t-1", AIConversationSpec::inline("t-1", Vec::new()));
    conversations
        .create(&PostParams::default(), &conversation)
        .await
        .unwrap();

    let forbidden = |result: Result<(), kube::Error>, what: &str| match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what} as deckhand: expected 403 Forbidden, got {other:?}"),
    };
    let namespaces: Api<Namespace> = Api::all(deckhand.clone());
    forbidden(
        namespaces
            .delete("shop", &Default::default())
            .await
            .map(|_| ()),
        "deleting a namespace",
    );
    let secrets: Api<Secret> = Api::namespaced(deckhand.clone(), "shop");
    forbidden(
        secrets.list(&Default::default()).await.map(|_| ()),
        "listing Secrets",
    );
    let system_config: Api<ConfigMap> = Api::namespaced(deckhand.clone(), "kube-system");
    let config_map: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "deckhand-was-here"}})).unwrap();
    forbidden(
        system_config
            .create(&PostParams::default(), &config_map)
            .await
            .map(|_| ()),
        "creating a ConfigMap in kube-system",
    );
    forbidden(
        as_deckhand
            .delete("scale-web", &Default::default())
            .await
            .map(|_| ()),
        "deleting an AIRequest",
    );
}
