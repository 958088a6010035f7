//! `folio token create --role read|write|admin`.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use folio_server::{Role, Tokens};

use crate::CliError;
use crate::context::Global;
use crate::output::Out;

/// Token commands.
#[derive(Debug, Subcommand)]
pub enum Token {
    /// Creates a token and prints it once (it is stored hashed).
    Create(Create),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Read,
    Write,
    Admin,
}

#[derive(Debug, Args)]
pub struct Create {
    /// What the token may do.
    #[arg(long, value_enum)]
    role: RoleArg,
}

impl Token {
    pub fn run(&self, global: &Global) -> Result<(), CliError> {
        match self {
            Token::Create(c) => {
                let role = match c.role {
                    RoleArg::Read => Role::Read,
                    RoleArg::Write => Role::Write,
                    RoleArg::Admin => Role::Admin,
                };
                let secret = Tokens::create(&global.data_dir, role).map_err(|e| {
                    CliError::fail(format!("cannot write tokens in {}: {e}", global.data_dir.display()))
                })?;
                let mut out = Out::new();
                if global.json {
                    out.line(json!({ "token": secret, "role": role.as_str() }))?;
                } else {
                    out.line(secret)?;
                }
                out.finish()
            }
        }
    }
}
