//! vscc's SQL on a current ClickHouse. Users run vscc against ClickHouse 24–26, while this
//! machine's packaged server is 18.16: every migration (single-server form), the kind views, the
//! recomputation SQL the measure types generate and the SQL console's sample queries are run on
//! chdb (PyPI's in-process ClickHouse, 26.x, installed by `scripts/setup`) over the very rows
//! 18.16 holds, and the answers compared with 18.16's.

use crate::helpers::{clickhouse_url, sample_events, spawn_app, TestApp};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// Where `scripts/setup` installs chdb (PyPI), beside the other downloaded packages.
fn chdb_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("var/py")
}

/// The tables whose rows the checks read.
const TABLES: [&str; 7] = [
    "events",
    "org_nodes",
    "imports",
    "metric_snapshots",
    "target_progress",
    "league_tables",
    "data_freshness",
];

/// A query's answer on 18.16, through ClickHouse's HTTP interface (as JSONCompact).
async fn on_18(app: &TestApp, sql: &str) -> Result<Value, String> {
    // A connection of its own each time: 18.16 closes idle ones after 3 s, while chdb ran.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| e.to_string())?;
    let res = http
        .post(clickhouse_url())
        .query(&[
            ("database", app.settings.clickhouse.database.as_str()),
            ("wait_end_of_query", "1"),
        ])
        .body(format!("{sql} FORMAT JSONCompact"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let ok = res.status().is_success();
    let text = res.text().await.map_err(|e| e.to_string())?;
    if !ok {
        return Err(text);
    }
    let answer: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    Ok(answer["data"].clone())
}

/// One cell as both engines would agree it reads: numbers (quoted 64-bit integers included)
/// as their value, everything else as text.
fn cell(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            format!("[{}]", items.iter().map(cell).collect::<Vec<_>>().join(","))
        }
        Value::Null => "NULL".into(),
        Value::Number(n) => n.as_f64().map(|f| format!("{f}")).unwrap_or_default(),
        Value::String(s) => match s.parse::<f64>() {
            Ok(f) if !s.is_empty() && s.trim() == s => format!("{f}"),
            _ => s.clone(),
        },
        other => other.to_string(),
    }
}

fn rows(data: &Value) -> Vec<Vec<String>> {
    data.as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r.as_array()
                        .map(|c| c.iter().map(cell).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_sql_runs_on_a_current_clickhouse_and_recomputes_what_18_16_does() {
    let py = chdb_path();
    let probe = std::process::Command::new("python3")
        .args(["-c", "import chdb; print(chdb.engine_version)"])
        .env("PYTHONPATH", &py)
        .output()
        .expect("python3 runs");
    assert!(
        probe.status.success(),
        "chdb is not importable from {}: run scripts/setup ({})",
        py.display(),
        String::from_utf8_lossy(&probe.stderr)
    );
    let engine = String::from_utf8_lossy(&probe.stdout).trim().to_string();

    // Records of every kind over the last 400 days, landed; then the nightly jobs' tables.
    let app = spawn_app().await;
    let events = sample_events(&app.state.tree, 6000, 28, 400, "cur");
    for chunk in events.chunks(2000) {
        assert_eq!(app.post_events(&json!(chunk)).await.status(), 200);
    }
    app.wait_landed().await;
    assert_eq!(app.post_empty("/api/v1/jobs/all").await.status(), 200);
    // The console's first query makes the kind views the samples read.
    let (status, _) = app
        .query(
            app.admin_token(),
            json!({"sql": "SELECT 1", "format": "json"}),
        )
        .await;
    assert_eq!(status, 200);

    let db = app.settings.clickhouse.database.clone();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chdb-{db}"));
    std::fs::create_dir_all(&dir).unwrap();

    // The rows, as 18.16 writes them out.
    let mut load = Vec::new();
    for table in TABLES {
        let res = app
            .http
            .post(clickhouse_url())
            .query(&[("database", db.as_str())])
            .body(format!(
                "SELECT * FROM {table} FORMAT TabSeparatedWithNamesAndTypes"
            ))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "exporting {table}");
        let file = dir.join(format!("{table}.tsv"));
        std::fs::write(&file, res.bytes().await.unwrap()).unwrap();
        load.push(json!({"table": table, "file": file}));
    }

    // Every migration as a single server runs it, then the kind views.
    let mut statements = Vec::new();
    for m in vscc::MIGRATIONS {
        for s in vscc::split_statements(m.sql) {
            statements.push(s.replace("{db}", &db));
        }
    }
    let catalogue = app.state.hub.catalogue();
    let views = vscc::kind_views(&catalogue.kinds);
    // Replaced as vscc replaces them (the migrations made `events_effective` already).
    for (name, select) in &views {
        statements.push(format!("DROP TABLE IF EXISTS {db}.{name}"));
        statements.push(format!(
            "CREATE VIEW {db}.{name} AS {}",
            select.replace("{db}", &db)
        ));
    }

    // The recomputation's SQL as generated now, and the console's samples.
    let now = app.state.hub.now();
    let imports = app.store().ok_imports().await.unwrap();
    let recompute = app.store().recompute_queries(&catalogue, now, &imports);
    assert!(
        recompute.len() >= 20,
        "{} recomputation queries",
        recompute.len()
    );
    let samples: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sql-samples.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut queries: Vec<(String, String)> = recompute.clone();
    for s in &samples {
        queries.push((
            format!("sample: {}", s["title"].as_str().unwrap()),
            s["sql"].as_str().unwrap().to_string(),
        ));
    }
    // Every kind view reads back its kind's rows.
    for (name, _) in &views {
        queries.push((
            format!("view {name}"),
            format!("SELECT * FROM {name} ORDER BY seq"),
        ));
    }

    let job = json!({
        "database": db,
        "statements": statements,
        "load": load,
        "queries": queries.iter().map(|(n, q)| json!({"name": n, "sql": q})).collect::<Vec<_>>(),
    });
    let job_file = dir.join("job.json");
    std::fs::write(&job_file, serde_json::to_vec(&job).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chdb/run.py"))
        .arg(&job_file)
        .env("PYTHONPATH", &py)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answers: BTreeMap<String, Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| (v["name"].as_str().unwrap_or("").to_string(), v))
        .collect();
    if let Some(failed) = answers.get("statement") {
        panic!(
            "a migration or view does not run on ClickHouse {engine}: {}\n{}",
            failed["sql"], failed["error"]
        );
    }
    assert!(
        out.status.success(),
        "chdb run failed: {}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );

    let mut differ = Vec::new();
    let mut non_empty = 0;
    for (name, sql) in &queries {
        let theirs = answers
            .get(name)
            .unwrap_or_else(|| panic!("no answer from chdb for {name}"));
        if let Some(e) = theirs.get("error") {
            differ.push(format!(
                "{name}: fails on ClickHouse {engine}: {e}\n  {sql}"
            ));
            continue;
        }
        let ours = on_18(&app, sql)
            .await
            .unwrap_or_else(|e| panic!("{name} fails on 18.16: {e}\n  {sql}"));
        let (mut a, mut b) = (rows(&ours), rows(&theirs["rows"]));
        // The recomputation's rows come in no order; the samples and views say theirs.
        if !name.starts_with("sample") && !name.starts_with("view") {
            a.sort();
            b.sort();
        }
        if !a.is_empty() {
            non_empty += 1;
        }
        if a != b {
            let first = a
                .iter()
                .zip(&b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            differ.push(format!(
                "{name}: {} rows on 18.16, {} on {engine}; first difference at row {first}: {:?} vs {:?}",
                a.len(),
                b.len(),
                a.get(first),
                b.get(first)
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "answers that differ between ClickHouse 18.16 and {engine}:\n{}",
        differ.join("\n")
    );
    // Not a comparison of empty answers.
    assert!(
        non_empty * 10 >= queries.len() * 8,
        "only {non_empty} of {} queries returned rows",
        queries.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
    app.stop().await;
}
