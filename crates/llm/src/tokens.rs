//! Context management: how many tokens a prompt needs, what window a model has, and
//! fitting a conversation into it (long tool outputs cut with a note of what was cut,
//! then the oldest turns dropped with a note saying so).
//!
//! Counting is an estimate that errs high: no tokenizer files are shipped, so a family's
//! count is its characters divided by a ratio measured to undercount characters per token
//! (BPE tokenizers average 3.5–4.5 characters per token on English and YAML; code and
//! non-Latin text come lower, so 3 is used for the families we know and 2.5 elsewhere),
//! plus a fixed overhead per message for the role markers.

use crate::chat::ChatRequest;
use crate::message::{Message, Role};

/// Tokens added per message for role and separator markers.
const PER_MESSAGE_OVERHEAD: usize = 6;

/// Tokens kept free for the answer when the request sets no `max_tokens`.
pub const DEFAULT_ANSWER_RESERVE: usize = 1024;

/// Tool outputs above this many estimated tokens are cut before a request is sent.
pub const DEFAULT_MAX_TOOL_OUTPUT_TOKENS: usize = 4000;

/// The model families the counter knows, which decide its characters-per-token ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// OpenAI GPT and o-series (cl100k/o200k tokenizers).
    Gpt,
    /// Anthropic Claude.
    Claude,
    /// Google Gemini.
    Gemini,
    /// Llama, Mistral, Qwen and other open models.
    Open,
    /// Unknown: the most conservative ratio.
    Unknown,
}

impl Family {
    /// The family a model name belongs to.
    pub fn of(model: &str) -> Self {
        let model = model.to_lowercase();
        let starts = |prefixes: &[&str]| prefixes.iter().any(|p| model.starts_with(p));
        if starts(&["gpt-", "o1", "o3", "o4", "chatgpt", "text-embedding"]) {
            Self::Gpt
        } else if starts(&["claude"]) {
            Self::Claude
        } else if starts(&["gemini", "gemma"]) {
            Self::Gemini
        } else if [
            "llama",
            "mistral",
            "mixtral",
            "qwen",
            "phi",
            "deepseek",
            "smollm",
            "codellama",
        ]
        .iter()
        .any(|name| model.contains(name))
        {
            Self::Open
        } else {
            Self::Unknown
        }
    }

    /// Characters per token, rounded down so counts come out high (tenths).
    fn tenths_of_chars_per_token(self) -> usize {
        match self {
            Self::Gpt | Self::Claude | Self::Gemini | Self::Open => 30,
            Self::Unknown => 25,
        }
    }

    /// The context window of a model when the configuration does not say.
    pub fn default_context_window(model: &str) -> usize {
        let lower = model.to_lowercase();
        match Self::of(model) {
            Self::Gpt if lower.starts_with("gpt-4.1") => 1_000_000,
            Self::Gpt if lower.starts_with("gpt-3.5") => 16_000,
            Self::Gpt => 128_000,
            Self::Claude => 200_000,
            Self::Gemini => 1_000_000,
            // Local servers load models with small windows unless told otherwise.
            Self::Open | Self::Unknown => 8_192,
        }
    }
}

/// Estimated tokens of `text` for `family`.
pub fn count_text(family: Family, text: &str) -> usize {
    let chars = text.chars().count();
    (chars * 10).div_ceil(family.tenths_of_chars_per_token())
}

/// Estimated tokens of one message.
pub fn count_message(family: Family, message: &Message) -> usize {
    let mut tokens = PER_MESSAGE_OVERHEAD + count_text(family, &message.content);
    for call in &message.tool_calls {
        tokens += count_text(family, &call.name) + count_text(family, &call.arguments.to_string());
    }
    tokens
}

/// Estimated prompt tokens of a request: messages, tool definitions and the schema.
pub fn count_request(family: Family, request: &ChatRequest) -> usize {
    let messages: usize = request
        .messages
        .iter()
        .map(|m| count_message(family, m))
        .sum();
    let tools: usize = request
        .tools
        .iter()
        .map(|tool| {
            count_text(family, &tool.name)
                + count_text(family, &tool.description)
                + count_text(family, &tool.parameters.to_string())
        })
        .sum();
    let schema = request
        .response_schema
        .as_ref()
        .map_or(0, |s| count_text(family, &s.schema.to_string()));
    messages + tools + schema
}

/// Cuts `text` to about `max_tokens`, keeping its head and tail (where errors and
/// summaries are) and saying in between what was cut.
pub fn truncate_middle(family: Family, text: &str, max_tokens: usize) -> String {
    if count_text(family, text) <= max_tokens {
        return text.to_owned();
    }
    let keep_chars = max_tokens * family.tenths_of_chars_per_token() / 10;
    let chars: Vec<char> = text.chars().collect();
    let head = keep_chars * 2 / 3;
    let tail = keep_chars - head;
    let cut = chars.len().saturating_sub(head + tail);
    let cut_lines = chars[head..chars.len() - tail]
        .iter()
        .filter(|c| **c == '\n')
        .count();
    format!(
        "{}\n[… deckhand cut {cut} characters ({cut_lines} lines, about {} tokens) from the middle of this output to fit the model's context …]\n{}",
        chars[..head].iter().collect::<String>(),
        count_text(family, &chars[head..chars.len() - tail].iter().collect::<String>()),
        chars[chars.len() - tail..].iter().collect::<String>(),
    )
}

/// What [`fit`] did to a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FitReport {
    /// Tool outputs that were cut.
    pub truncated_tool_outputs: usize,
    /// Messages dropped from the start of the conversation.
    pub dropped_messages: usize,
    /// The prompt's estimated tokens after fitting.
    pub tokens: usize,
}

/// Fits `request` into `window` tokens, leaving room for the answer: tool outputs above
/// `max_tool_tokens` are cut in the middle; then, while it is still too long, the oldest
/// messages after the system prompt are dropped (a tool call together with its results)
/// and a note says how many. The system prompt and the last user message always stay.
/// Returns `Err(needed)` when even that does not fit.
pub fn fit(
    family: Family,
    request: &mut ChatRequest,
    window: usize,
    max_tool_tokens: usize,
) -> Result<FitReport, usize> {
    let reserve = request
        .max_tokens
        .map_or(DEFAULT_ANSWER_RESERVE, |m| m as usize);
    let budget = window.saturating_sub(reserve);
    let mut report = FitReport::default();
    for message in request.messages.iter_mut().filter(|m| m.role == Role::Tool) {
        if count_text(family, &message.content) > max_tool_tokens {
            message.content = truncate_middle(family, &message.content, max_tool_tokens);
            report.truncated_tool_outputs += 1;
        }
    }
    let mut tokens = count_request(family, request);
    if tokens <= budget {
        report.tokens = tokens;
        return Ok(report);
    }
    let last_user = request
        .messages
        .iter()
        .rposition(|m| m.role == Role::User)
        .unwrap_or(request.messages.len().saturating_sub(1));
    // Indices that may be dropped: not system, before the last user message.
    let mut droppable: Vec<usize> = (0..last_user)
        .filter(|i| request.messages[*i].role != Role::System)
        .collect();
    droppable.reverse();
    let mut dropped = vec![false; request.messages.len()];
    while tokens > budget {
        let Some(index) = droppable.pop() else { break };
        if dropped[index] {
            continue;
        }
        dropped[index] = true;
        tokens -= count_message(family, &request.messages[index]);
        report.dropped_messages += 1;
        // Tool results answer the call before them: drop them together.
        let mut next = index + 1;
        while next < last_user && request.messages[next].role == Role::Tool {
            if !dropped[next] {
                dropped[next] = true;
                tokens -= count_message(family, &request.messages[next]);
                report.dropped_messages += 1;
            }
            next += 1;
        }
    }
    if report.dropped_messages > 0 {
        let note = Message::system(format!(
            "[deckhand dropped the {} oldest messages of this conversation to fit the model's context window.]",
            report.dropped_messages
        ));
        let mut kept = Vec::with_capacity(request.messages.len() + 1);
        let mut noted = false;
        for (index, message) in std::mem::take(&mut request.messages)
            .into_iter()
            .enumerate()
        {
            if dropped[index] {
                continue;
            }
            if !noted && message.role != Role::System {
                kept.push(note.clone());
                noted = true;
            }
            kept.push(message);
        }
        request.messages = kept;
        tokens = count_request(family, request);
    }
    report.tokens = tokens;
    match tokens <= budget {
        true => Ok(report),
        false => Err(tokens + reserve),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ToolCall;

    #[test]
    fn families_and_estimates() {
        assert_eq!(Family::of("gpt-4o-mini"), Family::Gpt);
        assert_eq!(Family::of("claude-sonnet-4-0"), Family::Claude);
        assert_eq!(Family::of("qwen2.5-coder:1.5b"), Family::Open);
        assert_eq!(Family::of("mystery"), Family::Unknown);
        assert_eq!(count_text(Family::Gpt, "abcdef"), 2);
        assert_eq!(count_text(Family::Unknown, "abcde"), 2);
        // Errs high against a real tokenizer: "Hello, world!" is 4 cl100k tokens.
        assert!(count_text(Family::Gpt, "Hello, world!") >= 4);
    }

    #[test]
    fn long_tool_output_is_cut_with_a_note() {
        let log: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        let cut = truncate_middle(Family::Gpt, &log, 200);
        assert!(cut.starts_with("line 0\n"));
        assert!(cut.trim_end().ends_with("line 1999"));
        assert!(cut.contains("deckhand cut"));
        assert!(count_text(Family::Gpt, &cut) < 260);
    }

    #[test]
    fn oldest_turns_go_first_and_calls_leave_with_their_results() {
        let call = ToolCall {
            id: "c".into(),
            name: "safe_get".into(),
            arguments: serde_json::json!({}),
        };
        let mut request = ChatRequest::new(vec![
            Message::system("you are deckhand"),
            Message::user("a".repeat(3000)),
            Message::assistant_with_calls("", vec![call.clone()]),
            Message::tool_result(&call, "b".repeat(3000)),
            Message::assistant("c".repeat(300)),
            Message::user("what now?"),
        ]);
        request.max_tokens = Some(100);
        let report = fit(Family::Gpt, &mut request, 400, 10_000).unwrap();
        assert_eq!(report.dropped_messages, 3);
        let roles: Vec<Role> = request.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [Role::System, Role::System, Role::Assistant, Role::User]
        );
        assert!(request.messages[1].content.contains("dropped the 3 oldest"));

        let mut huge = ChatRequest::new(vec![Message::user("x".repeat(100_000))]);
        assert!(fit(Family::Gpt, &mut huge, 8000, 4000).is_err());
    }
}
