//! `folio doc create | apply | get | log`.

use clap::{Args, Subcommand};
use futures::StreamExt;
use serde_json::{Value, json};

use folio_core::{Branch, DocumentId, Operation, Scope, SyncUnit};
use folio_reactor::{ReactorError, Submit};

use crate::CliError;
use crate::context::Global;

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
    s.parse().map_err(|_| CliError::usage(format!("{s:?} is not a document id (a UUID)")))
}

fn parse_branch(s: &str) -> Result<Branch, CliError> {
    Branch::new(s).map_err(|e| CliError::usage(e.to_string()))
}

fn parse_scope(s: &str) -> Result<Scope, CliError> {
    s.parse().map_err(|e: folio_core::CoreError| CliError::usage(e.to_string()))
}

fn reactor_error(e: ReactorError) -> CliError {
    match &e {
        ReactorError::ActionRejected { reason, .. } => {
            CliError::fail(format!("the action was rejected: {} ({})", reason.message, reason.code))
        }
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
        let reactor = global.reactor().await?;
        let result = reactor.create_document(&self.document_type, &self.name, id).await;
        reactor.shutdown().await;
        let doc = result.map_err(reactor_error)?;
        if global.json {
            println!("{}", doc.to_json());
        } else {
            println!("{}", doc.header.id);
        }
        Ok(())
    }
}

impl Apply {
    async fn run(&self, global: &Global) -> Result<(), CliError> {
        let id = parse_id(&self.id)?;
        let scope = parse_scope(&self.scope)?;
        let branch = parse_branch(&self.branch)?;
        let input: Value = serde_json::from_str(&self.input)
            .map_err(|e| CliError::usage(format!("the input is not valid JSON: {e}")))?;
        let reactor = global.reactor().await?;
        let action = reactor.action(&self.action_type, input, scope);
        let submit = Submit {
            document_id: id,
            branch,
            actions: vec![action],
            expected_revision: None,
        };
        let result = reactor.apply(submit).await;
        reactor.shutdown().await;
        let outcome = result.map_err(reactor_error)?;
        if global.json {
            println!(
                "{}",
                json!({ "jobId": outcome.job_id, "status": "completed", "revision": outcome.revision, "operations": outcome.operations })
            );
        } else {
            println!("{}", outcome.revision);
        }
        Ok(())
    }
}

impl Get {
    async fn run(&self, global: &Global) -> Result<(), CliError> {
        let id = parse_id(&self.id)?;
        let branch = parse_branch(&self.branch)?;
        let reactor = global.reactor().await?;
        let doc = match self.revision {
            Some(r) => reactor.get_at(id, &branch, r).await.map(|d| d.map(std::sync::Arc::new)),
            None => reactor.get(id, &branch).await,
        };
        reactor.shutdown().await;
        let doc = doc.map_err(reactor_error)?.ok_or_else(|| CliError::fail(format!("document {id} not found")))?;
        if global.json {
            println!("{}", doc.to_json());
        } else {
            let h = &doc.header;
            println!("{} ({})", if h.name.is_empty() { "(unnamed)" } else { &h.name }, h.document_type);
            println!("id:        {}", h.id);
            println!("branch:    {}", h.branch);
            println!(
                "revision:  global {}, local {}, document {}",
                h.revision.global, h.revision.local, h.revision.document
            );
            println!("created:   {}", h.created_at_utc_iso);
            println!("modified:  {}", h.last_modified_at_utc_iso);
            if h.deleted {
                println!("deleted:   yes");
            }
            println!("hash:      {}", doc.state_hash());
            println!(
                "state:\n{}",
                serde_json::to_string_pretty(&doc.global_json()).unwrap_or_default()
            );
        }
        Ok(())
    }
}

impl Log {
    async fn run(&self, global: &Global) -> Result<(), CliError> {
        let id = parse_id(&self.id)?;
        let scope = parse_scope(&self.scope)?;
        let branch = parse_branch(&self.branch)?;
        let store = global.open_store().await?;
        if store.header(id, &branch).await?.is_none() {
            return Err(CliError::fail(format!("document {id} not found")));
        }
        let unit = SyncUnit::new(id, scope, branch);
        let mut ops = store.read(&unit, 0, None);
        let mut all: Vec<Operation> = Vec::new();
        while let Some(op) = ops.next().await {
            let op = op?;
            if global.json {
                all.push(op);
            } else {
                println!(
                    "{:>6}  {}  {}  {}{}",
                    op.index,
                    folio_core::iso_from_millis(op.timestamp_utc_ms),
                    op.action.action_type,
                    op.action.input,
                    op.error.as_deref().map(|e| format!("  REJECTED: {e}")).unwrap_or_default()
                );
            }
        }
        if global.json {
            println!("{}", json!({ "operations": all }));
        }
        Ok(())
    }
}
