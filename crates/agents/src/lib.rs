//! deckhand's agents: Scarlet the planner, Jamie the copilot, and the security, SRE and
//! cloud specialists. They implement the runtime's traits on top of the LLM layer and the
//! tools.
//!
//! The roster ([`AgentRole`]) lives in the runtime, because plans name an agent per step.

pub use deckhand_runtime::AgentRole;
