//! A real Kannel on loopback for adapter tests: `bearerbox`, `smsbox` and
//! the fake SMSC client `fakesmsc` (package `kannel-extras`) as child
//! processes, on free ports, with their configuration and logs in a
//! temporary directory. Nothing is shared with a system Kannel (the Debian
//! package's service uses ports 13000/13001/13013 and /etc/kannel).
//!
//! `bearerbox` has one `smsc = fake` connection; `fakesmsc` connects to it,
//! prints every message bearerbox hands it ("Got message N: <from to …>"),
//! which the harness reads, and sends whatever line is written to its stdin
//! as a mobile-originated message. For a message with a device `dlr-mask`
//! (1, 2 or 4) the fake connection reports it delivered (type 1) as soon as
//! fakesmsc has it; bearerbox adds the SMSC-level report (type 8, reply
//! `ACK/`) for mask 8. It cannot produce failure reports.
//!
//! Use it as `#[path = "common/kannel.rs"] mod kannel;`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Credentials of the `sendsms-user` the harness configures.
pub const USERNAME: &str = "pigeon";
pub const PASSWORD: &str = "kannel-test-pw";
/// The fake SMSC connection's `smsc-id`.
pub const SMSC_ID: &str = "fake";
const ADMIN_PASSWORD: &str = "kannel-admin-pw";
const INSTALL_HINT: &str = "the Kannel adapter tests need a real Kannel: \
                            `apt-get install -y kannel kannel-extras` (bearerbox and smsbox from \
                            kannel, fakesmsc from kannel-extras)";

/// The SMSC connection bearerbox has.
#[derive(Debug, Clone)]
pub enum Smsc {
    /// `smsc = fake`, served by fakesmsc (see above).
    Fake,
    /// `smsc = smpp`: bearerbox binds as a transceiver ESME to this SMPP
    /// server (Pigeon's own, in its SMPP server tests); no fakesmsc.
    Smpp {
        port: u16,
        system_id: String,
        password: String,
    },
}

/// The `smsc-id` of the SMPP connection.
pub const SMPP_SMSC_ID: &str = "pigeon";

/// A message the fake SMSC received from bearerbox, as fakesmsc prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmscMessage {
    pub from: String,
    pub to: String,
    /// `text`, `data`, `ucs-2` or `udh`.
    pub kind: String,
    /// The user data header (empty unless `kind` is `udh`).
    pub udh: Vec<u8>,
    /// The message data as bearerbox holds it: UTF-8 for GSM text, UTF-16BE
    /// for UCS-2.
    pub data: Vec<u8>,
    /// The line as printed.
    pub line: String,
}

impl SmscMessage {
    /// Parses what follows `Got message N: ` (without the angle brackets).
    fn parse(line: &str) -> Option<Self> {
        let mut fields = line.splitn(4, ' ');
        let from = fields.next()?.to_owned();
        let to = fields.next()?.to_owned();
        let kind = fields.next()?.to_owned();
        let rest = fields.next().unwrap_or_default();
        let (udh, data) = match kind.as_str() {
            "text" => (Vec::new(), rest.as_bytes().to_vec()),
            "udh" => {
                // `udh <udh> data <data>` (both URL-encoded).
                let (udh, data) = rest.split_once(' ')?;
                let data = data.strip_prefix("data ").unwrap_or(data);
                (url_decode(udh), url_decode(data))
            }
            _ => (Vec::new(), url_decode(rest)),
        };
        Some(Self {
            from,
            to,
            kind,
            udh,
            data,
            line: line.to_owned(),
        })
    }

    /// The data as text: UTF-16BE for `ucs-2`, else UTF-8.
    pub fn text(&self) -> String {
        if self.kind == "ucs-2" {
            utf16be(&self.data)
        } else {
            String::from_utf8_lossy(&self.data).into_owned()
        }
    }
}

/// Decodes UTF-16BE bytes (lossy).
pub fn utf16be(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|p| u16::from_be_bytes([p[0], *p.get(1).unwrap_or(&0)]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// Kannel's URL decoding: `+` is a space, `%XX` a byte.
pub fn url_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Percent-encodes bytes as Kannel's fakesmsc expects for `ucs2`/`data`.
pub fn url_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// The three binaries, found on the usual Debian paths or `$PATH`.
struct Binaries {
    bearerbox: PathBuf,
    smsbox: PathBuf,
    fakesmsc: PathBuf,
}

fn find(name: &str, dirs: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    dirs.iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

impl Binaries {
    fn find() -> Self {
        let sbin = ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"];
        let test = ["/usr/lib/kannel/test", "/usr/local/lib/kannel/test"];
        let missing = |what: &str| -> ! { panic!("{what} not found; {INSTALL_HINT}") };
        Self {
            bearerbox: find("bearerbox", &sbin).unwrap_or_else(|| missing("bearerbox")),
            smsbox: find("smsbox", &sbin).unwrap_or_else(|| missing("smsbox")),
            fakesmsc: find("fakesmsc", &test).unwrap_or_else(|| missing("fakesmsc")),
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Ports and paths chosen before anything starts, so that Pigeon can be
/// configured with the sendsms URL and Kannel with Pigeon's callback URL.
pub struct KannelPorts {
    pub admin: u16,
    pub smsbox: u16,
    pub smsc: u16,
    pub sendsms: u16,
}

impl KannelPorts {
    pub fn free() -> Self {
        // Distinct ports (the OS could hand the same one out twice once it is free again).
        let mut ports = Vec::new();
        while ports.len() < 4 {
            let port = free_port();
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        Self {
            admin: ports[0],
            smsbox: ports[1],
            smsc: ports[2],
            sendsms: ports[3],
        }
    }

    /// smsbox's HTTP interface: the carrier's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.sendsms)
    }
}

/// What the harness reads from fakesmsc.
#[derive(Default)]
struct FakeSmscOutput {
    received: Vec<SmscMessage>,
    /// MOs fakesmsc has sent ("fakesmsc: sent message N").
    sent: usize,
    log: String,
}

/// A running Kannel; everything is killed when it is dropped.
pub struct Kannel {
    pub ports: KannelPorts,
    dir: tempfile::TempDir,
    children: Vec<(&'static str, Child)>,
    fakesmsc_stdin: Option<ChildStdin>,
    output: Arc<(Mutex<FakeSmscOutput>, Condvar)>,
}

impl Kannel {
    /// Starts bearerbox, smsbox and fakesmsc and waits until smsbox is
    /// connected to bearerbox, the fake SMSC link is online and sendsms
    /// answers. `mo_url`, if given, is the `get-url` of a catch-all
    /// `sms-service` (Kannel escapes such as `%p` are filled in by smsbox).
    ///
    /// Panics (with the install command) if a binary is missing.
    pub fn start(ports: KannelPorts, mo_url: Option<&str>) -> Self {
        Self::start_with(ports, mo_url, Smsc::Fake)
    }

    /// As [`Kannel::start`], with the given SMSC connection; for
    /// [`Smsc::Smpp`], ready once bearerbox's SMPP bind is online.
    pub fn start_with(ports: KannelPorts, mo_url: Option<&str>, smsc: Smsc) -> Self {
        let bin = Binaries::find();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("kannel.conf");
        std::fs::write(&conf, config(&ports, dir.path(), mo_url, &smsc)).unwrap();
        let output = Arc::new((Mutex::new(FakeSmscOutput::default()), Condvar::new()));
        let mut kannel = Self {
            ports,
            dir,
            children: Vec::new(),
            fakesmsc_stdin: None,
            output,
        };
        let dir_path = kannel.dir.path().to_owned();
        let log = |name: &str| std::fs::File::create(dir_path.join(format!("{name}.out"))).unwrap();
        let bearerbox = Command::new(&bin.bearerbox)
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log("bearerbox"))
            .stderr(log("bearerbox"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.bearerbox.display()));
        kannel.children.push(("bearerbox", bearerbox));
        kannel.wait_until("bearerbox's admin port", |k| {
            TcpStream::connect(("127.0.0.1", k.ports.admin)).is_ok()
                && TcpStream::connect(("127.0.0.1", k.ports.smsbox)).is_ok()
        });
        let smsbox = Command::new(&bin.smsbox)
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log("smsbox"))
            .stderr(log("smsbox"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.smsbox.display()));
        kannel.children.push(("smsbox", smsbox));
        if matches!(smsc, Smsc::Smpp { .. }) {
            kannel.wait_until("smsbox and the SMPP bind", |k| {
                let status = k.status().unwrap_or_default();
                smsbox_online(&status)
                    && status.lines().any(|l| {
                        l.trim_start().starts_with(&format!("{SMPP_SMSC_ID}["))
                            && l.contains("(online")
                    })
                    && TcpStream::connect(("127.0.0.1", k.ports.sendsms)).is_ok()
            });
            return kannel;
        }
        // fakesmsc in interactive mode: no messages on the command line,
        // each line on stdin is sent as an MO; its log goes to stderr.
        let mut fakesmsc = Command::new(&bin.fakesmsc)
            .args(["-H", "127.0.0.1", "-r", &kannel.ports.smsc.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.fakesmsc.display()));
        kannel.fakesmsc_stdin = fakesmsc.stdin.take();
        for stream in [
            Box::new(fakesmsc.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(fakesmsc.stderr.take().unwrap()),
        ] {
            let output = kannel.output.clone();
            std::thread::spawn(move || read_fakesmsc(stream, &output));
        }
        kannel.children.push(("fakesmsc", fakesmsc));
        kannel.wait_until("smsbox and the fake SMSC link", |k| {
            let status = k.status().unwrap_or_default();
            smsbox_online(&status)
                && status.lines().any(|l| {
                    l.trim_start().starts_with(&format!("{SMSC_ID}[")) && l.contains("(online")
                })
                && TcpStream::connect(("127.0.0.1", k.ports.sendsms)).is_ok()
        });
        kannel
    }

    /// smsbox's HTTP interface: the carrier's `base_url`.
    pub fn base_url(&self) -> String {
        self.ports.base_url()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// bearerbox's `status.txt`.
    pub fn status(&self) -> Option<String> {
        http_get(
            self.ports.admin,
            &format!("/status.txt?password={ADMIN_PASSWORD}"),
        )
        .map(|(_, body)| body)
    }

    /// Sends a GET to smsbox's HTTP interface (for poking sendsms by hand):
    /// status and body.
    pub fn sendsms_get(&self, path_and_query: &str) -> (u16, String) {
        http_get(self.ports.sendsms, path_and_query)
            .unwrap_or_else(|| panic!("smsbox did not answer GET {path_and_query}"))
    }

    /// Has fakesmsc send a text MO (GSM text, as UTF-8).
    pub fn send_mo_text(&mut self, from: &str, to: &str, text: &str) {
        self.send_mo_line(&format!("{from} {to} text {text}"));
    }

    /// Has fakesmsc send a UCS-2 MO.
    pub fn send_mo_ucs2(&mut self, from: &str, to: &str, text: &str) {
        let bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        self.send_mo_line(&format!("{from} {to} ucs2 {}", url_encode(&bytes)));
    }

    /// Writes one line to fakesmsc and waits until it says it sent it
    /// (it takes one line per read, so lines must not be written together).
    fn send_mo_line(&mut self, line: &str) {
        let before = self.output.0.lock().unwrap().sent;
        let stdin = self.fakesmsc_stdin.as_mut().expect("fakesmsc is running");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let (lock, changed) = &*self.output;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut out = lock.lock().unwrap();
        while out.sent <= before {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "fakesmsc did not send {line:?}\n{}",
                    self.diagnostics_with(&out.log)
                );
            }
            out = changed.wait_timeout(out, left).unwrap().0;
        }
    }

    /// Every message the fake SMSC received so far.
    pub fn received(&self) -> Vec<SmscMessage> {
        self.output.0.lock().unwrap().received.clone()
    }

    /// Waits until the fake SMSC received at least `count` messages.
    pub fn wait_for_messages(&self, count: usize, timeout: Duration) -> Vec<SmscMessage> {
        let (lock, changed) = &*self.output;
        let deadline = Instant::now() + timeout;
        let mut out = lock.lock().unwrap();
        while out.received.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "the fake SMSC received {} message(s), expected {count}\n{}",
                    out.received.len(),
                    self.diagnostics_with(&out.log)
                );
            }
            out = changed.wait_timeout(out, left).unwrap().0;
        }
        out.received.clone()
    }

    /// The logs, for assertion messages.
    pub fn diagnostics(&self) -> String {
        let log = self.output.0.lock().unwrap().log.clone();
        self.diagnostics_with(&log)
    }

    fn diagnostics_with(&self, fakesmsc_log: &str) -> String {
        let mut text = String::new();
        for name in ["bearerbox.log", "smsbox.log", "access.log"] {
            let content = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let tail: Vec<&str> = content.lines().rev().take(40).collect();
            text.push_str(&format!("--- {name} (last lines)\n"));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text.push_str("--- fakesmsc\n");
        text.push_str(fakesmsc_log);
        text
    }

    /// Polls `ready` every 25 ms for up to 30 s; panics with the logs if it
    /// never holds or a process died.
    fn wait_until(&mut self, what: &str, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ready(self) {
                return;
            }
            let exited = self
                .children
                .iter_mut()
                .find_map(|(name, child)| Some((*name, child.try_wait().ok()??)));
            if let Some((name, status)) = exited {
                panic!(
                    "{name} exited ({status}) while waiting for {what}\n{}",
                    self.diagnostics()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "Kannel not ready after 30 s: {what}\nstatus: {:?}\n{}",
                    self.status(),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Kannel {
    fn drop(&mut self) {
        drop(self.fakesmsc_stdin.take());
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether bearerbox's status lists a connected smsbox.
fn smsbox_online(status: &str) -> bool {
    status
        .lines()
        .any(|l| l.trim_start().starts_with("smsbox:") && l.contains("on-line"))
}

fn read_fakesmsc(stream: Box<dyn Read + Send>, output: &(Mutex<FakeSmscOutput>, Condvar)) {
    let (lock, changed) = output;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let mut out = lock.lock().unwrap();
        out.log.push_str(&line);
        out.log.push('\n');
        if line.contains("fakesmsc: sent message ") {
            out.sent += 1;
        }
        if let Some(at) = line.find("Got message ") {
            let rest = &line[at..];
            if let (Some(open), Some(close)) = (rest.find(": <"), rest.rfind('>'))
                && let Some(message) = SmscMessage::parse(&rest[open + 3..close])
            {
                out.received.push(message);
            }
        }
        changed.notify_all();
    }
}

fn smsc_group(ports: &KannelPorts, smsc: &Smsc) -> String {
    match smsc {
        Smsc::Fake => format!(
            "group = smsc\nsmsc = fake\nsmsc-id = {SMSC_ID}\nport = {}\nconnect-allow-ip = 127.0.0.1\n",
            ports.smsc
        ),
        Smsc::Smpp {
            port,
            system_id,
            password,
        } => format!(
            "group = smsc\nsmsc = smpp\nsmsc-id = {SMPP_SMSC_ID}\nhost = 127.0.0.1\nport = {port}\n\
             transceiver-mode = true\nsmsc-username = {system_id}\nsmsc-password = {password}\n\
             system-type = \"\"\ninterface-version = 34\nreconnect-delay = 1\n\
             enquire-link-interval = 30\n"
        ),
    }
}

/// A minimal HTTP/1.0 GET on loopback: status and body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

fn config(ports: &KannelPorts, dir: &Path, mo_url: Option<&str>, smsc: &Smsc) -> String {
    let dir = dir.display();
    let mut conf = format!(
        r#"group = core
admin-port = {admin}
admin-interface = 127.0.0.1
admin-password = {ADMIN_PASSWORD}
status-password = {ADMIN_PASSWORD}
admin-allow-ip = 127.0.0.1
smsbox-port = {smsbox}
smsbox-interface = 127.0.0.1
box-allow-ip = 127.0.0.1
log-file = "{dir}/bearerbox.log"
log-level = 0
access-log = "{dir}/access.log"
dlr-storage = internal

{smsc_group}
group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox}
sendsms-port = {sendsms}
sendsms-interface = 127.0.0.1
log-file = "{dir}/smsbox.log"
log-level = 0

group = sendsms-user
username = {USERNAME}
password = {PASSWORD}
max-messages = 1
concatenation = false
"#,
        admin = ports.admin,
        smsbox = ports.smsbox,
        sendsms = ports.sendsms,
        smsc_group = smsc_group(ports, smsc),
    );
    if let Some(url) = mo_url {
        conf.push_str(&format!(
            r#"
group = sms-service
keyword = default
catch-all = true
max-messages = 0
omit-empty = true
get-url = "{url}"
"#
        ));
    }
    conf
}
