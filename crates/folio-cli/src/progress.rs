//! Progress of long commands (backup, export, import, migrate, verify, sync, promote): a bar on stderr when it is a terminal,
//! nothing otherwise (logs and pipes stay clean).

use std::io::IsTerminal;

/// A progress bar, or nothing.
pub struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    /// Progress of `label` over `total` steps (`None`: unknown, a spinner); hidden when stderr is not a terminal or
    /// `quiet` (`--json`).
    pub fn new(label: &str, total: Option<u64>, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = match total {
            Some(total) => {
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar
            }
            None => {
                let bar = indicatif::ProgressBar::new_spinner();
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bar
            }
        };
        bar.set_message(label.to_owned());
        Self(Some(bar))
    }

    /// Progress in bytes: the same, with byte units.
    pub fn bytes(label: &str, total: u64, quiet: bool) -> Self {
        let progress = Self::new(label, Some(total), quiet);
        if let Some(bar) = &progress.0 {
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
        }
        progress
    }

    /// `n` more steps done.
    pub fn advance(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    /// Sets the position.
    pub fn set(&self, position: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(position);
        }
    }

    /// Replaces the text beside the bar or spinner.
    pub fn message(&self, text: String) {
        if let Some(bar) = &self.0 {
            bar.set_message(text);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A spinner for a sync round or a promotion (`label`) whose text follows the round's steps: "sync: pushed
/// 12000/50000, pulled 3000, integrated 0". The sink is `None` when nothing would be shown (not a terminal, or
/// `--json`); the returned `Progress` removes the spinner when finished or dropped (before the summary is printed).
pub fn sync_sink(label: &str, quiet: bool) -> (Option<folio_sync::ProgressSink>, Progress) {
    use folio_sync::Step;
    use std::sync::{Arc, Mutex};
    let spinner = Progress::new(label, None, quiet);
    let Some(bar) = spinner.0.clone() else {
        return (None, spinner);
    };
    let handle = Progress(Some(bar));
    #[derive(Default)]
    struct Seen {
        pushed: Option<(usize, usize)>,
        pulled: usize,
        integrated: usize,
        read: usize,
        written: usize,
    }
    let label = label.to_owned();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = folio_sync::ProgressSink::new(move |step| {
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        match step {
            Step::Pushed { done, total } => seen.pushed = Some((done, total)),
            Step::Pulled { done } => seen.pulled = done,
            Step::Integrated { done } => seen.integrated = done,
            Step::ObjectsRead { done } => seen.read = done,
            Step::ObjectsWritten { done } => seen.written = done,
        }
        let mut parts = Vec::new();
        if let Some((done, total)) = seen.pushed {
            parts.push(format!("pushed {done}/{total}"));
        }
        if seen.pulled > 0 {
            parts.push(format!("pulled {}, integrated {}", seen.pulled, seen.integrated));
        }
        if seen.read > 0 {
            parts.push(format!("{} objects read", seen.read));
        }
        if seen.written > 0 {
            parts.push(format!("{} written", seen.written));
        }
        spinner.message(format!("{label}: {}", parts.join(", ")));
    });
    (Some(sink), handle)
}
