//! Writing files so a crash never leaves half of one behind.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk and renames it
/// over `path`. Readers see the old content or the new, never a mix. The new file gets
/// `mode` on Unix (callers pass the old file's mode to keep it) and the old file's owner:
/// a Carpool running as root must not leave a user's Claude login owned by root, where
/// the user's own `claude` could no longer read it.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_atomic_if(path, bytes, mode, &mut || Ok(true)).map(|_| ())
}

/// [`write_atomic`], but `still_ok` is asked once more after the temporary file is
/// written and flushed, just before the rename: if it answers `false` (say, the file
/// changed under us), the temporary file is removed, `path` is left alone and the
/// answer is `Ok(false)`. The window between that last check and the rename is as
/// small as it can be without a lock the other writers honour; it is not zero.
pub fn write_atomic_if(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    still_ok: &mut dyn FnMut() -> std::io::Result<bool>,
) -> std::io::Result<bool> {
    #[cfg(unix)]
    let owner = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.uid(), m.gid()))
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.carpool-{}-{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        {
            // The umask may have removed bits the old file had.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            if let Some((uid, gid)) = owner {
                // Only root may give a file away; for anyone else the owner is already
                // the writer, so a failure here changes nothing.
                let _ = std::os::unix::fs::fchown(&file, Some(uid), Some(gid));
            }
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        if !still_ok()? {
            return Ok(false);
        }
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        #[cfg(unix)]
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(true)
    })();
    if !matches!(result, Ok(true)) {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` and its missing parents; the ones made here are 0700 on Unix (Carpool's
/// data is nobody else's business). Existing directories are left as they are.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates an empty file readable and writable by its owner only (0600 on Unix) if
/// nothing is at `path` yet; an existing file keeps its mode.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The Unix permission bits of an existing file, if it exists.
pub fn file_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        std::fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new", 0o640).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        #[cfg(unix)]
        assert_eq!(file_mode(&path), Some(0o640));
    }

    #[test]
    fn a_last_check_that_fails_leaves_the_file_alone_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        std::fs::write(&path, "old").unwrap();
        // Another writer replaces the file while ours is being written.
        let mut check = || {
            std::fs::write(&path, "theirs")?;
            Ok(std::fs::read(&path)? == b"old")
        };
        assert!(!write_atomic_if(&path, b"ours", 0o600, &mut check).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "theirs");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn keeps_the_owner_of_the_file_it_replaces() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        std::fs::write(&path, "old").unwrap();
        // Giving the file to another user needs root; elsewhere the owner is us anyway.
        let gave_away = std::os::unix::fs::chown(&path, Some(4321), Some(4321)).is_ok();
        let before = std::fs::metadata(&path).unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
        if gave_away {
            assert_eq!(after.uid(), 4321);
        }
    }
}
