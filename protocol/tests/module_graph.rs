//! The modules of `jangteo-protocol` import one another without a circle: `limits` and `ids`
//! at the bottom, the crate root (`lib.rs`) at the top. Checked from the sources, so a new
//! `use crate::…` that closes a circle fails here.

use std::collections::{BTreeMap, BTreeSet};

/// The module's code outside its `#[cfg(test)]` modules (which sit at the end of each file).
fn non_test_source(text: &str) -> &str {
    match text.find("\n#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// `module -> modules it names` (a name of the crate root counts as the root, `lib`).
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("src dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let stem = path
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned();
            modules.insert(stem);
        }
    }
    let mut graph = BTreeMap::new();
    for m in &modules {
        let text = std::fs::read_to_string(format!("{dir}/{m}.rs")).expect("read");
        let code = non_test_source(&text);
        let mut deps = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let target = if modules.contains(&name) {
                name
            } else {
                "lib".into()
            };
            if target != *m {
                deps.insert(target);
            }
        }
        if m == "lib" {
            for line in code.lines() {
                if let Some(rest) = line.trim().strip_prefix("pub mod ") {
                    deps.insert(rest.trim_end_matches(';').to_owned());
                }
                if let Some(rest) = line.trim().strip_prefix("pub use ") {
                    let name: String = rest.chars().take_while(|c| *c != ':').collect();
                    if modules.contains(&name) {
                        deps.insert(name);
                    }
                }
            }
        }
        graph.insert(m.clone(), deps);
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_owned());
        for d in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn protocol_modules_import_without_a_circle() {
    let graph = import_graph();
    for (m, deps) in &graph {
        println!(
            "{m} -> {}",
            deps.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    assert!(
        graph.contains_key("limits") && graph["limits"].is_empty(),
        "limits imports nothing"
    );
    assert!(graph["ids"].is_empty(), "ids imports nothing");
    assert!(
        graph["cbor"]
            .iter()
            .all(|d| ["error", "ids", "limits"].contains(&d.as_str()))
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import circle: {}", cycle.join(" -> "));
    }
}

#[test]
fn a_circle_is_found() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_owned()].into());
    g.insert("b".into(), ["a".to_owned()].into());
    assert!(find_cycle(&g).is_some());
}
