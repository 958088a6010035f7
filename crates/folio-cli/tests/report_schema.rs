//! The JSON Schema of `folio bench --json` reports is generated from the Rust types and checked in.
//! `FOLIO_UPDATE_SCHEMAS=1 cargo test -p folio-cli --test report_schema` rewrites it.

#[path = "../src/bench/report_types.rs"]
mod report_types;

#[test]
fn bench_report_schema_is_up_to_date() {
    let schema = schemars::schema_for!(report_types::BenchReport);
    let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/bench-report.schema.json");
    if std::env::var("FOLIO_UPDATE_SCHEMAS").is_ok() {
        std::fs::write(path, &generated).unwrap();
    }
    let stored = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(
        stored, generated,
        "{path} differs from the BenchReport type; regenerate with FOLIO_UPDATE_SCHEMAS=1"
    );
}
