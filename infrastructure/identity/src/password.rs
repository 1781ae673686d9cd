//! `PasswordHasher` with Argon2id (`argon2`): PHC strings with a random 16-byte salt and the
//! parameters in them, so hashes made with older parameters still verify. A stored hash that
//! is malformed, or asks for more work than [`Argon2Params::MAX`] allows, never matches.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ferry_application::ports::{IdentityError, PasswordHasher};

/// The cost of a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Argon2Params {
    /// OWASP's first recommendation for Argon2id: 19 MiB, 2 iterations, 1 lane.
    pub const OWASP: Self = Self {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };
    /// The least Argon2 allows: for tests only.
    pub const CHEAP: Self = Self {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
    /// The most a stored hash may ask for when it is verified (a tampered row must not make a
    /// login allocate gigabytes).
    pub const MAX: Self = Self {
        memory_kib: 256 * 1024,
        iterations: 16,
        parallelism: 8,
    };
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self::OWASP
    }
}

/// Hashes new passwords with its parameters; verifies hashes made with any.
pub struct Argon2Hasher {
    argon2: Argon2<'static>,
}

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Hasher")
            .field("params", self.argon2.params())
            .finish()
    }
}

impl Argon2Hasher {
    /// # Errors
    /// `Unexpected` when Argon2 refuses the parameters (below its minimums).
    pub fn new(params: Argon2Params) -> Result<Self, IdentityError> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| IdentityError::Unexpected(anyhow::anyhow!("Argon2 parameters: {e}")))?;
        Ok(Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        })
    }
}

impl PasswordHasher for Argon2Hasher {
    fn hash(&self, password: &str) -> Result<String, IdentityError> {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
            .map_err(|e| IdentityError::Unexpected(anyhow::anyhow!("salt: {e}")))?;
        self.argon2
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| IdentityError::Unexpected(anyhow::anyhow!("Argon2: {e}")))
    }

    fn verify(&self, password: &str, hash: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return false;
        };
        let max = Argon2Params::MAX;
        if params.m_cost() > max.memory_kib
            || params.t_cost() > max.iterations
            || params.p_cost() > max.parallelism
        {
            tracing::warn!("a stored password hash asks for more work than allowed; refused");
            return false;
        }
        // The hash names its own algorithm, version and parameters; these verify it.
        self.argon2
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    }
}
