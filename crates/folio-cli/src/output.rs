//! Standard output for a command's results.

use std::fmt::Display;
use std::io::{self, BufWriter, Stdout, Write};

use crate::CliError;

/// Buffered standard output. Unlike `println!`, which panics when the reader went away
/// (`folio doc log ID | head -1`), a closed pipe ends the command quietly; other write errors are reported.
/// Call [`Out::finish`] at the end: it flushes.
pub struct Out(BufWriter<Stdout>);

impl Out {
    /// Standard output, buffered.
    pub fn new() -> Self {
        Self(BufWriter::new(io::stdout()))
    }

    /// Writes one line.
    pub fn line(&mut self, line: impl Display) -> Result<(), CliError> {
        writeln!(self.0, "{line}").map_err(write_error)
    }

    /// Writes `text` as it is (no newline): for output streamed in pieces.
    pub fn text(&mut self, text: impl Display) -> Result<(), CliError> {
        write!(self.0, "{text}").map_err(write_error)
    }

    /// Flushes what is buffered.
    pub fn finish(mut self) -> Result<(), CliError> {
        self.0.flush().map_err(write_error)
    }
}

fn write_error(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CliError::stdout_closed()
    } else {
        CliError::fail(format!("cannot write to standard output: {e}"))
    }
}
