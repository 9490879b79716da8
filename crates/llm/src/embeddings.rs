//! Embeddings from a configured model: Ollama's `POST /api/embed` or the OpenAI-compatible
//! `POST /embeddings` (llama-server with `--embeddings`, vLLM). Texts go in batches,
//! every request has a deadline, secrets are redacted before a text leaves, and every
//! answer is checked: one vector per text, in order, all of one length (the configured
//! one when set), every component a finite number.

use crate::config::{EmbeddingConfig, EmbeddingProvider, Env};
use crate::error::{Error, Result, TimeoutPhase};
use crate::http;
use crate::redact::Redactor;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// The name errors give the embedding model (it is not a chat backend of a route).
pub const EMBEDDINGS_BACKEND: &str = "embeddings";

/// The connect timeout, unless the whole deadline is shorter: a local server that does
/// not accept a connection within it is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of one embedding model.
#[derive(Debug, Clone)]
pub struct Embedder {
    provider: EmbeddingProvider,
    url: String,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
    dimensions: Option<usize>,
    batch_size: usize,
    redactor: Redactor,
    client: reqwest::Client,
}

/// Ollama's answer (`/api/embed`): one vector per input, in order.
#[derive(Deserialize)]
struct OllamaAnswer {
    embeddings: Vec<Vec<f32>>,
}

/// OpenAI's answer (`/embeddings`): each vector with the index of its input.
#[derive(Deserialize)]
struct OpenAiAnswer {
    data: Vec<OpenAiEmbedding>,
}

#[derive(Deserialize)]
struct OpenAiEmbedding {
    index: usize,
    embedding: Vec<f32>,
}

impl Embedder {
    /// A client for `config`; the API key (if `api_key_env` names one) is read through
    /// `env`.
    ///
    /// # Errors
    /// [`Error::Config`] with every problem of the configuration, including a named key
    /// variable that is not set.
    pub fn new(config: &EmbeddingConfig, env: Env<'_>) -> Result<Self> {
        let mut problems = config.problems();
        let api_key = match &config.api_key_env {
            Some(name) => {
                let key = env(name).filter(|key| !key.trim().is_empty());
                if key.is_none() {
                    problems.push(format!(
                        "embeddings: the environment variable {name} (api_key_env) is not set"
                    ));
                }
                key
            }
            None => None,
        };
        if !problems.is_empty() {
            return Err(Error::Config { problems });
        }
        let timeout = config.timeout();
        let path = match config.provider {
            EmbeddingProvider::Ollama => "api/embed",
            EmbeddingProvider::OpenaiCompatible => "embeddings",
        };
        Ok(Self {
            provider: config.provider,
            url: format!("{}/{path}", config.endpoint(env)),
            model: config.model.clone(),
            api_key,
            timeout,
            dimensions: config.dimensions,
            batch_size: config.batch_size,
            redactor: Redactor::default(),
            client: http::client(CONNECT_TIMEOUT.min(timeout))?,
        })
    }

    /// The model's name, as stored with every vector.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One vector for `text`.
    ///
    /// # Errors
    /// As [`Embedder::embed`].
    pub async fn embed_one(&self, text: &str) -> Result<Vec<f32>> {
        let mut vectors = self.embed(&[text]).await?;
        vectors.pop().ok_or_else(|| self.bad("no vector came back"))
    }

    /// One vector per text, in the texts' order, sent `batch_size` texts per request.
    ///
    /// # Errors
    /// [`Error::Connect`], [`Error::Timeout`] (the configured deadline, per request),
    /// [`Error::Auth`], [`Error::BadRequest`] (an unknown model), [`Error::Server`], and
    /// [`Error::BadResponse`] for an answer that is not the wire format, has the wrong
    /// number of vectors, vectors of different or unexpected lengths, or empty ones.
    pub async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size) {
            let answer = tokio::time::timeout(self.timeout, self.request(batch))
                .await
                .map_err(|_| Error::Timeout {
                    backend: EMBEDDINGS_BACKEND.to_owned(),
                    phase: TimeoutPhase::Total,
                    after: self.timeout,
                })??;
            vectors.extend(answer);
        }
        if let (Some(first), Some(expected)) = (vectors.first(), self.dimensions) {
            if first.len() != expected {
                return Err(self.bad(&format!(
                    "vectors have {} dimensions, the configuration says {expected}",
                    first.len()
                )));
            }
        }
        // Batches are checked one by one; across them the length must agree too.
        if let Some(first) = vectors.first() {
            if let Some(other) = vectors.iter().find(|vector| vector.len() != first.len()) {
                return Err(self.bad(&format!(
                    "vectors of {} and {} dimensions for one model",
                    first.len(),
                    other.len()
                )));
            }
        }
        Ok(vectors)
    }

    /// One request for `batch`.
    async fn request(&self, batch: &[&str]) -> Result<Vec<Vec<f32>>> {
        let input: Vec<String> = batch
            .iter()
            .map(|text| self.redactor.redact(text).0)
            .collect();
        let body = match self.provider {
            EmbeddingProvider::Ollama => json!({"model": self.model, "input": input}),
            EmbeddingProvider::OpenaiCompatible => {
                json!({"model": self.model, "input": input, "encoding_format": "float"})
            }
        };
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = http::send(EMBEDDINGS_BACKEND, request).await?;
        let value = http::json(EMBEDDINGS_BACKEND, response).await?;
        let vectors = match self.provider {
            EmbeddingProvider::Ollama => {
                serde_json::from_value::<OllamaAnswer>(value)
                    .map_err(|error| self.bad(&format!("not Ollama's /api/embed answer: {error}")))?
                    .embeddings
            }
            EmbeddingProvider::OpenaiCompatible => {
                let answer = serde_json::from_value::<OpenAiAnswer>(value)
                    .map_err(|error| self.bad(&format!("not an /embeddings answer: {error}")))?;
                in_input_order(answer.data, batch.len()).map_err(|message| self.bad(&message))?
            }
        };
        self.check(batch.len(), vectors)
    }

    /// The answer's vectors if there is one per input, all of one non-zero length, every
    /// component finite.
    fn check(&self, inputs: usize, vectors: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
        if vectors.len() != inputs {
            return Err(self.bad(&format!("{} vectors for {inputs} texts", vectors.len())));
        }
        let Some(first) = vectors.first() else {
            return Ok(vectors);
        };
        let length = first.len();
        if length == 0 {
            return Err(self.bad("empty vectors"));
        }
        if let Some(index) = vectors.iter().position(|vector| vector.len() != length) {
            return Err(self.bad(&format!(
                "vector {index} has {} dimensions, vector 0 has {length}",
                vectors[index].len()
            )));
        }
        if vectors.iter().flatten().any(|value| !value.is_finite()) {
            return Err(self.bad("a vector holds a value that is not a finite number"));
        }
        Ok(vectors)
    }

    fn bad(&self, message: &str) -> Error {
        Error::BadResponse {
            backend: EMBEDDINGS_BACKEND.to_owned(),
            message: format!("model {}: {message}", self.model),
        }
    }
}

/// OpenAI's `data` sorted by `index` (the API does not promise input order), refusing an
/// index missing, repeated or out of range.
fn in_input_order(
    mut data: Vec<OpenAiEmbedding>,
    inputs: usize,
) -> std::result::Result<Vec<Vec<f32>>, String> {
    data.sort_by_key(|item| item.index);
    for (position, item) in data.iter().enumerate() {
        if item.index != position || item.index >= inputs {
            return Err(format!(
                "the answer's indexes are not 0..{inputs}, each once (found {} at place {position})",
                item.index
            ));
        }
    }
    Ok(data.into_iter().map(|item| item.embedding).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(index: usize, value: f32) -> OpenAiEmbedding {
        OpenAiEmbedding {
            index,
            embedding: vec![value],
        }
    }

    #[test]
    fn openai_answers_are_put_back_in_input_order() {
        let sorted = in_input_order(vec![item(1, 1.0), item(0, 0.0), item(2, 2.0)], 3).unwrap();
        assert_eq!(sorted, vec![vec![0.0], vec![1.0], vec![2.0]]);
        assert!(in_input_order(vec![item(0, 0.0), item(0, 1.0)], 2).is_err());
        assert!(in_input_order(vec![item(1, 0.0)], 1).is_err());
        assert!(in_input_order(vec![item(0, 0.0), item(2, 1.0)], 2).is_err());
    }

    #[test]
    fn a_configuration_is_checked_before_use() {
        let env = |_: &str| None;
        let mut config = EmbeddingConfig::new(EmbeddingProvider::OpenaiCompatible, "");
        config.batch_size = 0;
        config.api_key_env = Some("EMBED_KEY".into());
        let Err(Error::Config { problems }) = Embedder::new(&config, &env) else {
            panic!("an unusable configuration was accepted");
        };
        assert_eq!(problems.len(), 4, "{problems:?}");
        let ollama = EmbeddingConfig::new(EmbeddingProvider::Ollama, "nomic-embed-text");
        let env = |name: &str| (name == "OLLAMA_HOST").then(|| "0.0.0.0".to_owned());
        let embedder = Embedder::new(&ollama, &env).unwrap();
        assert_eq!(embedder.url(), "http://127.0.0.1:11434/api/embed");
        let openai = EmbeddingConfig::new(EmbeddingProvider::OpenaiCompatible, "bge")
            .with_endpoint("http://127.0.0.1:8081/v1/");
        let embedder = Embedder::new(&openai, &env).unwrap();
        assert_eq!(embedder.url(), "http://127.0.0.1:8081/v1/embeddings");
    }
}
