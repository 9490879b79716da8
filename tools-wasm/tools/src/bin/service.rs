//! `service`: writes a Kubernetes Service (v1) into the workspace.

#![forbid(unsafe_code)]

#[path = "../generate.rs"]
mod generate;

use deckhand_tool_protocol::{run, ToolError, ToolInfo, WorkspaceAccess};
use generate::Written;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The API server's default NodePort range.
const NODE_PORTS: std::ops::RangeInclusive<u32> = 30000..=32767;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Workspace-relative path of the YAML file to write, e.g. `k8s/web/service.yaml`.
    path: String,
    /// Replace the file if it exists (default false: an existing file is an error).
    #[serde(default)]
    overwrite: bool,
    /// Name of the Service, which becomes its DNS name (a DNS-1035 label: lowercase
    /// letters, digits, '-', starting with a letter).
    name: String,
    /// Namespace to put the Service in; omit to use the namespace it is applied to.
    namespace: Option<String>,
    /// Labels of the pods to send traffic to (default `app.kubernetes.io/name: NAME`, what
    /// the deployment tool puts on its pods).
    selector: Option<BTreeMap<String, String>>,
    /// The ports to expose (at least one).
    ports: Vec<Port>,
    /// How the Service is exposed (default ClusterIP: inside the cluster only).
    #[serde(rename = "type", default)]
    service_type: ServiceType,
    /// Extra labels on the Service.
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// How a Service is reached.
#[derive(Deserialize, JsonSchema, Default, Clone, Copy, PartialEq, Eq)]
enum ServiceType {
    /// A virtual IP inside the cluster.
    #[default]
    ClusterIP,
    /// ClusterIP plus a port on every node.
    NodePort,
    /// NodePort plus an external load balancer from the cloud provider.
    LoadBalancer,
}

/// One exposed port.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Port {
    /// Port name (required when there are several ports), e.g. `http`.
    name: Option<String>,
    /// Port the Service listens on (1-65535).
    port: u32,
    /// Port on the pods: a number, or the name of a container port (default: `port`).
    target_port: Option<TargetPort>,
    /// TCP (default), UDP or SCTP.
    #[serde(default)]
    protocol: Protocol,
    /// Fixed node port for NodePort/LoadBalancer Services (30000-32767); omit to let the
    /// cluster pick.
    node_port: Option<u32>,
}

/// A port number or a named container port.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum TargetPort {
    /// A port number.
    Number(u32),
    /// The name of a container port.
    Name(String),
}

/// A transport protocol.
#[derive(Deserialize, JsonSchema, Default, Clone, Copy)]
enum Protocol {
    /// TCP.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

fn port(index: usize, given: &Port, several: bool, service_type: ServiceType) -> Result<Value, ToolError> {
    let field = format!("ports[{index}]");
    let mut port = Map::new();
    match &given.name {
        Some(name) => {
            generate::port_name(&format!("{field}.name"), name)?;
            port.insert("name".into(), name.clone().into());
        }
        None if several => {
            return Err(ToolError::invalid_input(format!("{field}.name: a Service with several ports needs a name on each")))
        }
        None => {}
    }
    let number = generate::port(&format!("{field}.port"), given.port)?;
    port.insert("port".into(), number.into());
    let target = match &given.target_port {
        None => Value::from(number),
        Some(TargetPort::Number(n)) => generate::port(&format!("{field}.target_port"), *n)?.into(),
        Some(TargetPort::Name(name)) => {
            generate::port_name(&format!("{field}.target_port"), name)?;
            name.clone().into()
        }
    };
    port.insert("targetPort".into(), target);
    let protocol = match given.protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    };
    port.insert("protocol".into(), protocol.into());
    if let Some(node_port) = given.node_port {
        if service_type == ServiceType::ClusterIP {
            return Err(ToolError::invalid_input(format!("{field}.node_port: only NodePort and LoadBalancer Services have node ports")));
        }
        if !NODE_PORTS.contains(&node_port) {
            return Err(ToolError::invalid_input(format!("{field}.node_port: {node_port} is outside 30000-32767")));
        }
        port.insert("nodePort".into(), node_port.into());
    }
    Ok(Value::Object(port))
}

fn build(input: &Input) -> Result<Vec<Value>, ToolError> {
    generate::dns1035_label("name", &input.name)?;
    generate::name_and_namespace(&input.name, input.namespace.as_deref())?;
    generate::labels("labels", &input.labels)?;
    let selector = input
        .selector
        .clone()
        .unwrap_or_else(|| BTreeMap::from([(generate::NAME_LABEL.to_owned(), input.name.clone())]));
    if selector.is_empty() {
        return Err(ToolError::invalid_input("selector: an empty selector would match no pods; omit it for the default"));
    }
    generate::labels("selector", &selector)?;
    if input.ports.is_empty() {
        return Err(ToolError::invalid_input("ports: give at least one port"));
    }
    let several = input.ports.len() > 1;
    let ports = input
        .ports
        .iter()
        .enumerate()
        .map(|(index, p)| port(index, p, several, input.service_type))
        .collect::<Result<Vec<_>, _>>()?;
    // The API server refuses duplicates; name the offending entry instead.
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for (index, port) in ports.iter().enumerate() {
        if let Some(name) = port["name"].as_str() {
            if !names.insert(name.to_owned()) {
                return Err(ToolError::invalid_input(format!("ports[{index}].name: {name:?} is used twice")));
            }
        }
        if !numbers.insert((port["port"].as_i64(), port["protocol"].as_str().map(str::to_owned))) {
            return Err(ToolError::invalid_input(format!("ports[{index}].port: {} is used twice", port["port"])));
        }
    }
    let service_type = match input.service_type {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Ok(vec![json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": generate::metadata(&input.name, input.namespace.as_deref(), &input.labels),
        "spec": { "type": service_type, "selector": selector, "ports": ports },
    })])
}

fn service(input: Input) -> Result<Written, ToolError> {
    let objects = build(&input)?;
    generate::write_manifest(&input.path, input.overwrite, "Service generated by deckhand.", &objects, Vec::new())
}

fn main() {
    run(
        ToolInfo {
            name: "service",
            description: "Write a Kubernetes Service YAML (selector, ports, type ClusterIP/NodePort/LoadBalancer) to a workspace file.",
            workspace: WorkspaceAccess::Write,
        },
        service,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(extra: Value) -> Input {
        let mut base = json!({ "path": "s.yaml", "name": "web", "ports": [{ "port": 80, "target_port": "http" }] });
        if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
            base.extend(extra);
        }
        serde_json::from_value(base).expect("valid input")
    }

    #[test]
    fn defaults_select_the_deployment_tools_pods() {
        let s = &build(&input(json!({}))).unwrap()[0];
        assert_eq!(s["spec"]["selector"], json!({ "app.kubernetes.io/name": "web" }));
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["ports"][0], json!({ "port": 80, "targetPort": "http", "protocol": "TCP" }));
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (json!({ "name": "1web" }), "name:"),
            (json!({ "ports": [] }), "ports:"),
            (json!({ "ports": [{ "port": 0 }] }), "ports[0].port:"),
            (json!({ "ports": [{ "port": 80 }, { "name": "b", "port": 81 }] }), "ports[0].name:"),
            (json!({ "ports": [{ "name": "a", "port": 80 }, { "name": "a", "port": 81 }] }), "ports[1].name:"),
            (json!({ "ports": [{ "name": "a", "port": 80 }, { "name": "b", "port": 80 }] }), "ports[1].port:"),
            (json!({ "ports": [{ "port": 80, "node_port": 30080 }] }), "ports[0].node_port:"),
            (json!({ "type": "NodePort", "ports": [{ "port": 80, "node_port": 80 }] }), "ports[0].node_port:"),
            (json!({ "selector": {} }), "selector:"),
        ];
        for (extra, prefix) in cases {
            let error = build(&input(extra.clone())).unwrap_err();
            assert!(error.message.starts_with(prefix), "{extra}: {}", error.message);
        }
    }

    #[test]
    fn node_ports_are_kept_for_node_port_services() {
        let s = &build(&input(json!({ "type": "NodePort", "ports": [{ "port": 80, "node_port": 30080 }] }))).unwrap()[0];
        assert_eq!(s["spec"]["ports"][0]["nodePort"], 30080);
    }
}
