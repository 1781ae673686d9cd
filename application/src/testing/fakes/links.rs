//! `LinkSigner` without cryptography: `{nonce}.{job}.{file}.{owner}.{exp}.{check}`, where
//! the check is a non-cryptographic hash of the key and everything before it, so tampering
//! and another key show as they would with a real signature.

use rand::RngCore;

use super::*;

pub struct PlainLinkSigner {
    key: u64,
}

impl PlainLinkSigner {
    /// Signers with the same `key` accept each other's links.
    pub fn new(key: u64) -> Self {
        Self { key }
    }

    fn check(&self, body: &str) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ self.key;
        for b in body.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

fn invalid(why: &str) -> LinkError {
    LinkError::Invalid(why.to_owned())
}

impl LinkSigner for PlainLinkSigner {
    fn sign(&self, claims: &LinkClaims) -> Result<String, LinkError> {
        let body = format!(
            "{:016x}.{}.{}.{}.{}",
            rand::rng().next_u64(),
            claims.job,
            claims.file,
            claims.owner.as_str(),
            claims.expires_at.timestamp()
        );
        let check = self.check(&body);
        Ok(format!("{body}.{check}"))
    }

    fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<LinkClaims, LinkError> {
        let (body, check) = token.rsplit_once('.').ok_or_else(|| invalid("no check"))?;
        if self.check(body) != check {
            return Err(invalid("wrong check"));
        }
        let parts: Vec<&str> = body.split('.').collect();
        let [_nonce, job, file, owner, exp] = parts[..] else {
            return Err(invalid("wrong shape"));
        };
        let exp: i64 = exp.parse().map_err(|_| invalid("exp"))?;
        let expires_at = DateTime::from_timestamp(exp, 0).ok_or_else(|| invalid("exp"))?;
        if now >= expires_at {
            return Err(LinkError::Expired);
        }
        Ok(LinkClaims {
            job: job.parse().map_err(|_| invalid("job"))?,
            file: file.parse().map_err(|_| invalid("file"))?,
            owner: OwnerId::parse(owner).ok_or_else(|| invalid("owner"))?,
            expires_at,
        })
    }
}
