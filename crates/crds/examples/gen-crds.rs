//! Writes the CRDs generated from the types into `k8s/crds/` (or the directory given as
//! the first argument): `cargo run -p deckhand-crds --example gen-crds`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../k8s/crds"));
    match deckhand_crds::write_crd_files(&dir) {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("gen-crds: {error}");
            ExitCode::FAILURE
        }
    }
}
