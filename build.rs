//! Restores owner-only modes on the example private keys in `certs-example/`.
//!
//! Git does not keep file modes beyond the executable bit, so a fresh clone
//! checks the example keys and admin tokens out as 0644, and `vigil` refuses
//! to load a private file that group or others can read. The example configs
//! in `config/` must run as they are, so every build sets `*.key`,
//! `*.signing.pem` and `*.admin.token` in `certs-example/` back to 0600.
//! A missing folder or a failed chmod never fails the build.

fn main() {
    println!("cargo:rerun-if-changed=certs-example");
    #[cfg(unix)]
    {
        let root = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into());
        fix_modes(&std::path::Path::new(&root).join("certs-example"));
    }
}

#[cfg(unix)]
fn fix_modes(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if ![".key", ".signing.pem", ".admin.token"]
            .iter()
            .any(|s| name.ends_with(s))
        {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() || meta.permissions().mode() & 0o077 == 0 {
            continue;
        }
        if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            println!("cargo:warning=cannot chmod 600 {}: {e}", path.display());
        }
    }
}
