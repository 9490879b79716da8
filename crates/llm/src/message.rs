//! Chat messages: what agents send to and receive from a model, independent of backend.

use serde::{Deserialize, Serialize};

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

/// One message of a conversation with a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
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
}
