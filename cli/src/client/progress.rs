//! Showing progress on stderr: live bars (indicatif) when stderr is a terminal, plain lines
//! otherwise (a log, a pipe, CI), so nothing but text ever reaches a file.

use std::collections::HashMap;
use std::io::IsTerminal;

use ferry_domain::JobStatus;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use uuid::Uuid;

use super::error::clean;
use super::model::{JobError, Progress};

/// Whether progress is drawn as bars: only when stderr is a terminal that can move its
/// cursor (not `TERM=dumb`).
pub fn draws_bars() -> bool {
    std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// The first block of a job id, enough to tell jobs apart on screen.
pub fn short(id: &Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix} [{bar:20.cyan/blue}] {percent:>3}% {bytes}/{total_bytes} {wide_msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// The progress of watched jobs: a bar each, or a line at each change of status and each
/// tenth of the way.
pub struct Board {
    bars: Option<MultiProgress>,
    rows: HashMap<Uuid, Row>,
}

struct Row {
    label: String,
    bar: Option<ProgressBar>,
    status: Option<JobStatus>,
    /// The last tenth of the way a plain line was printed for.
    tenth: u64,
}

impl Default for Board {
    fn default() -> Self {
        Self::new()
    }
}

impl Board {
    /// A board drawing bars on a terminal, lines elsewhere.
    pub fn new() -> Self {
        Self {
            bars: draws_bars()
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            rows: HashMap::new(),
        }
    }

    /// Starts showing job `id`, named `name`.
    pub fn track(&mut self, id: Uuid, name: &str, status: JobStatus, progress: &Progress) {
        let mut name: String = clean(name).to_string();
        if name.chars().count() > 24 {
            name = name.chars().take(23).collect::<String>() + "…";
        }
        let label = format!("{} {name}", short(&id));
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::no_length());
            bar.set_style(bar_style());
            bar.set_prefix(label.clone());
            bar
        });
        self.rows.insert(
            id,
            Row {
                label,
                bar,
                status: None,
                tenth: 0,
            },
        );
        self.update(id, Some(status), Some(progress));
    }

    /// Shows what an event says of job `id` (nothing if it is not shown).
    pub fn update(&mut self, id: Uuid, status: Option<JobStatus>, progress: Option<&Progress>) {
        let Some(row) = self.rows.get_mut(&id) else {
            return;
        };
        let status = status.or(row.status).unwrap_or(JobStatus::Queued);
        let changed = row.status != Some(status);
        row.status = Some(status);
        let Some(progress) = progress else {
            if changed {
                row.show(status, None);
            }
            return;
        };
        let tenth = (progress.percent.clamp(0.0, 100.0) / 10.0) as u64;
        match &row.bar {
            Some(bar) => {
                // A size of 0 is not known yet (a magnet being resolved): no length, not
                // a full bar.
                match progress.bytes_total {
                    0 if bar.length().is_some() => bar.unset_length(),
                    0 => {}
                    total if bar.length() != Some(total) => bar.set_length(total),
                    _ => {}
                }
                bar.set_position(progress.bytes_done);
                bar.set_message(detail(status, progress));
            }
            None if changed || tenth > row.tenth => {
                row.tenth = tenth;
                row.show(status, Some(progress));
            }
            None => {}
        }
    }

    /// Shows that job `id` ended as `status` (with `error`, if it failed).
    pub fn end(&mut self, id: Uuid, status: JobStatus, error: Option<&JobError>) {
        let Some(row) = self.rows.get_mut(&id) else {
            return;
        };
        let what = match error {
            Some(e) => format!("{status}: {}: {}", clean(&e.code), clean(&e.message)),
            None => status.to_string(),
        };
        match &row.bar {
            Some(bar) if super::model::ended_badly(status) => bar.abandon_with_message(what),
            Some(bar) => {
                if let Some(len) = bar.length() {
                    bar.set_position(len);
                }
                bar.finish_with_message(what);
            }
            None if row.status != Some(status) || error.is_some() => {
                eprintln!("{}: {what}", row.label);
            }
            None => {}
        }
        row.status = Some(status);
    }
}

impl Row {
    fn show(&self, status: JobStatus, progress: Option<&Progress>) {
        match progress {
            Some(p) => eprintln!("{}: {}", self.label, line(status, p)),
            None => eprintln!("{}: {status}", self.label),
        }
    }
}

/// What a bar says after its numbers: the status, and the rate and time left while it moves.
fn detail(status: JobStatus, p: &Progress) -> String {
    match status {
        JobStatus::Downloading if p.download_rate > 0 => {
            let eta = p
                .eta_seconds
                .map(|s| format!(", {} left", humantime(s)))
                .unwrap_or_default();
            let peers = match p.peers {
                0 => String::new(),
                1 => ", 1 peer".to_owned(),
                n => format!(", {n} peers"),
            };
            format!("{status} {}/s{peers}{eta}", HumanBytes(p.download_rate))
        }
        JobStatus::Seeding => format!(
            "{status} {}/s up, ratio {:.2}",
            HumanBytes(p.upload_rate),
            p.ratio
        ),
        _ => status.to_string(),
    }
}

/// A plain line of a job's progress.
fn line(status: JobStatus, p: &Progress) -> String {
    let mut text = format!("{status} {:.0}%", p.percent);
    if p.bytes_total > 0 {
        text.push_str(&format!(
            " ({} of {})",
            HumanBytes(p.bytes_done),
            HumanBytes(p.bytes_total)
        ));
    }
    if status == JobStatus::Downloading && p.download_rate > 0 {
        text.push_str(&format!(", {}/s", HumanBytes(p.download_rate)));
    }
    text
}

/// Seconds as `1h 2m`, `3m 4s` or `5s`.
fn humantime(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// The progress of one file being downloaded: a bar, or a line when it starts and ends.
pub struct Transfer {
    bar: Option<ProgressBar>,
    label: String,
}

impl Transfer {
    /// Starts showing the download of `path` (`size` bytes), `from` bytes of which are
    /// already here.
    pub fn start(path: &str, size: u64, from: u64) -> Self {
        let label = clean(path).to_string();
        let bar = draws_bars().then(|| {
            let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
            bar.set_style(bar_style());
            bar.set_prefix(label.clone());
            bar.set_position(from);
            bar
        });
        if bar.is_none() {
            if from > 0 {
                eprintln!(
                    "{label}: resuming at {} of {}",
                    HumanBytes(from),
                    HumanBytes(size)
                );
            } else {
                eprintln!("{label}: downloading {}", HumanBytes(size));
            }
        }
        Self { bar, label }
    }

    /// `n` more bytes arrived.
    pub fn advance(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// The file is complete: `note` says how it ended.
    pub fn done(self, note: &str) {
        match self.bar {
            Some(bar) => bar.finish_with_message(note.to_owned()),
            None => eprintln!("{}: {note}", self.label),
        }
    }

    /// The download stopped without the whole file.
    pub fn failed(self) {
        if let Some(bar) = self.bar {
            bar.abandon_with_message("failed");
        }
    }
}
