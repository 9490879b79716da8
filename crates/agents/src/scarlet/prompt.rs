//! What Scarlet tells the model: her job, the agents, the tools relevant to the request
//! with their input signatures (the others by name), the rules a plan must keep, one
//! example, and the request with its context.

use deckhand_runtime::{AgentRole, CatalogEntry, PlanRequest, ToolCatalog};
use serde_json::{json, Value};

/// At most this many history entries and similar threads go into the prompt.
const MAX_CONTEXT_ENTRIES: usize = 6;

/// One history entry or similar thread is cut to this many characters.
const MAX_ENTRY_CHARS: usize = 400;

/// History and similar threads together take at most this many characters (the newest
/// history and the most similar threads first): a small window has room for the
/// request's context, not for a whole conversation.
const MAX_CONTEXT_CHARS: usize = 2400;

/// A tool's description in the prompt is cut to this many characters: its first
/// sentence is what a planner needs.
const MAX_DESCRIPTION_CHARS: usize = 160;

/// The system prompt: `detailed` tools with their signatures, `named` ones by name only.
pub fn system(
    catalog: &ToolCatalog,
    request: &PlanRequest,
    detailed: &[&CatalogEntry],
    named: &[&CatalogEntry],
) -> String {
    let agents: Vec<String> = AgentRole::ALL
        .iter()
        .map(|agent| format!("- {}: {}", agent.id(), agent.responsibility()))
        .collect();
    let tools: Vec<String> = detailed.iter().map(|entry| tool_line(entry)).collect();
    let others = match named.is_empty() {
        true => String::new(),
        false => format!(
            "\nOther tools, inputs not shown (use one only when none above will do; its input is checked): {}\n",
            named
                .iter()
                .map(|entry| entry.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
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
Agents:\n{}\n\nTools (use only these; inputs must match exactly, `?` marks an optional field):\n{}\n{others}\n\
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

/// One tool as the prompt shows it in full: name, whether it mutates, its description
/// (first sentence) and its input signature.
pub fn tool_line(entry: &CatalogEntry) -> String {
    format!(
        "- {} ({}): {}\n  input: {}",
        entry.name,
        if entry.mutating {
            "MUTATING, waits for approval"
        } else {
            "no cluster change"
        },
        compact_description(&entry.description),
        signature(&entry.input_schema)
    )
}

/// The first sentence of a description, at most [`MAX_DESCRIPTION_CHARS`].
fn compact_description(description: &str) -> String {
    let description = description.trim();
    let first = description
        .char_indices()
        .find(|(i, c)| *c == '.' && description[i + 1..].starts_with(|n: char| n.is_whitespace()))
        .map_or(description, |(i, _)| &description[..=i]);
    cut(first, MAX_DESCRIPTION_CHARS)
}

/// `text` cut to `max` characters, with `…` where it was cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// The user message: context (cut to its budget), then the request.
pub fn user(request: &PlanRequest) -> String {
    let mut text = String::new();
    if let Some(namespace) = &request.namespace {
        text.push_str(&format!("Namespace: {namespace}\n"));
    }
    let mut room = MAX_CONTEXT_CHARS;
    let mut take = |entries: &mut dyn Iterator<Item = &String>| -> Vec<String> {
        let mut kept = Vec::new();
        for entry in entries.take(MAX_CONTEXT_ENTRIES) {
            if room == 0 {
                break;
            }
            let entry = cut(entry.trim(), MAX_ENTRY_CHARS.min(room));
            room = room.saturating_sub(entry.chars().count());
            kept.push(entry);
        }
        kept
    };
    // The newest history first for the budget, shown oldest first.
    let mut history = take(&mut request.history.iter().rev());
    history.reverse();
    let similar = take(&mut request.similar_threads.iter());
    if !history.is_empty() {
        text.push_str("The conversation so far:\n");
        for entry in &history {
            text.push_str(&format!("- {entry}\n"));
        }
    }
    if !similar.is_empty() {
        text.push_str("Similar past threads (for reference; the request decides):\n");
        for entry in &similar {
            text.push_str(&format!("- {entry}\n"));
        }
    }
    text.push_str(&format!("Request: {}", request.text));
    text
}

/// The repair request for a plan that failed validation; `unseen` are tools the plan
/// used whose inputs the prompt did not show.
pub fn repair(problems: &[String], unseen: &[&CatalogEntry]) -> String {
    let mut text = format!("That plan is invalid:\n- {}\n", problems.join("\n- "));
    if !unseen.is_empty() {
        text.push_str("Inputs of tools you used that were not shown above:\n");
        for entry in unseen {
            text.push_str(&tool_line(entry));
            text.push('\n');
        }
    }
    text.push_str("Reply with the whole corrected plan as one JSON document.");
    text
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

    #[test]
    fn descriptions_keep_their_first_sentence_and_context_keeps_its_budget() {
        assert_eq!(
            compact_description("Reads one object. Judged by the policies (e.g. a get)."),
            "Reads one object."
        );
        assert_eq!(
            compact_description("Version 1.27 is fine"),
            "Version 1.27 is fine"
        );
        assert_eq!(cut(&"é".repeat(10), 3), "ééé…");
        let request = PlanRequest {
            thread_id: deckhand_runtime::ThreadId::new(),
            text: "scale web to 3".into(),
            namespace: None,
            history: (0..20)
                .map(|i| format!("turn {i}: {}", "x".repeat(1000)))
                .collect(),
            similar_threads: vec!["y".repeat(5000); 10],
        };
        let text = user(&request);
        assert!(
            text.chars().count() < MAX_CONTEXT_CHARS + 400,
            "{}",
            text.len()
        );
        assert!(text.contains("turn 19"), "the newest history stays");
        assert!(!text.contains("turn 0:"), "the oldest goes");
        assert!(text.ends_with("Request: scale web to 3"));
    }
}
