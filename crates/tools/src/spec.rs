//! A tool's contract: its manifest. Built-in wasm tools, third-party plugins and host-side
//! cluster tools all describe themselves this way, and the same schemas become the LLM's
//! function-calling definitions.

use crate::sandbox::WorkspaceAccess;
use serde::{Deserialize, Serialize};

/// The longest tool name accepted (LLM APIs cap function names at 64 characters).
pub const MAX_TOOL_NAME_LEN: usize = 64;

/// What a tool is and what it may do: the `NAME.json` manifest next to `NAME.wasm`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// Lowercase letters, digits and `_`, starting with a letter.
    pub name: String,
    /// What the tool does, for people and for the LLM choosing tools.
    pub description: String,
    /// What it may do with the workspace.
    pub workspace: WorkspaceAccess,
    /// Whether it changes anything outside the workspace (a cluster, a cloud account).
    /// Mutating steps wait for the person's approval.
    #[serde(default)]
    pub mutating: bool,
    /// JSON Schema of its input.
    pub input_schema: serde_json::Value,
    /// JSON Schema of its output.
    pub output_schema: serde_json::Value,
}

/// A tool as an LLM sees it in function calling.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionDefinition {
    /// The tool's name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: serde_json::Value,
}

impl ToolSpec {
    /// Problems with this manifest (empty when it is valid): a bad name, an empty
    /// description, or schemas that do not compile.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !valid_name(&self.name) {
            problems.push(format!(
                "name {:?} must be 1-{MAX_TOOL_NAME_LEN} characters of a-z, 0-9 and _, starting with a letter",
                self.name
            ));
        }
        if self.description.trim().is_empty() {
            problems.push("description is empty".to_owned());
        }
        for (which, schema) in [
            ("input_schema", &self.input_schema),
            ("output_schema", &self.output_schema),
        ] {
            if let Err(error) = jsonschema::validator_for(schema) {
                problems.push(format!("{which} is not a valid JSON Schema: {error}"));
            }
        }
        if self.input_schema.get("type").and_then(|t| t.as_str()) != Some("object") {
            problems.push("input_schema must describe an object (\"type\": \"object\")".to_owned());
        }
        problems
    }

    /// This tool as a function-calling definition.
    pub fn function_definition(&self) -> FunctionDefinition {
        let mut parameters = self.input_schema.clone();
        // "$schema" and "title" are noise to an LLM and some APIs reject "$schema".
        if let Some(object) = parameters.as_object_mut() {
            object.remove("$schema");
            object.remove("title");
        }
        FunctionDefinition {
            name: self.name.clone(),
            description: self.description.clone(),
            parameters,
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_TOOL_NAME_LEN
        && chars.next().is_some_and(|first| first.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.to_owned(),
            description: "d".to_owned(),
            workspace: WorkspaceAccess::Read,
            mutating: false,
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
            output_schema: json!({}),
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(spec("read_file").problems().is_empty());
        for bad in ["", "Read", "1tool", "a-b", "a b", "../x", &"a".repeat(65)] {
            assert_eq!(spec(bad).problems().len(), 1, "{bad:?}");
        }
    }

    #[test]
    fn schemas_must_compile_and_inputs_be_objects() {
        let mut bad = spec("t");
        bad.input_schema = json!({"type": "object", "properties": {"x": {"type": "no-such-type"}}});
        assert!(bad
            .problems()
            .iter()
            .any(|p| p.starts_with("input_schema is not a valid")));
        bad.input_schema = json!({"type": "string"});
        assert!(bad
            .problems()
            .iter()
            .any(|p| p.contains("must describe an object")));
    }

    #[test]
    fn function_definitions_drop_schema_noise() {
        let mut spec = spec("t");
        spec.input_schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        spec.input_schema["title"] = json!("Input");
        let definition = spec.function_definition();
        assert!(definition.parameters.get("$schema").is_none());
        assert_eq!(
            definition.parameters["properties"]["path"]["type"],
            "string"
        );
    }

    #[test]
    fn manifests_reject_unknown_fields() {
        let text = r#"{"name":"t","description":"d","workspace":"read","input_schema":{},"output_schema":{},"network":true}"#;
        assert!(serde_json::from_str::<ToolSpec>(text).is_err());
        let text = r#"{"name":"t","description":"d","workspace":"everything","input_schema":{},"output_schema":{}}"#;
        assert!(serde_json::from_str::<ToolSpec>(text).is_err());
    }
}
