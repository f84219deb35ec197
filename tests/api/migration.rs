//! The store's migration to one generic row shape (0010): a store as the previous release left
//! it — typed columns per field — is migrated at start-up, keeps every row, and gives every
//! figure it gave before.

use crate::helpers as common;

use common::{compared_with_sql, spawn_app, spawn_app_with, test_settings};
use vscc::Store;

/// The previous release's `events` row, typed, from today's generic one: the reverse of what
/// 0010 does, written independently of it.
const AS_THE_PREVIOUS_RELEASE_WROTE_IT: &str = "
    INSERT INTO {old}.events (seq, id, kind, org, district, at, received_at, source, lon, lat,
        staff_id, class_id, appeal_id, person_id, veteran, demonstration, stars,
        approved_posts, filled_posts, headcount, data)
    SELECT seq, id, kind, org, district, at, received_at, source, lon, lat,
        if(kind IN ('staff.hired', 'training.attended'), subject, '') AS staff_id,
        if(kind = 'training.class_held', subject, visitParamExtractString(data, 'class_id')) AS class_id,
        if(startsWith(kind, 'appeal.'), subject, '') AS appeal_id,
        if(kind IN ('veteran.registered', 'archive.completed'), subject, '') AS person_id,
        toUInt8(num_values[indexOf(num_keys, 'veteran')]) AS veteran,
        toUInt8(num_values[indexOf(num_keys, 'demonstration')]) AS demonstration,
        toUInt8(num_values[indexOf(num_keys, 'stars')]) AS stars,
        num_values[indexOf(num_keys, 'approved_posts')] AS approved_posts,
        num_values[indexOf(num_keys, 'filled_posts')] AS filled_posts,
        num_values[indexOf(num_keys, 'headcount')] AS headcount,
        data
    FROM {new}.events";

#[tokio::test]
async fn a_store_of_the_typed_schema_migrates_keeping_every_row_and_every_figure() {
    typed_store_migrates(false).await;
}

/// A process that died after 0010's rename, before recording it: the next start undoes the
/// rename and runs 0010 again — every row once, every figure as before.
#[tokio::test]
async fn a_0010_cut_off_after_its_rename_is_run_again_at_the_next_start() {
    typed_store_migrates(true).await;
}

async fn typed_store_migrates(cut_off_after_rename: bool) {
    // Figures of a mix of every kind, as the API took them.
    let before = spawn_app().await;
    // The previous release knew the contract's eleven kinds only.
    let events = vscc::Workload::new(&before.state.tree, 15, 400, "mig", 751).events(3000);
    for chunk in events.chunks(1000) {
        let res = before.post_events(&serde_json::json!(chunk)).await;
        assert_eq!(res.status(), 200);
    }
    before.wait_landed().await;
    let figures_before = before.state.hub.all_current();
    let new_db = before.settings.clickhouse.database.clone();
    before.stop().await;

    // A store as the previous release left it: migrations up to 0009, its rows typed.
    let mut settings = test_settings();
    let old_db = settings.clickhouse.database.clone();
    let old = Store::new(&settings.clickhouse.url, "default", "", &old_db).unwrap();
    old.migrate_until(9).await.unwrap();
    let columns: Vec<String> = old
        .client()
        .query("SELECT name FROM system.columns WHERE database = ? AND table = 'events'")
        .bind(&old_db)
        .fetch_all()
        .await
        .unwrap();
    assert!(columns.contains(&"staff_id".to_string()), "{columns:?}");
    old.client()
        .query(
            &AS_THE_PREVIOUS_RELEASE_WROTE_IT
                .replace("{old}", &old_db)
                .replace("{new}", &new_db),
        )
        .execute()
        .await
        .unwrap();
    let typed: u64 = old
        .client()
        .query("SELECT count() FROM events")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(typed, events.len() as u64);

    if cut_off_after_rename {
        // 0010's statements ran, its record did not.
        let sql = vscc::MIGRATIONS
            .iter()
            .find(|m| m.version == 10)
            .unwrap()
            .sql;
        for statement in sql.split(';').map(str::trim).filter(|s| {
            s.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
        }) {
            old.client().query(statement).execute().await.unwrap();
        }
        let generic: u64 = old
            .client()
            .query("SELECT count() FROM system.columns WHERE database = ? AND table = 'events' AND name = 'subject'")
            .bind(&old_db)
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(generic, 1, "the rename happened");
    }
    // Start-up migrates it; nothing is lost and every figure is what it was.
    settings.ingest.spool_dir = settings.ingest.spool_dir.with_extension("after");
    let after = spawn_app_with(settings).await;
    let (rows, ids): (u64, u64) = after
        .store()
        .client()
        .query("SELECT count(), uniqExact(id) FROM events")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((rows, ids), (typed, typed));
    let kept: u64 = after
        .store()
        .client()
        .query("SELECT count() FROM events_typed_0009")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(kept, typed, "the typed table is kept beside");
    let figures_after = after.state.hub.all_current();
    assert_eq!(figures_after.len(), figures_before.len());
    let mut compared = 0;
    for ((code, before), (code_after, after_figures)) in figures_before.iter().zip(&figures_after) {
        assert_eq!(code, code_after);
        for ((metric, a), (metric_after, b)) in before.iter().zip(after_figures) {
            assert_eq!(metric, metric_after);
            assert_eq!(
                (a.num, a.den, a.value, a.status, a.overdue, &a.extras),
                (b.num, b.den, b.value, b.status, b.overdue, &b.extras),
                "{code} {metric}"
            );
            compared += 1;
        }
    }
    assert!(compared > 3000, "{compared} figures compared");
    compared_with_sql(&after, &figures_after, after.state.hub.now()).await;
    after.stop().await;
}

/// An analyst's scope database made before 0011 (its copy of `metric_snapshots` without the
/// `overdue` column, and the view filling it) is rebuilt by the migration's first use: the
/// analyst reads that day's overdue counts, equal to vscc's own table.
#[tokio::test]
async fn an_analysts_scope_database_made_before_0011_gets_the_overdue_counts() {
    let tree = spawn_app().await.state.tree.clone();
    let mut settings = test_settings();
    let db = settings.clickhouse.database.clone();
    let old = Store::new(&settings.clickhouse.url, "default", "", &db).unwrap();
    old.migrate_until(10).await.unwrap();
    let nanshan = tree.get("440305").unwrap();
    let sdb = vscc::ensure_scope_database(&old, &tree, nanshan)
        .await
        .unwrap();
    let copied: Vec<String> = old
        .client()
        .query("SELECT name FROM system.columns WHERE database = ? AND table = 'metric_snapshots'")
        .bind(&sdb)
        .fetch_all()
        .await
        .unwrap();
    assert!(
        !copied.is_empty() && !copied.contains(&"overdue".to_string()),
        "{copied:?}"
    );

    settings.ingest.spool_dir = settings.ingest.spool_dir.with_extension("0011");
    let app = spawn_app_with(settings).await;
    let mut events = vscc::Workload::new(&app.state.tree, 15, 400, "m11", 7).events(3000);
    // Three appeals in 南山 left unanswered for 20 days: overdue to be accepted.
    let opened = (time::OffsetDateTime::now_utc() - time::Duration::days(20))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    for i in 0..3 {
        events.push(
            serde_json::json!({"id": format!("m11-late-{i}"), "kind": "appeal.received",
            "org": "440305", "at": opened, "data": {"appeal_id": format!("M11-{i}")}}),
        );
    }
    for chunk in events.chunks(1000) {
        assert_eq!(
            app.post_events(&serde_json::json!(chunk)).await.status(),
            200
        );
    }
    let ran = app.post_empty("/api/v1/jobs/snapshots").await;
    assert_eq!(ran.status(), 200);
    let (rows, overdue): (u64, i64) = app
        .store()
        .client()
        .query(
            "SELECT count(), sum(ifNull(overdue, 0)) FROM metric_snapshots FINAL \
             WHERE metric = 'open_appeals' AND startsWith(node, '440305')",
        )
        .fetch_one()
        .await
        .unwrap();
    assert!(rows > 0 && overdue > 0, "{rows} rows, {overdue} overdue");
    let analyst = app.user_token("nanshan-analyst", "analyst", "440305").await;
    let (status, answer) = app
        .query(
            &analyst,
            serde_json::json!({"sql": "SELECT count() AS n, sum(ifNull(overdue, 0)) AS o \
                FROM metric_snapshots WHERE metric = 'open_appeals'"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let row = &answer["data"][0];
    assert_eq!(
        row[0]
            .as_str()
            .map(|s| s.parse::<u64>().unwrap())
            .or(row[0].as_u64()),
        Some(rows),
        "{answer}"
    );
    assert_eq!(
        row[1]
            .as_str()
            .map(|s| s.parse::<i64>().unwrap())
            .or(row[1].as_i64()),
        Some(overdue),
        "{answer}"
    );
    app.stop().await;
}
