//! Names on the branch: the thread's branch and folder, and file names made safe.
//!
//! Manifest and backup names come from a model or a cluster, so they are never used as
//! paths: every name becomes one flat file name of `[a-z0-9._-]` inside the thread's
//! folder, whatever `..`, `/`, `\`, absolute paths or control characters it held.

use std::collections::BTreeSet;

use uuid::Uuid;

/// The prefix of every thread branch.
pub const BRANCH_PREFIX: &str = "deckhand/thread-";
/// The folder all threads live under.
pub const THREADS_FOLDER: &str = "threads";
/// The longest file name written (before the extension is added), well under the
/// 255-byte limit of common file systems.
pub const MAX_FILE_STEM: usize = 96;
/// The file GitOps mode writes into `manifests/`; a manifest may not take its name.
pub const KUSTOMIZATION_FILE: &str = "kustomization.yaml";

/// `deckhand/thread-<id>`.
pub fn branch_name(thread: Uuid) -> String {
    format!("{BRANCH_PREFIX}{}", thread.hyphenated())
}

/// `threads/<id>`.
pub fn thread_folder(thread: Uuid) -> String {
    format!("{THREADS_FOLDER}/{}", thread.hyphenated())
}

/// Makes one safe file name ending in `.extension` out of `raw`.
///
/// Path separators become `-` (so `base/app.yaml` and `overlay/app.yaml` stay apart),
/// `.` and `..` components and leading dots are dropped, anything outside `[a-z0-9._-]`
/// becomes `-`, letters are lower-cased (checkouts on case-insensitive file systems
/// would merge `App.yaml` and `app.yaml`), and a `.yml`/`.yaml`/`.json` ending is
/// replaced by `extension`. An empty result becomes `fallback`.
pub fn safe_file_name(raw: &str, extension: &str, fallback: &str) -> String {
    let unified = raw.replace('\\', "/");
    let components: Vec<&str> = unified
        .split('/')
        .map(str::trim)
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
        .collect();
    let mut joined = components.join("-").to_ascii_lowercase();
    for known in [".yaml", ".yml", ".json"] {
        if joined.ends_with(known) {
            joined.truncate(joined.len() - known.len());
            break;
        }
    }
    let mut stem = String::with_capacity(joined.len());
    for c in joined.chars() {
        let keep = c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-';
        let c = if keep { c } else { '-' };
        // Collapse runs of separators so `a  //  b` does not become `a-----b`.
        if (c == '-' || c == '.') && stem.ends_with(c) {
            continue;
        }
        stem.push(c);
    }
    let mut stem = stem
        .trim_matches(|c| c == '.' || c == '-')
        .chars()
        .take(MAX_FILE_STEM)
        .collect::<String>();
    stem = stem.trim_end_matches(['.', '-']).to_owned();
    if stem.is_empty() {
        stem = fallback.to_owned();
    }
    format!("{stem}.{extension}")
}

/// Safe, distinct file names for a list of raw names, in order: the second `app.yaml`
/// becomes `app-2.yaml`; names in `reserved` are never handed out.
pub fn unique_file_names<'a>(
    raws: impl IntoIterator<Item = &'a str>,
    extension: &str,
    fallback: &str,
    reserved: &[&str],
) -> Vec<String> {
    let mut taken: BTreeSet<String> = reserved.iter().map(|r| (*r).to_owned()).collect();
    let mut names = Vec::new();
    for raw in raws {
        let name = safe_file_name(raw, extension, fallback);
        let stem = name
            .strip_suffix(&format!(".{extension}"))
            .unwrap_or(&name)
            .to_owned();
        let mut candidate = name;
        let mut n = 2;
        while taken.contains(&candidate) {
            candidate = format!("{stem}-{n}.{extension}");
            n += 1;
        }
        taken.insert(candidate.clone());
        names.push(candidate);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_and_folder_use_the_hyphenated_uuid() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(
            branch_name(id),
            "deckhand/thread-01234567-89ab-cdef-0123-456789abcdef"
        );
        assert_eq!(
            thread_folder(id),
            "threads/01234567-89ab-cdef-0123-456789abcdef"
        );
        assert!(git2::Reference::is_valid_name(&format!(
            "refs/heads/{}",
            branch_name(id)
        )));
    }

    #[test]
    fn hostile_names_become_flat_safe_names() {
        let cases = [
            ("deployment.yaml", "deployment.yaml"),
            ("Deployment.YML", "deployment.yaml"),
            ("service", "service.yaml"),
            ("../../etc/passwd", "etc-passwd.yaml"),
            ("/etc/shadow.yaml", "etc-shadow.yaml"),
            ("C:\\Windows\\system32\\x.yaml", "c-windows-system32-x.yaml"),
            ("base/app.yaml", "base-app.yaml"),
            ("..", "manifest.yaml"),
            ("", "manifest.yaml"),
            ("   ", "manifest.yaml"),
            (".hidden.yaml", "hidden.yaml"),
            (".git/config", "git-config.yaml"),
            ("a\0b\nc.yaml", "a-b-c.yaml"),
            ("my app (v2).yaml", "my-app-v2.yaml"),
            ("déploiement.yaml", "d-ploiement.yaml"),
            ("x..yaml", "x.yaml"),
            ("-rf.yaml", "rf.yaml"),
        ];
        for (raw, want) in cases {
            assert_eq!(safe_file_name(raw, "yaml", "manifest"), want, "for {raw:?}");
        }
    }

    #[test]
    fn every_output_is_one_plain_component() {
        let long = "a".repeat(1000);
        for raw in [
            "../../../..",
            "/",
            "//server/share/x",
            "a/../../b",
            "....//....",
            long.as_str(),
            "\u{202e}gnp.yaml",
        ] {
            let name = safe_file_name(raw, "json", "backup");
            assert!(!name.contains('/') && !name.contains('\\'), "{name}");
            assert!(!name.starts_with('.') && !name.starts_with('-'), "{name}");
            assert!(name.ends_with(".json"), "{name}");
            assert!(name.len() <= MAX_FILE_STEM + ".json".len(), "{name}");
            assert!(name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)));
        }
    }

    #[test]
    fn duplicates_and_reserved_names_get_suffixes() {
        let names = unique_file_names(
            [
                "app.yaml",
                "App.yaml",
                "app",
                "kustomization.yaml",
                "app-2.yaml",
            ],
            "yaml",
            "manifest",
            &[KUSTOMIZATION_FILE],
        );
        assert_eq!(
            names,
            [
                "app.yaml",
                "app-2.yaml",
                "app-3.yaml",
                "kustomization-2.yaml",
                "app-2-2.yaml"
            ]
        );
    }
}
