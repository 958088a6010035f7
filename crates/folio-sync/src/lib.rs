//! # folio-sync
//!
//! Offline-first replicas that converge. Every replica keeps its own store and works alone; when two meet, each
//! integrates the other's actions:
//!
//! * **Order.** Actions carry their author's hybrid logical clock, replica id and id: one total order every replica
//!   computes the same way. A unit's effective history is always sorted by it.
//! * **Merge by rebase.** Actions that sort inside the history are integrated by appending a skip over the
//!   divergent tail and the merged operations: history stays append-only, and replicas that integrated the same
//!   actions have the same state hash. An action the reducer refuses in its merged position is kept, marked with the
//!   reason, and reported as a conflict.
//! * **Conflicts.** Causal contexts (version vectors) on actions let models tell concurrent edits from later ones:
//!   the built-in todo list keeps an item that one replica deleted while another, not having seen the delete,
//!   updated it.
//! * **Outbox and cursors** live in the store's meta table: per remote, how far it acknowledged this replica's
//!   actions and how far this replica pulled from it. A replica that was offline for a week resumes where it was;
//!   own actions never sent may be compressed first.
//!
//! [`protocol`] is the sans-I/O core (wire types, per-remote state, pure functions); [`Replica`] does the I/O
//! around it on a store and a reactor; [`sync_round`] runs push-then-pull against any [`Remote`]: another
//! [`Replica`] in the process, or a `folio serve` through [`HttpRemote`]; [`Syncer`] keeps a replica synced live.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod http;
pub mod progress;
pub mod protocol;
mod replica;
mod round;
pub mod tls;
mod watch;

pub use error::SyncError;
pub use http::HttpRemote;
pub use progress::{ProgressSink, Step};
pub use protocol::{Filter, PeerState, PullRequest, PullResponse, PushRequest, PushResponse, RemoteInfo, SyncEntry};
pub use replica::{Remote, Replica, SENT_KEY};
pub use round::{RoundOptions, RoundReport, sync_round};
pub use watch::{SyncEvent, SyncStatus, Syncer, WatchOptions};
