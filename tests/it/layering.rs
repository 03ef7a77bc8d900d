//! The layering docs/layout.md states ("What may import what"), read from the sources.
//!
//! Every module file is a node: `src/a.rs` and `src/a/mod.rs` are `a`, `src/a/b.rs` is
//! `a::b`, `src/main.rs` (the binary) is `main`; `src/lib.rs`, the crate root, only declares
//! the modules and is none. An edge goes from a module file to each other module file whose
//! items its code names: the paths of its `use` trees (groups, `self`, `as`, globs) and the
//! paths in its code that start with `crate`, `super`, `self`, a child module or a name the
//! file imports (`nnmnist` in main.rs). Comments, string literals and `#[cfg(test)]` items
//! are left out. A path is followed through `use` declarations, so a re-export is no detour:
//! `crate::mlp::Network` is an edge to `mlp::network`, which defines `Network`, and a
//! re-export (`pub use network::Network` in mlp/mod.rs) is an edge from the re-exporting
//! module to the defining one. A `mod` declaration is no edge.
//!
//! The rules:
//! - no circle: no module imports one that imports it back, directly or through others. So a
//!   submodule may use an item its folder's mod.rs defines only where that mod.rs imports
//!   nothing from the submodule, directly or not (a re-export counts); items that both use
//!   live in a leaf module of the folder instead;
//! - no upward import: [`LAYERS`] places every module file, bottom first, and a module
//!   imports only modules placed before it. A module that is not placed fails the test.
use crate::common::root;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Every module file of `src/`, bottom first: each may import only the modules before it.
/// The layers are docs/layout.md's ("What may import what", whose table lists these in this
/// order: a test checks it); a new module is placed here and there.
const LAYERS: &[&str] = &[
    // 1. Foundations: a terminal, the machine's memory and disk, single values' checks, the random source, how a command ends.
    "terminal",
    "system",
    "checks",
    "torch_rng",
    "outcome",
    // 2, 3. Files, and the tensor files read through them.
    "files",
    "tensors::dtype",
    "tensors::input",
    "tensors::pickle",
    "tensors::torch",
    "tensors::safetensors",
    "tensors::zip",
    "tensors::legacy",
    "tensors",
    // 4. The data, your own digit in MNIST's form, the weights and run state, the outputs'
    // rule, what a run writes.
    "data",
    "digit::plane",
    "digit::decode",
    "digit::grey",
    "digit::paper",
    "digit::ink",
    "digit::specks",
    "digit::levels",
    "digit::mnist",
    "digit",
    "weights",
    "outputs",
    "checkpoint",
    "evaluation",
    "metrics",
    // 5. Devices and signals.
    "nvidia",
    "device",
    "signal",
    // 6. The networks: the MLP, from its arithmetic up, and the convnet.
    "mlp::exp",
    "mlp::cost",
    "mlp::matrix",
    "mlp::rule",
    "mlp::shuffle",
    "mlp::network",
    "mlp::sparse",
    "mlp::fast",
    "mlp::sizes",
    "mlp::io",
    "mlp::inside",
    "convnet::net",
    "convnet::step",
    "convnet::cuda_graph",
    "convnet::determinism",
    "convnet::eval",
    "convnet::inside",
    // 7. The seam between the commands and the networks: what either network is to them.
    "classifier",
    // 8. The run driver, then each network behind both seams (the driver's and the
    // commands'), and the one list of the networks.
    "driver::transcript",
    "driver::console",
    "driver::spec",
    "driver::model",
    "driver::start",
    "driver::outputs",
    "driver",
    "mlp::hyper",
    "mlp::model",
    "mlp::kind",
    "mlp::trace",
    "mlp",
    "convnet::hyper",
    "convnet::model",
    "convnet::kind",
    "convnet::trace",
    "convnet",
    "networks",
    // 9, 10. The commands; the flags, their resolution and the entry point.
    "cmd::diff",
    "cmd::eval",
    "cmd::show",
    "cmd::predict",
    "cmd::trace",
    "cmd",
    "serve::error",
    "serve::assets",
    "serve::preprocessing",
    "serve::networks",
    "serve::pytorch",
    "serve::train",
    "serve::api",
    "serve::connections",
    "serve",
    "version",
    "cli",
    "config",
    "main",
];

/// One source file: its path from the repository and its text.
struct Source {
    file: String,
    text: String,
}

/// An import of one module file by another.
#[derive(Clone, Debug)]
struct Import {
    to: String,
    /// `src/x.rs:LINE`.
    at: String,
    /// The path as written (a `use` tree's leaf, or a path in the code).
    path: String,
}

/// The module files of `src/` and their sources.
fn sources() -> Vec<Source> {
    let repo = root();
    let mut out = Vec::new();
    let mut stack = vec![repo.join("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let file = path.strip_prefix(&repo).unwrap().to_string_lossy().replace('\\', "/");
                out.push(Source { file, text: std::fs::read_to_string(&path).unwrap() });
            }
        }
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// The module of `src/...rs`: `a`, `a::b`, `main`; "" for `src/lib.rs`.
fn module_of(file: &str) -> String {
    let rel = file.strip_prefix("src/").expect("a file under src/").trim_end_matches(".rs");
    let rel = rel.strip_suffix("/mod").unwrap_or(rel);
    if rel == "lib" {
        String::new()
    } else {
        rel.replace('/', "::")
    }
}

fn join(m: &str, name: &str) -> String {
    if m.is_empty() {
        name.to_string()
    } else {
        format!("{m}::{name}")
    }
}

/// `text` with comments and the contents of string and character literals blanked out
/// (line breaks kept, so lines keep their numbers), then every `#[cfg(test)]` item.
fn code_of(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out: Vec<char> = Vec::with_capacity(c.len());
    let blank = |out: &mut Vec<char>, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let prev_ident = i > 0 && ident(c[i - 1]);
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                    continue;
                }
                out.extend([' ', ' ']);
                i += 2;
                if depth == 0 {
                    break;
                }
            }
        } else if c[i] == 'r' && (!prev_ident || (c[i - 1] == 'b' && (i < 2 || !ident(c[i - 2])))) && matches!(c.get(i + 1), Some('"' | '#')) {
            // A raw string r"..." or r#"..."# (or a raw identifier r#name, kept).
            let hashes = c[i + 1..].iter().take_while(|&&ch| ch == '#').count();
            if c.get(i + 1 + hashes) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            out.push('r');
            i += 1 + hashes + 1;
            out.extend(std::iter::repeat_n(' ', hashes + 1));
            while i < c.len() && !c[i..].starts_with(&close) {
                blank(&mut out, c[i]);
                i += 1;
            }
            out.extend(std::iter::repeat_n(' ', close.len()));
            i += close.len();
        } else if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c[i] == '\'' && (c.get(i + 1) == Some(&'\\') || c.get(i + 2) == Some(&'\'')) {
            // A character literal ('x', '\n', '\''); a lifetime ('a) is kept.
            let end = (i + 2..c.len()).find(|&j| c[j] == '\'' && (j > i + 2 || c[i + 1] != '\\')).unwrap_or(c.len() - 1);
            out.extend(std::iter::repeat_n(' ', end + 1 - i));
            i = end + 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    // Each `#[cfg(test)]` item: up to its first `;`, or its first `{` and the matching `}`.
    let attr: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i < out.len() {
        if !out[i..].starts_with(&attr) {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut depth = 0usize;
        while j < out.len() {
            match out[j] {
                ';' if depth == 0 => break,
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        let end = j.min(out.len() - 1);
        for ch in &mut out[i..=end] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        i = j + 1;
    }
    out.into_iter().collect()
}

/// A token of code, with its line.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

fn tokens(code: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            if !ch.is_ascii_digit() {
                out.push((Tok::Ident(c[start..i].iter().collect()), line));
            }
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::Path, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// One leaf of a `use` tree: its path, the name it binds (None for a glob or `_`).
#[derive(Debug, PartialEq)]
struct Leaf {
    segs: Vec<String>,
    name: Option<String>,
}

/// The leaves of the `use` tree at `toks[*i..]` (after `use`), below `prefix`; leaves `*i`
/// after the tree.
fn use_tree(toks: &[(Tok, usize)], i: &mut usize, prefix: &[String], out: &mut Vec<Leaf>) {
    let mut segs = prefix.to_vec();
    loop {
        match toks.get(*i).map(|t| &t.0) {
            Some(Tok::Ident(s)) => {
                segs.push(s.clone());
                *i += 1;
            }
            Some(Tok::Path) => {
                *i += 1;
                continue;
            }
            Some(Tok::Punct('*')) => {
                *i += 1;
                out.push(Leaf { segs, name: None });
                return;
            }
            Some(Tok::Punct('{')) => {
                *i += 1;
                while !matches!(toks.get(*i).map(|t| &t.0), Some(Tok::Punct('}')) | None) {
                    use_tree(toks, i, &segs, out);
                    if toks.get(*i).map(|t| &t.0) == Some(&Tok::Punct(',')) {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            _ => return,
        }
        if toks.get(*i).map(|t| &t.0) == Some(&Tok::Path) {
            continue;
        }
        if segs.last().is_some_and(|s| s == "self") {
            segs.pop();
        }
        let mut name = segs.last().cloned();
        if toks.get(*i).map(|t| &t.0) == Some(&Tok::Ident("as".into())) {
            name = match toks.get(*i + 1).map(|t| &t.0) {
                Some(Tok::Ident(n)) if n != "_" => Some(n.clone()),
                _ => None,
            };
            *i += 2;
        }
        out.push(Leaf { segs, name });
        return;
    }
}

/// The module files and every import between them, each pair once (its first place).
struct Graph {
    /// Module -> its file.
    files: BTreeMap<String, String>,
    edges: BTreeMap<String, BTreeMap<String, Import>>,
}

/// What a file's code names: `use` leaves and paths, made absolute (segments from the
/// crate root), with their line and their text.
struct Named {
    module: String,
    file: String,
    paths: Vec<(Vec<String>, usize, String)>,
}

fn graph(sources: &[Source]) -> Graph {
    let files: BTreeMap<String, String> = sources.iter().map(|s| (module_of(&s.file), s.file.clone())).collect();
    // (module, name) -> the absolute path a `use` in that module binds the name to.
    let mut aliases: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut named = Vec::new();
    for s in sources {
        let module = module_of(&s.file);
        let toks = tokens(&code_of(&s.text));
        // The names this file's `use` declarations bind, for the paths in its code.
        let mut local: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut paths = Vec::new();
        // Inline modules (`mod name { ... }`) open at each brace depth.
        let mut scope: Vec<(String, usize)> = Vec::new();
        let mut depth = 0usize;
        let mut i = 0;
        while i < toks.len() {
            let here = scope.iter().fold(module.clone(), |m, (n, _)| join(&m, n));
            let absolute = |segs: &[String], local: &BTreeMap<String, Vec<String>>| -> Option<Vec<String>> {
                let first = segs.first()?.as_str();
                let mut at: Vec<String> = here.split("::").filter(|s| !s.is_empty()).map(String::from).collect();
                let rest = match first {
                    "crate" => {
                        at.clear();
                        &segs[1..]
                    }
                    "nnmnist" if module == "main" => {
                        at.clear();
                        &segs[1..]
                    }
                    "self" => &segs[1..],
                    "super" => {
                        let ups = segs.iter().take_while(|s| *s == "super").count();
                        at.truncate(at.len().checked_sub(ups)?);
                        &segs[ups..]
                    }
                    _ if files.contains_key(&join(&here, first)) => segs,
                    _ => {
                        at = local.get(first)?.clone();
                        &segs[1..]
                    }
                };
                at.extend(rest.iter().cloned());
                Some(at)
            };
            match &toks[i].0 {
                Tok::Ident(kw) if kw == "use" => {
                    let line = toks[i].1;
                    i += 1;
                    let mut leaves = Vec::new();
                    use_tree(&toks, &mut i, &[], &mut leaves);
                    for leaf in leaves {
                        let Some(abs) = absolute(&leaf.segs, &local) else { continue };
                        if let Some(name) = &leaf.name {
                            local.insert(name.clone(), abs.clone());
                            aliases.insert((here.clone(), name.clone()), abs.clone());
                        }
                        paths.push((abs, line, leaf.segs.join("::")));
                    }
                    continue;
                }
                Tok::Ident(kw) if kw == "mod" => {
                    if let (Some((Tok::Ident(name), _)), Some((Tok::Punct('{'), _))) = (toks.get(i + 1), toks.get(i + 2)) {
                        depth += 1;
                        scope.push((name.clone(), depth));
                        i += 3;
                        continue;
                    }
                }
                Tok::Ident(first) if i == 0 || toks[i - 1].0 != Tok::Path => {
                    // A path in the code: IDENT (:: IDENT)+.
                    let mut segs = vec![first.clone()];
                    let mut j = i + 1;
                    while let (Some((Tok::Path, _)), Some((Tok::Ident(s), _))) = (toks.get(j), toks.get(j + 1)) {
                        segs.push(s.clone());
                        j += 2;
                    }
                    if segs.len() > 1 {
                        if let Some(abs) = absolute(&segs, &local) {
                            paths.push((abs, toks[i].1, segs.join("::")));
                        }
                    }
                    i = j;
                    continue;
                }
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => {
                    if scope.last().is_some_and(|&(_, d)| d == depth) {
                        scope.pop();
                    }
                    depth = depth.saturating_sub(1);
                }
                _ => {}
            }
            i += 1;
        }
        named.push(Named { module, file: s.file.clone(), paths });
    }
    let mut edges: BTreeMap<String, BTreeMap<String, Import>> = BTreeMap::new();
    for n in named {
        if n.module.is_empty() {
            continue;
        }
        let out = edges.entry(n.module.clone()).or_default();
        for (abs, line, path) in n.paths {
            let to = resolve(&abs, &files, &aliases, 0);
            if !to.is_empty() && to != n.module {
                out.entry(to.clone()).or_insert(Import { to, at: format!("{}:{line}", n.file), path });
            }
        }
    }
    Graph { files, edges }
}

/// The module file that defines what the absolute path `segs` names, following `use`
/// declarations; "" for the crate root (or a path that names nothing of the crate).
fn resolve(segs: &[String], files: &BTreeMap<String, String>, aliases: &BTreeMap<(String, String), Vec<String>>, hops: usize) -> String {
    let mut here = String::new();
    for (k, s) in segs.iter().enumerate() {
        let child = join(&here, s);
        if files.contains_key(&child) {
            here = child;
            continue;
        }
        if let Some(target) = aliases.get(&(here.clone(), s.clone())) {
            if hops < 16 && target.as_slice() != &segs[..=k] {
                let mut t = target.clone();
                t.extend(segs[k + 1..].iter().cloned());
                return resolve(&t, files, aliases, hops + 1);
            }
        }
        break;
    }
    here
}

fn at(files: &BTreeMap<String, String>, m: &str) -> String {
    format!("{m} ({})", files.get(m).map_or("?", String::as_str))
}

/// Every import circle, each once (the shortest through its first module), as the modules
/// and the imports along it.
fn circles(g: &Graph) -> Vec<String> {
    let mut seen: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    let mut out = Vec::new();
    for start in g.edges.keys() {
        // Breadth first from `start`, remembering the way, until an edge leads back.
        let mut way: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([start.as_str()]);
        let mut back = None;
        'search: while let Some(m) = queue.pop_front() {
            for d in g.edges.get(m).into_iter().flat_map(|e| e.keys()) {
                if d == start {
                    back = Some(m);
                    break 'search;
                }
                if !way.contains_key(d.as_str()) {
                    way.insert(d, m);
                    queue.push_back(d);
                }
            }
        }
        let Some(last) = back else { continue };
        let mut cycle = vec![last];
        while let Some(&p) = way.get(cycle.last().unwrap()) {
            cycle.push(p);
        }
        cycle.reverse();
        cycle.push(start);
        if !seen.insert(cycle.iter().map(|s| s.to_string()).collect()) {
            continue;
        }
        let imports: Vec<String> = cycle.windows(2).map(|w| {
            let i = &g.edges[w[0]][w[1]];
            format!("  {} `{}`: {} -> {}", i.at, i.path, w[0], w[1])
        }).collect();
        out.push(format!("{}\n{}", cycle.join(" -> "), imports.join("\n")));
    }
    out
}

/// What breaks the layers: an import of a module placed above, a module not placed, a
/// placed module that does not exist.
fn layer_faults(g: &Graph) -> Vec<String> {
    let place: BTreeMap<&str, usize> = LAYERS.iter().enumerate().map(|(i, &m)| (m, i)).collect();
    let mut out = Vec::new();
    for m in g.files.keys().filter(|m| !m.is_empty()) {
        if !place.contains_key(m.as_str()) {
            out.push(format!("{} is not in LAYERS: place it (and in docs/layout.md)", at(&g.files, m)));
        }
    }
    for m in LAYERS {
        if !g.files.contains_key(*m) {
            out.push(format!("LAYERS places {m}, which is no module file of src/"));
        }
    }
    for (from, imports) in &g.edges {
        for i in imports.values() {
            if let (Some(a), Some(b)) = (place.get(from.as_str()), place.get(i.to.as_str())) {
                if b > a {
                    out.push(format!("{} `{}`: {from} imports {}, which LAYERS places above it", i.at, i.path, at(&g.files, &i.to)));
                }
            }
        }
    }
    out
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let g = graph(&sources());
    let e = |a: &str, b: &str| g.edges.get(a).is_some_and(|x| x.contains_key(b));
    // The sources were read: imports through `use`, a re-export, `super` and a path in the code.
    assert!(g.files.len() > 50 && e("outputs", "files") && e("mlp", "mlp::network") && e("mlp::model", "driver::model") && e("tensors::zip", "tensors::pickle"), "{:?}", g.edges);
    let found = circles(&g);
    assert!(found.is_empty(), "{} import circle(s):\n{}", found.len(), found.join("\n"));
}

#[test]
fn no_module_imports_one_above_it() {
    let g = graph(&sources());
    let faults = layer_faults(&g);
    assert!(faults.is_empty(), "the layers of docs/layout.md are broken:\n{}", faults.join("\n"));
}

/// The reader of sources on made-up ones: what it must find, and what it must not.
#[test]
fn the_reader_finds_imports_and_nothing_else() {
    let src = |file: &str, text: &str| Source { file: file.into(), text: text.into() };
    let sources = [
        src("src/lib.rs", "pub mod a; pub mod b; pub mod c; pub mod d; pub mod e;"),
        src("src/a/mod.rs", "pub mod x; pub mod y;\npub use x::{Thing, self as ex};\npub fn f() {}"),
        src("src/a/x.rs", "use super::{y::{self}, f};\npub struct Thing;\nfn g() { y::h(); }"),
        src("src/a/y.rs", "pub fn h() { let s = \"crate::b::X\"; let c = '\"'; } // crate::c::X\n/* crate::c::Y */"),
        src("src/b.rs", "use crate::a::Thing;\nfn k() -> &'static str { crate::d::NAME }"),
        src("src/c.rs", "use crate::a;\nfn m() { a::ex::Thing; }\n#[cfg(test)]\nmod tests { use crate::e::Z; }"),
        src("src/d.rs", "pub const NAME: &str = r#\"crate::e::\"#;\nmod inner { use super::super::b; }"),
        src("src/e.rs", "use std::fmt;\nuse crate::c as _;"),
    ];
    let g = graph(&sources);
    let edges: BTreeMap<&str, Vec<&str>> = g.edges.iter().map(|(m, e)| (m.as_str(), e.keys().map(String::as_str).collect())).collect();
    let expect: BTreeMap<&str, Vec<&str>> = [
        ("a", vec!["a::x"]),
        ("a::x", vec!["a", "a::y"]),
        ("a::y", vec![]),
        ("b", vec!["a::x", "d"]),
        ("c", vec!["a", "a::x"]),
        ("d", vec!["b"]),
        ("e", vec!["c"]),
    ]
    .into();
    assert_eq!(edges, expect);
    assert_eq!(g.edges["b"]["d"].at, "src/b.rs:2");
    let found = circles(&g);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("a -> a::x -> a\n  src/a/mod.rs:2 `x::Thing`: a -> a::x\n  src/a/x.rs:1 `super::f`: a::x -> a"), "{found:?}");
    assert!(found[1].starts_with("b -> d -> b\n"), "{found:?}");
}

/// docs/layout.md's table of layers lists the modules of [`LAYERS`], in its order.
#[test]
fn the_layers_are_those_of_docs_layout_md() {
    let doc = std::fs::read_to_string(root().join("docs/layout.md")).unwrap();
    let section = doc.split("## What may import what").nth(1).expect("docs/layout.md has a section \"What may import what\"");
    let section = section.split("\n## ").next().unwrap();
    let listed: Vec<&str> = section.lines().filter(|l| l.starts_with('|')).flat_map(|l| l.split('`').skip(1).step_by(2)).collect();
    assert_eq!(listed, LAYERS, "docs/layout.md's table of layers and LAYERS in tests/it/layering.rs differ");
}
