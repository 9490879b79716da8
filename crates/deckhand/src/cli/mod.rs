//! What the `deckhand` subcommands do. The binary parses arguments with clap and calls
//! into these modules, so embedders and tests can run the same code.
//!
//! Exit codes follow one rule across subcommands: 0 success, 1 the operation ran and
//! said no (a tool failed, a policy denied), 2 a usage error or unreadable input.

pub mod tool;

pub mod plan;
pub mod policy;
pub mod run;
pub mod session;
pub mod threads;
