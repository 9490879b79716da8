//! deckhand: a safe multi-agent DevOps runtime for Kubernetes.
//!
//! This crate wires the others together and is what embedders use: build a [`Config`],
//! then [`serve`] it on a listener of your own with a shutdown future of your own. The
//! `deckhand` binary is a thin command line over it.
//!
//! # Layout
//! - [`config`]: [`Config`], validated before anything starts.
//! - [`serve`]: [`serve`]: opens the store, loads the tools, connects to the cluster and
//!   serves the HTTP API until shutdown.
//! - [`executor`]: plan steps as tool calls (the runtime's `StepExecutor`).
//! - [`toolbox`]: the tool registry built from the built-in tools and plugin dirs.
//! - [`alerting`]: where admin alerts go (Event, metric, webhooks, Slack).
//! - [`checks`]: readiness checks for the store, the tools and the cluster.
//! - [`cli`]: what the `deckhand` subcommands do, apart from argument parsing.
//! - [`knowledge`]: knowledge search by words and meaning when an embedding model is
//!   configured, by words alone otherwise.
//! - [`error`]: this crate's error type.
//!
//! The parts are re-exported: [`runtime`], [`store`], [`tools`], [`llm`], [`agents`],
//! [`api`].

pub mod alerting;
pub mod checks;
pub mod cli;
pub mod conductor;
pub mod config;
pub mod error;
pub mod events;
pub mod executor;
pub mod journal;
pub mod knowledge;
pub mod landing;
pub mod operator;
pub mod serve;
pub mod service;
pub mod toolbox;

pub use config::Config;
pub use error::{Error, Result};
pub use serve::serve;

pub use deckhand_agents as agents;
pub use deckhand_api as api;
pub use deckhand_llm as llm;
pub use deckhand_runtime as runtime;
pub use deckhand_store as store;
pub use deckhand_tools as tools;
