//! Progress of the slow steps: a spinner when a person is watching stderr,
//! plain log lines when it goes to a file or CI log.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// One slow step. Dropping it without [`Step::done`] (an error) clears the
/// spinner so the error message starts on a clean line.
pub struct Step {
    spinner: Option<ProgressBar>,
    started: Instant,
}

impl Step {
    pub fn start(message: String) -> Step {
        let spinner = if std::io::stderr().is_terminal() && log::log_enabled!(log::Level::Info) {
            let spinner = ProgressBar::new_spinner().with_message(message);
            spinner.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}")
                    .expect("the spinner template is valid"),
            );
            spinner.enable_steady_tick(Duration::from_millis(100));
            Some(spinner)
        } else {
            log::info!("{message}");
            None
        };
        Step { spinner, started: Instant::now() }
    }

    pub fn done(mut self, message: String) {
        let message = format!("{message} ({:.1}s)", self.started.elapsed().as_secs_f64());
        match self.spinner.take() {
            Some(spinner) => {
                spinner.set_style(ProgressStyle::with_template("{msg}").expect("the done template is valid"));
                spinner.finish_with_message(format!("✓ {message}"));
            }
            None => log::info!("{message}"),
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(spinner) = self.spinner.take() {
            spinner.finish_and_clear();
        }
    }
}
