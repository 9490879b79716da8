//! `AIConversation`: a thread's messages where `kubectl` users can read them.
//!
//! Small threads carry their messages inline. A large one carries a summary and a pointer
//! to deckhand's thread store instead: an object must stay far below etcd's request limit
//! (1.5 MiB by default), and a list of many large objects is slow for every watcher. The
//! schema makes the two forms exclusive, so the API server rejects an object with both or
//! neither.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How large the inline messages may be, as JSON, before a conversation switches to a
/// summary and a store pointer: a third of etcd's default 1.5 MiB request limit, leaving
/// room for metadata and managed fields.
pub const MAX_INLINE_MESSAGES_BYTES: usize = 512 * 1024;

/// A thread's conversation: every message inline, or a summary plus where the full thread
/// is stored.
// Several printer columns share `type_ = "string"`, which clippy takes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "deckhand.dev",
    version = "v1alpha1",
    kind = "AIConversation",
    plural = "aiconversations",
    singular = "aiconversation",
    namespaced,
    derive = "PartialEq",
    shortname = "aiconv",
    category = "deckhand",
    label("app.kubernetes.io/part-of", "deckhand"),
    doc = "A deckhand thread's conversation: its messages inline, or a summary plus a pointer to deckhand's thread store when the thread is large.",
    printcolumn(
        name = "Thread",
        type_ = "string",
        json_path = ".spec.threadId",
        description = "The thread's id"
    ),
    printcolumn(
        name = "Request",
        type_ = "string",
        json_path = ".spec.request",
        description = "The AIRequest that started the thread",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = inline_or_stored)]
pub struct AIConversationSpec {
    /// The thread's id in deckhand's thread store.
    #[schemars(length(min = 1, max = 128))]
    pub thread_id: String,
    /// The name of the `AIRequest` (same namespace) that started the thread, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Every message, oldest first. Absent when the thread is kept as `summary` and
    /// `storeRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ConversationMessage>>,
    /// What the thread is about and where it stands, when the messages are too large to
    /// keep here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 65536))]
    pub summary: Option<String>,
    /// Where the full thread is, when only the summary is here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<StoreRef>,
}

/// Exactly one of the two forms: `messages`, or `summary` with `storeRef`. A `oneOf` of
/// `required` lists is the only cross-field rule a structural schema allows without CEL
/// (which clusters before 1.25 do not have).
fn inline_or_stored(schema: &mut schemars::Schema) {
    schema.insert(
        "oneOf".into(),
        serde_json::json!([
            {"required": ["messages"]},
            {"required": ["summary", "storeRef"]},
        ]),
    );
}

/// One message of a thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationMessage {
    /// What kind of author wrote it.
    pub role: MessageRole,
    /// Who wrote it: the person's user name, or the agent's name (`scarlet`, `jamie`).
    #[schemars(length(min = 1, max = 253))]
    pub author: String,
    /// The message.
    pub text: String,
    /// When it was written.
    #[schemars(schema_with = "crate::schema::date_time")]
    pub at: Time,
}

/// What kind of author wrote a message; the names chat APIs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    /// A person.
    User,
    /// One of deckhand's agents.
    Assistant,
    /// deckhand itself: approvals, policy decisions, errors.
    System,
    /// A tool's result.
    Tool,
}

/// Where the full thread is kept, when the conversation holds only its summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreRef {
    /// The cluster whose deckhand owns the thread: clusters may share one thread store,
    /// and this says which deckhand to ask.
    #[schemars(length(min = 1, max = 253))]
    pub cluster_id: String,
    /// How many messages the stored thread had when this object was written.
    // schemars calls a u32 `format: uint32`, which Kubernetes does not know.
    #[schemars(extend("format" = "int64"))]
    pub message_count: u32,
    /// The thread on deckhand's HTTP API, when it is reachable from outside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl AIConversationSpec {
    /// A conversation carrying its messages.
    pub fn inline(thread_id: impl Into<String>, messages: Vec<ConversationMessage>) -> Self {
        Self {
            thread_id: thread_id.into(),
            request: None,
            messages: Some(messages),
            summary: None,
            store_ref: None,
        }
    }

    /// A conversation carrying a summary and where the full thread is.
    pub fn stored(
        thread_id: impl Into<String>,
        summary: impl Into<String>,
        store_ref: StoreRef,
    ) -> Self {
        Self {
            thread_id: thread_id.into(),
            request: None,
            messages: None,
            summary: Some(summary.into()),
            store_ref: Some(store_ref),
        }
    }

    /// The messages inline when they fit in [`MAX_INLINE_MESSAGES_BYTES`], otherwise the
    /// summary `summarize` writes and `store_ref`. `summarize` runs only when needed (it
    /// may ask a model).
    pub fn fitting(
        thread_id: impl Into<String>,
        messages: Vec<ConversationMessage>,
        summarize: impl FnOnce(&[ConversationMessage]) -> String,
        store_ref: StoreRef,
    ) -> Self {
        if inline_size(&messages) <= MAX_INLINE_MESSAGES_BYTES {
            Self::inline(thread_id, messages)
        } else {
            Self::stored(thread_id, summarize(&messages), store_ref)
        }
    }
}

/// The size of `messages` as the API server receives them.
fn inline_size(messages: &[ConversationMessage]) -> usize {
    // Serializing plain structs of strings cannot fail; were it to, counting the messages
    // as too large keeps the object within limits.
    serde_json::to_vec(messages).map_or(usize::MAX, |json| json.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: String) -> ConversationMessage {
        ConversationMessage {
            role: MessageRole::User,
            author: "alice@example.com".into(),
            text,
            at: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        }
    }

    fn store_ref(count: u32) -> StoreRef {
        StoreRef {
            cluster_id: "eks-prod".into(),
            message_count: count,
            url: None,
        }
    }

    #[test]
    fn small_threads_stay_inline_and_are_not_summarized() {
        let messages = vec![message("scale web to 3".into())];
        let spec = AIConversationSpec::fitting(
            "t1",
            messages.clone(),
            |_| panic!("a small thread needs no summary"),
            store_ref(1),
        );
        assert_eq!(spec.messages, Some(messages));
        assert_eq!((spec.summary, spec.store_ref), (None, None));
    }

    #[test]
    fn large_threads_become_a_summary_and_a_pointer() {
        // Two messages, each just over half the limit.
        let half = "x".repeat(MAX_INLINE_MESSAGES_BYTES / 2 + 1);
        let messages = vec![message(half.clone()), message(half)];
        let spec = AIConversationSpec::fitting(
            "t2",
            messages,
            |all| format!("{} messages about scaling", all.len()),
            store_ref(2),
        );
        assert_eq!(spec.messages, None);
        assert_eq!(spec.summary.as_deref(), Some("2 messages about scaling"));
        assert_eq!(spec.store_ref, Some(store_ref(2)));
    }

    #[test]
    fn the_limit_is_inclusive() {
        // Find a text length whose single message serializes to exactly the limit.
        let overhead = inline_size(&[message(String::new())]);
        let exact = vec![message("y".repeat(MAX_INLINE_MESSAGES_BYTES - overhead))];
        assert_eq!(inline_size(&exact), MAX_INLINE_MESSAGES_BYTES);
        let spec = AIConversationSpec::fitting("t3", exact, |_| String::new(), store_ref(1));
        assert!(spec.messages.is_some());
    }

    #[test]
    fn the_schema_makes_the_two_forms_exclusive() {
        let crd = <AIConversation as kube::CustomResourceExt>::crd();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("serializable");
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
        // The structural-schema rewriting sorts each `required` list.
        assert_eq!(
            spec["oneOf"],
            serde_json::json!([
                {"required": ["messages"]},
                {"required": ["storeRef", "summary"]},
            ])
        );
        assert_eq!(spec["required"], serde_json::json!(["threadId"]));
    }
}
