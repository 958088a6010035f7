//! Tokens: random secrets given to clients once, stored hashed (blake3) in `DIR/tokens`, compared in constant time.
//!
//! The file holds one token a line: `<blake3 hex> <role> <created ms>` and then optional `key=value` fields
//! (`principal=`, `label=`, `expires=<ms>`; values percent-encoded). Lines of older servers, without the fields,
//! still read. A token's id is the first 12 hex digits of its hash: stable, public, and never enough to use it.
//! `folio token create` (or `POST /v1/tokens`) appends to it, `folio token revoke` (or `DELETE /v1/tokens/{id}`)
//! rewrites it (a temporary file renamed over it), both under an advisory lock on `DIR/tokens.lock`. The files are
//! created 0600 and the data directory 0700, with the mode given at creation (no moment where they are readable).
//!
//! The server re-reads the file when it changes: a token made while it runs works at once (an unknown token makes it
//! look at the file), and one revoked stops working within a second (a known token makes it look at most once a
//! second, and [`Tokens::spawn_watch`] looks every quarter second, so an open WebSocket of a revoked token closes
//! too, see [`Tokens::changes`]). When each token was last used is kept in memory and written to `DIR/tokens.used`
//! now and then, so `folio token list` can show it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
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
    /// Also manage tokens (`/v1/tokens`) and read `/metrics`.
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

    /// The role a request of `method` to `path` needs: admin for the tokens and the metrics, else read to read and
    /// write to change.
    pub fn needed_for(method: &Method, path: &str) -> Role {
        if path == "/v1/tokens" || path.starts_with("/v1/tokens/") || path == "/metrics" {
            Role::Admin
        } else if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
            Role::Read
        } else {
            Role::Write
        }
    }
}

/// One token as stored (its hash, never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// blake3 of the secret.
    pub hash: blake3::Hash,
    /// What it may do.
    pub role: Role,
    /// When it was made, in milliseconds since the epoch.
    pub created_ms: u64,
    /// Who uses it: the name documents' owners and grants refer to, and the request log shows.
    pub principal: String,
    /// A name for people (`ci`, `alice-laptop`): unique among the tokens, so `revoke` can take it.
    pub label: Option<String>,
    /// When it stops working, in milliseconds since the epoch.
    pub expires_ms: Option<u64>,
}

impl TokenRecord {
    /// Its id: the first 12 hex digits of its hash.
    pub fn id(&self) -> String {
        id_of(&self.hash)
    }

    /// Whether it has expired at `now_ms`.
    pub fn expired_at(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|e| now_ms >= e)
    }

    fn line(&self) -> String {
        let mut line = format!("{} {} {}", self.hash.to_hex(), self.role.as_str(), self.created_ms);
        line.push_str(&format!(" principal={}", encode(&self.principal)));
        if let Some(label) = &self.label {
            line.push_str(&format!(" label={}", encode(label)));
        }
        if let Some(e) = self.expires_ms {
            line.push_str(&format!(" expires={e}"));
        }
        line
    }

    fn parse(line: &str) -> Option<TokenRecord> {
        let mut parts = line.split_whitespace();
        let hash = blake3::Hash::from_hex(parts.next()?).ok()?;
        let role = Role::parse(parts.next()?)?;
        let created_ms = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut record = TokenRecord {
            hash,
            role,
            created_ms,
            principal: format!("token-{}", id_of(&hash)),
            label: None,
            expires_ms: None,
        };
        for field in parts {
            match field.split_once('=') {
                Some(("principal", v)) => record.principal = decode(v),
                Some(("label", v)) => record.label = Some(decode(v)),
                Some(("expires", v)) => record.expires_ms = v.parse().ok(),
                _ => {}
            }
        }
        Some(record)
    }
}

fn id_of(hash: &blake3::Hash) -> String {
    hash.to_hex()[..12].to_owned()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'@' | b':' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a new token is: `folio token create` and `POST /v1/tokens`.
#[derive(Debug, Clone)]
pub struct NewTokenSpec {
    /// What it may do.
    pub role: Role,
    /// A unique name for people.
    pub label: Option<String>,
    /// Who uses it; defaults to the label, or a fresh name.
    pub principal: Option<String>,
    /// How long it works.
    pub expires_in: Option<Duration>,
}

impl NewTokenSpec {
    /// A token of `role`, without label, principal or expiry.
    pub fn role(role: Role) -> Self {
        Self {
            role,
            label: None,
            principal: None,
            expires_in: None,
        }
    }
}

/// Why a token could not be made or revoked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Another token has this label (409 `LABEL_TAKEN`).
    #[error("another token is labelled {0:?}; labels are unique so that `revoke` can take them")]
    LabelTaken(String),
    /// A label or principal that cannot be used (400 `BAD_REQUEST`).
    #[error("{0}")]
    Invalid(String),
    /// No token has this id or label (404 `TOKEN_NOT_FOUND`).
    #[error("no token has the id or label {0:?}")]
    NotFound(String),
    /// The files could not be read or written (500).
    #[error("the tokens file: {0}")]
    Io(#[from] std::io::Error),
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        use axum::http::StatusCode;
        match e {
            TokenError::LabelTaken(_) => ApiError::new(StatusCode::CONFLICT, "LABEL_TAKEN", e.to_string()),
            TokenError::Invalid(m) => ApiError::bad_request(m),
            TokenError::NotFound(_) => ApiError::not_found("TOKEN_NOT_FOUND", e.to_string()),
            TokenError::Io(_) => ApiError::internal(e.to_string()),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Creates `dir` (and its parents) with mode 0700 where it is missing: no moment where it is readable by others.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Opens `path` for writing, created with mode 0600 when missing.
fn private_file(path: &Path, append: bool) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true);
    if append {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Writes `text` to `path` through a temporary file (mode 0600) renamed over it.
fn replace_file(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = private_file(&tmp, false)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Holds the advisory lock of `DIR/tokens.lock` while it lives: one writer of the tokens file at a time.
struct FileLock(std::fs::File);

impl FileLock {
    fn take(data_dir: &Path) -> std::io::Result<Self> {
        let file = private_file(&data_dir.join("tokens.lock"), true)?;
        file.lock()?;
        Ok(Self(file))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn read_file(path: &Path) -> std::io::Result<Vec<TokenRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text.lines().filter_map(TokenRecord::parse).collect())
}

/// What tells a changed file from the one loaded: modification time, length and inode (a rename changes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(Option<(SystemTime, u64, u64)>);

fn stamp(path: &Path) -> Stamp {
    Stamp(std::fs::metadata(path).ok().and_then(|m| {
        #[cfg(unix)]
        let ino = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let ino = 0;
        Some((m.modified().ok()?, m.len(), ino))
    }))
}

struct Loaded {
    stamp: Stamp,
    tokens: Vec<Arc<TokenRecord>>,
}

/// The tokens of a data directory.
pub struct Tokens {
    data_dir: PathBuf,
    path: PathBuf,
    loaded: RwLock<Loaded>,
    /// When the file was last looked at, in milliseconds since `epoch`.
    checked_ms: AtomicU64,
    epoch: Instant,
    /// When each token (by id) was last used, in milliseconds since the epoch; and whether that changed since it
    /// was last written to `tokens.used`.
    last_used: Mutex<(HashMap<String, u64>, bool)>,
    /// Bumped whenever the set of tokens changes (a revoke, an expiry seen by the watch): WebSockets re-check theirs.
    changes: tokio::sync::watch::Sender<u64>,
}

/// How often a known token makes the file be looked at again (so a token removed from it stops working within
/// this time); an unknown token always does (so a token just created works at once).
const RECHECK: Duration = Duration::from_secs(1);
/// How often [`Tokens::spawn_watch`] looks at the file.
const WATCH: Duration = Duration::from_millis(250);
/// How often the last-used times are written to `tokens.used` (when they changed).
const USED_FLUSH: Duration = Duration::from_secs(30);

/// A new random token (244 random bits).
pub fn new_secret() -> String {
    format!(
        "folio_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Who made a request: what the auth layer found for its token (a request extension, and a response one for the
/// request log).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's id.
    pub id: String,
    /// Its label, if any.
    pub label: Option<String>,
    /// Its principal.
    pub principal: String,
    /// Its role.
    pub role: Role,
}

impl Tokens {
    /// The tokens of `data_dir`.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join("tokens");
        let tokens = read_file(&path)?.into_iter().map(Arc::new).collect();
        let last_used = read_used(&data_dir.join("tokens.used"));
        Ok(Self {
            data_dir: data_dir.to_owned(),
            loaded: RwLock::new(Loaded {
                stamp: stamp(&path),
                tokens,
            }),
            path,
            checked_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            last_used: Mutex::new((last_used, false)),
            changes: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Adds a token of `role` to the file and returns its secret (shown once, never stored).
    pub fn create(data_dir: &Path, role: Role) -> std::io::Result<String> {
        Self::create_with(data_dir, &NewTokenSpec::role(role))
            .map(|(secret, _)| secret)
            .map_err(|e| match e {
                TokenError::Io(e) => e,
                other => std::io::Error::other(other.to_string()),
            })
    }

    /// Adds a token to the file and returns its secret (shown once, never stored) and its record.
    pub fn create_with(data_dir: &Path, spec: &NewTokenSpec) -> Result<(String, TokenRecord), TokenError> {
        for (what, value) in [("label", &spec.label), ("principal", &spec.principal)] {
            if let Some(v) = value
                && (v.is_empty() || v.chars().count() > 200 || v.chars().any(|c| c.is_ascii_control()))
            {
                return Err(TokenError::Invalid(format!(
                    "a {what} is 1 to 200 characters, no ASCII control characters"
                )));
            }
        }
        if spec.principal.as_ref().or(spec.label.as_ref()).map(String::as_str) == Some(folio_core::document::EVERYONE) {
            return Err(TokenError::Invalid(
                "`*` is no principal: a grant to `*` is a grant to everyone holding a token".into(),
            ));
        }
        create_private_dir(data_dir)?;
        let _lock = FileLock::take(data_dir)?;
        let path = data_dir.join("tokens");
        if let Some(label) = &spec.label
            && read_file(&path)?.iter().any(|t| t.label.as_ref() == Some(label))
        {
            return Err(TokenError::LabelTaken(label.clone()));
        }
        let secret = new_secret();
        let hash = blake3::hash(secret.as_bytes());
        let created_ms = now_ms();
        let record = TokenRecord {
            hash,
            role: spec.role,
            created_ms,
            principal: spec
                .principal
                .clone()
                .or_else(|| spec.label.clone())
                .unwrap_or_else(|| format!("token-{}", id_of(&hash))),
            label: spec.label.clone(),
            expires_ms: spec.expires_in.map(|d| created_ms.saturating_add(d.as_millis() as u64)),
        };
        let mut file = private_file(&path, true)?;
        writeln!(file, "{}", record.line())?;
        file.sync_all()?;
        Ok((secret, record))
    }

    /// Every token of `data_dir`'s file, oldest first.
    pub fn list(data_dir: &Path) -> std::io::Result<Vec<TokenRecord>> {
        read_file(&data_dir.join("tokens"))
    }

    /// When each token was last used, by id, as the server last wrote it (`tokens.used`).
    pub fn last_used_of(data_dir: &Path) -> HashMap<String, u64> {
        read_used(&data_dir.join("tokens.used"))
    }

    /// Removes the token whose id or label is `id_or_label` from `data_dir`'s file and returns it. A server on that
    /// directory refuses it within a second and closes its WebSockets.
    pub fn revoke(data_dir: &Path, id_or_label: &str) -> Result<TokenRecord, TokenError> {
        let _lock = FileLock::take(data_dir)?;
        let path = data_dir.join("tokens");
        let tokens = read_file(&path)?;
        let matches = |t: &TokenRecord| t.id() == id_or_label || t.label.as_deref() == Some(id_or_label);
        let Some(revoked) = tokens.iter().find(|t| matches(t)).cloned() else {
            return Err(TokenError::NotFound(id_or_label.to_owned()));
        };
        let kept: String = tokens
            .iter()
            .filter(|t| !matches(t))
            .map(|t| format!("{}\n", t.line()))
            .collect();
        replace_file(&path, &kept)?;
        Ok(revoked)
    }

    /// On first start: creates an admin token (label and principal `admin`) and writes its secret to
    /// `DIR/admin.token` (mode 0600 from its creation). Returns the file's path when it was created.
    pub fn ensure_admin(data_dir: &Path) -> std::io::Result<Option<PathBuf>> {
        let path = data_dir.join("admin.token");
        if path.exists() {
            return Ok(None);
        }
        create_private_dir(data_dir)?;
        let spec = NewTokenSpec {
            label: Some("admin".into()),
            ..NewTokenSpec::role(Role::Admin)
        };
        let secret = match Self::create_with(data_dir, &spec) {
            Ok((secret, _)) => secret,
            // A token labelled admin exists but the file was deleted: make another, unlabelled.
            Err(TokenError::LabelTaken(_)) => Self::create(data_dir, Role::Admin)?,
            Err(TokenError::Io(e)) => return Err(e),
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        };
        let mut file = private_file(&path, false)?;
        file.write_all(format!("{secret}\n").as_bytes())?;
        file.sync_all()?;
        Ok(Some(path))
    }

    /// The directory whose tokens these are.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Re-reads the file if it changed; tells the WebSockets when it did.
    pub fn refresh(&self) {
        let elapsed = self.epoch.elapsed().as_millis() as u64;
        self.checked_ms.store(elapsed, Ordering::Relaxed);
        let now = stamp(&self.path);
        let stale = self.loaded.read().map(|l| l.stamp != now).unwrap_or(true);
        if stale && let Ok(tokens) = read_file(&self.path) {
            let mut loaded = self.loaded.write().unwrap_or_else(|e| e.into_inner());
            *loaded = Loaded {
                stamp: now,
                tokens: tokens.into_iter().map(Arc::new).collect(),
            };
            drop(loaded);
            self.changes.send_modify(|g| *g += 1);
        }
    }

    /// A receiver that changes whenever the set of tokens does: a WebSocket re-checks its token with
    /// [`Tokens::still_valid`] then.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether the token of id `id` still works (not revoked, not expired).
    pub fn still_valid(&self, id: &str) -> bool {
        let now = now_ms();
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        loaded.tokens.iter().any(|t| t.id() == id && !t.expired_at(now))
    }

    /// Every token the server knows now, with when each was last used.
    pub fn snapshot(&self) -> Vec<(Arc<TokenRecord>, Option<u64>)> {
        self.refresh();
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        let used = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        loaded
            .tokens
            .iter()
            .map(|t| (t.clone(), used.0.get(&t.id()).copied()))
            .collect()
    }

    /// Looks at the file every quarter second (a token revoked by `folio token revoke` on this directory closes its
    /// WebSockets within a second, and one that expires is announced too), and writes the last-used times now and
    /// then. Needs a tokio runtime; ends when the last reference to `self` does.
    pub fn spawn_watch(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WATCH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_flush = Instant::now();
            let mut next_expiry_check = Instant::now();
            loop {
                tick.tick().await;
                let Some(tokens) = weak.upgrade() else { return };
                let t = tokens.clone();
                let flush = last_flush.elapsed() >= USED_FLUSH;
                if flush {
                    last_flush = Instant::now();
                }
                let check_expiry = Instant::now() >= next_expiry_check;
                if check_expiry {
                    next_expiry_check = Instant::now() + Duration::from_secs(1);
                }
                let _ = tokio::task::spawn_blocking(move || {
                    t.refresh();
                    if check_expiry && t.any_expired() {
                        // Not a file change: tell the WebSockets, which find out whether theirs is the one.
                        t.changes.send_modify(|g| *g += 1);
                    }
                    if flush {
                        t.flush_used();
                    }
                })
                .await;
            }
        });
    }

    fn any_expired(&self) -> bool {
        let now = now_ms();
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        // Those that expired in the last two seconds: a WebSocket of each must close.
        loaded
            .tokens
            .iter()
            .any(|t| t.expires_ms.is_some_and(|e| e <= now && now - e < 2_000))
    }

    /// Writes the last-used times to `tokens.used` if they changed.
    pub fn flush_used(&self) {
        let text = {
            let mut used = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
            if !used.1 {
                return;
            }
            used.1 = false;
            used.0.iter().map(|(id, ms)| format!("{id} {ms}\n")).collect::<String>()
        };
        if let Err(e) = replace_file(&self.data_dir.join("tokens.used"), &text) {
            tracing::warn!("cannot write {}: {e}", self.data_dir.join("tokens.used").display());
        }
    }

    /// The record of `secret`, comparing its hash with every stored hash in constant time.
    pub fn record_of(&self, secret: &str) -> Option<Arc<TokenRecord>> {
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

    /// The role of `secret`.
    pub fn role_of(&self, secret: &str) -> Option<Role> {
        self.record_of(secret).map(|r| r.role)
    }

    fn lookup(&self, hash: &blake3::Hash) -> Option<Arc<TokenRecord>> {
        let loaded = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        let mut found: Option<&Arc<TokenRecord>> = None;
        for stored in &loaded.tokens {
            // blake3::Hash's equality is constant-time.
            if &stored.hash == hash && found.is_none_or(|f| stored.role > f.role) {
                found = Some(stored);
            }
        }
        found.cloned()
    }

    /// Checks that `secret` may make a request needing `needed`, and says who made it.
    pub fn authenticate(&self, secret: Option<&str>, needed: Role) -> Result<Caller, ApiError> {
        let secret =
            secret.ok_or_else(|| ApiError::unauthorized("a token is needed: Authorization: Bearer <token>"))?;
        let record = self
            .record_of(secret)
            .ok_or_else(|| ApiError::unauthorized("unknown token (never issued, or revoked)"))?;
        let now = now_ms();
        if record.expired_at(now) {
            return Err(ApiError::unauthorized("this token has expired"));
        }
        if record.role < needed {
            return Err(ApiError::forbidden(format!(
                "a {} token may not do this; it needs {}",
                record.role.as_str(),
                needed.as_str()
            )));
        }
        let id = record.id();
        {
            let mut used = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
            // Minute precision is enough for "last used", and keeps the map's writes rare.
            let entry = used.0.entry(id.clone()).or_insert(0);
            if now.saturating_sub(*entry) >= 60_000 {
                *entry = now;
                used.1 = true;
            }
        }
        Ok(Caller {
            id,
            label: record.label.clone(),
            principal: record.principal.clone(),
            role: record.role,
        })
    }

    /// Checks that `secret` may make a request needing `needed`.
    pub fn authorize(&self, secret: Option<&str>, needed: Role) -> Result<Role, ApiError> {
        self.authenticate(secret, needed).map(|c| c.role)
    }

    /// Makes a token in this directory (`POST /v1/tokens`); it works at once.
    pub fn create_here(&self, spec: &NewTokenSpec) -> Result<(String, TokenRecord), TokenError> {
        let made = Self::create_with(&self.data_dir, spec)?;
        self.refresh();
        Ok(made)
    }

    /// Revokes a token of this directory (`DELETE /v1/tokens/{id}`): refused at once, its WebSockets closed.
    pub fn revoke_here(&self, id_or_label: &str) -> Result<TokenRecord, TokenError> {
        let revoked = Self::revoke(&self.data_dir, id_or_label)?;
        self.refresh();
        Ok(revoked)
    }
}

fn read_used(path: &Path) -> HashMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (id, ms) = l.split_once(' ')?;
            Some((id.to_owned(), ms.trim().parse().ok()?))
        })
        .collect()
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

    #[test]
    fn labels_principals_expiry_and_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let spec = NewTokenSpec {
            label: Some("ci runner".into()),
            expires_in: Some(Duration::from_secs(3600)),
            ..NewTokenSpec::role(Role::Write)
        };
        let (secret, record) = Tokens::create_with(&data, &spec).unwrap();
        assert_eq!(record.principal, "ci runner");
        assert!(matches!(
            Tokens::create_with(&data, &spec),
            Err(TokenError::LabelTaken(_))
        ));
        let listed = Tokens::list(&data).unwrap();
        assert_eq!(listed, vec![record.clone()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&data), 0o700);
            assert_eq!(mode(&data.join("tokens")), 0o600);
        }
        let tokens = Tokens::open(&data).unwrap();
        let caller = tokens.authenticate(Some(&secret), Role::Read).unwrap();
        assert_eq!(caller.label.as_deref(), Some("ci runner"));
        assert_eq!(Tokens::revoke(&data, "ci runner").unwrap().id(), record.id());
        assert!(matches!(
            Tokens::revoke(&data, &record.id()),
            Err(TokenError::NotFound(_))
        ));
        tokens.refresh();
        assert!(!tokens.still_valid(&record.id()));
        // An old line (no fields) still reads.
        let old = format!("{} read 5\n", blake3::hash(b"x").to_hex());
        let parsed = TokenRecord::parse(old.trim()).unwrap();
        assert_eq!((parsed.role, parsed.created_ms, parsed.label), (Role::Read, 5, None));
        // Expired: refused.
        let spec = NewTokenSpec {
            expires_in: Some(Duration::ZERO),
            ..NewTokenSpec::role(Role::Read)
        };
        let (expired, _) = Tokens::create_with(&data, &spec).unwrap();
        assert!(tokens.authenticate(Some(&expired), Role::Read).is_err());
        assert_eq!(decode(&encode("a b%c/é")), "a b%c/é");
    }
}
