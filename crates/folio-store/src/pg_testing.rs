//! A fresh PostgreSQL database per test, for the tests of every crate that need a real PostgreSQL (and for
//! benchmarks, which build their stores in databases of their own).
//!
//! The server comes from `FOLIO_TEST_DATABASE_URL` (`postgres://user@host:port/database`: a database the tests may
//! connect to and run `CREATE DATABASE` from). `scripts/test` starts a throwaway cluster and exports it; a test that
//! needs PostgreSQL and does not find the variable **fails** (it does not skip), saying how to run it, so a CI
//! without PostgreSQL cannot pass by accident. Run the other tests alone with `cargo test -p CRATE --test NAME`.

use std::str::FromStr;

use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

/// The variable naming the server the tests use.
pub const TEST_DATABASE_URL: &str = "FOLIO_TEST_DATABASE_URL";

/// The server's URL from [`TEST_DATABASE_URL`]. Panics with directions when it is not set.
pub fn server_url() -> String {
    match std::env::var(TEST_DATABASE_URL) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{TEST_DATABASE_URL} is not set: this test needs a PostgreSQL server. Run it through scripts/test, which \
             starts a throwaway cluster (installing PostgreSQL when missing), or point {TEST_DATABASE_URL} at a \
             server where this user may CREATE DATABASE, e.g. postgres://postgres@127.0.0.1:5432/postgres"
        ),
    }
}

/// A connection of its own to the database at `url` (outside any pool), for tests that drive transactions by hand.
pub async fn connect(url: &str) -> sqlx::PgConnection {
    PgConnectOptions::from_str(url)
        .expect("a PostgreSQL URL")
        .connect()
        .await
        .expect("connect to PostgreSQL")
}

/// A database created for one test, dropped (with its connections) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// The database's URL.
    pub url: String,
    name: String,
    server: String,
}

impl TestDatabase {
    /// Creates an empty database on the server of [`TEST_DATABASE_URL`], named `folio_test_…`. Panics when it
    /// cannot (a test has nothing else to do then).
    pub async fn create() -> Self {
        let server = server_url();
        Self::create_on(&server, "folio_test")
            .await
            .unwrap_or_else(|e| panic!("{TEST_DATABASE_URL}={server}: {e}"))
    }

    /// Creates an empty database named `PREFIX_…` on the server of `server` (a URL of any database there where
    /// this user may `CREATE DATABASE`): benchmarks build their stores this way too.
    pub async fn create_on(server: &str, prefix: &str) -> Result<Self, sqlx::Error> {
        let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnectOptions::from_str(server)?.connect().await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        let url = database_url(server, &name);
        Ok(Self {
            url,
            name,
            server: server.to_owned(),
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `server` with its database replaced by `name` (query parameters kept).
fn database_url(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server, None),
    };
    // After the scheme's `//`, the path starts at the first `/`.
    let authority_start = base.find("//").map_or(0, |i| i + 2);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut url = format!("{}/{name}", &base[..path_start]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Dropping is async; run it on a thread of its own, so a drop inside a runtime does not block it.
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                let Ok(options) = PgConnectOptions::from_str(&server) else {
                    return;
                };
                let Ok(mut conn) = options.connect().await else { return };
                // Pools dropped just before close their connections in the background: give them half a second,
                // so they are not terminated under someone's feet (which logs warnings), then force. (A plain DROP
                // DATABASE would itself wait 5 s for them before failing.)
                for _ in 0..20 {
                    let open: Result<i64, _> =
                        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                            .bind(&name)
                            .fetch_one(&mut conn)
                            .await;
                    if !matches!(open, Ok(n) if n > 0) {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                }
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            });
        });
        let _ = dropped.join();
    }
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn the_database_is_replaced_in_the_url() {
        assert_eq!(
            database_url("postgres://u@127.0.0.1:5/postgres", "t1"),
            "postgres://u@127.0.0.1:5/t1"
        );
        assert_eq!(database_url("postgres://u@h:5", "t1"), "postgres://u@h:5/t1");
        assert_eq!(
            database_url("postgresql://u:p@h/db?sslmode=disable", "t1"),
            "postgresql://u:p@h/t1?sslmode=disable"
        );
    }
}
