//! One deliverer per outbox: two processes delivering the same outbox would break the
//! per-key order. The lock is an OS file lock on `<outbox>.lock`, so it is released when
//! its holder exits, however it exits (a SIGKILLed proxy leaves no stale lock).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held for as long as this process delivers from the outbox.
#[derive(Debug)]
pub struct DeliveryLock {
    _file: File,
}

impl DeliveryLock {
    fn lock_path(outbox: &Path) -> PathBuf {
        let mut name = outbox.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the lock of the outbox at `outbox`, or says which process holds it.
    ///
    /// # Errors
    /// Another process holds it (the message names its pid), or the lock file cannot be
    /// opened.
    pub fn acquire(outbox: &Path) -> Result<DeliveryLock, String> {
        let path = Self::lock_path(outbox);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(format!(
                    "{} is being delivered by another process (pid {})",
                    outbox.display(),
                    holder.trim()
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(format!("locking {}: {e}", path.display()));
            }
        }
        // The holder's pid, for the message above; a courtesy, not part of the lock.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(DeliveryLock { _file: file })
    }

    /// Whether some process holds the lock right now.
    pub fn is_held(outbox: &Path) -> bool {
        match File::open(Self::lock_path(outbox)) {
            Ok(file) => match file.try_lock_shared() {
                Ok(()) => false,
                Err(TryLockError::WouldBlock) => true,
                Err(TryLockError::Error(_)) => false,
            },
            Err(_) => false,
        }
    }
}
