//! The daily brief (每日简报): one day's figures as the nightly snapshots kept them — so a past
//! day's brief shows that day's figures, not today's — beside the day before, and the alerts
//! of that day.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use time::Date;

use crate::store::{Store, StoreError};

/// `[brief]`: where the nightly PDFs go and what prints them.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BriefSettings {
    pub dir: PathBuf,
    /// The Chromium binary (a name on PATH or a path); empty: no PDFs.
    pub chromium: String,
    pub print_timeout_secs: u64,
}

impl BriefSettings {
    /// The PDF of `day`'s brief (whether or not it has been printed).
    pub fn pdf_path(&self, day: Date) -> PathBuf {
        self.dir.join(format!("brief-{day}.pdf"))
    }

    /// The Chromium binary when one is configured and can be found.
    pub fn printer(&self) -> Option<PathBuf> {
        let name = self.chromium.trim();
        if name.is_empty() {
            return None;
        }
        if name.contains('/') {
            return Path::new(name).is_file().then(|| PathBuf::from(name));
        }
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
    }
}

/// Prints the brief page at `url` to `out` (A4, as its print CSS lays it out) with headless
/// Chromium, through a file beside it renamed into place, so that a reader never gets half a
/// PDF. Answers the PDF's size.
pub async fn print_pdf(
    chromium: &Path,
    url: &str,
    out: &Path,
    timeout: Duration,
) -> anyhow::Result<u64> {
    let dir = out.parent().context("the PDF path has no folder")?;
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("creating {}", dir.display()))?;
    // A profile of its own: nothing of the user's, nothing kept (the page stores its token).
    let profile = dir.join(format!(".chromium-{}", uuid::Uuid::new_v4().simple()));
    let partial = out.with_extension("pdf.partial");
    let mut command = tokio::process::Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--no-pdf-header-footer",
            "--hide-scrollbars",
            // Virtual time runs the page's scripts and waits for its API calls to land.
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--print-to-pdf={}", partial.display()))
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let run = tokio::time::timeout(timeout, command.output()).await;
    let _ = tokio::fs::remove_dir_all(&profile).await;
    let run = run
        .with_context(|| format!("Chromium did not print within {} s", timeout.as_secs()))?
        .with_context(|| format!("starting {}", chromium.display()))?;
    let head = tokio::fs::read(&partial).await.unwrap_or_default();
    if !run.status.success() || !head.starts_with(b"%PDF") {
        let _ = tokio::fs::remove_file(&partial).await;
        let said = String::from_utf8_lossy(&run.stderr);
        anyhow::bail!(
            "Chromium did not print the brief ({}): {}",
            run.status,
            said.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
        );
    }
    tokio::fs::rename(&partial, out)
        .await
        .with_context(|| format!("moving the PDF to {}", out.display()))?;
    Ok(head.len() as u64)
}

/// One node's snapshot of one metric on one day.
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct SnapshotRow {
    /// Days since 1970-01-01.
    pub day: u16,
    pub node: String,
    pub metric: String,
    pub value: Option<f64>,
    pub status: String,
    /// Cases metrics: open cases past a deadline.
    pub overdue: Option<i64>,
}

/// One alert (rule, node) as a day saw it: whether it started firing that day, and whether it
/// was still open (firing, notified, acknowledged …) at the day's end.
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct AlertDayRow {
    pub rule: String,
    pub node: String,
    pub severity: String,
    pub fired: u8,
    pub open_at_end: u8,
}

fn iso(day: Date) -> String {
    day.to_string()
}

/// The snapshots of `nodes` on `day` and the day before.
pub async fn snapshots(
    store: &Store,
    day: Date,
    nodes: &[String],
) -> Result<Vec<SnapshotRow>, StoreError> {
    let before = day.previous_day().unwrap_or(day);
    Ok(store
        .client()
        .query(&format!(
            "SELECT day, node, metric, value, status, overdue FROM metric_snapshots FINAL \
             WHERE day IN (toDate(?), toDate(?)) AND node IN {} ORDER BY day, node, metric",
            super::snapshots::in_list(nodes)?
        ))
        .bind(iso(day))
        .bind(iso(before))
        .with_setting("wait_end_of_query", "1")
        .fetch_all()
        .await?)
}

/// The alerts that fired on `day` (Asia/Shanghai, the column's zone) or were open at its end:
/// the last state recorded up to the end of the day says which. At most 20,000.
/// Records of `scope`'s subtree corrected and withdrawn on `day` (received that day): the
/// brief says so, and that snapshots of days before keep what was known then.
pub async fn corrections_on(
    store: &Store,
    day: Date,
    scope: &str,
) -> Result<(u64, u64), StoreError> {
    let (versions, cancelled): (u64, u64) = store
        .client()
        .query(
            "SELECT countIf(sign = 1 AND version > 1), countIf(sign = -1) FROM events \
             WHERE toDate(received_at) = toDate(?) \
             AND org IN (SELECT code FROM org_nodes WHERE has(ancestors, ?))",
        )
        .bind(iso(day))
        .bind(scope)
        .fetch_one()
        .await?;
    // A correction is one new version and one cancelled; a withdrawal only the latter.
    Ok((versions, cancelled.saturating_sub(versions)))
}

/// The tasks' day in a subtree (督办): assignments its units were given, of how many tasks,
/// those they submitted and those accepted (销号) — by the records dated that day.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TasksDay {
    pub assigned: u64,
    pub tasks: u64,
    pub submitted: u64,
    pub accepted: u64,
}

pub async fn tasks_on(store: &Store, day: Date, scope: &str) -> Result<TasksDay, StoreError> {
    use crate::domain::task::{Step, ISSUED_KIND};
    let (assigned, tasks, submitted, accepted): (u64, u64, u64, u64) = store
        .client()
        .query(
            "SELECT countIf(kind = ?), uniqExactIf(splitByChar('/', subject)[1], kind = ?),              countIf(kind = ?), countIf(kind = ?) FROM events              WHERE kind IN (?, ?, ?) AND sign = 1 AND toDate(at) = toDate(?)              AND org IN (SELECT code FROM org_nodes WHERE has(ancestors, ?))",
        )
        .bind(ISSUED_KIND)
        .bind(ISSUED_KIND)
        .bind(Step::Submit.kind())
        .bind(Step::Accept.kind())
        .bind(ISSUED_KIND)
        .bind(Step::Submit.kind())
        .bind(Step::Accept.kind())
        .bind(iso(day))
        .bind(scope)
        .fetch_one()
        .await?;
    Ok(TasksDay {
        assigned,
        tasks,
        submitted,
        accepted,
    })
}

/// One scheduled kind's reports of `day`'s period in a subtree: the units (by level) whose
/// report was not dated by the due day, once that day has passed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LateReports {
    pub kind: String,
    pub label_zh: String,
    /// month | quarter | year
    pub every: &'static str,
    pub due: String,
    /// Level → units not reported on time (absent: none).
    pub late: std::collections::BTreeMap<String, u64>,
}

/// For each scheduled kind whose due day in `day`'s period has passed by `day`: the units of
/// `scope`'s subtree, by level, without a report dated in the period by the due day — as the
/// effective records say now. Kind and level names come from the definitions, never input.
pub async fn late_reports(
    store: &Store,
    kinds: &crate::domain::kinds::Kinds,
    day: Date,
    scope: &str,
) -> Result<Vec<LateReports>, StoreError> {
    let day_start_unix = |d: Date| -> u32 {
        d.midnight()
            .assume_offset(crate::domain::time::SHANGHAI)
            .unix_timestamp()
            .clamp(0, i64::from(u32::MAX)) as u32
    };
    let quoted = |level: &str| format!("'{level}'");
    let imports = crate::store::counted_imports_param(&store.ok_imports().await?);
    let mut out = Vec::new();
    for def in kinds.all() {
        let Some(schedule) = &def.report else {
            continue;
        };
        let due = schedule.due(day);
        if day <= due {
            continue;
        }
        let (first, _) = schedule.every.bounds(day);
        let levels: Vec<String> = schedule.levels.iter().map(|l| quoted(l.as_str())).collect();
        let rows: Vec<(String, u64)> = store
            .client()
            .query(&format!(
                "SELECT level, count() FROM org_nodes WHERE has(ancestors, ?) AND level IN ({}) \
                 AND code NOT IN (SELECT org FROM events WHERE kind = ? \
                   AND toUInt32(at) >= ? AND toUInt32(at) < ? AND {}) \
                 GROUP BY level",
                levels.join(", "),
                crate::store::EFFECTIVE_EVENTS
            ))
            .bind(scope)
            .bind(def.kind.as_str())
            .bind(day_start_unix(first))
            .bind(day_start_unix(due.next_day().unwrap_or(due)))
            .bind(imports.clone())
            .bind(imports.clone())
            .fetch_all()
            .await?;
        out.push(LateReports {
            kind: def.kind.as_str().to_string(),
            label_zh: def.label_zh.clone(),
            every: schedule.every.as_str(),
            due: due.to_string(),
            late: rows.into_iter().filter(|(_, n)| *n > 0).collect(),
        });
    }
    Ok(out)
}

pub async fn alert_day(store: &Store, day: Date) -> Result<Vec<AlertDayRow>, StoreError> {
    Ok(store
        .client()
        .query(
            "SELECT any(rule), any(node), argMax(severity, at), \
             toUInt8(countIf(state = 'firing' AND toDate(at) = toDate(?)) > 0) AS fired, \
             toUInt8(argMax(state, at) IN ('firing', 'notified', 'acknowledged', 'unacknowledged', 'escalated', 'silenced')) AS open_at_end \
             FROM alert_events WHERE toDate(at) <= toDate(?) \
             GROUP BY fingerprint HAVING fired = 1 OR open_at_end = 1 \
             ORDER BY fingerprint LIMIT 20000",
        )
        .bind(iso(day))
        .bind(iso(day))
        .with_setting("wait_end_of_query", "1")
        .fetch_all()
        .await?)
}

/// The first day the alert engine recorded anything (`None`: never): a day before it has no
/// alert record, which is not the same as a day without alerts.
pub async fn alerts_since(store: &Store) -> Result<Option<Date>, StoreError> {
    let first: Vec<String> = store
        .client()
        .query("SELECT toString(toDate(min(at))) FROM alert_events HAVING count() > 0")
        .fetch_all()
        .await?;
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Ok(first.first().and_then(|d| Date::parse(d, &fmt).ok()))
}

/// The days a brief can be read for (days with snapshots), newest first.
pub async fn days(store: &Store, limit: u64) -> Result<Vec<String>, StoreError> {
    Ok(store
        .client()
        .query("SELECT toString(day) FROM metric_snapshots GROUP BY day ORDER BY day DESC LIMIT ?")
        .bind(limit)
        .fetch_all()
        .await?)
}
