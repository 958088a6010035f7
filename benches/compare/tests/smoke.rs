//! Runs `folio-compare --quick --json` end to end: every engine builds, saves and loads both workloads in child
//! processes, and reads back the state the workload leads to (the binary fails otherwise). Times are not checked.

use std::process::Command;

use serde_json::Value;

#[test]
fn quick_comparison_runs_every_engine_on_every_workload() {
    let output = Command::new(env!("CARGO_BIN_EXE_folio-compare"))
        .args(["--quick", "--json", "--build-runs", "1", "--load-runs", "2"])
        .output()
        .expect("folio-compare runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "folio-compare failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("stdout is one JSON document");
    assert_eq!(report["format"], 1);
    assert_eq!(report["quick"], true);
    assert!(report["baseline_rss_bytes"].as_u64().is_some());
    let results = report["results"].as_array().expect("results");
    let engines = ["folio", "folio-replay", "automerge", "yrs", "loro"];
    assert_eq!(results.len(), engines.len() * 2, "{results:#?}");
    for workload in ["map", "todo"] {
        for engine in engines {
            let row = results
                .iter()
                .find(|r| r["engine"] == engine && r["workload"] == workload)
                .unwrap_or_else(|| panic!("no row for {engine}/{workload}"));
            for field in ["build_ms", "load_ms", "load_read_ms"] {
                assert!(
                    row[field].as_f64().is_some_and(|v| v > 0.0),
                    "{engine}/{workload} {field}: {row}"
                );
            }
            for field in ["saved_bytes", "load_rss_bytes", "updates"] {
                assert!(
                    row[field].as_u64().is_some_and(|v| v > 0),
                    "{engine}/{workload} {field}: {row}"
                );
            }
            assert_eq!(row["load_runs_ms"].as_array().map(Vec::len), Some(2));
        }
    }
    let folio_map = results
        .iter()
        .find(|r| r["engine"] == "folio" && r["workload"] == "map")
        .unwrap();
    let details = folio_map["load_details"]
        .as_array()
        .expect("load_details: [name, ms] pairs");
    assert!(
        details.iter().any(|d| d[0] == "hydrate_ms" && d[1].as_f64().is_some()),
        "{details:?}"
    );
    let steps = folio_map["explain"].as_array().expect("explain: [name, value] pairs");
    assert!(steps.iter().any(|d| d[0] == "keyframe_parse_ms"), "{steps:?}");
    assert!(
        folio_map["before_keyframe"]["tail_ops"].as_u64().is_some(),
        "{folio_map}"
    );
    assert!(stderr.contains("workload map"), "progress goes to stderr");
}

#[test]
fn unknown_arguments_are_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_folio-compare"))
        .args(["--engines", "nosuch"])
        .output()
        .expect("folio-compare runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown engine"));
}
