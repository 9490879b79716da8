//! Chat messages: what agents send to and receive from a model, independent of backend.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The person (or an agent speaking for them).
    User,
    /// The model.
    Assistant,
    /// The result of a tool call, fed back to the model.
    Tool,
}

/// A call the model asks for: a tool's name and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id, which the tool's result refers to. Backends without ids (Ollama,
    /// Gemini, calls found in the text) get a generated one.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// Its arguments (a JSON object, as the tool's input schema describes).
    pub arguments: Value,
}

/// One message of a conversation with a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
    /// The tools an assistant message calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool message: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For a tool message: the tool's name (Gemini matches results by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// An assistant message that calls tools.
    pub fn assistant_with_calls(content: impl Into<String>, calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls: calls,
            ..Self::new(Role::Assistant, content)
        }
    }

    /// The result of `call`, fed back to the model.
    pub fn tool_result(call: &ToolCall, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(call.id.clone()),
            name: Some(call.name.clone()),
            ..Self::new(Role::Tool, content)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_serialize_as_the_wire_names_backends_use() {
        let message = Message::user("scale web to 5");
        assert_eq!(
            serde_json::to_value(&message).unwrap(),
            serde_json::json!({"role": "user", "content": "scale web to 5"})
        );
        let parsed: Message = serde_json::from_str(r#"{"role":"tool","content":"{}"}"#).unwrap();
        assert_eq!(parsed.role, Role::Tool);
        assert!(serde_json::from_str::<Message>(r#"{"role":"robot","content":""}"#).is_err());
    }

    #[test]
    fn tool_results_name_their_call() {
        let call = ToolCall {
            id: "c1".into(),
            name: "safe_get".into(),
            arguments: serde_json::json!({"kind": "Pod"}),
        };
        let result = Message::tool_result(&call, "[]");
        assert_eq!(result.tool_call_id.as_deref(), Some("c1"));
        assert_eq!(result.name.as_deref(), Some("safe_get"));
    }
}
