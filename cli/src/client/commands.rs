//! The short client commands: `login`, `add`, `ls`, `pause`, `resume`, `retry` and `rm`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use super::api::Api;
use super::config::{self, Stored};
use super::error::{ClientError, clean};
use super::model::{CreatedToken, Job, JobPage, Me, Profile};
use super::{AddArgs, IdArgs, LoginArgs, LsArgs, Output, RmArgs};

/// The session cookie a password login sets.
const SESSION_COOKIE: &str = "ferry_session";

/// Prints `value` on stdout as `--json` output.
pub fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// Prints `value` with `--json`, else `human` (a line of text) on stdout.
fn answer(output: Output, value: &Value, human: impl FnOnce() -> String) {
    if output.json {
        print_json(value);
    } else {
        println!("{}", human());
    }
}

/// A job id from the command line: a UUID, or a [`ClientError::NotFound`] (no job can have
/// any other id, so the server is not asked).
pub fn job_id(text: &str) -> Result<Uuid, ClientError> {
    Uuid::try_parse(text.trim()).map_err(|_| {
        ClientError::NotFound(format!(
            "no job {:?}: a job's id is a UUID, as `ferry ls` shows it",
            clean(text).to_string()
        ))
    })
}

/// The first line of standard input, without its line end.
fn stdin_line(what: &str) -> Result<String, ClientError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading the {what} from standard input"))?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    if line.is_empty() {
        return Err(ClientError::Usage(format!(
            "standard input holds no {what}"
        )));
    }
    Ok(line)
}

/// The name of the token `ferry login` makes: which machine it is for.
fn token_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "this machine".to_owned());
    format!("ferry CLI on {host}")
}

/// `ferry login`: a password login whose session makes a personal token and then ends, or
/// a token given on standard input; either is checked with `GET /me` and stored.
pub async fn login(args: LoginArgs) -> Result<(), ClientError> {
    let url = args.url;
    if url.scheme() == "http"
        && !matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
    {
        eprintln!(
            "ferry: warning: {url} is plain http: your password and token cross the network unencrypted"
        );
    }
    let token = if args.token_stdin {
        stdin_line("token")?
    } else {
        password_login(&url, args.user, args.password_stdin).await?
    };
    let api = Api::new(&url, Some(&token))?;
    let (_, me): (_, Me) = api.json(api.request(Method::GET, &["me"])).await?;
    let path = config::save(&Stored {
        url: url.to_string(),
        token,
    })?;
    let value = json!({
        "url": url.as_str(),
        "user": {"id": me.user.id, "display_name": me.user.display_name},
        "config": path.display().to_string(),
    });
    answer(args.output, &value, || {
        format!(
            "Logged in to {url} as {}; the token is stored in {}",
            clean(&me.user.display_name),
            path.display()
        )
    });
    Ok(())
}

/// Logs in with a name and password, makes a personal token with the session, ends the
/// session, and returns the token.
async fn password_login(
    url: &reqwest::Url,
    user: Option<String>,
    password_stdin: bool,
) -> Result<String, ClientError> {
    let terminal = std::io::stdin().is_terminal();
    let user = match user {
        Some(user) => user,
        None if terminal && !password_stdin => {
            eprint!("Login name: ");
            let _ = std::io::stderr().flush();
            stdin_line("login name")?
        }
        None => {
            return Err(ClientError::Usage(
                "give your login name with --user NAME".to_owned(),
            ));
        }
    };
    let password = if password_stdin {
        stdin_line("password")?
    } else if terminal {
        rpassword::prompt_password("Password: ").context("reading the password")?
    } else {
        return Err(ClientError::Usage(
            "no terminal to ask for the password on: pass it with --password-stdin".to_owned(),
        ));
    };
    let anonymous = Api::new(url, None)?;
    let response = anonymous
        .send(
            anonymous
                .request(Method::POST, &["auth", "login"])
                .json(&json!({"username": user, "password": password})),
        )
        .await?;
    let cookie = response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{SESSION_COOKIE}=")))
        .and_then(|v| v.split(';').next())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("the server logged you in but set no session cookie"))?;
    // A change made with the session cookie must say it comes from the server's own origin.
    let origin = url.origin().ascii_serialization();
    let session = |method: Method, path: &[&str]| {
        anonymous
            .request(method, path)
            .header(
                reqwest::header::COOKIE,
                format!("{SESSION_COOKIE}={cookie}"),
            )
            .header(reqwest::header::ORIGIN, &origin)
    };
    let created = anonymous
        .json::<CreatedToken>(session(Method::POST, &["me", "tokens"]).json(&json!({
            "name": token_name(),
            "scopes": ["read", "write"],
        })))
        .await;
    // The session was only a way to the token: end it whatever happened.
    if let Err(e) = anonymous
        .send(session(Method::POST, &["auth", "logout"]))
        .await
    {
        eprintln!("ferry: warning: the login session could not be ended: {e}");
    }
    Ok(created?.1.token)
}

/// Where `--to` delivers: a profile's id, or `None` for the server's own storage.
pub(super) async fn destination(api: &Api, to: &str) -> Result<Option<Uuid>, ClientError> {
    if to == "server" {
        return Ok(None);
    }
    if let Ok(id) = Uuid::try_parse(to) {
        return Ok(Some(id));
    }
    let (_, profiles): (_, Vec<Profile>) = api
        .json(api.request(Method::GET, &["storage-profiles"]))
        .await?;
    let exact: Vec<&Profile> = profiles.iter().filter(|p| p.name == to).collect();
    let named = if exact.is_empty() {
        profiles
            .iter()
            .filter(|p| p.name.eq_ignore_ascii_case(to))
            .collect()
    } else {
        exact
    };
    match named.as_slice() {
        [one] => Ok(Some(one.id)),
        [] => Err(ClientError::NotFound(format!(
            "no storage profile named {:?}",
            clean(to).to_string()
        ))),
        _ => Err(ClientError::Usage(format!(
            "several storage profiles are named {:?}: give the id of one",
            clean(to).to_string()
        ))),
    }
}

/// `ferry add`: a magnet or URL as JSON, a .torrent file as a multipart upload.
pub async fn add(api: &Api, args: AddArgs) -> Result<(), ClientError> {
    let source = args.source.trim();
    let deliver_to = match &args.to {
        Some(to) => Some(destination(api, to).await?),
        None => None,
    };
    let request = if source.starts_with("magnet:")
        || source.starts_with("http://")
        || source.starts_with("https://")
    {
        let kind = if source.starts_with("magnet:") {
            "magnet"
        } else {
            "url"
        };
        let mut body = json!({"source": {kind: source}});
        if let Some(files) = &args.files {
            body["files"] = json!(files);
        }
        if let Some(to) = deliver_to {
            body["storage_profile"] = json!(to);
        }
        if args.seed {
            body["seed"] = json!(true);
        }
        api.request(Method::POST, &["jobs"]).json(&body)
    } else {
        let path = std::path::Path::new(source);
        let bytes = std::fs::read(path).map_err(|e| {
            ClientError::Usage(format!(
                "{source:?} is not a magnet link, an http(s) URL or a readable .torrent file ({e})"
            ))
        })?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "upload.torrent".to_owned());
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(file_name)
            .mime_str("application/x-bittorrent")
            .context("building the upload")?;
        let mut form = reqwest::multipart::Form::new().part("torrent", part);
        if let Some(files) = &args.files {
            let list: Vec<String> = files.iter().map(u32::to_string).collect();
            form = form.text("files", list.join(","));
        }
        if let Some(to) = deliver_to {
            form = form.text(
                "storage_profile",
                to.map_or_else(|| "server".to_owned(), |id| id.to_string()),
            );
        }
        if args.seed {
            form = form.text("seed", "true");
        }
        api.request(Method::POST, &["jobs", "torrent"])
            .multipart(form)
    };
    let (value, job): (_, Job) = api.json(request).await?;
    if args.watch {
        if !args.output.json {
            println!("{}", job.id);
        }
        return super::watch::watch(api, Some(&job.id.to_string()), args.output).await;
    }
    answer(args.output, &value, || {
        format!("{}  {}  {}", job.id, job.status, clean(&job.name))
    });
    Ok(())
}

/// `ferry ls`: a table of jobs, or their JSON array.
pub async fn ls(api: &Api, args: LsArgs) -> Result<(), ClientError> {
    let mut items = Vec::new();
    let mut before: Option<Uuid> = None;
    loop {
        let mut query: Vec<(&str, String)> = vec![("limit", "50".to_owned())];
        if let Some(status) = &args.status {
            query.push(("status", status.clone()));
        }
        if let Some(q) = &args.search {
            query.push(("q", q.clone()));
        }
        if let Some(before) = before {
            query.push(("before", before.to_string()));
        }
        let (_, page): (_, JobPage) = api
            .json(api.request(Method::GET, &["jobs"]).query(&query))
            .await?;
        items.extend(page.items);
        match page.next_cursor {
            Some(next) if args.all => before = Some(next),
            _ => break,
        }
    }
    if args.output.json {
        print_json(&Value::Array(items));
        return Ok(());
    }
    if items.is_empty() {
        eprintln!("no jobs");
        return Ok(());
    }
    println!(
        "{:<36}  {:<11}  {:>6}  {:>10}  NAME",
        "ID", "STATUS", "DONE", "SIZE"
    );
    for item in items {
        let job: Job = serde_json::from_value(item)
            .context("the server's answer is not what this client understands")?;
        let size = if job.progress.bytes_total > 0 {
            indicatif::HumanBytes(job.progress.bytes_total).to_string()
        } else {
            "?".to_owned()
        };
        println!(
            "{:<36}  {:<11}  {:>5.1}%  {:>10}  {}",
            job.id,
            job.status.as_str(),
            job.progress.percent,
            size,
            clean(&job.name)
        );
    }
    Ok(())
}

/// `ferry pause|resume|retry ID`: `POST /jobs/{id}/{action}`.
pub async fn act(api: &Api, action: &str, args: IdArgs) -> Result<(), ClientError> {
    let id = job_id(&args.id)?.to_string();
    let (value, job): (_, Job) = api
        .json(api.request(Method::POST, &["jobs", &id, action]))
        .await?;
    answer(args.output, &value, || {
        format!("{}  {}  {}", job.id, job.status, clean(&job.name))
    });
    Ok(())
}

/// `ferry rm ID [--with-files]`: `DELETE /jobs/{id}` (`?purge=true` with the files).
pub async fn rm(api: &Api, args: RmArgs) -> Result<(), ClientError> {
    let id = job_id(&args.id)?.to_string();
    let mut request = api.request(Method::DELETE, &["jobs", &id]);
    if args.with_files {
        request = request.query(&[("purge", "true")]);
    }
    let (value, job): (_, Job) = api.json(request).await.map_err(|e| match &e {
        // A finished job is not cancelled: it is deleted, with its files.
        ClientError::Api {
            status: 409, code, ..
        } if code == "illegal_transition" && !args.with_files => e.with_hint(&format!(
            "`ferry rm --with-files {id}` deletes it with its files"
        )),
        _ => e,
    })?;
    answer(args.output, &value, || {
        if job.purge_pending {
            format!("{}  deleting, with its files  {}", job.id, clean(&job.name))
        } else {
            format!("{}  {}  {}", job.id, job.status, clean(&job.name))
        }
    });
    Ok(())
}
