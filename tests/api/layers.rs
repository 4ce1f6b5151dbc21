//! The layers of `src/` (see `src/lib.rs`): every import goes down, from the application to
//! `web`, to `domain`, to `db`, to the plain values in `config` and `email`, and no modules
//! import each other in a circle. This reads the source, so a new import that breaks the rule
//! fails here with the files that break it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module's layer, from the bottom (0) up.
fn layer(module: &str) -> usize {
    match module.split("::").next().unwrap_or_default() {
        "config" | "email" => 0,
        "db" => 1,
        "domain" => 2,
        "web" => 3,
        _ => 4,
    }
}

/// Every module of `src/` (`web::routes::auth`, `db`, …) and its source.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("src/ is readable")
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path
                    .strip_prefix(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
                    .expect("a path under src/");
                let mut parts: Vec<String> = relative
                    .with_extension("")
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    parts.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    parts.pop();
                }
                let source = std::fs::read_to_string(&path).expect("a readable source file");
                out.insert(parts.join("::"), source);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        &mut out,
    );
    out
}

/// The source without its comments (doc links to other modules are not imports).
fn without_comments(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths named after `crate::`, including those inside `use crate::{…}` groups.
fn crate_paths(source: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let item = item.trim();
                if !item.is_empty() {
                    paths.push(path_of(item));
                }
            }
        } else {
            paths.push(path_of(rest));
        }
    }
    paths
}

fn path_of(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
        .collect::<String>()
        .trim_end_matches(':')
        .to_owned()
}

/// Which modules each module imports (the longest module that prefixes each path).
fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (module, source) in modules {
        let mut targets = BTreeSet::new();
        for path in crate_paths(&without_comments(source)) {
            let parts: Vec<&str> = path.split("::").collect();
            let target = (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|candidate| modules.contains_key(candidate));
            if let Some(target) = target
                && &target != module
                && !target.is_empty()
            {
                targets.insert(target);
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

/// Every import from a module to one in a higher layer, as "from imports to".
fn upward(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    graph
        .iter()
        .flat_map(|(from, targets)| {
            targets
                .iter()
                .filter(|to| layer(to) > layer(from))
                .map(move |to| format!("{from} imports {to}"))
        })
        .collect()
}

/// Every circle of imports, as "a -> b -> a".
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    // Depth-first search; a module met again while it is still on the path closes a circle.
    fn visit<'g>(
        module: &'g str,
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
        circles: &mut Vec<String>,
    ) {
        if let Some(start) = path.iter().position(|m| *m == module) {
            let mut circle = path[start..].to_vec();
            circle.push(module);
            circles.push(circle.join(" -> "));
            return;
        }
        if !done.insert(module) {
            return;
        }
        path.push(module);
        for next in graph.get(module).into_iter().flatten() {
            visit(next, graph, path, done, circles);
        }
        path.pop();
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, graph, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

#[test]
fn every_import_goes_down_a_layer_or_stays_in_its_own() {
    let graph = imports(&modules());
    assert!(
        graph.len() > 30,
        "the walk found too few modules: {graph:?}"
    );
    let up = upward(&graph);
    assert!(up.is_empty(), "imports that go up a layer: {up:#?}");
    let base: Vec<String> = ["config", "email"]
        .iter()
        .flat_map(|m| graph[*m].iter().map(move |to| format!("{m} imports {to}")))
        .filter(|line| !line.ends_with(" imports email"))
        .collect();
    assert!(
        base.is_empty(),
        "the plain values import the crate: {base:#?}"
    );
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    let found = circles(&imports(&modules()));
    assert!(found.is_empty(), "import circles: {found:#?}");
}

#[test]
fn the_check_sees_an_upward_import_and_a_circle() {
    // The rule itself: a db module that names the web layer, and two modules that name each
    // other (one through a `use crate::{…}` group), are both caught; a doc comment is not an
    // import, so the doc link from domain up to web is no circle.
    let mut modules = BTreeMap::new();
    modules.insert("db".to_owned(), "use crate::web::x;".to_owned());
    modules.insert("domain".to_owned(), "/// See [`crate::web::x`].".to_owned());
    modules.insert("web".to_owned(), String::new());
    modules.insert(
        "web::x".to_owned(),
        "fn f() { crate::web::y::g() }".to_owned(),
    );
    modules.insert(
        "web::y".to_owned(),
        "use crate::{web::x, domain};".to_owned(),
    );
    let graph = imports(&modules);
    assert_eq!(upward(&graph), ["db imports web::x"]);
    assert_eq!(circles(&graph), ["web::x -> web::y -> web::x"]);
}
