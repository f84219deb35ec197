//! The foundation: org tree, map, schema migrations and the serving basics, against the real
//! app and the real ClickHouse.

use crate::helpers as common;

use std::collections::HashMap;

use common::{spawn_app, test_settings};
use serde_json::Value;
use vscc::{Store, MIGRATIONS};

fn flatten<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(node);
    for c in node["children"].as_array().into_iter().flatten() {
        flatten(c, out);
    }
}

#[tokio::test]
async fn org_tree_has_shenzhens_real_units_and_names() {
    let app = spawn_app().await;
    let root = app.get_json("/api/v1/org").await;
    let mut all = Vec::new();
    flatten(&root, &mut all);
    let count = |level: &str| all.iter().filter(|n| n["level"] == level).count();
    assert_eq!(count("city"), 1);
    assert_eq!(count("district"), 10);
    assert_eq!(count("street"), 74);
    assert_eq!(count("community"), 783);

    let by_code: HashMap<&str, &Value> = all
        .iter()
        .map(|n| (n["code"].as_str().unwrap(), *n))
        .collect();
    assert_eq!(by_code["440300"]["name"], "深圳市");
    assert_eq!(by_code["440305"]["name"], "南山区");
    assert_eq!(by_code["440399"]["name"], "大鹏新区");
    assert_eq!(by_code["440307010"]["name"], "大鹏街道");
    assert_eq!(
        by_code["440307010"]["parent"], "440399",
        "大鹏街道 belongs to 大鹏新区, not 龙岗"
    );
    assert_eq!(
        by_code["440307012"]["parent"], "440307",
        "南湾街道 stays in 龙岗"
    );
    assert!(
        !by_code.contains_key("440305400"),
        "前海合作区 is a zone, not a street"
    );
    assert!(
        !by_code.contains_key("440304400498"),
        "virtual communities are dropped"
    );
    assert_eq!(
        by_code["440303001001"]["name"], "大塘龙社区",
        "committee suffix dropped"
    );
    assert_eq!(by_code["440303001001"]["level"], "community");
    app.stop().await;
}

#[tokio::test]
async fn every_community_reaches_the_city_through_its_parents() {
    let app = spawn_app().await;
    let root = app.get_json("/api/v1/org").await;
    let mut all = Vec::new();
    flatten(&root, &mut all);
    let parent: HashMap<&str, Option<&str>> = all
        .iter()
        .map(|n| (n["code"].as_str().unwrap(), n["parent"].as_str()))
        .collect();
    let level: HashMap<&str, &str> = all
        .iter()
        .map(|n| (n["code"].as_str().unwrap(), n["level"].as_str().unwrap()))
        .collect();
    for (&code, _) in level.iter().filter(|(_, &l)| l == "community") {
        let mut path = vec![level[code]];
        let mut cur = code;
        while let Some(p) = parent[cur] {
            path.push(level[p]);
            cur = p;
        }
        assert_eq!(cur, "440300", "{code} does not reach the city");
        assert_eq!(path, ["community", "street", "district", "city"], "{code}");
        assert!(code.starts_with(&code[..9]) && code.len() == 12);
    }
    // A subtree answers for one node, and unknown codes are 404.
    let dapeng = app.get_json("/api/v1/org/440399?depth=1").await;
    assert_eq!(dapeng["children"].as_array().unwrap().len(), 3);
    assert_eq!(app.get("/api/v1/org/999999").await.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn known_places_are_located_in_their_districts() {
    let app = spawn_app().await;
    for (lon, lat, code) in [
        (114.065, 22.540, "440304"), // 福田 CBD
        (113.93, 22.53, "440305"),   // 南山 粤海
        (114.47, 22.59, "440399"),   // 大鹏
        (114.25, 22.72, "440307"),   // 龙岗 proper
        (114.12, 22.55, "440303"),   // 罗湖
    ] {
        let located = app
            .get_json(&format!("/api/v1/geo/locate?lon={lon}&lat={lat}"))
            .await;
        assert_eq!(located["code"], code, "({lon}, {lat})");
        // The library call that ingest uses agrees with the endpoint.
        assert_eq!(
            app.state.map.locate(lon, lat).map(|d| d.code.as_str()),
            Some(code)
        );
    }
    // Guangzhou is not in Shenzhen.
    assert_eq!(
        app.get("/api/v1/geo/locate?lon=113.26&lat=23.13")
            .await
            .status(),
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn district_map_has_ten_simplified_units_with_names_and_centroids() {
    let app = spawn_app().await;
    let fc = app.get_json("/api/v1/geo/districts").await;
    let features = fc["features"].as_array().unwrap();
    assert_eq!(features.len(), 10);
    let codes: Vec<&str> = features
        .iter()
        .map(|f| f["properties"]["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"440399") && codes.contains(&"440307"));
    for f in features {
        let c = &f["properties"]["centroid"];
        let (lon, lat) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
        assert!(
            (113.7..114.7).contains(&lon) && (22.4..22.9).contains(&lat),
            "{f:?}"
        );
        assert!(!f["properties"]["name"].as_str().unwrap().is_empty());
        assert_eq!(f["geometry"]["type"], "MultiPolygon");
    }
    let before = fc["simplification"]["vertices_before"].as_u64().unwrap();
    let after = fc["simplification"]["vertices_after"].as_u64().unwrap();
    assert!(
        before > 10_000 && after < before / 4,
        "before {before}, after {after}"
    );
    app.stop().await;
}

#[tokio::test]
async fn migrations_apply_once_and_reapply_as_a_no_op() {
    let app = spawn_app().await;
    let store = app.store();
    let again = store.migrate().await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.already_applied, MIGRATIONS.len());
    let rows: u64 = store
        .client()
        .query("SELECT count() FROM schema_migrations")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rows as usize, MIGRATIONS.len());
    let tables: u64 = store
        .client()
        .query("SELECT count() FROM system.tables WHERE database = ? AND name = 'events'")
        .bind(store.database())
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(tables, 1);
    app.stop().await;
}

#[tokio::test]
async fn two_servers_migrating_at_the_same_moment_apply_each_migration_once() {
    let settings = test_settings();
    let ch = &settings.clickhouse;
    let a = Store::new(&ch.url, &ch.user, &ch.password, &ch.database).unwrap();
    let b = a.clone();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        ra.applied.len() + rb.applied.len(),
        MIGRATIONS.len(),
        "each applied exactly once"
    );
    let rows: u64 = a
        .client()
        .query("SELECT count() FROM schema_migrations")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rows as usize, MIGRATIONS.len());
    assert!(a.migrations_current().await.unwrap());
}

#[tokio::test]
async fn ops_endpoints_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get_json("/healthz").await["status"], "ok");
    let ready = app.get_json("/readyz").await;
    assert_eq!(ready["clickhouse"], "ok");
    assert_eq!(ready["migrations"], "applied");
    let _ = app.get("/api/v1/org?depth=0").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"vscc_http_requests_total{method="GET",route="/api/v1/org",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("vscc_org_nodes 868"));
    let doc = app.get_json("/openapi.json").await;
    assert!(doc["paths"]["/api/v1/org"]["get"].is_object());
    assert!(doc["paths"]["/api/v1/geo/districts"]["get"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn readyz_says_not_ready_when_clickhouse_is_unreachable() {
    // A ClickHouse of this test's own, stopped after the app is up.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut settings = test_settings();
    settings.clickhouse.managed.dir = tmp.path().to_path_buf();
    let mut own = vscc::ManagedClickHouse::start(&settings.clickhouse.managed)
        .await
        .unwrap();
    settings.clickhouse.url = own.url();
    let app = common::spawn_app_with(settings).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    own.stop().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["clickhouse"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "liveness does not depend on ClickHouse"
    );
    app.stop().await;
}

#[test]
fn vscc_config_prints_a_file_that_loads_as_the_defaults_and_can_be_edited() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vscc"))
        .arg("config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("[server]"),
        "{}",
        &text[..80.min(text.len())]
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vscc.toml");
    // A user keeps the file and changes one value.
    std::fs::write(&file, text.replace("drain_secs = 3", "drain_secs = 7")).unwrap();
    let from_file = vscc::config::Settings::load(Some(&file)).unwrap();
    let defaults = vscc::config::Settings::load(None).unwrap();
    assert_eq!(from_file.server.drain_secs, 7);
    assert_eq!(from_file.server.addr, defaults.server.addr);
    assert_eq!(from_file.clickhouse.database, defaults.clickhouse.database);
    assert_eq!(from_file.ingest.batch_rows, defaults.ingest.batch_rows);
}
