//! Ferry's HTTP API (poem + poem-openapi): JSON under `/api/v1`, the OpenAPI document at
//! `/api/v1/openapi.json` and Swagger UI at `/docs`.

mod access_log;
mod accounts;
mod archive;
mod auth;
mod download;
mod drive;
mod dto;
mod edge;
mod error;
mod feeds;
mod gauges;
mod jobs;
mod links;
mod profiles;
mod qbittorrent;
mod range;
mod server;
mod streams;
mod system;
mod web;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use ferry_application::ports::IdentityProvider;
use ferry_application::ports::ProgressBus;
use ferry_application::{
    Accounts, Categories, DriveConnect, FileLinks, HealthCheck, Jobs, ProvisionPolicy,
    StorageProfiles,
};
use poem::listener::TcpAcceptor;
use poem::{EndpointExt, Response};
use poem_openapi::OpenApiService;
use tokio_util::sync::CancellationToken;

pub use error::{ApiError, ErrorBody};
pub use gauges::{Sampler, Volume};

/// Slack over the largest .torrent for the multipart framing and the form's other fields.
const FORM_SLACK: u64 = 64 * 1024;

/// How this server's downloads reach the network, from its configuration.
#[derive(Debug, Clone, Default)]
pub struct NetworkInfo {
    /// Peer connections and tracker announces go through a SOCKS5 proxy (`torrent.proxy`).
    pub torrent_proxied: bool,
    /// A torrent job fails (`proxy_unavailable`) rather than connect around a down proxy.
    pub torrent_proxy_required: bool,
    pub dht: bool,
    pub lsd: bool,
    pub udp_trackers: bool,
    /// Incoming peer connections are accepted.
    pub incoming: bool,
    /// URL jobs go through `fetch.proxy`.
    pub fetch_proxied: bool,
}

/// What the API needs from the rest of Ferry.
pub struct ApiState {
    pub jobs: Arc<Jobs>,
    /// Categories and tags (the qBittorrent-compatible API under `/api/v2`).
    pub categories: Arc<Categories>,
    /// RSS feeds and download rules.
    pub feeds: Arc<ferry_application::Feeds>,
    /// The server's local storage (`{dir}/{owner}/{job}/…`), when this process sees it.
    pub local_storage_dir: Option<std::path::PathBuf>,
    /// How the BitTorrent engine and URL fetches reach the network (`GET /network`, and
    /// qBittorrent's preferences).
    pub network: NetworkInfo,
    pub profiles: Arc<StorageProfiles>,
    /// "Connect Google Drive" (`None`: no Google OAuth client is configured).
    pub drive: Option<Arc<DriveConnect>>,
    pub bus: Arc<dyn ProgressBus>,
    pub health: Arc<HealthCheck>,
    /// Who is calling: sessions, tokens, logins, users, the audit log.
    pub accounts: Arc<Accounts>,
    /// Signed links to finished files.
    pub links: Arc<FileLinks>,
    /// The identity providers one can log in with.
    pub providers: Vec<LoginProvider>,
    /// Ferry's public base URL (`https://ferry.example.org`, no trailing slash): identity
    /// providers redirect back to it, it is the origin browsers' changes must come from, and
    /// file links start with it.
    pub public_url: Option<String>,
    /// The origin of `public_url` (`scheme://host[:port]`).
    pub public_origin: Option<String>,
    /// Whether cookies carry `Secure` (the public URL is https).
    pub secure_cookies: bool,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ferry_domain::Cidr>,
    /// Largest .torrent upload accepted.
    pub max_torrent_bytes: u64,
    /// Largest JSON request body accepted.
    pub max_json_bytes: u64,
    /// Event streams open at once, in all and per owner.
    pub max_streams: usize,
    pub max_streams_per_owner: usize,
    /// Whether jobs seed unless they say otherwise.
    pub seed_by_default: bool,
    /// Seeding limits for jobs that set none.
    pub seed_limits: ferry_domain::SeedPolicy,
    /// The gauges of what Ferry holds, brought up to date when `/metrics` is scraped.
    pub gauges: Sampler,
    /// The caller's webhooks (and the dispatcher, which the wiring runs).
    pub webhooks: Arc<ferry_application::Webhooks>,
}

/// A job as the API shows it (`GET /jobs/{id}`), as JSON: what webhook deliveries carry.
pub fn job_json(job: &ferry_domain::Job) -> serde_json::Value {
    poem_openapi::types::ToJSON::to_json(&dto::JobDto::from(job)).unwrap_or_default()
}

/// One identity provider and how its users become Ferry's.
pub struct LoginProvider {
    pub provider: Arc<dyn IdentityProvider>,
    pub policy: ProvisionPolicy,
}

/// The whole HTTP application. Its event streams end when `stopping` fires.
pub fn app(state: Arc<ApiState>, stopping: CancellationToken) -> impl poem::Endpoint {
    let streams = streams::StreamLimits::new(state.max_streams_per_owner, state.max_streams);
    let api = OpenApiService::new(
        (
            jobs::JobsApi {
                state: state.clone(),
                streams,
                stopping,
            },
            profiles::ProfilesApi {
                state: state.clone(),
            },
            drive::DriveApi {
                state: state.clone(),
            },
            system::SystemApi {
                state: state.clone(),
            },
            accounts::AccountsApi {
                state: state.clone(),
            },
            links::LinksApi {
                state: state.clone(),
            },
            feeds::FeedsApi {
                state: state.clone(),
            },
            webhooks::WebhooksApi {
                state: state.clone(),
            },
        ),
        "Ferry",
        env!("CARGO_PKG_VERSION"),
    )
    .description("Ferry downloads torrents on the server and delivers the files.")
    .server("/");
    let document = document(&api);
    let edge = Arc::new(edge::Edge::new(
        state.max_json_bytes,
        state.max_torrent_bytes + FORM_SLACK,
        &document,
    ));
    let document = document.to_string();
    let docs = api.swagger_ui();
    web::mount(poem::IntoEndpoint::into_endpoint(api))
        .at(
            "/api/v1/openapi.json",
            poem::endpoint::make_sync(move |_| {
                Response::builder()
                    .content_type("application/json; charset=utf-8")
                    .body(document.clone())
            }),
        )
        .nest("/docs", docs)
        .nest("/api/v2", qbittorrent::routes())
        .at("/metrics", {
            let state = state.clone();
            poem::endpoint::make(move |_| {
                let state = state.clone();
                async move {
                    state.gauges.sample(&state.health).await;
                    Response::builder()
                        .content_type("text/plain; version=0.0.4")
                        .body(ferry_observability::render_metrics())
                }
            })
        })
        .data(state)
        .around(move |ep, req| {
            let edge = edge.clone();
            async move { Ok(edge.handle(&ep, req).await) }
        })
        .around(access_log::logged)
}

/// The request bodies declared `#[oai(deny_unknown_fields)]`: the document says
/// `additionalProperties: false` for them, or clients (and schemathesis) would take a body with
/// an extra field for valid. A test checks that every such struct is listed.
const CLOSED_BODIES: [&str; 7] = [
    "DefaultProfile",
    "FolderProfile",
    "SpeedLimitsRequest",
    "NewFeed",
    "FeedChange",
    "NewRule",
    "RuleChange",
];

/// The OpenAPI document, with the links from the operations that create a job or a storage
/// profile to the operations that take its id (clients and test tools follow them).
fn document<T>(api: &OpenApiService<T, ()>) -> serde_json::Value
where
    T: poem_openapi::OpenApi,
{
    let mut doc: serde_json::Value =
        serde_json::from_str(&api.spec()).unwrap_or(serde_json::Value::Null);
    let job_ops = [
        "getJob",
        "cancelJob",
        "pauseJob",
        "resumeJob",
        "retryJob",
        "jobEvents",
        "jobFiles",
        "jobFile",
        "jobFileLink",
        "jobTorrent",
        "jobMagnet",
    ];
    let profile_ops = [
        "getStorageProfile",
        "deleteStorageProfile",
        "testStorageProfile",
    ];
    let webhook_ops = [
        "getWebhook",
        "updateWebhook",
        "deleteWebhook",
        "rotateWebhookSecret",
        "pingWebhook",
        "webhookDeliveries",
    ];
    event_streams(&mut doc);
    // Bodies that refuse unknown fields (poem-openapi does not say so in the document).
    for closed in CLOSED_BODIES {
        if let Some(schema) = doc
            .pointer_mut(&format!("/components/schemas/{closed}"))
            .and_then(|s| s.as_object_mut())
        {
            schema.insert("additionalProperties".to_owned(), false.into());
        }
    }
    nullable_optionals(&mut doc);
    for (path, targets) in [
        ("/api/v1/jobs", &job_ops[..]),
        ("/api/v1/jobs/torrent", &job_ops[..]),
        ("/api/v1/storage-profiles", &profile_ops[..]),
        ("/api/v1/webhooks", &webhook_ops[..]),
    ] {
        let links: serde_json::Map<String, serde_json::Value> = targets
            .iter()
            .map(|op| {
                (
                    (*op).to_owned(),
                    serde_json::json!({
                        "operationId": op,
                        "parameters": {"id": "$response.body#/id"},
                    }),
                )
            })
            .collect();
        if let Some(created) = doc
            .pointer_mut(&format!(
                "/paths/{}/post/responses/201",
                path.replace('/', "~1")
            ))
            .and_then(|r| r.as_object_mut())
        {
            created.insert("links".to_owned(), links.into());
        }
    }
    doc
}

/// JSON request bodies that refuse `null` for a field they let be left out.
const NULL_REFUSED: [&str; 1] = ["UserPatch"];

/// Marks the optional fields of each JSON request body (and of the objects it is made of:
/// its `oneOf` variants, its fields' schemas), but [`NULL_REFUSED`]'s, `nullable`:
/// poem-openapi reads `null` as absent for an `Option` (and as "clear" for a
/// `MaybeUndefined`, where the field says so) but documents neither as nullable, so a client
/// following the document would think `null` refused.
fn nullable_optionals(doc: &mut serde_json::Value) {
    let mut todo: Vec<String> = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
        for op in paths
            .values()
            .filter_map(|m| m.as_object())
            .flat_map(|m| m.values())
        {
            let Some(content) = op
                .pointer("/requestBody/content")
                .and_then(|c| c.as_object())
            else {
                continue;
            };
            for (kind, media) in content {
                if kind.starts_with("application/json") {
                    todo.extend(media.get("schema").map(refs_in).unwrap_or_default());
                }
            }
        }
    }
    let mut done = std::collections::HashSet::new();
    while let Some(name) = todo.pop() {
        if NULL_REFUSED.contains(&name.as_str()) || !done.insert(name.clone()) {
            continue;
        }
        let Some(schema) = doc
            .pointer_mut(&format!("/components/schemas/{name}"))
            .and_then(|s| s.as_object_mut())
        else {
            continue;
        };
        for key in ["oneOf", "anyOf", "allOf"] {
            if let Some(parts) = schema.get(key) {
                todo.extend(refs_in(parts));
            }
        }
        let required: Vec<serde_json::Value> = schema
            .get("required")
            .and_then(|r| r.as_array())
            .cloned()
            .unwrap_or_default();
        let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else {
            continue;
        };
        for (field, prop) in props.iter_mut() {
            todo.extend(refs_in(prop));
            if required.iter().any(|r| r == field.as_str()) {
                continue;
            }
            if let Some(prop) = prop.as_object_mut() {
                prop.insert("nullable".to_owned(), true.into());
            }
        }
    }
}

/// The component schemas `schema` refers to, at any depth (arrays' items, `allOf` wrappers).
fn refs_in(schema: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![schema];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(name) = map
                    .get("$ref")
                    .and_then(|r| r.as_str())
                    .and_then(|r| r.strip_prefix("#/components/schemas/"))
                {
                    out.push(name.to_owned());
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    out
}

/// Documents each `text/event-stream` answer as what a client reads: events (`event`, `id`,
/// `data`) whose `data` is the JSON of the item schema (`x-data-schema`), rather than
/// poem-openapi's array of items, which no single event matches.
fn event_streams(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for op in paths
        .values_mut()
        .filter_map(|p| p.as_object_mut())
        .flat_map(|p| p.values_mut())
    {
        let Some(stream) = op.pointer_mut("/responses/200/content/text~1event-stream/schema")
        else {
            continue;
        };
        let item = stream
            .get("items")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        *stream = serde_json::json!({
            "type": "object",
            "description": "One Server-Sent Event; `data` is the JSON of `x-data-schema`.",
            "properties": {
                "event": {"type": "string"},
                "id": {"type": "string"},
                "data": {"type": "string"},
            },
            "required": ["data"],
            "x-data-schema": item,
        });
    }
    // `Last-Event-ID` takes only the ids the server issues (`<epoch or ms>-<sequence>`, both
    // buses) or nothing (an empty value is no id, as EventSource means it): anything else is
    // `400 invalid_event_id`, so the document says so, or clients (and schemathesis) would
    // take any string for a valid one.
    for param in paths
        .values_mut()
        .filter_map(|p| p.as_object_mut())
        .flat_map(|p| p.values_mut())
        .filter_map(|op| op.get_mut("parameters").and_then(|p| p.as_array_mut()))
        .flatten()
    {
        if param.get("in").and_then(|v| v.as_str()) == Some("header")
            && param.get("name").and_then(|v| v.as_str()) == Some("Last-Event-ID")
            && let Some(schema) = param.get_mut("schema").and_then(|s| s.as_object_mut())
        {
            schema.insert("pattern".to_owned(), LAST_EVENT_ID_PATTERN.into());
        }
    }
}

/// The event ids both buses issue, two decimal numbers that fit in a `u64`, or an empty value
/// (read as no id).
const LAST_EVENT_ID_PATTERN: &str = "^([0-9]{1,19}-[0-9]{1,19})?$";

/// How long requests in flight may take to finish once the server stops.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Serves the API on `acceptor` until `shutdown` fires; then stops accepting (the listener
/// closes), ends open event streams, and lets requests in flight finish (up to
/// [`DRAIN_GRACE`]; connections still busy then are closed).
///
/// # Errors
/// When the server fails.
pub async fn serve(
    acceptor: TcpAcceptor,
    state: Arc<ApiState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = app(state, shutdown.clone());
    server::run(acceptor, app, shutdown, DRAIN_GRACE).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// Every `#[oai(…deny_unknown_fields…)]` struct of this crate, read from its sources.
    fn closed_structs(dir: &std::path::Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                closed_structs(&path, found);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let mut closed = false;
            for line in text.lines().map(str::trim) {
                if line.starts_with("#[oai(") && line.contains("deny_unknown_fields") {
                    closed = true;
                } else if closed && !line.starts_with("#[") && !line.starts_with("///") {
                    let name = line
                        .strip_prefix("pub struct ")
                        .and_then(|rest| rest.split([' ', '{', '<']).next())
                        .unwrap_or_else(|| {
                            panic!(
                                "{}: not a struct after the attribute: {line}",
                                path.display()
                            )
                        });
                    found.push(name.to_owned());
                    closed = false;
                }
            }
        }
    }

    #[test]
    fn optional_fields_of_request_bodies_are_nullable_but_where_null_is_refused() {
        let body = |name: &str| {
            serde_json::json!({"content": {"application/json; charset=utf-8": {
                "schema": {"$ref": format!("#/components/schemas/{name}")}}}})
        };
        let fields = serde_json::json!({
            "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
            "required": ["a"],
        });
        let mut doc = serde_json::json!({
            "paths": {"/x": {
                "post": {"requestBody": body("Open")},
                "put": {"requestBody": body("Union")},
                "patch": {"requestBody": body("UserPatch")},
            }},
            "components": {"schemas": {
                "Open": fields, "UserPatch": fields, "Answer": fields,
                "Union": {"oneOf": [{"$ref": "#/components/schemas/Variant"}]},
                "Variant": {
                    "properties": {"inner": {"allOf": [{"$ref": "#/components/schemas/Inner"}]}},
                    "required": ["inner"],
                },
                "Inner": fields,
            }},
        });
        super::nullable_optionals(&mut doc);
        let nullable = |schema: &str, field: &str| {
            doc.pointer(&format!(
                "/components/schemas/{schema}/properties/{field}/nullable"
            ))
            .is_some()
        };
        assert!(nullable("Open", "b"));
        assert!(!nullable("Open", "a"), "a required field takes no null");
        assert!(!nullable("UserPatch", "b"), "UserPatch refuses null");
        assert!(!nullable("Answer", "b"), "not a request body");
        assert!(nullable("Inner", "b"), "a field of a variant's field");
        assert!(!nullable("Variant", "inner"));
    }

    #[test]
    fn last_event_id_says_which_ids_it_takes() {
        let mut doc = serde_json::json!({"paths": {"/api/v1/jobs/{id}/events": {"get": {
            "parameters": [
                {"name": "id", "in": "path", "schema": {"type": "string"}},
                {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
            ],
        }}}});
        super::event_streams(&mut doc);
        let params = doc
            .pointer("/paths/~1api~1v1~1jobs~1{id}~1events/get/parameters")
            .unwrap();
        assert_eq!(
            params.pointer("/1/schema/pattern").and_then(|p| p.as_str()),
            Some(super::LAST_EVENT_ID_PATTERN)
        );
        assert!(params.pointer("/0/schema/pattern").is_none());
    }

    #[test]
    fn every_body_that_refuses_unknown_fields_says_so_in_the_document() {
        let mut found = Vec::new();
        closed_structs(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        found.sort();
        let mut listed: Vec<String> = super::CLOSED_BODIES
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        listed.sort();
        assert_eq!(
            found, listed,
            "CLOSED_BODIES must list every deny_unknown_fields struct"
        );
    }
}
