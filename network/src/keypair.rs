//! The node's libp2p identity, persisted so its PeerId survives restarts.
//!
//! Peers remember us (and our scores) by PeerId, and operators pin bootstrap addresses with
//! `/p2p/<id>`, so the key must be stable. It is an Ed25519 key stored in libp2p's protobuf
//! encoding, readable only by the owner on Unix.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "network_key";

/// A protobuf-encoded Ed25519 keypair is about 70 bytes; refuse anything much larger.
const MAX_KEY_FILE: u64 = 1024;

/// Why the node key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeypairError {
    #[error("reading the node key {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("writing the node key {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("the node key {path} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("the node key {path} is not a valid libp2p key: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Loads the key from `dir/network_key`, or creates and saves a new one if there is none.
pub fn load_or_create(dir: &Path) -> Result<Keypair, KeypairError> {
    let path = dir.join(KEY_FILE);
    match fs::File::open(&path) {
        Ok(file) => {
            let mut bytes = Vec::new();
            file.take(MAX_KEY_FILE + 1)
                .read_to_end(&mut bytes)
                .map_err(|source| KeypairError::Read {
                    path: path.clone(),
                    source,
                })?;
            if bytes.len() as u64 > MAX_KEY_FILE {
                return Err(KeypairError::TooLarge {
                    path,
                    max: MAX_KEY_FILE,
                });
            }
            Keypair::from_protobuf_encoding(&bytes).map_err(|e| KeypairError::Invalid {
                path,
                reason: e.to_string(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| KeypairError::Invalid {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            write_private(&path, &bytes).map_err(|source| KeypairError::Write {
                path: path.clone(),
                source,
            })?;
            Ok(key)
        }
        Err(source) => Err(KeypairError::Read { path, source }),
    }
}

/// Writes `bytes` to a new file only the owner can read, then renames it into place.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn garbage_and_oversized_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), b"not a key").unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(KeypairError::Invalid { .. })
        ));
        fs::write(dir.path().join(KEY_FILE), vec![0u8; 5000]).unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(KeypairError::TooLarge { .. })
        ));
    }
}
