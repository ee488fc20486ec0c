//! TLS certificates in operation, with the real `vigil` binary on
//! 127.0.0.1 (docs/config.md#reloading, docs/systemd.md): SIGHUP puts a
//! new CA, certificate and key in force for new handshakes while the links
//! already up stay up; bad new material is refused and the old stays in
//! force; certificates that expire within 30 (7) days are warned about at
//! start, at reload and when a pinned member connects.
//!
//! Every wait is bounded, and every process is killed when its guard drops.
#![cfg(unix)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

mod common;
use common::*;

const DEADLINE: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(100);

/// The node's whole log so far.
fn log_text(node: &RunningNode) -> String {
    fs::read_to_string(&node.log).unwrap_or_default()
}

/// Log lines containing every needle.
fn lines_with(node: &RunningNode, needles: &[&str]) -> Vec<String> {
    log_text(node)
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

/// Waits until the log has more than `already` lines with every needle;
/// the newest such line.
fn wait_for_line(node: &RunningNode, needles: &[&str], already: usize) -> String {
    wait_within(
        &format!("{needles:?} in {}'s log", node.id),
        DEADLINE,
        POLL,
        || {
            let found = lines_with(node, needles);
            (found.len() > already).then(|| found.last().cloned().unwrap_or_default())
        },
    )
}

/// `vigil peers --json`: the entry of `member`.
fn peer(node: &RunningNode, member: &str) -> Value {
    let out = vigil(&["peers", "--config", node.cfg(), "--json"]);
    out.assert_ok("vigil peers --json");
    let all: Vec<Value> = serde_json::from_str(out.stdout.trim()).expect("peers --json is JSON");
    all.into_iter()
        .find(|p| p["id"] == member)
        .unwrap_or_else(|| panic!("no peer `{member}` in {}", out.stdout))
}

/// Waits until `node` has a live link to `member`; its `since`.
fn wait_connected(node: &RunningNode, member: &str) -> String {
    wait_within(
        &format!("{} linked to {member}", node.id),
        DEADLINE,
        POLL,
        || {
            let p = peer(node, member);
            (p["connected"] == true).then(|| p["since"].as_str().unwrap_or_default().to_string())
        },
    )
}

/// Times `node` logged that bravo connected and proved its key.
fn bravo_links(node: &RunningNode) -> usize {
    lines_with(
        node,
        &["member connected and proved its signing key", "bravo"],
    )
    .len()
}

/// `node`'s link to bravo is the one it had: up, with the same start, and
/// no new one proved since `links_before` were counted.
fn assert_bravo_link_kept(node: &RunningNode, since: &str, links_before: usize) {
    let p = peer(node, "bravo");
    assert_eq!(p["connected"], true, "{p}");
    assert_eq!(p["since"], since, "bravo's link was remade: {p}");
    assert_eq!(bravo_links(node), links_before, "{}", node.log());
}

/// Replaces the config line that starts with `key` by `line`.
fn set_line(config: &Path, key: &str, line: &str) {
    let text = fs::read_to_string(config).unwrap();
    let old = text
        .lines()
        .find(|l| l.trim_start().starts_with(key))
        .unwrap_or_else(|| panic!("no `{key}` line in {}", config.display()))
        .to_string();
    fs::write(config, text.replacen(&old, line, 1)).unwrap();
}

/// `vigil ca init` in `dir`.
fn new_ca(dir: &Path) {
    vigil(&["ca", "init", "--dir", s(dir)]).assert_ok("vigil ca init");
}

/// Gives `node` a CA file of its own (`ca-bundle.crt` beside its config)
/// holding `cas` one after the other, named by `identity.ca_cert`.
fn own_ca_file(node: &NodeDir, cas: &[&Path]) -> std::path::PathBuf {
    let bundle = node.dir.join("ca-bundle.crt");
    write_bundle(&bundle, cas);
    set_line(&node.config, "ca_cert", "ca_cert = \"ca-bundle.crt\"");
    bundle
}

fn write_bundle(to: &Path, cas: &[&Path]) {
    let text: String = cas
        .iter()
        .map(|c| fs::read_to_string(c.join("ca.crt")).unwrap())
        .collect();
    fs::write(to, text).unwrap();
}

#[test]
fn sighup_puts_a_new_ca_in_force_for_new_handshakes_and_links_stay_up() {
    let fed = Federation::new();
    let ca1 = fed.dir.path().join("ca");
    let ca2 = fed.dir.path().join("ca2");
    new_ca(&ca2);
    let a = fed.init("alpha");
    let b = fed.init("bravo");
    // charlie's certificate comes from a second CA; it trusts both.
    let c = fed.init_with_ca("charlie", &ca2);
    let a_ca = own_ca_file(&a, &[&ca1]);
    own_ca_file(&c, &[&ca1, &ca2]);
    a.add_member(&b);
    b.add_member(&a);
    c.add_member(&a);

    // bravo first, so alpha's first dial finds it: the link is alpha's
    // (the lower id's), which no later dial replaces.
    let _nb = b.start();
    let na = a.start();
    wait_for_line(&na, &["member connected", "peer=bravo", "outgoing=true"], 0);
    let since = wait_connected(&na, "bravo");
    let links_before = bravo_links(&na);
    assert!(links_before >= 1, "{}", na.log());

    // charlie as a member, under the old CA: its handshakes fail.
    a.add_member(&c);
    signal(na.pid(), "-HUP");
    wait_for_line(&na, &["config reloaded", "charlie"], 0);
    let nc = c.start();
    wait_for_line(&na, &["connection refused", "TLS handshake failed"], 0);
    assert_eq!(peer(&na, "charlie")["connected"], false);

    // The CA file now holds both CAs: after SIGHUP charlie links.
    write_bundle(&a_ca, &[&ca1, &ca2]);
    signal(na.pid(), "-HUP");
    let replaced = wait_for_line(&na, &["TLS certificate, key and CA replaced"], 0);
    assert!(replaced.contains("ca_certificates=2"), "{replaced}");
    wait_connected(&na, "charlie");
    wait_connected(&nc, "alpha");

    // The link to bravo stayed up on the same connection: same start,
    // no new one proved.
    assert_bravo_link_kept(&na, &since, links_before);
    assert!(
        lines_with(&na, &["config reload refused"]).is_empty(),
        "{}",
        na.log()
    );
    na.stop();
}

#[test]
fn bad_tls_material_on_reload_is_refused_and_the_old_stays_in_force() {
    let fed = Federation::new();
    let a = fed.init("alpha");
    let b = fed.init("bravo");
    a.add_member(&b);
    b.add_member(&a);
    let na = a.start();
    let nb = b.start();
    wait_connected(&na, "bravo");
    let crt = a.dir.join("alpha.crt");
    let key = a.dir.join("alpha.key");
    let (good_crt, good_key) = (fs::read(&crt).unwrap(), fs::read(&key).unwrap());

    // A key that is not the certificate's (another alpha made elsewhere).
    let other = fed.dir.path().join("elsewhere");
    let stranger_ca = fed.dir.path().join("stranger-ca");
    new_ca(&stranger_ca);
    let elsewhere = vigil(&[
        "init",
        "--node-id",
        "alpha",
        "--dir",
        s(&other),
        "--ca-cert",
        s(&stranger_ca.join("ca.crt")),
        "--ca-key",
        s(&stranger_ca.join("ca.key")),
        "--listen",
        "127.0.0.1:1",
        "--admin-listen",
        "127.0.0.1:2",
    ]);
    elsewhere.assert_ok("vigil init elsewhere");
    fs::write(&key, fs::read(other.join("alpha.key")).unwrap()).unwrap();
    signal(na.pid(), "-HUP");
    let refused = wait_for_line(&na, &["config reload refused"], 0);
    assert!(
        refused.contains("identity.tls_key: does not match the certificate in"),
        "{refused}"
    );

    // A certificate and key from a CA the federation does not use.
    fs::write(&crt, fs::read(other.join("alpha.crt")).unwrap()).unwrap();
    signal(na.pid(), "-HUP");
    let refused = wait_for_line(&na, &["config reload refused"], 1);
    assert!(
        refused.contains("identity.tls_cert: is not signed by a CA certificate in"),
        "{refused}"
    );
    // The preflight says the same before any restart would (besides the
    // ports the running node holds).
    let out = vigil(&["check-config", "--config", na.cfg()]);
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(
        out.stderr
            .contains("identity.tls_cert: is not signed by a CA certificate in"),
        "{out:#?}"
    );
    assert!(
        lines_with(&na, &["TLS certificate, key and CA replaced"]).is_empty(),
        "{}",
        na.log()
    );

    // The old certificate is still the one presented: bravo, restarted,
    // links again through new handshakes both ways.
    nb.stop();
    wait_within("alpha sees bravo gone", DEADLINE, POLL, || {
        (peer(&na, "bravo")["connected"] == false).then_some(())
    });
    let nb = b.start();
    wait_connected(&na, "bravo");
    wait_connected(&nb, "alpha");

    // Good files again: the reload goes through, nothing replaced.
    fs::write(&crt, good_crt).unwrap();
    fs::write(&key, good_key).unwrap();
    signal(na.pid(), "-HUP");
    wait_for_line(&na, &["config reloaded"], 0);
    assert!(
        lines_with(&na, &["TLS certificate, key and CA replaced"]).is_empty(),
        "{}",
        na.log()
    );
    na.stop();
}

/// A certificate for `id` from the CA in `ca`, valid until `days` from now
/// less an hour (so whole days left is `days - 1`): (cert PEM, key PEM).
fn short_lived_cert(ca: &Path, id: &str, days: i64) -> (String, String) {
    use rcgen::{
        CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::from_pem(&fs::read_to_string(ca.join("ca.key")).unwrap()).unwrap();
    let issuer =
        Issuer::from_ca_cert_pem(&fs::read_to_string(ca.join("ca.crt")).unwrap(), ca_key).unwrap();
    let mut params = CertificateParams::new(vec![id.to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, id);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days) - time::Duration::hours(1);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Pins `cert_pem` (`cert_sha256`) in the last `[[members]]` entry of
/// `node`'s config.
fn pin_last_member(node: &NodeDir, cert_pem: &str) {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let pin = hex::encode(vigil::identity::cert_sha256(&der));
    let mut text = fs::read_to_string(&node.config).unwrap();
    text.push_str(&format!("cert_sha256 = \"{pin}\"\n"));
    fs::write(&node.config, text).unwrap();
}

/// Puts a certificate and key in place of a node's (the key stays 0600).
fn replace_cert(node: &NodeDir, (cert, key): &(String, String)) {
    fs::write(node.dir.join(format!("{}.crt", node.id)), cert).unwrap();
    fs::write(node.dir.join(format!("{}.key", node.id)), key).unwrap();
}

#[test]
fn certificates_near_expiry_are_warned_at_start_at_reload_and_at_handshake() {
    let fed = Federation::new();
    let ca = fed.dir.path().join("ca");
    let a = fed.init("alpha");
    let b = fed.init("bravo");
    replace_cert(&a, &short_lived_cert(&ca, "alpha", 20));
    let bravo = short_lived_cert(&ca, "bravo", 25);
    replace_cert(&b, &bravo);
    a.add_member(&b);
    b.add_member(&a);
    // alpha pins bravo's certificate.
    pin_last_member(&a, &bravo.0);

    let na = a.start();
    let line = wait_for_line(
        &na,
        &["certificate expires within 30 days", "certificate=node"],
        0,
    );
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("days_left=19"), "{line}");
    assert!(line.contains("not_after="), "{line}");
    assert!(
        lines_with(&na, &["certificate=ca"]).is_empty(),
        "the CA has 20 years: {}",
        na.log()
    );

    // bravo connects with its pinned certificate: warned once.
    let _nb = b.start();
    let line = wait_for_line(
        &na,
        &["certificate expires within 30 days", "certificate=bravo"],
        0,
    );
    assert!(line.contains("days_left=24"), "{line}");

    // A renewed certificate that is closer still: an error at reload.
    replace_cert(&a, &short_lived_cert(&ca, "alpha", 5));
    signal(na.pid(), "-HUP");
    wait_for_line(&na, &["TLS certificate, key and CA replaced"], 0);
    let line = wait_for_line(
        &na,
        &["certificate expires within 7 days", "certificate=node"],
        0,
    );
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("days_left=4"), "{line}");
    // bravo's was already warned about today: not again.
    assert_eq!(
        lines_with(
            &na,
            &["certificate expires within 30 days", "certificate=bravo"]
        )
        .len(),
        1,
        "{}",
        na.log()
    );
    na.stop();
}

#[test]
fn a_renewed_certificate_is_presented_after_sighup_while_links_stay_up() {
    let fed = Federation::new();
    let ca = fed.dir.path().join("ca");
    let (a, b, c) = (fed.init("alpha"), fed.init("bravo"), fed.init("charlie"));
    a.add_member(&b);
    b.add_member(&a);
    a.add_member(&c);
    // charlie accepts alpha only with its renewed certificate, pinned.
    let renewed = short_lived_cert(&ca, "alpha", 365);
    c.add_member(&a);
    pin_last_member(&c, &renewed.0);

    let _nb = b.start();
    let na = a.start();
    wait_for_line(&na, &["member connected", "peer=bravo", "outgoing=true"], 0);
    let since = wait_connected(&na, "bravo");
    let links_before = bravo_links(&na);

    // Before: alpha presents its first certificate, and charlie refuses it.
    let nc = c.start();
    wait_for_line(&nc, &["does not match its cert_sha256 pin"], 0);
    assert_eq!(peer(&nc, "alpha")["connected"], false);

    // The renewed certificate and key on disk, then SIGHUP: charlie links.
    replace_cert(&a, &renewed);
    signal(na.pid(), "-HUP");
    wait_for_line(&na, &["TLS certificate, key and CA replaced"], 0);
    wait_connected(&nc, "alpha");
    wait_connected(&na, "charlie");

    // bravo's link stayed up on the same connection.
    assert_bravo_link_kept(&na, &since, links_before);
    na.stop();
}

#[test]
fn nodes_enrolled_by_signing_request_link_and_the_ca_signs_a_name_once() {
    let fed = Federation::new();
    let ca = fed.dir.path().join("ca");
    // Each node made its own TLS key and a request; the CA key stayed in
    // the CA's folder.
    let a = fed.enrol("alpha");
    let b = fed.enrol("bravo");
    for n in [&a, &b] {
        vigil(&["check-config", "--config", n.cfg()]).assert_ok("check-config after ca sign");
    }
    a.add_member(&b);
    b.add_member(&a);
    let _nb = b.start();
    let na = a.start();
    wait_connected(&na, "bravo");

    // The name is signed once: a second request for `alpha` (a new TLS
    // key, someone else's) is refused unless the CA renews on purpose.
    let csr = a.dir.join("alpha.csr");
    let other = fed.dir.path().join("alpha-again.crt");
    let sign = |out: &Path, renew: bool| {
        let mut args = vec![
            "ca",
            "sign",
            "--dir",
            s(&ca),
            "--csr",
            s(&csr),
            "--out",
            s(out),
        ];
        if renew {
            args.push("--renew");
        }
        vigil(&args)
    };
    sign(&other, false).assert_refused(
        "a second certificate for alpha",
        &[
            "alpha.csr",
            "already signed a certificate for `alpha`",
            "--renew",
        ],
    );
    assert!(!other.exists(), "a refused request left a certificate");
    sign(&other, true).assert_ok("ca sign --renew");
    assert!(other.is_file());

    // A request that is not one, or whose signature does not verify.
    let bad = fed.dir.path().join("bad.csr");
    let text = fs::read_to_string(&csr).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mid = lines.len() / 2;
    let flipped: String = lines[mid]
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 10 {
                if c == 'A' {
                    'B'
                } else {
                    'A'
                }
            } else {
                c
            }
        })
        .collect();
    let mut changed = lines.clone();
    changed[mid] = &flipped;
    fs::write(&bad, changed.join("\n") + "\n").unwrap();
    vigil(&[
        "ca",
        "sign",
        "--dir",
        s(&ca),
        "--csr",
        s(&bad),
        "--out",
        s(&fed.dir.path().join("bad.crt")),
    ])
    .assert_refused(
        "a damaged request",
        &["bad.csr", "certificate signing request"],
    );

    // Before the CA signs, the node says what it is waiting for.
    let c = fed.dir.path().join("charlie");
    let out = vigil(&[
        "init",
        "--node-id",
        "charlie",
        "--dir",
        s(&c),
        "--ca-cert",
        s(&ca.join("ca.crt")),
        "--csr",
    ]);
    out.assert_ok("init --csr");
    assert!(out.stderr.contains("vigil ca sign"), "{}", out.stderr);
    let out = vigil(&["check-config", "--config", s(&c.join("vigil.toml"))]);
    assert_eq!(out.code, Some(2), "{out:#?}");
    for needle in [
        "charlie.crt",
        "identity.tls_cert",
        "charlie.csr",
        "vigil ca sign",
    ] {
        assert!(
            out.stderr.contains(needle),
            "no `{needle}` in {}",
            out.stderr
        );
    }
    na.stop();
}
