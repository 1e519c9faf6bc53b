//! The crate's modules form the layers listed in `docs/ARCHITECTURE.md`, with no cycle.
//!
//! What is counted: every `crate::<name>` path (including `$crate::` in macros and each
//! member of a `crate::{a, b::c}` group) in `src/**/*.rs`, except in comments, string and
//! character literals, and items marked `#[cfg(test)]` (unit tests may reach up to build
//! their fixtures). A name the crate root re-exports (`crate::Tensor`) counts for the module
//! that defines it, as `src/lib.rs` says. `src/lib.rs` itself only declares and re-exports,
//! and is not a node. `super::` paths never leave a top-level module (checked below), so
//! they need no counting.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The source with comments and the insides of string and character literals replaced by
/// spaces (newlines kept), so only code is searched.
fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if (c[i] == 'r' || (c[i] == 'b' && next == Some('r')))
            && !c
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
            && {
                let s = if c[i] == 'b' { i + 2 } else { i + 1 };
                let mut j = s;
                while c.get(j) == Some(&'#') {
                    j += 1;
                }
                c.get(j) == Some(&'"')
            }
        {
            // Raw string: r"…", r#"…"#, br"…".
            let mut j = if c[i] == 'b' { i + 2 } else { i + 1 };
            let mut hashes = 0;
            while c[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &c[i..j.min(c.len())] {
                blank(&mut out, ch);
            }
            i = j;
        } else if c[i] == '"' {
            out.push(' ');
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
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' {
            // A character literal ('x', '\n', '\u{…}'), or a lifetime ('a), left alone.
            let end = if next == Some('\\') {
                (i + 2..c.len()).find(|&j| c[j] == '\'')
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    for &ch in &c[i..=e] {
                        blank(&mut out, ch);
                    }
                    i = e + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// `code` without the items marked `#[cfg(test)]` (up to the end of their `{ … }` body or
/// their `;`).
fn without_test_items(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(pos) = out[from..].find(MARK).map(|p| p + from) {
        let bytes = out.as_bytes();
        let mut j = pos + MARK.len();
        let mut depth = 0usize;
        while j < bytes.len() {
            match bytes[j] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        j += 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    j += 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        let blanked: String = out[pos..j]
            .chars()
            .map(|ch| if ch == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(pos..j, &blanked);
        from = j;
    }
    out
}

fn ident_at(s: &[u8], mut i: usize) -> (String, usize) {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    let start = i;
    while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
        i += 1;
    }
    (String::from_utf8_lossy(&s[start..i]).into_owned(), i)
}

/// The first segment of every path that starts with `crate::` in `code`.
fn crate_refs(code: &str) -> Vec<String> {
    let s = code.as_bytes();
    let mut refs = Vec::new();
    let mut from = 0;
    while let Some(pos) = code[from..].find("crate").map(|p| p + from) {
        from = pos + 5;
        let before = pos.checked_sub(1).map(|p| s[p]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let mut j = pos + 5;
        while j < s.len() && s[j].is_ascii_whitespace() {
            j += 1;
        }
        if !code[j..].starts_with("::") {
            continue;
        }
        j += 2;
        while j < s.len() && s[j].is_ascii_whitespace() {
            j += 1;
        }
        if s.get(j) == Some(&b'{') {
            // A group: the first segment of each member at the group's own depth.
            let mut depth = 0;
            let mut at_member_start = true;
            while j < s.len() {
                match s[j] {
                    b'{' => {
                        depth += 1;
                        at_member_start = depth == 1;
                    }
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    b',' if depth == 1 => at_member_start = true,
                    b if at_member_start
                        && depth == 1
                        && (b.is_ascii_alphabetic() || b == b'_') =>
                    {
                        let (name, end) = ident_at(s, j);
                        refs.push(name);
                        at_member_start = false;
                        j = end;
                        continue;
                    }
                    _ => {}
                }
                j += 1;
            }
        } else {
            let (name, _) = ident_at(s, j);
            if !name.is_empty() {
                refs.push(name);
            }
        }
    }
    refs
}

/// The top-level modules: `src/<name>.rs` and `src/<name>/mod.rs`, except the crate root.
fn top_modules(src: &Path) -> BTreeSet<String> {
    fs::read_dir(src)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let stem = p.file_stem()?.to_str()?.to_string();
            let is_module = if p.is_dir() {
                p.join("mod.rs").exists()
            } else {
                p.extension().is_some_and(|e| e == "rs") && stem != "lib" && stem != "main"
            };
            is_module.then_some(stem)
        })
        .collect()
}

/// The names `src/lib.rs` re-exports, with the module each comes from.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let code = code_only(lib);
    let mut map = BTreeMap::new();
    for stmt in code.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let (module, items) = rest.split_once("::").expect("pub use <module>::…");
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let item = item.trim();
            let name = item
                .rsplit(" as ")
                .next()
                .unwrap()
                .rsplit("::")
                .next()
                .unwrap();
            if !name.is_empty() {
                map.insert(name.trim().to_string(), module.trim().to_string());
            }
        }
    }
    map
}

/// The layers of `docs/ARCHITECTURE.md`'s `layers` block, top first.
fn documented_layers() -> Vec<Vec<String>> {
    let doc = fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let start = doc
        .find("```layers\n")
        .expect("docs/ARCHITECTURE.md has a ```layers block")
        + "```layers\n".len();
    let end = doc[start..].find("```").unwrap() + start;
    doc[start..end]
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| !l.is_empty())
        .collect()
}

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// module -> used module -> files where the use happens.
fn module_graph() -> Graph {
    let src = root().join("src");
    let modules = top_modules(&src);
    let reexports = root_reexports(&fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for m in &modules {
        graph.entry(m.clone()).or_default();
    }
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let from = first.trim_end_matches(".rs").to_string();
        if from == "lib" {
            continue;
        }
        let code = without_test_items(&code_only(&fs::read_to_string(&f).unwrap()));
        for name in crate_refs(&code) {
            let to = if modules.contains(&name) {
                name.clone()
            } else {
                reexports.get(&name).cloned().unwrap_or_else(|| {
                    panic!(
                        "{}: `crate::{name}` is neither a module nor a re-export of src/lib.rs",
                        rel.display()
                    )
                })
            };
            if to != from {
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    graph
}

/// A cycle of `graph`, if there is one, as the modules along it (first repeated at the end).
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flat_map(|e| e.keys()) {
            if let Some(c) = visit(next, graph, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(m, graph, &mut done, &mut Vec::new()))
}

#[test]
fn the_modules_have_no_cycle() {
    let graph = module_graph();
    if let Some(cycle) = find_cycle(&graph) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|w| format!("{} -> {} (in {:?})", w[0], w[1], graph[&w[0]][&w[1]]))
            .collect();
        panic!(
            "module cycle: {}\n  {}",
            cycle.join(" -> "),
            steps.join("\n  ")
        );
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let layers = documented_layers();
    let graph = module_graph();
    let mut rank = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate() {
        for m in layer {
            assert!(
                rank.insert(m.clone(), i).is_none(),
                "`{m}` is listed twice in docs/ARCHITECTURE.md's layers"
            );
        }
    }
    let listed: BTreeSet<_> = rank.keys().cloned().collect();
    let present: BTreeSet<_> = graph.keys().cloned().collect();
    assert_eq!(
        listed, present,
        "docs/ARCHITECTURE.md's layers must list exactly the modules of src/"
    );
    let mut wrong = Vec::new();
    for (from, uses) in &graph {
        for (to, files) in uses {
            if rank[to] <= rank[from] {
                wrong.push(format!(
                    "{from} (layer {}) uses {to} (layer {}) in {files:?}",
                    rank[from], rank[to]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "references that do not go strictly down the layers of docs/ARCHITECTURE.md:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn the_cpu_and_cuda_backends_do_not_use_each_other() {
    let backend = root().join("src/backend");
    for (dir, other) in [("cpu", "cuda"), ("cuda", "cpu")] {
        let mut files = Vec::new();
        rust_files(&backend.join(dir), &mut files);
        for f in files {
            let code = without_test_items(&code_only(&fs::read_to_string(&f).unwrap()));
            let compact: String = code.split_whitespace().collect();
            for path in [format!("backend::{other}"), format!("super::{other}")] {
                assert!(
                    !compact.contains(&path),
                    "{} uses `{path}`: backend::{dir} must not depend on backend::{other}",
                    f.display()
                );
            }
        }
    }
}

#[test]
fn super_paths_stay_inside_their_top_level_module() {
    // `super::` from a top-level module's own file would reach the crate root and, from
    // there, any module, bypassing the `crate::` count above.
    let src = root().join("src");
    for m in top_modules(&src) {
        let file = if src.join(&m).is_dir() {
            src.join(&m).join("mod.rs")
        } else {
            src.join(format!("{m}.rs"))
        };
        let code = without_test_items(&code_only(&fs::read_to_string(&file).unwrap()));
        assert!(
            !code.contains("super::"),
            "{} uses `super::`, i.e. the crate root",
            file.display()
        );
    }
}

#[test]
fn the_scanner_sees_code_only() {
    let src = r##"
        use crate::{a, b::{c, d}, e as f};
        // crate::comment
        /* crate::block /* crate::nested */ */
        let s = "crate::string"; let r = r#"crate::raw"#; let ch = '"'; let q = '\'';
        fn g<'x>(v: &'x u8) { crate::h::i(); $crate::j::k }
        #[cfg(test)]
        mod tests { use crate::tested; }
        crate :: spaced :: path;
    "##;
    let refs = crate_refs(&without_test_items(&code_only(src)));
    assert_eq!(refs, ["a", "b", "e", "h", "j", "spaced"]);
}
