//! deckhand's custom resources: `AIRequest` (a request in plain words, its plan, the
//! approval by plan hash, the outcome) and `AIConversation` (a thread's messages), as Rust
//! types, and the CRDs generated from them.
//!
//! The CRD YAML committed in `k8s/crds/` is generated from these types
//! ([`REGENERATE_COMMAND`]); a test fails when the two drift apart. See `docs/DEPLOY.md`.
//!
//! # Layout
//! - [`request`]: [`AIRequest`], its spec and status, [`Phase`] and [`Approval`].
//! - [`conversation`]: [`AIConversation`]: messages inline, or a summary and a [`StoreRef`].
//! - [`condition`]: [`Condition`] in `metav1.Condition`'s shape and [`set_condition`].
//! - [`render`]: [`crds`], their YAML and the files of `k8s/crds/`.
//! - [`error`]: this crate's error type.

pub mod condition;
pub mod conversation;
pub mod error;
pub mod render;
pub mod request;
mod schema;

pub use condition::{find_condition, set_condition, Condition, ConditionStatus};
pub use conversation::{
    AIConversation, AIConversationSpec, ConversationMessage, MessageRole, StoreRef,
    MAX_INLINE_MESSAGES_BYTES,
};
pub use error::{Error, Result};
pub use render::{
    crd_files, crd_yaml, crds, crds_yaml, stale_crd_files, write_crd_files, REGENERATE_COMMAND,
};
pub use request::{AIRequest, AIRequestSpec, AIRequestStatus, Approval, Phase};

/// The API group of deckhand's custom resources.
pub const GROUP: &str = "deckhand.dev";
/// Their version.
pub const VERSION: &str = "v1alpha1";
