//! Making up in the prompt for what a backend lacks natively: tools described in the
//! system prompt with calls read back from the text, and a JSON Schema the answer must
//! follow.

use crate::backend::Capabilities;
use crate::chat::ChatRequest;
use crate::message::{Message, Role};
use std::fmt::Write as _;

/// `request` as sent to a backend with `capabilities`.
pub fn adapt(request: &ChatRequest, capabilities: Capabilities) -> ChatRequest {
    let mut adapted = request.clone();
    if !capabilities.native_tools && !adapted.tools.is_empty() {
        let mut text = String::from(
            "You can call tools. To call one, reply with only a JSON object inside a ```json \
             code fence, shaped {\"name\": \"<tool name>\", \"arguments\": {<arguments>}}, \
             and nothing else. Tool results come back in the next message. The tools:\n",
        );
        for tool in &adapted.tools {
            let _ = writeln!(
                text,
                "- {}: {} Arguments (JSON Schema): {}",
                tool.name, tool.description, tool.parameters
            );
        }
        add_system(&mut adapted, text);
        adapted.messages = adapted.messages.into_iter().map(flatten_tools).collect();
        // Described in the prompt only; the router reads the calls from the text.
        adapted.tools.clear();
    }
    if let Some(schema) = &request.response_schema {
        // Even with native constraints the schema goes in the prompt: a local server's
        // grammar only constrains the shape, and without the schema's descriptions a small
        // model fills fields with the wrong things (seen with Qwen2.5-Coder-1.5B behind
        // llama-server putting a sentence in a step's `name`).
        add_system(
            &mut adapted,
            format!(
                "Reply with only a JSON document, without prose or code fences, that matches \
                 this JSON Schema (the descriptions say what each field holds):\n{}",
                schema.schema
            ),
        );
    }
    adapted
}

/// Appends to the system prompt, or starts one.
fn add_system(request: &mut ChatRequest, text: String) {
    match request.messages.iter_mut().find(|m| m.role == Role::System) {
        Some(system) => {
            system.content.push_str("\n\n");
            system.content.push_str(&text);
        }
        None => request.messages.insert(0, Message::system(text)),
    }
}

/// Tool calls and results as plain text, for a backend that has no tool messages.
fn flatten_tools(message: Message) -> Message {
    match message.role {
        Role::Tool => Message::user(format!(
            "Result of tool {} (call {}):\n{}",
            message.name.as_deref().unwrap_or("?"),
            message.tool_call_id.as_deref().unwrap_or("?"),
            message.content
        )),
        Role::Assistant if !message.tool_calls.is_empty() => {
            let mut text = message.content.clone();
            for call in &message.tool_calls {
                if !text.is_empty() {
                    text.push('\n');
                }
                let _ = write!(
                    text,
                    "```json\n{}\n```",
                    serde_json::json!({"name": call.name, "arguments": call.arguments})
                );
            }
            Message::assistant(text)
        }
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{ResponseSchema, ToolDefinition};
    use crate::message::ToolCall;

    #[test]
    fn tools_and_schema_go_into_the_prompt_when_not_native() {
        let call = ToolCall {
            id: "c1".into(),
            name: "safe_get".into(),
            arguments: serde_json::json!({"kind": "Pod"}),
        };
        let mut request = ChatRequest::new(vec![
            Message::user("pods?"),
            Message::assistant_with_calls("", vec![call.clone()]),
            Message::tool_result(&call, "[]"),
        ])
        .with_tools(vec![ToolDefinition {
            name: "safe_get".into(),
            description: "Reads objects.".into(),
            parameters: serde_json::json!({"type": "object"}),
        }]);
        request.response_schema = Some(ResponseSchema {
            name: "x".into(),
            schema: serde_json::json!({"type": "object"}),
        });
        let none = Capabilities {
            native_tools: false,
            native_schema: false,
            offline: false,
        };
        let adapted = adapt(&request, none);
        assert!(adapted.tools.is_empty());
        assert_eq!(adapted.messages[0].role, Role::System);
        assert!(adapted.messages[0]
            .content
            .contains("- safe_get: Reads objects."));
        assert!(adapted.messages[0]
            .content
            .contains("matches this JSON Schema"));
        assert!(adapted.messages[2]
            .content
            .contains("\"name\":\"safe_get\""));
        assert_eq!(adapted.messages[3].role, Role::User);
        assert!(adapted.messages[3]
            .content
            .starts_with("Result of tool safe_get"));

        let native = Capabilities {
            native_tools: true,
            native_schema: true,
            offline: false,
        };
        let adapted = adapt(&request, native);
        assert!(adapted.messages[0]
            .content
            .contains("matches this JSON Schema"));
        assert_eq!(adapted.messages.len(), 4);
        assert_eq!(adapted.messages[3].role, Role::Tool);
    }
}
