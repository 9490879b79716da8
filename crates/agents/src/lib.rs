//! deckhand's agents: Scarlet the planner, Jamie the copilot, and the security, SRE and
//! cloud specialists. They implement the runtime's traits on top of the LLM layer and the
//! tools.
//!
//! # Layout
//! - [`roster`]: who the agents are and what each one is responsible for.

pub mod roster;

pub use roster::AgentRole;
