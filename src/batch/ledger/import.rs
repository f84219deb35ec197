//! Importing a ledger file: read it in chunks ([`super::read`]), clean each chunk with
//! [`super::normalize`], check every row as the ingest API checks a record ([`super::check`]),
//! write rejects to a CSV beside the summary, load the good rows into `events`, and record the
//! run ([`super::runs`]).
//!
//! Idempotent like the ingest API: a row's id is its 记录编号 when the ledger has one, else a
//! hash of what the row says once cleaned (family, org, date and the family's own fields), so a
//! re-imported file — or the same data re-typed in Excel — adds nothing. Memory stays bounded:
//! one chunk of rows at a time, plus the ids of earlier imports.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::OffsetDateTime;

use super::check::{RejectRow, RowChecker};
use super::corrections::{corrections, withdraw_missing, ChangeRow, Corrections, CANCEL_OFFSET};
pub use super::error::{file_error, ImportError};
use super::normalize::{normalize, OrgLookup};
use super::read::{open, Source};
use super::runs::{imported_ids, record, ImportRow};
use super::{Family, Field};
use crate::domain::kinds::Kinds;
use crate::domain::org::NodeIdx;
use crate::domain::record::{import_seq_base, EventRow, Locator};
use crate::domain::OrgTree;
use crate::store::Store;

/// Checked rows are inserted this many at a time (several chunks), one insert running while
/// the next rows are checked. ClickHouse makes a part of each insert and merges small parts
/// again in the background: with an insert per 200,000-row chunk it spent 28 CPU-s on a 10 M-row
/// import (`vscc bench import`), with these 16–18, and the import took 23–25 s instead of 29.
/// The cost is memory: the rows of two inserts (≈ 0.5 KiB a row).
const INSERT_ROWS: usize = 1 << 19;

/// The insert of the rows checked so far, if any, running while the next ones are checked;
/// at most one at a time (each waits for the one before). Rows are sorted by the table's key
/// (see [`crate::store::insert::insert_imported`]).
#[derive(Default)]
struct Inserts {
    running: Option<tokio::task::JoinHandle<Result<u64, ImportError>>>,
}

impl Inserts {
    /// Starts inserting `rows` once the insert before has ended; the rows that one inserted.
    async fn start(&mut self, store: &Store, rows: Vec<EventRow>) -> Result<u64, ImportError> {
        let before = self.finish().await?;
        if !rows.is_empty() {
            let store = store.clone();
            self.running = Some(tokio::spawn(async move {
                let started = std::time::Instant::now();
                crate::store::insert::insert_imported(&store, &rows).await?;
                tracing::debug!(
                    rows = rows.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "rows inserted"
                );
                Ok(rows.len() as u64)
            }));
        }
        Ok(before)
    }

    /// Waits for the running insert; the rows it inserted.
    async fn finish(&mut self) -> Result<u64, ImportError> {
        match self.running.take() {
            None => Ok(0),
            Some(task) => task
                .await
                .map_err(|e| ImportError::Unexpected(anyhow::anyhow!("insert task: {e}")))?,
        }
    }
}

pub struct ImportOptions {
    /// Which ledger; None: told by the headers.
    pub family: Option<Family>,
    /// Where the reject file goes (default: beside the input).
    pub reject_dir: Option<PathBuf>,
    /// Rows per chunk (memory is proportional to it).
    pub chunk_rows: usize,
    /// Only rows inside this subtree are accepted (the importer's scope).
    pub scope: Option<NodeIdx>,
    /// Who imports (recorded with the run).
    pub by: String,
    /// The name to record (uploads arrive as temporary files).
    pub display_name: Option<String>,
    /// Called with (rows done, bytes or rows of the whole) after every chunk.
    pub progress: Option<Box<dyn Fn(u64, u64) + Send>>,
    /// The file is the whole truth of its family at the orgs it names: records of earlier
    /// imports it no longer holds are withdrawn.
    pub withdraw_missing: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            family: None,
            reject_dir: None,
            chunk_rows: 200_000,
            scope: None,
            by: String::new(),
            display_name: None,
            progress: None,
            withdraw_missing: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ImportSummary {
    pub import_no: u32,
    pub file: String,
    pub family: String,
    pub rows: u64,
    /// New records loaded.
    pub accepted: u64,
    /// Rows already imported before (or twice in this file): no change.
    pub duplicates: u64,
    /// Rows whose 记录编号 an earlier import loaded, with other content: corrections of
    /// those records.
    pub corrected: u64,
    /// Records of earlier imports withdrawn because the file no longer holds them (only with
    /// `withdraw_missing`).
    pub withdrawn: u64,
    /// The change report (CSV: 行号, 记录编号, 列, 原值, 新值), when any row corrected a record.
    pub changes_file: Option<String>,
    /// The first changes, for a quick look.
    pub changes: Vec<ChangeRow>,
    pub rejected: u64,
    /// The reject file (CSV: 行号, 列, 内容, 原因), when any row was rejected.
    pub reject_file: Option<String>,
    /// Columns the importer did not recognise (ignored).
    pub ignored_columns: Vec<String>,
    /// The first rejects, for a quick look.
    pub rejects: Vec<RejectRow>,
    pub seconds: f64,
}

/// One chunk, read, cleaned and checked.
struct Prepared {
    rows: Vec<EventRow>,
    rejects: Vec<RejectRow>,
    height: u64,
    /// (done, total) in bytes (CSV) or rows (Excel).
    progress: (u64, u64),
}

struct Parser {
    source: Source,
    checker: RowChecker,
    fields: Vec<Field>,
    chunk_rows: usize,
    import_seq: u64,
}

impl Parser {
    fn run(mut self, tx: tokio::sync::mpsc::Sender<Result<Prepared, ImportError>>) {
        let lookup = match OrgLookup::new(&self.checker.tree) {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.blocking_send(Err(e.into()));
                return;
            }
        };
        let (mut next_row, mut rows_done) = (2u64, 0u64);
        loop {
            let started = std::time::Instant::now();
            let step = (|| {
                let Some(chunk) =
                    self.source
                        .next_chunk(&self.checker.header, self.chunk_rows, next_row)?
                else {
                    return Ok(None);
                };
                let height = chunk.frame.height() as u64;
                let read_ms = started.elapsed().as_millis() as u64;
                let cleaned = normalize(chunk.frame, &self.fields, &lookup)?;
                let clean_ms = started.elapsed().as_millis() as u64 - read_ms;
                let (mut rows, mut rejects) = (Vec::with_capacity(cleaned.height()), Vec::new());
                self.checker.check_chunk(
                    &cleaned,
                    chunk.first_row,
                    self.import_seq,
                    &mut rows,
                    &mut rejects,
                );
                let check_ms = started.elapsed().as_millis() as u64 - read_ms - clean_ms;
                tracing::debug!(read_ms, clean_ms, check_ms, "chunk phases");
                rows_done += height;
                Ok(Some(Prepared {
                    rows,
                    rejects,
                    height,
                    progress: self.source.progress(rows_done),
                }))
            })();
            match step {
                Ok(Some(p)) => {
                    tracing::debug!(
                        rows = p.height,
                        ms = started.elapsed().as_millis() as u64,
                        "chunk read, cleaned and checked"
                    );
                    next_row += p.height;
                    if tx.blocking_send(Ok(p)).is_err() {
                        return; // the importer gave up
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    }
}

/// One import at a time per process: import numbers are taken as max + 1.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Imports one ledger file; see the module documentation.
pub async fn import_file(
    store: &Store,
    kinds: Arc<Kinds>,
    tree: &Arc<OrgTree>,
    locator: Arc<dyn Locator + Send + Sync>,
    path: &Path,
    options: ImportOptions,
) -> Result<ImportSummary, ImportError> {
    let _one = ONE_AT_A_TIME.lock().await;
    let started = std::time::Instant::now();
    let (header, source) = open(path, &kinds)?;
    let fields = header.present();
    let family = match options.family {
        Some(f) => f,
        None => Family::detect(&fields, &header.names, &kinds).ok_or_else(|| {
            file_error(
                path,
                format!(
                    "cannot tell which ledger this is from its headers ({}); pass the family",
                    header.names.join(", ")
                ),
            )
        })?,
    };
    let missing_org = ![
        Field::District,
        Field::Street,
        Field::Community,
        Field::OrgCode,
    ]
    .iter()
    .any(|f| fields.contains(f));
    if missing_org || !fields.contains(&Field::Date) {
        return Err(file_error(
            path,
            "a ledger needs an org column (区/街道/社区 or 单位代码) and a date column (e.g. 日期)",
        ));
    }
    let file_name = options.display_name.clone().unwrap_or_else(|| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let format = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();

    let import_no: u32 = store
        .client()
        .query("SELECT toUInt32(max(import_no)) FROM imports")
        .fetch_one::<u32>()
        .await?
        + 1;
    let mut run = ImportRow {
        import_no,
        file: file_name.clone(),
        family: family.name().into(),
        format,
        by: options.by.clone(),
        started: crate::store::now_in_seconds(),
        ended: crate::store::now_in_seconds(),
        rows: 0,
        accepted: 0,
        duplicates: 0,
        rejected: 0,
        outcome: "running".into(),
        error: String::new(),
        version: 1,
        corrected: 0,
        withdrawn: 0,
    };
    record(store, &run).await?;

    let reject_path = options
        .reject_dir
        .clone()
        .unwrap_or_else(|| path.parent().map(Path::to_path_buf).unwrap_or_default())
        .join(format!(
            "{}.rejects.csv",
            Path::new(&file_name)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "import".into())
        ));
    let changes_path = reject_path.with_file_name(format!(
        "{}.changes.csv",
        Path::new(&file_name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "import".into())
    ));
    let header = Arc::new(header);
    let mut inserts = Inserts::default();
    let reason = format!("台账重新导入：{file_name}");
    let kinds_for_changes = kinds.clone();
    let import_seq = import_seq_base(import_no);
    let mut first_changes: Vec<ChangeRow> = Vec::new();
    let mut changes_writer: Option<csv::Writer<std::fs::File>> = None;
    let result = async {
        let mut seen = imported_ids(store).await?;
        // Only with withdraw_missing: the ids and orgs of this file.
        let mut in_file = crate::ingest::log::IdSet::default();
        let mut orgs_in_file = std::collections::BTreeSet::new();
        let mut last_line = 0u64;
        // Reading and cleaning are CPU work (polars wants its own threads, not the async
        // runtime's): a parser thread prepares chunk n+1 while chunk n is inserted. Two chunks
        // in flight at most: memory stays bounded.
        let (tx, mut prepared) = tokio::sync::mpsc::channel::<Result<Prepared, ImportError>>(2);
        let parser = Parser {
            source,
            checker: RowChecker {
                kinds,
                tree: tree.clone(),
                locator,
                family,
                header: header.clone(),
                scope: options.scope,
                now: OffsetDateTime::now_utc(),
            },
            fields: fields.clone(),
            chunk_rows: options.chunk_rows.max(1),
            import_seq: import_seq_base(import_no),
        };
        std::thread::Builder::new()
            .name("ledger-parser".into())
            .spawn(move || parser.run(tx))
            .map_err(|e| ImportError::Unexpected(e.into()))?;
        let mut reject_writer: Option<csv::Writer<std::fs::File>> = None;
        let mut pending: Vec<EventRow> = Vec::new();
        let mut first_rejects = Vec::new();
        while let Some(chunk) = prepared.recv().await {
            let Prepared {
                mut rows,
                mut rejects,
                height,
                progress,
            } = chunk?;
            // A row whose id was seen (an earlier import's, or earlier in this file) may be a
            // correction: what is stored tells.
            let mut known = Vec::new();
            let mut new_rows = Vec::with_capacity(rows.len());
            for mut row in rows.drain(..) {
                let h = crate::ingest::log::id_hash(&row.id);
                last_line = last_line.max(row.seq - import_seq);
                if options.withdraw_missing {
                    in_file.insert(h);
                    orgs_in_file.insert(row.org.clone());
                }
                row.actor.clone_from(&options.by);
                if seen.insert(h) {
                    new_rows.push(row);
                } else {
                    known.push(row);
                }
            }
            pending.append(&mut new_rows);
            if !known.is_empty() {
                let within = |org: &str| match options.scope {
                    None => true,
                    Some(scope) => tree.get(org).is_some_and(|o| tree.is_within(o, scope)),
                };
                let Corrections {
                    rows: mut fixes,
                    changes,
                    unchanged,
                    rejects: theirs,
                } = corrections(
                    store,
                    &kinds_for_changes,
                    known,
                    import_seq,
                    &options.by,
                    &reason,
                    &within,
                )
                .await?;
                rejects.extend(theirs);
                rejects.sort_by_key(|r| r.row);
                run.duplicates += unchanged;
                run.corrected += (fixes.len() / 2) as u64;
                if !changes.is_empty() {
                    let writer = match changes_writer.as_mut() {
                        Some(w) => w,
                        None => {
                            let mut file = std::fs::File::create(&changes_path)
                                .map_err(|e| file_error(&changes_path, e.to_string()))?;
                            file.write_all(&[0xEF, 0xBB, 0xBF])
                                .map_err(|e| ImportError::Unexpected(e.into()))?;
                            let mut w = csv::Writer::from_writer(file);
                            w.write_record(["行号", "记录编号", "列", "原值", "新值"])
                                .map_err(|e| ImportError::Unexpected(e.into()))?;
                            changes_writer.insert(w)
                        }
                    };
                    for c in &changes {
                        writer
                            .write_record([&c.row.to_string(), &c.id, &c.column, &c.old, &c.new])
                            .map_err(|e| ImportError::Unexpected(e.into()))?;
                    }
                    let room = 100usize.saturating_sub(first_changes.len());
                    first_changes.extend(changes.into_iter().take(room));
                }
                pending.append(&mut fixes);
            }
            if pending.len() >= INSERT_ROWS {
                run.accepted += inserts.start(store, std::mem::take(&mut pending)).await?;
            }
            run.rejected += rejects.len() as u64;
            run.rows += height;
            if !rejects.is_empty() {
                let writer = match reject_writer.as_mut() {
                    Some(w) => w,
                    None => {
                        let mut file = std::fs::File::create(&reject_path)
                            .map_err(|e| file_error(&reject_path, e.to_string()))?;
                        // A BOM, so that Excel opens the Chinese text as UTF-8.
                        file.write_all(&[0xEF, 0xBB, 0xBF])
                            .map_err(|e| ImportError::Unexpected(e.into()))?;
                        let mut w = csv::Writer::from_writer(file);
                        w.write_record(["行号", "列", "内容", "原因"])
                            .map_err(|e| ImportError::Unexpected(e.into()))?;
                        reject_writer.insert(w)
                    }
                };
                for r in &rejects {
                    writer
                        .write_record([
                            r.row.to_string(),
                            r.column.clone(),
                            r.value.clone(),
                            r.reason.clone(),
                        ])
                        .map_err(|e| ImportError::Unexpected(e.into()))?;
                }
                first_rejects.extend(
                    rejects
                        .into_iter()
                        .take(100usize.saturating_sub(first_rejects.len())),
                );
            }
            if let Some(report) = &options.progress {
                report(progress.0, progress.1);
            }
        }
        if options.withdraw_missing {
            let mut gone = withdraw_missing(
                store,
                &family.kinds(),
                &orgs_in_file,
                &in_file,
                import_seq + CANCEL_OFFSET + last_line + 1,
                &options.by,
                &format!("台账重新导入时已无此记录：{file_name}"),
            )
            .await?;
            run.withdrawn = gone.len() as u64;
            pending.append(&mut gone);
        }
        // Rows that take back a stored version are not new records.
        let changed_rows = 2 * run.corrected + run.withdrawn;
        run.accepted += inserts.start(store, pending).await?;
        run.accepted += inserts.finish().await?;
        run.accepted = run.accepted.saturating_sub(changed_rows);
        if let Some(mut w) = reject_writer {
            w.flush().map_err(|e| ImportError::Unexpected(e.into()))?;
        }
        if let Some(mut w) = changes_writer.take() {
            w.flush().map_err(|e| ImportError::Unexpected(e.into()))?;
        }
        Ok::<_, ImportError>(first_rejects)
    }
    .await;
    if result.is_err() {
        // Rows an insert still running lands are counted as accepted in the run's record.
        run.accepted += inserts.finish().await.unwrap_or(0);
    }
    run.ended = crate::store::now_in_seconds();
    run.version = 2;
    match result {
        Ok(rejects) => {
            run.outcome = "ok".into();
            record(store, &run).await?;
            tracing::info!(import_no, file = %file_name, family = family.name(), rows = run.rows, accepted = run.accepted,
                duplicates = run.duplicates, corrected = run.corrected, withdrawn = run.withdrawn, rejected = run.rejected, "ledger imported");
            Ok(ImportSummary {
                import_no,
                file: file_name,
                family: family.name().into(),
                rows: run.rows,
                accepted: run.accepted,
                duplicates: run.duplicates,
                corrected: run.corrected,
                withdrawn: run.withdrawn,
                changes_file: (run.corrected > 0).then(|| changes_path.display().to_string()),
                changes: first_changes,
                rejected: run.rejected,
                reject_file: (run.rejected > 0).then(|| reject_path.display().to_string()),
                ignored_columns: header.ignored(),
                rejects,
                seconds: started.elapsed().as_secs_f64(),
            })
        }
        Err(e) => {
            run.outcome = "failed".into();
            run.error = e.to_string();
            if let Err(record_error) = record(store, &run).await {
                tracing::warn!(error = %record_error, import_no, "could not record the failed import");
            }
            Err(e)
        }
    }
}
