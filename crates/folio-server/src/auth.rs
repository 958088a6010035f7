//! Tokens: random secrets given to clients once, stored hashed (blake3) in `DIR/tokens`, compared in constant time.
//!
//! The file holds one token a line: `<blake3 hex> <role> <created ms>`. `folio token create` appends to it; the
//! server re-reads it when it changes: a token made while it runs works at once (an unknown token makes it look at
//! the file), and one removed from the file stops working within a second (a known token makes it look at most
//! once a second, not a `stat` per request).

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::http::Method;

use crate::ApiError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read documents, history, jobs; subscribe.
    Read,
    /// Also create, change and delete documents.
    Write,
    /// Also make tokens (`POST /v1/tokens`).
    Admin,
}

impl Role {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    /// Parses `read`, `write` or `admin`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The role a request of `method` to `path` needs: admin for the tokens, else read to read and write to change.
    pub fn needed_for(method: &Method, path: &str) -> Role {
        if path == "/v1/tokens" || path.starts_with("/v1/tokens/") {
            Role::Admin
        } else if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
            Role::Read
        } else {
            Role::Write
        }
    }
}

struct Loaded {
    modified: Option<SystemTime>,
    tokens: Vec<(blake3::Hash, Role)>,
}

/// The tokens of a data directory.
pub struct Tokens {
    path: PathBuf,
    loaded: RwLock<Loaded>,
    /// When the file was last looked at, in milliseconds since `epoch`.
    checked_ms: AtomicU64,
    epoch: Instant,
}

/// How often a known token makes the file be looked at again (so a token removed from it stops working within
/// this time); an unknown token always does (so a token just created works at once).
const RECHECK: Duration = Duration::from_secs(1);

/// A new random token (244 random bits).
pub fn new_secret() -> String {
    format!(
        "folio_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn read_file(path: &Path) -> std::io::Result<Vec<(blake3::Hash, Role)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let hash = blake3::Hash::from_hex(parts.next()?).ok()?;
            let role = Role::parse(parts.next()?)?;
            Some((hash, role))
        })
        .collect())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Tokens {
    /// The tokens of `data_dir`.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join("tokens");
        let tokens = read_file(&path)?;
        Ok(Self {
            loaded: RwLock::new(Loaded {
                modified: modified(&path),
                tokens,
            }),
            path,
            checked_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// Adds a token of `role` to the file and returns its secret (shown once, never stored).
    pub fn create(data_dir: &Path, role: Role) -> std::io::Result<String> {
        use std::io::Write;
        std::fs::create_dir_all(data_dir)?;
        let secret = new_secret();
        let hash = blake3::hash(secret.as_bytes());
        let created = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("tokens"))?;
        writeln!(file, "{} {} {created}", hash.to_hex(), role.as_str())?;
        file.sync_all()?;
        Ok(secret)
    }

    /// On first start: creates an admin token and writes its secret to `DIR/admin.token` (mode 0600). Returns the
    /// file's path when it was created.
    pub fn ensure_admin(data_dir: &Path) -> std::io::Result<Option<PathBuf>> {
        let path = data_dir.join("admin.token");
        if path.exists() {
            return Ok(None);
        }
        let secret = Self::create(data_dir, Role::Admin)?;
        std::fs::write(&path, format!("{secret}\n"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(Some(path))
    }

    fn refresh(&self) {
        let elapsed = self.epoch.elapsed().as_millis() as u64;
        self.checked_ms.store(elapsed, Ordering::Relaxed);
        let now = modified(&self.path);
        let stale = self.loaded.read().map(|l| l.modified != now).unwrap_or(true);
        if stale && let Ok(tokens) = read_file(&self.path) {
            let mut loaded = self.loaded.write().unwrap_or_else(|e| e.into_inner());
            *loaded = Loaded { modified: now, tokens };
        }
    }

    /// The role of `secret`, comparing its hash with every stored hash in constant time.
    pub fn role_of(&self, secret: &str) -> Option<Role> {
        let hash = blake3::hash(secret.as_bytes());
        let since = (self.epoch.elapsed().as_millis() as u64).saturating_sub(self.checked_ms.load(Ordering::Relaxed));
        let due = since >= RECHECK.as_millis() as u64;
        if due {
            self.refresh();
        }
        self.lookup(&hash).or_else(|| {
            // Unknown: the file may have just gained it (unless it was looked at a moment ago).
            if !due {
                self.refresh();
            }
            self.lookup(&hash)
        })
    }

    fn lookup(&self, hash: &blake3::Hash) -> Option<Role> {
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        let mut found = None;
        for (stored, role) in &loaded.tokens {
            // blake3::Hash's equality is constant-time.
            if stored == hash {
                found = Some(found.map_or(*role, |r: Role| r.max(*role)));
            }
        }
        found
    }

    /// Checks that `secret` may make a request needing `needed`.
    pub fn authorize(&self, secret: Option<&str>, needed: Role) -> Result<Role, ApiError> {
        let secret =
            secret.ok_or_else(|| ApiError::unauthorized("a token is needed: Authorization: Bearer <token>"))?;
        let role = self
            .role_of(secret)
            .ok_or_else(|| ApiError::unauthorized("unknown token"))?;
        if role < needed {
            return Err(ApiError::forbidden(format!(
                "a {} token may not do this; it needs {}",
                role.as_str(),
                needed.as_str()
            )));
        }
        Ok(role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_tokens_work_at_once_and_removed_ones_stop_within_the_recheck() {
        let dir = tempfile::tempdir().unwrap();
        let first = Tokens::create(dir.path(), Role::Write).unwrap();
        let tokens = Tokens::open(dir.path()).unwrap();
        assert_eq!(tokens.role_of(&first), Some(Role::Write));
        // Created after loading: known at once.
        let second = Tokens::create(dir.path(), Role::Read).unwrap();
        assert_eq!(tokens.role_of(&second), Some(Role::Read));
        assert_eq!(tokens.role_of("folio_not_a_token"), None);
        // Removed from the file: refused once the recheck interval passed.
        let kept: String = std::fs::read_to_string(dir.path().join("tokens"))
            .unwrap()
            .lines()
            .filter(|line| !line.starts_with(&blake3::hash(first.as_bytes()).to_hex().to_string()))
            .map(|line| format!("{line}\n"))
            .collect();
        std::fs::write(dir.path().join("tokens"), kept).unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(100));
        assert_eq!(tokens.role_of(&first), None);
        assert_eq!(tokens.role_of(&second), Some(Role::Read));
    }
}
