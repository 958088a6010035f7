//! Progress of long commands (backup, export, import, migrate, verify): a bar on stderr when it is a terminal,
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
