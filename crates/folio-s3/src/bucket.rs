//! The bucket: an [`ObjectStore`] under a prefix, with JSON objects, sorted listings after a key, and counters of
//! what was read (so tests can tell a snapshot bootstrap from a full replay).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::S3Error;

/// Where the bucket is and how to sign requests. Unset fields come from the usual AWS variables
/// (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` or `AWS_DEFAULT_REGION`).
#[derive(Debug, Clone, Default)]
pub struct BucketOptions {
    /// The S3 API endpoint (`http://127.0.0.1:9000`); AWS when unset.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when unset anywhere).
    pub region: Option<String>,
    /// The access key id.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<String>,
}

/// How many requests a [`Bucket`] made, by kind.
#[derive(Debug, Default)]
pub struct Counters {
    gets: AtomicU64,
    lists: AtomicU64,
    puts: AtomicU64,
}

/// A copy of a bucket's [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Objects read (GET).
    pub gets: u64,
    /// Listings (one per listed prefix, whatever its number of pages).
    pub lists: u64,
    /// Objects written (PUT).
    pub puts: u64,
}

impl Counts {
    /// Requests that read (GETs and listings).
    pub fn reads(&self) -> u64 {
        self.gets + self.lists
    }
}

/// An S3-compatible bucket under a prefix, addressed as `s3://bucket/prefix`.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    url: String,
    prefix: String,
    counters: Arc<Counters>,
    /// Test hook: the next put stores its object and then fails, as a process killed right after an upload.
    fail_after_put: Arc<AtomicBool>,
}

fn bucket_error<'a>(op: &'static str, key: &'a str) -> impl FnOnce(object_store::Error) -> S3Error + 'a {
    move |source| S3Error::Bucket {
        op,
        key: key.to_owned(),
        source,
    }
}

impl Bucket {
    /// Opens `s3://bucket/prefix` with `options` (and the AWS variables for what they leave unset).
    pub fn open(url: &str, options: &BucketOptions) -> Result<Self, S3Error> {
        let (bucket, prefix) = parse_url(url)?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let endpoint = options
            .endpoint
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        let region = options
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_owned());
        builder = builder.with_region(region);
        if let Some(key) = &options.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &options.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|e| S3Error::Config(format!("{url}: {e}")))?;
        Ok(Self::with_store(Arc::new(store), url, &prefix))
    }

    /// A bucket on any object store (an in-memory one in unit tests), under `prefix`.
    pub fn with_store(store: Arc<dyn ObjectStore>, url: &str, prefix: &str) -> Self {
        Self {
            store,
            url: url.trim_end_matches('/').to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            counters: Arc::default(),
            fail_after_put: Arc::default(),
        }
    }

    /// The `s3://bucket/prefix` address: the name under which replicas keep their marks and cursors for it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What this handle (and its clones) asked of the bucket so far.
    pub fn counts(&self) -> Counts {
        Counts {
            gets: self.counters.gets.load(Ordering::Relaxed),
            lists: self.counters.lists.load(Ordering::Relaxed),
            puts: self.counters.puts.load(Ordering::Relaxed),
        }
    }

    /// Test hook: the next put stores its object, then fails with [`S3Error::Injected`] as if the process had been
    /// killed before it could record the upload.
    pub fn inject_failure_after_next_put(&self) {
        self.fail_after_put.store(true, Ordering::SeqCst);
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }

    fn relative(&self, path: &Path) -> String {
        let full = path.as_ref();
        if self.prefix.is_empty() {
            full.to_owned()
        } else {
            full.strip_prefix(&self.prefix)
                .map(|k| k.trim_start_matches('/').to_owned())
                .unwrap_or_else(|| full.to_owned())
        }
    }

    /// Writes `value` as JSON at `key` (relative to the prefix). Keys of the layout are unique to their writer, so
    /// no two writers ever race on one.
    pub async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<(), S3Error> {
        let bytes = serde_json::to_vec(value).map_err(|e| S3Error::Malformed {
            key: key.to_owned(),
            reason: e.to_string(),
        })?;
        self.put_bytes(key, bytes).await
    }

    /// Writes raw bytes at `key`.
    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), S3Error> {
        self.counters.puts.fetch_add(1, Ordering::Relaxed);
        self.store
            .put(&self.path(key), PutPayload::from(bytes))
            .await
            .map_err(bucket_error("put", key))?;
        if self.fail_after_put.swap(false, Ordering::SeqCst) {
            return Err(S3Error::Injected("killed right after an upload"));
        }
        Ok(())
    }

    /// Reads the object at `key` as JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<T, S3Error> {
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        let bytes = self
            .store
            .get(&self.path(key))
            .await
            .map_err(bucket_error("get", key))?
            .bytes()
            .await
            .map_err(bucket_error("get", key))?;
        serde_json::from_slice(&bytes).map_err(|e| S3Error::Malformed {
            key: key.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Whether an object exists at `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, S3Error> {
        match self.store.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(bucket_error("head", key)(e)),
        }
    }

    /// The keys under `area` (a folder such as `shared`) that sort after `after` (a key returned earlier), in key
    /// order, relative to the prefix.
    pub async fn list_after(&self, area: &str, after: Option<&str>) -> Result<Vec<String>, S3Error> {
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        let prefix = self.path(area);
        let stream = match after {
            Some(after) => self.store.list_with_offset(Some(&prefix), &self.path(after)),
            None => self.store.list(Some(&prefix)),
        };
        let metas: Vec<_> = stream.try_collect().await.map_err(bucket_error("list", area))?;
        let mut keys: Vec<String> = metas.iter().map(|m| self.relative(&m.location)).collect();
        // Not every S3-compatible server sorts, nor honours start-after exactly: the order and the bound are ours.
        keys.sort();
        if let Some(after) = after {
            keys.retain(|k| k.as_str() > after);
        }
        Ok(keys)
    }

    /// The names of the folders directly under `area` (the user areas under `users`).
    pub async fn folders(&self, area: &str) -> Result<Vec<String>, S3Error> {
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        let listed = self
            .store
            .list_with_delimiter(Some(&self.path(area)))
            .await
            .map_err(bucket_error("list", area))?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }
}

/// Splits `s3://bucket/prefix` into the bucket and the prefix (maybe empty).
pub fn parse_url(url: &str) -> Result<(String, String), S3Error> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| S3Error::Config(format!("{url:?} is not an s3://bucket/prefix address")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(S3Error::Config(format!("{url:?} names no bucket")));
    }
    if url.contains(',') {
        return Err(S3Error::Config(format!(
            "{url:?}: a bucket address cannot contain a comma"
        )));
    }
    Ok((bucket.to_owned(), prefix.trim_matches('/').to_owned()))
}
