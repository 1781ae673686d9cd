//! The shipped stack as `docker compose` would run it, without Docker: every command a
//! service runs is a binary the Dockerfile builds into the image, the stack refuses to start
//! without its secrets, and every Ferry service starts with its compose environment (the
//! image's `ENV`, then the service's `environment:`) and answers its own health check. Hosts
//! of compose services are mapped to stand-ins on loopback (a fresh PostgreSQL database, a
//! Redis server of the test's own), named volumes and container paths to folders, and
//! `0.0.0.0:{port}` listeners to free loopback ports.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::FreshDb;
use common::loki::Loki;
use common::*;
use serde_yaml::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `docker-compose.yml` with its `<<` merges applied.
fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let mut v: Value = serde_yaml::from_str(&text).unwrap();
    v.apply_merge().unwrap();
    v
}

fn services(compose: &Value) -> BTreeMap<String, Value> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone()))
        .collect()
}

/// Services that run Ferry's image.
fn is_ferry(service: &Value) -> bool {
    service["image"]
        .as_str()
        .is_some_and(|i| i.starts_with("ferry"))
        || !service["build"].is_null()
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
            })
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// A service's `environment:` (a mapping or `KEY=value` lines), values not yet interpolated.
fn environment(service: &Value) -> Vec<(String, String)> {
    match &service["environment"] {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
                };
                (k.as_str().unwrap().to_owned(), v)
            })
            .collect(),
        Value::Sequence(_) => strings(&service["environment"])
            .into_iter()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap_or((&l, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Compose's variable substitution: `$$`, `$NAME`, `${NAME}`, `${NAME:-default}`,
/// `${NAME-default}`, `${NAME:?message}` and `${NAME?message}`.
fn interpolate(s: &str, vars: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r.find('}').ok_or_else(|| format!("unclosed ${{ in {s}"))?;
            let expr = &r[..end];
            rest = &r[end + 1..];
            let name_len = expr
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_len);
            let value = vars.get(name).map(String::as_str);
            let empty = value.is_none_or(str::is_empty);
            let (kind, arg) = [":?", "?", ":-", "-"]
                .into_iter()
                .find_map(|k| op.strip_prefix(k).map(|arg| (k, arg)))
                .unwrap_or(("", ""));
            match kind {
                ":?" if empty => {
                    return Err(format!(
                        "required variable {name} is missing a value: {arg}"
                    ));
                }
                "?" if value.is_none() => {
                    return Err(format!(
                        "required variable {name} is missing a value: {arg}"
                    ));
                }
                ":-" if empty => out.push_str(arg),
                "-" if value.is_none() => out.push_str(arg),
                _ => out.push_str(value.unwrap_or("")),
            }
        } else {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push_str(vars.get(&rest[..len]).map_or("", String::as_str));
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Every `${NAME…}` the compose file refers to, with the operator that follows the name.
fn references(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        rest = &rest[at + 2..];
        let end = rest.find('}').unwrap_or(rest.len());
        let expr = &rest[..end];
        let name_len = expr
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expr.len());
        let op: String = expr[name_len..].chars().take(2).collect();
        found
            .entry(expr[..name_len].to_owned())
            .or_default()
            .insert(op);
    }
    found
}

/// What the Dockerfile puts into the image.
struct Image {
    binaries: BTreeSet<String>,
    env: Vec<(String, String)>,
    cmd: Vec<String>,
    rust: String,
}

fn image() -> Image {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let mut image = Image {
        binaries: BTreeSet::new(),
        env: Vec::new(),
        cmd: Vec::new(),
        rust: String::new(),
    };
    let mut stage = "";
    for line in joined.lines().map(str::trim) {
        if let Some(from) = line.strip_prefix("FROM ") {
            let mut words = from.split_whitespace();
            let base = words.next().unwrap();
            stage = words.nth(1).unwrap_or("final");
            if let Some(tag) = base.strip_prefix("rust:") {
                image.rust = tag.split('-').next().unwrap().to_owned();
            }
        } else if let Some(run) = line.strip_prefix("RUN ") {
            // Binaries the build stage copies out for the final image.
            if stage == "build" {
                for word in run.split_whitespace() {
                    if let Some(bin) = word.strip_prefix("target/release/") {
                        image.binaries.insert(bin.to_owned());
                    }
                }
            }
        } else if let Some(env) = line.strip_prefix("ENV ") {
            for pair in env.split_whitespace() {
                let (k, v) = pair.split_once('=').unwrap();
                image.env.push((k.to_owned(), v.to_owned()));
            }
        } else if let Some(cmd) = line.strip_prefix("CMD ") {
            image.cmd = serde_json::from_str(cmd).unwrap();
        }
    }
    assert!(
        joined.contains("COPY --from=build /out/ /usr/local/bin/"),
        "the final image copies the built binaries"
    );
    image
}

/// The `[[bin]]` targets of the `ferry` package.
fn package_binaries() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("cli/Cargo.toml")).unwrap();
    let manifest: toml::Value = toml::from_str(&text).unwrap();
    manifest["bin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect()
}

fn binary(name: &str) -> &'static str {
    match name {
        "ferry" => env!("CARGO_BIN_EXE_ferry"),
        "ferry-api" => env!("CARGO_BIN_EXE_ferry-api"),
        "ferry-torrent-worker" => env!("CARGO_BIN_EXE_ferry-torrent-worker"),
        "ferry-fetch-worker" => env!("CARGO_BIN_EXE_ferry-fetch-worker"),
        "ferry-upload-worker" => env!("CARGO_BIN_EXE_ferry-upload-worker"),
        other => panic!("{other} is not a binary of the ferry package"),
    }
}

#[test]
fn every_command_a_service_runs_is_built_into_the_image() {
    let image = image();
    let package = package_binaries();
    let missing: Vec<_> = package.difference(&image.binaries).collect();
    assert!(
        missing.is_empty(),
        "the Dockerfile does not copy {missing:?} into the image"
    );
    assert!(image.binaries.contains(&image.cmd[0]), "{:?}", image.cmd);
    for (name, service) in services(&compose()) {
        if !is_ferry(&service) {
            continue;
        }
        let command = strings(&service["command"]);
        let program = command.first().unwrap_or(&image.cmd[0]);
        assert!(
            image.binaries.contains(program),
            "service {name} runs {program}, which the image lacks (it has {:?})",
            image.binaries
        );
    }
    let toolchain = std::fs::read_to_string(repo().join("rust-toolchain.toml")).unwrap();
    let toolchain: toml::Value = toml::from_str(&toolchain).unwrap();
    let channel = toolchain["toolchain"]["channel"].as_str().unwrap();
    assert!(
        channel.starts_with(&image.rust),
        "the image builds with Rust {}, the repository pins {channel}",
        image.rust
    );
}

/// Setting names that hold a secret.
fn is_secret(key: &str) -> bool {
    ["PASSWORD", "SECRET", "TOKEN"]
        .iter()
        .any(|w| key.to_ascii_uppercase().contains(w))
}

#[test]
fn the_stack_refuses_to_start_without_its_secrets() {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let refs = references(&text);
    assert!(!refs.is_empty());
    // Every variable is required: compose stops with the message instead of running with an
    // empty password or key.
    for (name, ops) in &refs {
        assert!(
            ops.iter().all(|op| op == ":?"),
            "${{{name}}} must be written ${{{name}:?how to set it}}, not with {ops:?}"
        );
    }
    // No secret has a literal value, and every URL's password comes from a variable.
    let compose = compose();
    for (service_name, service) in services(&compose) {
        for (key, value) in environment(&service) {
            if is_secret(&key) && !key.ends_with("_FILE") {
                assert!(
                    value.contains("${"),
                    "{service_name}: {key} has a literal value"
                );
            }
            if let Some((_, after)) = value.split_once("://")
                && let Some((userinfo, _)) = after.split_once('@')
                && let Some((_, password)) = userinfo.split_once(':')
            {
                assert!(
                    password.starts_with("${"),
                    "{service_name}: {key} carries a literal password"
                );
            }
        }
        // Without a value, the service does not start, and the message names the variable.
        for (key, value) in environment(&service) {
            for name in references(&value).keys() {
                let err = interpolate(&value, &HashMap::new())
                    .expect_err(&format!("{service_name}: {key} starts without {name}"));
                assert!(err.contains(name), "{err}");
            }
        }
    }
    // `.env.example` names every variable, with no working value.
    let example = std::fs::read_to_string(repo().join(".env.example")).unwrap();
    let listed: BTreeMap<&str, &str> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    for name in refs.keys() {
        assert_eq!(
            listed.get(name.as_str()).map(|v| v.trim()),
            Some(""),
            ".env.example lists {name} without a value"
        );
    }
    let ignored = std::fs::read_to_string(repo().join(".gitignore")).unwrap();
    assert!(
        ignored
            .lines()
            .any(|l| l.trim() == "/.env" || l.trim() == ".env"),
        ".env holds secrets: git must ignore it"
    );
}

/// A Redis server for the stack, started with the compose service's password if it sets one.
fn redis_server(dir: &Path, redis: &[String]) -> (Proc, u16) {
    let port = free_port();
    let mut cmd = Command::new("redis-server");
    cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir);
    if let Some(at) = redis.iter().position(|a| a == "--requirepass") {
        cmd.arg("--requirepass").arg(&redis[at + 1]);
    }
    let proc = Proc::spawn("redis-server", cmd, dir.join("redis.log"));
    wait_for_port_pub(port, "redis-server");
    (proc, port)
}

/// How one Ferry service's settings map onto this machine.
struct Mapper<'a> {
    root: &'a Path,
    service: &'a str,
    /// container path → folder of each named volume the service mounts.
    volumes: Vec<(String, PathBuf)>,
    /// `{service name}` → `host:port` of its stand-in.
    hosts: &'a HashMap<String, String>,
    database_url: &'a str,
    postgres_service: &'a str,
    /// container port → loopback port, for the service's listeners.
    ports: BTreeMap<u16, u16>,
}

impl Mapper<'_> {
    fn path(&self, container: &str) -> PathBuf {
        for (mount, folder) in &self.volumes {
            if let Some(rest) = container.strip_prefix(mount.as_str()) {
                return folder.join(rest.trim_start_matches('/'));
            }
        }
        // The container's own file system.
        self.root
            .join("containers")
            .join(self.service)
            .join(container.trim_start_matches('/'))
    }

    fn value(&mut self, value: &str) -> String {
        if let Some(port) = value.strip_prefix("0.0.0.0:") {
            let port: u16 = port.parse().unwrap();
            let local = *self.ports.entry(port).or_insert_with(free_port);
            return format!("127.0.0.1:{local}");
        }
        if value.starts_with('/') {
            let path = self.path(value);
            std::fs::create_dir_all(&path).unwrap();
            return path.display().to_string();
        }
        if let Ok(url) = reqwest::Url::parse(value)
            && let Some(host) = url.host_str()
            && self.hosts.contains_key(host)
        {
            if host == self.postgres_service {
                return self.database_url.to_owned();
            }
            let mut url = url.clone();
            let (h, p) = self.hosts[host].split_once(':').unwrap();
            url.set_host(Some(h)).unwrap();
            url.set_port(Some(p.parse().unwrap())).unwrap();
            return url.to_string();
        }
        value.to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ferry_service_starts_with_its_compose_environment_and_answers_its_health_check() {
    init();
    if !require(&["psql", "redis-server"]) {
        return;
    }
    let Some(db) = FreshDb::create() else { return };
    let (_keep, root) = test_dir();
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    // What an operator puts in `.env`: a fresh value for every variable (64 hex digits suit
    // the secret key, the token and URL-safe passwords alike).
    let vars: HashMap<String, String> = references(&text)
        .into_keys()
        .map(|name| {
            let value = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            (name, value)
        })
        .collect();
    let var = |s: &str| interpolate(s, &vars).unwrap();
    let compose = compose();
    let services = services(&compose);
    let image = image();

    // Stand-ins for the backing services, found by their images.
    let mut hosts = HashMap::new();
    let mut postgres_service = String::new();
    let mut _redis = None;
    let mut loki = None;
    for (name, service) in &services {
        let img = service["image"].as_str().unwrap_or_default();
        if img.starts_with("postgres") {
            // The URL Ferry gets must name the database, user and password the server creates.
            let env: HashMap<_, _> = environment(service)
                .into_iter()
                .map(|(k, v)| (k, var(&v)))
                .collect();
            for (_, ferry) in services.iter().filter(|(_, s)| is_ferry(s)) {
                for (key, value) in environment(ferry) {
                    let value = var(&value);
                    let Ok(url) = reqwest::Url::parse(&value) else {
                        continue;
                    };
                    if url.host_str() != Some(name) {
                        continue;
                    }
                    assert_eq!(url.username(), env["POSTGRES_USER"], "{key}");
                    assert_eq!(url.password(), Some(env["POSTGRES_PASSWORD"].as_str()));
                    assert_eq!(url.path(), format!("/{}", env["POSTGRES_DB"]), "{key}");
                }
            }
            hosts.insert(name.clone(), "127.0.0.1:5432".to_owned());
            postgres_service = name.clone();
        } else if img.starts_with("grafana/loki") {
            // A receiver of Loki's push API, where every Ferry service must send its lines.
            let receiver = Loki::start().await;
            hosts.insert(name.clone(), receiver.addr.to_string());
            loki = Some(receiver);
        } else if img.starts_with("redis") {
            let args: Vec<String> = strings(&service["command"])
                .iter()
                .map(|a| var(a))
                .collect();
            let dir = root.join("redis");
            std::fs::create_dir_all(&dir).unwrap();
            let (proc, port) = redis_server(&dir, &args);
            _redis = Some(proc);
            hosts.insert(name.clone(), format!("127.0.0.1:{port}"));
        }
    }

    // One-shot services (what others wait for with `service_completed_successfully`) first.
    let one_shot: BTreeSet<String> = services
        .values()
        .filter_map(|s| s["depends_on"].as_mapping())
        .flat_map(|deps| deps.iter())
        .filter(|(_, d)| d["condition"].as_str() == Some("service_completed_successfully"))
        .map(|(name, _)| name.as_str().unwrap().to_owned())
        .collect();
    let mut order: Vec<&String> = services.keys().filter(|n| one_shot.contains(*n)).collect();
    order.extend(services.keys().filter(|n| !one_shot.contains(*n)));

    let mut running = Vec::new();
    // The `role` label each service's log lines carry in Loki.
    let mut roles = Vec::new();
    for name in order {
        let service = &services[name];
        if !is_ferry(service) {
            continue;
        }
        let volumes = strings(&service["volumes"])
            .iter()
            .filter_map(|v| v.split_once(':'))
            .map(|(vol, mount)| {
                let folder = root.join("volumes").join(vol);
                std::fs::create_dir_all(&folder).unwrap();
                (mount.to_owned(), folder)
            })
            .collect();
        let mut map = Mapper {
            root: &root,
            service: name,
            volumes,
            hosts: &hosts,
            database_url: &db.url,
            postgres_service: &postgres_service,
            ports: BTreeMap::new(),
        };
        let mut command: Vec<String> = strings(&service["command"])
            .iter()
            .map(|a| var(a))
            .collect();
        if command.is_empty() {
            command = image.cmd.clone();
        }
        let args: Vec<String> = command[1..].iter().map(|a| map.value(a)).collect();
        let mut cmd = Command::new(binary(&command[0]));
        cmd.args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("HOME", map.value("/var/lib/ferry"));
        // The image's ENV, then the service's environment over it.
        for (key, value) in image.env.iter().cloned().chain(environment(service)) {
            let value = map.value(&var(&value));
            cmd.env(key, value);
        }
        let log = root.join(format!("{name}.log"));
        let mut proc = Proc::spawn("ferry service", cmd, log);
        if one_shot.contains(name) {
            let status = proc
                .wait_timeout(Duration::from_secs(60))
                .unwrap_or_else(|| panic!("{name} did not finish"));
            assert!(status.success(), "{name}: {status}\n{}", proc.log_text());
            continue;
        }
        // The service's own health check, on the port it maps to here.
        let test = strings(&service["healthcheck"]["test"]);
        let url = test
            .iter()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("{name} has no HTTP health check: {test:?}"));
        let url = reqwest::Url::parse(url).unwrap();
        let port = url.port().unwrap();
        let local = map.ports.get(&port).unwrap_or_else(|| {
            panic!("{name}'s health check asks port {port}, which it does not listen on")
        });
        let mut check = url.clone();
        check.set_host(Some("127.0.0.1")).unwrap();
        check.set_port(Some(*local)).unwrap();
        let role = command[0]
            .strip_prefix("ferry-")
            .unwrap_or("serve")
            .to_owned();
        running.push((name.clone(), proc, check));
        roles.push(role);
    }
    assert!(
        running.len() >= 4,
        "api and three workers: {:?}",
        running.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    let client = reqwest::Client::new();
    for (name, proc, check) in &mut running {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = proc.child.try_wait().unwrap() {
                panic!("{name} exited ({status}):\n{}", proc.log_text());
            }
            let answer = client.get(check.clone()).send().await;
            if answer.as_ref().is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not answer {check}: {answer:?}\n{}",
                proc.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The API takes the token the operator set.
    let (_, _, api_health) = running
        .iter()
        .find(|(n, _, c)| n == "api" || c.path().starts_with("/api/"))
        .expect("an API service");
    let jobs = api_health.join("/api/v1/jobs").unwrap();
    let answer = client
        .get(jobs)
        .bearer_auth(&vars["FERRY_API_TOKEN"])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);

    // Every Ferry service ships its log lines to the stack's Loki.
    let loki = loki.expect("a Loki service");
    for role in &roles {
        loki.wait_for(&format!("a line of {role}"), Duration::from_secs(30), |l| {
            l.labels.get("role") == Some(role)
                && l.labels.get("service").is_some_and(|s| s == "ferry")
        })
        .await;
    }
}

/// The port a `host:port` or URL names.
fn port_of(address: &str) -> u16 {
    let authority = address.split("://").last().unwrap();
    let authority = authority.split('/').next().unwrap();
    authority.rsplit(':').next().unwrap().parse().unwrap()
}

/// A service's bind mounts: (file or folder in the repository, path in the container).
fn bind_mounts(service: &Value) -> Vec<(PathBuf, String)> {
    strings(&service["volumes"])
        .iter()
        .filter(|v| v.starts_with("./"))
        .map(|v| {
            let mut parts = v.split(':');
            let source = repo().join(parts.next().unwrap().trim_start_matches("./"));
            assert!(
                source.exists(),
                "{v}: {} is not in the repository",
                source.display()
            );
            (source, parts.next().unwrap().to_owned())
        })
        .collect()
}

/// The repository file a service sees at `container_path` through its bind mounts.
fn mounted(service: &Value, container_path: &str) -> Option<PathBuf> {
    bind_mounts(service)
        .into_iter()
        .find_map(|(source, target)| {
            let rest = container_path.strip_prefix(target.as_str())?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            let rest = rest.trim_start_matches('/');
            Some(if rest.is_empty() {
                source
            } else {
                source.join(rest)
            })
        })
}

fn yaml_file(path: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn prometheus_scrapes_every_ferry_service_where_it_listens_and_grafana_finds_its_provisioning() {
    let compose = compose();
    let services = services(&compose);
    let by_image = |prefix: &str| {
        services
            .iter()
            .find(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with(prefix)))
            .map(|(n, s)| (n.clone(), s.clone()))
            .unwrap_or_else(|| panic!("no {prefix} service"))
    };
    let (prometheus_name, prometheus) = by_image("prom/prometheus");
    let (loki_name, loki) = by_image("grafana/loki");
    let (_, grafana) = by_image("grafana/grafana");

    // Prometheus reads the shipped configuration, whose rule files are there too.
    let flag = |service: &Value, name: &str| {
        strings(&service["command"])
            .iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")).map(str::to_owned))
    };
    let config_path = flag(&prometheus, "config.file").expect("--config.file");
    let config_file = mounted(&prometheus, &config_path)
        .unwrap_or_else(|| panic!("{config_path} is not mounted from the repository"));
    assert_eq!(config_file, repo().join("deploy/prometheus/prometheus.yml"));
    let config = yaml_file(&config_file);
    for rules in strings(&config["rule_files"]) {
        assert!(
            config_file.parent().unwrap().join(&rules).is_file(),
            "rule file {rules} is not beside prometheus.yml"
        );
    }
    let prometheus_port = flag(&prometheus, "web.listen-address").map_or(9090, |a| port_of(&a));

    // Every long-running Ferry service is scraped, by its compose name, on the port it
    // listens on (the API's `--listen`, a worker's probe port), labelled with its role.
    let jobs = config["scrape_configs"].as_sequence().unwrap();
    for (name, service) in &services {
        if !is_ferry(service) || service["restart"].is_null() {
            continue; // one-shot (migrate)
        }
        let command = strings(&service["command"]);
        let env: HashMap<String, String> = environment(service).into_iter().collect();
        let port = match command.iter().position(|a| a == "--listen") {
            Some(at) => port_of(&command[at + 1]),
            None => port_of(&env["FERRY_WORKERS__PROBE_LISTEN"]),
        };
        let job = jobs
            .iter()
            .find(|j| {
                j["dns_sd_configs"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .any(|sd| {
                        strings(&sd["names"]).contains(name)
                            && sd["port"].as_u64() == Some(port.into())
                    })
            })
            .unwrap_or_else(|| panic!("no scrape job finds {name} on port {port}"));
        let role = command[0].strip_prefix("ferry-").unwrap();
        let relabels = job["relabel_configs"].as_sequence().unwrap();
        for (label, value) in [("service", "ferry"), ("role", role)] {
            assert!(
                relabels
                    .iter()
                    .any(|r| r["target_label"] == label && r["replacement"] == value),
                "{name}'s targets are not labelled {label}={value}"
            );
        }
        // Its log lines go to the stack's Loki.
        let loki_url = &env["FERRY_LOG__LOKI__URL"];
        assert!(
            loki_url.contains(&format!("//{loki_name}:")),
            "{name}: {loki_url}"
        );
    }
    let loki_config = mounted(&loki, "/etc/loki/loki.yml").expect("Loki's configuration");
    let loki_port = yaml_file(&loki_config)["server"]["http_listen_port"]
        .as_u64()
        .unwrap();
    assert!(
        strings(&loki["command"])
            .iter()
            .any(|a| a.contains("/etc/loki/loki.yml"))
    );
    let ferry_env: HashMap<String, String> = environment(&services["api"]).into_iter().collect();
    assert_eq!(
        u64::from(port_of(&ferry_env["FERRY_LOG__LOKI__URL"])),
        loki_port
    );

    // Grafana: its provisioning is mounted where Grafana reads it; the data sources point
    // at the compose services on their ports; the dashboards' folder is where the provider
    // looks, and holds the home dashboard.
    let provisioning = mounted(&grafana, "/etc/grafana/provisioning").expect("provisioning");
    assert_eq!(provisioning, repo().join("deploy/grafana/provisioning"));
    for entry in std::fs::read_dir(provisioning.join("datasources")).unwrap() {
        let file = yaml_file(&entry.unwrap().path());
        for ds in file["datasources"].as_sequence().unwrap() {
            let url = reqwest::Url::parse(ds["url"].as_str().unwrap()).unwrap();
            let (service, port) = match ds["type"].as_str().unwrap() {
                "prometheus" => (&prometheus_name, u64::from(prometheus_port)),
                "loki" => (&loki_name, loki_port),
                other => panic!("an unexpected data source type {other}"),
            };
            assert_eq!(url.host_str(), Some(service.as_str()), "{url}");
            assert_eq!(url.port().map(u64::from), Some(port), "{url}");
        }
    }
    let mut dashboards = 0;
    for entry in std::fs::read_dir(provisioning.join("dashboards")).unwrap() {
        let file = yaml_file(&entry.unwrap().path());
        for provider in file["providers"].as_sequence().unwrap() {
            let path = provider["options"]["path"].as_str().unwrap();
            let folder = mounted(&grafana, path)
                .unwrap_or_else(|| panic!("the dashboards' folder {path} is not mounted"));
            for dashboard in std::fs::read_dir(&folder).unwrap() {
                let dashboard = dashboard.unwrap().path();
                let json: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&dashboard).unwrap()).unwrap();
                assert!(json["uid"].is_string(), "{}", dashboard.display());
                dashboards += 1;
            }
        }
    }
    assert!(dashboards > 0, "no dashboard is provisioned");
    let grafana_env: HashMap<String, String> = environment(&grafana).into_iter().collect();
    if let Some(home) = grafana_env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH") {
        assert!(
            mounted(&grafana, home).is_some_and(|f| f.is_file()),
            "{home}"
        );
    }
}

/// `scripts/restore-drill.sh` with `args`, against the test's PostgreSQL server.
fn restore_drill(args: &[&str]) {
    init();
    if !require(&[
        "psql",
        "pg_dump",
        "pg_restore",
        "sqlite3",
        "python3",
        "curl",
    ]) {
        return;
    }
    // The drill creates (and drops) databases of its own on the server the tests use.
    let Some(db) = FreshDb::create() else { return };
    let started = Instant::now();
    let out = Command::new(repo().join("scripts/restore-drill.sh"))
        .args(args)
        .env("FERRY_BIN", binary("ferry"))
        .env("FERRY_DRILL_POSTGRES", &db.url)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the restore drill failed:\n{said}");
    assert!(said.contains("restore drill passed"), "{said}");
    eprintln!("{said}(in {:?})", started.elapsed());
}

#[test]
fn a_backup_restored_into_postgresql_serves_the_same_files() {
    restore_drill(&[]);
}

#[test]
fn a_backup_restored_into_sqlite_serves_the_same_files() {
    restore_drill(&["--sqlite"]);
}
