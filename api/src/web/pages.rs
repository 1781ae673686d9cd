//! The pages. Every value that comes from a user, a torrent or a remote server goes through
//! maud's escaping (`(value)`); nothing here writes raw HTML from data.

use std::sync::Arc;
use std::time::Duration;

use ferry_application::ports::{AuditQuery, EventKind, JobQuery, Replay};
use ferry_domain::{Job, JobId, JobStatus, OwnerId, Role, StorageBackend, StorageProfile};
use maud::{DOCTYPE, Markup, html};
use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::{Viewer, assets, human, local_path, viewer};
use crate::ApiState;

/// Jobs per page of the list.
const PAGE_SIZE: u32 = 50;

fn html_response(status: StatusCode, markup: Markup) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

/// The frame of every page: head, navigation (when signed in), main content.
fn layout(title: &str, page: &str, viewer: Option<&Viewer>, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Ferry" }
                link rel="stylesheet" href=(assets::url("app.css"));
                script type="module" src=(assets::url("app.js")) {}
            }
            body data-page=(page) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Ferry" }
                    @if let Some(v) = viewer {
                        nav aria-label="Main" {
                            a href="/" aria-current=[(page == "jobs").then_some("page")] { "Jobs" }
                            a href="/add" aria-current=[(page == "add").then_some("page")] { "Add" }
                            a href="/storage" aria-current=[(page == "storage").then_some("page")] { "Storage" }
                            a href="/account" aria-current=[(page == "account").then_some("page")] { "Account" }
                            @if v.is_admin() {
                                a href="/admin" aria-current=[(page == "admin").then_some("page")] { "Admin" }
                            }
                        }
                        div.who {
                            span.user { (v.user.display_name) }
                            button type="button" data-act="logout" { "Sign out" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (main)
                }
            }
        }
    }
}

// ---- sign in ----

#[derive(Deserialize)]
pub struct LoginParams {
    next: Option<String>,
}

#[handler]
pub fn login_page(Data(state): Data<&Arc<ApiState>>, Query(p): Query<LoginParams>) -> Response {
    let next = local_path(p.next.as_deref());
    let main = html! {
        section.card.narrow {
            @if !state.providers.is_empty() {
                ul.providers aria-label="Sign in with" {
                    @for provider in &state.providers {
                        @let name = provider.provider.name();
                        @let start = format!(
                            "/api/v1/auth/login/{name}?return_to={}",
                            url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                        );
                        li { a.button href=(start) { "Sign in with " (name) } }
                    }
                }
                p.or { "or with a Ferry account" }
            }
            form #login-form method="post" action="#" data-next=(next) {
                label for="username" { "Name" }
                input #username name="username" autocomplete="username" required;
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="current-password" required;
                p.error #login-error role="alert" {}
                button type="submit" { "Sign in" }
            }
        }
    };
    html_response(StatusCode::OK, layout("Sign in", "login", None, main))
}

#[handler]
pub fn setup_page() -> Response {
    let main = html! {
        section.card.narrow {
            p { "Choose the first admin's name and password. The link you opened works once." }
            form #setup-form method="post" action="#" {
                label for="username" { "Name" }
                input #username name="username" autocomplete="username" required;
                label for="password" { "Password (8 characters or more)" }
                input #password name="password" type="password" autocomplete="new-password" minlength="8" required;
                p.error #setup-error role="alert" {}
                button type="submit" { "Create the admin" }
            }
        }
    };
    html_response(StatusCode::OK, layout("Set up Ferry", "setup", None, main))
}

// ---- jobs ----

#[derive(Deserialize, Default)]
pub struct JobsParams {
    status: Option<String>,
    q: Option<String>,
    before: Option<String>,
    /// `rows`: only the table body (the script swaps it in).
    fragment: Option<String>,
}

fn status_label(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Queued => "Queued",
        JobStatus::Resolving => "Finding metadata",
        JobStatus::Downloading => "Downloading",
        JobStatus::Paused => "Paused",
        JobStatus::Uploading => "Delivering",
        JobStatus::Completed => "Completed",
        JobStatus::Seeding => "Seeding",
        JobStatus::Cancelled => "Cancelled",
        JobStatus::Failed => "Failed",
    }
}

/// The actions a job offers in its status (a queued URL job cannot be paused: see
/// `Jobs::pause`).
fn actions(job: &Job) -> &'static [(&'static str, &'static str)] {
    let url = matches!(job.source, ferry_domain::JobSource::Url(_));
    match job.status {
        JobStatus::Queued if url => &[("cancel", "Cancel"), ("delete", "Delete…")],
        JobStatus::Queued | JobStatus::Downloading => &[
            ("pause", "Pause"),
            ("cancel", "Cancel"),
            ("delete", "Delete…"),
        ],
        JobStatus::Resolving | JobStatus::Uploading => {
            &[("cancel", "Cancel"), ("delete", "Delete…")]
        }
        JobStatus::Paused => &[
            ("resume", "Resume"),
            ("cancel", "Cancel"),
            ("delete", "Delete…"),
        ],
        JobStatus::Failed | JobStatus::Cancelled => &[("retry", "Retry"), ("delete", "Delete…")],
        JobStatus::Seeding => &[("cancel", "Stop seeding"), ("delete", "Delete…")],
        JobStatus::Completed => &[("delete", "Delete…")],
    }
}

fn job_row(job: &Job, queue_position: Option<u32>) -> Markup {
    let p = &job.progress;
    let id = job.id.to_string();
    let percent = (p.fraction_in(job.status) * 1000.0).round() / 10.0;
    html! {
        tr id={"job-" (id)} data-job=(id) data-status=(job.status.as_str()) {
            td.pick {
                input.pick type="checkbox" value=(id) aria-label={"Select " (job.name)};
            }
            td.name {
                a href={"/jobs/" (id)} { (job.name) }
                @if let Some(e) = &job.error {
                    span.job-error { (e.message) " (" code { (e.code) } ")" }
                }
                p.error data-f="error" role="alert" {}
            }
            td data-f="status" {
                span.status data-s=(job.status.as_str()) { (status_label(job.status)) }
                @if let Some(n) = queue_position { " " span.queue-pos title="Place in the queue: 1 starts next" { "#" (n) } }
            }
            td.progress {
                progress data-f="bar" max="100" value=(percent) aria-label={"Progress of " (job.name)} { (percent) "%" }
                span.num data-f="percent" { (format!("{percent:.1}%")) }
            }
            td.num data-f="size" { @if p.bytes_total > 0 { (human::bytes(p.bytes_total)) } }
            td.num data-f="rate" { (human::rate(moving_rate(job.status, p))) }
            td.num data-f="eta" { @if let Some(eta) = p.eta_seconds.filter(|_| job.status == JobStatus::Downloading) { (human::duration(eta)) } }
            td.num data-f="peers" { @if p.peers > 0 { (p.peers) } }
            td.num data-f="ratio" { @if job.status == JobStatus::Seeding || p.uploaded_bytes > 0 { (format!("{:.2}", ratio(p))) } }
            td.actions {
                @for (act, label) in actions(job) {
                    button type="button" data-act=(act) data-job=(id) data-name=(job.name) { (label) }
                }
            }
        }
    }
}

/// The rate that matters in `status`: downloading, or uploading while seeding; none else.
fn moving_rate(status: JobStatus, p: &ferry_domain::Progress) -> u64 {
    match status {
        JobStatus::Downloading => p.download_rate,
        JobStatus::Seeding => p.upload_rate,
        _ => 0,
    }
}

fn ratio(p: &ferry_domain::Progress) -> f64 {
    if p.bytes_total == 0 {
        0.0
    } else {
        p.uploaded_bytes as f64 / p.bytes_total as f64
    }
}

fn rows(jobs: &[Job], positions: &std::collections::HashMap<JobId, u32>) -> Markup {
    html! {
        tbody #jobs-rows {
            @for job in jobs { (job_row(job, positions.get(&job.id).copied())) }
            @if jobs.is_empty() {
                tr.empty { td colspan="10" { "No jobs here. " a href="/add" { "Add one" } "." } }
            }
        }
    }
}

#[handler]
pub async fn jobs_page(
    req: &Request,
    Data(state): Data<&Arc<ApiState>>,
    Query(p): Query<JobsParams>,
) -> Response {
    let v = match viewer(req, state).await {
        Ok(v) => v,
        Err(to_login) => return to_login,
    };
    let status = p
        .status
        .as_deref()
        .and_then(|s| JobStatus::ALL.into_iter().find(|x| x.as_str() == s));
    let q =
        p.q.as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(|q| q.chars().take(200).collect::<String>());
    let before = p.before.as_deref().and_then(|b| b.parse::<JobId>().ok());
    let query = JobQuery {
        owner: v.caller.user.clone(),
        status,
        name_contains: q.clone(),
        before,
        limit: PAGE_SIZE,
        torrents: None,
    };
    let list = match state.jobs.list(&query).await {
        Ok(list) => list,
        Err(e) => return unavailable(&v, &e.to_string()),
    };
    let positions = match state.jobs.queue_positions(&list).await {
        Ok(p) => p,
        Err(e) => return unavailable(&v, &e.to_string()),
    };
    if p.fragment.as_deref() == Some("rows") {
        return html_response(StatusCode::OK, rows(&list, &positions));
    }
    let next = (list.len() == PAGE_SIZE as usize)
        .then(|| list.last().map(|j| j.id))
        .flatten();
    let link = |before: Option<JobId>| {
        let mut url = url::form_urlencoded::Serializer::new(String::new());
        if let Some(s) = status {
            url.append_pair("status", s.as_str());
        }
        if let Some(q) = &q {
            url.append_pair("q", q);
        }
        if let Some(b) = before {
            url.append_pair("before", &b.to_string());
        }
        format!("/?{}", url.finish())
    };
    let main = html! {
        form.filters method="get" action="/" role="search" {
            label for="f-status" { "Status" }
            select #f-status name="status" {
                option value="" { "Any" }
                @for s in JobStatus::ALL {
                    option value=(s.as_str()) selected[status == Some(s)] { (status_label(s)) }
                }
            }
            label for="f-q" { "Name" }
            input #f-q name="q" type="search" value=[q.as_deref()] placeholder="Search by name";
            button type="submit" { "Filter" }
        }
        div.bulk #bulk role="toolbar" aria-label="Selected jobs" {
            span #bulk-count aria-live="polite" { "None selected" }
            button type="button" data-bulk="pause" { "Pause" }
            button type="button" data-bulk="resume" { "Resume" }
            button type="button" data-bulk="retry" { "Retry" }
            button type="button" data-bulk="cancel" { "Cancel" }
            button type="button" data-bulk="delete" { "Delete…" }
        }
        p.error #bulk-error role="alert" {}
        div.table-wrap {
            table.jobs {
                caption.visually-hidden { "Your jobs" }
                thead {
                    tr {
                        th scope="col" { input #pick-all type="checkbox" aria-label="Select all"; }
                        th scope="col" { "Name" }
                        th scope="col" { "Status" }
                        th scope="col" { "Progress" }
                        th scope="col" { "Size" }
                        th scope="col" { "Speed" }
                        th scope="col" { "ETA" }
                        th scope="col" { "Peers" }
                        th scope="col" { "Ratio" }
                        th scope="col" { span.visually-hidden { "Actions" } }
                    }
                }
                (rows(&list, &positions))
            }
        }
        nav.paging aria-label="Pages" {
            @if before.is_some() { a href=(link(None)) { "← Newest" } }
            @if let Some(next) = next { a href=(link(Some(next))) { "Older →" } }
        }
        (delete_dialog())
    };
    html_response(StatusCode::OK, layout("Jobs", "jobs", Some(&v), main))
}

fn delete_dialog() -> Markup {
    html! {
        dialog #delete-dialog aria-labelledby="delete-title" {
            form method="dialog" {
                h2 #delete-title { "Delete " span #delete-what {} "?" }
                p { "The job is removed from Ferry together with its downloaded and delivered files. This cannot be undone." }
                label.check {
                    input #delete-files type="checkbox";
                    " Also delete the files"
                }
                div.buttons {
                    button value="cancel" { "Keep" }
                    button.danger #delete-confirm value="delete" disabled { "Delete" }
                }
            }
        }
    }
}

fn unavailable(v: &Viewer, what: &str) -> Response {
    tracing::warn!(error = %what, "a page could not be read");
    html_response(
        StatusCode::SERVICE_UNAVAILABLE,
        layout(
            "Try again shortly",
            "error",
            Some(v),
            html! { p { "Ferry could not read what this page shows; a backend is unavailable. Reload in a moment." } },
        ),
    )
}

// ---- add ----

#[handler]
pub async fn add_page(req: &Request, Data(state): Data<&Arc<ApiState>>) -> Response {
    let v = match viewer(req, state).await {
        Ok(v) => v,
        Err(to_login) => return to_login,
    };
    let profiles = state
        .profiles
        .list(&v.caller.user)
        .await
        .unwrap_or_default();
    let default = state
        .profiles
        .default_of(&v.caller.user)
        .await
        .ok()
        .flatten();
    let destination = |id: &str| {
        html! {
            label for=(id) { "Deliver to" }
            select id=(id) name="storage_profile" {
                option value="server" selected[default.is_none()] { "This server's disk" }
                @for p in &profiles {
                    option value=(p.id.to_string()) selected[default == Some(p.id)] { (p.name) " (" (p.backend.kind()) ")" }
                }
            }
            label.check {
                input name="seed" type="checkbox" checked[state.seed_by_default];
                " Seed when finished"
            }
        }
    };
    let main = html! {
        @if state.network.torrent_proxied {
            p.notice #network-note role="note" {
                "BitTorrent traffic goes through this server's proxy: the DHT and UDP trackers are off, so a magnet or torrent needs an http(s) tracker to find peers."
            }
        }
        section.card {
            h2 { "Magnets and links" }
            form #add-links method="post" action="#" {
                label for="links" { "One magnet link or http(s) URL per line" }
                textarea #links name="links" rows="5" required spellcheck="false" placeholder="magnet:?xt=urn:btih:…" {}
                (destination("links-dest"))
                p.error #links-error role="alert" {}
                button type="submit" { "Add" }
            }
            ul.results #links-results aria-live="polite" {}
        }
        section.card {
            h2 { "A .torrent file" }
            form #add-torrent method="post" action="#" {
                div.drop #drop {
                    label for="torrent-file" { "Drop a .torrent here, or choose one" }
                    input #torrent-file name="torrent" type="file" accept=".torrent,application/x-bittorrent";
                }
                div #tree-box hidden {
                    p #tree-summary {}
                    fieldset {
                        legend { "Files to download" }
                        label.check { input #tree-all type="checkbox" checked; " All files" }
                        ul.tree #tree {}
                    }
                }
                (destination("torrent-dest"))
                p.error #torrent-error role="alert" {}
                button #torrent-start type="submit" disabled { "Start" }
            }
        }
    };
    html_response(StatusCode::OK, layout("Add", "add", Some(&v), main))
}

// ---- one job ----

#[handler]
pub async fn job_page(
    req: &Request,
    Data(state): Data<&Arc<ApiState>>,
    Path(id): Path<String>,
) -> Response {
    let v = match viewer(req, state).await {
        Ok(v) => v,
        Err(to_login) => return to_login,
    };
    let not_found = || {
        html_response(
            StatusCode::NOT_FOUND,
            layout(
                "No such job",
                "error",
                Some(&v),
                html! { p { "There is no such job. " a href="/" { "Back to your jobs" } } },
            ),
        )
    };
    let Ok(id) = id.parse::<JobId>() else {
        return not_found();
    };
    let Ok(job) = state.jobs.get(&v.caller.user, id).await else {
        return not_found();
    };
    let history = history(state, id).await;
    let position = state
        .jobs
        .queue_positions(std::slice::from_ref(&job))
        .await
        .ok()
        .and_then(|p| p.get(&job.id).copied());
    let kib = |b: Option<std::num::NonZeroU32>| b.map(|b| (b.get() / 1024).to_string());
    let files = job
        .metadata
        .as_ref()
        .map(|m| m.files.clone())
        .unwrap_or_default();
    let done = matches!(job.status, JobStatus::Completed | JobStatus::Seeding);
    let packaged = matches!(job.source, ferry_domain::JobSource::Url(_)) && job.metadata.is_some();
    let main = html! {
        table.jobs.single {
            caption.visually-hidden { "This job" }
            thead {
                tr {
                    th scope="col" { span.visually-hidden { "Select" } }
                    th scope="col" { "Name" } th scope="col" { "Status" } th scope="col" { "Progress" }
                    th scope="col" { "Size" } th scope="col" { "Speed" } th scope="col" { "ETA" }
                    th scope="col" { "Peers" } th scope="col" { "Ratio" }
                    th scope="col" { span.visually-hidden { "Actions" } }
                }
            }
            tbody #jobs-rows { (job_row(&job, position)) }
        }
        @if let Some(e) = &job.error {
            section.card.failure {
                h2 { "Why it failed" }
                p { (e.message) }
                p { "Error code: " code { (e.code) } }
            }
        }
        section.card {
            h2 { "Files" }
            @if files.is_empty() {
                p { "The file list is known once the torrent's metadata has arrived." }
            } @else {
                div.table-wrap {
                    table.files {
                        thead { tr { th scope="col" { "File" } th scope="col" { "Size" } th scope="col" { span.visually-hidden { "Actions" } } } }
                        tbody {
                            @for f in files.iter().filter(|f| f.selected) {
                                tr {
                                    td.path { (f.path) }
                                    td.num { (human::bytes(f.size)) }
                                    td.actions {
                                        @if done {
                                            a.button href={"/api/v1/jobs/" (id) "/files/" (f.index)} download=(file_name(&f.path)) { "Download" }
                                            button type="button" data-link=(f.index) data-job=(id) { "Copy link" }
                                            @if playable(&f.path) {
                                                button type="button" data-play=(f.index) data-job=(id) data-kind=(media_kind(&f.path)) { "Play" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                div #player {}
                p.error #files-error role="alert" {}
            }
        }
        @if !job.status.is_terminal() || job.status == JobStatus::Completed {
            section.card {
                h2 { "Speed limits" }
                p { "This job's own limits, in KiB/s (empty: none). They apply at once, while it downloads and while it seeds." }
                form #limits-form data-job=(id) {
                    @if !matches!(job.source, ferry_domain::JobSource::Url(_)) {
                        label for="limit-down" { "Download" }
                        input #limit-down name="down" type="number" min="16" max="4194303" step="1" inputmode="numeric" value=[kib(job.speed_limits.download_bps)];
                    }
                    label for="limit-up" { "Upload" }
                    input #limit-up name="up" type="number" min="16" max="4194303" step="1" inputmode="numeric" value=[kib(job.speed_limits.upload_bps)];
                    button type="submit" { "Save limits" }
                    span.result #limits-status role="status" {}
                }
                p.error #limits-error role="alert" {}
            }
        }
        @if packaged {
            section.card {
                h2 { "Share as a torrent" }
                p { "Ferry packaged this download as a private torrent." }
                a.button href={"/api/v1/jobs/" (id) "/torrent"} download={(job.name) ".torrent"} { "Download the .torrent" }
                button type="button" data-magnet=(id) { "Copy the magnet link" }
                p.error #share-error role="alert" {}
            }
        }
        section.card {
            h2 { "History" }
            ol.history {
                li { time { (human::time(job.created_at)) } " — submitted" }
                @for (at, status, error) in &history {
                    li {
                        time { (human::time(*at)) } " — " (status_label(*status))
                        @if let Some(e) = error { ": " (e) }
                    }
                }
            }
        }
        (delete_dialog())
    };
    html_response(StatusCode::OK, layout(&job.name, "job", Some(&v), main))
}

/// The job's status changes the progress bus still holds, oldest first.
async fn history(
    state: &ApiState,
    id: JobId,
) -> Vec<(chrono::DateTime<chrono::Utc>, JobStatus, Option<String>)> {
    let Ok(mut rx) = state.bus.subscribe(id, &Replay::Retained).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Some(e)) = tokio::time::timeout_at(
        deadline.min(tokio::time::Instant::now() + Duration::from_millis(50)),
        rx.recv(),
    )
    .await
    {
        if e.event.kind == EventKind::Status {
            out.push((e.event.at, e.event.status, e.event.error.map(|e| e.message)));
        }
        if out.len() >= 200 {
            break;
        }
    }
    out
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn extension(path: &str) -> String {
    file_name(path)
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default()
}

fn media_kind(path: &str) -> &'static str {
    match extension(path).as_str() {
        "mp3" | "m4a" | "ogg" | "oga" | "flac" | "wav" | "opus" | "aac" => "audio",
        _ => "video",
    }
}

fn playable(path: &str) -> bool {
    matches!(
        extension(path).as_str(),
        "mp4"
            | "m4v"
            | "webm"
            | "mkv"
            | "mov"
            | "ogv"
            | "mp3"
            | "m4a"
            | "ogg"
            | "oga"
            | "flac"
            | "wav"
            | "opus"
            | "aac"
    )
}

// ---- my account ----

#[handler]
pub async fn account_page(req: &Request, Data(state): Data<&Arc<ApiState>>) -> Response {
    let v = match viewer(req, state).await {
        Ok(v) => v,
        Err(to_login) => return to_login,
    };
    let tokens = state.accounts.tokens(&v.caller).await.unwrap_or_default();
    let sessions = state.accounts.sessions(&v.caller).await.unwrap_or_default();
    let quotas = state
        .accounts
        .quotas_of(&v.caller.user)
        .await
        .unwrap_or_default();
    let usage = state.jobs.usage(&v.caller.user).await.unwrap_or_default();
    let bar = |label: &str, used: u64, limit: Option<u64>, bytes: bool| {
        let show = |n: u64| {
            if bytes {
                human::bytes(n)
            } else {
                n.to_string()
            }
        };
        html! {
            div.quota {
                span { (label) }
                @if let Some(limit) = limit {
                    meter min="0" max=(limit) value=(used.min(limit)) aria-label=(label) {}
                    span.num { (show(used)) " of " (show(limit)) }
                } @else {
                    span.num { (show(used)) " (no limit)" }
                }
            }
        }
    };
    let main = html! {
        section.card {
            h2 { "You" }
            dl.facts {
                dt { "Name" } dd { (v.user.display_name) }
                @if let Some(email) = &v.user.email { dt { "Email" } dd { (email) } }
                dt { "Role" } dd { (if v.is_admin() { "Admin" } else { "User" }) }
                dt { "Id" } dd { code { (v.user.id.as_str()) } }
            }
        }
        section.card {
            h2 { "Quotas" }
            (bar("Active jobs", usage.active_jobs, quotas.active_jobs, false))
            (bar("Stored", usage.stored_bytes, quotas.stored_bytes, true))
            (bar("Seeding jobs", usage.seeding_jobs, quotas.seeding_jobs, false))
            @if let Some(per_job) = quotas.job_bytes { p { "Each job may be up to " (human::bytes(per_job)) "." } }
        }
        section.card {
            h2 { "API tokens" }
            p { "A token lets a program act as you. It is shown once, when you create it." }
            form #token-form method="post" action="#" {
                label for="token-name" { "Name" }
                input #token-name name="name" required maxlength="100";
                fieldset {
                    legend { "Scopes" }
                    label.check { input name="scope" type="checkbox" value="read" checked; " read" }
                    label.check { input name="scope" type="checkbox" value="write"; " write" }
                    @if v.is_admin() { label.check { input name="scope" type="checkbox" value="admin"; " admin" } }
                }
                label for="token-days" { "Expires after (days; empty: never)" }
                input #token-days name="days" type="number" min="1" max="3650";
                p.error #token-error role="alert" {}
                button type="submit" { "Create token" }
            }
            div #token-new hidden {
                p { "Your new token (copy it now; it will not be shown again):" }
                code #token-secret {}
                button type="button" #token-copy { "Copy" }
            }
            div.table-wrap {
                table.tokens {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Scopes" } th scope="col" { "Created" } th scope="col" { "Expires" } th scope="col" { "Last used" } th scope="col" { span.visually-hidden { "Actions" } } } }
                    tbody #tokens {
                        @for t in &tokens {
                            tr data-token=(t.id.as_uuid().to_string()) {
                                td { (t.name) }
                                td { (t.scopes.to_text()) }
                                td { (human::time(t.created_at)) }
                                td { @if let Some(e) = t.expires_at { (human::time(e)) } @else { "never" } }
                                td { @if let Some(u) = t.last_used_at { (human::time(u)) } @else { "never" } }
                                td { button type="button" data-revoke=(t.id.as_uuid().to_string()) data-name=(t.name) { "Revoke" } }
                            }
                        }
                        @if tokens.is_empty() { tr.empty { td colspan="6" { "No tokens." } } }
                    }
                }
            }
        }
        section.card {
            h2 { "Sessions" }
            p { "Where you are signed in. Sign a browser out, or every session at once, this one included." }
            p.error #session-error role="alert" {}
            div.table-wrap {
                table.sessions {
                    thead { tr { th scope="col" { "Browser" } th scope="col" { "From" } th scope="col" { "Signed in" } th scope="col" { "Last seen" } th scope="col" { span.visually-hidden { "Actions" } } } }
                    tbody #sessions {
                        @for s in &sessions {
                            tr data-session=(s.id) {
                                td { (browser_name(s.session.user_agent.as_deref())) @if s.current { " " strong { "(this one)" } } }
                                td { @if let Some(ip) = &s.session.ip { (ip) } }
                                td { (human::time(s.session.created_at)) }
                                td { (human::time(s.session.last_seen_at)) }
                                td {
                                    @if s.current {
                                        button type="button" data-act="logout" { "Sign out" }
                                    } @else {
                                        button type="button" data-end-session=(s.id) { "Sign out" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            button type="button" data-act="logout-everywhere" { "Sign out everywhere" }
        }
    };
    html_response(StatusCode::OK, layout("Account", "account", Some(&v), main))
}

/// A browser's name and system from its `User-Agent`, for people (`Firefox on Linux`); the
/// raw text when neither is recognised.
fn browser_name(agent: Option<&str>) -> String {
    let Some(agent) = agent.filter(|a| !a.trim().is_empty()) else {
        return "Unknown browser".to_owned();
    };
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("HeadlessChrome/", "Chrome (headless)"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .into_iter()
    .find(|(mark, _)| agent.contains(mark))
    .map(|(_, name)| name);
    let system = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .into_iter()
    .find(|(mark, _)| agent.contains(mark))
    .map(|(_, name)| name);
    match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(s)) => format!("A browser on {s}"),
        (None, None) => agent.chars().take(80).collect(),
    }
}

// ---- my storage ----

#[handler]
pub async fn storage_page(
    req: &Request,
    Data(state): Data<&Arc<ApiState>>,
    Query(p): Query<StorageParams>,
) -> Response {
    let v = match viewer(req, state).await {
        Ok(v) => v,
        Err(to_login) => return to_login,
    };
    let profiles = match state.profiles.list(&v.caller.user).await {
        Ok(p) => p,
        Err(e) => return unavailable(&v, &e.to_string()),
    };
    let default = state
        .profiles
        .default_of(&v.caller.user)
        .await
        .ok()
        .flatten();
    let outcome = drive_outcome(p.drive.as_deref());
    let main = html! {
        @if let Some((kind, text)) = outcome {
            p class=(kind) role=(if kind == "error" { "alert" } else { "status" }) { (text) }
        }
        section.card {
            h2 { "Your storage" }
            p { "Jobs are delivered where you choose when you add them; the default is preselected, and programs that name no destination use it too." }
            div.table-wrap {
                table.profiles {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Where" } th scope="col" { span.visually-hidden { "Actions" } } } }
                    tbody {
                        @for p in &profiles {
                            tr data-profile=(p.id.to_string()) {
                                td { (p.name) }
                                td { (p.backend.kind()) }
                                td { (where_of(p, state)) }
                                td.actions {
                                    button type="button" data-test=(p.id.to_string()) { "Test" }
                                    button type="button" data-remove=(p.id.to_string()) data-name=(p.name) { "Delete" }
                                    span.result role="status" {}
                                }
                            }
                        }
                        @if profiles.is_empty() { tr.empty { td colspan="4" { "No storage profiles yet." } } }
                    }
                }
            }
            fieldset.default-profile {
                legend { "Default destination" }
                label.check {
                    input type="radio" name="default-profile" value="server" checked[default.is_none()];
                    " This server's disk"
                }
                @for p in &profiles {
                    label.check {
                        input type="radio" name="default-profile" value=(p.id.to_string()) checked[default == Some(p.id)];
                        " " (p.name)
                    }
                }
                span #default-status role="status" {}
            }
        }
        @if state.drive.is_some() {
            section.card {
                h2 { "Google Drive" }
                form #drive-form method="post" action="#" {
                    label for="drive-name" { "Name" }
                    input #drive-name name="name" required maxlength="100" value="Google Drive";
                    label for="drive-folder" { "Folder id (empty: the Drive's root)" }
                    input #drive-folder name="folder_id" maxlength="128";
                    p.error #drive-error role="alert" {}
                    button type="submit" { "Connect Google Drive" }
                }
            }
        }
        @if state.profiles.shared_dir.is_some() {
            section.card {
                h2 { "Add a folder on the shared volume" }
                p { "Files stay in this folder of the server's shared volume, each job in a folder of its own, where other programs mounting the volume (Sonarr, Radarr) find them." }
                form #folder-form method="post" action="#" {
                    label for="folder-name" { "Name" }
                    input #folder-name name="name" required maxlength="100" value="Shared folder";
                    label for="folder-path" { "Folder, inside your area (empty: the area itself)" }
                    input #folder-path name="path" maxlength="1024" placeholder="tv";
                    p.error #folder-error role="alert" {}
                    button type="submit" { "Add folder" }
                }
            }
        }
        section.card {
            h2 { "Add an S3 bucket" }
            form #s3-form method="post" action="#" novalidate {
                label for="s3-name" { "Name" }
                input #s3-name name="name" required maxlength="100";
                label for="s3-endpoint" { "Endpoint URL" }
                input #s3-endpoint name="endpoint" type="url" required placeholder="https://s3.eu-west-1.amazonaws.com";
                label for="s3-region" { "Region" }
                input #s3-region name="region" required value="us-east-1";
                label for="s3-bucket" { "Bucket" }
                input #s3-bucket name="bucket" required pattern="[a-z0-9][a-z0-9.\\-]{1,61}[a-z0-9]";
                label for="s3-prefix" { "Key prefix (optional)" }
                input #s3-prefix name="prefix";
                label for="s3-key" { "Access key id" }
                input #s3-key name="access_key_id" required autocomplete="off";
                label for="s3-secret" { "Secret access key" }
                input #s3-secret name="secret_access_key" type="password" required autocomplete="off";
                label.check { input name="path_style" type="checkbox" checked; " Path-style addressing (most self-hosted servers)" }
                p.error #s3-error role="alert" {}
                button type="submit" { "Add bucket" }
            }
        }
    };
    html_response(StatusCode::OK, layout("Storage", "storage", Some(&v), main))
}

fn where_of(profile: &StorageProfile, state: &ApiState) -> String {
    match &profile.backend {
        StorageBackend::S3 {
            endpoint,
            bucket,
            prefix,
            ..
        } => match prefix {
            Some(p) => format!("{bucket}/{p} at {endpoint}"),
            None => format!("{bucket} at {endpoint}"),
        },
        StorageBackend::GoogleDrive { folder_id } if folder_id == "root" => {
            "the root of the Drive".to_owned()
        }
        StorageBackend::GoogleDrive { folder_id } => format!("folder {folder_id}"),
        StorageBackend::Folder { path } => state.profiles.location(profile).map_or_else(
            || format!("{path} (this server has no shared volume)"),
            |dir| dir.display().to_string(),
        ),
    }
}

/// What the storage page says when Google sends the browser back (`?drive=`).
fn drive_outcome(code: Option<&str>) -> Option<(&'static str, &'static str)> {
    Some(match code? {
        "connected" => ("notice", "Google Drive is connected."),
        "drive_consent_denied" => (
            "error",
            "Google Drive was not connected: access was declined on Google's page.",
        ),
        "drive_connect_failed" => (
            "error",
            "Google Drive could not be connected (the attempt was not this browser's, took too long, or Google refused it). Please try again.",
        ),
        _ => return None,
    })
}

#[derive(Debug, Deserialize)]
pub struct StorageParams {
    drive: Option<String>,
}

// ---- admin ----

#[derive(Deserialize, Default)]
pub struct AdminParams {
    actor: Option<String>,
    action: Option<String>,
    /// The first and last day shown (`YYYY-MM-DD`, UTC, both included).
    from: Option<String>,
    to: Option<String>,
    /// Entries older than this id (the previous page's last).
    before: Option<i64>,
}

/// A `YYYY-MM-DD` day's start in UTC (`next`: the day after's), or `None` when empty or
/// not a date.
fn day_start(day: Option<&str>, next: bool) -> Option<chrono::DateTime<chrono::Utc>> {
    let date = chrono::NaiveDate::parse_from_str(day?.trim(), "%Y-%m-%d").ok()?;
    let date = if next { date.succ_opt()? } else { date };
    Some(date.and_time(chrono::NaiveTime::MIN).and_utc())
}

/// Audit entries per page.
const AUDIT_PAGE: u64 = 100;

/// The admin page's link to the audit entries before `last`, with the same filters.
fn older_audit(p: &AdminParams, last: i64) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in [
        ("actor", &p.actor),
        ("action", &p.action),
        ("from", &p.from),
        ("to", &p.to),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            q.append_pair(key, v);
        }
    }
    q.append_pair("before", &last.to_string());
    format!("/admin?{}#audit", q.finish())
}

#[handler]
pub async fn admin_page(
    req: &Request,
    Data(state): Data<&Arc<ApiState>>,
    Query(p): Query<AdminParams>,
) -> Response {
    let v = match viewer(req, state).await {
        Ok(v) => v,
        Err(to_login) => return to_login,
    };
    if !v.is_admin() {
        return html_response(
            StatusCode::FORBIDDEN,
            layout(
                "Admins only",
                "error",
                Some(&v),
                html! { p { "This page is for admins." } },
            ),
        );
    }
    let users = state.accounts.users(&v.caller).await.unwrap_or_default();
    let actor = p
        .actor
        .as_deref()
        .filter(|a| !a.is_empty())
        .and_then(OwnerId::parse);
    let action = p.action.clone().filter(|a| !a.is_empty());
    let audit = state
        .accounts
        .audit_log(
            &v.caller,
            AuditQuery {
                actor: actor.clone(),
                action: action.clone(),
                since: day_start(p.from.as_deref(), false),
                until: day_start(p.to.as_deref(), true),
                before: p.before,
                limit: AUDIT_PAGE,
            },
        )
        .await
        .unwrap_or_default();
    let health = state.health.check().await;
    let depths = state.health.queue_depths().await;
    let workers = state.health.workers().await;
    let name_of = |id: &OwnerId| {
        users
            .iter()
            .find(|u| &u.id == id)
            .map_or_else(|| id.as_str().to_owned(), |u| u.display_name.clone())
    };
    let main = html! {
        section.card {
            h2 { "Health" }
            ul.health {
                @for c in &health {
                    li data-ok=(c.ok) { (c.name) ": " (if c.ok { "ok" } else { "failing" }) @if let Some(d) = &c.detail { " — " (d) } }
                }
            }
            p {
                "Waiting in the queues: "
                @for (i, (stage, depth)) in depths.iter().enumerate() {
                    @if i > 0 { ", " }
                    (stage.as_str()) " " @if let Some(n) = depth { (n) } @else { "?" }
                }
                "."
            }
            h3 { "Workers seen" }
            @match &workers {
                None => p { "The queue did not answer." }
                Some(list) if list.is_empty() => p { "No worker has asked for work yet." }
                Some(list) => {
                    ul.workers {
                        @for w in list {
                            li data-stale=(w.idle.as_secs() > 120) {
                                code { (w.name) } " — "
                                (w.stages.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))
                                "; asked " (human::duration(w.idle.as_secs())) " ago"
                                @if w.pending > 0 { "; holds " (w.pending) @if w.pending == 1 { " job" } @else { " jobs" } }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Users" }
            div.table-wrap {
                table.users {
                    thead {
                        tr {
                            th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Disabled" }
                            th scope="col" { "Active jobs" } th scope="col" { "Bytes per job" } th scope="col" { "Stored bytes" } th scope="col" { "Seeding jobs" }
                            th scope="col" { "Last seen" } th scope="col" { span.visually-hidden { "Save" } }
                        }
                    }
                    tbody {
                        @for u in &users {
                            @let id = u.id.as_str();
                            tr data-user=(id) {
                                td { (u.display_name) @if let Some(e) = &u.email { br; small { (e) } } }
                                td {
                                    select name="role" aria-label={"Role of " (u.display_name)} {
                                        option value="user" selected[u.role == Role::User] { "User" }
                                        option value="admin" selected[u.role == Role::Admin] { "Admin" }
                                    }
                                }
                                td { input name="disabled" type="checkbox" checked[u.disabled] aria-label={"Disable " (u.display_name)}; }
                                @for (field, value) in [("active_jobs", u.quotas.active_jobs), ("job_bytes", u.quotas.job_bytes), ("stored_bytes", u.quotas.stored_bytes), ("seeding_jobs", u.quotas.seeding_jobs)] {
                                    td { input name=(field) type="number" min="0" value=[value] placeholder="default" aria-label={(field) " of " (u.display_name)}; }
                                }
                                td { @if let Some(s) = u.last_seen_at { (human::time(s)) } @else { "never" } }
                                td { button type="button" data-save=(id) { "Save" } span.result role="status" {} }
                            }
                        }
                    }
                }
            }
        }
        section.card #audit {
            h2 { "Audit log" }
            form.filters method="get" action="/admin" {
                label for="a-actor" { "Actor" }
                select #a-actor name="actor" {
                    option value="" { "Anyone" }
                    @for u in &users { option value=(u.id.as_str()) selected[actor.as_ref() == Some(&u.id)] { (u.display_name) } }
                }
                label for="a-action" { "Action" }
                input #a-action name="action" value=[action.as_deref()] placeholder="login. or job.submit";
                label for="a-from" { "From" }
                input #a-from name="from" type="date" value=[p.from.as_deref().filter(|_| day_start(p.from.as_deref(), false).is_some())];
                label for="a-to" { "To" }
                input #a-to name="to" type="date" value=[p.to.as_deref().filter(|_| day_start(p.to.as_deref(), true).is_some())];
                button type="submit" { "Filter" }
            }
            div.table-wrap {
                table.audit {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" } th scope="col" { "Target" } th scope="col" { "Outcome" } th scope="col" { "From" } } }
                    tbody {
                        @for e in &audit {
                            tr {
                                td { (human::time(e.at)) }
                                td { @if let Some(a) = &e.actor { (name_of(a)) } @else { "—" } }
                                td { code { (e.action) } }
                                td { @if let Some(t) = &e.target { (OwnerId::parse(t).filter(|id| users.iter().any(|u| &u.id == id)).map_or_else(|| t.clone(), |id| name_of(&id))) } }
                                td { (format!("{:?}", e.outcome).to_lowercase()) @if let Some(d) = &e.detail { " " small { (d) } } }
                                td { @if let Some(ip) = &e.ip { (ip) } }
                            }
                        }
                        @if audit.is_empty() { tr.empty { td colspan="6" { "Nothing recorded." } } }
                    }
                }
            }
            @if audit.len() as u64 == AUDIT_PAGE && let Some(last) = audit.last() {
                nav.pager aria-label="Audit log pages" {
                    a href=(older_audit(&p, last.id)) { "Older entries" }
                }
            }
        }
    };
    html_response(StatusCode::OK, layout("Admin", "admin", Some(&v), main))
}

#[cfg(test)]
mod tests {
    use super::{browser_name, day_start};

    #[test]
    fn browsers_are_named_for_people() {
        let name = |ua: &str| browser_name(Some(ua));
        assert_eq!(
            name("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
            "Firefox on Linux"
        );
        assert_eq!(
            name(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"
            ),
            "Edge on Windows"
        );
        assert_eq!(
            name(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
            ),
            "Safari on iOS"
        );
        assert_eq!(name("curl/8.5.0"), "curl");
        assert_eq!(name("x".repeat(500).as_str()).len(), 80);
        assert_eq!(browser_name(None), "Unknown browser");
        assert_eq!(browser_name(Some("  ")), "Unknown browser");
    }

    #[test]
    fn audit_days_are_whole_utc_days() {
        assert_eq!(
            day_start(Some("2026-11-30"), false).map(|d| d.to_rfc3339()),
            Some("2026-11-30T00:00:00+00:00".to_owned())
        );
        assert_eq!(
            day_start(Some("2026-12-31"), true).map(|d| d.to_rfc3339()),
            Some("2027-01-01T00:00:00+00:00".to_owned())
        );
        for bad in ["", "yesterday", "2026-13-01", "2026-11-30T00:00:00Z"] {
            assert_eq!(day_start(Some(bad), false), None, "{bad}");
        }
        assert_eq!(day_start(None, true), None);
    }
}
