//! `folio bench compare A.json B.json`: the change of every case's median from one report to another.

use std::path::Path;

use super::{BenchReport, human_ns};
use crate::CliError;

/// Reads a report written by `folio bench … --json`.
pub fn load(path: &Path) -> Result<BenchReport, CliError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| CliError::fail(format!("cannot read {}: {e}", path.display())))?;
    let report: BenchReport = serde_json::from_str(&text)
        .map_err(|e| CliError::fail(format!("{} is not a folio bench report: {e}", path.display())))?;
    if report.version != super::REPORT_VERSION {
        return Err(CliError::fail(format!(
            "{} is a report of version {}; this folio reads version {}",
            path.display(),
            report.version,
            super::REPORT_VERSION
        )));
    }
    Ok(report)
}

/// One row of a comparison.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// The case.
    pub case: String,
    /// Its history length or operation count.
    pub ops: u64,
    /// Median in A, nanoseconds.
    pub a_median_ns: u64,
    /// Median in B, nanoseconds.
    pub b_median_ns: u64,
    /// (B - A) / A, in percent: negative is faster.
    pub change_percent: f64,
}

/// The cases present in both reports, in A's order.
pub fn changes(a: &BenchReport, b: &BenchReport) -> Vec<Change> {
    a.results
        .iter()
        .filter_map(|ra| {
            let rb = b.results.iter().find(|rb| rb.case == ra.case && rb.ops == ra.ops)?;
            let (ma, mb) = (ra.time.median_ns, rb.time.median_ns);
            Some(Change {
                case: ra.case.clone(),
                ops: ra.ops,
                a_median_ns: ma,
                b_median_ns: mb,
                change_percent: if ma == 0 {
                    0.0
                } else {
                    (mb as f64 - ma as f64) * 100.0 / ma as f64
                },
            })
        })
        .collect()
}

/// The human table.
pub fn render(changes: &[Change]) -> String {
    let mut out = format!(
        "{:<16} {:>10} {:>12} {:>12} {:>9}\n",
        "case", "ops", "A median", "B median", "change"
    );
    for c in changes {
        out.push_str(&format!(
            "{:<16} {:>10} {:>12} {:>12} {:>+8.1}%\n",
            c.case,
            c.ops,
            human_ns(c.a_median_ns),
            human_ns(c.b_median_ns),
            c.change_percent
        ));
    }
    out
}
