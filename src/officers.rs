//! Named officers and their roles (docs/officers.md).
//!
//! Why: a 24/7 contact point is people on shifts, and the processing log
//! must name the person behind every consultation and disclosure. Each
//! officer has a token of its own and a role that bounds what it may do
//! through the admin API; the node's administrator keeps the token made by
//! `vigil init`.
//!
//! The registry is a small file beside the config (`officers/officers.toml`)
//! holding each officer's name, role and the SHA-256 of its token, never
//! the token itself. The node reads it on every request, so adding or
//! removing an officer takes effect at once, without a restart. The token
//! files (`officers/NAME.token`, mode 0600) are handed to the officers.
//!
//! [`Role::may`] is pure; the rest reads and writes the registry.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};

/// What an officer may be allowed to do, one per admin API operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The node's id and public keys (`/v1/id`).
    Id,
    /// Link status of each member.
    Peers,
    /// How many notices are carried in transit.
    Transit,
    /// Per-member delivery status of a notice (no personal data).
    Status,
    /// Notices held (`notice list`).
    List,
    /// One notice (`notice show`).
    Show,
    /// Screening documents, names or a manifest.
    Screen,
    /// Hit reports received for this node's notices.
    Hits,
    /// Acknowledging a hit report.
    AckHit,
    /// The event stream (`vigil watch`).
    Watch,
    Issue,
    Update,
    Cancel,
    Import,
    Export,
    /// Exporting (and so verifying) the processing log.
    Audit,
    /// A copy of the whole store (`vigil backup`): the administrator's only.
    Backup,
    /// Rotating the node's signing key (`vigil key rotate`): the
    /// administrator's only.
    RotateKey,
}

impl Action {
    /// What the action is, for "officer NAME (role R) may not …".
    pub fn describe(self) -> &'static str {
        match self {
            Action::Id => "read the node's identity",
            Action::Peers => "read link status",
            Action::Transit => "read the transit count",
            Action::Status => "read delivery status",
            Action::List => "list notices",
            Action::Show => "show notices",
            Action::Screen => "screen",
            Action::Hits => "read hit reports",
            Action::AckHit => "acknowledge hit reports",
            Action::Watch => "watch events",
            Action::Issue => "issue notices",
            Action::Update => "update notices",
            Action::Cancel => "cancel notices",
            Action::Import => "import notices",
            Action::Export => "export notices",
            Action::Audit => "export the processing log",
            Action::Backup => "back up the store",
            Action::RotateKey => "rotate the node's signing key",
        }
    }
}

/// An officer's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Peers, delivery status and counts: no personal data.
    Monitor,
    /// The duty desk: list, show, screen, hits, acknowledge, watch.
    Desk,
    /// The desk plus issue, update, cancel, import and export.
    Supervisor,
    /// The processing log, and the list of notices it refers to.
    Auditor,
}

impl Role {
    /// Every role, in the order the docs list them.
    pub const ALL: [Role; 4] = [Role::Monitor, Role::Desk, Role::Supervisor, Role::Auditor];

    /// The role's name as configured and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Monitor => "monitor",
            Role::Desk => "desk",
            Role::Supervisor => "supervisor",
            Role::Auditor => "auditor",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether an officer of this role may perform `action`.
    pub fn may(self, action: Action) -> bool {
        use Action::*;
        let monitor = matches!(action, Id | Peers | Transit | Status);
        let desk = monitor || matches!(action, List | Show | Screen | Hits | AckHit | Watch);
        match self {
            Role::Monitor => monitor,
            Role::Desk => desk,
            Role::Supervisor => desk || matches!(action, Issue | Update | Cancel | Import | Export),
            Role::Auditor => matches!(action, Id | Transit | List | Audit),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` keeps width and alignment (`{:<11}` in `officer list`).
        f.pad(self.as_str())
    }
}

/// Who made a request: the processing log's `actor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The node's administrator (the token from `vigil init`).
    Admin,
    /// A named officer.
    Officer { name: String, role: Role },
}

impl Principal {
    /// The processing log's `actor`: `admin` or `officer:NAME`.
    pub fn actor(&self) -> String {
        match self {
            Principal::Admin => "admin".into(),
            Principal::Officer { name, .. } => format!("officer:{name}"),
        }
    }

    /// Whether this principal may perform `action`.
    pub fn may(&self, action: Action) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Officer { role, .. } => role.may(action),
        }
    }

    /// Why a request outside the principal's role is refused.
    pub fn refusal(&self, action: Action) -> String {
        match self {
            Principal::Admin => format!("admin may not {}", action.describe()),
            Principal::Officer { name, role } => {
                format!("officer {name} (role {role}) may not {}", action.describe())
            }
        }
    }
}

/// One registered officer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Officer {
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the officer's token.
    pub token_sha256: String,
    /// When the officer was added (RFC 3339).
    pub created_at: String,
}

/// The registry file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    officer: Vec<Officer>,
}

/// Why the officer registry could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum OfficerError {
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: not an officer registry: {error}")]
    Malformed { path: String, error: String },
    #[error("--name: `{0}` is not an officer name (1 to 64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit; not `admin`)")]
    BadName(String),
    #[error("--role: `{0}` is not a role (monitor, desk, supervisor, auditor)")]
    BadRole(String),
    #[error("an officer named `{0}` already exists")]
    Exists(String),
    #[error("no officer named `{0}`")]
    Unknown(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> OfficerError + '_ {
    move |error| OfficerError::Io {
        path: path.display().to_string(),
        error,
    }
}

/// Whether `name` may name an officer.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && name != "admin"
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
}

/// Hex SHA-256 of a token, as the registry keeps it.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The officer registry of one node: `DIR/officers.toml` and the token
/// files `DIR/NAME.token`, where DIR is `officers/` beside the config.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    /// The registry of the node configured by the file at `config_path`.
    pub fn beside(config_path: &Path) -> Registry {
        let parent = config_path.parent().unwrap_or(Path::new("."));
        Registry {
            dir: parent.join("officers"),
        }
    }

    /// The registry file.
    pub fn file(&self) -> PathBuf {
        self.dir.join("officers.toml")
    }

    /// Where an officer's token file is written.
    pub fn token_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.token"))
    }

    /// Every registered officer (none when the file does not exist).
    pub fn load(&self) -> Result<Vec<Officer>, OfficerError> {
        let path = self.file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&path)(e)),
        };
        let malformed = |error: String| OfficerError::Malformed {
            path: path.display().to_string(),
            error,
        };
        let f: RegistryFile =
            toml::from_str(&text).map_err(|e| malformed(e.to_string().replace('\n', " ")))?;
        // A registry edited by hand is held to what `officer add` writes:
        // a name that could leave the folder or an entry sharing another's
        // token would make a token mean someone else.
        for (i, o) in f.officer.iter().enumerate() {
            let at = |what: String| malformed(format!("officer[{i}]: {what}"));
            if !valid_name(&o.name) {
                return Err(at(format!(
                    "`{}` is not an officer name",
                    crate::notice::text::escape(&o.name)
                )));
            }
            if o.token_sha256.len() != 64
                || !o
                    .token_sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(at("token_sha256 is not 64 lowercase hex digits".into()));
            }
            if let Some(other) = f.officer[..i]
                .iter()
                .find(|x| x.name == o.name || x.token_sha256 == o.token_sha256)
            {
                return Err(at(format!(
                    "`{}` repeats the name or the token of `{}`",
                    o.name, other.name
                )));
            }
        }
        Ok(f.officer)
    }

    /// The officer holding `token`, if any.
    pub fn find_token(&self, token: &str) -> Result<Option<Officer>, OfficerError> {
        let digest = token_digest(token);
        Ok(self.load()?.into_iter().find(|o| o.token_sha256 == digest))
    }

    /// Adds an officer with a fresh token: writes its token file (0600)
    /// and then the registry. Returns the token file's path.
    pub fn add(&self, name: &str, role: &str, now: i64) -> Result<PathBuf, OfficerError> {
        if !valid_name(name) {
            return Err(OfficerError::BadName(name.to_string()));
        }
        let role = Role::parse(role).ok_or_else(|| OfficerError::BadRole(role.to_string()))?;
        self.locked(|officers| {
            if officers.iter().any(|o| o.name == name) {
                return Err(OfficerError::Exists(name.to_string()));
            }
            let token = hex::encode(rand::random::<[u8; 32]>());
            let path = self.token_file(name);
            // A token file left by an officer removed by hand is replaced.
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
            crate::identity::write_private(&path, format!("{token}\n")).map_err(io(&path))?;
            officers.push(Officer {
                name: name.to_string(),
                role,
                token_sha256: token_digest(&token),
                created_at: crate::time::rfc3339(now),
            });
            Ok(path)
        })
    }

    /// Removes an officer: its token stops working with the next request
    /// the node reads the registry for. The token file is deleted too.
    pub fn remove(&self, name: &str) -> Result<Officer, OfficerError> {
        if !valid_name(name) {
            return Err(OfficerError::BadName(name.to_string()));
        }
        self.locked(|officers| {
            let i = officers
                .iter()
                .position(|o| o.name == name)
                .ok_or_else(|| OfficerError::Unknown(name.to_string()))?;
            // Under the lock, so an `add` of the same name that follows
            // cannot lose its new file.
            let path = self.token_file(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
            Ok(officers.remove(i))
        })
    }

    /// Runs `change` on the registry under an exclusive lock and writes
    /// the result back (write, sync, rename), so two `officer` commands at
    /// once cannot lose one another's change.
    fn locked<T>(
        &self,
        change: impl FnOnce(&mut Vec<Officer>) -> Result<T, OfficerError>,
    ) -> Result<T, OfficerError> {
        use fs2::FileExt;
        create_private_dir(&self.dir).map_err(io(&self.dir))?;
        let lock_path = self.dir.join(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        lock.lock_exclusive().map_err(io(&lock_path))?;
        let mut officers = self.load()?;
        let out = change(&mut officers)?;
        let text = toml::to_string(&RegistryFile { officer: officers }).map_err(|e| {
            OfficerError::Malformed {
                path: self.file().display().to_string(),
                error: e.to_string(),
            }
        })?;
        let tmp = self.dir.join(".officers.toml.new");
        let _ = std::fs::remove_file(&tmp);
        crate::identity::write_private(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, self.file()).map_err(io(&tmp))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(out)
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_bound_what_officers_may_do() {
        use Action::*;
        let all = [
            Id, Peers, Transit, Status, List, Show, Screen, Hits, AckHit, Watch, Issue, Update,
            Cancel, Import, Export, Audit, Backup,
        ];
        let allowed = |r: Role| -> Vec<Action> { all.into_iter().filter(|a| r.may(*a)).collect() };
        assert_eq!(allowed(Role::Monitor), vec![Id, Peers, Transit, Status]);
        assert_eq!(
            allowed(Role::Desk),
            vec![Id, Peers, Transit, Status, List, Show, Screen, Hits, AckHit, Watch]
        );
        assert_eq!(
            allowed(Role::Supervisor),
            vec![
                Id, Peers, Transit, Status, List, Show, Screen, Hits, AckHit, Watch, Issue, Update,
                Cancel, Import, Export
            ]
        );
        assert_eq!(allowed(Role::Auditor), vec![Id, Transit, List, Audit]);
        assert!(all.into_iter().all(|a| Principal::Admin.may(a)));
    }

    #[test]
    fn refusals_name_the_officer_and_role() {
        let p = Principal::Officer {
            name: "jdoe".into(),
            role: Role::Monitor,
        };
        assert_eq!(p.actor(), "officer:jdoe");
        assert_eq!(
            p.refusal(Action::Issue),
            "officer jdoe (role monitor) may not issue notices"
        );
        assert_eq!(Principal::Admin.actor(), "admin");
    }

    #[test]
    fn names_are_checked() {
        for good in ["jdoe", "j.doe", "a", "desk-1", "x_y"] {
            assert!(valid_name(good), "{good}");
        }
        let long = "a".repeat(65);
        for bad in ["", "admin", "Jdoe", "-x", "a b", "a/b", "..", long.as_str()] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn add_find_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::beside(&tmp.path().join("vigil.toml"));
        let path = reg.add("jdoe", "desk", 0).unwrap();
        assert_eq!(path, tmp.path().join("officers/jdoe.token"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "token file readable by others");
        }
        let token = std::fs::read_to_string(&path).unwrap();
        let found = reg.find_token(token.trim()).unwrap().unwrap();
        assert_eq!((found.name.as_str(), found.role), ("jdoe", Role::Desk));
        assert!(reg.find_token("not the token").unwrap().is_none());
        assert!(matches!(
            reg.add("jdoe", "desk", 0),
            Err(OfficerError::Exists(_))
        ));
        assert!(matches!(
            reg.add("kim", "chief", 0),
            Err(OfficerError::BadRole(_))
        ));
        // The registry keeps only the digest.
        let text = std::fs::read_to_string(reg.file()).unwrap();
        assert!(!text.contains(token.trim()));
        reg.remove("jdoe").unwrap();
        assert!(reg.find_token(token.trim()).unwrap().is_none());
        assert!(!path.exists());
        assert!(matches!(reg.remove("jdoe"), Err(OfficerError::Unknown(_))));
    }

    #[test]
    fn entries_edited_by_hand_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::beside(&tmp.path().join("vigil.toml"));
        std::fs::create_dir_all(tmp.path().join("officers")).unwrap();
        let d = "a".repeat(64);
        let entry = |name: &str, digest: &str| {
            format!("[[officer]]\nname = \"{name}\"\nrole = \"desk\"\ntoken_sha256 = \"{digest}\"\ncreated_at = \"x\"\n")
        };
        for (text, needle) in [
            (entry("../victim", &d), "not an officer name"),
            (entry("eve", "abc"), "64 lowercase hex"),
            (
                entry("dirk", &d) + &entry("eve", &d),
                "repeats the name or the token of `dirk`",
            ),
            (
                entry("dirk", &d) + &entry("dirk", &"b".repeat(64)),
                "repeats",
            ),
        ] {
            std::fs::write(reg.file(), &text).unwrap();
            let e = reg.load().unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("officer["), "{e}");
        }
        assert!(matches!(
            reg.remove("../victim"),
            Err(OfficerError::BadName(_))
        ));
        assert_eq!(format!("{:<8}|", Role::Desk), "desk    |");
    }

    #[test]
    fn a_damaged_registry_is_an_error_not_an_empty_one() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::beside(&tmp.path().join("vigil.toml"));
        std::fs::create_dir_all(tmp.path().join("officers")).unwrap();
        std::fs::write(reg.file(), "[[officer]]\nname = 3\n").unwrap();
        let e = reg.load().unwrap_err().to_string();
        assert!(e.contains("officers.toml"), "{e}");
    }
}
