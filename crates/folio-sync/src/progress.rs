//! Progress of a long sync round or promotion, for whoever shows it (the CLI's bar on a terminal). Rounds report
//! what they have moved so far; a sink that is not set costs nothing.

use std::sync::Arc;

/// How far a round or promotion has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Own entries sent so far, of `total` to send this round.
    Pushed {
        /// Sent so far.
        done: usize,
        /// To send this round.
        total: usize,
    },
    /// Entries received so far (the remote's total is not known in advance).
    Pulled {
        /// Received so far.
        done: usize,
    },
    /// Received entries durably integrated so far.
    Integrated {
        /// Integrated so far.
        done: usize,
    },
    /// Objects read so far (bucket rounds and promotions).
    ObjectsRead {
        /// Read so far.
        done: usize,
    },
    /// Objects written so far (bucket rounds and promotions).
    ObjectsWritten {
        /// Written so far.
        done: usize,
    },
}

/// Where steps go: a callback shared by clones of the options that carry it.
#[derive(Clone)]
pub struct ProgressSink(Arc<dyn Fn(Step) + Send + Sync>);

impl ProgressSink {
    /// A sink calling `f` with every step.
    pub fn new(f: impl Fn(Step) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Reports `step`.
    pub fn report(&self, step: Step) {
        (self.0)(step)
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

/// Reports `step` to `sink` when there is one.
pub fn report(sink: &Option<ProgressSink>, step: Step) {
    if let Some(sink) = sink {
        sink.report(step);
    }
}
