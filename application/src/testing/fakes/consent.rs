//! `DriveConsent` in memory: a consent page that agrees at once and a token endpoint that
//! takes each code once, for its redirect URI and PKCE verifier.

use super::*;

struct Issued {
    redirect_uri: String,
    /// The challenge of the `begin` the consent came from.
    challenge: String,
    used: bool,
}

#[derive(Default)]
struct ConsentState {
    /// state → challenge, for the consents begun.
    begun: HashMap<String, String>,
    codes: HashMap<String, Issued>,
    next: u64,
    exchanges: u64,
    without_refresh_token: bool,
}

/// Google's consent, faked: [`FakeConsent::consent`] stands for a user agreeing on the page.
#[derive(Default)]
pub struct FakeConsent {
    state: Mutex<ConsentState>,
}

/// Not S256 (no base64 here): the fake only needs the pair to match.
fn challenge_of(verifier: &str) -> String {
    fake_digest(verifier.as_bytes())
}

impl FakeConsent {
    /// The user agrees on the page at `authorize_url`: the URL Google redirects to.
    pub fn consent(&self, authorize_url: &str) -> String {
        let url = url::Url::parse(authorize_url).unwrap();
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        let mut s = lock(&self.state);
        let challenge = s.begun.get(&q["state"]).cloned().unwrap();
        assert_eq!(q["code_challenge"], challenge);
        s.next += 1;
        let code = format!("code-{}", s.next);
        s.codes.insert(
            code.clone(),
            Issued {
                redirect_uri: q["redirect_uri"].clone(),
                challenge,
                used: false,
            },
        );
        let mut back = url::Url::parse(&q["redirect_uri"]).unwrap();
        back.query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &q["state"]);
        back.into()
    }

    /// Code exchanges tried so far.
    pub fn exchanges(&self) -> u64 {
        lock(&self.state).exchanges
    }

    /// From now on, grants carry no refresh token.
    pub fn withhold_refresh_tokens(&self) {
        lock(&self.state).without_refresh_token = true;
    }
}

#[async_trait]
impl DriveConsent for FakeConsent {
    fn begin(&self, redirect_uri: &str) -> ConsentStart {
        let mut s = lock(&self.state);
        s.next += 1;
        let (state, verifier) = (
            format!("state-{:016}", s.next),
            format!("verifier-{:040}", s.next),
        );
        let challenge = challenge_of(&verifier);
        s.begun.insert(state.clone(), challenge.clone());
        let mut url = url::Url::parse("https://consent.invalid/auth").unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        ConsentStart {
            authorize_url: url.into(),
            state,
            pkce_verifier: verifier,
        }
    }

    async fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: &str,
    ) -> Result<String, ConsentError> {
        let mut s = lock(&self.state);
        s.exchanges += 1;
        let withhold = s.without_refresh_token;
        let Some(issued) = s.codes.get_mut(code) else {
            return Err(ConsentError::Refused("invalid_grant".into()));
        };
        let fresh = !std::mem::replace(&mut issued.used, true);
        if !fresh
            || issued.redirect_uri != redirect_uri
            || issued.challenge != challenge_of(pkce_verifier)
        {
            return Err(ConsentError::Refused("invalid_grant".into()));
        }
        if withhold {
            return Err(ConsentError::NoRefreshToken);
        }
        Ok(format!("refresh-for-{code}"))
    }
}
