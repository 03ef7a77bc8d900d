//! The layering docs/layout.md states: no module of `src/` imports one that imports it back
//! (directly or through others). Read from the sources: every `crate::NAME` outside comments
//! and test modules is an edge from the file's top-level module to NAME.
use crate::common::root;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level module of each source file and the top-level modules it names.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let src = root().join("src");
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
            let deps = out.entry(top.clone()).or_default();
            for name in crate_paths(&path) {
                if name != top {
                    deps.insert(name);
                }
            }
        }
    }
    out
}

/// The NAMEs of `crate::NAME` in the code of `path`, comments and `#[cfg(test)]` modules left out.
fn crate_paths(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let code = text.split("#[cfg(test)]").next().unwrap();
    let mut names = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap();
        for (i, _) in line.match_indices("crate::") {
            let name: String = line[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                names.push(name);
            }
        }
    }
    names
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let edges = edges();
    assert!(edges.len() > 20 && edges["outputs"].contains("files"), "the sources were read: {edges:?}");
    for start in edges.keys() {
        // A path back to `start`, if there is one (depth first, remembering the way).
        let mut way: BTreeMap<&str, &str> = BTreeMap::new();
        let mut stack = vec![start.as_str()];
        while let Some(m) = stack.pop() {
            for d in edges.get(m).into_iter().flatten() {
                if d == start {
                    let mut cycle = vec![start.as_str(), m];
                    while let Some(&p) = way.get(cycle.last().unwrap()) {
                        cycle.push(p);
                    }
                    cycle.reverse();
                    panic!("an import circle: {}", cycle.join(" -> "));
                }
                if !way.contains_key(d.as_str()) && d != start {
                    way.insert(d, m);
                    stack.push(d);
                }
            }
        }
    }
}
