//! Shared code of deckhand's built-in wasm tools. Each tool is a binary in `src/bin/`.
//!
//! # Layout
//! - [`files`]: reading text files and walking directories inside the workspace, bounded.

#![forbid(unsafe_code)]

pub mod files;
