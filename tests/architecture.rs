//! The module structure the design promises (docs/architecture.md), checked
//! on the source: no import circle among the modules of `src/`, the
//! drivers (`net`, `admin`) never import the node, the pure logic
//! (`notice`, `policy`, `proto`) imports no driver, and no public function
//! of the library returns `Result<_, String>`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module of `src/` (a file or a folder) and the other
/// top-level modules its non-test code names as `crate::MODULE`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = Vec::new();
    collect(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        &mut files,
    );
    for f in files {
        let rel = f
            .strip_prefix(concat!(env!("CARGO_MANIFEST_DIR"), "/src/"))
            .unwrap()
            .to_string_lossy()
            .to_string();
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let code = non_test_code(&std::fs::read_to_string(&f).unwrap());
        let deps = out.entry(top.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            assert!(
                !name.is_empty(),
                "{rel}: `crate::{{…}}` hides what it imports"
            );
            if name != top {
                deps.insert(name);
            }
        }
    }
    out
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]`
/// module (tests may import anything).
fn non_test_code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_modules_import_each_other_without_a_circle() {
    let g = graph();
    // Depth-first search for a back edge, naming the circle found.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == n) {
            panic!("import circle: {} -> {n}", path[i..].join(" -> "));
        }
        if done.contains(n) {
            return;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            visit(d, g, path, done);
        }
        path.pop();
        done.insert(n.to_string());
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        visit(n, &g, &mut Vec::new(), &mut done);
    }
    assert!(g.len() > 10, "too few modules found: {g:?}");
}

#[test]
fn drivers_never_import_the_node_and_pure_logic_imports_no_driver() {
    let g = graph();
    for driver in ["net", "admin", "exchange", "proto"] {
        assert!(
            !g[driver].contains("node"),
            "{driver} imports node: {:?}",
            g[driver]
        );
    }
    for pure in ["notice", "policy", "proto", "keys", "time"] {
        for driver in ["net", "admin", "node", "store", "exchange", "mesh"] {
            assert!(
                !g[pure].contains(driver),
                "{pure} imports {driver}: {:?}",
                g[pure]
            );
        }
    }
    assert!(!g["exchange"].contains("net") && !g["exchange"].contains("admin"));
}

#[test]
fn no_public_function_returns_a_string_error() {
    let mut files = Vec::new();
    collect(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        &mut files,
    );
    let mut found = Vec::new();
    for f in files {
        let code = non_test_code(&std::fs::read_to_string(&f).unwrap());
        // A public function's signature runs from `pub fn` to its `{`.
        for (i, _) in code
            .match_indices("pub fn ")
            .chain(code.match_indices("pub async fn "))
        {
            let sig = &code[i..code[i..].find('{').map_or(code.len(), |j| i + j)];
            let compact: String = sig.split_whitespace().collect::<Vec<_>>().join(" ");
            if compact.contains(", String>") {
                found.push(format!("{}: {compact}", f.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "Result<_, String> in public APIs:\n{}",
        found.join("\n")
    );
}
