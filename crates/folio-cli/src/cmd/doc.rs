//! `folio doc create | apply | get | log`.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use folio_core::{Branch, DocumentId, Scope, SyncUnit};
use folio_reactor::{Reactor, ReactorError, Submit};

use crate::CliError;
use crate::context::{Global, Open};
use crate::output::Out;

/// Document commands.
#[derive(Debug, Subcommand)]
pub enum Doc {
    /// Creates a document of TYPE and prints its id.
    Create(Create),
    /// Applies one action and prints the new revision.
    Apply(Apply),
    /// Prints a document.
    Get(Get),
    /// Prints a document's history.
    Log(Log),
}

#[derive(Debug, Args)]
pub struct Create {
    /// The document type (`folio/todo-list`, `folio/json`).
    document_type: String,
    /// The document's name.
    #[arg(long, default_value = "")]
    name: String,
    /// The id to give it (a UUID); a new one by default.
    #[arg(long)]
    id: Option<String>,
}

#[derive(Debug, Args)]
pub struct Apply {
    /// The document's id.
    id: String,
    /// The action's type (`ADD_TODO`).
    action_type: String,
    /// The action's input, as JSON.
    input: String,
    /// The scope: global, local or document.
    #[arg(long, default_value = "global")]
    scope: String,
    /// The branch.
    #[arg(long, default_value = "main")]
    branch: String,
    /// The action's id (a UUID; a new one by default). Applying the same action again under its id is a retry:
    /// nothing is appended and the original revision is printed; another action under a used id is refused.
    #[arg(long)]
    action_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct Get {
    /// The document's id.
    id: String,
    /// The document as it was at this global revision.
    #[arg(long)]
    revision: Option<u64>,
    /// The branch.
    #[arg(long, default_value = "main")]
    branch: String,
}

#[derive(Debug, Args)]
pub struct Log {
    /// The document's id.
    id: String,
    /// The scope: global, local or document.
    #[arg(long, default_value = "global")]
    scope: String,
    /// The branch.
    #[arg(long, default_value = "main")]
    branch: String,
}

fn parse_id(s: &str) -> Result<DocumentId, CliError> {
    s.parse()
        .map_err(|_| CliError::usage(format!("{s:?} is not a document id (a UUID)")))
}

fn parse_branch(s: &str) -> Result<Branch, CliError> {
    Branch::new(s).map_err(|e| CliError::usage(e.to_string()))
}

fn parse_scope(s: &str) -> Result<Scope, CliError> {
    s.parse()
        .map_err(|e: folio_core::CoreError| CliError::usage(e.to_string()))
}

fn reactor_error(e: ReactorError) -> CliError {
    match &e {
        ReactorError::ActionRejected { reason, .. } => {
            CliError::fail(format!("the action was rejected: {} ({})", reason.message, reason.code))
        }
        ReactorError::DuplicateActionId { .. } => CliError::fail(format!("{e} (DUPLICATE_ACTION_ID)")),
        _ => CliError::fail(e.to_string()),
    }
}

impl Doc {
    pub async fn run(&self, global: &Global) -> Result<(), CliError> {
        match self {
            Doc::Create(c) => c.run(global).await,
            Doc::Apply(a) => a.run(global).await,
            Doc::Get(g) => g.run(global).await,
            Doc::Log(l) => l.run(global).await,
        }
    }
}

impl Create {
    async fn run(&self, global: &Global) -> Result<(), CliError> {
        let id = self.id.as_deref().map(parse_id).transpose()?;
        let reactor = global.reactor(Open::Create).await?;
        let result = reactor.create_document(&self.document_type, &self.name, id).await;
        reactor.shutdown().await;
        let doc = result.map_err(reactor_error)?;
        let mut out = Out::new();
        if global.json {
            out.line(doc.to_json())?;
        } else {
            out.line(doc.header.id)?;
        }
        out.finish()
    }
}

impl Apply {
    async fn run(&self, global: &Global) -> Result<(), CliError> {
        let id = parse_id(&self.id)?;
        let scope = parse_scope(&self.scope)?;
        let branch = parse_branch(&self.branch)?;
        let input: Value = serde_json::from_str(&self.input)
            .map_err(|e| CliError::usage(format!("the input is not valid JSON: {e}")))?;
        let action_id = self
            .action_id
            .as_deref()
            .map(|s| uuid::Uuid::parse_str(s).map_err(|e| CliError::usage(format!("--action-id {s:?}: {e}"))))
            .transpose()?;
        let reactor = global.reactor(Open::Create).await?;
        let mut action = reactor.action(&self.action_type, input, scope);
        if let Some(action_id) = action_id {
            action.id = action_id;
        }
        let submit = Submit {
            document_id: id,
            branch,
            actions: vec![action],
            expected_revision: None,
        };
        let result = reactor.apply(submit).await;
        reactor.shutdown().await;
        let outcome = result.map_err(reactor_error)?;
        let mut out = Out::new();
        if global.json {
            out.line(json!({
                "jobId": outcome.job_id,
                "status": "completed",
                "revision": outcome.revision,
                "operations": outcome.operations,
            }))?;
        } else {
            out.line(outcome.revision)?;
        }
        out.finish()
    }
}

impl Get {
    async fn run(&self, global: &Global) -> Result<(), CliError> {
        let id = parse_id(&self.id)?;
        let branch = parse_branch(&self.branch)?;
        let reactor = global.reactor(Open::Existing).await?;
        let doc = match self.revision {
            Some(r) => reactor.get_at(id, &branch, r).await.map(|d| d.map(std::sync::Arc::new)),
            None => reactor.get(id, &branch).await,
        };
        reactor.shutdown().await;
        let doc = doc
            .map_err(|e| match e {
                ReactorError::RevisionNotReached { wanted, reached } => CliError::fail(format!(
                    "document {id} has no global revision {wanted}: it is at revision {reached}"
                )),
                e => reactor_error(e),
            })?
            .ok_or_else(|| CliError::fail(format!("document {id} not found")))?;
        let mut out = Out::new();
        if global.json {
            out.line(doc.to_json())?;
            return out.finish();
        }
        let h = &doc.header;
        let name = if h.name.is_empty() { "(unnamed)" } else { &h.name };
        out.line(format_args!("{name} ({})", h.document_type))?;
        out.line(format_args!("id:          {}", h.id))?;
        out.line(format_args!("branch:      {}", h.branch))?;
        out.line(format_args!(
            "revision:    global {}, local {}, document {}",
            h.revision.global, h.revision.local, h.revision.document
        ))?;
        out.line(format_args!("created:     {}", h.created_at_utc_iso))?;
        out.line(format_args!("modified:    {}", h.last_modified_at_utc_iso))?;
        if h.deleted {
            out.line("deleted:     yes")?;
        }
        out.line(format_args!("state hash:  {}", doc.state_hash()))?;
        out.line(format_args!("state:\n{}", pretty(&doc.global_json())))?;
        if doc.local.as_object().is_none_or(|o| !o.is_empty()) {
            out.line(format_args!("local state:\n{}", pretty(&doc.local)))?;
        }
        out.finish()
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Operations read per page while printing a history: memory holds one page, whatever the history's length.
const LOG_PAGE: usize = 1000;

impl Log {
    async fn run(&self, global: &Global) -> Result<(), CliError> {
        let id = parse_id(&self.id)?;
        let scope = parse_scope(&self.scope)?;
        let branch = parse_branch(&self.branch)?;
        let reactor = global.reactor(Open::Existing).await?;
        let result = self.print(&reactor, global, SyncUnit::new(id, scope, branch)).await;
        reactor.shutdown().await;
        result
    }

    /// Prints the history page by page (`{ "operations": [...] }` with `--json`, streamed).
    async fn print(&self, reactor: &Reactor, global: &Global, unit: SyncUnit) -> Result<(), CliError> {
        let mut out = Out::new();
        let mut from = 0;
        let mut count = 0u64;
        loop {
            let page = reactor
                .operations_page(&unit, from, LOG_PAGE)
                .await
                .map_err(|e| match e {
                    ReactorError::DocumentNotFound(id) => CliError::fail(format!("document {id} not found")),
                    e => reactor_error(e),
                })?;
            for op in &page.operations {
                count += 1;
                if global.json {
                    let json = serde_json::to_string(op).map_err(|e| CliError::fail(e.to_string()))?;
                    out.text(format_args!(
                        "{}{json}",
                        if count == 1 { "{\"operations\":[" } else { "," }
                    ))?;
                    continue;
                }
                if count == 1 {
                    out.line(format_args!(
                        "{:>6}  {:<24}  {:<20}  INPUT",
                        "INDEX", "TIME (UTC)", "ACTION"
                    ))?;
                }
                let rejected = op
                    .error
                    .as_deref()
                    .map(|e| format!("  REJECTED: {e}"))
                    .unwrap_or_default();
                let rebase = if op.skip > 0 {
                    format!("  (rebase: replaces from index {})", op.index - op.skip)
                } else {
                    String::new()
                };
                out.line(format_args!(
                    "{:>6}  {:<24}  {:<20}  {}{rejected}{rebase}",
                    op.index,
                    folio_core::iso_from_millis(op.timestamp_utc_ms),
                    op.action.action_type,
                    op.action.input,
                ))?;
            }
            match page.next {
                Some(next) => from = next,
                None => break,
            }
        }
        if global.json {
            out.line(if count == 0 { "{\"operations\":[]}" } else { "]}" })?;
        } else if count == 0 {
            out.line(format_args!(
                "no operations in the {} scope of {} ({})",
                unit.scope, unit.document_id, unit.branch
            ))?;
        }
        out.finish()
    }
}
