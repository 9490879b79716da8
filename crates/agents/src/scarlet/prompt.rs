//! What Scarlet tells the model: her job, the agents, the tools with their input
//! signatures, the rules a plan must keep, one example, and the request with its context.

use deckhand_runtime::{AgentRole, PlanRequest, ToolCatalog};
use serde_json::{json, Value};

/// At most this many history entries and similar threads go into the prompt.
const MAX_CONTEXT_ENTRIES: usize = 6;

/// The system prompt.
pub fn system(catalog: &ToolCatalog, request: &PlanRequest) -> String {
    let agents: Vec<String> = AgentRole::ALL
        .iter()
        .map(|agent| format!("- {}: {}", agent.id(), agent.responsibility()))
        .collect();
    let tools: Vec<String> = catalog
        .entries()
        .map(|entry| {
            format!(
                "- {} ({}): {}\n  input: {}",
                entry.name,
                if entry.mutating {
                    "MUTATING, waits for approval"
                } else {
                    "no cluster change"
                },
                entry.description,
                signature(&entry.input_schema)
            )
        })
        .collect();
    let namespace = request.namespace.as_deref().unwrap_or("default");
    let example = match (catalog.get("kube_get"), catalog.get("kube_scale")) {
        (Some(_), Some(_)) => format!(
            "\nExample, for \"scale deployment web to 3 in namespace shop\":\n{}\n",
            json!({"steps": [
                {"id": "check", "agent": "sre", "title": "Check that Deployment web exists in shop", "tool": "kube_get",
                 "input": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"},
                 "depends_on": [], "mutating": false, "rationale": "Confirm the target before changing it."},
                {"id": "scale", "agent": "sre", "title": "Scale Deployment web in shop to 3", "tool": "kube_scale",
                 "input": {"kind": "Deployment", "namespace": "shop", "name": "web", "replicas": 3},
                 "depends_on": ["check"], "mutating": true, "rationale": "The requested change; waits for approval."}
            ]})
        ),
        _ => String::new(),
    };
    format!(
        "You are Scarlet, the planner of deckhand, a Kubernetes DevOps assistant. AI suggests, the engineer decides: \
you write a plan, a person approves it, and only then does anything change.\n\n\
Turn the request into a plan: a JSON object {{\"steps\": [...]}}, each step with id, agent, title, tool, input, depends_on, mutating, rationale.\n\n\
Agents:\n{}\n\nTools (use only these; inputs must match exactly, `?` marks an optional field):\n{}\n\n\
Rules:\n\
- Step ids: letters, digits, '-', '_', '.'; unique.\n\
- A step may use an earlier step's output with the string \"{{{{steps.ID.output}}}}\" or \"{{{{steps.ID.output.FIELD}}}}\", and must then depend on that step (directly or through others).\n\
- Read before you change: confirm a target with a read-only step before a mutating one.\n\
- To create or change objects, write YAML with a generator tool, validate it, run kube_dry_run on the file, then kube_apply it.\n\
- Diagnoses and scans change nothing: no mutating steps.\n\
- The namespace is {namespace} unless the request names another.\n\
- Never delete namespaces, never touch kube-system, never grant cluster-admin.\n\
- Keep plans short: only the steps the request needs.\n{example}\n\
Reply with only the JSON document.",
        agents.join("\n"),
        tools.join("\n"),
    )
}

/// The user message: context, then the request.
pub fn user(request: &PlanRequest) -> String {
    let mut text = String::new();
    if let Some(namespace) = &request.namespace {
        text.push_str(&format!("Namespace: {namespace}\n"));
    }
    let recent = request.history.len().saturating_sub(MAX_CONTEXT_ENTRIES);
    if !request.history.is_empty() {
        text.push_str("The conversation so far:\n");
        for entry in &request.history[recent..] {
            text.push_str(&format!("- {entry}\n"));
        }
    }
    if !request.similar_threads.is_empty() {
        text.push_str("Similar past threads (for reference; the request decides):\n");
        for entry in request.similar_threads.iter().take(MAX_CONTEXT_ENTRIES) {
            text.push_str(&format!("- {entry}\n"));
        }
    }
    text.push_str(&format!("Request: {}", request.text));
    text
}

/// The repair request for a plan that failed validation.
pub fn repair(problems: &[String]) -> String {
    format!(
        "That plan is invalid:\n- {}\nReply with the whole corrected plan as one JSON document.",
        problems.join("\n- ")
    )
}

/// A schema as a compact signature a model reads at a glance:
/// `{kind: "Deployment"|"StatefulSet", name: string, replicas?: integer}` (`?` marks an
/// optional field). Full JSON schemas of every tool would not fit a small model's window.
fn signature(schema: &Value) -> String {
    render(schema, schema, 0)
}

/// Nesting deeper than this is shown as `{...}`.
const MAX_SIGNATURE_DEPTH: usize = 6;

fn render(schema: &Value, root: &Value, depth: usize) -> String {
    if depth > MAX_SIGNATURE_DEPTH {
        return "{...}".to_owned();
    }
    let Some(fields) = schema.as_object() else {
        return "any".to_owned();
    };
    if let Some(reference) = fields.get("$ref").and_then(Value::as_str) {
        let target = reference
            .strip_prefix("#/")
            .map(|path| format!("/{path}"))
            .and_then(|pointer| root.pointer(&pointer));
        return target
            .map(|t| render(t, root, depth + 1))
            .unwrap_or_else(|| "any".to_owned());
    }
    if let Some(value) = fields.get("const") {
        return value.to_string();
    }
    if let Some(values) = fields.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("|");
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = fields.get(key).and_then(Value::as_array) {
            let rendered: Vec<String> = options
                .iter()
                .filter(|o| o.get("type").and_then(Value::as_str) != Some("null"))
                .map(|o| render(o, root, depth))
                .collect();
            // A oneOf of `required` alternatives only constrains the properties beside it.
            if rendered.iter().all(|r| r == "any") && fields.contains_key("properties") {
                break;
            }
            return rendered.join(" | ");
        }
    }
    let types: Vec<&str> = match fields.get("type") {
        Some(Value::String(single)) => vec![single.as_str()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ if fields.contains_key("properties") => vec!["object"],
        _ => Vec::new(),
    };
    match types.as_slice() {
        ["object"] => match fields.get("properties").and_then(Value::as_object) {
            Some(properties) => {
                let required: Vec<&str> = fields
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let parts: Vec<String> = properties
                    .iter()
                    .map(|(name, property)| {
                        let optional = if required.contains(&name.as_str()) {
                            ""
                        } else {
                            "?"
                        };
                        format!("{name}{optional}: {}", render(property, root, depth + 1))
                    })
                    .collect();
                let alternatives = match fields.get("oneOf").and_then(Value::as_array) {
                    Some(options) if !options.is_empty() => {
                        let sets: Vec<String> = options
                            .iter()
                            .filter_map(|o| o.get("required").and_then(Value::as_array))
                            .map(|r| {
                                r.iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join("+")
                            })
                            .collect();
                        format!(" (give exactly one of: {})", sets.join(", "))
                    }
                    _ => String::new(),
                };
                format!("{{{}}}{alternatives}", parts.join(", "))
            }
            None => match fields.get("additionalProperties") {
                Some(Value::Object(_)) => format!(
                    "{{string: {}}}",
                    render(&fields["additionalProperties"], root, depth + 1)
                ),
                _ => "object".to_owned(),
            },
        },
        ["array"] => format!(
            "[{}]",
            fields
                .get("items")
                .map(|i| render(i, root, depth + 1))
                .unwrap_or_else(|| "any".to_owned())
        ),
        [] => "any".to_owned(),
        many => many.join("|"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_short_and_keep_what_validates() {
        let schema = json!({"type": "object", "required": ["kind", "name"], "additionalProperties": false,
            "properties": {"kind": {"enum": ["Deployment", "StatefulSet"]}, "name": {"type": "string", "description": "long words"},
                "replicas": {"type": ["integer", "null"], "minimum": 0},
                "probe": {"anyOf": [{"$ref": "#/$defs/Probe"}, {"type": "null"}]},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}},
            "$defs": {"Probe": {"type": "object", "properties": {"path": {"type": "string"}}}}});
        assert_eq!(
            signature(&schema),
            r#"{kind: "Deployment"|"StatefulSet", labels?: {string: string}, name: string, probe?: {path?: string}, replicas?: integer}"#
        );
        let either = json!({"type": "object", "oneOf": [{"required": ["manifests"]}, {"required": ["file"]}],
            "properties": {"file": {"type": "string"}, "manifests": {"type": "array", "items": {"type": "object"}}}});
        assert_eq!(
            signature(&either),
            "{file?: string, manifests?: [object]} (give exactly one of: manifests, file)"
        );
    }
}
