//! The `DriveConsent` contract.

use std::collections::HashMap;

use futures::future::BoxFuture;

use crate::ports::{ConsentError, DriveConsent};

/// A user who agrees on the consent page at the URL given: the URL the browser is sent
/// back to.
pub type Agree<'a> = &'a (dyn Fn(String) -> BoxFuture<'static, String> + Sync);

fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Agrees to a fresh consent: (the redirect's query, the PKCE verifier).
async fn consented(
    consent: &dyn DriveConsent,
    agree: Agree<'_>,
    redirect: &str,
) -> (HashMap<String, String>, String) {
    let start = consent.begin(redirect);
    let back = agree(start.authorize_url.clone()).await;
    assert!(back.starts_with(redirect), "{back} goes back to {redirect}");
    let q = query(&back);
    assert_eq!(q.get("state"), Some(&start.state), "the state comes back");
    assert!(q.get("code").is_some_and(|c| !c.is_empty()), "{back}");
    (q, start.pkce_verifier)
}

fn refused(r: Result<String, ConsentError>, what: &str) {
    assert!(
        matches!(r, Err(ConsentError::Refused(_))),
        "{what}: {:?}",
        r.map(|_| "a refresh token")
    );
}

/// `DriveConsent`: a consent URL with a fresh state and an S256 PKCE challenge for the
/// redirect URI; a code exchanged once, only with its redirect URI and verifier, for a
/// refresh token; unknown and replayed codes refused.
pub async fn drive_consent_contract(consent: &dyn DriveConsent, agree: Agree<'_>, redirect: &str) {
    let (a, b) = (consent.begin(redirect), consent.begin(redirect));
    assert_ne!(a.state, b.state, "every consent has its own state");
    assert_ne!(a.pkce_verifier, b.pkce_verifier);
    assert!(a.state.len() >= 16 && a.pkce_verifier.len() >= 43);
    let q = query(&a.authorize_url);
    assert_eq!(q.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(q.get("redirect_uri").map(String::as_str), Some(redirect));
    assert_eq!(q.get("state"), Some(&a.state));
    assert_eq!(
        q.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert!(
        q.get("code_challenge")
            .is_some_and(|c| c != &a.pkce_verifier)
    );

    refused(
        consent
            .exchange("no-such-code", redirect, &a.pkce_verifier)
            .await,
        "an unknown code",
    );
    let (q, _) = consented(consent, agree, redirect).await;
    refused(
        consent
            .exchange(&q["code"], redirect, &b.pkce_verifier)
            .await,
        "another consent's verifier",
    );
    let (q, verifier) = consented(consent, agree, redirect).await;
    refused(
        consent
            .exchange(&q["code"], &format!("{redirect}/elsewhere"), &verifier)
            .await,
        "another redirect URI",
    );
    let (q, verifier) = consented(consent, agree, redirect).await;
    let token = consent
        .exchange(&q["code"], redirect, &verifier)
        .await
        .unwrap();
    assert!(!token.is_empty());
    refused(
        consent.exchange(&q["code"], redirect, &verifier).await,
        "a code used before",
    );
}
