//! Key loading shared by the demos: `STORED_SESSION_KEYS`, or a key file
//! created once so that restarts keep sessions.

use stored_session::{Key, Keyring};

/// Where the demos keep their key when `STORED_SESSION_KEYS` is not set.
pub const KEY_FILE: &str = ".stored-session-key";

/// The keys from `STORED_SESSION_KEYS`, or the key file (created once).
pub fn keyring() -> Result<Keyring, String> {
    if std::env::var_os("STORED_SESSION_KEYS").is_some() {
        println!("keys from STORED_SESSION_KEYS");
        return Keyring::from_env().map_err(|e| format!("STORED_SESSION_KEYS: {e}"));
    }
    match std::fs::read_to_string(KEY_FILE) {
        Ok(text) => {
            println!("key from {KEY_FILE}");
            Keyring::parse(&text).map_err(|e| format!("{KEY_FILE}: {e}"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Key::generate();
            write_key_file(key.to_base64().as_str())?;
            println!("generated a key in {KEY_FILE} (keep it secret; sessions need it)");
            Ok(Keyring::new(key))
        }
        Err(e) => Err(format!("cannot read {KEY_FILE}: {e}")),
    }
}

fn write_key_file(key: &str) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(KEY_FILE)
        .map_err(|e| format!("cannot create {KEY_FILE}: {e}"))?;
    writeln!(file, "{key}").map_err(|e| format!("cannot write {KEY_FILE}: {e}"))
}
