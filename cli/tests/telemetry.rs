//! The monitoring Ferry ships (`deploy/prometheus`, `deploy/grafana`), proven against the
//! real thing: a real Prometheus scrapes a running `ferry serve` and a distributed set
//! (`ferry-api` and one worker of each role) while URL jobs complete and fail, and every
//! query of every dashboard panel and every alert expression is run through its HTTP API;
//! `promtool` checks the configuration, the rules and real scrapes, and runs the alerts' unit
//! tests; the dashboard's structure and its Loki queries are checked, the latter against the
//! lines Ferry pushed to a Loki receiver.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, FreshDb, test_redis_url};
use common::loki::Loki;
use common::origin::{Origin, random_file};
use common::prometheus::*;
use common::*;
use serde_json::{Value, json};

/// Grafana's own variables, as the test sets them (a dashboard query may use any of them).
const GRAFANA_VARIABLES: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__range", "1h"),
    ("__range_s", "3600"),
];

/// The stream labels Ferry's Loki lines carry (README, Logs): the only ones a dashboard's
/// stream selector may name.
const STREAM_LABELS: &[&str] = &["service", "role", "instance", "level"];

fn needs_prometheus() -> bool {
    init();
    require(&["prometheus", "promtool"])
}

#[test]
fn thresholds_are_taken_off_alert_expressions_and_nothing_else() {
    assert_eq!(
        without_thresholds("max by (stage) (x) > 900"),
        "max by (stage) (x)"
    );
    assert_eq!(
        without_thresholds("a / b > 0.25\nand\nc >= bool 3"),
        "a / b\nand\nc"
    );
    assert_eq!(
        without_thresholds(r#"x{status=~"5..", a!="1"}[5m] < 1e-3"#),
        r#"x{status=~"5..", a!="1"}[5m]"#
    );
    assert_eq!(without_thresholds("a > b"), "a > b");
    assert_eq!(without_thresholds("a == 1"), "a");
    assert_eq!(
        without_thresholds("up{service=\"ferry\"} < 1"),
        "up{service=\"ferry\"}"
    );
}

#[test]
fn the_logql_reader_reads_and_evaluates_the_forms_dashboards_use() {
    let q = parse_logql(r#"{service="ferry", level=~"warn|error"} | json | job_id="42""#).unwrap();
    assert_eq!(q.selector.len(), 2);
    assert_eq!(q.pipeline.len(), 2);
    let labels: BTreeMap<String, String> = [("service", "ferry"), ("level", "warn")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert!(q.matches(&labels, &json!({"job_id": "42", "message": "x"})));
    assert!(!q.matches(&labels, &json!({"job_id": "43"})));
    assert!(!q.matches(&labels, &json!({"message": "no job"})));
    let mut info = labels.clone();
    info.insert("level".into(), "info".into());
    assert!(!q.matches(&info, &json!({"job_id": "42"})));
    let nested = parse_logql(r#"{service="ferry"} | json | span_job_id="7" |= "fetched""#).unwrap();
    assert!(nested.matches(
        &labels,
        &json!({"span": {"job_id": "7"}, "message": "fetched"})
    ));
    for bad in [
        r#"service="ferry""#,
        r#"{service=~"fer.*"}"#,
        r#"{service="ferry"} | json | job_id=$job_id"#,
        r#"{service="ferry" | json"#,
        r#"{service="ferry"} | json | job_id="1" extra"#,
    ] {
        assert!(parse_logql(bad).is_err(), "{bad}");
    }
}

/// The value the test gives each dashboard variable: a custom variable with "All" its
/// `allValue`, a text box a real value from the run (`texts`).
fn variable_values(dashboard: &Value, texts: &BTreeMap<&str, String>) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = GRAFANA_VARIABLES
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap();
        let value = match var["type"].as_str().unwrap() {
            "custom" if var["includeAll"] == true => var["allValue"]
                .as_str()
                .unwrap_or_else(|| panic!("${name}: give \"All\" an allValue (a regex)"))
                .to_owned(),
            "custom" => var["query"]
                .as_str()
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .trim()
                .to_owned(),
            "textbox" => texts
                .get(name)
                .unwrap_or_else(|| panic!("the test has no value for the text box ${name}"))
                .clone(),
            other => panic!("${name} is a {other} variable; teach the test its value"),
        };
        values.insert(name.to_owned(), value);
    }
    values
}

#[test]
fn the_dashboard_is_valid_with_unique_ids_provisioned_datasources_and_every_variable_used() {
    let dashboard = dashboard();
    for key in ["uid", "title"] {
        assert!(
            dashboard[key].as_str().is_some_and(|s| !s.is_empty()),
            "the dashboard has no {key}"
        );
    }
    assert!(dashboard["schemaVersion"].as_u64().is_some());
    assert!(
        dashboard.get("id").is_none_or(Value::is_null),
        "a provisioned dashboard carries no database id"
    );
    let sources = provisioned_datasources();
    let panels = panels(&dashboard);
    assert!(panels.len() > 10, "{} panels", panels.len());

    // Unique panel ids; panels on the 24-column grid, none over another.
    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or_default();
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{title} has no id"));
        assert!(ids.insert(id), "panel id {id} is used twice ({title})");
        let g = &p["gridPos"];
        let (h, w, x, y) = (
            g["h"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
        );
        assert!(w > 0 && h > 0 && x + w <= 24, "{title}: {g}");
        for row in y..y + h {
            for col in x..x + w {
                if let Some(other) = cells.insert((row, col), title.to_owned()) {
                    panic!("{title} overlaps {other}");
                }
            }
        }
        if p["type"] == "row" {
            continue;
        }
        assert!(
            p["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{title} says nothing about what it shows"
        );
        // Every panel and target names a provisioned data source by uid, of the right type.
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "{title} has no query");
        let mut refs = BTreeSet::new();
        for ds in std::iter::once(&p["datasource"]).chain(targets.iter().map(|t| &t["datasource"]))
        {
            let uid = ds["uid"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: a data source without a fixed uid: {ds}"));
            let kind = sources
                .get(uid)
                .unwrap_or_else(|| panic!("{title}: data source {uid} is not provisioned"));
            assert_eq!(ds["type"].as_str(), Some(kind.as_str()), "{title}: {ds}");
        }
        for t in &targets {
            assert!(
                refs.insert(t["refId"].as_str().unwrap().to_owned()),
                "{title}: refId used twice"
            );
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "{title}: an empty query"
            );
        }
    }

    // Every variable is used, and every variable used is defined (or Grafana's own).
    let defined: BTreeSet<String> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    let mut used = BTreeSet::new();
    for p in &panels {
        used.extend(variables_in(p["title"].as_str().unwrap_or_default()));
    }
    for q in panel_queries(&dashboard) {
        let found = variables_in(&q.expr);
        for name in &found {
            assert!(
                defined.contains(name) || GRAFANA_VARIABLES.iter().any(|(g, _)| g == name),
                "{}: ${name} is not a variable of the dashboard",
                q.panel
            );
        }
        used.extend(found);
    }
    let unused: Vec<_> = defined.difference(&used).collect();
    assert!(unused.is_empty(), "variables no panel uses: {unused:?}");

    // Loki queries read as LogQL, name only the labels Ferry gives its streams, and the job
    // drill-down finds a job's lines by the id in them.
    let texts = BTreeMap::from([("job_id", "0190f0a4-0000-7000-8000-000000000000".to_owned())]);
    let values = variable_values(&dashboard, &texts);
    let loki: Vec<_> = panel_queries(&dashboard)
        .into_iter()
        .filter(|q| sources.get(&q.datasource).map(String::as_str) == Some("loki"))
        .collect();
    assert!(!loki.is_empty(), "no Loki panel");
    for q in &loki {
        let parsed = parse_logql(&substitute(&q.expr, &values))
            .unwrap_or_else(|e| panic!("{}: {}: {e}", q.panel, q.expr));
        for m in &parsed.selector {
            assert!(
                STREAM_LABELS.contains(&m.label.as_str()),
                "{}: Ferry's streams have no label {}",
                q.panel,
                m.label
            );
        }
    }
    assert!(
        loki.iter().any(|q| q.expr.contains(r#"job_id="$job_id""#)),
        "no panel shows one job's lines"
    );
}

#[test]
fn every_alert_links_its_runbook_section_and_has_unit_tests_that_fire_and_stay_quiet() {
    let alerts = alerts();
    assert!(alerts.len() >= 8, "{alerts:?}");
    let operations = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    let sections = anchors(&operations);
    let mut names = BTreeSet::new();
    for alert in &alerts {
        assert!(names.insert(alert.name.clone()), "{} twice", alert.name);
        let url = alert.rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{} has no runbook_url", alert.name));
        let (page, section) = url
            .split_once('#')
            .unwrap_or_else(|| panic!("{}: {url} names no section", alert.name));
        assert!(
            page.ends_with("/docs/operations.md"),
            "{}: {url}",
            alert.name
        );
        assert!(
            sections.contains(section),
            "{}: docs/operations.md has no section #{section}",
            alert.name
        );
        assert_eq!(
            section,
            anchor(&alert.name),
            "one section per alert, named as the alert"
        );
        for key in ["summary", "description"] {
            assert!(
                alert.rule["annotations"][key].is_string(),
                "{} has no {key}",
                alert.name
            );
        }
        assert!(
            alert.rule["labels"]["severity"].is_string(),
            "{}",
            alert.name
        );
        assert_ne!(
            without_thresholds(&alert.expr),
            alert.expr,
            "{}: compare a signal with a threshold (see alerts.yml)",
            alert.name
        );
    }
    // Each alert has a case where it fires and one where it stays quiet.
    let tests = read_yaml(&deploy("prometheus/alerts.test.yml"));
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in tests["tests"].as_sequence().unwrap() {
        for check in case["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = check["alertname"].as_str().unwrap().to_owned();
            assert!(
                names.contains(&name),
                "alerts.test.yml tests unknown {name}"
            );
            if check["exp_alerts"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty())
            {
                fires.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    for name in &names {
        assert!(fires.contains(name), "no test where {name} fires");
        assert!(quiet.contains(name), "no test where {name} stays quiet");
    }
}

#[test]
fn promtool_checks_the_config_and_the_rules_and_their_unit_tests_pass() {
    if !needs_prometheus() {
        return;
    }
    for args in [
        ["check", "config", "deploy/prometheus/prometheus.yml"],
        ["check", "rules", "deploy/prometheus/alerts.yml"],
        ["test", "rules", "deploy/prometheus/alerts.test.yml"],
    ] {
        let out = promtool(&args, None);
        assert!(
            out.status.success(),
            "promtool {}:\n{}",
            args.join(" "),
            said(&out)
        );
    }
}

/// `promtool check metrics` on `scrape`: no parse error and no lint finding.
fn check_metrics(what: &str, scrape: &str) {
    let out = promtool(&["check", "metrics"], Some(scrape.as_bytes()));
    assert!(
        out.status.success(),
        "promtool check metrics on {what}'s scrape:\n{}\n--- scrape ---\n{scrape}",
        said(&out)
    );
}

/// A URL job for `url`; its id.
async fn url_job(f: &Ferry, url: &str) -> String {
    let (status, job) = f.post_json("/jobs", json!({"source": {"url": url}})).await;
    assert_eq!(status, 201, "{job}");
    job["id"].as_str().unwrap().to_owned()
}

/// An origin serving a 256 KiB file, and one whose file answers 500 (a job for it fails
/// after its one attempt: a dead letter with code `url_unavailable`).
async fn origins(root: &std::path::Path) -> (Origin, Origin) {
    let dir = root.join("origin");
    std::fs::create_dir_all(&dir).unwrap();
    random_file(&dir.join("file.bin"), 256 * 1024);
    let good = Origin::start(&dir.join("file.bin"), "file.bin").await;
    let bad = Origin::start(&dir.join("file.bin"), "broken.bin").await;
    bad.control.fail(Some(500));
    (good, bad)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_of_ferry_serve_passes_promtool_check_metrics() {
    if !needs_prometheus() {
        return;
    }
    let (_keep, root) = test_dir();
    let (good, bad) = origins(&root).await;
    let f = Ferry::start(
        &root.join("ferry"),
        &[
            ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]"),
            ("FERRY_WORKERS__MAX_ATTEMPTS", "1"),
        ],
    );
    // Every kind of series: stage runs and durations, failures by code, an event stream, a
    // 404, gauges sampled from the database and the disks.
    let done = url_job(&f, &format!("http://{}/file.bin", good.addr)).await;
    let failed = url_job(&f, &format!("http://{}/broken.bin", bad.addr)).await;
    let _events = f
        .req(reqwest::Method::GET, &format!("/jobs/{done}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        f.get_json(&format!("/jobs/{}", uuid::Uuid::now_v7()))
            .await
            .0,
        404
    );
    f.wait_status(&done, "completed", Duration::from_secs(60))
        .await;
    f.wait_status(&failed, "failed", Duration::from_secs(60))
        .await;
    let scrape = f.metrics().await;
    for family in [
        "ferry_http_requests_total",
        "ferry_http_request_duration_seconds_bucket",
        "ferry_stage_runs_total",
        "ferry_stage_duration_seconds_bucket",
        "ferry_job_failures_total",
        "ferry_jobs",
        "ferry_queue_dead_letters",
        "ferry_disk_free_bytes",
        "ferry_sse_streams",
        "ferry_runtime_tasks",
    ] {
        assert!(
            !series(&scrape, family).is_empty(),
            "no {family}:\n{scrape}"
        );
    }
    check_metrics("ferry serve", &scrape);
}

/// One expression the live test runs, and what it must give.
struct Check {
    what: String,
    expr: String,
    /// Whether it must return series (else only parse and evaluate).
    series: bool,
}

/// A real Prometheus, configured with the shipped scrape jobs (their labels) and rules,
/// scrapes `ferry serve` and a distributed set (API, torrent, fetch and upload workers) at 1 s
/// while a URL job completes and another fails into a dead letter on each. Then:
///
/// - every Prometheus query of every dashboard panel, with the dashboard's variables set
///   (`$__rate_interval` 1m, `$__range` 1h, "All" of a custom variable, a real job id), must
///   parse and return series;
/// - every alert expression must parse and evaluate. Most are quiet in this run (a healthy
///   system has no latency over 2 s), so each is also run without its thresholds
///   ([`without_thresholds`]: `signal > 900` becomes `signal`), and that signal must return
///   series: a misspelt metric or label would otherwise keep the alert quiet for ever.
///   Expressions are written to have a signal even in a healthy system (`or vector(0)` for a
///   5xx series that may not exist yet);
/// - Prometheus evaluates every rule without error, and the dead letters fire
///   FerryDeadLetters (with its description rendered), while FerryNoLiveWorkers stays
///   quiet (`ferry serve` reports a worker of every stage);
/// - `promtool check metrics` passes on every process's scrape;
/// - the Loki panels' LogQL reads, names only labels Ferry's streams carry, and finds lines
///   in what Ferry pushed to a Loki receiver: the drill-down finds a job's lines, for the
///   distributed job from more than one process.
///
/// Every wait polls and is bounded; Prometheus and every process are killed on drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_dashboard_query_and_alert_has_series_in_a_real_prometheus_scraping_ferry() {
    if !needs_prometheus() || !require(&["psql", "redis-cli"]) {
        return;
    }
    let Some(db) = FreshDb::create() else { return };
    let (_keep, root) = test_dir();
    let started = Instant::now();
    let (good, bad) = origins(&root).await;
    let loki = Loki::start().await;
    let loki_url = loki.url();
    let env = [
        ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]"),
        ("FERRY_WORKERS__MAX_ATTEMPTS", "1"),
        ("FERRY_LOG__LOKI__URL", loki_url.as_str()),
    ];

    // `ferry serve`, and the distributed set: the API and one worker of each role.
    let serve = Ferry::start(&root.join("serve"), &env);
    std::fs::create_dir_all(root.join("cluster")).unwrap();
    let cluster = Cluster::new(&root.join("cluster"), &db.url, &test_redis_url(), &env);
    cluster.migrate();
    let api = cluster.api();
    let workers: Vec<(&str, common::cluster::Worker)> = ["torrent", "fetch", "upload"]
        .into_iter()
        .map(|role| (role, cluster.worker(role)))
        .collect();

    // Prometheus with the shipped scrape jobs (and their labels) and rules, pointed at them;
    // `ferry serve` as the operations guide scrapes it.
    let address = |port: u16| format!("127.0.0.1:{port}");
    let api_port = api.base.rsplit(':').next().unwrap().parse().unwrap();
    let serve_port: u16 = serve.base.rsplit(':').next().unwrap().parse().unwrap();
    let mut targets = BTreeMap::from([("ferry-api".to_owned(), vec![address(api_port)])]);
    for (role, worker) in &workers {
        targets.insert(format!("ferry-{role}-worker"), vec![address(worker.probe)]);
    }
    let serve_job: serde_yaml::Value = serde_yaml::from_str(&format!(
        "{{job_name: ferry-serve, static_configs: [{{targets: ['{}'], labels: {{service: ferry, role: serve}}}}]}}",
        address(serve_port)
    ))
    .unwrap();
    let config = test_config(&targets, &[serve_job]);
    let prometheus = Prometheus::start(&root.join("prometheus"), &config).await;
    let scraped = prometheus
        .wait_for_targets(targets.len() + 1, Duration::from_secs(30))
        .await;
    for t in &scraped {
        assert_eq!(t["labels"]["service"], "ferry", "{t}");
    }
    // Prometheus has seen no dead letter yet, so the one to come is a change it can alert on.
    let deadline = Instant::now() + Duration::from_secs(20);
    while prometheus
        .query("max(ferry_queue_dead_letters) == 0")
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "ferry_queue_dead_letters never scraped at 0"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Real jobs on both: one that completes, one that fails into a dead letter; an event
    // stream left open; a request for a job that does not exist.
    let mut jobs = Vec::new();
    let mut streams = Vec::new();
    for f in [&serve, &api] {
        let done = url_job(f, &format!("http://{}/file.bin", good.addr)).await;
        let failed = url_job(f, &format!("http://{}/broken.bin", bad.addr)).await;
        streams.push(
            f.req(reqwest::Method::GET, &format!("/jobs/{done}/events"))
                .send()
                .await
                .unwrap(),
        );
        assert_eq!(
            f.get_json(&format!("/jobs/{}", uuid::Uuid::now_v7()))
                .await
                .0,
            404
        );
        jobs.push((f, done, failed));
    }
    for (f, done, failed) in &jobs {
        f.wait_status(done, "completed", Duration::from_secs(60))
            .await;
        let job = f
            .wait_status(failed, "failed", Duration::from_secs(60))
            .await;
        assert_eq!(job["error"]["code"], "url_unavailable", "{job}");
    }

    // Every process's scrape is clean for promtool.
    let http = reqwest::Client::new();
    let mut scrapes = vec![("ferry serve".to_owned(), format!("{}/metrics", serve.base))];
    scrapes.push(("ferry-api".to_owned(), format!("{}/metrics", api.base)));
    for (role, w) in &workers {
        scrapes.push((
            format!("{role} worker"),
            format!("http://127.0.0.1:{}/metrics", w.probe),
        ));
    }
    for (what, url) in &scrapes {
        let scrape = http.get(url).send().await.unwrap().text().await.unwrap();
        check_metrics(what, &scrape);
    }

    // What must hold: every Prometheus query of the dashboard returns series; every alert
    // expression parses and evaluates, and its signal (thresholds off) returns series.
    let dashboard = dashboard();
    let sources = provisioned_datasources();
    let (serve_done, cluster_done) = (jobs[0].1.clone(), jobs[1].1.clone());
    let values = variable_values(
        &dashboard,
        &BTreeMap::from([("job_id", serve_done.clone())]),
    );
    let mut checks = Vec::new();
    let mut loki_queries = Vec::new();
    for q in panel_queries(&dashboard) {
        match sources.get(&q.datasource).map(String::as_str) {
            Some("prometheus") => checks.push(Check {
                what: format!("panel {}", q.panel),
                expr: substitute(&q.expr, &values),
                series: true,
            }),
            Some("loki") => loki_queries.push(q),
            other => panic!("{}: data source {other:?}", q.panel),
        }
    }
    for alert in alerts() {
        checks.push(Check {
            what: format!("alert {}", alert.name),
            expr: alert.expr.clone(),
            series: false,
        });
        checks.push(Check {
            what: format!("alert {} without its thresholds", alert.name),
            expr: without_thresholds(&alert.expr),
            series: true,
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending: Vec<(Check, String)> =
        checks.into_iter().map(|c| (c, String::new())).collect();
    loop {
        let mut still = Vec::new();
        for (check, _) in pending {
            match prometheus.query(&check.expr).await {
                Err(e) => panic!("{}: Prometheus refused {}: {e}", check.what, check.expr),
                Ok(result) if check.series && result.is_empty() => {
                    still.push((check, "no series".to_owned()));
                }
                Ok(_) => {}
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let list: Vec<String> = pending
                .iter()
                .map(|(c, why)| format!("{}: {why}\n    {}", c.what, c.expr))
                .collect();
            panic!("queries without series after 60 s:\n{}", list.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Prometheus evaluates every rule without error, and the dead letters the failed jobs
    // left fire FerryDeadLetters, with its description rendered; nothing says a worker is
    // missing. (FerryTargetDown is not held quiet here: under load a scrape may time out.)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rules = prometheus.api("rules", &[("type", "alert")]).await.unwrap();
        let rules: Vec<Value> = rules["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        assert_eq!(rules.len(), alerts().len());
        for r in &rules {
            assert_ne!(r["health"], "err", "{}: {}", r["name"], r["lastError"]);
        }
        let alerts = prometheus.api("alerts", &[]).await.unwrap();
        let active = alerts["alerts"].as_array().cloned().unwrap_or_default();
        let named = |name: &str| {
            active
                .iter()
                .find(|a| a["labels"]["alertname"] == name)
                .cloned()
        };
        assert!(
            named("FerryNoLiveWorkers").is_none(),
            "FerryNoLiveWorkers is active: {active:?}"
        );
        let healthy = rules.iter().all(|r| r["health"] == "ok");
        if let Some(dead) = named("FerryDeadLetters").filter(|a| a["state"] == "firing")
            && healthy
        {
            let description = dead["annotations"]["description"].as_str().unwrap();
            assert!(description.contains("(1 in all now)"), "{dead}");
            assert!(
                dead["annotations"]["runbook_url"]
                    .as_str()
                    .unwrap()
                    .ends_with("#ferrydeadletters")
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "FerryDeadLetters did not fire, or a rule is not healthy: {active:?} {rules:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The Loki panels read as LogQL and find Ferry's lines: the drill-down finds a job's
    // lines, for the distributed job from more than one process.
    let labels_seen: BTreeSet<String> = loki
        .lines()
        .iter()
        .flat_map(|l| l.labels.keys().cloned())
        .collect();
    for q in &loki_queries {
        for (job, least_roles) in [(&serve_done, 1), (&cluster_done, 2)] {
            let mut values = values.clone();
            values.insert("job_id".into(), job.clone());
            let expr = substitute(&q.expr, &values);
            let parsed = parse_logql(&expr).unwrap_or_else(|e| panic!("{}: {expr}: {e}", q.panel));
            for m in &parsed.selector {
                assert!(
                    labels_seen.contains(&m.label),
                    "{}: Ferry's streams have no label {} (they have {labels_seen:?})",
                    q.panel,
                    m.label
                );
            }
            let per_job = q.expr.contains("$job_id");
            let want = if per_job { least_roles } else { 1 };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let roles: BTreeSet<String> = loki
                    .lines()
                    .iter()
                    .filter(|l| parsed.matches(&l.labels, &l.json))
                    .map(|l| l.labels.get("role").cloned().unwrap_or_default())
                    .collect();
                if roles.len() >= want {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: {expr} found lines of {roles:?} only ({} lines in Loki)",
                    q.panel,
                    loki.lines().len()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if !per_job {
                break;
            }
        }
    }
    drop(streams);
    // Not eprintln!: it panics when the captured stderr pipe is full or closed, and CI once
    // failed this test on this informational line after every check had passed.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "the live check took {:?}",
        started.elapsed()
    );
}
