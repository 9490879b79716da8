//! Tokens: read from the environment or a file (a mounted Secret) when needed, and kept
//! in a type that never prints its value.

use std::fmt;

use crate::config::TokenSource;
use crate::error::{Error, Result};

/// A secret token. `Debug` prints `Token(***)`; there is no `Display`, so it cannot end
/// up in a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token value (whitespace around it is trimmed).
    pub fn new(value: impl Into<String>) -> Self {
        Token(value.into().trim().to_owned())
    }

    /// The value, for the one place that must send it (a header, a credential).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

impl TokenSource {
    /// Reads the token. `env` looks up an environment variable: the binary passes
    /// `|name| std::env::var(name).ok()`, tests pass a map (libraries read no
    /// environment themselves). `repository` names the repository in errors.
    pub fn resolve(&self, repository: &str, env: impl Fn(&str) -> Option<String>) -> Result<Token> {
        match self {
            TokenSource::Env(variable) => match env(variable) {
                Some(value) if !value.trim().is_empty() => Ok(Token::new(value)),
                _ => Err(Error::TokenEnvMissing {
                    repository: repository.to_owned(),
                    variable: variable.clone(),
                }),
            },
            TokenSource::File(path) => {
                let file_error = |source| Error::TokenFile {
                    repository: repository.to_owned(),
                    path: path.clone(),
                    source,
                };
                let value = std::fs::read_to_string(path).map_err(file_error)?;
                if value.trim().is_empty() {
                    return Err(file_error(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the file is empty",
                    )));
                }
                Ok(Token::new(value))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let token = Token::new("ghp_secret");
        assert_eq!(format!("{token:?}"), "Token(***)");
        assert_eq!(format!("{:?}", Some(token.clone())), "Some(Token(***))");
        assert_eq!(token.expose(), "ghp_secret");
    }

    #[test]
    fn env_source_uses_the_lookup_it_is_given() {
        let source = TokenSource::Env("GITHUB_TOKEN".into());
        let token = source
            .resolve("platform", |name| {
                (name == "GITHUB_TOKEN").then(|| " ghp_abc\n".to_owned())
            })
            .unwrap();
        assert_eq!(token.expose(), "ghp_abc");
        let err = source.resolve("platform", |_| None).unwrap_err();
        assert!(
            matches!(err, Error::TokenEnvMissing { ref variable, .. } if variable == "GITHUB_TOKEN")
        );
        let err = source
            .resolve("platform", |_| Some("  ".into()))
            .unwrap_err();
        assert!(err.to_string().contains("`GITHUB_TOKEN` is unset or empty"));
    }

    #[test]
    fn file_source_reads_a_mounted_secret_and_rejects_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "glpat-xyz\n").unwrap();
        let source = TokenSource::File(path.clone());
        assert_eq!(
            source.resolve("infra", |_| None).unwrap().expose(),
            "glpat-xyz"
        );
        std::fs::write(&path, "\n").unwrap();
        let err = source.resolve("infra", |_| None).unwrap_err();
        assert!(matches!(err, Error::TokenFile { .. }));
        let err = TokenSource::File(dir.path().join("missing"))
            .resolve("infra", |_| None)
            .unwrap_err();
        assert!(err.to_string().contains("could not be read"));
    }
}
