//! The exchange: every business step a notice takes through this node,
//! as plain synchronous functions over the store. The network and admin
//! drivers call these and nothing else; nothing here touches a socket,
//! reads the clock or draws unseeded randomness (`now` is passed in, the
//! random nonces of hit reports come from a generator seeded by whoever
//! builds the exchange), so the deterministic harness in
//! [`crate::testkit`] runs the same code as a node.
//!
//! The path of a notice reads from the files:
//! - [`originate`]: operator input → validate → seal and sign → store.
//! - [`outbound`]: this node's log → outbound policy per member → a feed
//!   batch (and hit reports one step toward their origin).
//! - [`inbound`]: a received batch → verify → inbound policy → durable
//!   store → the receipt to sign; `import` runs the same checks on files.
//! - [`receipt`]: a member's signed receipt → what became of each notice.
//! - [`screen`]: screening queries and manifests → consult entries and
//!   hit reports.
//! - [`retention`]: the sweep that erases expired notices.
//! - [`refusals`]: which refused connections are recorded one by one.
//! - [`consult`]: reads of personal data, each logged with who read it.
//! - [`views`]: what operators read (the inbox, a notice, the log export).
//! - [`reload`]: members and policy swapped in on SIGHUP.
//! - [`rotate`]: this node's signing-key rotation, and the key each
//!   origin's message is verified with.
//! - [`witness`]: this node's processing-log heads cosigned by members,
//!   and members' heads judged as their witness.
//! - `raise`: which of these steps raise desk events.

pub mod consult;
pub mod inbound;
pub mod originate;
pub mod outbound;
mod raise;
pub mod receipt;
pub mod refusals;
pub mod reload;
pub mod retention;
pub mod rotate;
pub mod screen;
pub mod views;
pub mod witness;

use ed25519_dalek::SigningKey;
use rand::rngs::StdRng;
use rand::Rng;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use tracing::warn;

use crate::config::Config;
use crate::notice::seal::{
    DecryptionKey, EncryptionKey, ReceiverContext, SealError, SealedPart, SenderContext,
};
use crate::notice::transit::TransitError;
use crate::notice::{NoticeId, SubjectField};
use crate::store::{AuditDraft, Operation, Store};
use std::collections::HashMap;

pub use consult::{AckError, HitFilter};
pub use inbound::{AdoptError, ImportError, ReceiveError};
pub use originate::IssueError;
pub use outbound::{FeedBatch, FeedError, Subscription};
pub use receipt::{MemberStatus, ReceiptError};
pub use reload::{Reload, ReloadError};
pub use retention::SweepError;
pub use screen::{AckView, Hit, HitView, ManifestReport, RowHits, ScreenError};
pub use views::{NoticeView, ReadError};

/// The business state of one node: who it is, the config in force, its
/// signing key and its store.
pub struct Exchange {
    /// This node's id (fixed for the life of the process).
    me: String,
    /// The configuration in force; SIGHUP swaps in new members and policy.
    /// Each operation takes one snapshot, so it decides under one config.
    config: RwLock<Arc<Config>>,
    /// Signs this node's notices, receipts and hit reports; replaced by a
    /// key rotation ([`rotate`]), so read through [`Exchange::signer`].
    signing: RwLock<Arc<SigningKey>>,
    /// Everything durable: the log, the processing log, cursors.
    store: Arc<Store>,
    /// Salts of field commitments and nonces of hit reports: a
    /// cryptographic generator, seeded from the operating system by a node
    /// and from a fixed seed by the deterministic harness.
    rng: Mutex<StdRng>,
    /// Which refusals are recorded one by one (bounded per source).
    refusals: Mutex<refusals::Refusals>,
    /// The store's epoch when this exchange began: a restore from an
    /// older copy is detected (and the epoch rotated) at most once per run.
    epoch_at_open: u64,
    /// Opens what members sealed to this node (`[identity]
    /// encryption_key`); without it, sealed notices are refused.
    decryption: Option<DecryptionKey>,
    /// The contexts this node seals under, one per recipient, each made
    /// fresh after `CONTEXT_PARTS` parts or `CONTEXT_SECS`: one X-Wing
    /// encapsulation serves many notices.
    senders: Mutex<HashMap<String, SenderContext>>,
    /// Contexts members sealed to this node, accepted (signature verified,
    /// key decapsulated), by sender and context id; at most
    /// [`RECEIVER_CONTEXTS`], then forgotten and accepted again as needed.
    receivers: Mutex<HashMap<ContextKey, Arc<ReceiverContext>>>,
    /// Events for the duty desk (hits, notices received, refusals, links):
    /// streamed by the admin API and handed to the alert hook.
    events: crate::events::Bus,
    /// Counts of what this exchange decided, for `/metrics`.
    metrics: crate::metrics::Metrics,
    /// Per member: when a head of its was last refused with an audit
    /// entry and an alert ([`witness`]): at most one an hour each.
    witness_refused: Mutex<HashMap<String, i64>>,
}

/// A sender's context as received: (sender, [`SealedPart::context_id`]).
type ContextKey = (String, [u8; 32]);

/// Most accepted receiver contexts kept (each a few hundred bytes).
const RECEIVER_CONTEXTS: usize = 256;

/// The longest refusal reason recorded (a peer's certificate names can
/// make it long).
const MAX_REASON: usize = 300;

impl Exchange {
    /// The exchange of node `config.node_id` over `store`, drawing salts
    /// and nonces from `rng`.
    pub fn new(config: Config, signing: SigningKey, store: Store, mut rng: StdRng) -> Exchange {
        Exchange {
            events: crate::events::Bus::new(rng.next_u64()),
            epoch_at_open: store.epoch(),
            me: config.node_id.clone(),
            config: RwLock::new(Arc::new(config)),
            signing: RwLock::new(Arc::new(signing)),
            store: Arc::new(store),
            rng: Mutex::new(rng),
            refusals: Mutex::new(refusals::Refusals::default()),
            decryption: None,
            senders: Mutex::new(HashMap::new()),
            receivers: Mutex::new(HashMap::new()),
            metrics: crate::metrics::Metrics::default(),
            witness_refused: Mutex::new(HashMap::new()),
        }
    }

    /// What this exchange counted, for `/metrics`.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The node's event bus.
    pub fn events(&self) -> &crate::events::Bus {
        &self.events
    }

    /// Runs `f` with this node's current context toward `recipient` (a
    /// fresh one if none is, signed with this node's key) and the
    /// generator.
    fn seal_for<T>(
        &self,
        recipient: &str,
        key: &EncryptionKey,
        now: i64,
        f: impl FnOnce(&mut SenderContext, &mut StdRng) -> Result<T, SealError>,
    ) -> Result<T, SealError> {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        let mut rng = self.rng();
        let fresh = senders.get(recipient).is_some_and(|c| c.fresh(key, now));
        if !fresh {
            let ctx = SenderContext::new(recipient, key, &self.signer(), now, &mut *rng)?;
            senders.insert(recipient.to_string(), ctx);
        }
        let ctx = senders
            .get_mut(recipient)
            .ok_or_else(|| SealError::Key("no context".into()))?;
        f(ctx, &mut rng)
    }

    /// The accepted context `part` was sealed under by `sender`: from the
    /// cache, or verified against the sender's pinned key and decapsulated.
    fn receiver_context(
        &self,
        part: &SealedPart,
        sender: &str,
    ) -> Result<Arc<ReceiverContext>, TransitError> {
        let key = self.decryption.as_ref().ok_or(TransitError::NoKey)?;
        let cache_key = (sender.to_string(), part.context_id());
        let mut cache = self.receivers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&cache_key) {
            return Ok(c.clone());
        }
        if sender == self.me() {
            return Err(TransitError::UnknownSender(sender.to_string()));
        }
        // Newest first: a context sealed before the sender rotated its
        // key is signed with the key before.
        let keys = self.keys_of(sender);
        let mut result = Err(TransitError::UnknownSender(sender.to_string()));
        for k in keys.iter().rev() {
            result = ReceiverContext::accept(part, self.me(), key, (sender, k)).map_err(|error| {
                TransitError::Seal {
                    recipient: self.me().to_string(),
                    error,
                }
            });
            if result.is_ok() {
                break;
            }
        }
        let ctx = result?;
        if cache.len() >= RECEIVER_CONTEXTS {
            cache.clear();
        }
        let ctx = Arc::new(ctx);
        cache.insert(cache_key, ctx.clone());
        Ok(ctx)
    }

    /// The exchange with this node's private encryption key, which opens
    /// the parts members sealed to it.
    pub fn with_decryption(mut self, key: Option<DecryptionKey>) -> Exchange {
        self.decryption = key;
        self
    }

    /// The generator of salts and nonces (held only while drawing).
    fn rng(&self) -> std::sync::MutexGuard<'_, StdRng> {
        self.rng.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        // A poisoned lock still holds a whole config: swaps replace the Arc.
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The node's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The node's signing key in force (for receipts, proofs, notices).
    pub fn signing_key(&self) -> Arc<SigningKey> {
        self.signer()
    }

    fn signer(&self) -> Arc<SigningKey> {
        self.signing
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A fresh nonce for a hit report.
    fn nonce(&self) -> [u8; 16] {
        let mut n = [0u8; 16];
        self.rng().fill_bytes(&mut n);
        n
    }

    /// Appends one audit entry; a failure is logged (the caller's step
    /// already failed or is a refusal that stores nothing else).
    fn audit_one(&self, d: AuditDraft, now: i64) {
        if let Err(e) = self.store.audit(&[d], now) {
            warn!(error = %e, "cannot write audit entry");
        }
    }

    /// Audits and logs a refused connection or protocol violation: in
    /// full for the first few per source address and minute, counted in a
    /// summary entry beyond ([`refusals`]), so a flood cannot grow the
    /// processing log or the log without bound.
    pub fn audit_refusal(&self, peer: Option<&str>, remote: SocketAddr, reason: &str, now: i64) {
        let (verdict, summary) = self
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note(remote.ip(), now);
        if let Some(s) = summary {
            self.audit_summary(&s, now);
        }
        if verdict == refusals::Verdict::Suppress {
            return;
        }
        let mut reason = reason.to_string();
        cut_to(&mut reason, MAX_REASON);
        warn!(peer = peer.unwrap_or("-"), %remote, reason = %reason, "connection refused");
        self.audit_one(
            AuditDraft {
                actor: format!("remote:{remote}"),
                operation: Operation::Reject,
                notice: None,
                peer: peer.map(str::to_string),
                justification: None,
                decision: reason,
            },
            now,
        );
    }

    /// Writes the summary of suppressed refusals once their window is
    /// over (called periodically, so a flood that stopped is summarised).
    pub fn refusal_tick(&self, now: i64) {
        let summary = self
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .roll(now);
        if let Some(s) = summary {
            self.audit_summary(&s, now);
        }
    }

    fn audit_summary(&self, s: &refusals::Summary, now: i64) {
        let decision = s.decision();
        warn!(suppressed = s.suppressed, sources = s.sources, summary = %decision, "refused connections summarised");
        self.audit_one(
            AuditDraft {
                actor: "node".into(),
                operation: Operation::Reject,
                notice: None,
                peer: None,
                justification: None,
                decision,
            },
            now,
        );
    }
}

/// The audit entry of a cancellation erasing its target's personal data.
fn erase_audit(target: &NoticeId, actor: &str, peer: Option<&str>, reason: &str) -> AuditDraft {
    AuditDraft {
        actor: actor.to_string(),
        operation: Operation::Erase,
        notice: Some(*target),
        peer: peer.map(str::to_string),
        justification: Some(reason.to_string()),
        decision: "cancelled: personal data erased, tombstone kept".into(),
    }
}

/// Cuts `text` to `max` bytes on a character boundary, then appends
/// `...`: reasons that reach audit entries and reports stay bounded.
pub fn cut_to(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
}

/// Field names for log lines and audit entries.
fn field_names(fields: &[SubjectField]) -> String {
    fields
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
