//! A hostile plugin for the sandbox's tests. It speaks the tool protocol like any plugin,
//! but each input asks it to attack the sandbox in one way; it reports what it managed.
//! Escapes must fail (the output says `"escaped": false`), resource attacks must be stopped
//! by the host (the call errors with a limit).
//!
//! Input: `{"attack": NAME, "path": optional path}`. Output:
//! `{"ok": true, "output": {"escaped": BOOL, "detail": TEXT}}`.

// Symbolic links are only exposed by std's unstable WASI extension; the wasm build runs
// with RUSTC_BOOTSTRAP already (for -Zbuild-std).
#![cfg_attr(target_os = "wasi", feature(wasi_ext))]

use std::io::{Read, Write};

#[cfg(target_os = "wasi")]
fn make_symlink(target: &str, link: &str) -> std::io::Result<()> {
    std::os::wasi::fs::symlink_path(target, link)
}

#[cfg(not(target_os = "wasi"))]
fn make_symlink(target: &str, link: &str) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

fn main() {
    let mut raw = String::new();
    let _ = std::io::stdin().read_to_string(&mut raw);
    let input: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
    let attack = input["attack"].as_str().unwrap_or_default();
    let path = input["path"].as_str().unwrap_or_default();
    let (escaped, detail) = match attack {
        // Reading a path: absolute, with .., through a link, very long, with NUL bytes.
        "read" => match std::fs::read(path) {
            Ok(bytes) => (true, String::from_utf8_lossy(&bytes).into_owned()),
            Err(error) => (false, error.to_string()),
        },
        // Writing a file (in a read-only workspace, or outside it).
        "write" => match std::fs::write(path, b"pwned") {
            Ok(()) => (true, format!("wrote {path}")),
            Err(error) => (false, error.to_string()),
        },
        // Creating a symbolic link that points out of the workspace, then reading through it.
        "symlink_out" => {
            let link = "/workspace/escape-link";
            match make_symlink(path, link) {
                Err(error) => (false, format!("symlink refused: {error}")),
                Ok(()) => match std::fs::read(link) {
                    Ok(bytes) => (true, String::from_utf8_lossy(&bytes).into_owned()),
                    Err(error) => (false, format!("link made but unreadable: {error}")),
                },
            }
        }
        // Listing a directory (the root of the guest's view, say).
        "list" => match std::fs::read_dir(path) {
            Ok(entries) => {
                let names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
                (!names.is_empty(), names.join(","))
            }
            Err(error) => (false, error.to_string()),
        },
        // Ambient authority: environment variables and arguments beyond the tool name.
        "env" => {
            let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
            let args: Vec<String> = std::env::args().skip(1).collect();
            (!vars.is_empty() || !args.is_empty(), format!("vars={vars:?} args={args:?}"))
        }
        // The network: WASI preview 1 has no sockets to open; the host grants none.
        "cwd" => match std::env::current_dir() {
            Ok(dir) => (dir.as_os_str() != "/" && dir.as_os_str() != "", dir.display().to_string()),
            Err(error) => (false, error.to_string()),
        },
        // Resource attacks: the host must stop these.
        "loop" => loop {
            std::hint::black_box(0_u64);
        },
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1_u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "output_flood" => {
            let chunk = vec![b'A'; 64 * 1024];
            let mut stdout = std::io::stdout();
            loop {
                if stdout.write_all(&chunk).is_err() {
                    // Keep trying: a real attacker would not stop politely.
                    std::hint::black_box(0);
                }
            }
        }
        "stderr_flood" => {
            let chunk = vec![b'E'; 64 * 1024];
            let mut stderr = std::io::stderr();
            for _ in 0..1024 {
                let _ = stderr.write_all(&chunk);
            }
            (false, "stderr flooded".to_owned())
        }
        // Protocol abuse: not a result document.
        "garbage" => {
            print!("this is not JSON");
            return;
        }
        "exit" => std::process::exit(3),
        "panic" => panic!("the plugin panicked on purpose"),
        other => (false, format!("unknown attack {other:?}")),
    };
    let document = serde_json::json!({"ok": true, "output": {"escaped": escaped, "detail": detail}});
    print!("{document}");
}
