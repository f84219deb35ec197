//! The store on a ClickHouse cluster of 2 shards × 2 replicas (ZooKeeper), as `scripts/cluster`
//! runs it: the cluster form of the schema has the single server's tables and columns; records
//! land on their district's shard, on both of its replicas, once; every live figure equals the
//! SQL recomputation read through the Distributed tables; and an analyst's scope database
//! copies its district's rows, on whichever shard they live, including records that arrive
//! after it was made. A vscc configured for one server refuses the cluster's database.

use crate::helpers as common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{sample_events, spawn_app_with, test_settings};
use serde_json::{json, Value};

use crate::ch_cluster::ChCluster;

#[derive(clickhouse::Row, serde::Deserialize)]
struct Column {
    table: String,
    name: String,
    ty: String,
}

/// Every table's columns (name and type, in order), views and bookkeeping left out.
async fn columns(store: &vscc::Store, skip: &[&str]) -> BTreeMap<String, Vec<(String, String)>> {
    let rows: Vec<Column> = store
        .server_client()
        .query(
            "SELECT table, name, type FROM system.columns WHERE database = ? AND table IN \
             (SELECT name FROM system.tables WHERE database = ? \
              AND engine NOT IN ('View', 'MaterializedView'))",
        )
        .bind(store.database())
        .bind(store.database())
        .fetch_all()
        .await
        .unwrap();
    let mut tables: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for c in rows
        .into_iter()
        .filter(|c| !skip.contains(&c.table.as_str()))
    {
        tables.entry(c.table).or_default().push((c.name, c.ty));
    }
    tables
}

/// What one server keeps of `events`.
#[derive(clickhouse::Row, serde::Deserialize)]
struct Held {
    rows: u64,
    ids: u64,
    districts: Vec<String>,
}

#[tokio::test]
async fn on_two_shards_of_two_replicas_records_land_once_figures_equal_sql_and_scopes_copy() {
    let clickhouse = ChCluster::start(2, 2).await;
    let mut settings = test_settings();
    settings.clickhouse.url = clickhouse.servers[0].url();
    settings.clickhouse.cluster = "vscc".into();
    settings.clickhouse.shards = clickhouse.shards_setting();
    settings.sql.users_dir = clickhouse.users_dir();
    settings.limits.queries_per_min = 6000;
    settings.limits.query_burst = 100;
    let db = settings.clickhouse.database.clone();
    let app = spawn_app_with(settings).await;

    // The cluster form of the schema: the single server's tables and columns.
    let single = vscc::Store::new(
        &common::clickhouse_url(),
        "default",
        "",
        &format!("{db}_single"),
    )
    .unwrap();
    single.migrate().await.unwrap();
    let cluster = vscc::Store::new(&clickhouse.servers[3].url(), "default", "", &db).unwrap();
    assert_eq!(
        columns(&cluster, &["schema_migrations", "events_local"]).await,
        columns(&single, &["schema_migrations", "events_typed_0009"]).await,
        "the cluster's tables differ from the single server's"
    );
    // vscc configured for one server, pointed at the cluster's database, says so.
    let plain = vscc::Store::new(&clickhouse.servers[0].url(), "default", "", &db).unwrap();
    let refused = plain.migrate().await.unwrap_err().to_string();
    assert!(refused.contains("check clickhouse.cluster"), "{refused}");

    // Records: each on its district's shard, on both replicas, once.
    let tree = app.state.tree.clone();
    let events = sample_events(&tree, 4000, 11, 60, "cl");
    let mut accepted = 0;
    for chunk in events.chunks(500) {
        let res = app.post_events(&json!(chunk)).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        accepted += body["accepted"].as_u64().unwrap();
    }
    app.wait_landed().await;
    assert!(accepted > 3000, "{accepted}");
    // A quorum insert that timed out under load may be on one replica only until the other
    // fetches it: wait until every server agrees, up to 30 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let held = loop {
        let mut held: Vec<Held> = Vec::new();
        for server in &clickhouse.servers {
            let store = vscc::Store::new(&server.url(), "default", "", &db).unwrap();
            held.push(
                store
                    .client()
                    .query(
                        "SELECT count(), uniqExact(id), groupUniqArray(district) FROM events_local",
                    )
                    .fetch_one()
                    .await
                    .unwrap(),
            );
        }
        let rows: Vec<u64> = held.iter().map(|h| h.rows).collect();
        let settled = rows[0] == rows[1] && rows[2] == rows[3] && rows[0] + rows[2] == accepted;
        if settled {
            println!("rows per server {rows:?} (shard 1: the first two), {accepted} accepted");
            break held;
        }
        assert!(
            Instant::now() < deadline,
            "rows per server {rows:?} (shard 1: the first two), {accepted} accepted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (i, h) in held.iter().enumerate() {
        let shard = i / 2;
        assert_eq!(h.rows, h.ids, "server {}: an id twice", i + 1);
        assert!(h.rows > 0, "shard {} holds rows", shard + 1);
        assert!(
            h.districts
                .iter()
                .all(|d| d.parse::<u64>().unwrap_or(0) % 2 == shard as u64),
            "shard {}: districts {:?}",
            shard + 1,
            h.districts
        );
    }

    // Every live figure equals the recomputation, read through the Distributed tables.
    let live = app.state.hub.all_current();
    common::compared_with_sql(&app, &live, app.state.hub.now()).await;

    // A district's analyst: its rows, from whichever shard, and records that come later.
    let count_in =
        |district: &str| format!("SELECT count() FROM events WHERE district = '{district}'");
    for district in ["440303", "440304"] {
        let analyst = app
            .user_token(&format!("an-{district}"), "analyst", district)
            .await;
        let (status, all) = app
            .query(app.admin_token(), json!({"sql": count_in(district)}))
            .await;
        assert_eq!(status, 200, "{all}");
        let (status, mine) = app
            .query(&analyst, json!({"sql": "SELECT count() FROM events"}))
            .await;
        assert_eq!(status, 200, "{mine}");
        assert_eq!(mine["data"], all["data"], "{district}");
        assert_ne!(mine["data"], json!([["0"]]), "{district} has records");

        let community = tree.node(
            tree.subtree(tree.get(district).unwrap())
                .into_iter()
                .find(|&n| tree.node(n).level.as_str() == "community")
                .unwrap(),
        );
        let res = app
            .post_events(
                &json!([{"id": format!("later-{district}"), "kind": "veteran.registered",
                "org": community.code, "at": "2026-11-01T09:00:00+08:00",
                "data": {"person_id": format!("{district}199001011234")}}]),
            )
            .await;
        assert_eq!(res.status(), 200);
        app.wait_landed().await;
        // The copy is made on the replica that took the insert; the other fetches it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, later) = app
                .query(
                    &analyst,
                    json!({"sql": "SELECT count() FROM events WHERE id LIKE 'later-%'"}),
                )
                .await;
            if later["data"] == json!([["1"]]) {
                break;
            }
            assert!(Instant::now() < deadline, "{district}: {later}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    app.stop().await;
}
