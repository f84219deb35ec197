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
