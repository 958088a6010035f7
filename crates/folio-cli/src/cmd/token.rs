//! `folio token create|list|revoke`: the tokens of the data directory (`DIR/tokens`). A running `folio serve` on
//! that directory picks the changes up within a second: a revoked token is refused and its WebSockets closed.
//! (Over HTTP, an admin token does the same with `POST`/`GET /v1/tokens` and `DELETE /v1/tokens/{id}`.)

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use folio_server::auth::{NewTokenSpec, TokenError, TokenRecord};
use folio_server::{Role, Tokens};

use crate::CliError;
use crate::context::Global;
use crate::output::Out;

/// Token commands.
#[derive(Debug, Subcommand)]
pub enum Token {
    /// Creates a token and prints it once (it is stored hashed).
    Create(Create),
    /// Lists the tokens: id, label, principal, role, created, expires, last used; never a secret.
    List,
    /// Revokes a token by id or label: a server on this data directory refuses it within a second and closes its
    /// WebSockets.
    Revoke(Revoke),
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
    /// A name for people, unique among the tokens (`ci`, `alice-laptop`); shown in the request log.
    #[arg(long)]
    label: Option<String>,
    /// Who uses it (defaults to the label, or a fresh name).
    #[arg(long)]
    principal: Option<String>,
    /// How long it works: a number and a unit, `s`, `m`, `h`, `d` or `w` (`90d`, `12h`). Default: no expiry.
    #[arg(long, value_parser = parse_duration)]
    expires: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct Revoke {
    /// The token's id (from `folio token list`) or its label.
    id_or_label: String,
}

/// `90d`, `12h`, `30m`, `45s`, `2w`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit (90d, 12h, 30m, 45s, 2w)"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{text:?}: the unit is one of s, m, h, d, w (90d, 12h)")),
    };
    if n == 0 {
        return Err("an expiry must be in the future".into());
    }
    n.checked_mul(unit_secs)
        .filter(|s| *s <= 100 * 365 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?}: at most 100 years"))
}

fn rfc3339(ms: u64) -> String {
    folio_server::tokens_wire::rfc3339(ms)
}

fn listed(record: &TokenRecord, last_used: Option<u64>) -> serde_json::Value {
    serde_json::to_value(folio_server::tokens_wire::TokenInfo::of(record, last_used)).unwrap_or_default()
}

impl Token {
    pub fn run(&self, global: &Global) -> Result<(), CliError> {
        let dir = &global.data_dir;
        let mut out = Out::new();
        match self {
            Token::Create(c) => {
                let role = match c.role {
                    RoleArg::Read => Role::Read,
                    RoleArg::Write => Role::Write,
                    RoleArg::Admin => Role::Admin,
                };
                let spec = NewTokenSpec {
                    role,
                    label: c.label.clone(),
                    principal: c.principal.clone(),
                    expires_in: c.expires,
                };
                let (secret, record) = Tokens::create_with(dir, &spec).map_err(|e| match e {
                    TokenError::Io(e) => CliError::fail(format!("cannot write tokens in {}: {e}", dir.display())),
                    other => CliError::usage(other.to_string()),
                })?;
                if global.json {
                    let mut value = listed(&record, None);
                    value["token"] = json!(secret);
                    out.line(value)?;
                } else {
                    out.line(secret)?;
                }
            }
            Token::List => {
                let tokens = Tokens::list(dir)
                    .map_err(|e| CliError::fail(format!("cannot read the tokens of {}: {e}", dir.display())))?;
                let used = Tokens::last_used_of(dir);
                if global.json {
                    let list: Vec<_> = tokens.iter().map(|t| listed(t, used.get(&t.id()).copied())).collect();
                    out.line(json!({ "tokens": list }))?;
                } else if tokens.is_empty() {
                    out.line(format!("no tokens in {}", dir.display()))?;
                } else {
                    out.line(format!(
                        "{:<12}  {:<16}  {:<16}  {:<5}  {:<24}  {:<24}  last used",
                        "id", "label", "principal", "role", "created", "expires"
                    ))?;
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0);
                    for t in &tokens {
                        let expires = match t.expires_ms {
                            Some(e) if t.expired_at(now) => format!("expired {}", rfc3339(e)),
                            Some(e) => rfc3339(e),
                            None => "never".into(),
                        };
                        out.line(format!(
                            "{:<12}  {:<16}  {:<16}  {:<5}  {:<24}  {:<24}  {}",
                            t.id(),
                            t.label.as_deref().unwrap_or("-"),
                            t.principal,
                            t.role.as_str(),
                            rfc3339(t.created_ms),
                            expires,
                            used.get(&t.id()).map_or("never".into(), |ms| rfc3339(*ms)),
                        ))?;
                    }
                }
            }
            Token::Revoke(r) => {
                if !dir.join("tokens").exists() {
                    return Err(CliError::fail(format!(
                        "there are no tokens in {} (check --data-dir)",
                        dir.display()
                    )));
                }
                let revoked = Tokens::revoke(dir, &r.id_or_label).map_err(|e| match e {
                    TokenError::Io(e) => CliError::fail(format!("cannot rewrite the tokens of {}: {e}", dir.display())),
                    other => CliError::fail(other.to_string()),
                })?;
                if global.json {
                    out.line(listed(&revoked, None))?;
                } else {
                    out.line(format!(
                        "revoked {}{}: a server on {} refuses it within a second",
                        revoked.id(),
                        revoked.label.as_ref().map(|l| format!(" ({l})")).unwrap_or_default(),
                        dir.display()
                    ))?;
                }
            }
        }
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d").unwrap(), Duration::from_secs(90 * 86_400));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(12 * 3600));
        assert!(parse_duration("12").is_err());
        assert!(parse_duration("0d").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("99999999999999w").is_err());
    }
}
