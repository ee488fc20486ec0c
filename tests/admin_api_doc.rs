//! docs/admin-api.md against the code an integrator's client talks to.
//!
//! On the source: every route `src/admin/mod.rs` serves (each method of
//! each `.route(PATH, …)`) has a row in the doc's route table and a section
//! `### `METHOD PATH``, and every `METHOD /path` the doc names is served.
//!
//! Against a running node: each officer role is allowed exactly the routes
//! the route table gives it (and only the routes it says need no token
//! answer without one), and the keys of the main JSON answers are the keys
//! the doc's tables list, no more and no fewer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil::mesh::{wait_until, LocalMesh, MeshNode};

const ROUTER: &str = include_str!("../src/admin/mod.rs");
const DOC: &str = include_str!("../docs/admin-api.md");

/// The methods axum's `MethodRouter` takes by name.
const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- source

/// `text` up to the `)` that closes a `(` just before it, string literals
/// skipped.
fn until_close(text: &str) -> &str {
    let mut depth = 1;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[..i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced `.route(` call: {text:.80}");
}

/// The names called at the outermost level of an expression:
/// `get(a).post(b).layer(x(y))` gives `get`, `post`, `layer`.
fn outer_calls(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut word = String::new();
    let mut in_str = false;
    let mut escaped = false;
    for c in expr.chars() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            c if c.is_ascii_alphanumeric() || c == '_' => {
                word.push(c);
                continue;
            }
            '(' => {
                if depth == 0 && !word.is_empty() {
                    out.push(word.clone());
                }
                depth += 1;
            }
            '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            c if c.is_whitespace() => continue,
            _ => {}
        }
        word.clear();
    }
    out
}

/// `METHOD PATH` for each method of each route the router source serves.
fn served() -> BTreeSet<String> {
    let code = ROUTER.split("#[cfg(test)]").next().unwrap_or(ROUTER);
    for other in [".nest(", ".nest_service(", ".route_service("] {
        assert!(
            !code.contains(other),
            "src/admin/mod.rs uses `{other}`: teach tests/admin_api_doc.rs to read it"
        );
    }
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices(".route(") {
        let args = until_close(&code[at + ".route(".len()..]).trim_start();
        let rest = args
            .strip_prefix('"')
            .unwrap_or_else(|| panic!("a route whose path is not a literal: {args:.80}"));
        let (path, handler) = rest
            .split_once('"')
            .unwrap_or_else(|| panic!("unterminated route path: {args:.80}"));
        let handler = handler.trim_start().trim_start_matches(',');
        let methods: Vec<String> = outer_calls(handler)
            .into_iter()
            .filter(|m| METHODS.contains(&m.as_str()))
            .collect();
        assert!(
            !methods.is_empty(),
            "no method found for route {path}: {handler:.80}"
        );
        for m in methods {
            out.insert(format!("{} {path}", m.to_ascii_uppercase()));
        }
    }
    out
}

#[test]
fn the_source_reader_finds_routes_over_several_lines() {
    let routes = served();
    for r in [
        "GET /health",
        "GET /metrics",
        "GET /v1/notices",
        "POST /v1/notices",
        "POST /v1/screen/manifest",
        "POST /v1/key/rotate",
    ] {
        assert!(routes.contains(r), "{r} not found in {routes:?}");
    }
    // `.layer(…)` and what it calls are not methods.
    assert!(
        !routes.iter().any(|r| r.starts_with("LAYER ")),
        "{routes:?}"
    );
}

// ---------------------------------------------------------------- doc

/// The doc without its fenced code blocks.
fn prose(doc: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `METHOD PATH` if `text` is exactly that.
fn route_of(text: &str) -> Option<String> {
    let (m, p) = text.split_once(' ')?;
    (METHODS.contains(&m.to_ascii_lowercase().as_str())
        && m.chars().all(|c| c.is_ascii_uppercase())
        && p.starts_with('/')
        && !p.contains(char::is_whitespace))
    .then(|| format!("{m} {p}"))
}

/// The routes the doc has a section `### `METHOD PATH`` for.
fn doc_sections() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in prose(DOC).lines() {
        if let Some(h) = line.strip_prefix("### ") {
            if let Some(r) = h.trim().strip_prefix('`').and_then(|h| h.strip_suffix('`')) {
                let r = route_of(r).unwrap_or_else(|| panic!("`{h}` is no route heading"));
                assert!(out.insert(r.clone()), "two sections for {r}");
            }
        }
    }
    out
}

/// The cells of a Markdown table row, trimmed.
fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

/// The lines of the section under the heading `heading` (`## X` or
/// `### X`), up to the next heading.
fn section(heading: &str) -> Vec<String> {
    let text = prose(DOC);
    let mut lines = text.lines();
    lines
        .find(|l| l.trim_end() == heading)
        .unwrap_or_else(|| panic!("docs/admin-api.md has no heading `{heading}`"));
    lines
        .take_while(|l| !l.starts_with("## ") && !l.starts_with("### "))
        .map(str::to_string)
        .collect()
}

/// The route table: `METHOD PATH` and its roles cell.
fn doc_route_table() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in section("## Routes") {
        if !line.starts_with('|') {
            continue;
        }
        let c = cells(&line);
        let Some(r) = c[0].strip_prefix('`').and_then(|r| r.strip_suffix('`')) else {
            continue;
        };
        let r = route_of(r).unwrap_or_else(|| panic!("route table row `{line}`"));
        assert!(out.insert(r.clone(), c[1].clone()).is_none(), "{r} twice");
    }
    out
}

/// Every `` `METHOD /path…` `` the doc's prose names, without its query.
fn doc_mentions() -> BTreeSet<String> {
    let text = prose(DOC);
    let mut out = BTreeSet::new();
    for m in METHODS {
        let needle = format!("`{} /", m.to_ascii_uppercase());
        for (at, _) in text.match_indices(&needle) {
            let rest = &text[at + 1..];
            let end = rest
                .find(|c: char| c == '`' || c == '?' || (c.is_whitespace() && c != ' '))
                .unwrap_or(rest.len());
            let mention = &rest[..end];
            // `METHOD /path` and what follows in the same span.
            let mut words = mention.splitn(3, ' ');
            let (m, p) = (words.next().unwrap(), words.next().unwrap_or(""));
            out.insert(format!("{m} {p}"));
        }
    }
    out
}

#[test]
fn every_route_served_is_documented_and_every_route_documented_is_served() {
    let served = served();
    let table: BTreeSet<String> = doc_route_table().into_keys().collect();
    let sections = doc_sections();
    let missing_rows: Vec<_> = served.difference(&table).collect();
    let stale_rows: Vec<_> = table.difference(&served).collect();
    assert!(
        missing_rows.is_empty() && stale_rows.is_empty(),
        "docs/admin-api.md route table: served but not listed {missing_rows:?}; \
         listed but not served {stale_rows:?}"
    );
    let missing: Vec<_> = served.difference(&sections).collect();
    let stale: Vec<_> = sections.difference(&served).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/admin-api.md sections `### `METHOD PATH``: served without one {missing:?}; \
         one for a route not served {stale:?}"
    );
    let unknown: Vec<_> = doc_mentions()
        .into_iter()
        .filter(|m| !served.contains(m))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/admin-api.md names routes that are not served: {unknown:?}"
    );
}

/// The keys a section's first `| key | … |` table lists: the required
/// ones, those marked "omitted …", and one level of nested keys
/// (`parent.child`) by parent.
struct DocKeys {
    required: BTreeSet<String>,
    optional: BTreeSet<String>,
    nested: BTreeMap<String, BTreeSet<String>>,
}

fn doc_keys(heading: &str) -> DocKeys {
    let mut keys = DocKeys {
        required: BTreeSet::new(),
        optional: BTreeSet::new(),
        nested: BTreeMap::new(),
    };
    let lines = section(heading);
    let start = lines
        .iter()
        .position(|l| l.starts_with('|') && cells(l)[0] == "key")
        .unwrap_or_else(|| panic!("`{heading}` has no `| key |` table"));
    for line in lines[start + 2..].iter().take_while(|l| l.starts_with('|')) {
        let c = cells(line);
        let omitted = c[1].contains("omitted");
        let names: Vec<&str> = c[0].split('`').skip(1).step_by(2).collect();
        assert!(!names.is_empty(), "`{heading}`: row without a key: {line}");
        for name in names {
            match name.split_once('.') {
                Some((parent, child)) => {
                    keys.nested
                        .entry(parent.to_string())
                        .or_default()
                        .insert(child.to_string());
                }
                None if omitted => {
                    keys.optional.insert(name.to_string());
                }
                None => {
                    keys.required.insert(name.to_string());
                }
            }
        }
    }
    keys
}

/// Asserts that `v`'s keys are those the doc lists under `heading`.
fn assert_keys(heading: &str, v: &Value) {
    let doc = doc_keys(heading);
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("{heading}: not an object: {v}"));
    let got: BTreeSet<String> = obj.keys().cloned().collect();
    let missing: Vec<_> = doc.required.difference(&got).collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|k| !doc.required.contains(*k) && !doc.optional.contains(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/admin-api.md `{heading}`: keys listed but not answered {missing:?}, \
         answered but not listed {extra:?}, in {v}"
    );
    for (parent, children) in &doc.nested {
        if let Some(Value::Object(inner)) = obj.get(parent) {
            let got: BTreeSet<String> = inner.keys().cloned().collect();
            assert_eq!(
                &got, children,
                "docs/admin-api.md `{heading}`: keys of `{parent}` in {v}"
            );
        }
    }
}

// ---------------------------------------------------------------- a node

/// Sends one request with an empty body and returns the answer's status,
/// without reading the body (an event stream never ends).
async fn status(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(
            n > 0,
            "{method} {path}: connection closed without an answer"
        );
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status in `{line}`"))
}

/// A JSON answer of the admin API, or the test fails naming the call.
async fn call(c: &vigil::admin::Client, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| serde_json::to_vec(&b).unwrap());
    let out = c
        .call(method, path, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn client(mesh: &LocalMesh, id: &str) -> vigil::admin::Client {
    let token = std::fs::read_to_string(mesh.dir.join(id).join("admin.token")).unwrap();
    vigil::admin::Client {
        addr: mesh.node(id).unwrap().admin_addr(),
        token: token.trim().to_string(),
    }
}

/// The roles a route table cell allows: `None` for a route without a
/// token.
fn roles_of(route: &str, cell: &str) -> Option<BTreeSet<&'static str>> {
    const ROLES: [&str; 4] = ["monitor", "desk", "supervisor", "auditor"];
    match cell {
        "no token" => None,
        "any" => Some(ROLES.into()),
        "administrator only" => Some(BTreeSet::new()),
        list => Some(
            list.split(", ")
                .map(|r| {
                    *ROLES
                        .iter()
                        .find(|x| **x == r)
                        .unwrap_or_else(|| panic!("route table, {route}: `{r}` is not a role"))
                })
                .collect(),
        ),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_node_allows_the_roles_and_answers_the_keys_the_doc_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let mesh = LocalMesh::start(
        tmp.path(),
        &[MeshNode::new("alpha"), MeshNode::new("bravo")],
    )
    .await
    .unwrap();
    let (alpha, bravo) = (client(&mesh, "alpha"), client(&mesh, "bravo"));
    let addr = alpha.addr;

    // Roles: each officer gets 403 exactly on the routes its role is not
    // listed for; without a token, only the public routes answer.
    let registry = vigil::officers::Registry::beside(mesh.config_path("alpha").unwrap());
    let mut tokens = BTreeMap::new();
    for role in ["monitor", "desk", "supervisor", "auditor"] {
        let file = registry
            .add(&format!("{role}-1"), role, vigil::time::now())
            .unwrap();
        let token = std::fs::read_to_string(file).unwrap().trim().to_string();
        tokens.insert(role, token);
    }
    let zeros = "0".repeat(64);
    for (route, cell) in doc_route_table() {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path.replace("{id}", &zeros);
        let anonymous = status(addr, method, &path, None).await;
        match roles_of(&route, &cell) {
            None => assert_eq!(anonymous, 200, "{route} without a token"),
            Some(allowed) => {
                assert_eq!(anonymous, 401, "{route} without a token");
                for (role, token) in &tokens {
                    let got = status(addr, method, &path, Some(token)).await;
                    assert!(got != 401, "{route} as {role}: 401");
                    assert_eq!(
                        got != 403,
                        allowed.contains(role),
                        "{route} as {role} answered {got}; the route table says `{cell}`"
                    );
                }
            }
        }
    }

    // Keys: the doc's example notice, expiring within the retention.
    let example = DOC
        .split("`notice.json`:")
        .nth(1)
        .and_then(|t| t.split("```json").nth(1))
        .and_then(|t| t.split("```").next())
        .expect("a `notice.json` example in docs/admin-api.md");
    let mut notice: Value = serde_json::from_str(example).expect("the example is JSON");
    notice["expires_at"] = vigil::time::rfc3339(vigil::time::now() + 200 * 86_400).into();
    notice["review_at"] = vigil::time::rfc3339(vigil::time::now() + 100 * 86_400).into();
    let issued = call(&alpha, "POST", "/v1/notices", Some(notice)).await;
    let id = issued["id"].as_str().expect("an id").to_string();

    assert_keys(
        "### `GET /v1/id`",
        &call(&alpha, "GET", "/v1/id", None).await,
    );
    assert_keys(
        "### `GET /v1/transit`",
        &call(&alpha, "GET", "/v1/transit", None).await,
    );
    assert_keys(
        "### The notice view",
        &call(&alpha, "GET", &format!("/v1/notices/{id}"), None).await,
    );

    let nid = vigil::notice::NoticeId::parse(&id).unwrap();
    assert!(
        wait_until(DEADLINE, || mesh
            .node("bravo")
            .unwrap()
            .core()
            .store()
            .contains(&nid)
            .unwrap())
        .await,
        "the notice did not reach bravo"
    );
    let list = call(&bravo, "GET", "/v1/notices", None).await;
    assert_keys("### The notice view", &list[0]);
    let status_rows = call(&alpha, "GET", &format!("/v1/notices/{id}/status"), None).await;
    assert_keys("### `GET /v1/notices/{id}/status`", &status_rows[0]);
    let peers = call(&alpha, "GET", "/v1/peers", None).await;
    assert_keys("### `GET /v1/peers`", &peers[0]);

    let hits = call(
        &bravo,
        "POST",
        "/v1/screen",
        Some(serde_json::json!({
            "reason": "Border check", "place": "Schiphol",
            "identifiers": ["passport:NL:X1234567"]
        })),
    )
    .await;
    assert_keys("### `POST /v1/screen`", &hits[0]);

    let mut reports = Value::Null;
    for _ in 0..(DEADLINE.as_millis() / 100) {
        reports = call(&alpha, "GET", "/v1/hits", None).await;
        if reports.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_keys("### `GET /v1/hits`", &reports[0]);
    let hit = reports[0]["id"].as_str().expect("a hit id");
    let acked = call(
        &alpha,
        "POST",
        &format!("/v1/hits/{hit}/ack"),
        Some(serde_json::json!({"note": "Called the desk"})),
    )
    .await;
    assert!(acked["acknowledged"].is_object(), "{acked}");
    assert_keys("### `GET /v1/hits`", &acked);

    // A path that is no route answers in the same JSON error shape.
    for path in ["/v1/nothing-here", "/nothing-here"] {
        assert_eq!(status(addr, "GET", path, None).await, 404, "{path}");
        match alpha.call("GET", path, None).await {
            Err(vigil::admin::ClientError::Refused(e)) => {
                assert!(e.contains(&format!("no route {path}")), "{path}: {e}")
            }
            other => panic!("{path}: {other:?}"),
        }
    }

    mesh.shutdown().await;
}
