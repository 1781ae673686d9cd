//! `ferry watch [ID]`: live progress from the server's event streams until the watched jobs
//! end. One job follows `GET /jobs/{id}/events` (resuming with `Last-Event-ID` when the
//! stream breaks); all unfinished jobs follow the `GET /jobs/events` feed, reloading them
//! on each `ready`, as the API asks.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use uuid::Uuid;

use super::Output;
use super::api::{Api, Events};
use super::commands::{job_id, print_json};
use super::error::{ClientError, EndedJob};
use super::model::{Job, JobEvent, JobPage, UNFINISHED, ended_badly, has_ended};
use super::progress::Board;

/// How often a broken stream is reopened before the server is judged gone.
const RECONNECTS: u32 = 6;

/// Watches job `id`, or every unfinished job; prints the final job(s) with `--json`.
///
/// # Errors
/// [`ClientError::JobsEnded`] when a watched job failed or was cancelled; any error of
/// the API.
pub async fn watch(api: &Api, id: Option<&str>, output: Output) -> Result<(), ClientError> {
    let jobs = match id {
        Some(text) => {
            let id = job_id(text)?;
            vec![watch_one(api, id).await?]
        }
        None => watch_all(api).await?,
    };
    if output.json {
        let values: Vec<Value> = jobs.iter().map(|(value, _)| value.clone()).collect();
        match (id, values.as_slice()) {
            (Some(_), [one]) => print_json(one),
            _ => print_json(&Value::Array(values)),
        }
    } else if jobs.is_empty() {
        eprintln!("no unfinished jobs to watch");
    }
    let failed: Vec<EndedJob> = jobs
        .into_iter()
        .filter(|(_, job)| ended_badly(job.status))
        .map(|(_, job)| EndedJob {
            id: job.id.to_string(),
            name: job.name,
            status: job.status.to_string(),
            error: job.error.map(|e| (e.code, e.message)),
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(ClientError::JobsEnded(failed))
    }
}

/// A job as the server shows it now.
async fn fetch(api: &Api, id: Uuid) -> Result<(Value, Job), ClientError> {
    let id = id.to_string();
    api.json(api.request(Method::GET, &["jobs", &id])).await
}

/// Waits before reopening a stream for the `attempt`th time, or gives up.
async fn pause_before(api: &Api, attempt: u32) -> Result<(), ClientError> {
    if attempt > RECONNECTS {
        return Err(ClientError::Unreachable {
            url: api.base().to_string(),
            reason: "the event stream kept breaking".to_owned(),
        });
    }
    tokio::time::sleep(Duration::from_millis(250 << attempt.min(6))).await;
    Ok(())
}

/// Opens an event stream. When it is reopened (`attempt` > 0), a server that does not
/// answer is waited for as a broken stream is; at the first opening it is an error.
async fn open(
    api: &Api,
    path: &[&str],
    last_event_id: Option<&str>,
    attempt: &mut u32,
) -> Result<Events, ClientError> {
    loop {
        let mut request = api
            .request(Method::GET, path)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(last) = last_event_id {
            request = request.header("Last-Event-ID", last);
        }
        match api.send(request).await {
            Ok(response) => return Ok(Events::new(response)),
            // Reopening a stream that worked: the server may be restarting.
            Err(ClientError::Unreachable { .. }) if *attempt > 0 && *attempt < RECONNECTS => {
                *attempt += 1;
                pause_before(api, *attempt).await?;
            }
            Err(e) => return Err(e),
        }
    }
}

fn event_of(data: &str) -> Result<JobEvent, ClientError> {
    serde_json::from_str(data).map_err(|e| {
        ClientError::Unexpected(
            anyhow::Error::new(e).context("the server sent an event this client cannot read"),
        )
    })
}

/// Follows one job until it ends; returns it as it ended.
async fn watch_one(api: &Api, id: Uuid) -> Result<(Value, Job), ClientError> {
    let (value, job) = fetch(api, id).await?;
    let mut board = Board::new();
    board.track(id, &job.name, job.status, &job.progress);
    if has_ended(job.status) {
        board.end(id, job.status, job.error.as_ref());
        return Ok((value, job));
    }
    let path = ["jobs".to_owned(), id.to_string(), "events".to_owned()];
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let mut last_event_id: Option<String> = None;
    let mut attempt = 0;
    loop {
        let mut events = open(api, &path, last_event_id.as_deref(), &mut attempt).await?;
        while let Some(event) = events.next().await? {
            if event.id.is_some() {
                last_event_id = event.id.clone();
            }
            let e = event_of(&event.data)?;
            // A stream that only ever says where the job stands is not making progress.
            if event.kind != "snapshot" {
                attempt = 0;
            }
            board.update(id, e.status, e.progress.as_ref());
            if let Some(status) = e.status.filter(|s| has_ended(*s)) {
                let (value, job) = fetch(api, id).await?;
                board.end(id, status, job.error.as_ref().or(e.error.as_ref()));
                return Ok((value, job));
            }
        }
        // The stream ended before the job did (the server restarted, or closed it after a
        // change of credentials): reopen it where it stopped.
        attempt += 1;
        pause_before(api, attempt).await?;
    }
}

/// Every job of the caller's that has not ended, each status asked for separately (the
/// API filters by one status at a time), every page.
async fn unfinished(api: &Api) -> Result<Vec<(Value, Job)>, ClientError> {
    let mut jobs = Vec::new();
    for status in UNFINISHED {
        let mut before: Option<Uuid> = None;
        loop {
            let mut query = vec![
                ("status", status.as_str().to_owned()),
                ("limit", "200".to_owned()),
            ];
            if let Some(before) = before {
                query.push(("before", before.to_string()));
            }
            let (_, page): (_, JobPage) = api
                .json(api.request(Method::GET, &["jobs"]).query(&query))
                .await?;
            for item in page.items {
                let job: Job = serde_json::from_value(item.clone()).map_err(|e| {
                    ClientError::Unexpected(anyhow::Error::new(e).context("reading the job list"))
                })?;
                jobs.push((item, job));
            }
            match page.next_cursor {
                Some(next) => before = Some(next),
                None => break,
            }
        }
    }
    Ok(jobs)
}

/// Follows every job that had not ended when the watch began, until all have; returns
/// them as they ended, newest first.
async fn watch_all(api: &Api) -> Result<Vec<(Value, Job)>, ClientError> {
    let mut board = Board::new();
    let mut watched: BTreeMap<Uuid, Option<(Value, Job)>> = BTreeMap::new();
    let mut started = false;
    let mut attempt = 0;
    loop {
        let mut events = open(api, &["jobs", "events"], None, &mut attempt).await?;
        while let Some(event) = events.next().await? {
            if event.kind == "ready" {
                // Nothing is replayed: what changed while no stream was open is read anew.
                if started {
                    let open: Vec<Uuid> = watched
                        .iter()
                        .filter(|(_, ended)| ended.is_none())
                        .map(|(id, _)| *id)
                        .collect();
                    for id in open {
                        let (value, job) = fetch(api, id).await?;
                        settle(&mut board, &mut watched, value, job);
                    }
                } else {
                    started = true;
                    for (value, job) in unfinished(api).await? {
                        board.track(job.id, &job.name, job.status, &job.progress);
                        watched.insert(job.id, None);
                        settle(&mut board, &mut watched, value, job);
                    }
                }
            } else {
                attempt = 0;
                let e = event_of(&event.data)?;
                let Some(id) = e
                    .job_id
                    .filter(|id| watched.get(id).is_some_and(Option::is_none))
                else {
                    continue;
                };
                board.update(id, e.status, e.progress.as_ref());
                if e.status.is_some_and(has_ended) {
                    let (value, job) = fetch(api, id).await?;
                    settle(&mut board, &mut watched, value, job);
                }
            }
            if started && watched.values().all(Option::is_some) {
                let mut ended: Vec<(Value, Job)> = watched.into_values().flatten().collect();
                ended.sort_by_key(|(_, job)| std::cmp::Reverse(job.id));
                return Ok(ended);
            }
        }
        attempt += 1;
        pause_before(api, attempt).await?;
    }
}

/// Records `job` as ended if it has.
fn settle(
    board: &mut Board,
    watched: &mut BTreeMap<Uuid, Option<(Value, Job)>>,
    value: Value,
    job: Job,
) {
    if has_ended(job.status) {
        board.end(job.id, job.status, job.error.as_ref());
        watched.insert(job.id, Some((value, job)));
    }
}
