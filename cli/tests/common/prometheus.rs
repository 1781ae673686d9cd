//! The monitoring Ferry ships, read and run for real: a Prometheus server (Debian's
//! `prometheus`) on loopback scraping the test's processes with the scrape jobs of
//! `deploy/prometheus/prometheus.yml`, `promtool`, and readers of the alert rules
//! (`deploy/prometheus/alerts.yml`), the Grafana dashboard and its data sources
//! (`deploy/grafana`), with a small LogQL reader for the dashboard's Loki queries.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A file under `deploy/`.
pub fn deploy(path: &str) -> PathBuf {
    repo().join("deploy").join(path)
}

pub fn read_yaml(path: &Path) -> serde_yaml::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

/// `promtool` with `args`, `stdin` fed to it.
pub fn promtool(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// promtool's output, both streams.
pub fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The configuration the test runs Prometheus with: the shipped one (its scrape jobs with
/// their relabelling, its rules) with each job's service discovery replaced by the test's
/// processes on loopback (`targets`: job name → `127.0.0.1:port`s; every shipped job must
/// have some), `extra` jobs added as they are, and a 1 s scrape and evaluation interval.
pub fn test_config(
    targets: &BTreeMap<String, Vec<String>>,
    extra: &[serde_yaml::Value],
) -> serde_yaml::Value {
    let mut config = read_yaml(&deploy("prometheus/prometheus.yml"));
    config["global"]["scrape_interval"] = "1s".into();
    config["global"]["scrape_timeout"] = "1s".into();
    config["global"]["evaluation_interval"] = "1s".into();
    // Rule files are relative to the configuration file, which the test writes elsewhere.
    let rules: Vec<serde_yaml::Value> = config["rule_files"]
        .as_sequence()
        .expect("rule_files")
        .iter()
        .map(|f| {
            deploy("prometheus")
                .join(f.as_str().unwrap())
                .display()
                .to_string()
                .into()
        })
        .collect();
    config["rule_files"] = serde_yaml::Value::Sequence(rules);
    let jobs = config["scrape_configs"]
        .as_sequence_mut()
        .expect("scrape_configs");
    for job in jobs.iter_mut() {
        let name = job["job_name"].as_str().unwrap().to_owned();
        let addresses = targets.get(&name).unwrap_or_else(|| {
            panic!("the shipped scrape job {name} has no process in this test: give it one")
        });
        let map = job.as_mapping_mut().unwrap();
        map.retain(|k, _| !k.as_str().is_some_and(|k| k.ends_with("_sd_configs")));
        map.insert(
            "static_configs".into(),
            serde_yaml::from_str(&format!("[{{targets: {addresses:?}}}]")).unwrap(),
        );
    }
    jobs.extend(extra.iter().cloned());
    config
}

/// A Prometheus server on a loopback port of its own, killed on drop.
pub struct Prometheus {
    pub port: u16,
    pub proc: Proc,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus on `config` (written into `dir`) and waits until it is ready.
    pub async fn start(dir: &Path, config: &serde_yaml::Value) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, serde_yaml::to_string(config).unwrap()).unwrap();
        let check = promtool(&["check", "config", file.to_str().unwrap()], None);
        assert!(
            check.status.success(),
            "the test's Prometheus configuration:\n{}",
            said(&check)
        );
        let (proc, port) =
            ferry_testkit::spawn_on_free_port("prometheus", &dir.join("prometheus.log"), |port| {
                let mut cmd = Command::new("prometheus");
                cmd.arg(format!("--config.file={}", file.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        dir.join("data").display()
                    ))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .arg("--log.level=warn");
                cmd
            });
        let prometheus = Self {
            port,
            proc,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = prometheus
                .http
                .get(prometheus.url("/-/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return prometheus;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus did not become ready:\n{}",
                prometheus.proc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `GET /api/v1/{path}`'s `data`, or Prometheus's error (a query that does not parse,
    /// or fails to evaluate).
    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let answer = self
            .http
            .get(self.url(&format!("/api/v1/{path}")))
            .query(query)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = answer.status();
        let body: Value = answer.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!(
                "{status}: {} {}",
                body["errorType"].as_str().unwrap_or_default(),
                body["error"].as_str().unwrap_or_default()
            ));
        }
        Ok(body["data"].clone())
    }

    /// An instant query's series (`/api/v1/query`).
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api("query", &[("query", expr)]).await?;
        match data["resultType"].as_str() {
            Some("vector" | "matrix") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
            // A scalar or a string is one value.
            _ => Ok(vec![data["result"].clone()]),
        }
    }

    /// Waits until Prometheus has scraped `count` targets and every one is up; returns them.
    pub async fn wait_for_targets(&self, count: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let targets = self
                .api("targets", &[("state", "active")])
                .await
                .map(|d| d["activeTargets"].as_array().cloned().unwrap_or_default())
                .unwrap_or_default();
            if targets.len() == count && targets.iter().all(|t| t["health"] == "up") {
                return targets;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus did not scrape {count} targets, all up: {:#}",
                Value::Array(targets)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One alerting rule of `deploy/prometheus/alerts.yml`.
#[derive(Debug, Clone)]
pub struct Alert {
    pub name: String,
    pub expr: String,
    pub rule: serde_yaml::Value,
}

pub fn alerts() -> Vec<Alert> {
    let file = read_yaml(&deploy("prometheus/alerts.yml"));
    file["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").iter())
        .filter(|r| r["alert"].is_string())
        .map(|r| Alert {
            name: r["alert"].as_str().unwrap().to_owned(),
            expr: r["expr"].as_str().unwrap().trim().to_owned(),
            rule: r.clone(),
        })
        .collect()
}

/// `expr` without its comparisons against a number (`> 900`, `>= bool 3`): the signal the
/// alert watches, which a healthy system has series of even while the alert is quiet.
/// Strings, label matchers (`{…}`) and ranges (`[…]`) are left alone.
pub fn without_thresholds(expr: &str) -> String {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = String::new();
    let (mut braces, mut brackets) = (0i32, 0i32);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                // A string literal, escapes included, copied as it is.
                out.push(c);
                i += 1;
                while i < chars.len() {
                    out.push(chars[i]);
                    if chars[i] == '\\' && c != '`' && i + 1 < chars.len() {
                        i += 1;
                        out.push(chars[i]);
                    } else if chars[i] == c {
                        break;
                    }
                    i += 1;
                }
                i += 1;
                continue;
            }
            '{' => braces += 1,
            '}' => braces -= 1,
            '[' => brackets += 1,
            ']' => brackets -= 1,
            '>' | '<' | '=' | '!' if braces == 0 && brackets == 0 => {
                let next = chars.get(i + 1).copied();
                let len = match (c, next) {
                    (_, Some('=')) => 2,
                    ('>' | '<', _) => 1,
                    _ => 0,
                };
                if len > 0
                    && let Some(end) = number_after(&chars, i + len)
                {
                    while out.ends_with([' ', '\t', '\n']) {
                        out.pop();
                    }
                    i = end;
                    continue;
                }
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    out.trim().to_owned()
}

/// Where a number literal (after blanks and an optional `bool`) starting at `from` ends.
fn number_after(chars: &[char], from: usize) -> Option<usize> {
    let blank = |i: usize| chars.get(i).is_some_and(|c| c.is_whitespace());
    let mut i = from;
    while blank(i) {
        i += 1;
    }
    let word: String = chars[i.min(chars.len())..].iter().take(5).collect();
    if word.starts_with("bool") && chars.get(i + 4).is_some_and(|c| c.is_whitespace()) {
        i += 4;
        while blank(i) {
            i += 1;
        }
    }
    if chars.get(i).is_some_and(|c| *c == '-' || *c == '+') {
        i += 1;
    }
    let start = i;
    while let Some(c) = chars.get(i) {
        let exponent_sign = (*c == '-' || *c == '+') && i > start && "eE".contains(chars[i - 1]);
        if !(c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == 'E' || exponent_sign) {
            break;
        }
        i += 1;
    }
    let number = &chars[start..i];
    let ends_well = chars
        .get(i)
        .is_none_or(|c| !(c.is_alphanumeric() || *c == '_' || *c == ':'));
    (number.first().is_some_and(char::is_ascii_digit) && ends_well).then_some(i)
}

/// The Grafana dashboard.
pub fn dashboard() -> Value {
    let path = deploy("grafana/dashboards/ferry.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// Every panel, those inside rows included.
pub fn panels(dashboard: &Value) -> Vec<Value> {
    fn walk(list: &Value, out: &mut Vec<Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p.clone());
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// One query of a panel, with the uid of the data source it goes to (the target's own, or
/// its panel's).
#[derive(Debug, Clone)]
pub struct PanelQuery {
    pub panel: String,
    pub datasource: String,
    pub expr: String,
}

pub fn panel_queries(dashboard: &Value) -> Vec<PanelQuery> {
    panels(dashboard)
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_owned();
            let panel_ds = p["datasource"]["uid"].as_str().map(str::to_owned);
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| PanelQuery {
                    panel: format!("{title} ({})", t["refId"].as_str().unwrap_or("?")),
                    datasource: t["datasource"]["uid"]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| panel_ds.clone())
                        .unwrap_or_default(),
                    expr: t["expr"].as_str().unwrap_or_default().to_owned(),
                })
        })
        .collect()
}

/// The data sources `deploy/grafana/provisioning/datasources` provisions: uid → type.
pub fn provisioned_datasources() -> BTreeMap<String, String> {
    let dir = deploy("grafana/provisioning/datasources");
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = read_yaml(&entry.unwrap().path());
        for ds in file["datasources"].as_sequence().into_iter().flatten() {
            let uid = ds["uid"]
                .as_str()
                .expect("every data source has a fixed uid");
            let kind = ds["type"].as_str().expect("type");
            assert!(
                found.insert(uid.to_owned(), kind.to_owned()).is_none(),
                "data source uid {uid} is provisioned twice"
            );
        }
    }
    found
}

/// Variables `text` refers to: `$name`, `${name}`, `${name:format}` and `[[name]]`.
pub fn variables_in(text: &str) -> BTreeSet<String> {
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices('$') {
        let rest = &text[at + 1..];
        let name = match rest.strip_prefix('{') {
            Some(inner) => word(inner),
            None => word(rest),
        };
        if !name.is_empty() {
            found.insert(name);
        }
    }
    for (at, _) in text.match_indices("[[") {
        let name = word(&text[at + 2..]);
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

/// `text` with each variable replaced by its value (`values`: name → value), in any of the
/// forms [`variables_in`] reads.
pub fn substitute(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    // Longest names first, so `$__range` is not read as `$__r…`.
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        let value = &values[name];
        for form in [
            format!("${{{name}}}"),
            format!("[[{name}]]"),
            format!("${name}"),
        ] {
            out = out.replace(&form, value);
        }
    }
    out
}

/// A label matcher of LogQL: `label op "value"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher {
    pub label: String,
    pub op: String,
    pub value: String,
}

impl Matcher {
    fn holds(&self, got: Option<&str>) -> bool {
        let got = got.unwrap_or("");
        match self.op.as_str() {
            "=" => got == self.value,
            "!=" => got != self.value,
            "=~" => regex_matches(&self.value, got),
            "!~" => !regex_matches(&self.value, got),
            _ => false,
        }
    }
}

/// The regular expressions this reader evaluates: alternatives of plain words, `.*`, `.+`.
fn simple_regex(re: &str) -> bool {
    re == ".*"
        || re == ".+"
        || re.split('|').all(|alt| {
            !alt.is_empty()
                && alt
                    .chars()
                    .all(|c| c.is_alphanumeric() || "_-/ :".contains(c))
        })
}

fn regex_matches(re: &str, got: &str) -> bool {
    match re {
        ".*" => true,
        ".+" => !got.is_empty(),
        _ => re.split('|').any(|alt| alt == got),
    }
}

/// A stage of a LogQL pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// `| json`: the line's JSON fields become labels (nested ones joined with `_`).
    Json,
    /// `|= "text"`, `!= "text"`.
    Contains(bool, String),
    /// `| label op "value"`.
    Label(Matcher),
}

/// A LogQL log query: a stream selector and a pipeline, as far as the dashboard uses them.
#[derive(Debug, Clone)]
pub struct LogQuery {
    pub selector: Vec<Matcher>,
    pub pipeline: Vec<Stage>,
}

/// Reads `{label op "value", …} | stage | …`, or says what it does not understand.
pub fn parse_logql(query: &str) -> Result<LogQuery, String> {
    let query = query.trim();
    let inner = query
        .strip_prefix('{')
        .ok_or("a log query starts with a stream selector {…}")?;
    let close = inner.find('}').ok_or("the stream selector is not closed")?;
    let selector = matchers(&inner[..close])?;
    if !selector.iter().any(|m| m.op == "=" && !m.value.is_empty()) {
        return Err("Loki needs at least one label = \"value\" in the selector".into());
    }
    let mut pipeline = Vec::new();
    let mut rest = inner[close + 1..].trim();
    while !rest.is_empty() {
        let (stage, after) = if let Some(r) = rest.strip_prefix("|=") {
            let (text, after) = quoted(r.trim_start())?;
            (Stage::Contains(true, text), after)
        } else if let Some(r) = rest.strip_prefix("!=") {
            let (text, after) = quoted(r.trim_start())?;
            (Stage::Contains(false, text), after)
        } else if let Some(r) = rest.strip_prefix('|') {
            let r = r.trim_start();
            if let Some(after) = r.strip_prefix("json")
                && !after.starts_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                (Stage::Json, after)
            } else {
                let (m, after) = matcher(r)?;
                (Stage::Label(m), after)
            }
        } else {
            return Err(format!("cannot read {rest:?}"));
        };
        pipeline.push(stage);
        rest = after.trim_start();
    }
    Ok(LogQuery { selector, pipeline })
}

fn matchers(text: &str) -> Result<Vec<Matcher>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (m, after) = matcher(rest)?;
        out.push(m);
        rest = after.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(out)
}

fn matcher(text: &str) -> Result<(Matcher, &str), String> {
    let label: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if label.is_empty() || label.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("expected a label name at {text:?}"));
    }
    let rest = text[label.len()..].trim_start();
    let op = ["=~", "!~", "!=", "="]
        .into_iter()
        .find(|op| rest.starts_with(op))
        .ok_or_else(|| format!("expected = != =~ or !~ after {label}"))?;
    let (value, after) = quoted(rest[op.len()..].trim_start())?;
    if op.contains('~') && !simple_regex(&value) {
        return Err(format!(
            "the regular expression {value:?} is more than this reader evaluates (words joined by |, .*, .+)"
        ));
    }
    Ok((
        Matcher {
            label,
            op: op.to_owned(),
            value,
        },
        after,
    ))
}

/// A double-quoted string at the start of `text` (with `\"` and `\\`), and what follows.
fn quoted(text: &str) -> Result<(String, &str), String> {
    let body = text
        .strip_prefix('"')
        .ok_or_else(|| format!("expected a \"string\" at {text:?}"))?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => value.push(chars.next().ok_or("a string ends in \\")?.1),
            '"' => return Ok((value, &body[i + 1..])),
            c => value.push(c),
        }
    }
    Err(format!("the string {text:?} is not closed"))
}

impl LogQuery {
    /// Whether a line of a stream labelled `labels` passes the query.
    pub fn matches(&self, labels: &BTreeMap<String, String>, line: &Value) -> bool {
        if !self
            .selector
            .iter()
            .all(|m| m.holds(labels.get(&m.label).map(String::as_str)))
        {
            return false;
        }
        let mut labels = labels.clone();
        let text = line.to_string();
        for stage in &self.pipeline {
            let pass = match stage {
                Stage::Json => {
                    flatten("", line, &mut labels);
                    true
                }
                Stage::Contains(want, needle) => text.contains(needle.as_str()) == *want,
                Stage::Label(m) => m.holds(labels.get(&m.label).map(String::as_str)),
            };
            if !pass {
                return false;
            }
        }
        true
    }
}

/// Loki's `json` stage: every field becomes a label, nested names joined with `_`.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(fields) => {
            for (k, v) in fields {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}_{k}")
                };
                flatten(&name, v, out);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_owned(), s.clone());
        }
        Value::Null => {}
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

/// GitHub's anchor of a Markdown heading: lower case, punctuation gone, spaces to `-`.
pub fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of every heading of a Markdown file.
pub fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    markdown
        .lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                in_code = !in_code;
                return false;
            }
            !in_code && l.starts_with('#')
        })
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}
