//! Training progress on stderr: a live bar (loss, examples/s, ETA) on a terminal, plain
//! periodic lines otherwise. Timings only ever go here, never into the written artifacts.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Plain lines on stderr.
    Plain,
    /// Nothing (library use, tests).
    Off,
}

/// The progress reporter of one training run.
#[derive(Debug)]
pub(crate) struct Progress {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    epoch: usize,
    epochs: usize,
    steps: usize,
    examples: usize,
    epoch_start: Instant,
    last_line: Instant,
    loss_ema: Option<f32>,
}

impl Progress {
    pub(crate) fn new(mode: ProgressMode) -> Self {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Auto,
            ProgressMode::Auto => ProgressMode::Plain,
            m => m,
        };
        let now = Instant::now();
        Self {
            mode,
            bar: None,
            epoch: 0,
            epochs: 0,
            steps: 0,
            examples: 0,
            epoch_start: now,
            last_line: now,
            loss_ema: None,
        }
    }

    /// Starts epoch `epoch` (1-based) of `epochs`, with `steps` steps.
    pub(crate) fn start_epoch(&mut self, epoch: usize, epochs: usize, steps: usize) {
        self.epoch = epoch;
        self.epochs = epochs;
        self.steps = steps;
        self.examples = 0;
        self.epoch_start = Instant::now();
        self.last_line = self.epoch_start;
        self.loss_ema = None;
        if self.mode == ProgressMode::Auto {
            let bar = ProgressBar::with_draw_target(
                Some(steps as u64),
                ProgressDrawTarget::stderr_with_hz(5),
            );
            let style = ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}",
            )
            .expect("static template")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(format!("{epoch}/{epochs}"));
            self.bar = Some(bar);
        }
    }

    fn rate(&self) -> f64 {
        let secs = self.epoch_start.elapsed().as_secs_f64().max(1e-9);
        self.examples as f64 / secs
    }

    /// Records finished step `step` (1-based within the epoch) of `examples` examples.
    pub(crate) fn step(&mut self, step: usize, examples: usize, loss: f32) {
        self.examples += examples;
        let ema = match self.loss_ema {
            Some(e) => 0.95 * e + 0.05 * loss,
            None => loss,
        };
        self.loss_ema = Some(ema);
        match self.mode {
            ProgressMode::Auto => {
                if let Some(bar) = &self.bar {
                    bar.set_position(step as u64);
                    bar.set_message(format!("loss {ema:.4} {:.0} ex/s", self.rate()));
                }
            }
            ProgressMode::Plain => {
                let due = self.last_line.elapsed() >= Duration::from_secs(10);
                if due || step == self.steps {
                    self.last_line = Instant::now();
                    let rate = self.rate();
                    let left = (self.steps - step) as f64
                        * self.epoch_start.elapsed().as_secs_f64()
                        / step as f64;
                    eprintln!(
                        "epoch {}/{} step {step}/{} loss {ema:.4} {rate:.0} ex/s ETA {left:.0}s",
                        self.epoch, self.epochs, self.steps
                    );
                }
            }
            ProgressMode::Off => {}
        }
    }

    /// Ends the epoch with a summary line.
    pub(crate) fn end_epoch(&mut self, summary: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.mode != ProgressMode::Off {
            eprintln!(
                "epoch {}/{}: {summary} ({:.1}s, {:.0} ex/s)",
                self.epoch,
                self.epochs,
                self.epoch_start.elapsed().as_secs_f64(),
                self.rate()
            );
        }
    }

    /// Prints a note (e.g. early stopping) outside the bar.
    pub(crate) fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None if self.mode != ProgressMode::Off => eprintln!("{text}"),
            None => {}
        }
    }

    /// Clears a bar left by an error.
    pub(crate) fn abandon(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}
