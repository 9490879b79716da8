//! JSON in a model's prose: structured answers and tool calls from models that write
//! them as text (in a ```json fence, in Qwen's `<tool_call>` tags, or bare in a sentence)
//! instead of using the API's native fields.

use crate::chat::ToolDefinition;
use crate::message::ToolCall;
use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;

static FENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s)```[ \t]*([A-Za-z_]*)[ \t]*\r?\n?(.*?)```").expect("static regex")
});
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)<tool_call>\s*(.*?)\s*</tool_call>").expect("static regex"));

/// A JSON value found in text, and where: `span` covers its fence or tag when it had one.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The value.
    pub value: Value,
    /// Byte range in the text.
    pub span: (usize, usize),
}

/// Every JSON object or array in `text`, fenced and tagged ones first, then bare ones
/// outside them, in order of appearance.
pub fn find_json(text: &str) -> Vec<Found> {
    let mut found = Vec::new();
    let mut covered: Vec<(usize, usize)> = Vec::new();
    for captures in FENCE.captures_iter(text).chain(TAG.captures_iter(text)) {
        let (Some(whole), Some(inner)) = (captures.get(0), captures.get(captures.len() - 1)) else {
            continue;
        };
        if covered
            .iter()
            .any(|(s, e)| whole.start() < *e && *s < whole.end())
        {
            continue;
        }
        covered.push((whole.start(), whole.end()));
        for value in values_in(inner.as_str()) {
            found.push(Found {
                value,
                span: (whole.start(), whole.end()),
            });
        }
    }
    let mut position = 0;
    while let Some(offset) = text[position..].find(['{', '[']) {
        let start = position + offset;
        if let Some((_, end)) = covered.iter().find(|(s, e)| *s <= start && start < *e) {
            position = *end;
            continue;
        }
        let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) if value.is_object() || value.is_array() => {
                let end = start + stream.byte_offset();
                found.push(Found {
                    value,
                    span: (start, end),
                });
                position = end;
            }
            _ => position = start + 1,
        }
    }
    found
}

/// The JSON values in a fence's or tag's content: usually one; several when a model
/// writes one per line.
fn values_in(inner: &str) -> Vec<Value> {
    if let Ok(value) = serde_json::from_str::<Value>(inner.trim()) {
        return vec![value];
    }
    serde_json::Deserializer::from_str(inner)
        .into_iter::<Value>()
        .map_while(std::result::Result::ok)
        .collect()
}

/// The model's structured answer: the text itself when it is JSON, else the first JSON
/// object or array in it.
pub fn extract_json(text: &str) -> Option<Value> {
    if let Ok(value) = serde_json::from_str::<Value>(text.trim()) {
        return Some(value);
    }
    find_json(text).into_iter().next().map(|found| found.value)
}

/// Tool calls a model wrote as JSON in its text, for tools in `tools` only, and the text
/// without them. Shapes understood: `{"name": .., "arguments": ..}` (also `parameters`,
/// `args`, `input`), `{"tool": .., ..}`, `{"function": {"name": .., "arguments": ..}}`,
/// `{"tool_calls": [..]}` and arrays of these; arguments may be an object or JSON text.
pub fn extract_tool_calls(text: &str, tools: &[ToolDefinition]) -> (Vec<ToolCall>, String) {
    let mut calls = Vec::new();
    let mut spans = Vec::new();
    for found in find_json(text) {
        let before = calls.len();
        collect_calls(&found.value, tools, &mut calls);
        if calls.len() > before {
            spans.push(found.span);
        }
    }
    if calls.is_empty() {
        return (calls, text.to_owned());
    }
    let mut rest = String::with_capacity(text.len());
    let mut position = 0;
    spans.sort_unstable();
    for (start, end) in spans {
        if start >= position {
            rest.push_str(&text[position..start]);
            position = end;
        }
    }
    rest.push_str(&text[position..]);
    for (index, call) in calls.iter_mut().enumerate() {
        call.id = format!("call_text_{index}");
    }
    (calls, rest.trim().to_owned())
}

fn collect_calls(value: &Value, tools: &[ToolDefinition], calls: &mut Vec<ToolCall>) {
    match value {
        Value::Array(items) => {
            for item in items {
                collect_calls(item, tools, calls);
            }
        }
        Value::Object(object) => {
            if let Some(list) = object.get("tool_calls") {
                collect_calls(list, tools, calls);
                return;
            }
            if let Some(function) = object.get("function").filter(|f| f.is_object()) {
                collect_calls(function, tools, calls);
                return;
            }
            let name = ["name", "tool", "tool_name", "function"]
                .iter()
                .find_map(|key| object.get(*key).and_then(Value::as_str));
            let Some(name) = name else { return };
            if !tools.iter().any(|tool| tool.name == name) {
                return;
            }
            let arguments = ["arguments", "parameters", "args", "input"]
                .iter()
                .find_map(|key| object.get(*key))
                .cloned()
                .unwrap_or_else(|| Value::Object(Default::default()));
            let arguments = match arguments {
                Value::String(text) => match serde_json::from_str::<Value>(&text) {
                    Ok(value) => value,
                    Err(_) => return,
                },
                other => other,
            };
            if !arguments.is_object() {
                return;
            }
            calls.push(ToolCall {
                id: String::new(),
                name: name.to_owned(),
                arguments,
            });
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> Vec<ToolDefinition> {
        vec![ToolDefinition {
            name: "safe_get".into(),
            description: "read".into(),
            parameters: json!({"type": "object"}),
        }]
    }

    #[test]
    fn json_from_fences_prose_and_bare_text() {
        assert_eq!(extract_json(r#" {"a": 1} "#), Some(json!({"a": 1})));
        let prose = "Here is the plan:\n```json\n{\"steps\": [1, 2]}\n```\nLet me know.";
        assert_eq!(extract_json(prose), Some(json!({"steps": [1, 2]})));
        let bare = r#"Sure! The answer is {"ok": true, "note": "a } in a string"} as asked."#;
        assert_eq!(
            extract_json(bare),
            Some(json!({"ok": true, "note": "a } in a string"}))
        );
        assert_eq!(extract_json("no json at all {oops"), None);
    }

    #[test]
    fn fenced_tool_calls_like_small_qwen_models_write_them() {
        let text = "I will look at the pods.\n```json\n{\"name\": \"safe_get\", \"arguments\": {\"kind\": \"Pod\", \"namespace\": \"web\"}}\n```";
        let (calls, rest) = extract_tool_calls(text, &tools());
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "safe_get");
        assert_eq!(
            calls[0].arguments,
            json!({"kind": "Pod", "namespace": "web"})
        );
        assert_eq!(rest, "I will look at the pods.");

        let tagged = "<tool_call>\n{\"name\": \"safe_get\", \"arguments\": \"{\\\"kind\\\": \\\"Node\\\"}\"}\n</tool_call>";
        let (calls, rest) = extract_tool_calls(tagged, &tools());
        assert_eq!(calls[0].arguments, json!({"kind": "Node"}));
        assert_eq!(rest, "");

        let nested = r#"{"tool_calls": [{"function": {"name": "safe_get", "arguments": {"kind": "Service"}}}]}"#;
        assert_eq!(extract_tool_calls(nested, &tools()).0.len(), 1);
    }

    #[test]
    fn unknown_tools_and_plain_json_are_not_calls() {
        let text = "```json\n{\"name\": \"rm_rf\", \"arguments\": {}}\n```";
        let (calls, rest) = extract_tool_calls(text, &tools());
        assert!(calls.is_empty());
        assert_eq!(rest, text);
        let (calls, _) = extract_tool_calls(r#"{"name": "web", "replicas": 3}"#, &tools());
        assert!(calls.is_empty());
    }
}
