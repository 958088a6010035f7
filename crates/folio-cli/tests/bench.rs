//! `folio bench`: argument errors, the JSON report and its schema, compare.

use std::process::Command;

use serde_json::Value;

fn folio(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(args)
        .output()
        .expect("run folio")
}

#[test]
fn argument_errors_are_usage_errors() {
    for args in [
        &["bench", "rehydrate", "--ops", "0"][..],
        &["bench", "rehydrate", "--ops", "many"],
        &["bench", "rehydrate", "--rounds", "0"],
        &["bench", "rehydrate", "--docs", "0"],
        &["bench", "rehydrate", "--workload", "chess"],
        &["bench", "append", "--writers", "0"],
        &["bench", "append", "--batch", "0"],
        &["bench", "rehydrate", "--database-url", "sqlite://x.db"],
        &["bench", "append", "--nodes", "2"],
        &["bench", "append", "--nodes", "0"],
        &["bench", "compare", "only-one.json"],
    ] {
        let out = folio(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

fn schema_check(report: &Value) {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schemas/bench-report.schema.json"
        ))
        .expect("the checked-in schema"),
    )
    .unwrap();
    // The report has every required top-level field of the schema, and nothing the schema does not name.
    let props = schema["properties"].as_object().unwrap();
    for required in schema["required"].as_array().unwrap() {
        assert!(report.get(required.as_str().unwrap()).is_some(), "missing {required}");
    }
    for key in report.as_object().unwrap().keys() {
        assert!(props.contains_key(key), "{key} is not in the schema");
    }
}

#[test]
fn rehydrate_json_report_follows_the_schema_and_compares() {
    let dir = tempfile::tempdir().unwrap();
    let out = folio(&[
        "bench",
        "rehydrate",
        "--ops",
        "200,400",
        "--rounds",
        "1",
        "--keyframe-every",
        "100",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON report on stdout");
    schema_check(&report);
    assert_eq!(report["benchmark"], "rehydrate");
    assert_eq!(report["version"], 1);
    let results = report["results"].as_array().unwrap();
    for case in ["cold-keyframed", "full-replay", "raw-sqlx", "warm"] {
        for ops in [200, 400] {
            let r = results
                .iter()
                .find(|r| r["case"] == case && r["ops"] == ops)
                .unwrap_or_else(|| panic!("{case} {ops}"));
            assert!(r["time"]["medianNs"].as_u64().unwrap() > 0);
            assert!(r["time"]["minNs"].as_u64() <= r["time"]["maxNs"].as_u64());
        }
    }
    let raw = results.iter().find(|r| r["case"] == "raw-sqlx").unwrap();
    assert_eq!(raw["ratioToBaseline"], 1.0);
    // Progress went to stderr, not stdout.
    assert!(!out.stderr.is_empty());

    let a = dir.path().join("a.json");
    std::fs::write(&a, &out.stdout).unwrap();
    let cmp = folio(&["bench", "compare", a.to_str().unwrap(), a.to_str().unwrap(), "--json"]);
    assert!(cmp.status.success(), "{cmp:?}");
    let changes: Value = serde_json::from_slice(&cmp.stdout).unwrap();
    assert_eq!(changes.as_array().unwrap().len(), results.len());
    assert!(changes.as_array().unwrap().iter().all(|c| c["changePercent"] == 0.0));
    let human = folio(&["bench", "compare", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("+0.0%"));

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"not\": \"a report\"}").unwrap();
    let out = folio(&["bench", "compare", a.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a folio bench report"));
}

/// The report's cases, in order.
fn case_names(report: &Value) -> Vec<&str> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["case"].as_str().unwrap())
        .collect()
}

#[test]
fn sync_reports_convergence_the_protocols_floor_and_the_baseline() {
    let out = folio(&[
        "bench", "sync", "--ops", "400", "--docs", "2", "--batch", "20", "--rounds", "1", "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    schema_check(&report);
    let cases = case_names(&report);
    assert_eq!(cases, ["sync-converge", "sync-floor", "raw-sqlx"]);
    let ns = |i: usize| report["results"][i]["time"]["medianNs"].as_u64().unwrap();
    // The floor is measured (its signatures checked, its hashes recomputed equal), and part of what converging did.
    assert!(ns(1) > 0 && ns(1) < ns(0), "{report}");
    assert!(report["results"][1]["ratioToBaseline"].as_f64().unwrap() > 0.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the protocol's floor: 800 entries shipped"), "{stderr}");
}

#[test]
fn append_reports_throughput_latency_and_the_baseline() {
    let out = folio(&[
        "bench",
        "append",
        "--writers",
        "4",
        "--docs",
        "2",
        "--ops",
        "200",
        "--rounds",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    schema_check(&report);
    let folio_case = &report["results"][0];
    assert_eq!(folio_case["case"], "folio");
    assert!(folio_case["opsPerSec"].as_f64().unwrap() > 0.0);
    assert!(folio_case["latencyP50Ns"].as_u64().unwrap() <= folio_case["latencyP99Ns"].as_u64().unwrap());
    assert_eq!(report["results"][1]["case"], "raw-sqlx");
    // The human output has the table.
    let human = folio(&[
        "bench",
        "append",
        "--writers",
        "2",
        "--docs",
        "1",
        "--ops",
        "50",
        "--rounds",
        "1",
    ]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("raw-sqlx") && text.contains("vs raw"), "{text}");
    // Bytes per operation beside the figures: the store's, a number of bytes for folio's row.
    assert!(
        text.lines()
            .any(|l| l.starts_with("case") && l.trim_end().ends_with("B/op")),
        "{text}"
    );
    let folio_row = text
        .lines()
        .find(|l| l.split_whitespace().take(2).eq(["folio", "50"]))
        .expect("folio's row");
    let bytes: f64 = folio_row
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .expect("bytes per operation");
    assert!(
        bytes > 100.0,
        "50 todo operations take more than 100 bytes each on disk: {folio_row}"
    );
}

#[test]
fn the_sweep_writes_an_svg_chart() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("chart.svg");
    let out = folio(&[
        "bench",
        "rehydrate",
        "--ops",
        "100,300",
        "--rounds",
        "1",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("full-replay") && text.contains("cold-keyframed"));
}

/// On PostgreSQL (`FOLIO_TEST_DATABASE_URL`; scripts/test provides it): both benchmarks run, the append one with
/// two nodes (a child process), the reports follow the schema, and every database they made is dropped.
#[test]
fn benchmarks_run_on_postgres_with_two_nodes_and_clean_up() {
    let url = folio_store::pg_testing::server_url();
    let list_databases = || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use sqlx::ConnectOptions;
            let mut conn = url
                .parse::<sqlx::postgres::PgConnectOptions>()
                .unwrap()
                .connect()
                .await
                .unwrap();
            sqlx::query_scalar::<_, String>("SELECT datname FROM pg_database WHERE datname LIKE 'folio_bench%'")
                .fetch_all(&mut conn)
                .await
                .unwrap()
        })
    };
    let before = list_databases();
    let append_on_pg = |nodes: &str| {
        folio(&[
            "bench",
            "append",
            "--database-url",
            &url,
            "--writers",
            "6",
            "--docs",
            "3",
            "--ops",
            "120",
            "--rounds",
            "1",
            "--nodes",
            nodes,
            "--json",
        ])
    };
    let append = append_on_pg("2");
    assert!(append.status.success(), "{append:?}");
    let report: Value = serde_json::from_slice(&append.stdout).unwrap();
    schema_check(&report);
    assert_eq!(report["parameters"]["backend"], "postgres");
    assert_eq!(report["parameters"]["nodes"], 2);
    assert_eq!(
        case_names(&report),
        ["folio", "raw-sqlx"],
        "no store floor for two nodes"
    );
    assert_eq!(report["results"][0]["ops"], 120);

    // One node: the store's floor too, the round's group commits sent again through the store alone (each must be
    // accepted, or the run fails).
    let one = append_on_pg("1");
    assert!(one.status.success(), "{one:?}");
    let report: Value = serde_json::from_slice(&one.stdout).unwrap();
    schema_check(&report);
    assert_eq!(case_names(&report), ["folio", "raw-sqlx", "store-floor"]);
    let floor = &report["results"][2];
    assert_eq!(floor["ops"], 120);
    assert!(floor["time"]["medianNs"].as_u64().unwrap() > 0, "{report}");
    assert!(floor["ratioToBaseline"].as_f64().unwrap() > 0.0, "{report}");
    let stderr = String::from_utf8_lossy(&one.stderr);
    let commits: u64 = stderr
        .split("the folio round's ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no store-floor note: {stderr}"));
    // 6 writers with one job each in flight: at least 120 / 6 commits, at most one an operation.
    assert!((20..=120).contains(&commits), "{commits} group commits: {stderr}");

    let rehydrate = folio(&[
        "bench",
        "rehydrate",
        "--database-url",
        &url,
        "--ops",
        "300",
        "--rounds",
        "1",
        "--json",
    ]);
    assert!(rehydrate.status.success(), "{rehydrate:?}");
    let report: Value = serde_json::from_slice(&rehydrate.stdout).unwrap();
    schema_check(&report);
    let cases = case_names(&report);
    assert_eq!(
        cases,
        ["cold-keyframed", "cold-kf-worst", "full-replay", "raw-sqlx", "warm"]
    );
    assert!(
        report["results"][0]["peakRssBytes"].as_u64().is_some(),
        "the load child ran on PostgreSQL"
    );
    assert_eq!(list_databases(), before, "the benchmark databases are dropped");
}
