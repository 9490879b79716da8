//! This crate's error type.

use std::path::PathBuf;

/// What can go wrong rendering or writing the CRDs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A CRD could not be turned into YAML.
    #[error("rendering the CRD {crd} as YAML")]
    Yaml {
        /// The CRD's name (`PLURAL.GROUP`).
        crd: String,
        /// The serializer's error.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A file could not be read or written.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done (`writing`, `reading`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
