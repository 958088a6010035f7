//! # folio-s3
//!
//! Serverless sync: replicas sync through an S3-compatible bucket, with no folio server. It is another transport
//! for folio-sync's replicas (same outbox, marks, integration), laid out as the dual-storage design describes:
//!
//! * each replica uploads batches of its own actions, one immutable object each, under its own area
//!   (`users/<replica>/`), with keys that sort by clock and are unique to their writer ([`layout`]);
//! * a [promoter](promote()) validates every user area by replaying it with the same models, writes what it
//!   accepted to `shared/` and what it refused to `rejections/<author>/`;
//! * replicas read `shared/` after their cursor (never other users' areas: nothing they read was forged) and their
//!   own rejections, and the first time bootstrap from the latest snapshots (`snapshots/<content hash>.json`).
//!
//! [`s3_round`] is one round, [`watch`] polls, [`promote()`] promotes (and rolls up snapshots).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bucket;
mod error;
pub mod layout;
mod promote;
mod round;

pub use bucket::{Bucket, BucketOptions, Counts, parse_url};
pub use error::S3Error;
pub use promote::{PromoteOptions, PromoteReport, promote, roll_up, validate};
pub use round::{S3RoundOptions, S3RoundReport, S3WatchOptions, s3_round, watch};
