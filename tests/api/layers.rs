//! The module map holds: every `crate::…` a module of `src/` names belongs to its own layer or
//! a lower one of the table in `src/lib.rs` (tests inside a module may reach higher, for their
//! fixtures). An import that climbs fails here, naming the file and the line.

use std::collections::BTreeMap;
use std::path::Path;

/// `module → layer`, from the `//! | N | [`module`] … |` rows of lib.rs's table.
fn layers(lib: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | ") else {
            continue;
        };
        let mut cells = row.split(" | ");
        let (Some(n), Some(modules)) = (cells.next(), cells.next()) else {
            continue;
        };
        let Ok(n) = n.trim().parse::<u32>() else {
            continue;
        };
        for name in modules.split('`').skip(1).step_by(2) {
            out.insert(name.to_string(), n);
        }
    }
    out
}

/// The modules a line names through `crate::`: `crate::a::…` and `crate::{a, b::c}`.
fn named(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                let head: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !head.is_empty() {
                    out.push(head);
                }
            }
        } else {
            let head: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(head);
        }
    }
    out
}

/// Every `(file, line, module, named module)` in `src/` whose import climbs the table.
fn climbing_imports(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let layer = layers(&lib);
    assert!(layer.len() >= 15, "lib.rs's table was not read: {layer:?}");
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let mut bad = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let own = *layer
            .get(&top)
            .unwrap_or_else(|| panic!("src/{top} is not in lib.rs's module table"));
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            // A module's own tests (at its end) may use what their fixtures need.
            if line.trim() == "#[cfg(test)]"
                && text
                    .lines()
                    .nth(i + 1)
                    .is_some_and(|n| n.trim_start().starts_with("mod tests"))
            {
                break;
            }
            if line.trim_start().starts_with("//") {
                continue;
            }
            for name in named(line) {
                if let Some(&theirs) = layer.get(&name) {
                    if theirs > own {
                        bad.push(format!(
                            "src/{}:{}: {top} (layer {own}) uses {name} (layer {theirs})",
                            rel.display(),
                            i + 1
                        ));
                    }
                }
            }
        }
    }
    bad
}

#[test]
fn no_module_imports_one_of_a_higher_layer() {
    let bad = climbing_imports(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(
        bad.is_empty(),
        "imports that climb lib.rs's layer table:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_layer_check_sees_a_climbing_import() {
    // A copy of src/ with one import that climbs: the check must name it.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    std::fs::copy(src.join("lib.rs"), tmp.path().join("lib.rs")).unwrap();
    std::fs::create_dir(tmp.path().join("domain")).unwrap();
    std::fs::write(
        tmp.path().join("domain").join("mod.rs"),
        "use crate::{live::Hub, store::Store};\n",
    )
    .unwrap();
    let bad = climbing_imports(tmp.path());
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(
        bad[0].contains("src/domain/mod.rs:1: domain (layer 1) uses live (layer 3)"),
        "{bad:?}"
    );
}
