//! The generator tools and yaml_validate from tools-wasm, run under the host's sandbox.
//! What the Kubernetes generators write is applied with server-side dry-run to a real
//! kube-apiserver (v1.20.2); Helm templates are rendered with a Go-template engine and then
//! applied the same way; Terraform files are parsed as HCL.

use deckhand_testkit::KubeApiServer;
use deckhand_tools::sandbox::SandboxConfig;
use deckhand_tools::{SandboxLimits, ToolFailure, WasmSandbox, WorkspaceAccess};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DynamicObject, GroupVersionKind, PostParams};
use kube::discovery::Scope;
use kube::{Api, Client};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The namespace the generated objects go to (created for real, so dry-runs can target it).
const NAMESPACE: &str = "shop";

fn module_path(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools-wasm/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build it with scripts/build-tools-wasm.sh",
        path.display()
    );
    path
}

/// Runs the tool `name` once on `workspace`.
fn call(workspace: &Path, name: &str, input: Value) -> Result<Value, ToolFailure> {
    // Each call gets a fresh sandbox; the compile cache (in cargo's scratch dir for
    // tests) spares compiling a module again for every call and every run.
    let sandbox = WasmSandbox::new(SandboxConfig {
        limits: SandboxLimits::default(),
        compile_cache_dir: Some(
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasm-module-cache"),
        ),
    })
    .expect("sandbox");
    let access = if name == "yaml_validate" {
        WorkspaceAccess::Read
    } else {
        WorkspaceAccess::Write
    };
    let tool = sandbox
        .load(name, &module_path(name), access)
        .unwrap_or_else(|e| panic!("load {name}: {e}"));
    // The sandbox blocks (it drives WASI on a runtime of its own), so it runs on a thread
    // of its own, never on an async test's runtime thread.
    std::thread::scope(|scope| {
        scope
            .spawn(|| sandbox.call(&tool, workspace, input.to_string().as_bytes()))
            .join()
            .expect("the tool's thread")
    })
    .unwrap_or_else(|e| panic!("the sandbox runs {name}: {e}"))
}

/// Calls a generator that must succeed, checks that the file it reports holds the YAML it
/// returned, and returns that YAML.
fn generate(workspace: &Path, name: &str, input: Value) -> String {
    let output = call(workspace, name, input.clone())
        .unwrap_or_else(|failure| panic!("{name} {input}: {failure:?}"));
    let path = output["path"].as_str().expect("path");
    let yaml = output["yaml"].as_str().expect("yaml");
    let on_disk = std::fs::read_to_string(workspace.join(path)).expect("the file was written");
    assert_eq!(on_disk, yaml, "{name}: the file holds the returned YAML");
    yaml.to_owned()
}

/// The objects of a YAML stream, as JSON.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|document| {
            <Value as serde::Deserialize>::deserialize(document).expect("the YAML parses")
        })
        .filter(|document| !document.is_null())
        .collect()
}

/// Keys present in `sent` but absent from `returned`: what the API server dropped because
/// it did not know them (v1.20 has no strict field validation, it drops unknown fields
/// silently; the dry-run result shows what it kept).
fn dropped_fields(sent: &Value, returned: &Value, path: &str, dropped: &mut Vec<String>) {
    match (sent, returned) {
        (Value::Object(sent), Value::Object(returned)) => {
            for (key, value) in sent {
                let here = format!("{path}.{key}");
                match returned.get(key) {
                    Some(kept) => dropped_fields(value, kept, &here, dropped),
                    None => dropped.push(here),
                }
            }
        }
        (Value::Array(sent), Value::Array(returned)) => {
            for (index, value) in sent.iter().enumerate() {
                let here = format!("{path}[{index}]");
                match returned.get(index) {
                    Some(kept) => dropped_fields(value, kept, &here, dropped),
                    None => dropped.push(here),
                }
            }
        }
        _ => {}
    }
}

/// Creates `object` with server-side dry-run: validated and defaulted by the API server,
/// never stored. Returns what the server would have stored.
async fn dry_run(client: &Client, object: &Value) -> Result<Value, kube::Error> {
    let (group, version) = match object["apiVersion"].as_str().expect("apiVersion") {
        api_version if api_version.contains('/') => api_version
            .split_once('/')
            .map(|(g, v)| (g.to_owned(), v.to_owned()))
            .expect("group/version"),
        version => (String::new(), version.to_owned()),
    };
    let kind = object["kind"].as_str().expect("kind");
    let gvk = GroupVersionKind::gvk(&group, &version, kind);
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("the server serves {gvk:?}: {e}"));
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => {
            let namespace = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or(NAMESPACE);
            Api::namespaced_with(client.clone(), namespace, &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let dynamic: DynamicObject = serde_json::from_value(object.clone()).expect("an object");
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let created = api.create(&params, &dynamic).await?;
    Ok(serde_json::to_value(created).expect("json"))
}

/// Dry-runs every object of `yaml` and fails on a rejection or a dropped field.
async fn apply_all(client: &Client, what: &str, yaml: &str) -> Vec<Value> {
    let objects = documents(yaml);
    assert!(!objects.is_empty(), "{what}: no objects in\n{yaml}");
    let mut returned = Vec::new();
    for object in objects {
        let stored = dry_run(client, &object)
            .await
            .unwrap_or_else(|e| panic!("{what}: the API server rejects\n{yaml}\n{e}"));
        let mut sent = object.clone();
        // The server turns a Secret's stringData into data; compare the keys there.
        if let Some(string_data) = sent.as_object_mut().and_then(|o| o.remove("stringData")) {
            sent["data"] = string_data;
        }
        let mut dropped = Vec::new();
        dropped_fields(&sent, &stored, "", &mut dropped);
        assert!(
            dropped.is_empty(),
            "{what}: the API server dropped {dropped:?} (unknown fields) from\n{yaml}"
        );
        returned.push(stored);
    }
    returned
}

async fn cluster() -> (KubeApiServer, Client) {
    let cluster = KubeApiServer::start().await.expect("control plane starts");
    let client = cluster.client().await.expect("client");
    let namespace: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": NAMESPACE } })).expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create the namespace");
    (cluster, client)
}

#[tokio::test]
async fn generated_manifests_pass_server_side_dry_run() {
    let (_cluster, client) = cluster().await;
    let workspace = tempfile::tempdir().expect("workspace");
    let ws = workspace.path();

    let cases = [
        (
            "deployment",
            json!({
                "path": "k8s/web/deployment.yaml", "name": "web", "namespace": NAMESPACE,
                "image": "ghcr.io/acme/web:1.4.2", "replicas": 3, "container_port": 8080,
                "resources": { "requests": { "cpu": "200m" }, "limits": { "memory": "512Mi" } },
                "liveness_probe": { "path": "/healthz" },
                "readiness_probe": { "port": 8080, "period_seconds": 5 },
                "labels": { "team": "payments" }, "env": { "LOG_LEVEL": "info", "PORT": "8080" },
            }),
        ),
        (
            "service",
            json!({
                "path": "k8s/web/service.yaml", "name": "web", "namespace": NAMESPACE,
                "ports": [{ "name": "http", "port": 80, "target_port": "http" },
                          { "name": "metrics", "port": 9090, "target_port": 9090, "node_port": 30090 }],
                "type": "NodePort",
            }),
        ),
        (
            "ingress",
            json!({
                "path": "k8s/web/ingress.yaml", "name": "web", "namespace": NAMESPACE,
                "host": "shop.example.com", "tls_secret": "shop-tls", "ingress_class_name": "nginx",
                "annotations": { "nginx.ingress.kubernetes.io/proxy-body-size": "8m" },
                "paths": [{ "service": "web", "port": "http" },
                          { "path": "/api", "path_type": "Exact", "service": "api", "port": 8080 }],
            }),
        ),
        (
            "hpa",
            // v1.20 serves autoscaling/v2beta2, not v2.
            json!({
                "path": "k8s/web/hpa.yaml", "name": "web", "namespace": NAMESPACE, "target": "web",
                "min_replicas": 3, "max_replicas": 12, "cpu_utilization": 75, "memory_utilization": 80,
                "api_version": "autoscaling/v2beta2",
            }),
        ),
        (
            "configmap",
            json!({
                "path": "k8s/web/configmap.yaml", "name": "web-config", "namespace": NAMESPACE,
                "data": { "LOG_LEVEL": "info", "app.properties": "a=1\nb=2\n", "RETRIES": "3" },
                "immutable": true,
            }),
        ),
        (
            "secret",
            json!({
                "path": "k8s/web/secret.yaml", "name": "web-secrets", "namespace": NAMESPACE,
                "keys": ["DATABASE_URL", "API_TOKEN"],
            }),
        ),
        (
            "secret",
            json!({
                "path": "k8s/web/tls.yaml", "name": "shop-tls", "namespace": NAMESPACE,
                "keys": ["tls.crt", "tls.key"], "type": "kubernetes.io/tls",
            }),
        ),
    ];
    for (tool, input) in cases {
        let path = input["path"].clone();
        let yaml = generate(ws, tool, input);
        // yaml_validate agrees with the generators.
        let report = call(ws, "yaml_validate", json!({ "path": path })).expect("yaml_validate");
        assert_eq!(report["error_count"], 0, "{tool}: {report}");
        assert_eq!(
            report["documents"][0]["schema_checked"], true,
            "{tool}: {report}"
        );
        let stored = apply_all(&client, tool, &yaml).await;
        assert_eq!(stored[0]["metadata"]["namespace"], NAMESPACE, "{tool}");
    }

    // The values the server would store are the ones asked for.
    let deployment = documents(
        &std::fs::read_to_string(ws.join("k8s/web/deployment.yaml")).expect("deployment"),
    );
    let stored = dry_run(&client, &deployment[0]).await.expect("dry run");
    let container = &stored["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(stored["spec"]["replicas"], 3);
    assert_eq!(container["resources"]["requests"]["cpu"], "200m");
    assert_eq!(container["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], 8080);
    let secret =
        documents(&std::fs::read_to_string(ws.join("k8s/web/secret.yaml")).expect("secret"));
    let stored = dry_run(&client, &secret[0]).await.expect("dry run");
    // base64 of "<REPLACE_ME>": the template holds placeholders, nothing else.
    assert_eq!(stored["data"]["API_TOKEN"], "PFJFUExBQ0VfTUU+");

    // Dry-run stored nothing, so the objects above were really only validated.
    let deployments: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &kube::discovery::ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment")),
    );
    assert!(deployments.get_opt("web").await.expect("get").is_none());

    // A typo in a field name: v1.20 accepts the object and drops the field; the dry-run
    // comparison sees the drop, and yaml_validate names the same path.
    let mut typo = deployment[0].clone();
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = json!("Always");
    let stored = dry_run(&client, &typo).await.expect("accepted");
    let mut dropped = Vec::new();
    dropped_fields(&typo, &stored, "", &mut dropped);
    assert_eq!(
        dropped,
        [".spec.template.spec.containers[0].imagePullPolice"]
    );
    let text = serde_yaml_ng::to_string(&typo).expect("yaml");
    let report = call(ws, "yaml_validate", json!({ "content": text })).expect("yaml_validate");
    assert_eq!(
        report["documents"][0]["errors"][0]["path"],
        "spec.template.spec.containers[0].imagePullPolice"
    );

    // The same check refuses what the server refuses: a selector that misses the pods.
    let mut broken = deployment[0].clone();
    broken["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = json!("other");
    let error = dry_run(&client, &broken).await.expect_err("rejected");
    assert!(error.to_string().contains("selector"), "{error}");
}

#[test]
fn generators_name_bad_fields_and_never_clobber_files() {
    let workspace = tempfile::tempdir().expect("workspace");
    let ws = workspace.path();
    let input = json!({ "path": "web.yaml", "name": "web", "image": "nginx:1.27" });
    generate(ws, "deployment", input.clone());

    let failure = call(ws, "deployment", input.clone()).expect_err("exists");
    assert_eq!(failure.kind, "already_exists");
    let mut again = input.clone();
    again["overwrite"] = json!(true);
    again["replicas"] = json!(4);
    let yaml = generate(ws, "deployment", again);
    assert!(yaml.contains("replicas: 4"), "{yaml}");

    let failures = [
        (
            "deployment",
            json!({ "path": "a.yaml", "name": "Web", "image": "nginx:1" }),
            "invalid_input",
            "name:",
        ),
        (
            "service",
            json!({ "path": "b.yaml", "name": "web", "ports": [{ "port": 70000 }] }),
            "invalid_input",
            "ports[0].port:",
        ),
        (
            "hpa",
            json!({ "path": "c.yaml", "name": "web", "target": "web", "min_replicas": 5, "max_replicas": 2 }),
            "invalid_input",
            "max_replicas:",
        ),
        (
            "ingress",
            json!({ "path": "d.yaml", "name": "web", "host": "bad host", "paths": [{ "service": "web", "port": 80 }] }),
            "invalid_input",
            "host:",
        ),
        (
            "configmap",
            json!({ "path": "e.yaml", "name": "web", "data": { "a/b": "x" } }),
            "invalid_input",
            "data:",
        ),
        (
            "secret",
            json!({ "path": "f.yaml", "name": "web", "keys": ["A"], "values": { "A": "hunter2" } }),
            "invalid_input",
            "",
        ),
        (
            "configmap",
            json!({ "path": "../outside.yaml", "name": "web", "data": {} }),
            "outside_workspace",
            "",
        ),
    ];
    for (tool, input, kind, prefix) in failures {
        let failure = call(ws, tool, input.clone()).expect_err("refused");
        assert_eq!(failure.kind, kind, "{tool} {input}: {failure:?}");
        assert!(
            failure.message.starts_with(prefix),
            "{tool} {input}: {failure:?}"
        );
    }
    // Nothing was written by the refused calls.
    let mut files: Vec<_> = std::fs::read_dir(ws)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    files.sort();
    assert_eq!(files, ["web.yaml"]);
    assert!(!ws.parent().expect("parent").join("outside.yaml").exists());
}

/// JSON (from YAML) as a Go-template value.
fn template_value(value: &Value) -> gtmpl_value::Value {
    use gtmpl_value::{Number, Value as T};
    match value {
        Value::Null => T::Nil,
        Value::Bool(b) => T::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => T::Number(Number::from(i)),
            None => T::Number(Number::from(n.as_f64().expect("a number"))),
        },
        Value::String(s) => T::String(s.clone()),
        Value::Array(items) => T::Array(items.iter().map(template_value).collect()),
        Value::Object(map) => T::Map(
            map.iter()
                .map(|(k, v)| (k.clone(), template_value(v)))
                .collect(),
        ),
    }
}

/// Renders every template of the chart in `chart` the way `helm template` does: with
/// `.Values` (values.yaml, then `overrides` merged on top), `.Chart` (from Chart.yaml)
/// and `.Release`, the helpers from `_helpers.tpl` available to all. Returns the file
/// names and the rendered text.
fn render_chart(chart: &Path, release: &str, overrides: Value) -> Vec<(String, String)> {
    let read = |name: &str| std::fs::read_to_string(chart.join(name)).expect(name);
    let chart_yaml: Value = serde_yaml_ng::from_str(&read("Chart.yaml")).expect("Chart.yaml");
    let mut values: Value = serde_yaml_ng::from_str(&read("values.yaml")).expect("values.yaml");
    merge(&mut values, overrides);
    let context = json!({
        "Values": values,
        "Chart": {
            "Name": chart_yaml["name"], "Version": chart_yaml["version"],
            "AppVersion": chart_yaml["appVersion"], "Description": chart_yaml["description"],
        },
        "Release": { "Name": release, "Namespace": NAMESPACE, "Service": "Helm" },
    });
    let helpers = read("templates/_helpers.tpl");
    let mut names: Vec<String> = std::fs::read_dir(chart.join("templates"))
        .expect("templates/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('_'))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let mut template = gtmpl::Template::with_name(name.clone());
            template
                .add_template("_helpers.tpl", helpers.clone())
                .expect("_helpers.tpl parses");
            template
                .parse(read(&format!("templates/{name}")))
                .unwrap_or_else(|e| panic!("{name} parses: {e}"));
            let text = template
                .render(&gtmpl::Context::from(template_value(&context)))
                .unwrap_or_else(|e| panic!("{name} renders: {e}"));
            (name, text)
        })
        .collect()
}

/// Merges `overrides` into `values` the way `--set` does: maps key by key.
fn merge(values: &mut Value, overrides: Value) {
    match (values, overrides) {
        (Value::Object(values), Value::Object(overrides)) => {
            for (key, value) in overrides {
                match values.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        values.insert(key, value);
                    }
                }
            }
        }
        (values, overrides) => *values = overrides,
    }
}

#[tokio::test]
async fn helm_chart_templates_render_and_pass_server_side_dry_run() {
    let (_cluster, client) = cluster().await;
    let workspace = tempfile::tempdir().expect("workspace");
    let ws = workspace.path();
    let output = call(
        ws,
        "helm_chart",
        json!({
            "name": "web", "path": "charts/web", "image": "ghcr.io/acme/web", "tag": "1.4.2",
            "health_path": "/healthz", "container_port": 8080, "service_type": "NodePort",
        }),
    )
    .expect("helm_chart");
    let written: Vec<&str> = output["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path"))
        .collect();
    assert_eq!(
        written,
        [
            "charts/web/Chart.yaml",
            "charts/web/values.yaml",
            "charts/web/templates/_helpers.tpl",
            "charts/web/templates/deployment.yaml",
            "charts/web/templates/service.yaml",
            "charts/web/templates/NOTES.txt",
        ]
    );
    let chart_yaml: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(ws.join("charts/web/Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml parses");
    assert_eq!(
        (
            &chart_yaml["apiVersion"],
            &chart_yaml["name"],
            &chart_yaml["appVersion"]
        ),
        (&json!("v2"), &json!("web"), &json!("1.4.2"))
    );

    // The defaults, then the other branches of every `if`: TCP probes, the tag taken from
    // appVersion, a fullname override, a release named like the chart.
    let variants = [
        ("shop", json!({})),
        (
            "web",
            json!({ "probe": { "path": "" }, "image": { "tag": "" }, "replicaCount": 1 }),
        ),
        (
            "shop",
            json!({ "fullnameOverride": "storefront", "service": { "type": "ClusterIP" } }),
        ),
    ];
    for (release, overrides) in variants {
        let rendered = render_chart(&ws.join("charts/web"), release, overrides.clone());
        let mut names = Vec::new();
        for (file, text) in &rendered {
            if file == "NOTES.txt" {
                assert!(
                    text.contains(&format!("in namespace {NAMESPACE}")),
                    "{text}"
                );
                assert!(!text.contains("no value"), "{text}");
                continue;
            }
            assert!(
                !text.contains("no value"),
                "{file} {overrides}: a value is missing\n{text}"
            );
            for object in apply_all(&client, file, text).await {
                names.push(
                    object["metadata"]["name"]
                        .as_str()
                        .expect("name")
                        .to_owned(),
                );
                if object["kind"] == "Deployment" {
                    let container = &object["spec"]["template"]["spec"]["containers"][0];
                    assert_eq!(container["image"], "ghcr.io/acme/web:1.4.2", "{overrides}");
                    let probe = &container["readinessProbe"];
                    match overrides["probe"]["path"].as_str() {
                        Some("") => assert_eq!(probe["tcpSocket"]["port"], "http"),
                        _ => assert_eq!(probe["httpGet"]["path"], "/healthz"),
                    }
                }
            }
        }
        let expected = match (release, overrides["fullnameOverride"].as_str()) {
            (_, Some(name)) => name.to_owned(),
            ("web", None) => "web".to_owned(),
            (release, None) => format!("{release}-web"),
        };
        assert_eq!(names, [expected.clone(), expected], "{overrides}");
    }
}

#[test]
fn terraform_modules_parse_as_hcl_with_the_expected_blocks() {
    let workspace = tempfile::tempdir().expect("workspace");
    let ws = workspace.path();
    call(
        ws,
        "terraform_module",
        json!({ "path": "tf/logs", "module": { "kind": "s3_bucket", "kms": true } }),
    )
    .expect("s3 module");
    call(
        ws,
        "terraform_module",
        json!({
            "path": "tf/queue",
            "module": {
                "kind": "resource", "resource_type": "aws_sqs_queue", "provider_version": "~> 5.0",
                "attributes": {
                    "name": { "description": "Queue name; \"quoted\" and ${not interpolated}" },
                    "delay_seconds": { "type": "number", "default": 0 },
                    "tags": { "type": "map(string)", "default": { "team": "payments" } },
                },
                "outputs": ["arn", "url"],
            },
        }),
    )
    .expect("resource module");

    // (file, block kind, the blocks' first labels) for each module.
    type Files = &'static [(&'static str, &'static str, &'static [&'static str])];
    let expected: [(&str, Files); 2] = [
        (
            "tf/logs",
            &[
                ("versions.tf", "terraform", &[]),
                (
                    "variables.tf",
                    "variable",
                    &[
                        "bucket_name",
                        "versioning_enabled",
                        "kms_key_arn",
                        "force_destroy",
                        "tags",
                    ],
                ),
                (
                    "main.tf",
                    "resource",
                    &[
                        "aws_s3_bucket",
                        "aws_s3_bucket_versioning",
                        "aws_s3_bucket_server_side_encryption_configuration",
                        "aws_s3_bucket_public_access_block",
                    ],
                ),
                (
                    "outputs.tf",
                    "output",
                    &["bucket_id", "bucket_arn", "bucket_regional_domain_name"],
                ),
            ],
        ),
        (
            "tf/queue",
            &[
                ("versions.tf", "terraform", &[]),
                (
                    "variables.tf",
                    "variable",
                    &["delay_seconds", "name", "tags"],
                ),
                ("main.tf", "resource", &["aws_sqs_queue"]),
                ("outputs.tf", "output", &["arn", "url"]),
            ],
        ),
    ];
    for (folder, files) in expected {
        let mut declared = Vec::new();
        let mut used = Vec::new();
        for (file, kind, labels) in files {
            let text = std::fs::read_to_string(ws.join(folder).join(file)).expect(file);
            let body = hcl::parse(&text).unwrap_or_else(|e| panic!("{folder}/{file}: {e}\n{text}"));
            let blocks: Vec<_> = body.blocks().collect();
            assert!(
                blocks.iter().all(|b| b.identifier() == *kind),
                "{folder}/{file}"
            );
            if labels.is_empty() {
                assert_eq!(blocks.len(), 1, "{folder}/{file}");
                let providers = blocks[0]
                    .body()
                    .blocks()
                    .find(|b| b.identifier() == "required_providers");
                assert!(providers.is_some(), "{folder}/{file}: required_providers");
            } else {
                let found: Vec<&str> = blocks.iter().map(|b| b.labels()[0].as_str()).collect();
                assert_eq!(found, *labels, "{folder}/{file}");
            }
            if *kind == "variable" {
                declared = labels.iter().map(|l| (*l).to_owned()).collect();
            }
            // Every `var.NAME` the module uses must be declared in variables.tf.
            for (index, _) in text.match_indices("var.") {
                let name: String = text[index + 4..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                used.push(name);
            }
        }
        assert!(!used.is_empty(), "{folder}");
        for name in used {
            assert!(
                declared.contains(&name),
                "{folder}: var.{name} is not declared"
            );
        }
    }
    // The description kept its quotes and its `${` as text.
    let variables = std::fs::read_to_string(ws.join("tf/queue/variables.tf")).expect("variables");
    let body = hcl::parse(&variables).expect("parses");
    let name = body
        .blocks()
        .find(|b| b.labels()[0].as_str() == "name")
        .expect("variable name");
    let description = name
        .body()
        .attributes()
        .find(|a| a.key() == "description")
        .expect("description");
    assert_eq!(
        description.expr().to_string(),
        r#""Queue name; \"quoted\" and $${not interpolated}""#
    );
}

#[test]
fn yaml_validate_reports_each_document_with_paths_and_lines() {
    let workspace = tempfile::tempdir().expect("workspace");
    let ws = workspace.path();
    let text = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: three
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
  - port: 80
    targetPort: 8080
    protocl: TCP
---
apiVersion: v1
metadata:
  name: orphan
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: broken
data:
  a: [unclosed
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: fine
data:
  a: b
";
    std::fs::write(ws.join("all.yaml"), text).expect("write");
    let output = call(ws, "yaml_validate", json!({ "path": "all.yaml" })).expect("validate");
    let documents = output["documents"].as_array().expect("documents");
    assert_eq!(documents.len(), 5);
    assert_eq!(output["valid"], false);
    assert_eq!(output["error_count"], 4);
    let first_error = |i: usize| documents[i]["errors"][0].clone();

    assert_eq!(first_error(0)["path"], "spec.replicas");
    assert_eq!(first_error(0)["line"], 6);
    assert_eq!(first_error(1)["path"], "spec.ports[0].protocl");
    assert_eq!(first_error(1)["line"], 21);
    assert_eq!(first_error(1)["message"], "unknown field");
    assert_eq!(first_error(2)["message"], "kind is missing");
    assert_eq!(documents[2]["line"], 22, "a document starts at its `---`");
    assert!(first_error(3)["message"]
        .as_str()
        .expect("message")
        .starts_with("YAML syntax"));
    let line = first_error(3)["line"].as_u64().expect("line");
    assert!((32..=33).contains(&line), "syntax error at line {line}");
    assert_eq!(documents[4]["errors"], json!([]));
    assert_eq!(documents[4]["schema_checked"], true);

    // Inline text works the same; a workspace escape is refused.
    let output = call(
        ws,
        "yaml_validate",
        json!({ "content": "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n" }),
    )
    .expect("inline");
    assert_eq!(output["valid"], true);
    let failure = call(ws, "yaml_validate", json!({ "path": "../all.yaml" })).expect_err("outside");
    assert_eq!(failure.kind, "outside_workspace");
}
