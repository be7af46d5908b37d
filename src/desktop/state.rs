//! What the desktop app remembers between runs, in `desktop.json` beside the config
//! file: whether the relay was running when the app last stopped, and which user's
//! token "Copy Claude Code setup" hands out (the token itself is in the secret store).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;

/// The file's name, in the config file's folder.
pub const FILE: &str = "desktop.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DesktopState {
    /// The relay was running when the app last quit (or was last started or stopped).
    pub relay_running: bool,
    /// The user whose token the tray's "Copy Claude Code setup" copies.
    pub setup_user: Option<String>,
    /// Where that token is kept ([`crate::secrets::SecretRef`] as text).
    pub setup_token_ref: Option<String>,
}

/// `desktop.json` for the config file at `config_path`.
pub fn path_for(config_path: &Path) -> PathBuf {
    config_path.parent().unwrap_or(Path::new(".")).join(FILE)
}

impl DesktopState {
    /// The state saved at `path`; the default when there is none. A file that cannot be
    /// read as the state is logged and treated as absent: it only remembers conveniences.
    pub fn load(path: &Path) -> DesktopState {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "{} is not the desktop app's state ({e}); starting afresh",
                    path.display()
                );
                DesktopState::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => DesktopState::default(),
            Err(e) => {
                tracing::warn!("cannot read {}: {e}", path.display());
                DesktopState::default()
            }
        }
    }

    /// Writes the state to `path` atomically (mode 0600: it names a secret's place).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        text.push(b'\n');
        write_atomic(path, &text, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_round_trips_and_a_missing_or_broken_file_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("config.json"));
        assert_eq!(path, dir.path().join(FILE));
        assert_eq!(DesktopState::load(&path), DesktopState::default());
        let state = DesktopState {
            relay_running: true,
            setup_user: Some("me".into()),
            setup_token_ref: Some("file:desktop-setup".into()),
        };
        state.save(&path).unwrap();
        assert_eq!(DesktopState::load(&path), state);
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(DesktopState::load(&path), DesktopState::default());
    }
}
