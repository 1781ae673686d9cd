//! `ferry feeds …` and `ferry rules …`: RSS feeds and download rules (`/api/v1/feeds`,
//! `/api/v1/feed-rules`).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Output;
use super::api::Api;
use super::commands::print_json;
use super::error::{ClientError, clean};

/// `ferry feeds`.
#[derive(Debug, Subcommand)]
pub enum FeedsAction {
    /// Add an RSS feed, polled at once and then every --interval.
    Add(FeedAddArgs),
    /// List your feeds.
    Ls(ListArgs),
    /// Delete a feed.
    Rm(FeedIdArgs),
}

/// `ferry rules`.
#[derive(Debug, Subcommand)]
pub enum RulesAction {
    /// Add a download rule: items of your feeds that match it become jobs, once each.
    Add(RuleAddArgs),
    /// List your rules.
    Ls(ListArgs),
    /// Delete a rule.
    Rm(FeedIdArgs),
    /// What a rule matched, and the job each match made (or why it made none).
    Matches(FeedIdArgs),
}

#[derive(Debug, Args)]
pub struct FeedAddArgs {
    /// The feed's http(s) URL.
    pub url: String,
    /// Time between polls: 900, 90s, 15m, 2h or 1d (default: the server's).
    #[arg(long, value_parser = interval)]
    pub interval: Option<u64>,
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct RuleAddArgs {
    /// The rule's name.
    pub name: String,
    /// Only these feeds (by id; repeat the option); without it, all your feeds.
    #[arg(long = "feed", value_name = "ID")]
    pub feeds: Vec<String>,
    /// Wildcards (`*`, `?`): words that must all appear, `|` between alternatives.
    #[arg(long)]
    pub must_contain: Option<String>,
    /// As --must-contain: items it matches are skipped.
    #[arg(long)]
    pub must_not_contain: Option<String>,
    /// The two above are regular expressions.
    #[arg(long)]
    pub regex: bool,
    /// Episodes: '1x2;8-15;30-;' (season 1: episode 2, 8 to 15, 30 onwards).
    #[arg(long)]
    pub episodes: Option<String>,
    /// Each episode once (a later REPACK or PROPER once more).
    #[arg(long)]
    pub smart: bool,
    /// Deliver into this category's folder (the qBittorrent API's categories).
    #[arg(long, conflicts_with = "to")]
    pub category: Option<String>,
    /// Deliver to this storage profile, by name or id.
    #[arg(long, value_name = "PROFILE")]
    pub to: Option<String>,
    /// Seed the finished jobs.
    #[arg(long)]
    pub seed: bool,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct FeedIdArgs {
    /// Its id, as `ls` shows it.
    pub id: String,
    #[command(flatten)]
    pub output: Output,
}

impl FeedsAction {
    pub fn output(&self) -> Output {
        match self {
            Self::Add(a) => a.output,
            Self::Ls(a) => a.output,
            Self::Rm(a) => a.output,
        }
    }
}

impl RulesAction {
    pub fn output(&self) -> Output {
        match self {
            Self::Add(a) => a.output,
            Self::Ls(a) => a.output,
            Self::Rm(a) | Self::Matches(a) => a.output,
        }
    }
}

/// `900`, `90s`, `15m`, `2h`, `1d` as seconds.
fn interval(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a number of seconds, or 90s, 15m, 2h, 1d".to_owned())?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err("the unit is s, m, h or d".to_owned()),
    };
    n.checked_mul(factor).ok_or_else(|| "too long".to_owned())
}

fn id(text: &str, what: &str) -> Result<Uuid, ClientError> {
    Uuid::try_parse(text.trim()).map_err(|_| {
        ClientError::NotFound(format!(
            "no {what} {:?}: its id is a UUID, as `ls` shows it",
            clean(text).to_string()
        ))
    })
}

fn text(v: &Value, key: &str) -> String {
    clean(v[key].as_str().unwrap_or("")).to_string()
}

/// `ferry feeds …`.
pub async fn feeds(api: &Api, action: FeedsAction) -> Result<(), ClientError> {
    match action {
        FeedsAction::Add(a) => {
            let mut body = json!({"url": a.url});
            if let Some(name) = a.name {
                body["name"] = json!(name);
            }
            if let Some(secs) = a.interval {
                body["interval_secs"] = json!(secs);
            }
            let (feed, _): (Value, Value) = api
                .json(api.request(Method::POST, &["feeds"]).json(&body))
                .await?;
            if a.output.json {
                print_json(&feed);
            } else {
                println!("{} {}", text(&feed, "id"), text(&feed, "url"));
            }
        }
        FeedsAction::Ls(a) => {
            let (feeds, _): (Value, Value) = api.json(api.request(Method::GET, &["feeds"])).await?;
            if a.output.json {
                print_json(&feeds);
            } else {
                for f in feeds.as_array().into_iter().flatten() {
                    let error = f["last_error"]
                        .as_str()
                        .map(|e| format!("  error: {}", clean(e)))
                        .unwrap_or_default();
                    println!(
                        "{}  every {}s  {} items  {}  {}{error}",
                        text(f, "id"),
                        f["interval_secs"],
                        f["items"],
                        text(f, "name"),
                        text(f, "url"),
                    );
                }
            }
        }
        FeedsAction::Rm(a) => {
            let feed = id(&a.id, "feed")?.to_string();
            api.send(api.request(Method::DELETE, &["feeds", &feed]))
                .await?;
            if a.output.json {
                print_json(&json!({"deleted": feed}));
            } else {
                println!("Deleted feed {feed}");
            }
        }
    }
    Ok(())
}

/// `ferry rules …`.
pub async fn rules(api: &Api, action: RulesAction) -> Result<(), ClientError> {
    match action {
        RulesAction::Add(a) => {
            let feeds = a
                .feeds
                .iter()
                .map(|f| id(f, "feed"))
                .collect::<Result<Vec<_>, _>>()?;
            let mut body = json!({
                "name": a.name,
                "feeds": feeds,
                "use_regex": a.regex,
                "smart_filter": a.smart,
            });
            for (key, value) in [
                ("must_contain", a.must_contain),
                ("must_not_contain", a.must_not_contain),
                ("episode_filter", a.episodes),
                ("category", a.category),
            ] {
                if let Some(v) = value {
                    body[key] = json!(v);
                }
            }
            if let Some(to) = &a.to
                && let Some(profile) = super::commands::destination(api, to).await?
            {
                body["storage_profile"] = json!(profile);
            }
            if a.seed {
                body["seed"] = json!(true);
            }
            let (rule, _): (Value, Value) = api
                .json(api.request(Method::POST, &["feed-rules"]).json(&body))
                .await?;
            if a.output.json {
                print_json(&rule);
            } else {
                println!("{} {}", text(&rule, "id"), text(&rule, "name"));
            }
        }
        RulesAction::Ls(a) => {
            let (rules, _): (Value, Value) =
                api.json(api.request(Method::GET, &["feed-rules"])).await?;
            if a.output.json {
                print_json(&rules);
            } else {
                for r in rules.as_array().into_iter().flatten() {
                    println!(
                        "{}  {}  {}  contains {:?}  not {:?}  episodes {:?}{}",
                        text(r, "id"),
                        if r["enabled"] == true { "on " } else { "off" },
                        text(r, "name"),
                        text(r, "must_contain"),
                        text(r, "must_not_contain"),
                        text(r, "episode_filter"),
                        if r["smart_filter"] == true {
                            "  smart"
                        } else {
                            ""
                        },
                    );
                }
            }
        }
        RulesAction::Rm(a) => {
            let rule = id(&a.id, "rule")?.to_string();
            api.send(api.request(Method::DELETE, &["feed-rules", &rule]))
                .await?;
            if a.output.json {
                print_json(&json!({"deleted": rule}));
            } else {
                println!("Deleted rule {rule}");
            }
        }
        RulesAction::Matches(a) => {
            let rule = id(&a.id, "rule")?.to_string();
            let (matches, _): (Value, Value) = api
                .json(api.request(Method::GET, &["feed-rules", &rule, "matches"]))
                .await?;
            if a.output.json {
                print_json(&matches);
            } else {
                for m in matches.as_array().into_iter().flatten() {
                    let outcome = match (m["job_id"].as_str(), m["error"].as_str()) {
                        (Some(job), _) => format!("job {job}"),
                        (None, Some(e)) => format!("{}: {}", text(m, "status"), clean(e)),
                        (None, None) => text(m, "status"),
                    };
                    println!("{}  {}  {outcome}", text(m, "created_at"), text(m, "title"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(interval("900").unwrap(), 900);
        assert_eq!(interval("15m").unwrap(), 900);
        assert_eq!(interval("2h").unwrap(), 7200);
        assert_eq!(interval("1d").unwrap(), 86_400);
        for bad in ["", "m", "15x", "-1", "99999999999999999999d"] {
            assert!(interval(bad).is_err(), "{bad}");
        }
    }
}
