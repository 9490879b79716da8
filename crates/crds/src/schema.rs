//! Hand-written schema pieces for fields whose Rust type has no fitting JSON schema.

use schemars::{json_schema, Schema, SchemaGenerator};

/// An RFC 3339 timestamp (`metav1.Time` on the wire).
pub(crate) fn date_time(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "format": "date-time",
    })
}

/// A JSON object kept exactly as written: the API server prunes unknown fields of a
/// structural schema, and a plan's shape belongs to the runtime, not to the CRD.
pub(crate) fn preserved_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
