//! `folio bench rehydrate | append | compare`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::CliError;
use crate::bench::target::Target;
use crate::bench::workload::Workload;
use crate::bench::{self, BenchReport, CaseResult, Machine, REPORT_VERSION, human_bytes, human_ns};
use crate::context::Global;
use crate::output::Out;

/// The benchmark harness.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Times cold (keyframed), full-replay and warm loads of documents beside a raw sqlx baseline.
    Rehydrate(Rehydrate),
    /// Times writers appending through the reactor beside raw sqlx multi-row inserts of the same rows.
    Append(Append),
    /// Two replicas and a server on loopback exchange operations made offline on both; the time to converge.
    Sync(SyncBench),
    /// Compares two reports written with --json.
    Compare(Compare),
    /// One cold load in this fresh process, for `rehydrate`'s memory figures (internal).
    #[command(hide = true)]
    LoadChild(LoadChild),
    /// One more node of a multi-node `append` round on PostgreSQL (internal).
    #[command(hide = true)]
    AppendNode(AppendNode),
}

#[derive(Debug, Args)]
pub struct LoadChild {
    /// The SQLite store (a PostgreSQL one comes with --database-url).
    #[arg(long)]
    db: Option<PathBuf>,
    /// The document.
    #[arg(long)]
    doc: String,
    /// Keyframe interval (0: full replay).
    #[arg(long)]
    keyframe_every: u64,
}

#[derive(Debug, Args)]
pub struct Rehydrate {
    /// Operations in each document's history; repeat or separate with commas for a sweep (1000,10000,100000).
    #[arg(long, value_delimiter = ',', default_value = "100000")]
    ops: Vec<u64>,
    /// Documents in the store.
    #[arg(long, default_value_t = 1)]
    docs: u64,
    /// Store a keyframe every this many operations.
    #[arg(long, default_value_t = folio_reactor::ReactorConfig::default().keyframe_every)]
    keyframe_every: u64,
    /// The workload.
    #[arg(long, value_enum, default_value = "todo")]
    workload: Workload,
    /// Rounds per measurement (after one warm-up).
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Also write an SVG chart of load time against history length.
    #[arg(long)]
    svg: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Append {
    /// Concurrent writers.
    #[arg(long, default_value_t = 100)]
    writers: u64,
    /// Documents written to.
    #[arg(long, default_value_t = 100)]
    docs: u64,
    /// Operations in all.
    #[arg(long, default_value_t = 20_000)]
    ops: u64,
    /// Actions per job.
    #[arg(long, default_value_t = 1)]
    batch: u64,
    /// Rounds, each on a fresh store.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Processes (nodes) sharing the writers on one database, each with its own reactor (PostgreSQL only).
    #[arg(long, default_value_t = 1)]
    nodes: u64,
}

#[derive(Debug, Args)]
pub struct AppendNode {
    /// The round's documents, comma-separated.
    #[arg(long, value_delimiter = ',')]
    ids: Vec<String>,
    /// Writers of the whole round.
    #[arg(long)]
    writers: u64,
    /// Operations of the whole round.
    #[arg(long)]
    ops: u64,
    /// Actions per job.
    #[arg(long)]
    batch: u64,
    /// Nodes of the round.
    #[arg(long)]
    nodes: u64,
    /// This node's number (1 ..= nodes - 1; the parent is 0).
    #[arg(long)]
    node: u64,
}

#[derive(Debug, Args)]
pub struct SyncBench {
    /// Operations made in all, half on each replica.
    #[arg(long, default_value_t = 100_000)]
    ops: u64,
    /// Documents they are spread over.
    #[arg(long, default_value_t = 10)]
    docs: u64,
    /// Actions per local job while building.
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Rounds, each on fresh stores.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

#[derive(Debug, Args)]
pub struct Compare {
    /// The earlier report.
    a: PathBuf,
    /// The later report.
    b: PathBuf,
}

fn usage_if(cond: bool, message: &str) -> Result<(), CliError> {
    if cond { Err(CliError::usage(message)) } else { Ok(()) }
}

fn report(benchmark: &str, parameters: serde_json::Value, results: Vec<CaseResult>) -> BenchReport {
    BenchReport {
        version: REPORT_VERSION,
        benchmark: benchmark.to_owned(),
        folio_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: folio_core::iso_from_millis(folio_core::clock::system_millis()),
        machine: Machine::here(),
        parameters: parameters.as_object().cloned().unwrap_or_default(),
        results,
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

fn print_report(out: &mut Out, title: &str, r: &BenchReport) -> Result<(), CliError> {
    out.line(title)?;
    out.line(format_args!(
        "{:<15} {:>9} {:>11} {:>11} {:>11} {:>12} {:>8} {:>10} {:>10} {:>7}",
        "case", "ops", "median", "min", "max", "ops/s", "vs raw", "peak RSS", "p99", "B/op"
    ))?;
    for c in &r.results {
        out.line(format_args!(
            "{:<15} {:>9} {:>11} {:>11} {:>11} {:>12} {:>8} {:>10} {:>10} {:>7}",
            c.case,
            c.ops,
            human_ns(c.time.median_ns),
            human_ns(c.time.min_ns),
            human_ns(c.time.max_ns),
            opt(c.ops_per_sec, |v| format!("{v:.0}")),
            opt(c.ratio_to_baseline, |v| format!("{v:.2}x")),
            c.peak_rss_bytes.map(human_bytes).unwrap_or_else(|| "-".into()),
            c.latency_p99_ns.map(human_ns).unwrap_or_else(|| "-".into()),
            opt(c.bytes_per_op, |v| format!("{v:.0}")),
        ))?;
    }
    Ok(())
}

impl Bench {
    pub async fn run(&self, global: &Global) -> Result<(), CliError> {
        let target = || Target::new(global.database_url.as_deref());
        match self {
            Bench::Rehydrate(a) => {
                usage_if(a.ops.is_empty() || a.ops.contains(&0), "--ops must be at least 1")?;
                usage_if(a.docs == 0, "--docs must be at least 1")?;
                usage_if(a.rounds == 0, "--rounds must be at least 1")?;
                let params = bench::rehydrate::Params {
                    ops: a.ops.clone(),
                    docs: a.docs,
                    keyframe_every: a.keyframe_every,
                    workload: a.workload,
                    rounds: a.rounds,
                };
                let target = target()?;
                let results = bench::rehydrate::run(&params, &target).await?;
                let r = report(
                    "rehydrate",
                    serde_json::json!({
                        "ops": a.ops, "docs": a.docs, "keyframeEvery": a.keyframe_every,
                        "workload": a.workload.name(), "rounds": a.rounds, "backend": target.backend(),
                    }),
                    results,
                );
                if let Some(svg) = &a.svg {
                    bench::chart::write_svg(
                        svg,
                        &format!(
                            "folio rehydration, {} workload, keyframe every {}",
                            a.workload.name(),
                            a.keyframe_every
                        ),
                        &r.results,
                    )?;
                }
                let mut out = Out::new();
                if global.json {
                    out.line(serde_json::to_string(&r)?)?;
                } else {
                    let title = format!(
                        "folio bench rehydrate: {} workload, {} doc(s), keyframe every {}, on {}, time per document",
                        a.workload.name(),
                        a.docs,
                        a.keyframe_every,
                        target.backend()
                    );
                    print_report(&mut out, &title, &r)?;
                    for c in r.results.iter().filter(|c| c.case == "full-replay") {
                        if let (Some(rss), Some(state)) = (c.peak_rss_bytes, c.state_bytes) {
                            let bound = 2 * state + 64 * 1024 * 1024;
                            out.line(format_args!(
                                "memory at {} ops: full replay peak RSS {} (final state {}; bound 2 x state + 64 MiB = {}: {})",
                                c.ops,
                                human_bytes(rss),
                                human_bytes(state),
                                human_bytes(bound),
                                if rss <= bound { "within" } else { "OVER" }
                            ))?;
                        }
                    }
                }
                out.finish()
            }
            Bench::Append(a) => {
                usage_if(
                    a.writers == 0 || a.docs == 0 || a.ops == 0 || a.batch == 0 || a.rounds == 0 || a.nodes == 0,
                    "--writers, --docs, --ops, --batch, --rounds and --nodes must be at least 1",
                )?;
                let target = target()?;
                usage_if(
                    a.nodes > 1 && !matches!(target, Target::Postgres(_)),
                    "--nodes above 1 needs --database-url postgres://… (nodes share one PostgreSQL database)",
                )?;
                usage_if(a.nodes > a.writers, "--nodes cannot exceed --writers")?;
                let params = bench::append::Params {
                    writers: a.writers,
                    docs: a.docs,
                    ops: a.ops,
                    batch: a.batch,
                    rounds: a.rounds,
                    nodes: a.nodes,
                };
                let results = bench::append::run(&params, &target).await?;
                let r = report(
                    "append",
                    serde_json::json!({
                        "writers": a.writers, "docs": a.docs, "ops": a.ops, "batch": a.batch, "rounds": a.rounds,
                        "nodes": a.nodes, "backend": target.backend(),
                    }),
                    results,
                );
                let mut out = Out::new();
                if global.json {
                    out.line(serde_json::to_string(&r)?)?;
                } else {
                    let title = format!(
                        "folio bench append: {} writers, {} documents, {} operations, {} action(s) per job, {} node(s) \
                         on {}",
                        a.writers,
                        a.docs,
                        a.ops,
                        a.batch,
                        a.nodes,
                        target.backend()
                    );
                    print_report(&mut out, &title, &r)?;
                    if let Some(p50) = r.results[0].latency_p50_ns {
                        out.line(format_args!("commit latency per job: p50 {}", human_ns(p50)))?;
                    }
                }
                out.finish()
            }
            Bench::Sync(a) => {
                usage_if(
                    a.ops < 2 || a.docs == 0 || a.batch == 0 || a.rounds == 0,
                    "--ops must be at least 2, --docs, --batch and --rounds at least 1",
                )?;
                let params = bench::sync::Params {
                    ops: a.ops,
                    docs: a.docs,
                    batch: a.batch,
                    rounds: a.rounds,
                };
                let results = bench::sync::run(&params).await?;
                let r = report(
                    "sync",
                    serde_json::json!({ "ops": a.ops, "docs": a.docs, "batch": a.batch, "rounds": a.rounds }),
                    results,
                );
                let mut out = Out::new();
                if global.json {
                    out.line(serde_json::to_string(&r)?)?;
                } else {
                    let title = format!(
                        "folio bench sync: two replicas and a server, {} operations made offline (half on each) over {} documents",
                        a.ops, a.docs
                    );
                    print_report(&mut out, &title, &r)?;
                }
                out.finish()
            }
            Bench::LoadChild(c) => {
                let measured = bench::rehydrate::load_child(
                    c.db.as_deref(),
                    global.database_url.as_deref(),
                    &c.doc,
                    c.keyframe_every,
                )
                .await?;
                let mut out = Out::new();
                out.line(measured)?;
                out.finish()
            }
            Bench::AppendNode(n) => {
                let url = global
                    .database_url
                    .as_deref()
                    .ok_or_else(|| CliError::usage("append-node needs --database-url"))?;
                let ids = n
                    .ids
                    .iter()
                    .map(|id| {
                        id.parse()
                            .map_err(|_| CliError::usage(format!("{id:?} is not a document id")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let params = bench::append::Params {
                    writers: n.writers,
                    docs: ids.len() as u64,
                    ops: n.ops,
                    batch: n.batch,
                    rounds: 1,
                    nodes: n.nodes,
                };
                bench::append::node_main(url, ids, &params, n.node).await
            }
            Bench::Compare(c) => {
                let a = bench::compare::load(&c.a)?;
                let b = bench::compare::load(&c.b)?;
                let changes = bench::compare::changes(&a, &b);
                let mut out = Out::new();
                if global.json {
                    out.line(serde_json::to_string(&changes)?)?;
                } else {
                    out.line(format_args!("{} vs {} ({})", c.a.display(), c.b.display(), a.benchmark))?;
                    for line in bench::compare::render(&changes).lines() {
                        out.line(line)?;
                    }
                }
                out.finish()
            }
        }
    }
}
