//! Ferry set up for "Connect Google Drive" against the fake Google (consent page, token
//! endpoint and Drive API on loopback).
//!
//! Ferry's public URL is [`PUBLIC`] (the address Google knows it by, registered with the
//! fake client); a test's browser reaches it at the server's loopback address.

use std::path::Path;

use ferry_gdrive::fake::{FakeClient, FakeDrive};

use super::*;

/// Ferry's public URL.
pub const PUBLIC: &str = "http://ferry.test";
/// Where Google sends the browser back.
pub const CALLBACK_PATH: &str = "/api/v1/storage-profiles/google-drive/callback";
/// The cookie that carries a connection from its start to the callback.
pub const CONNECT_COOKIE: &str = "ferry_drive_connect";
/// Ferry's OAuth client at Google.
pub const CLIENT_ID: &str = "ferry-client";

/// The fake Google, with Ferry's OAuth client registered, and Ferry (in `root/ferry`)
/// configured for it; Ferry may fetch from and deliver to loopback.
pub async fn start(root: &Path) -> (FakeDrive, Ferry) {
    init();
    let drive = FakeDrive::start_with_client(
        "no-pasted-token",
        FakeClient {
            client_id: CLIENT_ID.into(),
            client_secret: "ferry-client-secret".into(),
            redirect_uri: format!("{PUBLIC}{CALLBACK_PATH}"),
        },
    )
    .await;
    let env = [
        ("FERRY_AUTH__PUBLIC_URL", PUBLIC.to_owned()),
        ("FERRY_GOOGLE__AUTH_URL", drive.auth_url()),
        ("FERRY_GOOGLE__TOKEN_URL", drive.token_url()),
        ("FERRY_GOOGLE__API_URL", drive.url.clone()),
        ("FERRY_GOOGLE__CLIENT_ID", CLIENT_ID.into()),
        ("FERRY_GOOGLE__CLIENT_SECRET", "ferry-client-secret".into()),
        ("FERRY_GOOGLE__CHUNK_SIZE", "262144".into()),
        ("FERRY_WORKERS__PROGRESS_INTERVAL", "50ms".into()),
        // The fake Google and the test's origin run on loopback, which Ferry refuses unless
        // allowed.
        ("FERRY_STORAGE__ALLOW", "[\"127.0.0.1/32\"]".into()),
        ("FERRY_FETCH__ALLOW", "[\"127.0.0.1/32\"]".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let ferry = Ferry::start(&root.join("ferry"), &env);
    (drive, ferry)
}
