//! `ferry webhooks …`: the caller's webhooks (`/api/v1/webhooks`): add (printing the signing
//! secret, shown once), ls, rm, ping, deliveries.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Output;
use super::api::Api;
use super::commands::print_json;
use super::error::{ClientError, clean};

/// `ferry webhooks`.
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Add a webhook: URL is POSTed a signed JSON body when one of your jobs completes,
    /// fails or finishes seeding. Prints the signing secret, shown only this once.
    Add(AddWebhookArgs),
    /// List your webhooks.
    Ls(Output),
    /// Delete a webhook and its delivery history.
    Rm(WebhookIdArgs),
    /// Send a test delivery (`ping`) to a webhook.
    Ping(WebhookIdArgs),
    /// A webhook's deliveries, newest first: event, state, attempts, last answer.
    Deliveries(WebhookIdArgs),
}

impl WebhooksCommand {
    pub fn output(&self) -> Output {
        match self {
            Self::Add(a) => a.output,
            Self::Ls(o) => *o,
            Self::Rm(a) | Self::Ping(a) | Self::Deliveries(a) => a.output,
        }
    }
}

/// `ferry webhooks add`.
#[derive(Debug, Args)]
pub struct AddWebhookArgs {
    /// The endpoint: an http(s) URL.
    pub url: String,
    /// Only these events (default: all): completed, failed, seeding_finished.
    #[arg(long, value_delimiter = ',', num_args = 1.., value_parser = ["completed", "failed", "seeding_finished"])]
    pub events: Option<Vec<String>>,
    #[command(flatten)]
    pub output: Output,
}

/// A command that names one webhook.
#[derive(Debug, Args)]
pub struct WebhookIdArgs {
    /// The webhook's id (as `ferry webhooks ls` shows it).
    pub id: String,
    #[command(flatten)]
    pub output: Output,
}

fn webhook_id(text: &str) -> Result<String, ClientError> {
    Uuid::try_parse(text.trim())
        .map(|id| id.to_string())
        .map_err(|_| {
            ClientError::NotFound(format!(
                "no webhook {:?}: a webhook's id is a UUID, as `ferry webhooks ls` shows it",
                clean(text).to_string()
            ))
        })
}

fn text(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) => clean(s).to_string(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn events(v: &Value) -> String {
    v["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|e| e.trim_start_matches("job.").to_owned())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

pub async fn run(api: &Api, command: WebhooksCommand) -> Result<(), ClientError> {
    match command {
        WebhooksCommand::Add(args) => add(api, args).await,
        WebhooksCommand::Ls(output) => ls(api, output).await,
        WebhooksCommand::Rm(args) => rm(api, args).await,
        WebhooksCommand::Ping(args) => ping(api, args).await,
        WebhooksCommand::Deliveries(args) => deliveries(api, args).await,
    }
}

async fn add(api: &Api, args: AddWebhookArgs) -> Result<(), ClientError> {
    let mut body = json!({"url": args.url});
    if let Some(events) = &args.events {
        let names: Vec<String> = events.iter().map(|e| format!("job.{e}")).collect();
        body["events"] = json!(names);
    }
    let (value, _): (_, Value) = api
        .json(api.request(Method::POST, &["webhooks"]).json(&body))
        .await?;
    if args.output.json {
        print_json(&value);
    } else {
        println!(
            "{}  {}  {}",
            text(&value, "id"),
            events(&value),
            text(&value, "url")
        );
        println!("secret: {}", text(&value, "secret"));
        eprintln!(
            "Keep the secret: it is shown only now. Check each delivery's X-Ferry-Signature with it."
        );
    }
    Ok(())
}

async fn ls(api: &Api, output: Output) -> Result<(), ClientError> {
    let (value, hooks): (_, Vec<Value>) = api.json(api.request(Method::GET, &["webhooks"])).await?;
    if output.json {
        print_json(&value);
        return Ok(());
    }
    if hooks.is_empty() {
        eprintln!("no webhooks");
        return Ok(());
    }
    println!("{:<36}  {:<8}  {:<36}  URL", "ID", "ENABLED", "EVENTS");
    for h in &hooks {
        println!(
            "{:<36}  {:<8}  {:<36}  {}",
            text(h, "id"),
            text(h, "enabled"),
            events(h),
            text(h, "url")
        );
    }
    Ok(())
}

async fn rm(api: &Api, args: WebhookIdArgs) -> Result<(), ClientError> {
    let id = webhook_id(&args.id)?;
    api.send(api.request(Method::DELETE, &["webhooks", &id]))
        .await?;
    if args.output.json {
        print_json(&json!({"id": id, "deleted": true}));
    } else {
        println!("{id}  deleted");
    }
    Ok(())
}

async fn ping(api: &Api, args: WebhookIdArgs) -> Result<(), ClientError> {
    let id = webhook_id(&args.id)?;
    let (value, _): (_, Value) = api
        .json(api.request(Method::POST, &["webhooks", &id, "ping"]))
        .await?;
    if args.output.json {
        print_json(&value);
    } else {
        println!("{}  ping queued", text(&value, "id"));
    }
    Ok(())
}

async fn deliveries(api: &Api, args: WebhookIdArgs) -> Result<(), ClientError> {
    let id = webhook_id(&args.id)?;
    let (value, list): (_, Vec<Value>) = api
        .json(
            api.request(Method::GET, &["webhooks", &id, "deliveries"])
                .query(&[("limit", "100")]),
        )
        .await?;
    if args.output.json {
        print_json(&value);
        return Ok(());
    }
    if list.is_empty() {
        eprintln!("no deliveries");
        return Ok(());
    }
    println!(
        "{:<36}  {:<20}  {:<9}  {:>8}  {:>6}  {:<25}  ERROR",
        "ID", "EVENT", "STATE", "ATTEMPTS", "STATUS", "CREATED"
    );
    for d in &list {
        println!(
            "{:<36}  {:<20}  {:<9}  {:>8}  {:>6}  {:<25}  {}",
            text(d, "id"),
            text(d, "event"),
            text(d, "state"),
            text(d, "attempts"),
            text(d, "last_status"),
            text(d, "created_at"),
            text(d, "last_error")
        );
    }
    Ok(())
}
