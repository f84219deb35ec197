//! Embeds `sql/NNNN_name.sql` (and the cluster form, `sql/cluster/NNNN_name.sql`) into the
//! binary so that it can migrate from any directory.

use std::fmt::Write as _;
use std::path::Path;

/// `pub static <name>: &[Migration]` of the `.sql` files directly in `dir`, in name order.
fn migrations(name: &str, dir: &Path) -> String {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("sql/ folder")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    let mut out = format!("pub static {name}: &[Migration] = &[\n");
    for path in files {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let (num, name) = stem
            .split_once('_')
            .expect("sql files are named NNNN_name.sql");
        let version: u32 = num.parse().expect("sql file names start with a number");
        writeln!(
            out,
            "    Migration {{ version: {version}, name: {name:?}, sql: include_str!({path:?}) }},",
            path = path.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    out
}

fn main() {
    println!("cargo:rerun-if-changed=sql");
    println!("cargo:rerun-if-changed=sql/cluster");
    // Read at run time: a build script compiled for one checkout may be run for another.
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let sql = Path::new(&root).join("sql");
    let out =
        migrations("MIGRATIONS", &sql) + &migrations("CLUSTER_MIGRATIONS", &sql.join("cluster"));
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("migrations.rs");
    std::fs::write(dest, out).unwrap();
}
