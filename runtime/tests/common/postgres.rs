//! A throwaway PostgreSQL server for tests: the `initdb` and `postgres` of
//! Debian's `postgresql` package, on a free loopback port, its data in a
//! temporary directory. PostgreSQL refuses to run as root, so when the tests
//! do (as in CI) the server runs as `nobody`. One server per test process,
//! started on first use; each caller gets a database of its own. The server
//! is held by a shell that waits on a pipe from this process and stops it
//! once that pipe closes, so it goes when the test process does, however
//! that ends, and removes its directory. The server takes TLS with a
//! certificate for 127.0.0.1 from a CA of its own ([`PostgresServer::ca_file`]),
//! so every test that connects as Pigeon does by default (`sslmode=prefer`)
//! runs encrypted.
//!
//! Used by the store's unit tests (`#[path]`) and by the integration tests.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "the PostgreSQL tests need a PostgreSQL server's binaries: \
                            `apt-get install -y postgresql`";
/// `nobody` on Debian.
const UNPRIVILEGED: u32 = 65534;

pub struct PostgresServer {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Closed when the process exits, which stops the server.
    _keepalive: ChildStdin,
}

/// The server of this process, started on first use.
pub fn server() -> &'static PostgresServer {
    static SERVER: OnceLock<PostgresServer> = OnceLock::new();
    SERVER.get_or_init(PostgresServer::start)
}

/// A new, empty database on this process's server: its connection URL.
pub fn new_database() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let server = server();
    let name = format!(
        "pigeon_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    server.psql(&format!("CREATE DATABASE {name}"));
    server.url(&name)
}

fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("no PostgreSQL under /usr/lib/postgresql; {INSTALL_HINT}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn running_as_root() -> bool {
    // The owner of a file this process just made is its effective user.
    let probe = tempfile::NamedTempFile::new().unwrap();
    std::os::unix::fs::MetadataExt::uid(&probe.as_file().metadata().unwrap()) == 0
}

/// A CA and a server certificate it signed, for 127.0.0.1 only, in `dir`
/// (the key readable by the server's user alone, as PostgreSQL requires):
/// the server's arguments that use them.
fn write_certificates(dir: &Path, root: bool) -> Vec<String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Pigeon test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let (cert_file, key_file) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    if root {
        for file in [&cert_file, &key_file] {
            std::os::unix::fs::chown(file, Some(UNPRIVILEGED), Some(UNPRIVILEGED)).unwrap();
        }
    }
    vec![
        "-c".into(),
        format!("ssl_cert_file={}", cert_file.display()),
        "-c".into(),
        format!("ssl_key_file={}", key_file.display()),
    ]
}

impl PostgresServer {
    fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let root = running_as_root();
        if root {
            std::os::unix::fs::chown(dir.path(), Some(UNPRIVILEGED), Some(UNPRIVILEGED)).unwrap();
        }
        let data = dir.path().join("data");
        let as_user = |program: &Path| -> Command {
            if root {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={UNPRIVILEGED}"))
                    .arg(format!("--regid={UNPRIVILEGED}"))
                    .arg("--clear-groups")
                    .arg(program);
                command
            } else {
                Command::new(program)
            }
        };
        let initdb = as_user(&bin.join("initdb"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}; {INSTALL_HINT}"));
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let tls = write_certificates(dir.path(), root);
        let port = free_port();
        let server = as_user(&bin.join("postgres"));
        let mut server_line: Vec<String> = std::iter::once(server.get_program())
            .chain(server.get_args())
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        server_line.extend(
            [
                "-D",
                &data.to_string_lossy(),
                "-p",
                &port.to_string(),
                "-k",
                &dir.path().to_string_lossy(),
                "-h",
                "127.0.0.1",
                // A test database: nothing here must survive a crash of
                // the machine, and fsyncs would only slow the tests.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "ssl=on",
            ]
            .map(str::to_owned),
        );
        server_line.extend(tls);
        let quoted: Vec<String> = server_line
            .iter()
            .map(|arg| format!("'{}'", arg.replace('\'', r"'\''")))
            .collect();
        let log = dir.path().join("postgres.log");
        let script = format!(
            "{} </dev/null >'{}' 2>&1 & pid=$!; read _; kill -INT $pid; wait $pid; rm -rf '{}'",
            quoted.join(" "),
            log.display(),
            dir.path().display()
        );
        let mut holder = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting PostgreSQL");
        let keepalive = holder.stdin.take().unwrap();
        let server = Self {
            port,
            bin,
            dir,
            _keepalive: keepalive,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok()
                && server.try_psql("SELECT 1").is_ok()
            {
                break;
            }
            if let Ok(Some(status)) = holder.try_wait() {
                panic!("PostgreSQL exited ({status}):\n{}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL not ready after 60 s:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The holder is reaped by no one: it lives as long as this process.
        std::mem::forget(holder);
        server
    }

    /// The PEM certificate of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The server's log, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn try_psql(&self, sql: &str) -> Result<String, String> {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
            ])
            .arg("postgres")
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-d", "postgres", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// Runs `sql` as the superuser on the `postgres` database.
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql)
            .unwrap_or_else(|err| panic!("psql {sql:?} failed: {err}\n{}", self.log()))
    }
}
