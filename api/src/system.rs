//! `/api/v1/health` and `/api/v1/version`.

use std::sync::Arc;

use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};

use crate::ApiState;
use crate::auth::Caller;
use crate::auth::optional_caller;
use crate::dto::{
    ComponentDto, FetchNetworkDto, HealthDto, NetworkDto, QueueDto, TorrentNetworkDto, VersionDto,
    WorkerDto,
};
use crate::error::Fails;

crate::error::statuses! {
    NetworkFails: 401, 403, 429, 500, 503;
}

#[derive(Tags)]
enum Tag {
    /// Probes for operators and load balancers.
    System,
}

pub struct SystemApi {
    pub state: Arc<ApiState>,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// Every component works.
    #[oai(status = 200)]
    Ok(Json<HealthDto>),
    /// At least one component is failing.
    #[oai(status = 503)]
    Degraded(Json<HealthDto>),
}

#[OpenApi(prefix_path = "/api/v1")]
impl SystemApi {
    /// Component checks: database, queue, storage. Needs no token; what a failing
    /// component reported (`detail`), the queues' depths and the workers seen are shown
    /// only to admins, and failures are always logged.
    #[oai(
        path = "/health",
        method = "get",
        tag = "Tag::System",
        operation_id = "health"
    )]
    async fn health(&self, req: &Request) -> HealthResponse {
        let components = self.state.health.check().await;
        for c in components.iter().filter(|c| !c.ok) {
            tracing::warn!(
                component = c.name,
                detail = c.detail.as_deref().unwrap_or(""),
                "health check failing"
            );
        }
        // Error texts name paths, hosts and database users: not for anyone who asks.
        // Only for admins: other users have no business with the server's internals.
        let trusted = optional_caller(req, &self.state)
            .await
            .is_some_and(|c| c.is_admin());
        let ok = components.iter().all(|c| c.ok);
        let (queues, workers) = if trusted {
            let depths = self.state.health.queue_depths().await;
            let queues = depths
                .iter()
                .map(|(stage, depth)| {
                    depth.map(|waiting| QueueDto {
                        stage: stage.as_str().to_owned(),
                        waiting,
                    })
                })
                .collect::<Option<Vec<_>>>();
            let workers = self.state.health.workers().await.map(|list| {
                list.into_iter()
                    .map(|w| WorkerDto {
                        name: w.name,
                        stages: w.stages.iter().map(|s| s.as_str().to_owned()).collect(),
                        idle_secs: w.idle.as_secs(),
                        pending: w.pending,
                    })
                    .collect()
            });
            (queues, workers)
        } else {
            (None, None)
        };
        let body = HealthDto {
            queues,
            workers,
            status: if ok { "ok" } else { "degraded" }.to_owned(),
            components: components
                .into_iter()
                .map(|c| ComponentDto {
                    name: c.name.to_owned(),
                    ok: c.ok,
                    detail: c.detail.filter(|_| trusted),
                })
                .collect(),
        };
        if ok {
            HealthResponse::Ok(Json(body))
        } else {
            HealthResponse::Degraded(Json(body))
        }
    }

    /// How this server's downloads reach the network: whether BitTorrent traffic goes
    /// through a proxy, and what that turns off (the DHT, UDP trackers, incoming peers).
    #[oai(
        path = "/network",
        method = "get",
        tag = "Tag::System",
        operation_id = "network"
    )]
    async fn network(&self, _caller: Caller) -> Result<Json<NetworkDto>, Fails<NetworkFails>> {
        let n = &self.state.network;
        let note = if n.torrent_proxied {
            "BitTorrent traffic goes through the server's proxy: the DHT and UDP trackers are off, so a magnet or torrent needs an http(s) tracker (or x.pe peers) to find peers."
        } else if n.dht {
            "BitTorrent traffic leaves the server directly; trackerless magnets are found through the DHT."
        } else {
            "BitTorrent traffic leaves the server directly; the DHT is off, so a magnet needs a tracker (or x.pe peers)."
        };
        Ok(Json(NetworkDto {
            torrent: TorrentNetworkDto {
                proxied: n.torrent_proxied,
                proxy_required: n.torrent_proxy_required,
                dht: n.dht,
                lsd: n.lsd,
                udp_trackers: n.udp_trackers,
                incoming: n.incoming,
                note: note.to_owned(),
            },
            fetch: FetchNetworkDto {
                proxied: n.fetch_proxied,
            },
        }))
    }

    /// The server's name and version. Needs no token.
    #[oai(
        path = "/version",
        method = "get",
        tag = "Tag::System",
        operation_id = "version"
    )]
    async fn version(&self) -> Json<VersionDto> {
        Json(VersionDto {
            name: "ferry".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    }
}
