//! `vscc simulate`: the simulated Shenzhen as NDJSON, posted to a server, or as ledger files.

use anyhow::Context;

use super::*;

pub(super) async fn simulate(settings: &Settings, args: SimulateArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let tree = reference::load_org_tree(&settings.reference.divisions_dir, &settings.org.region)?;
    let map = crate::reference::DistrictMap::load(
        &settings.reference.boundaries_dir,
        &tree,
        settings.reference.simplify_tolerance_deg,
    )?;
    let until = match &args.until {
        Some(d) => time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
            .with_context(|| format!("--until {d}: expected YYYY-MM-DD"))?,
        None => crate::batch::simulator::today(),
    };
    let kinds = crate::dashboards::load_catalogue(&settings.catalogue)?.kinds;
    if let Some(format) = args.format {
        let out = args
            .out
            .clone()
            .context("--format csv|xlsx writes ledger files: give --out DIR")?;
        let mut sim = crate::batch::simulator::Simulator::new(&tree, &map, args.seed, args.scale)
            .with_kinds(&kinds);
        let mut rows = crate::batch::ledger::write::LedgerRows::new(&tree, args.seed);
        let mut writer = crate::batch::ledger::write::LedgerWriter::new(&out, format)?;
        while let Some((_, events)) = sim.next_day(until) {
            for e in &events {
                if let Some((family, cells)) = rows.row(e) {
                    writer.write(family, &cells)?;
                }
            }
        }
        let total = writer.rows;
        for path in writer.finish()? {
            eprintln!("wrote {}", path.display());
        }
        eprintln!("{total} ledger rows");
        return Ok(());
    }
    match &args.server {
        Some(server) => {
            let token = args
                .token
                .clone()
                .context("--server needs --token (or VSCC_ADMIN_TOKEN)")?;
            super::serve::feed(
                server,
                &token,
                &tree,
                &map,
                &kinds,
                args.seed,
                args.scale,
                until,
                args.live,
                args.rate,
                std::io::stderr().is_terminal(),
            )
            .await
        }
        None => {
            let mut sim =
                crate::batch::simulator::Simulator::new(&tree, &map, args.seed, args.scale)
                    .with_kinds(&kinds);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            while let Some((_, events)) = sim.next_day(until) {
                for e in events {
                    writeln!(out, "{e}")?;
                }
            }
            out.flush()?;
            Ok(())
        }
    }
}
