//! Keeping the store to its owner: a private umask, 0700 directories and 0600 files, and a
//! refusal to open a data directory or key file that other local users can reach.

use crate::error::{Error, Result};
use std::path::Path;

/// Make every file this process creates from now on private to its owner. sled creates its files
/// (and later snapshots and blobs) itself with the default mode, so only the umask reaches them.
pub fn private_umask() {
    #[cfg(unix)]
    // SAFETY: umask only replaces the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Create `dir` (and its parents) if missing and leave it, and everything under it, private:
/// directories 0700, files 0600. Used where mfadmin makes a data directory of its own.
pub fn make_private(dir: &Path) -> Result<()> {
    private_umask();
    std::fs::create_dir_all(dir).map_err(|e| Error::Storage(format!("cannot create {}: {e}", dir.display())))?;
    tighten(dir)
}

/// Take group and other permissions off `path` and everything under it (symbolic links are left
/// alone: they are not followed).
pub fn tighten(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let failed = |p: &Path, e: std::io::Error| Error::Storage(format!("cannot make {} private: {e}", p.display()));
        let mut stack = vec![path.to_path_buf()];
        while let Some(p) = stack.pop() {
            let meta = std::fs::symlink_metadata(&p).map_err(|e| failed(&p, e))?;
            if meta.file_type().is_symlink() {
                continue;
            }
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o7700)).map_err(|e| failed(&p, e))?;
            }
            if meta.is_dir() {
                for entry in std::fs::read_dir(&p).map_err(|e| failed(&p, e))? {
                    stack.push(entry.map_err(|e| failed(&p, e))?.path());
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Refuse a data directory or key file that group or others may read, write or enter, naming the
/// `chmod` that fixes it. A missing one is left to the code that opens it to explain.
pub fn check_private(data_dir: &Path, key_file: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).ok().map(|m| m.permissions().mode() & 0o777);
        if let Some(m) = mode(data_dir).filter(|m| m & 0o077 != 0) {
            return Err(Error::KeyFile(format!(
                "the data directory {} can be reached by other users (mode {m:o}): it holds password hashes, \
                 sealed secrets and the audit log. Run `chmod -R go-rwx {}` and start again",
                data_dir.display(),
                data_dir.display()
            )));
        }
        if let Some(m) = mode(key_file).filter(|m| m & 0o077 != 0) {
            return Err(Error::KeyFile(format!(
                "the key file {} can be read or written by other users (mode {m:o}); it unseals every TOTP \
                 secret. Run `chmod 600 {}` and start again",
                key_file.display(),
                key_file.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = (data_dir, key_file);
    Ok(())
}
