//! The module graph of `src/`: no two top-level modules import each other, directly or
//! through others, and nothing below the engine imports it back (docs/architecture.md).
//!
//! Read from the source text: a reference `crate::name` in code (not in comments, not in
//! a file's `#[cfg(test)] mod tests`) is an edge from the file's top-level module to
//! `name`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::name` references in `code`, outside comments.
fn references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `crate::{a, b}`: each name of the group.
            if name.is_empty() && after.starts_with('{') {
                let group = after[1..].split('}').next().unwrap_or_default();
                for item in group.split(',') {
                    let item = item.trim().split("::").next().unwrap_or_default();
                    if !item.is_empty() {
                        found.insert(item.to_owned());
                    }
                }
            } else if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // A file's unit tests may use anything.
        let code = match text.find("#[cfg(test)]\nmod tests") {
            Some(at) => &text[..at],
            None => &text,
        };
        let edges = graph.entry(top.clone()).or_default();
        for name in references(code) {
            if name != top {
                edges.insert(name);
            }
        }
    }
    graph
}

/// A cycle through `start`, if there is one: the path back to it.
fn cycle_through(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_owned());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn the_modules_of_src_import_each_other_without_cycles() {
    let graph = graph();
    assert!(graph.len() > 10, "the source was read: {graph:?}");
    assert!(
        graph["relay"].contains("protocol") && graph["engine"].contains("relay"),
        "the reader finds edges: {graph:?}"
    );
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_through(&graph, m))
        .map(|c| c.join(" → "))
        .collect();
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

/// The engine is driven from the outside: the command line and the tray app's side
/// (`desktop`), both through `launch`, and the management API (which `launch` mounts).
/// Nothing the engine runs may reach back into it.
#[test]
fn only_the_drivers_and_the_api_import_the_engine() {
    let graph = graph();
    let importers: Vec<&String> = graph
        .iter()
        .filter(|(m, edges)| {
            edges.contains("engine") && !["cli", "desktop", "launch", "api"].contains(&m.as_str())
        })
        .map(|(m, _)| m)
        .collect();
    assert!(importers.is_empty(), "{importers:?} import the engine");
}

#[test]
fn references_are_read_from_code_not_comments() {
    let found = references(
        "use crate::{config::Target, auth};\n// crate::nothing\nlet x = crate::pool::now(); // crate::no",
    );
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["auth", "config", "pool"]
    );
}

/// `cargo test` at the root builds the engine alone: no crate of the tray app's stack
/// (Tauri, GTK, WebKit) is in the engine's dependency tree, dev and build dependencies
/// included. The shell (`src-tauri/`) is a workspace member outside `default-members`.
#[test]
fn the_engine_depends_on_no_desktop_crate() {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "carpool",
            "-e",
            "normal,build,dev",
        ])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).unwrap();
    assert!(tree.lines().count() > 100, "the tree is listed: {tree}");
    let desktop: Vec<&str> = tree
        .lines()
        .filter(|l| {
            [
                "tauri",
                "gtk",
                "gdk",
                "webkit2gtk",
                "wry",
                "tao",
                "libappindicator",
            ]
            .iter()
            .any(|name| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}-")))
        })
        .collect();
    assert!(desktop.is_empty(), "the engine depends on {desktop:?}");
    let default_members =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("default-members"))
            .map(str::to_owned);
    assert_eq!(
        default_members.as_deref(),
        Some("default-members = [\".\"]")
    );
}
