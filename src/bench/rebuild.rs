//! `vscc bench rebuild`: the time to rebuild the live state from N stored records — what
//! start-up and a changed metric definition both do — beside the floor of that work on this
//! machine: reading the same rows out of ClickHouse without applying them. And the memory the
//! rebuilt state holds, per node × metric.

use std::sync::Arc;
use std::time::Instant;

use super::{workload::Workload, BenchEnv};
use crate::config::Settings;
use crate::domain::record::EventRow;
use crate::reference::{self, DistrictMap};
use crate::store::insert::insert_events;
use crate::store::Store;
use crate::wire::events::validate;

pub struct RebuildBench {
    pub records: usize,
    /// Of the records, this share (in percent) corrected once: each gets a cancelling row
    /// and a new version (a day earlier) in the store.
    pub corrected_percent: u32,
    /// Of the stored rows, this share (percent) came after the checkpoint a start loads.
    pub after_checkpoint_percent: u32,
    /// Internal: one measured phase in a process of its own.
    pub phase: Option<String>,
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

pub async fn run(settings: &Settings, opts: RebuildBench) -> anyhow::Result<()> {
    if let Some(phase) = &opts.phase {
        return run_phase(settings, phase).await;
    }
    let tree = Arc::new(reference::load_org_tree(
        &settings.reference.divisions_dir,
        &settings.org.region,
    )?);
    let map = DistrictMap::load(
        &settings.reference.boundaries_dir,
        &tree,
        settings.reference.simplify_tolerance_deg,
    )?;
    let catalogue = Arc::new(crate::dashboards::load_catalogue(&settings.catalogue)?);
    let env = BenchEnv::start(settings, "rebuild").await?;
    let store = Store::new(&env.clickhouse_url, "default", "", "bench_rebuild")?;
    store.migrate().await?;
    let n = opts.records;

    // Load: the workload's mix of every kind over three years, straight into `events`.
    let bar = indicatif::ProgressBar::new(n as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("loading {bar:40} {pos}/{len} records {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut workload =
        Workload::new(&tree, 7, 3 * 365, "rb", n / 40 + 1).with_kinds(&tree, &catalogue.kinds);
    let now = time::OffsetDateTime::now_utc();
    let mut seq = 0u64;
    let (mut loaded, mut corrected) = (0usize, 0u64);
    // Every k-th record corrected (k = 100 / percent).
    let every = (opts.corrected_percent > 0)
        .then(|| (100 / opts.corrected_percent.min(100)).max(1) as usize);
    while loaded < n {
        let chunk = (n - loaded).min(500_000);
        let mut rows: Vec<EventRow> = Vec::with_capacity(chunk + chunk / 10);
        for _ in 0..chunk {
            let e = workload.next_event();
            let mut r = validate(&e, &catalogue.kinds, &tree, &map, now, "bench")
                .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message()))?;
            seq += 1;
            loaded += 1;
            r.seq = seq;
            if every.is_some_and(|k| loaded % k == 0) {
                // Corrected: the version replaced, cancelled, and the new one a day earlier.
                let mut cancel = r.cancelling("bench", "bench", r.received_at);
                seq += 1;
                cancel.seq = seq;
                let mut new = r.clone();
                seq += 1;
                new.seq = seq;
                new.version = 2;
                new.at = r.at.saturating_sub(86_400);
                rows.push(r);
                rows.push(cancel);
                rows.push(new);
                corrected += 1;
            } else {
                rows.push(r);
            }
        }
        insert_events(&store, &rows).await?;
        bar.inc(chunk as u64);
    }
    bar.finish_with_message("stored");
    let _ = store
        .client()
        .query("OPTIMIZE TABLE events FINAL")
        .execute()
        .await;

    // Each measured phase runs in a process of its own: what the load left in the allocator's
    // pool would otherwise hide the memory the rebuilt state takes.
    // The floor runs before and after (the first read also warms the page cache); the faster
    // one counts.
    let at_seq = seq - seq * u64::from(opts.after_checkpoint_percent.min(100)) / 100;
    let checkpoint = (env.dir.join("checkpoints"), at_seq);
    let first = phase_in_child(&env.clickhouse_url, "read", &checkpoint).await?;
    let rebuilt = phase_in_child(&env.clickhouse_url, "apply", &checkpoint).await?;
    let second = phase_in_child(&env.clickhouse_url, "read", &checkpoint).await?;
    // A start as the server makes it (state and ids seen), replaying every record up to the
    // checkpoint's position, which then writes it; and a start from it.
    let full = phase_in_child(&env.clickhouse_url, "start", &checkpoint).await?;
    let resumed = phase_in_child(&env.clickhouse_url, "resume", &checkpoint).await?;
    eprintln!(
        "floor runs: {:.2} s before, {:.2} s after the rebuild; the faster is used",
        first.secs, second.secs
    );
    let floor = if second.secs < first.secs {
        second
    } else {
        first
    };
    let figures: usize = tree
        .nodes()
        .map(|(_, node)| {
            catalogue
                .metrics
                .iter()
                .filter(|m| m.applies_to(node.level))
                .count()
        })
        .sum();
    env.stop().await;
    println!(
        "vscc bench rebuild — {n} records in ClickHouse, {corrected} of them corrected ({} %: {} rows stored in all, {} effective), {} metrics, {} org nodes ({figures} node × metric figures)",
        opts.corrected_percent,
        seq,
        rebuilt.records,
        catalogue.metrics.len(),
        tree.len()
    );
    println!("| path | seconds | records/s | × floor |");
    println!("|---|---:|---:|---:|");
    println!(
        "| floor: read the same rows out of ClickHouse the same way (every stored row), nothing applied | {:.2} | {:.0} | 1.00 |",
        floor.secs,
        floor.records as f64 / floor.secs
    );
    println!(
        "| vscc: rebuild the live state (read + apply) | {:.2} | {:.0} | {:.2} |",
        rebuilt.secs,
        rebuilt.records as f64 / rebuilt.secs,
        floor.secs / rebuilt.secs
    );
    println!(
        "| start as the server makes it: replay every row up to the checkpoint (live state and ids seen) | {:.2} | {:.0} | {:.2} |",
        full.secs,
        full.records as f64 / full.secs,
        floor.secs / full.secs
    );
    println!(
        "| start from the checkpoint: read it ({:.2} s), replay the {} rows after it ({} %) | {:.2} | — | {:.2} |",
        resumed.checkpoint_secs,
        resumed.records,
        opts.after_checkpoint_percent,
        resumed.secs,
        floor.secs / resumed.secs
    );
    println!(
        "start from the checkpoint: {:.2}× the time of replaying every row (the baseline, same run). Writing the checkpoint: {:.1} MiB in {:.2} s, of which records waited {:.2} s (the state saved under the lock)",
        resumed.secs / full.secs,
        full.checkpoint_bytes as f64 / 1_048_576.0,
        full.checkpoint_secs,
        full.checkpoint_pause_secs
    );
    let mib = |b: u64| b as f64 / 1_048_576.0;
    println!(
        "memory: the rebuilding process grew {:.0} MiB ({:.1} KiB per node × metric figure); reading alone grew it {:.0} MiB",
        mib(rebuilt.rss_growth),
        rebuilt.rss_growth as f64 / 1024.0 / figures.max(1) as f64,
        mib(floor.rss_growth)
    );
    Ok(())
}

/// What one measured phase reports (one JSON line on stdout).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct PhaseReport {
    pub records: u64,
    pub secs: f64,
    /// Resident memory grown during the phase, in bytes.
    pub rss_growth: u64,
    /// `start`: the checkpoint it wrote afterwards (bytes, seconds, records waited); `resume`:
    /// the seconds reading the checkpoint took.
    #[serde(default)]
    pub checkpoint_bytes: u64,
    #[serde(default)]
    pub checkpoint_secs: f64,
    #[serde(default)]
    pub checkpoint_pause_secs: f64,
}

/// Where the `start` phase writes its checkpoint and `resume` reads it.
const CHECKPOINT_DIR_ENV: &str = "VSCC_BENCH_CHECKPOINT_DIR";
/// The `start` phase replays the records up to this seq and checkpoints there; `resume`
/// replays the rest after loading it.
const CHECKPOINT_SEQ_ENV: &str = "VSCC_BENCH_CHECKPOINT_SEQ";

async fn phase_in_child(
    clickhouse_url: &str,
    phase: &str,
    checkpoint: &(std::path::PathBuf, u64),
) -> anyhow::Result<PhaseReport> {
    let out = tokio::process::Command::new(std::env::current_exe()?)
        .args(["bench", "rebuild", "--phase", phase])
        .env("VSCC__CLICKHOUSE__URL", clickhouse_url)
        .env(CHECKPOINT_DIR_ENV, &checkpoint.0)
        .env(CHECKPOINT_SEQ_ENV, checkpoint.1.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await?;
    anyhow::ensure!(out.status.success(), "the {phase} phase failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| anyhow::anyhow!("the {phase} phase reported nothing"))?;
    Ok(serde_json::from_str(line)?)
}

/// One measured phase, against the stored records of a previous `load`: `read` (the floor) or
/// `apply` (the rebuild). Prints its report.
pub async fn run_phase(settings: &Settings, phase: &str) -> anyhow::Result<()> {
    let url = settings
        .clickhouse
        .external_url()
        .ok_or_else(|| anyhow::anyhow!("a phase runs against the load's ClickHouse URL"))?;
    let store = Store::new(url, "default", "", "bench_rebuild")?;
    let tree = Arc::new(reference::load_org_tree(
        &settings.reference.divisions_dir,
        &settings.org.region,
    )?);
    let catalogue = Arc::new(crate::dashboards::load_catalogue(&settings.catalogue)?);
    let before = rss();
    let t = Instant::now();
    let (records, kept) = match phase {
        "read" => {
            // The rebuild's own reading (parallel readers, batches), nothing applied.
            let mut read = 0u64;
            store
                .replay(0, u64::MAX, &[], |rows| {
                    read += rows.iter().filter(|r| r.seq > 0).count() as u64
                })
                .await?;
            (read, None)
        }
        "apply" => {
            let (agg, done) =
                crate::live::rebuild::from_store(&store, tree.clone(), catalogue, u64::MAX, &[])
                    .await?;
            anyhow::ensure!(done.refused == 0, "{} records refused", done.refused);
            (done.records, Some(agg))
        }
        "start" | "resume" => return start_phase(&store, tree, catalogue, phase == "resume").await,
        other => anyhow::bail!("unknown phase {other}: read, apply, start or resume"),
    };
    let report = PhaseReport {
        records,
        secs: t.elapsed().as_secs_f64(),
        rss_growth: rss().saturating_sub(before),
        checkpoint_bytes: 0,
        checkpoint_secs: 0.0,
        checkpoint_pause_secs: 0.0,
    };
    drop(kept);
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// A start as the server makes it (the live state and the ids seen, through the start-up
/// replay): `start` replays every record up to the checkpoint seq and then writes a checkpoint
/// there; `resume` loads that checkpoint and replays the records after it. Prints its report.
async fn start_phase(
    store: &Store,
    tree: Arc<crate::domain::org::OrgTree>,
    catalogue: Arc<crate::domain::catalogue::Catalogue>,
    resume: bool,
) -> anyhow::Result<()> {
    use crate::live::checkpoint::{self, Identity, Position};
    use crate::live::Aggregates;
    let dir = std::path::PathBuf::from(std::env::var(CHECKPOINT_DIR_ENV)?);
    let at_seq: u64 = std::env::var(CHECKPOINT_SEQ_ENV)?.parse()?;
    let identity = Identity::of(catalogue.fingerprint, &tree);
    let live = Arc::new(std::sync::Mutex::new(Aggregates::new(
        tree.clone(),
        catalogue.clone(),
    )));
    let sink: crate::ingest::RecordSink = {
        let live = live.clone();
        Arc::new(move |rows: &[EventRow]| {
            let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
            for r in rows {
                let _ = live.take_in(r);
            }
        })
    };
    let before = rss();
    let t = Instant::now();
    let mut read_secs = 0.0;
    let from = if resume {
        let loaded = checkpoint::read_newest(&dir, &identity)
            .ok_or_else(|| anyhow::anyhow!("no checkpoint in {} fits", dir.display()))?;
        let mut state = Aggregates::new(tree.clone(), catalogue.clone());
        state
            .load_parts(&loaded.part_slices())
            .map_err(|e| anyhow::anyhow!("the checkpoint does not load: {e}"))?;
        let ids = crate::ingest::IdSet::from_slots(loaded.id_slots, loaded.ids as usize)
            .ok_or_else(|| anyhow::anyhow!("the checkpoint's ids are malformed"))?;
        read_secs = t.elapsed().as_secs_f64();
        let slot = live.clone();
        Some(crate::ingest::Resume {
            upto_seq: loaded.position.upto_seq,
            imports: loaded.position.imports,
            ids,
            install: Box::new(move || *slot.lock().unwrap_or_else(|p| p.into_inner()) = state),
        })
    } else {
        None
    };
    let upto = if resume { u64::MAX } else { at_seq };
    let (ids, started) = crate::ingest::rebuild(store, upto, &[], &sink, from).await?;
    anyhow::ensure!(
        started.checkpoint_seq.is_some() == resume,
        "the checkpoint was not used"
    );
    let secs = t.elapsed().as_secs_f64();
    let rss_growth = rss().saturating_sub(before);
    let (mut checkpoint_bytes, mut checkpoint_secs, mut checkpoint_pause_secs) =
        (0, read_secs, 0.0);
    if !resume {
        let t = Instant::now();
        let parts = live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .save_parts()
            .map_err(|e| anyhow::anyhow!("saving the state: {e}"))?;
        checkpoint_pause_secs = t.elapsed().as_secs_f64();
        let position = Position {
            upto_seq: at_seq,
            imports: Vec::new(),
        };
        let (_, bytes) = checkpoint::write(
            &dir,
            identity,
            &position,
            &parts,
            ids.slots(),
            ids.len() as u64,
        )?;
        checkpoint_bytes = bytes;
        checkpoint_secs = t.elapsed().as_secs_f64();
    }
    let report = PhaseReport {
        records: started.replayed,
        secs,
        rss_growth,
        checkpoint_bytes,
        checkpoint_secs,
        checkpoint_pause_secs,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
