//! The files of the media repository, under `data_dir/media`: each named by the SHA-256 of its
//! content (`ab/cd/abcdef…`), so identical uploads are stored once. A new file is streamed into a
//! temporary file in the same file system (`media/tmp/`), hashed on the way, synced, and only
//! then renamed into place — by the database writer, inside the write that records it, so a file
//! is never visible half-written and a deletion (which also runs on the writer) never races an
//! upload of the same content. A staged file that is never committed is removed when dropped.

use std::path::{Path, PathBuf};

use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Why a file could not be staged.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the upload was interrupted: {0}")]
    Body(String),
    #[error("media storage failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Where media files live.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

/// A complete, synced file waiting in `tmp/` to be committed under its hash.
#[derive(Debug)]
pub struct StagedFile {
    tmp_path: Option<PathBuf>,
    pub sha256: String,
    pub size: u64,
}

impl BlobStore {
    pub fn new(root: PathBuf) -> BlobStore {
        BlobStore { root }
    }

    /// Creates the directories and removes temporary files a crash left behind.
    pub fn prepare(&self) -> std::io::Result<()> {
        let tmp = self.tmp_dir();
        std::fs::create_dir_all(&tmp)?;
        for entry in std::fs::read_dir(&tmp)? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(())
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The path of the file with this content hash. The hash is checked to be 64 hex digits, so
    /// no stored value can point outside the store.
    pub fn path_of(&self, sha256: &str) -> Option<PathBuf> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(
            self.root
                .join(&sha256[0..2])
                .join(&sha256[2..4])
                .join(sha256),
        )
    }

    /// Streams `body` into a temporary file, refusing more than `limit` bytes.
    pub async fn stage<S, B, E>(&self, mut body: S, limit: u64) -> Result<StagedFile, StageError>
    where
        S: Stream<Item = Result<B, E>> + Unpin,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        let tmp_path = self
            .tmp_dir()
            .join(format!("upload-{}", crate::service::random_string(24)));
        let mut staged = StagedFile {
            tmp_path: Some(tmp_path.clone()),
            sha256: String::new(),
            size: 0,
        };
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .await?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| StageError::Body(e.to_string()))?;
            let bytes = chunk.as_ref();
            size += bytes.len() as u64;
            if size > limit {
                return Err(StageError::TooLarge(limit));
            }
            hasher.update(bytes);
            file.write_all(bytes).await?;
        }
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        staged.sha256 = hex(&hasher.finalize());
        staged.size = size;
        Ok(staged)
    }

    /// Stages bytes already in memory (thumbnails).
    pub async fn stage_bytes(&self, bytes: Vec<u8>, limit: u64) -> Result<StagedFile, StageError> {
        let stream = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]);
        self.stage(stream, limit).await
    }

    /// Moves a staged file into place under its hash. Runs on the database writer, inside the
    /// write recording the file; an identical file already there is simply replaced.
    pub fn commit(&self, mut staged: StagedFile) -> std::io::Result<()> {
        let Some(tmp_path) = staged.tmp_path.take() else {
            return Ok(());
        };
        let Some(path) = self.path_of(&staged.sha256) else {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(std::io::Error::other(
                "a staged file without a content hash",
            ));
        };
        let dir = path.parent().unwrap_or(&self.root).to_owned();
        let moved = std::fs::create_dir_all(&dir).and_then(|()| std::fs::rename(&tmp_path, &path));
        if let Err(e) = moved {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(e);
        }
        // The rename is durable once the directory entry is.
        if let Ok(dir) = std::fs::File::open(&dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Removes the file of a hash nothing references any more. Runs on the database writer.
    pub fn remove(&self, sha256: &str) {
        if let Some(path) = self.path_of(sha256)
            && let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "cannot remove a media file");
        }
    }

    /// Opens the file of a hash for reading, with its length.
    pub async fn open(&self, sha256: &str) -> std::io::Result<(tokio::fs::File, u64)> {
        let path = self
            .path_of(sha256)
            .ok_or_else(|| std::io::Error::other("a stored hash is malformed"))?;
        let file = tokio::fs::File::open(&path).await?;
        let len = file.metadata().await?.len();
        Ok((file, len))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if let Some(path) = self.tmp_path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&[u8]]) -> impl Stream<Item = Result<Vec<u8>, String>> + Unpin {
        futures_util::stream::iter(parts.iter().map(|p| Ok(p.to_vec())).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn identical_content_lands_in_one_file_and_nothing_is_left_in_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path().join("media"));
        store.prepare().unwrap();
        let a = store.stage(chunks(&[b"hel", b"lo"]), 10).await.unwrap();
        let b = store.stage_bytes(b"hello".to_vec(), 10).await.unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.size, 5);
        let sha = a.sha256.clone();
        store.commit(a).unwrap();
        store.commit(b).unwrap();
        let path = store.path_of(&sha).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert_eq!(std::fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
        store.remove(&sha);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn an_oversized_or_broken_upload_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path().join("media"));
        store.prepare().unwrap();
        let err = store
            .stage(chunks(&[b"12345", b"678"]), 6)
            .await
            .unwrap_err();
        assert!(matches!(err, StageError::TooLarge(6)));
        let broken = futures_util::stream::iter(vec![Ok(b"12".to_vec()), Err("reset".to_owned())]);
        assert!(matches!(
            store.stage(broken, 10).await.unwrap_err(),
            StageError::Body(_)
        ));
        let staged = store.stage_bytes(b"x".to_vec(), 10).await.unwrap();
        drop(staged);
        assert_eq!(std::fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn only_hex_hashes_name_files() {
        let store = BlobStore::new(PathBuf::from("/m"));
        assert!(store.path_of("../../etc/passwd").is_none());
        assert!(store.path_of(&"g".repeat(64)).is_none());
        let sha = "ab".repeat(32);
        assert_eq!(
            store.path_of(&sha).unwrap(),
            PathBuf::from(format!("/m/ab/ab/{sha}"))
        );
    }
}
