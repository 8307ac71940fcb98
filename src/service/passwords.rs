//! Password hashing with argon2id. Hashing is deliberately slow, so it runs on the blocking pool;
//! and each hash takes a 19 MiB buffer, so at most `PasswordSlots` of them run at once (half the
//! cores, at least one), which bounds the memory a burst of logins or registrations can take.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tokio::sync::Semaphore;

use super::{Error, Result, Services};

/// How many password hashes may run at once.
pub struct PasswordSlots(Semaphore);

impl Default for PasswordSlots {
    fn default() -> PasswordSlots {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        PasswordSlots(Semaphore::new((cores / 2).max(1)))
    }
}

impl Services {
    /// Hashes `password` into a PHC string, waiting for a free slot.
    pub(super) async fn hash_password(&self, password: String) -> Result<String> {
        let _slot = self
            .password_slots
            .0
            .acquire()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        hash(password).await
    }

    /// Whether `password` matches the stored PHC string, waiting for a free slot.
    pub(super) async fn verify_password(&self, password: String, stored: String) -> Result<bool> {
        let _slot = self
            .password_slots
            .0
            .acquire()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        verify(password, stored).await
    }
}

/// Hashes `password` into a PHC string (algorithm, parameters, salt and hash together).
async fn hash(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::fill(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Internal(e.to_string()))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
}

/// Whether `password` matches the stored PHC string. A malformed stored hash never matches.
async fn verify(password: String, stored: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_hash_verifies_only_its_own_password() {
        let stored = super::hash("correct horse".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(
            super::verify("correct horse".into(), stored.clone())
                .await
                .unwrap()
        );
        assert!(!super::verify("wrong horse".into(), stored).await.unwrap());
        assert!(
            !super::verify("x".into(), "not a hash".into())
                .await
                .unwrap()
        );
    }
}
