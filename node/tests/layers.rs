//! The node's shape, checked from its source (see ARCHITECTURE.md, "The node in layers"):
//! each layer uses only the layers below it (app → delivery → mailbox → net), only `app/`
//! names the local API, no two files of `node/src` import each other in a circle, and no file
//! is over 500 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 500;

/// What each layer (and the shared root modules) may not name.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "crate::net",
        &[
            "crate::app",
            "crate::delivery",
            "crate::files",
            "crate::mailbox",
            "tokenim_api",
        ],
    ),
    (
        "crate::mailbox",
        &[
            "crate::app",
            "crate::delivery",
            "crate::files",
            "tokenim_api",
        ],
    ),
    (
        "crate::delivery",
        &["crate::app", "crate::files", "tokenim_api"],
    ),
    (
        "crate::files",
        &[
            "crate::app",
            "crate::delivery",
            "crate::mailbox",
            "tokenim_api",
        ],
    ),
    (
        "crate::time",
        &[
            "crate::app",
            "crate::delivery",
            "crate::files",
            "crate::mailbox",
            "crate::net",
            "tokenim_api",
        ],
    ),
    (
        "crate::metrics",
        &[
            "crate::app",
            "crate::delivery",
            "crate::files",
            "crate::mailbox",
            "crate::net",
            "tokenim_api",
        ],
    ),
    (
        "crate::event",
        &[
            "crate::app",
            "crate::delivery",
            "crate::files",
            "crate::mailbox",
            "crate::net",
            "tokenim_api",
        ],
    ),
    (
        "crate::error",
        &[
            "crate::app",
            "crate::delivery",
            "crate::files",
            "crate::mailbox",
            "crate::net",
            "tokenim_api",
        ],
    ),
];

struct File {
    path: PathBuf,
    /// `crate::a::b` for `src/a/b.rs` and `src/a/b/mod.rs`.
    module: String,
    /// Code without comments, one entry per line.
    code: Vec<String>,
    lines: usize,
}

fn module_of(src: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    std::iter::once("crate".to_string())
        .chain(parts)
        .collect::<Vec<_>>()
        .join("::")
}

fn library_files(src: &Path) -> Vec<File> {
    let mut out = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                // The binaries use the facade only; they are not part of the layers.
                if path != src.join("bin") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read file");
                // An inline test module (at the end of a file, by habit) may use anything.
                let code_text = text
                    .find("#[cfg(test)]\nmod tests {")
                    .map_or(text.as_str(), |i| &text[..i]);
                let code = strip_comments_and_strings(code_text)
                    .lines()
                    .map(String::from)
                    .collect();
                out.push(File {
                    module: module_of(src, &path),
                    lines: text.lines().count(),
                    path,
                    code,
                });
            }
        }
    }
    out
}

/// The code alone: comments dropped, string literals emptied (their text is not code).
fn strip_comments_and_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '\'' if chars.peek() == Some(&'"') => {
                // The char literal '"'.
                out.push_str("'\"");
                chars.next();
            }
            '"' => {
                out.push('"');
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        '\n' => out.push('\n'),
                        _ => {}
                    }
                }
                out.push('"');
            }
            c => out.push(c),
        }
    }
    out
}

/// Every path a file names: `use` trees expanded, and inline `crate::`/`super::` paths.
fn named_paths(file: &File) -> Vec<String> {
    let text = file.code.join("\n");
    let mut paths = Vec::new();
    // `use` statements, possibly over several lines, with brace groups.
    let mut rest = text.as_str();
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        rest = &rest[i + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        expand("", rest[..end].trim(), &mut paths);
        rest = &rest[end..];
    }
    // Inline paths such as `crate::time::now_secs()` or `super::Delivery`.
    for token in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
        // `use a::{…}` leaves `a::` behind: those were expanded above.
        if (token.starts_with("crate::") || token.starts_with("super::")) && !token.ends_with(':') {
            paths.push(token.to_string());
        }
    }
    paths
}

/// Expands `a::{b, c::{d, e}}` under `prefix` into full paths.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    let join = |p: &str| {
        if prefix.is_empty() {
            p.to_string()
        } else {
            format!("{prefix}::{p}")
        }
    };
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let base = join(head);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&base, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&base, &inner[start..], out);
    } else if !tree.is_empty() {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        out.push(join(path));
    }
}

/// Resolves a named path to the module it refers to, relative to `from`.
fn resolve(from: &File, path: &str, children: &BTreeSet<String>) -> Option<String> {
    let is_dir_module = from.path.ends_with("mod.rs") || from.path.ends_with("lib.rs");
    let mut here: Vec<&str> = from.module.split("::").collect();
    let mut segs: Vec<&str> = path.split("::").collect();
    if segs.first() == Some(&"crate") {
        return Some(segs.join("::"));
    }
    // `super` in a file module is its parent; in `mod.rs` the parent of its directory.
    if segs.first() == Some(&"super") {
        if !is_dir_module || !here.is_empty() {
            here.pop();
        }
        segs.remove(0);
        while segs.first() == Some(&"super") {
            here.pop();
            segs.remove(0);
        }
        return Some(here.into_iter().chain(segs).collect::<Vec<_>>().join("::"));
    }
    // A path through a child module declared here (`child::item`).
    let first = format!("{}::{}", from.module, segs[0]);
    if is_dir_module && segs.len() > 1 && children.contains(&first) {
        here.extend(segs);
        return Some(here.join("::"));
    }
    if segs[0] == "self" {
        segs.remove(0);
        here.extend(segs);
        return Some(here.join("::"));
    }
    None
}

/// The file (module) a path lands in: the longest module prefix that is a file.
fn owner<'a>(path: &str, modules: &'a BTreeSet<String>) -> Option<&'a String> {
    let mut p = path.to_string();
    loop {
        if let Some(m) = modules.get(&p) {
            return Some(m);
        }
        p = p.rsplit_once("::")?.0.to_string();
    }
}

fn graph() -> (Vec<File>, BTreeMap<String, BTreeSet<String>>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = library_files(&src);
    let modules: BTreeSet<String> = files.iter().map(|f| f.module.clone()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let targets = edges.entry(f.module.clone()).or_default();
        for path in named_paths(f) {
            let Some(full) = resolve(f, &path, &modules) else {
                continue;
            };
            if let Some(m) = owner(&full, &modules)
                && *m != f.module
            {
                targets.insert(m.clone());
            }
        }
    }
    (files, edges)
}

#[test]
fn layers_use_only_the_layers_below_them() {
    let (files, edges) = graph();
    let mut broken = Vec::new();
    for f in &files {
        for (layer, never) in FORBIDDEN {
            if f.module != *layer && !f.module.starts_with(&format!("{layer}::")) {
                continue;
            }
            for target in &edges[&f.module] {
                for n in *never {
                    if target == n || target.starts_with(&format!("{n}::")) {
                        broken.push(format!("{} names {target}", f.path.display()));
                    }
                }
            }
            if never.contains(&"tokenim_api") && f.code.iter().any(|l| l.contains("tokenim_api")) {
                broken.push(format!("{} names tokenim_api", f.path.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "layer rules broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn no_two_files_import_each_other_in_a_circle() {
    let (_, edges) = graph();
    // Depth-first search for a back edge; reports the circle.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == m) {
            let mut circle = stack[i..].to_vec();
            circle.push(m.to_string());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_string());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        if let Some(circle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", circle.join(" → "));
        }
    }
}

#[test]
fn no_file_is_over_the_size_of_one_job() {
    let (files, _) = graph();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = files;
    // The binaries count too.
    let bin = library_files_in(&src.join("bin"));
    let long: Vec<String> = all
        .drain(..)
        .map(|f| (f.path, f.lines))
        .chain(bin)
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(p, n)| format!("{} has {n} lines", p.display()))
        .collect();
    assert!(
        long.is_empty(),
        "split by what they hold:\n{}",
        long.join("\n")
    );
}

fn library_files_in(dir: &Path) -> Vec<(PathBuf, usize)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(library_files_in(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let n = std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .count();
            out.push((path, n));
        }
    }
    out
}

#[test]
fn the_checker_sees_circles_and_forbidden_names() {
    // The checker itself: a parent importing a child that imports it is a circle.
    let file = |module: &str, path: &str, code: &str| File {
        path: PathBuf::from(path),
        module: module.into(),
        code: code.lines().map(String::from).collect(),
        lines: 1,
    };
    let parent = file("crate::d", "src/d/mod.rs", "mod c;\nuse c::{x, y::{z}};");
    let child = file(
        "crate::d::c",
        "src/d/c.rs",
        "use super::Thing;\nfn f() { crate::app::g(); }",
    );
    let modules: BTreeSet<String> = ["crate::d", "crate::d::c", "crate::app"]
        .map(String::from)
        .into();
    let resolved = |f: &File| -> BTreeSet<String> {
        named_paths(f)
            .iter()
            .filter_map(|p| resolve(f, p, &modules))
            .filter_map(|p| owner(&p, &modules).cloned())
            .filter(|m| *m != f.module)
            .collect()
    };
    assert_eq!(
        resolved(&parent),
        BTreeSet::from(["crate::d::c".to_string()])
    );
    assert_eq!(
        resolved(&child),
        BTreeSet::from(["crate::d".to_string(), "crate::app".to_string()])
    );
}
