//! `ingress`: writes a Kubernetes Ingress (networking.k8s.io/v1) into the workspace.

#![forbid(unsafe_code)]

#[path = "../generate.rs"]
mod generate;

use deckhand_tool_protocol::{run, ToolError, ToolInfo, WorkspaceAccess};
use generate::Written;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Workspace-relative path of the YAML file to write, e.g. `k8s/web/ingress.yaml`.
    path: String,
    /// Replace the file if it exists (default false: an existing file is an error).
    #[serde(default)]
    overwrite: bool,
    /// Name of the Ingress (a DNS-1123 label).
    name: String,
    /// Namespace to put the Ingress in (the Services must be in the same one); omit to
    /// use the namespace it is applied to.
    namespace: Option<String>,
    /// Host name the rules match, e.g. `shop.example.com` (`*.example.com` matches one
    /// level of subdomains).
    host: String,
    /// Routes from URL paths to Services (at least one).
    paths: Vec<Route>,
    /// Name of a `kubernetes.io/tls` Secret holding the certificate for `host`; omit for
    /// plain HTTP.
    tls_secret: Option<String>,
    /// IngressClass that should serve this Ingress, e.g. `nginx`; omit for the cluster's
    /// default class.
    ingress_class_name: Option<String>,
    /// Annotations for the ingress controller, e.g.
    /// `nginx.ingress.kubernetes.io/proxy-body-size: 8m`.
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    /// Extra labels on the Ingress.
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// One path routed to a Service port.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Route {
    /// URL path, starting with `/` (default `/`).
    path: Option<String>,
    /// How `path` matches (default Prefix).
    #[serde(default)]
    path_type: PathType,
    /// Name of the Service to route to.
    service: String,
    /// The Service's port: a number, or the name of a Service port.
    port: ServicePort,
}

/// How an Ingress path matches a request path.
#[derive(Deserialize, JsonSchema, Default, Clone, Copy)]
enum PathType {
    /// Matches the path and everything below it, by `/`-separated segments.
    #[default]
    Prefix,
    /// Matches the path exactly.
    Exact,
    /// Left to the ingress controller.
    ImplementationSpecific,
}

/// A Service port given by number or name.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum ServicePort {
    /// The port number.
    Number(u32),
    /// The port's name.
    Name(String),
}

/// A host as Ingress accepts it: a DNS subdomain, optionally with a leading `*.` label.
fn host(host: &str) -> Result<(), ToolError> {
    let rest = host.strip_prefix("*.").unwrap_or(host);
    generate::dns_subdomain("host", rest)?;
    if !rest.contains('.') && host.starts_with("*.") {
        return Err(ToolError::invalid_input(format!("host: wildcard {host:?} needs at least two labels after '*.'")));
    }
    Ok(())
}

fn route(index: usize, route: &Route) -> Result<Value, ToolError> {
    let field = format!("paths[{index}]");
    let path = route.path.as_deref().unwrap_or("/");
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ToolError::invalid_input(format!("{field}.path: {path:?} must start with '/' and have no spaces")));
    }
    generate::dns1035_label(&format!("{field}.service"), &route.service)?;
    let port = match &route.port {
        ServicePort::Number(n) => json!({ "number": generate::port(&format!("{field}.port"), *n)? }),
        ServicePort::Name(name) => {
            generate::port_name(&format!("{field}.port"), name)?;
            json!({ "name": name })
        }
    };
    let path_type = match route.path_type {
        PathType::Prefix => "Prefix",
        PathType::Exact => "Exact",
        PathType::ImplementationSpecific => "ImplementationSpecific",
    };
    Ok(json!({
        "path": path,
        "pathType": path_type,
        "backend": { "service": { "name": route.service, "port": port } },
    }))
}

fn build(input: &Input) -> Result<(Vec<Value>, Vec<String>), ToolError> {
    generate::name_and_namespace(&input.name, input.namespace.as_deref())?;
    generate::labels("labels", &input.labels)?;
    generate::annotations("annotations", &input.annotations)?;
    host(&input.host)?;
    if input.paths.is_empty() {
        return Err(ToolError::invalid_input("paths: give at least one path"));
    }
    let paths = input.paths.iter().enumerate().map(|(i, r)| route(i, r)).collect::<Result<Vec<_>, _>>()?;

    let mut metadata = generate::metadata(&input.name, input.namespace.as_deref(), &input.labels);
    if !input.annotations.is_empty() {
        if let Some(metadata) = metadata.as_object_mut() {
            metadata.insert("annotations".into(), json!(input.annotations));
        }
    }
    let mut spec = Map::new();
    let mut warnings = Vec::new();
    match &input.ingress_class_name {
        Some(class) => {
            generate::dns_subdomain("ingress_class_name", class)?;
            spec.insert("ingressClassName".into(), class.clone().into());
        }
        None => warnings.push("no ingress_class_name: the cluster's default IngressClass must exist".to_owned()),
    }
    match &input.tls_secret {
        Some(secret) => {
            generate::dns_subdomain("tls_secret", secret)?;
            spec.insert("tls".into(), json!([{ "hosts": [input.host], "secretName": secret }]));
        }
        None => warnings.push("no tls_secret: the host is served over plain HTTP".to_owned()),
    }
    spec.insert("rules".into(), json!([{ "host": input.host, "http": { "paths": paths } }]));
    let ingress = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": spec,
    });
    Ok((vec![ingress], warnings))
}

fn ingress(input: Input) -> Result<Written, ToolError> {
    let (objects, warnings) = build(&input)?;
    generate::write_manifest(&input.path, input.overwrite, "Ingress generated by deckhand.", &objects, warnings)
}

fn main() {
    run(
        ToolInfo {
            name: "ingress",
            description: "Write a Kubernetes Ingress YAML (host, paths to Services, optional TLS secret and ingressClassName) to a workspace file.",
            workspace: WorkspaceAccess::Write,
        },
        ingress,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(extra: Value) -> Input {
        let mut base = json!({ "path": "i.yaml", "name": "web", "host": "shop.example.com", "paths": [{ "service": "web", "port": 80 }] });
        if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
            base.extend(extra);
        }
        serde_json::from_value(base).expect("valid input")
    }

    #[test]
    fn routes_tls_and_class_are_written() {
        let (objects, warnings) = build(&input(json!({ "tls_secret": "shop-tls", "ingress_class_name": "nginx" }))).unwrap();
        let spec = &objects[0]["spec"];
        assert_eq!(spec["ingressClassName"], "nginx");
        assert_eq!(spec["tls"][0], json!({ "hosts": ["shop.example.com"], "secretName": "shop-tls" }));
        assert_eq!(
            spec["rules"][0]["http"]["paths"][0],
            json!({ "path": "/", "pathType": "Prefix", "backend": { "service": { "name": "web", "port": { "number": 80 } } } })
        );
        assert!(warnings.is_empty());
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (json!({ "host": "Shop.example.com" }), "host:"),
            (json!({ "host": "*.com" }), "host:"),
            (json!({ "paths": [] }), "paths:"),
            (json!({ "paths": [{ "path": "api", "service": "web", "port": 80 }] }), "paths[0].path:"),
            (json!({ "paths": [{ "service": "web", "port": 0 }] }), "paths[0].port:"),
            (json!({ "paths": [{ "service": "Web", "port": 80 }] }), "paths[0].service:"),
            (json!({ "tls_secret": "a_b" }), "tls_secret:"),
            (json!({ "annotations": { "bad key": "x" } }), "annotations:"),
        ];
        for (extra, prefix) in cases {
            let error = build(&input(extra.clone())).unwrap_err();
            assert!(error.message.starts_with(prefix), "{extra}: {}", error.message);
        }
    }
}
