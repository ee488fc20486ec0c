//! Backup and restore commands (docs/operations.md#backup-and-restore).

use std::path::{Path, PathBuf};

use anyhow::Context;
use vigil::store::backup::{self, BackupError, Summary, MANIFEST_FILE, STORE_FILE};

use super::{client, runtime, Usage};

/// What `vigil backup` writes beside the store copy, and prints with `--json`.
#[derive(serde::Serialize)]
struct Manifest<'a> {
    node: &'a str,
    /// When the copy was taken (RFC 3339, this machine's clock).
    taken_at: String,
    dir: String,
    file: &'a str,
    bytes: u64,
    #[serde(flatten)]
    summary: &'a Summary,
}

/// Refuses `dir` unless it is missing or empty, then makes it (or sets
/// it) mode 0700. Returns whether it made it.
fn fresh_dir(dir: &Path, what: &str) -> anyhow::Result<bool> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let bad = |e: std::io::Error| Usage(format!("{what} {}: {e}", dir.display()));
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            return Err(Usage(format!(
                "{what} {}: not empty; give a new folder",
                dir.display()
            ))
            .into());
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(bad)?;
        return Ok(false);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(bad)?;
    Ok(true)
}

/// `vigil backup --config F --out DIR`: a consistent copy of the running
/// node's store (processing log included) in DIR, checked whole before
/// it is named done.
pub fn backup(config: &Path, out: &Path, json: bool) -> anyhow::Result<()> {
    let c = client(config)?;
    let node = vigil::config::Config::load(config)?.node_id;
    let made = fresh_dir(out, "--out")?;
    let result = backup_into(&c, &node, out, json);
    if result.is_err() {
        // Leave nothing that would make a retry refuse `--out`.
        let _ = std::fs::remove_file(out.join(format!("{STORE_FILE}.part")));
        if made {
            let _ = std::fs::remove_dir(out);
        }
    }
    result
}

/// [`backup`]'s work once `out` is ready.
fn backup_into(c: &vigil::admin::Client, node: &str, out: &Path, json: bool) -> anyhow::Result<()> {
    let part = out.join(format!("{STORE_FILE}.part"));
    let rt = runtime()?;
    let (header, bytes) = rt.block_on(async {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&part)
            .await
            .with_context(|| part.display().to_string())?;
        let got = c
            .download("/v1/backup", vigil::admin::BACKUP_HEADER, &mut file)
            .await?;
        file.sync_all()
            .await
            .with_context(|| part.display().to_string())?;
        Ok::<_, anyhow::Error>(got)
    })?;
    let summary = backup::check(&part).map_err(|e| anyhow::anyhow!("the copy received: {e}"))?;
    let announced: Option<Summary> = header.and_then(|h| serde_json::from_str(&h).ok());
    if announced.as_ref() != Some(&summary) {
        anyhow::bail!(
            "the copy received does not match what the node announced ({}); not kept",
            part.display()
        );
    }
    let file = out.join(STORE_FILE);
    std::fs::rename(&part, &file).with_context(|| file.display().to_string())?;
    let manifest = Manifest {
        node,
        taken_at: vigil::time::rfc3339(vigil::time::now()),
        dir: out.display().to_string(),
        file: STORE_FILE,
        bytes,
        summary: &summary,
    };
    let text = serde_json::to_string_pretty(&manifest)?;
    vigil::identity::write_private(&out.join(MANIFEST_FILE), &text)
        .with_context(|| out.join(MANIFEST_FILE).display().to_string())?;
    std::fs::File::open(out)
        .and_then(|d| d.sync_all())
        .with_context(|| out.display().to_string())?;
    if json {
        println!("{}", serde_json::to_string(&manifest)?);
    } else {
        println!(
            "backed up {node} into {}: log through entry {}, processing log through entry {}, \
             {} records, {bytes} bytes, SHA-256 {}",
            out.display(),
            summary.head,
            summary.audit_seq,
            summary.records,
            summary.sha256
        );
    }
    Ok(())
}

/// `vigil restore --from DIR --data-dir D`: a new data directory from a
/// backup, its processing log verified.
pub fn restore(from: &Path, data_dir: &Path, json: bool) -> anyhow::Result<()> {
    let file: PathBuf = if from.is_dir() {
        from.join(STORE_FILE)
    } else {
        from.to_path_buf()
    };
    let epoch = rand::make_rng::<rand::rngs::StdRng>();
    let epoch = rand::Rng::next_u64(&mut { epoch });
    let restored =
        backup::restore(&file, data_dir, epoch, vigil::time::now()).map_err(|e| match e {
            BackupError::NotABackup { .. }
            | BackupError::Format { .. }
            | BackupError::NotEmpty { .. }
            | BackupError::Chain { .. }
            | BackupError::Store(
                vigil::store::StoreError::Corrupt(_) | vigil::store::StoreError::Unreadable { .. },
            ) => anyhow::Error::from(Usage(e.to_string())),
            BackupError::Io { .. } if !file.exists() => {
                Usage(format!("--from {}: no {STORE_FILE} there", from.display())).into()
            }
            e => e.into(),
        })?;
    if json {
        println!("{}", serde_json::to_string(&restored)?);
    } else {
        println!(
            "restored {} into {}: log through entry {}, processing log verified through entry {}, \
             new epoch {:016x}. Point [node] data_dir at it and start the node: it catches up \
             from its members.",
            file.display(),
            data_dir.display(),
            restored.backup.head,
            restored.audit_entries,
            restored.epoch
        );
    }
    Ok(())
}
