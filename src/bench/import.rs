//! `vscc bench import`: a ledger import of N rows beside ClickHouse's own CSV insert of the
//! same file (`clickhouse-client --query "INSERT INTO … FORMAT CSVWithNames" < file`) into an
//! equivalent table, measured in the same run; and the import's peak memory.

use std::io::Write;
use std::process::Stdio;
use std::time::Instant;

use anyhow::Context;

use super::BenchEnv;
use crate::config::Settings;
use crate::domain::Level;
use crate::reference;
use crate::store::Store;

pub struct ImportBench {
    pub rows: usize,
    pub chunk_rows: usize,
}

/// A hiring ledger of `rows` rows as clerks write it: names, dates three ways, 是/否.
fn write_ledger(
    path: &std::path::Path,
    rows: usize,
    tree: &crate::domain::OrgTree,
) -> anyhow::Result<u64> {
    let communities: Vec<(String, String, String)> = tree
        .nodes()
        .filter(|(_, n)| n.level == Level::Community)
        .map(|(idx, n)| {
            let street = tree
                .ancestor_at(idx, Level::Street)
                .map(|s| tree.node(s).name.clone())
                .unwrap_or_default();
            let district = tree
                .ancestor_at(idx, Level::District)
                .map(|d| tree.node(d).name.clone())
                .unwrap_or_default();
            (district, street, n.name.clone())
        })
        .collect();
    let start = time::Date::from_calendar_date(2020, time::Month::January, 1)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    out.write_all("\u{feff}区,街道,社区,入职日期,人员编号,是否退役军人\n".as_bytes())?;
    for i in 0..rows {
        let (d, s, c) = &communities[i % communities.len()];
        let day = start + time::Duration::days((i % 1800) as i64);
        let (y, m, dd) = (day.year(), day.month() as u8, day.day());
        match i % 4 {
            0 | 1 => writeln!(
                out,
                "{d},{s},{c},{y}-{m:02}-{dd:02},B{i:09},{}",
                if i % 3 == 0 { "是" } else { "否" }
            )?,
            2 => writeln!(
                out,
                "{d},{s},{c},{y}年{m}月{dd}日,B{i:09},{}",
                if i % 3 == 0 { "是" } else { "否" }
            )?,
            _ => writeln!(
                out,
                "{d},{s},{c},{y}/{m}/{dd},B{i:09},{}",
                if i % 3 == 0 { "是" } else { "否" }
            )?,
        }
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// A child process run to its end.
struct ChildRun {
    secs: f64,
    peak_bytes: u64,
    /// User + system CPU seconds.
    cpu_secs: f64,
    ok: bool,
}

/// Runs a child to its end: its time, peak resident memory and CPU time.
fn timed_child(mut command: std::process::Command) -> anyhow::Result<ChildRun> {
    let started = Instant::now();
    let child = command.spawn().context("starting a child process")?;
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: wait4 on our own child; the rusage struct is plain data.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    anyhow::ensure!(r == pid, "wait4 failed");
    let secs_of = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(ChildRun {
        secs: started.elapsed().as_secs_f64(),
        peak_bytes: usage.ru_maxrss as u64 * 1024,
        cpu_secs: secs_of(usage.ru_utime) + secs_of(usage.ru_stime),
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    })
}

pub async fn run(settings: &Settings, opts: ImportBench) -> anyhow::Result<()> {
    let tree = reference::load_org_tree(&settings.reference.divisions_dir, &settings.org.region)?;
    let env = BenchEnv::start(settings, "import").await?;
    let result = async {
        let file = env.dir.join("招聘台账-bench.csv");
        eprintln!("bench import: writing a {}-row hiring ledger …", opts.rows);
        let bytes = write_ledger(&file, opts.rows, &tree)?;

        // Baseline: ClickHouse's own CSV parser into a table of the same columns (as text:
        // ClickHouse cannot read 2021年3月4日 as a date, so it does less work than vscc).
        let admin = Store::new(&env.clickhouse_url, "default", "", "default")?;
        admin.client().query("CREATE DATABASE IF NOT EXISTS bench_baseline").execute().await?;
        admin
            .client()
            .query("CREATE TABLE bench_baseline.ledger (`区` String, `街道` String, `社区` String, `入职日期` String, `人员编号` String, `是否退役军人` String) ENGINE = MergeTree() ORDER BY tuple()")
            .execute()
            .await?;
        let port = env.tcp_port().context("the baseline needs clickhouse-client: run without clickhouse.url (managed ClickHouse)")?;
        let mut baseline = std::process::Command::new("clickhouse-client");
        baseline
            .args(["--port", &port.to_string(), "--query", "INSERT INTO bench_baseline.ledger FORMAT CSVWithNames"])
            .stdin(std::fs::File::open(&file)?)
            .stdout(Stdio::null());
        let base = timed_child(baseline)?;
        anyhow::ensure!(base.ok, "clickhouse-client failed");
        let base_secs = base.secs;
        let base_rows: u64 = admin.client().query("SELECT count() FROM bench_baseline.ledger").fetch_one().await?;

        // vscc: the import command, a child of its own so its peak memory is its alone.
        let mut import = std::process::Command::new(std::env::current_exe()?);
        import
            .args(["etl", "import", "--chunk-rows", &opts.chunk_rows.to_string(), "--rejects"])
            .arg(&env.dir)
            .arg(&file)
            .env("VSCC__CLICKHOUSE__URL", &env.clickhouse_url)
            .env("VSCC__CLICKHOUSE__DATABASE", "bench_import")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        let ch_cpu0 = env.clickhouse_pid().map(super::cpu_secs).unwrap_or(0.0);
        let vscc = timed_child(import)?;
        let vscc_ch_cpu = env.clickhouse_pid().map(super::cpu_secs).unwrap_or(0.0) - ch_cpu0;
        anyhow::ensure!(vscc.ok, "vscc etl import failed");
        let (vscc_secs, peak) = (vscc.secs, vscc.peak_bytes);
        let store = Store::new(&env.clickhouse_url, "default", "", "bench_import")?;
        let vscc_rows: u64 = store.client().query("SELECT count() FROM events").fetch_one().await?;

        // For scale: ClickHouse itself writing the same rows into the events schema again
        // (server-side copy: no parsing, no network) — the floor under any import into it.
        admin.client().query("CREATE DATABASE IF NOT EXISTS bench_copy").execute().await?;
        admin.client().query("CREATE TABLE bench_copy.events AS bench_import.events").execute().await?;
        let t = Instant::now();
        admin
            .client()
            .query("INSERT INTO bench_copy.events SELECT * FROM bench_import.events")
            .with_setting("wait_end_of_query", "1")
            .execute()
            .await?;
        let copy_secs = t.elapsed().as_secs_f64();

        // The fair floor: clickhouse-client inserting the very rows vscc wrote, already cleaned
        // and shaped as `events` rows (CSV, in the ledger's order), into an `events` table.
        let shaped = env.dir.join("events-shaped.csv");
        let mut export = std::process::Command::new("clickhouse-client");
        export
            .args([
                "--port", &port.to_string(),
                // 10 M full rows in the ledger's order: sorted on disk beyond 1 GB.
                "--max_memory_usage=8000000000", "--max_bytes_before_external_sort=1000000000",
                "--query", "SELECT * FROM bench_import.events ORDER BY seq FORMAT CSV",
            ])
            .stdout(std::fs::File::create(&shaped)?);
        anyhow::ensure!(timed_child(export)?.ok, "exporting the shaped rows failed");
        admin.client().query("CREATE DATABASE IF NOT EXISTS bench_shaped").execute().await?;
        admin.client().query("CREATE TABLE bench_shaped.events AS bench_import.events").execute().await?;
        let mut shaped_insert = std::process::Command::new("clickhouse-client");
        shaped_insert
            .args(["--port", &port.to_string(), "--query", "INSERT INTO bench_shaped.events FORMAT CSV"])
            .stdin(std::fs::File::open(&shaped)?)
            .stdout(Stdio::null());
        let ch_cpu0 = env.clickhouse_pid().map(super::cpu_secs).unwrap_or(0.0);
        let shaped_run = timed_child(shaped_insert)?;
        let shaped_ch_cpu = env.clickhouse_pid().map(super::cpu_secs).unwrap_or(0.0) - ch_cpu0;
        anyhow::ensure!(shaped_run.ok, "clickhouse-client inserting the shaped rows failed");
        let shaped_secs = shaped_run.secs;
        let shaped_rows: u64 = admin.client().query("SELECT count() FROM bench_shaped.events").fetch_one().await?;
        let shaped_bytes = std::fs::metadata(&shaped).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(&shaped);

        let rate = |rows: u64, secs: f64| rows as f64 / secs.max(1e-9);
        println!("bench import: {} rows, {:.0} MiB CSV (hiring ledger, Chinese headers, names, dates three ways)", opts.rows, bytes as f64 / 1048576.0);
        println!("  clickhouse-client CSVWithNames  {:>10} rows  {:>7.1} s  {:>10.0} rows/s  (baseline)", base_rows, base_secs, rate(base_rows, base_secs));
        println!(
            "  vscc etl import                 {:>10} rows  {:>7.1} s  {:>10.0} rows/s  = {:.2}× baseline; peak RSS {:.0} MiB (chunks of {} rows)",
            vscc_rows,
            vscc_secs,
            rate(vscc_rows, vscc_secs),
            rate(vscc_rows, vscc_secs) / rate(base_rows, base_secs),
            peak as f64 / 1048576.0,
            opts.chunk_rows
        );
        println!(
            "  (ClickHouse copying the same rows into a second events table: {:.1} s, {:.0} rows/s — writing the\n   sorted events table costs ClickHouse itself {:.2}× the baseline's time per row)",
            copy_secs,
            rate(vscc_rows, copy_secs),
            rate(base_rows, base_secs) / rate(vscc_rows, copy_secs)
        );
        println!(
            "  floor: clickhouse-client CSV of the same rows shaped as events ({:.0} MiB)  {:>10} rows  {:>7.1} s  {:>10.0} rows/s — vscc = {:.2}× this floor",
            shaped_bytes as f64 / 1048576.0,
            shaped_rows,
            shaped_secs,
            rate(shaped_rows, shaped_secs),
            rate(vscc_rows, vscc_secs) / rate(shaped_rows, shaped_secs)
        );
        println!(
            "  CPU: vscc etl import {:.1} s + ClickHouse {:.1} s; floor: clickhouse-client {:.1} s + ClickHouse {:.1} s (2 cores)",
            vscc.cpu_secs, vscc_ch_cpu, shaped_run.cpu_secs, shaped_ch_cpu
        );
        let _ = std::fs::remove_file(&file);
        Ok::<_, anyhow::Error>(())
    }
    .await;
    env.stop().await;
    result
}
