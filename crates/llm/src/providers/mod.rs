//! The HTTP providers, one file each, all behind [`crate::Backend`].

pub mod anthropic;
pub mod gemini;
pub mod ollama;
pub mod openai;

pub use anthropic::Anthropic;
pub use gemini::Gemini;
pub use ollama::Ollama;
pub use openai::OpenAi;
