//! `folio-compare`: folio against Automerge, yrs and Loro on the same workloads.
//!
//! ```text
//! folio-compare [--quick] [--json] [--engines folio,yrs,...] [--workloads map,todo]
//!               [--build-runs N] [--load-runs N]
//! ```
//!
//! Every measurement runs in a child process (this binary re-run with `--child PHASE ENGINE WORKLOAD DIR`), which
//! prints one JSON line and reports its own peak RSS (`VmHWM`). Phases: `build` (build, save, read back), `load`
//! (fresh load, read back), and for folio `load-before-keyframe` (the longest tail) and `explain` (the steps of a
//! rehydration timed one by one); `noop` gives the baseline RSS. The table shows medians; progress goes to stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use folio_bench_compare::{
    ENGINES, Engine, Folio, Result, Sizes, Summary, Workload, WorkloadKind, describe, engine, folio_keyframe_every,
    peak_rss_bytes,
};

struct Options {
    quick: bool,
    json: bool,
    engines: Vec<String>,
    workloads: Vec<WorkloadKind>,
    build_runs: usize,
    load_runs: usize,
}

const USAGE: &str = "usage: folio-compare [--quick] [--json] [--engines a,b] [--workloads map,todo] \
                     [--build-runs N] [--load-runs N]";

fn parse_options(args: &[String]) -> Result<Options> {
    let mut options = Options {
        quick: false,
        json: false,
        engines: ENGINES.iter().map(|e| (*e).to_owned()).collect(),
        workloads: WorkloadKind::ALL.to_vec(),
        build_runs: 3,
        load_runs: 5,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--json" => options.json = true,
            "--engines" => {
                options.engines = value()?.split(',').map(str::to_owned).collect();
                if let Some(bad) = options.engines.iter().find(|e| !ENGINES.contains(&e.as_str())) {
                    return Err(format!("unknown engine {bad:?} (known: {})", ENGINES.join(", ")).into());
                }
            }
            "--workloads" => {
                options.workloads = value()?
                    .split(',')
                    .map(|w| WorkloadKind::parse(w).ok_or_else(|| format!("unknown workload {w:?} (map, todo)")))
                    .collect::<Result<_, _>>()?;
            }
            "--build-runs" => options.build_runs = value()?.parse::<usize>()?.max(1),
            "--load-runs" => options.load_runs = value()?.parse::<usize>()?.max(1),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    Ok(options)
}

/// What a child reports, one JSON line on stdout.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ChildReport {
    /// Build: applying every update (ms).
    build_ms: f64,
    /// Build: writing the persisted form (ms).
    save_ms: f64,
    /// Build: bytes of the persisted form.
    saved_bytes: u64,
    /// Load: from the persisted form to a usable state (ms).
    load_ms: f64,
    /// Load: the same plus reading the whole state (ms).
    load_read_ms: f64,
    /// Load: the engine's named sub-timings.
    details: Vec<(String, f64)>,
    /// Explain (folio only): the steps of a rehydration, timed one by one.
    explain: Vec<(String, f64)>,
    /// The state read back (after the build, or after the load).
    entries: u64,
    /// Its fingerprint.
    fingerprint: u64,
    /// The child's peak RSS in bytes.
    rss_bytes: u64,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Runs one phase in this process (the child side).
fn child(phase: &str, engine_name: &str, workload: &str, dir: &Path, quick: bool) -> Result<ChildReport> {
    let kind = WorkloadKind::parse(workload).ok_or("unknown workload")?;
    let mut report = ChildReport::default();
    let summary: Summary = match phase {
        "noop" => Summary::default(),
        "build" => {
            let workload = Workload::generate(kind, if quick { Sizes::QUICK } else { Sizes::FULL });
            std::fs::create_dir_all(dir)?;
            let mut engine = engine(engine_name, kind, dir)?;
            let start = Instant::now();
            engine.build(&workload)?;
            report.build_ms = ms(start);
            let start = Instant::now();
            report.saved_bytes = engine.save()?;
            report.save_ms = ms(start);
            engine.read_all()?
        }
        "load" => {
            let mut engine = engine(engine_name, kind, dir)?;
            let start = Instant::now();
            engine.load()?;
            report.load_ms = ms(start);
            let summary = engine.read_all()?;
            report.load_read_ms = ms(start);
            report.details = engine
                .load_details()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            summary
        }
        "load-before-keyframe" => {
            let keyframe_every = folio_keyframe_every(engine_name)
                .filter(|k| *k > 0)
                .ok_or("load-before-keyframe is for keyframed folio only")?;
            let mut folio = Folio::new(kind, dir, keyframe_every)?;
            let start = Instant::now();
            let (revision, tail) = folio.load_before_keyframe()?;
            report.load_ms = ms(start);
            let summary = folio.read_all()?;
            report.load_read_ms = ms(start);
            report.details = vec![
                ("revision".to_owned(), revision as f64),
                ("tail_ops".to_owned(), tail as f64),
            ];
            summary
        }
        "explain" => {
            let keyframe_every = folio_keyframe_every(engine_name).ok_or("explain is for folio engines only")?;
            let mut folio = Folio::new(kind, dir, keyframe_every)?;
            report.explain = folio.explain()?.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            Summary::default()
        }
        other => return Err(format!("unknown phase {other:?}").into()),
    };
    report.entries = summary.entries;
    report.fingerprint = summary.fingerprint;
    report.rss_bytes = peak_rss_bytes();
    Ok(report)
}

/// Runs one phase in a child process and parses its report (the caller checks the state it read back).
fn run_child(phase: &str, engine: &str, kind: WorkloadKind, dir: &Path, quick: bool) -> Result<ChildReport> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command.args(["--child", phase, engine, kind.name()]).arg(dir);
    if quick {
        command.arg("--quick");
    }
    let output = command.stdin(Stdio::null()).stderr(Stdio::inherit()).output()?;
    if !output.status.success() {
        return Err(format!("{phase} of {engine}/{} failed ({})", kind.name(), output.status).into());
    }
    let line = String::from_utf8(output.stdout)?;
    Ok(serde_json::from_str(line.trim())?)
}

/// Medians and runs of one engine on one workload.
#[derive(Debug, Clone, Serialize)]
struct Row {
    engine: String,
    workload: &'static str,
    updates: usize,
    build_ms: f64,
    save_ms: f64,
    saved_bytes: u64,
    build_rss_bytes: u64,
    load_ms: f64,
    load_read_ms: f64,
    load_rss_bytes: u64,
    /// Medians of the engine's load sub-timings.
    load_details: Vec<(String, f64)>,
    /// folio only: medians of the steps of a rehydration timed one by one (`Folio::explain`), in separate processes.
    explain: Vec<(String, f64)>,
    /// Keyframed folio only: loads at the revision just before the newest keyframe, the longest tail.
    before_keyframe: Option<BeforeKeyframe>,
    build_runs_ms: Vec<f64>,
    load_runs_ms: Vec<f64>,
}

/// Medians of loads of a keyframed folio document at the revision just before its newest keyframe.
#[derive(Debug, Clone, Serialize)]
struct BeforeKeyframe {
    /// The revision loaded.
    revision: u64,
    /// Operations folded on top of the previous keyframe.
    tail_ops: u64,
    load_ms: f64,
    load_read_ms: f64,
    load_rss_bytes: u64,
}

#[derive(Debug, Serialize)]
struct Output {
    /// Bumped when the shape changes.
    format: u32,
    quick: bool,
    map_updates: u64,
    map_keys: u64,
    todo_items: u64,
    todo_updates: u64,
    build_runs: usize,
    load_runs: usize,
    /// Peak RSS of a child that only starts and reports: subtract it to see what a load itself costs.
    baseline_rss_bytes: u64,
    results: Vec<Row>,
}

fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Per name, in the order the runs reported them, the median of the values reported under that name.
fn medians<'a>(runs: impl Iterator<Item = &'a [(String, f64)]> + Clone) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for run in runs.clone() {
        for (name, _) in run {
            if !out.iter().any(|(n, _)| n == name) {
                let values = runs
                    .clone()
                    .flat_map(|r| r.iter().filter(|(n, _)| n == name).map(|(_, v)| *v));
                out.push((name.clone(), median(values)));
            }
        }
    }
    out
}

fn median_u64(values: impl IntoIterator<Item = u64>) -> u64 {
    median(values.into_iter().map(|v| v as f64)).round() as u64
}

fn check(report: &ChildReport, expected: &Summary, what: &str) -> Result<()> {
    let got = Summary {
        entries: report.entries,
        fingerprint: report.fingerprint,
    };
    if got != *expected {
        return Err(format!("{what}: read back {got:?}, expected {expected:?}").into());
    }
    Ok(())
}

fn measure(options: &Options, kind: WorkloadKind, workload: &Workload, engine: &str, root: &Path) -> Result<Row> {
    let mut builds = Vec::new();
    let mut dir = PathBuf::new();
    for run in 0..options.build_runs {
        let next = root.join(format!("{engine}-{}-{run}", kind.name()));
        let report = run_child("build", engine, kind, &next, options.quick)?;
        check(&report, &workload.expected, &format!("{engine}/{} build", kind.name()))?;
        eprintln!(
            "  {engine:>12} {:<4} build {}/{}: {}, saved {}",
            kind.name(),
            run + 1,
            options.build_runs,
            fmt_ms(report.build_ms),
            fmt_bytes(report.saved_bytes)
        );
        if run > 0 {
            std::fs::remove_dir_all(&dir)?;
        }
        dir = next;
        builds.push(report);
    }
    let mut loads = Vec::new();
    for run in 0..options.load_runs {
        let report = run_child("load", engine, kind, &dir, options.quick)?;
        check(&report, &workload.expected, &format!("{engine}/{} load", kind.name()))?;
        eprintln!(
            "  {engine:>12} {:<4} load {}/{}: {} ({} with a full read), peak RSS {}",
            kind.name(),
            run + 1,
            options.load_runs,
            fmt_ms(report.load_ms),
            fmt_ms(report.load_read_ms),
            fmt_bytes(report.rss_bytes)
        );
        loads.push(report);
    }
    let mut before_keyframe = None;
    if folio_keyframe_every(engine).is_some_and(|k| k > 0) {
        let mut runs = Vec::new();
        for _ in 0..options.load_runs {
            let report = run_child("load-before-keyframe", engine, kind, &dir, options.quick)?;
            let detail = |name: &str| {
                report
                    .details
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0, |(_, v)| *v as u64)
            };
            let (revision, tail_ops) = (detail("revision"), detail("tail_ops"));
            let expected = workload.summary_after(revision as usize);
            check(
                &report,
                &expected,
                &format!("{engine}/{} load at {revision}", kind.name()),
            )?;
            eprintln!(
                "  {engine:>12} {:<4} load at {revision} (tail of {tail_ops} ops): {}, peak RSS {}",
                kind.name(),
                fmt_ms(report.load_ms),
                fmt_bytes(report.rss_bytes)
            );
            runs.push((revision, tail_ops, report));
        }
        before_keyframe = runs.first().map(|(revision, tail_ops, _)| BeforeKeyframe {
            revision: *revision,
            tail_ops: *tail_ops,
            load_ms: median(runs.iter().map(|r| r.2.load_ms)),
            load_read_ms: median(runs.iter().map(|r| r.2.load_read_ms)),
            load_rss_bytes: median_u64(runs.iter().map(|r| r.2.rss_bytes)),
        });
    }
    let mut explains = Vec::new();
    if folio_keyframe_every(engine).is_some() {
        for _ in 0..options.load_runs {
            explains.push(run_child("explain", engine, kind, &dir, options.quick)?.explain);
        }
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(Row {
        engine: engine.to_owned(),
        workload: kind.name(),
        updates: workload.updates.len(),
        build_ms: median(builds.iter().map(|b| b.build_ms)),
        save_ms: median(builds.iter().map(|b| b.save_ms)),
        saved_bytes: median_u64(builds.iter().map(|b| b.saved_bytes)),
        build_rss_bytes: median_u64(builds.iter().map(|b| b.rss_bytes)),
        load_ms: median(loads.iter().map(|l| l.load_ms)),
        load_read_ms: median(loads.iter().map(|l| l.load_read_ms)),
        load_rss_bytes: median_u64(loads.iter().map(|l| l.rss_bytes)),
        load_details: medians(loads.iter().map(|l| l.details.as_slice())),
        explain: medians(explains.iter().map(Vec::as_slice)),
        before_keyframe,
        build_runs_ms: builds.iter().map(|b| b.build_ms).collect(),
        load_runs_ms: loads.iter().map(|l| l.load_ms).collect(),
    })
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

fn fmt_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

fn fmt_step(name: &str, value: f64) -> String {
    match name.rsplit_once('_') {
        Some((step, "ms")) => format!("{step} {}", fmt_ms(value)),
        Some((step, "kib")) => format!("{step} {value:.0} KiB"),
        Some((step, "ops")) => format!("{step} {value:.0} ops"),
        _ => format!("{name} {value}"),
    }
}

fn write_table(out: &mut dyn Write, output: &Output) -> std::io::Result<()> {
    writeln!(
        out,
        "| engine | workload | updates | build | save | saved size | load | load + read all | load peak RSS |"
    )?;
    writeln!(out, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")?;
    for r in &output.results {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.engine,
            r.workload,
            r.updates,
            fmt_ms(r.build_ms),
            fmt_ms(r.save_ms),
            fmt_bytes(r.saved_bytes),
            fmt_ms(r.load_ms),
            fmt_ms(r.load_read_ms),
            fmt_bytes(r.load_rss_bytes),
        )?;
        if let Some(b) = &r.before_keyframe {
            writeln!(
                out,
                "| {}, load just before a keyframe (tail of {} ops) | {} | | | | | {} | {} | {} |",
                r.engine,
                b.tail_ops,
                r.workload,
                fmt_ms(b.load_ms),
                fmt_ms(b.load_read_ms),
                fmt_bytes(b.load_rss_bytes),
            )?;
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "Medians of {} builds and {} loads, each in its own process. Peak RSS of a child that does nothing: {}.",
        output.build_runs,
        output.load_runs,
        fmt_bytes(output.baseline_rss_bytes)
    )?;
    writeln!(out)?;
    for r in output.results.iter().filter(|r| !r.load_details.is_empty()) {
        let load: Vec<String> = r.load_details.iter().map(|(k, v)| fmt_step(k, *v)).collect();
        let steps: Vec<String> = r.explain.iter().map(|(k, v)| fmt_step(k, *v)).collect();
        writeln!(
            out,
            "- {} / {} load: {}; step by step: {}.",
            r.engine,
            r.workload,
            load.join(", "),
            steps.join(", ")
        )?;
    }
    writeln!(out)?;
    let mut seen = Vec::new();
    for r in &output.results {
        if !seen.contains(&r.engine) {
            writeln!(out, "- {}: {}", r.engine, describe(&r.engine))?;
            seen.push(r.engine.clone());
        }
    }
    Ok(())
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let [_, phase, engine, workload, dir, rest @ ..] = args.as_slice() else {
            return Err("usage: folio-compare --child PHASE ENGINE WORKLOAD DIR [--quick]".into());
        };
        let quick = rest.iter().any(|a| a == "--quick");
        let report = child(phase, engine, workload, Path::new(dir), quick)?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let options = parse_options(&args)?;
    let sizes = if options.quick { Sizes::QUICK } else { Sizes::FULL };
    let root = tempfile::Builder::new().prefix("folio-compare-").tempdir()?;
    let baseline = run_child("noop", "folio", WorkloadKind::Map, root.path(), options.quick)?;
    let mut results = Vec::new();
    for &kind in &options.workloads {
        let workload = Workload::generate(kind, sizes);
        eprintln!("workload {}: {} updates", kind.name(), workload.updates.len());
        for engine in &options.engines {
            results.push(measure(&options, kind, &workload, engine, root.path())?);
        }
    }
    let output = Output {
        format: 1,
        quick: options.quick,
        map_updates: sizes.map_updates,
        map_keys: sizes.map_keys,
        todo_items: sizes.todo_items,
        todo_updates: sizes.todo_updates,
        build_runs: options.build_runs,
        load_runs: options.load_runs,
        baseline_rss_bytes: baseline.rss_bytes,
        results,
    };
    if options.json {
        println!("{}", serde_json::to_string_pretty(&output)?);
        write_table(&mut std::io::stderr(), &output)?;
    } else {
        write_table(&mut std::io::stdout(), &output)?;
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("folio-compare: {e}");
        std::process::exit(1);
    }
}
