//! The processing log as operators and auditors see it: export of the hash
//! chain as JSON lines closed by a head line signed by the node, and
//! verification that recomputes the chain and names the first broken entry.
//! Pure: no I/O.

use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::identity::{format_public_key, parse_public_key};
use crate::notice::NoticeId;
use crate::store::{AuditEntry, Operation};

/// Domain separation for the signed head of an export.
pub const HEAD_DOMAIN: &[u8] = b"vigil/audit-head/v1\0";

/// One entry as a JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditLine {
    pub seq: u64,
    pub time: String,
    pub actor: String,
    pub operation: Operation,
    pub notice: Option<String>,
    pub peer: Option<String>,
    pub justification: Option<String>,
    pub decision: String,
    pub prev: String,
    pub hash: String,
}

/// The last line of an export: the chain's head, signed by the node, so a
/// truncated export is detected too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadLine {
    pub node: String,
    pub signing_key: String,
    pub seq: u64,
    pub hash: String,
    pub signature: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadWrapper {
    head: HeadLine,
}

impl AuditLine {
    /// The line for a stored entry.
    pub fn from_entry(e: &AuditEntry) -> Result<AuditLine, ExportError> {
        Ok(AuditLine {
            seq: e.seq,
            time: crate::time::rfc3339(e.time),
            actor: e.actor.clone(),
            operation: e.operation,
            notice: e.notice.map(|n| n.to_string()),
            peer: e.peer.clone(),
            justification: e.justification.clone(),
            decision: e.decision.clone(),
            prev: hex::encode(e.prev),
            hash: hex::encode(e.hash()?),
        })
    }

    /// The entry a line claims to be (its hash is then recomputed).
    fn to_entry(&self) -> Result<AuditEntry, String> {
        let time = crate::time::parse_rfc3339(&self.time).ok_or("time is not RFC 3339")?;
        let notice = match &self.notice {
            None => None,
            Some(n) => Some(NoticeId::parse(n).ok_or("notice is not an id")?),
        };
        let mut prev = [0u8; 32];
        hex::decode_to_slice(&self.prev, &mut prev).map_err(|_| "prev is not a hash")?;
        Ok(AuditEntry {
            seq: self.seq,
            time,
            actor: self.actor.clone(),
            operation: self.operation,
            notice,
            peer: self.peer.clone(),
            justification: self.justification.clone(),
            decision: self.decision.clone(),
            prev,
        })
    }
}

fn head_message(node: &str, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut m = HEAD_DOMAIN.to_vec();
    m.extend_from_slice(node.as_bytes());
    m.push(0);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("an entry does not encode: {0}")]
    Entry(#[from] crate::store::StoreError),
    #[error("a line does not encode: {0}")]
    Json(#[from] serde_json::Error),
}

/// Exports entries (in chain order) as JSON lines plus a signed head line.
pub fn export(
    node: &str,
    key: &SigningKey,
    entries: impl IntoIterator<Item = AuditEntry>,
) -> Result<String, ExportError> {
    let mut out = String::new();
    let (mut seq, mut hash) = (0u64, [0u8; 32]);
    for e in entries {
        let line = AuditLine::from_entry(&e)?;
        seq = e.seq;
        hash = e.hash()?;
        out.push_str(&serde_json::to_string(&line)?);
        out.push('\n');
    }
    let sig = key.sign(&head_message(node, seq, &hash));
    let head = HeadWrapper {
        head: HeadLine {
            node: node.to_string(),
            signing_key: format_public_key(&key.verifying_key()),
            seq,
            hash: hex::encode(hash),
            signature: base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
        },
    };
    out.push_str(&serde_json::to_string(&head)?);
    out.push('\n');
    Ok(out)
}

/// An intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub node: String,
    pub entries: u64,
    pub head: String,
}

/// The first place where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {reason}", seq.map(|s| format!(" (entry {s})")).unwrap_or_default())]
pub struct Broken {
    pub line: usize,
    pub seq: Option<u64>,
    pub reason: String,
}

/// Recomputes the chain of an export: every entry's number follows the
/// previous one, names the previous entry's hash, hashes to what it claims,
/// and the signed head covers the last entry. `expected_key` pins the
/// node's key (otherwise the key in the head is reported, not trusted).
pub fn verify(text: &str, expected_key: Option<&VerifyingKey>) -> Result<Verified, Broken> {
    let (mut seq, mut prev) = (0u64, [0u8; 32]);
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    while let Some((i, l)) = lines.next() {
        let n = i + 1;
        let broken = |seq: Option<u64>, reason: String| Broken {
            line: n,
            seq,
            reason,
        };
        if lines.peek().is_none() {
            let head: HeadWrapper = serde_json::from_str(l).map_err(|e| {
                broken(
                    None,
                    format!("last line is not the signed head ({e}); export truncated?"),
                )
            })?;
            let h = head.head;
            let key = parse_public_key(&h.signing_key)
                .map_err(|e| broken(None, format!("head signing_key {e}")))?;
            if expected_key.is_some_and(|k| *k != key) {
                return Err(broken(
                    None,
                    "head is signed with another key than the node's".into(),
                ));
            }
            let sig_bytes: [u8; 64] = base64::engine::general_purpose::STANDARD
                .decode(&h.signature)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| broken(None, "head signature is malformed".into()))?;
            key.verify_strict(
                &head_message(&h.node, h.seq, &prev),
                &Signature::from_bytes(&sig_bytes),
            )
            .map_err(|_| broken(None, "head signature does not cover this chain".into()))?;
            if h.seq != seq || h.hash != hex::encode(prev) {
                return Err(broken(
                    Some(h.seq),
                    format!("head names entry {} but the chain ends at {seq}", h.seq),
                ));
            }
            return Ok(Verified {
                node: h.node,
                entries: seq,
                head: h.hash,
            });
        }
        let line: AuditLine = serde_json::from_str(l)
            .map_err(|e| broken(None, format!("not an audit entry: {e}")))?;
        let broken = |reason: String| Broken {
            line: n,
            seq: Some(line.seq),
            reason,
        };
        if line.seq != seq + 1 {
            return Err(broken(format!(
                "entry {} follows entry {seq} (missing or reordered)",
                line.seq
            )));
        }
        let entry = line.to_entry().map_err(|r| broken(r.to_string()))?;
        if entry.prev != prev {
            return Err(broken("does not name the previous entry's hash".into()));
        }
        let hash = entry
            .hash()
            .map_err(|e| broken(format!("does not encode: {e}")))?;
        if hex::encode(hash) != line.hash {
            return Err(broken("content does not match its hash (altered)".into()));
        }
        seq = line.seq;
        prev = hash;
    }
    Err(Broken {
        line: 0,
        seq: None,
        reason: "empty export: no signed head".into(),
    })
}

/// One cosigned head of a node's processing log, as `vigil audit
/// witnesses --json` prints it (other keys are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CosignedHead {
    pub witness: String,
    pub seq: u64,
    pub hash: String,
    /// The cosignature (base64 of its postcard encoding); a head without
    /// one, or whose cosignature does not verify, is no evidence.
    #[serde(default)]
    pub cosignature: String,
    /// The witness's key (`ed25519:BASE64`) the cosignature is checked with.
    #[serde(default)]
    pub witness_key: String,
}

impl CosignedHead {
    /// Checks the cosignature with `witness_key` and that it names this
    /// head: the witness, the entry and its hash.
    fn check(&self) -> Result<(), String> {
        use base64::Engine;
        let key = parse_public_key(&self.witness_key).map_err(|e| format!("witness_key: {e}"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.cosignature)
            .map_err(|_| "no cosignature (base64)".to_string())?;
        let c: crate::witness::Cosignature =
            postcard::from_bytes(&bytes).map_err(|_| "no cosignature".to_string())?;
        let body = c.verify(&key).map_err(|e| {
            format!(
                "the cosignature does not verify with {}: {e}",
                self.witness_key
            )
        })?;
        if body.witness != self.witness
            || body.seq != self.seq
            || hex::encode(body.hash) != self.hash.to_ascii_lowercase()
        {
            return Err("the cosignature names another head".into());
        }
        Ok(())
    }
}

/// The first cosigned head an export does not reproduce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {seq}: {reason} (head cosigned by {witness})")]
pub struct Disagreement {
    pub seq: u64,
    pub witness: String,
    pub reason: String,
}

/// Checks an export whose chain [`verify`] found intact against heads its
/// node's members cosigned: each names an entry the export must hold with
/// exactly that hash. A rewritten log cannot agree with the heads cosigned
/// after the rewritten entry. Returns how many heads agree, or the one
/// with the lowest entry number that does not.
pub fn check_cosigned(text: &str, heads: &[CosignedHead]) -> Result<usize, Disagreement> {
    let mut hashes = std::collections::HashMap::new();
    let mut last = 0;
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Ok(line) = serde_json::from_str::<AuditLine>(l) {
            last = last.max(line.seq);
            hashes.insert(line.seq, line.hash);
        }
    }
    let mut sorted: Vec<&CosignedHead> = heads.iter().collect();
    sorted.sort_by_key(|h| h.seq);
    for h in &sorted {
        if let Err(why) = h.check() {
            return Err(Disagreement {
                seq: h.seq,
                witness: h.witness.clone(),
                reason: format!("not evidence: {why}"),
            });
        }
        let reason = match hashes.get(&h.seq) {
            Some(got) if got.eq_ignore_ascii_case(&h.hash) => continue,
            Some(got) => format!("the export has hash {got}, the cosigned head {}", h.hash),
            None => format!("the export ends at entry {last}, before the cosigned head"),
        };
        return Err(Disagreement {
            seq: h.seq,
            witness: h.witness.clone(),
            reason,
        });
    }
    Ok(sorted.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> (SigningKey, String) {
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let mut prev = [0u8; 32];
        let mut entries = Vec::new();
        for seq in 1..=n {
            let e = AuditEntry {
                seq,
                time: 1_800_000_000 + seq as i64,
                actor: "node".into(),
                operation: if seq % 2 == 0 {
                    Operation::Collect
                } else {
                    Operation::Disclose
                },
                notice: Some(NoticeId([seq as u8; 32])),
                peer: Some("bravo".into()),
                justification: None,
                decision: format!("decision {seq}"),
                prev,
            };
            prev = e.hash().unwrap();
            entries.push(e);
        }
        let text = export("alpha", &key, entries).unwrap();
        (key, text)
    }

    fn lines(t: &str) -> Vec<String> {
        t.lines().map(str::to_string).collect()
    }

    /// `vigil audit verify --witness` takes the files
    /// `vigil audit witnesses --json` prints, and that command runs on
    /// the node whose log is audited: `{witness, node, seq, hash, at}`,
    /// no cosignature. Nothing is verified against the witness's key, so
    /// a node that rewrote its log prints heads of its rewritten chain
    /// (or anyone writes such a file by hand) and the check passes. A
    /// head no witness signed must not count as cosigned.
    #[test]
    fn heads_no_witness_signed_are_not_evidence() {
        let (_, rewritten) = chain(6);
        let made_up: Vec<CosignedHead> = rewritten
            .lines()
            .filter_map(|l| serde_json::from_str::<AuditLine>(l).ok())
            .map(|l| CosignedHead {
                witness: "bravo".into(),
                seq: l.seq,
                hash: l.hash,
                cosignature: String::new(),
                witness_key: String::new(),
            })
            .collect();
        assert!(
            check_cosigned(&rewritten, &made_up).is_err(),
            "heads with no cosignature were taken as cosigned by bravo"
        );
    }

    #[test]
    fn an_export_must_reproduce_every_cosigned_head() {
        let (_, text) = chain(6);
        let hash_of = |t: &str, seq: u64| {
            t.lines()
                .filter_map(|l| serde_json::from_str::<AuditLine>(l).ok())
                .find(|l| l.seq == seq)
                .unwrap()
                .hash
        };
        let witness = SigningKey::from_bytes(&[9u8; 32]);
        let head = |seq: u64, hash: String| {
            use base64::Engine;
            let mut h = [0u8; 32];
            hex::decode_to_slice(&hash, &mut h).unwrap();
            let c = crate::witness::Cosignature::sign(
                &witness,
                &crate::witness::CosignBody {
                    witness: "bravo".into(),
                    node: "alpha".into(),
                    seq,
                    hash: h,
                    at: 1,
                },
            )
            .unwrap();
            CosignedHead {
                witness: "bravo".into(),
                seq,
                hash,
                cosignature: base64::engine::general_purpose::STANDARD
                    .encode(postcard::to_allocvec(&c).unwrap()),
                witness_key: format_public_key(&witness.verifying_key()),
            }
        };
        let heads = vec![head(5, hash_of(&text, 5)), head(2, hash_of(&text, 2))];
        assert_eq!(check_cosigned(&text, &heads), Ok(2));
        // A log rewritten from entry 3 on (every hash after it differs),
        // one entry shorter: entry 2 still agrees, entry 5 no longer does.
        let other: String = text
            .lines()
            .filter_map(|l| serde_json::from_str::<AuditLine>(l).ok())
            .filter(|l| l.seq <= 5)
            .map(|mut l| {
                if l.seq >= 3 {
                    l.hash = hex::encode([l.seq as u8; 32]);
                }
                serde_json::to_string(&l).unwrap() + "\n"
            })
            .collect();
        let e = check_cosigned(
            &other,
            &[head(2, hash_of(&text, 2)), head(5, hash_of(&text, 5))],
        )
        .unwrap_err();
        assert_eq!(e.seq, 5, "{e}");
        let e = check_cosigned(&other, &[head(6, hash_of(&text, 6))]).unwrap_err();
        assert!(e.reason.contains("ends at entry 5"), "{e}");
    }

    #[test]
    fn intact_export_verifies() {
        let (key, text) = chain(5);
        let v = verify(&text, Some(&key.verifying_key())).unwrap();
        assert_eq!(v.entries, 5);
        assert_eq!(v.node, "alpha");
    }

    #[test]
    fn changing_any_line_names_it() {
        let (key, text) = chain(6);
        for i in 0..6 {
            let mut l = lines(&text);
            l[i] = l[i].replace("\"decision\":\"decision", "\"decision\":\"altered");
            let err = verify(&l.join("\n"), Some(&key.verifying_key())).unwrap_err();
            assert_eq!(err.line, i + 1, "{err}");
            assert_eq!(err.seq, Some(i as u64 + 1));
        }
    }

    #[test]
    fn deleting_any_line_is_detected() {
        let (key, text) = chain(6);
        for i in 0..7 {
            let mut l = lines(&text);
            l.remove(i);
            let err = verify(&l.join("\n"), Some(&key.verifying_key())).unwrap_err();
            assert!(err.line <= i + 1 || i == 6, "deleted {i}: {err}");
        }
    }

    #[test]
    fn reordering_lines_is_detected_at_the_first_swap() {
        let (key, text) = chain(6);
        for i in 0..5 {
            let mut l = lines(&text);
            l.swap(i, i + 1);
            let err = verify(&l.join("\n"), Some(&key.verifying_key())).unwrap_err();
            assert_eq!(err.line, i + 1, "{err}");
        }
    }

    #[test]
    fn a_head_from_another_key_or_truncated_export_fails() {
        let (_, text) = chain(3);
        let other = SigningKey::from_bytes(&[4u8; 32]).verifying_key();
        assert!(verify(&text, Some(&other)).is_err());
        let l = lines(&text);
        assert!(verify(&l[..3].join("\n"), None).is_err(), "no head");
        // Recomputing hashes after an edit does not help without the key.
        let mut forged = lines(&text);
        forged[2] = forged[2].replace("decision 3", "decision X");
        assert!(verify(&forged.join("\n"), None).is_err());
    }
}
