//! `vscc org`: the org tree as text or JSON.

use anyhow::Context;

use super::*;

pub(super) fn print_org(settings: &Settings, args: OrgArgs) -> anyhow::Result<()> {
    let tree = reference::load_org_tree(&settings.reference.divisions_dir, &settings.org.region)?;
    let root = match &args.code {
        Some(code) => tree
            .get(code)
            .with_context(|| format!("no org with code {code}"))?,
        None => tree.root(),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::wire::org::OrgView::of(&tree, root, args.depth))?
        );
        return Ok(());
    }
    let mut out = String::new();
    write_node(&tree, root, 0, args.depth, &mut out);
    print!("{out}");
    let sub = tree.subtree(root);
    let count = |l: Level| sub.iter().filter(|&&i| tree.node(i).level == l).count();
    let counts: Vec<String> = Level::ALL
        .into_iter()
        .filter(|&l| l > tree.node(root).level)
        .map(|l| format!("{} {}", count(l), l.label_zh()))
        .collect();
    println!("— {}", counts.join(", "));
    Ok(())
}

fn write_node(tree: &OrgTree, idx: u32, indent: usize, depth: Option<usize>, out: &mut String) {
    let n = tree.node(idx);
    out.push_str(&format!(
        "{}{} {} ({})\n",
        "  ".repeat(indent),
        n.code,
        n.name,
        n.level.label_zh()
    ));
    if depth == Some(0) {
        return;
    }
    for &c in &n.children {
        write_node(tree, c, indent + 1, depth.map(|d| d - 1), out);
    }
}
