//! Ledger imports: what clerks write is cleaned, bad rows are rejected with row, column and
//! reason, a re-import changes nothing, and Excel and CSV of the same data are the same.

use crate::helpers as common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{spawn_app, staff_on_duty, TestApp};
use serde_json::{json, Value};

/// A hiring ledger as a 南山 clerk keeps it, good and bad rows mixed (row numbers as in Excel).
const HIRES: &str = "\u{feff}区,街道,社区,入职日期,人员编号,是否退役军人,备注
南山区,南头街道,南头城社区,2021-03-04,NS-001,是,
南山,南头,南头城,2021年3月5日,NS-002,否,名字不带后缀
 南山区 ,南头街道,大新社区,２０２１/３/６,ＮＳ－００３ ,是,全角和空格
南山区,南头街道,不存在社区,2021-03-07,NS-004,否,
南山区,南头街道,南头城社区,2021-13-01,NS-005,否,
南山区,南头街道,南头城社区,2021-03-08,,是,
南山区,南头街道,南头城社区,2021-03-09,NS-007,也许,
南山区,南头街道,南头城社区,2099-01-01,NS-008,否,
罗湖区,桂园街道,大塘龙社区,2021-03-10,LH-001,是,别区的
南山区,南头街道,南头城社区,2021-03-04,NS-001,是,同一行又录了一次
";

async fn upload(app: &TestApp, token: &str, name: &str, body: Vec<u8>) -> (u16, Value) {
    let res = app
        .http
        .post(format!("{}/api/v1/imports?name={name}", app.base))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn a_mixed_ledger_loads_the_good_rows_and_rejects_the_bad_with_row_column_and_reason() {
    let app = spawn_app().await;
    let clerk = app.user_token("clerk-nanshan", "clerk", "440305").await;
    let (status, summary) = upload(&app, &clerk, "招聘台账.csv", HIRES.as_bytes().to_vec()).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(
        (summary["family"].as_str(), summary["rows"].as_u64()),
        (Some("hires"), Some(10))
    );
    assert_eq!(
        (
            summary["accepted"].as_u64(),
            summary["duplicates"].as_u64(),
            summary["rejected"].as_u64()
        ),
        (Some(3), Some(1), Some(6)),
        "{summary}"
    );
    assert_eq!(summary["ignored_columns"], json!(["备注"]));
    let rejects: Vec<(u64, String, String)> = summary["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["row"].as_u64().unwrap(),
                r["column"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        (5, "区", "unknown org '南山区/南头街道/不存在社区'"),
        (
            6,
            "入职日期",
            "'2021-13-01' is not a date (e.g. 2021-03-04 or 2021年3月4日)",
        ),
        (7, "人员编号", "is required"),
        (8, "是否退役军人", "'也许' is not 是 or 否"),
        (9, "入职日期", "is in the future"),
        (
            10,
            "区",
            "440303001001 is outside the importer's scope (440305)",
        ),
    ];
    assert_eq!(rejects.len(), expected.len(), "{rejects:?}");
    for ((row, column, reason), (want_row, want_column, want_reason)) in
        rejects.iter().zip(expected)
    {
        assert_eq!(
            (*row, column.as_str(), reason.as_str()),
            (want_row, want_column, want_reason)
        );
    }
    // The whole reject file, for the clerk to fix and re-send.
    let url = summary["rejects_url"].as_str().unwrap();
    let csv = app
        .http
        .get(format!("{}{url}", app.base))
        .bearer_auth(&clerk)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(lines[0], "行号,列,内容,原因");
    assert_eq!(lines.len(), 7);
    assert!(
        lines[2].starts_with("6,入职日期,2021-13-01,"),
        "{}",
        lines[2]
    );

    // What landed: cleaned values, names resolved to codes, days at noon in Shenzhen.
    app.wait_landed().await;
    let rows: Vec<(String, String, u8, u32)> = app
        .store()
        .client()
        .query(
            "SELECT org, subject, toUInt8(num_values[indexOf(num_keys, 'veteran')]), \
             toUInt32(toYYYYMMDD(at)) FROM events ORDER BY subject",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            ("440305001001".into(), "NS-001".into(), 1, 20210304),
            ("440305001001".into(), "NS-002".into(), 0, 20210305),
            ("440305001003".into(), "NS-003".into(), 1, 20210306),
        ]
    );
    // And the live figures follow: 2 veterans of 3 hires in 南山 in 2021.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let figures = app
            .get_json("/api/v1/metrics?scope=440305&metrics=veteran_hire_share")
            .await;
        let f = &figures["nodes"]["440305"]["veteran_hire_share"];
        if f["den"] == 3 {
            assert_eq!(f["num"], 2);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the live figures never saw the import: {figures}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let res = app
        .http
        .post(format!("{}/api/v1/imports?name=x.csv", app.base))
        .bearer_auth(app.user_token("leader-ns", "leader", "440305").await)
        .body("a")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "only clerks and admins import");
    app.stop().await;
}

fn vscc(app: &TestApp, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vscc"))
        .args(args)
        .env("VSCC__CLICKHOUSE__URL", common::clickhouse_url())
        .env(
            "VSCC__CLICKHOUSE__DATABASE",
            &app.settings.clickhouse.database,
        )
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn simulate(format: &str, dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_vscc"))
        .args([
            "simulate",
            "--seed",
            "3",
            "--scale",
            "0.02",
            "--until",
            "2020-09-30",
            "--format",
            format,
            "--out",
        ])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ledgers(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn a_re_import_changes_nothing_and_the_summary_says_so() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    simulate("csv", dir.path());
    let hires = dir.path().join("招聘台账.csv");
    let out = vscc(&app, &["etl", "import", hires.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = || async {
        app.store()
            .client()
            .query("SELECT count() FROM events")
            .fetch_one::<u64>()
            .await
            .unwrap()
    };
    let first = count().await;
    assert!(first > 50, "the hiring ledger has rows ({first})");
    let out = vscc(&app, &["etl", "import", hires.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&out.stdout);
    let line = report
        .lines()
        .find(|l| l.starts_with("hires"))
        .unwrap_or_else(|| panic!("{report}"));
    let numbers: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(6)
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(
        numbers,
        vec![first, 0, first, 0, 0, 0],
        "rows, accepted, duplicates, corrected, withdrawn, rejected: {report}"
    );
    assert_eq!(count().await, first);
    let imports: Value = app.get_json("/api/v1/imports").await;
    assert_eq!(imports.as_array().unwrap().len(), 2);
    assert_eq!(imports[0]["outcome"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn excel_and_csv_of_the_same_ledgers_give_identical_tables() {
    let (csv_dir, xlsx_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    simulate("csv", csv_dir.path());
    simulate("xlsx", xlsx_dir.path());
    let (a, b) = (spawn_app().await, spawn_app().await);
    for (app, dir) in [(&a, csv_dir.path()), (&b, xlsx_dir.path())] {
        let files = ledgers(dir);
        assert_eq!(files.len(), 9, "one file per ledger family");
        let mut args = vec!["etl".to_string(), "import".to_string()];
        args.extend(files.iter().map(|f| f.display().to_string()));
        let out = vscc(app, &args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            !report.contains("rejected rows"),
            "simulated ledgers import cleanly:\n{report}"
        );
    }
    let table = |app: &TestApp| {
        let client = app.store().client().clone();
        async move {
            client
                .query("SELECT id, kind, org, district, at, lon, lat, subject, num_keys, num_values, data \
                        FROM events ORDER BY id")
                .fetch_bytes("TSV")
                .unwrap()
                .collect()
                .await
                .unwrap()
                .to_vec()
        }
    };
    let (from_csv, from_xlsx): (Vec<u8>, Vec<u8>) = (table(&a).await, table(&b).await);
    assert!(from_csv.len() > 10_000);
    assert!(from_csv == from_xlsx, "the two imports differ");
    a.stop().await;
    b.stop().await;
}

#[test]
fn the_same_seed_writes_the_same_ledger_files() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    simulate("csv", one.path());
    simulate("csv", two.path());
    // Zipping two listings says nothing when both are empty or one is short: count first.
    let (first, second) = (ledgers(one.path()), ledgers(two.path()));
    assert_eq!(first.len(), 9, "one file per ledger family: {first:?}");
    assert_eq!(second.len(), first.len());
    for (x, y) in first.iter().zip(second) {
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(&y).unwrap(),
            "{}",
            x.display()
        );
    }
}

/// A ledger of a kind known from its definition file only ("五有" assessments): found by its
/// Chinese columns, cleaned and checked by the same path, its bad cell named by its column,
/// and its figures equal to the SQL.
#[tokio::test]
async fn a_ledger_of_a_kind_defined_only_by_its_file_is_imported_like_the_others() {
    const FIVE_HAVES: &str = "\u{feff}区,街道,社区,评估日期,有人员,有条件,有能力,有任务,有台账
南山区,南头街道,南头城社区,2021-03-04,是,是,是,是,是
南山区,南头街道,大新社区,2021年3月5日,是,否,是,是,是
南山区,南头街道,南头城社区,2021-03-06,是,是,是,是,也许
";
    let app = spawn_app().await;
    let clerk = app.user_token("clerk-ns-5", "clerk", "440305").await;
    let (status, summary) = upload(
        &app,
        &clerk,
        "五有评估台账.csv",
        FIVE_HAVES.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(
        (
            summary["family"].as_str(),
            summary["accepted"].as_u64(),
            summary["rejected"].as_u64()
        ),
        (Some("station.five_haves_assessed"), Some(2), Some(1)),
        "{summary}"
    );
    let reject = &summary["rejects"][0];
    assert_eq!(
        (
            reject["row"].as_u64(),
            reject["column"].as_str(),
            reject["reason"].as_str()
        ),
        (Some(4), Some("有台账"), Some("'也许' is not 是 or 否")),
        "{summary}"
    );
    app.wait_landed().await;
    let stored: Vec<(String, u8)> = app
        .store()
        .client()
        .query(
            "SELECT org, toUInt8(num_values[indexOf(num_keys, 'has_conditions')]) FROM events \
             WHERE kind = 'station.five_haves_assessed' ORDER BY at",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].1, 0, "大新's 有条件 is 否");
    // A finished import enters the live figures in the background, shortly after.
    let metric = app.state.hub.catalogue().parse_name("five_haves").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let live = loop {
        let live = app.state.hub.all_current();
        let city = &live.iter().find(|(c, _)| c == "440300").unwrap().1;
        if city.iter().any(|(m, f)| *m == metric && f.value.is_some()) {
            break live;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the import never reached the live figures"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    common::compared_with_sql(&app, &live, app.state.hub.now()).await;
}

/// A district re-checks its 在岗人数台账 and imports it again: the rows whose 记录编号 it
/// loaded before with other figures correct those records (the summary counts them, the change
/// report lists each cell), the unchanged ones are duplicates, and — asked to — the records the
/// ledger no longer holds are withdrawn. Every figure follows, and SQL agrees.
#[tokio::test]
async fn a_re_imported_ledger_corrects_changed_rows_and_withdraws_missing_ones_when_asked() {
    let app = spawn_app().await;
    let clerk = app.user_token("clerk-futian", "clerk", "440304").await;
    let first = "记录编号,单位代码,统计日期,在岗人数\n\
                 FT-HC-1,440304001,2026-11-01,120\n\
                 FT-HC-2,440304002,2026-11-01,8\n\
                 FT-HC-3,440304004,2026-11-01,6\n\
                 FT-HC-5,440304002,2026-10-01,7\n";
    let (status, summary) = upload(&app, &clerk, "hc.csv", first.as_bytes().to_vec()).await;
    assert_eq!(
        (status, summary["accepted"].as_u64()),
        (200, Some(4)),
        "{summary}"
    );
    let wait_for = |org: &'static str, want: Option<i64>| {
        let app = &app;
        async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let got = staff_on_duty(app, org).await;
                if got == want {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{org}: {got:?}, expected {want:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    wait_for("440304001", Some(120)).await;

    // Three cells fixed: 120 was 12, 8 was 9, FT-HC-5 was dated a day early; FT-HC-3 is no
    // longer in the ledger (kept: not asked).
    let second = "记录编号,单位代码,统计日期,在岗人数\n\
                  FT-HC-1,440304001,2026-11-01,12\n\
                  FT-HC-2,440304002,2026-11-01,9\n\
                  FT-HC-5,440304002,2026-10-02,7\n";
    let (status, summary) = upload(&app, &clerk, "hc.csv", second.as_bytes().to_vec()).await;
    assert_eq!(status, 200, "{summary}");
    let counts = |s: &Value| {
        [
            "accepted",
            "duplicates",
            "corrected",
            "withdrawn",
            "rejected",
        ]
        .map(|k| s[k].as_u64().unwrap_or(99))
    };
    assert_eq!(counts(&summary), [0, 0, 3, 0, 0], "{summary}");
    assert_eq!(
        summary["changes"],
        json!([
            {"行号": 2, "记录编号": "FT-HC-1", "列": "在岗人数", "原值": "120", "新值": "12"},
            {"行号": 3, "记录编号": "FT-HC-2", "列": "在岗人数", "原值": "8", "新值": "9"},
            {"行号": 4, "记录编号": "FT-HC-5", "列": "日期", "原值": "2026-10-01", "新值": "2026-10-02"}
        ])
    );
    let url = summary["changes_url"].as_str().expect("a change report");
    let report = app
        .http
        .get(format!("{}{url}", app.base))
        .bearer_auth(&clerk)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(report.contains("2,FT-HC-1,在岗人数,120,12"), "{report}");
    wait_for("440304001", Some(12)).await;
    wait_for("440304002", Some(9)).await;
    wait_for("440304004", Some(6)).await;

    // The same file again changes nothing; with withdraw_missing, FT-HC-3 goes.
    let (_, summary) = upload(&app, &clerk, "hc.csv", second.as_bytes().to_vec()).await;
    assert_eq!(counts(&summary), [0, 3, 0, 0, 0], "{summary}");
    let res = app
        .http
        .post(format!(
            "{}/api/v1/imports?name=hc.csv&withdraw_missing=true",
            app.base
        ))
        .bearer_auth(&clerk)
        .body(second.as_bytes().to_vec())
        .send()
        .await
        .unwrap();
    let summary: Value = res.json().await.unwrap();
    assert_eq!(
        counts(&summary),
        [0, 3, 0, 0, 0],
        "only orgs the file names: {summary}"
    );
    let with_third_org = format!("{second}FT-HC-4,440304004,2026-11-02,5\n");
    let res = app
        .http
        .post(format!(
            "{}/api/v1/imports?name=hc.csv&withdraw_missing=true",
            app.base
        ))
        .bearer_auth(&clerk)
        .body(with_third_org.into_bytes())
        .send()
        .await
        .unwrap();
    let summary: Value = res.json().await.unwrap();
    assert_eq!(counts(&summary), [1, 3, 0, 1, 0], "{summary}");
    wait_for("440304004", Some(5)).await;

    // The record's versions, and SQL over the effective records.
    let history = app
        .get_json("/api/v1/events/ledger:headcount:FT-HC-1")
        .await;
    let versions = history["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{history}");
    assert_eq!(
        (versions[1]["via"].as_str(), versions[1]["by"].as_str()),
        (Some("ledger"), Some("clerk-futian"))
    );
    assert_eq!(versions[1]["record"]["data"]["headcount"], 12);
    let imports: Value = app.get_json("/api/v1/imports").await;
    assert_eq!(imports[3]["corrected"], 3, "newest first: {imports}");
    let now = app.state.hub.now();
    crate::helpers::compared_with_sql(&app, &app.state.hub.all_current(), now).await;
    app.stop().await;
}
