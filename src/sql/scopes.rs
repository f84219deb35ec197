//! Scope databases: what an analyst of one org subtree may read, enforced by ClickHouse.
//!
//! ClickHouse 18.16 has no row policies and no GRANT, and a view does not help: it checks the
//! querying user's access to the tables it reads (measured: a user allowed only the view's
//! database gets "Access denied to database …" for a view over another database). So each
//! scope gets real tables in its own database, `<db>_sql_<code>`, kept current by
//! materialised views in vscc's database that copy the subtree's rows — masked — as they are
//! inserted. Each scope's ClickHouse user (same name as its database) is allowed that database
//! only, through `allow_databases` in a users file vscc writes; readonly, limits and quota come
//! from the analysts' profile in the same file.

use std::fmt::Write as _;

use crate::domain::kinds::{FieldType, Kinds};
use crate::domain::org::{NodeIdx, OrgTree};
use crate::store::{is_valid_identifier, Store, StoreError};

use super::SqlSettings;

/// The tables the SQL console lists, besides the per-kind views (`kind_*`): what analysis
/// reads. The scope databases hold only these; vscc's own database (the admins') holds its
/// bookkeeping too, which is not listed.
pub const ANALYST_TABLES: &[&str] = &[
    "events",
    "events_effective",
    "metric_snapshots",
    "target_progress",
    "league_tables",
    "data_freshness",
    "org_nodes",
    "alert_events",
    "imports",
];

/// The tables an analyst sees, with how each column is copied: personal data is masked here,
/// once, for every role but admin.
const EVENT_COLUMNS: &[(&str, &str)] = &[
    ("seq", "seq"),
    ("id", "id"),
    ("kind", "kind"),
    ("org", "org"),
    ("district", "district"),
    ("at", "at"),
    ("received_at", "received_at"),
    ("source", "source"),
    ("lon", "lon"),
    ("lat", "lat"),
    ("subject", MASK_ID_NUMBER_COLUMN),
    ("num_keys", "num_keys"),
    ("num_values", "num_values"),
    ("data", MASK_DATA_COLUMN),
    ("version", "version"),
    ("sign", "sign"),
    ("cancels", "cancels"),
    ("actor", "actor"),
    ("reason", MASK_REASON_COLUMN),
];

/// A resident ID number (18 characters) as a subject (a person's) keeps its region and last
/// four: 440303********123X.
const MASK_ID_NUMBER_COLUMN: &str = "if(match(subject, '^[0-9]{17}[0-9Xx]$'), \
     concat(substring(subject, 1, 6), '********', substring(subject, 15, 4)), subject)";

/// ID numbers and mobile numbers anywhere in the record's JSON: 138****1234.
const MASK_DATA_COLUMN: &str = "replaceRegexpAll(replaceRegexpAll(data, \
     '([^0-9]|^)([0-9]{6})[0-9]{8}([0-9]{3}[0-9Xx])([^0-9]|$)', '\\\\1\\\\2********\\\\3\\\\4'), \
     '([^0-9]|^)(1[3-9][0-9])[0-9]{4}([0-9]{4})([^0-9]|$)', '\\\\1\\\\2****\\\\3\\\\4')";

/// The same masking for the reason a record was corrected or withdrawn (a clerk may quote the
/// number that was wrong).
const MASK_REASON_COLUMN: &str = "replaceRegexpAll(replaceRegexpAll(reason, \
     '([^0-9]|^)([0-9]{6})[0-9]{8}([0-9]{3}[0-9Xx])([^0-9]|$)', '\\\\1\\\\2********\\\\3\\\\4'), \
     '([^0-9]|^)(1[3-9][0-9])[0-9]{4}([0-9]{4})([^0-9]|$)', '\\\\1\\\\2****\\\\3\\\\4')";

/// The effective records in a database's `events` (see sql/0014_corrections.sql), for the
/// per-kind views and the `events_effective` view of a scope database.
const EFFECTIVE_IN_DB: &str = "sign = 1 AND (id, version) GLOBAL NOT IN \
     (SELECT id, version FROM {db}.events WHERE sign = -1)";

/// The friendly per-kind views an analyst reads (`kind_station_rated` …): one column per field
/// of the kind's definition, from the generic row — the subject, a named number, or (other
/// texts) the stored `data` — as `(view name, SELECT)`. Names come from the definitions, which
/// keep them to `[a-z0-9_.]`.
pub fn kind_views(kinds: &Kinds) -> Vec<(String, String)> {
    kinds
        .all()
        .map(|def| {
            let mut columns = vec![
                "seq",
                "id",
                "org",
                "district",
                "at",
                "received_at",
                "source",
                "lon",
                "lat",
            ]
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>();
            for f in &def.fields {
                let name = &f.name;
                columns.push(match f.ty {
                    FieldType::Text if def.subject.as_deref() == Some(name.as_str()) => {
                        format!("subject AS {name}")
                    }
                    FieldType::Text => format!("visitParamExtractString(data, '{name}') AS {name}"),
                    FieldType::Count => {
                        format!("num_values[indexOf(num_keys, '{name}')] AS {name}")
                    }
                    FieldType::Flag => {
                        format!("toUInt8(num_values[indexOf(num_keys, '{name}')]) AS {name}")
                    }
                });
            }
            columns.push("data".into());
            columns.push("version".into());
            columns.push("actor".into());
            (
                kind_view_name(def.kind.as_str()),
                format!(
                    "SELECT {} FROM {{db}}.events WHERE kind = '{}' AND {EFFECTIVE_IN_DB}",
                    columns.join(", "),
                    def.kind
                ),
            )
        })
        .chain(std::iter::once((
            "events_effective".to_string(),
            format!("SELECT * FROM {{db}}.events WHERE {EFFECTIVE_IN_DB}"),
        )))
        .collect()
}

fn kind_view_name(kind: &str) -> String {
    format!("kind_{}", kind.replace('.', "_"))
}

/// Replaces the per-kind views of `database` with `views` (from [`kind_views`]); views of kinds
/// no longer defined go.
pub async fn refresh_kind_views(
    store: &Store,
    database: &str,
    views: &[(String, String)],
) -> Result<(), StoreError> {
    if !is_valid_identifier(database) {
        return Err(StoreError::InvalidIdentifier(database.to_string()));
    }
    let server = store.server_client();
    let old: Vec<String> = server
        .query("SELECT name FROM system.tables WHERE database = ? AND engine = 'View' AND startsWith(name, 'kind_')")
        .bind(database)
        .fetch_all()
        .await?;
    let on = store.on_cluster();
    // Views no longer defined go; the others are replaced only if their definition changed.
    for name in old.iter().filter(|n| is_valid_identifier(n)) {
        if !views.iter().any(|(v, _)| v == name) {
            store
                .ddl(&format!("DROP TABLE IF EXISTS {database}.{name}{on}"))
                .await?;
        }
    }
    for (name, select) in views {
        let select = select.replace("{db}", database);
        if unchanged_view(store, database, name, &select).await? {
            continue;
        }
        store
            .ddl(&format!("DROP TABLE IF EXISTS {database}.{name}{on}"))
            .await?;
        store
            .ddl(&format!(
                "CREATE VIEW IF NOT EXISTS {database}.{name}{on} AS {select}"
            ))
            .await?;
    }
    Ok(())
}

/// Whether the view `name` already reads `select`, as this server would write it down: it is
/// created under another name here (not on the cluster) and the two definitions compared. On
/// a cluster, replacing every view at every start-up would go `ON CLUSTER` and wait for
/// servers that are down.
async fn unchanged_view(
    store: &Store,
    database: &str,
    name: &str,
    select: &str,
) -> Result<bool, StoreError> {
    let server = store.server_client();
    let definition = |view: String| async move {
        server
            .query("SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?")
            .bind(database)
            .bind(view)
            .fetch_optional::<String>()
            .await
    };
    let Some(current) = definition(name.to_string()).await? else {
        return Ok(false);
    };
    // Its own name per call: instances starting together probe the same views.
    let probe = format!(
        "probe_{}_{name}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    server
        .query_raw(&format!("DROP TABLE IF EXISTS {database}.{probe}"))
        .execute()
        .await?;
    server
        .query_raw(&format!("CREATE VIEW {database}.{probe} AS {select}"))
        .execute()
        .await?;
    let wanted = definition(probe.clone()).await?;
    server
        .query_raw(&format!("DROP TABLE IF EXISTS {database}.{probe}"))
        .execute()
        .await?;
    Ok(wanted.is_some_and(|w| {
        w.replace(
            &format!("{database}.{probe}"),
            &format!("{database}.{name}"),
        ) == current
    }))
}

pub fn scope_database(database: &str, code: &str) -> String {
    format!("{database}_sql_{code}")
}

/// The ClickHouse user of the admins' unmasked, city-wide SQL (reads vscc's database itself).
pub fn admin_user(database: &str) -> String {
    format!("{database}_sql_admin")
}

fn codes_list(tree: &OrgTree, scope: NodeIdx) -> String {
    // Codes come from the reference data, digits only; checked anyway since they are spliced.
    let mut out = String::new();
    for (i, idx) in tree.subtree(scope).into_iter().enumerate() {
        let code = &tree.node(idx).code;
        if code.chars().all(|c| c.is_ascii_alphanumeric()) {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "'{code}'");
        }
    }
    out
}

async fn exists(store: &Store, database: &str, table: &str) -> Result<bool, StoreError> {
    let n: u64 = store
        .server_client()
        .query("SELECT count() FROM system.tables WHERE database = ? AND name = ?")
        .bind(database)
        .bind(table)
        .fetch_one()
        .await?;
    Ok(n > 0)
}

/// Creates the scope's database, tables and copying views if missing, filling the tables with
/// what is already there. Inserts into the source tables are held for the moment between the
/// back-fill and the view's creation, so no row is copied twice or missed; a back-fill cut short
/// (crash) is redone from empty next time, because the view is created last.
pub async fn ensure_scope_database(
    store: &Store,
    tree: &OrgTree,
    scope: NodeIdx,
) -> Result<String, StoreError> {
    let db = store.database();
    let code = &tree.node(scope).code;
    let sdb = scope_database(db, code);
    if !is_valid_identifier(&sdb) {
        return Err(StoreError::InvalidIdentifier(sdb));
    }
    let server = store.server_client();
    // The columns `events` has: a store migrated to an older version copies what it holds.
    let event_columns: Vec<String> = server
        .query("SELECT name FROM system.columns WHERE database = ? AND table = 'events'")
        .bind(db)
        .fetch_all()
        .await?;
    let event_select = EVENT_COLUMNS
        .iter()
        .filter(|(name, _)| event_columns.iter().any(|c| c == name))
        .map(|(name, expr)| {
            if expr == name {
                name.to_string()
            } else {
                format!("{expr} AS {name}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    // (table, what is copied, the column naming the org)
    let copied: [(&str, &str, &str); 5] = [
        ("events", event_select.as_str(), "org"),
        ("metric_snapshots", "*", "node"),
        ("target_progress", "*", "node"),
        ("league_tables", "*", "node"),
        ("data_freshness", "*", "node"),
    ];
    let view_of = |table: &str| format!("sql_{code}_{table}");
    let mut complete = true;
    for (table, _, _) in &copied {
        complete &= exists(store, db, &view_of(table)).await?;
    }
    if complete {
        refresh_org_nodes(store, tree, scope).await?;
        return Ok(sdb);
    }
    let on = store.on_cluster();
    store
        .ddl(&format!("CREATE DATABASE IF NOT EXISTS {sdb}{on}"))
        .await?;
    // Same columns and engine as vscc's own tables.
    for table in copied.iter().map(|(t, _, _)| *t).chain(["org_nodes"]) {
        for statement in copy_table_ddl(store, &sdb, table).await? {
            store.ddl(&statement).await?;
        }
    }
    refresh_org_nodes(store, tree, scope).await?;

    let codes = codes_list(tree, scope);
    let _hold = store.insert_gate().write().await;
    for (table, select, key) in copied {
        let view = view_of(table);
        if exists(store, db, &view).await? {
            continue;
        }
        // On a cluster, `events` copies shard by shard: each shard's rows, as they are
        // inserted into its `events_local`, into the scope's `events_local` on that shard.
        let local = store.local_table(table);
        store
            .ddl(&format!("TRUNCATE TABLE {sdb}.{local}{on}"))
            .await?;
        let mut backfill = server.query(&format!(
            "INSERT INTO {sdb}.{table} SELECT {select} FROM {db}.{table} WHERE {key} IN ({codes})"
        ));
        if store.cluster().is_some() {
            backfill = backfill.with_setting("insert_distributed_sync", "1");
        }
        backfill.execute().await?;
        store
            .ddl(&format!(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{view}{on} TO {sdb}.{local} \
                 AS SELECT {select} FROM {db}.{local} WHERE {key} IN ({codes})"
            ))
            .await?;
    }
    tracing::info!(scope = %code, database = %sdb, "scope database for SQL is ready");
    Ok(sdb)
}

/// The statements that create the scope's copy of one of vscc's tables, with its columns and
/// engine. On a cluster the copy needs ZooKeeper paths of its own (the same path would make it
/// a replica of vscc's table), and the copy of `events` is sharded like it.
async fn copy_table_ddl(store: &Store, sdb: &str, table: &str) -> Result<Vec<String>, StoreError> {
    let db = store.database();
    let Some(cluster) = store.cluster() else {
        return Ok(vec![format!(
            "CREATE TABLE IF NOT EXISTS {sdb}.{table} AS {db}.{table}"
        )]);
    };
    let on = cluster.on_cluster();
    let local = store.local_table(table);
    let engine: String = store
        .server_client()
        .query("SELECT engine_full FROM system.tables WHERE database = ? AND name = ?")
        .bind(db)
        .bind(local)
        .fetch_one()
        .await?;
    let engine = engine.replace(&format!("/{db}/{local}'"), &format!("/{sdb}/{local}'"));
    let mut statements = vec![format!(
        "CREATE TABLE IF NOT EXISTS {sdb}.{local}{on} AS {db}.{local} ENGINE = {engine}"
    )];
    if local != table {
        statements.push(format!(
            "CREATE TABLE IF NOT EXISTS {sdb}.events{on} AS {sdb}.events_local \
             ENGINE = Distributed({}, {sdb}, events_local, toUInt64OrZero(district))",
            cluster.name()
        ));
    }
    Ok(statements)
}

/// The scope's copy of the org tree: its subtree (rewritten at start-up with the tree).
async fn refresh_org_nodes(
    store: &Store,
    tree: &OrgTree,
    scope: NodeIdx,
) -> Result<(), StoreError> {
    let db = store.database();
    let code = &tree.node(scope).code;
    let sdb = scope_database(db, code);
    let server = store.server_client();
    // Only when it differs: instances truncating one replicated table at once can hang a
    // replica's drop on 18.16 (see Store::refresh_org_nodes).
    let rows = |table: String| async move {
        server
            .query(&format!(
                "SELECT concat(code, '|', name, '|', level, '|', parent, '|', arrayStringConcat(ancestors, ',')) FROM {table} \
                 WHERE has(ancestors, ?) ORDER BY code"
            ))
            .bind(code.as_str())
            .fetch_all::<String>()
            .await
    };
    if rows(format!("{sdb}.org_nodes")).await? == rows(format!("{db}.org_nodes")).await? {
        return Ok(());
    }
    server
        .query(&format!("TRUNCATE TABLE {sdb}.org_nodes"))
        .execute()
        .await?;
    server
        .query(&format!(
            "INSERT INTO {sdb}.org_nodes SELECT * FROM {db}.org_nodes WHERE has(ancestors, ?)"
        ))
        .bind(code.as_str())
        .execute()
        .await?;
    Ok(())
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The users file for ClickHouse: the analysts' profile and quota, the admins' user (vscc's
/// database, unmasked) and one user per scope (its scope database only). All share one
/// password that vscc derives from its token secret; only vscc connects as them.
pub fn users_xml(
    database: &str,
    scopes: &[String],
    password: &str,
    settings: &SqlSettings,
) -> String {
    let profile = format!("{database}_sql");
    let networks: String = settings
        .networks
        .iter()
        .map(|n| format!("<ip>{}</ip>", xml_escape(n)))
        .collect();
    let password_hash = sha256_hex(password);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<?xml version="1.0"?>
<!-- Written by vscc for database {database}: analysts' ClickHouse users. Rewritten when a scope is added. -->
<yandex>
  <profiles>
    <{profile}>
      <readonly>1</readonly>
      <max_execution_time>{time}</max_execution_time>
      <max_result_rows>{rows}</max_result_rows>
      <max_result_bytes>{bytes}</max_result_bytes>
      <result_overflow_mode>throw</result_overflow_mode>
      <max_memory_usage>{memory}</max_memory_usage>
      <max_rows_to_read>{read}</max_rows_to_read>
      <read_overflow_mode>throw</read_overflow_mode>
    </{profile}>
  </profiles>
  <quotas>
    <{profile}>
      <interval>
        <duration>3600</duration>
        <queries>{queries}</queries>
        <errors>0</errors>
        <result_rows>0</result_rows>
        <read_rows>0</read_rows>
        <execution_time>{exec}</execution_time>
      </interval>
    </{profile}>
  </quotas>
  <users>
"#,
        time = settings.max_execution_time_secs,
        rows = settings.max_result_rows,
        bytes = settings.max_result_bytes,
        memory = settings.max_memory_usage,
        read = settings.max_rows_to_read,
        queries = settings.quota_queries_per_hour,
        exec = settings.quota_execution_secs_per_hour,
    );
    let mut user = |name: &str, allowed: &str| {
        let _ = write!(
            out,
            "    <{name}>\n      <password_sha256_hex>{password_hash}</password_sha256_hex>\n      \
             <networks>{networks}</networks>\n      <profile>{profile}</profile>\n      <quota>{profile}</quota>\n      \
             <allow_databases><database>{allowed}</database></allow_databases>\n    </{name}>\n"
        );
    };
    user(&admin_user(database), database);
    for code in scopes {
        let sdb = scope_database(database, code);
        user(&sdb, &sdb);
    }
    out.push_str("  </users>\n</yandex>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::org::{tree_of, Level};

    #[test]
    fn the_users_file_allows_each_scope_user_its_own_database_only() {
        let settings: SqlSettings = toml::from_str(
            r#"users_dir = ""
            networks = ["127.0.0.1"]
            max_execution_time_secs = 7
            max_result_rows = 10
            max_result_bytes = 1000
            max_memory_usage = 100
            max_rows_to_read = 0
            quota_queries_per_hour = 5
            quota_execution_secs_per_hour = 60"#,
        )
        .unwrap();
        let xml = users_xml("vscc", &["440303".into(), "440304".into()], "pw", &settings);
        assert!(xml.contains("<vscc_sql_440303>"));
        assert!(xml.contains("<allow_databases><database>vscc_sql_440303</database></allow_databases>\n    </vscc_sql_440303>"));
        assert!(xml.contains(
            "<allow_databases><database>vscc</database></allow_databases>\n    </vscc_sql_admin>"
        ));
        assert!(
            xml.contains("<readonly>1</readonly>")
                && xml.contains("<max_execution_time>7</max_execution_time>")
        );
        assert!(!xml.contains(">pw<"), "only the password's hash is written");
        assert!(xml.contains(&sha256_hex("pw")));
    }

    #[test]
    fn a_scope_lists_its_whole_subtree() {
        let t = tree_of(&[
            ("c", Level::City, None),
            ("d1", Level::District, Some("c")),
            ("s1", Level::Street, Some("d1")),
            ("d2", Level::District, Some("c")),
        ]);
        assert_eq!(codes_list(&t, t.get("d1").unwrap()), "'d1', 's1'");
    }
}
