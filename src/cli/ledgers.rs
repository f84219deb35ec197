//! `vscc etl import`: ledger files into the store, with a progress bar per file.

use anyhow::Context;

use super::*;

pub(super) async fn import_ledgers(
    settings: &Settings,
    files: Vec<PathBuf>,
    family: Option<String>,
    rejects: Option<PathBuf>,
    chunk_rows: usize,
    withdraw_missing: bool,
) -> anyhow::Result<()> {
    use crate::batch::ledger::{import, Family};
    let kinds = std::sync::Arc::new(crate::dashboards::load_catalogue(&settings.catalogue)?.kinds);
    let family = match family {
        Some(f) => Some(Family::parse(&f, &kinds).with_context(|| {
            let names: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
            format!(
                "--family {f}: one of {}, or a record kind no built-in ledger keeps",
                names.join(", ")
            )
        })?),
        None => None,
    };
    let tree = std::sync::Arc::new(reference::load_org_tree(
        &settings.reference.divisions_dir,
        &settings.org.region,
    )?);
    let map = crate::reference::DistrictMap::load(
        &settings.reference.boundaries_dir,
        &tree,
        settings.reference.simplify_tolerance_deg,
    )?;
    let locator: std::sync::Arc<dyn crate::domain::record::Locator + Send + Sync> =
        std::sync::Arc::new(map);
    let (store, managed) = crate::app::connect_store_shared(settings).await?;
    let result = async {
        store.migrate().await?;
        let mut summaries = Vec::new();
        for file in &files {
            let bar = std::io::stderr().is_terminal().then(|| {
                let bar = indicatif::ProgressBar::new(1);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} {bar:40} {percent:>3}% {elapsed} (eta {eta})",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar.set_message(file.display().to_string());
                bar
            });
            let progress_bar = bar.clone();
            let options = import::ImportOptions {
                family,
                reject_dir: rejects.clone(),
                chunk_rows,
                withdraw_missing,
                by: format!("cli:{}", std::env::var("USER").unwrap_or_default()),
                progress: Some(Box::new(move |done, total| {
                    if let Some(b) = &progress_bar {
                        b.set_length(total.max(1));
                        b.set_position(done);
                    }
                })),
                ..Default::default()
            };
            let summary =
                import::import_file(&store, kinds.clone(), &tree, locator.clone(), file, options)
                    .await;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            summaries.push(summary.with_context(|| format!("importing {}", file.display()))?);
        }
        Ok::<_, anyhow::Error>(summaries)
    }
    .await;
    if let Some(mut m) = managed {
        m.stop().await;
    }
    let summaries = result?;
    println!(
        "{:<11} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8}  file",
        "ledger", "rows", "accepted", "duplicate", "corrected", "withdrawn", "rejected", "seconds"
    );
    for s in &summaries {
        println!(
            "{:<11} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8.1}  {}",
            s.family,
            s.rows,
            s.accepted,
            s.duplicates,
            s.corrected,
            s.withdrawn,
            s.rejected,
            s.seconds,
            s.file
        );
    }
    for s in &summaries {
        if let Some(file) = &s.changes_file {
            println!(
                "{}: {} corrected records, changes in {file}",
                s.file, s.corrected
            );
            for c in s.changes.iter().take(5) {
                println!(
                    "  row {} {} {}: '{}' → '{}'",
                    c.row, c.id, c.column, c.old, c.new
                );
            }
        }
    }
    for s in summaries
        .iter()
        .filter(|s| s.rejected > 0 || !s.ignored_columns.is_empty())
    {
        if let Some(file) = &s.reject_file {
            println!("{}: {} rejected rows in {file}", s.file, s.rejected);
            for r in s.rejects.iter().take(5) {
                println!("  row {} {} '{}': {}", r.row, r.column, r.value, r.reason);
            }
        }
        if !s.ignored_columns.is_empty() {
            println!(
                "{}: columns ignored: {}",
                s.file,
                s.ignored_columns.join(", ")
            );
        }
    }
    Ok(())
}
