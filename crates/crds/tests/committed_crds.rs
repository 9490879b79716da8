//! The CRDs committed in `k8s/crds/` are exactly what the types generate.

use std::path::PathBuf;

#[test]
fn the_committed_crds_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../k8s/crds");
    let stale = deckhand_crds::stale_crd_files(&dir).expect("k8s/crds is readable");
    assert!(
        stale.is_empty(),
        "k8s/crds/ is out of date with the types in crates/crds ({}); regenerate with `{}` and commit the result",
        stale.join(", "),
        deckhand_crds::REGENERATE_COMMAND,
    );
}
