//! Test harness: runs the real `apg-biometric-agent` binary on a temporary directory with a
//! `NOTIFY_SOCKET` listener, and talks HTTP to it over TCP or its Unix socket.
#![allow(dead_code)] // each test file uses a different part of the harness

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

pub const PREFIX: &str = "/api/v1/biometric";

/// The shared data directory (`../shared` beside the repository, or `APG_SHARED_DIR`).
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("APG_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    assert!(
        dir.join("data/fingerprint/fvc2002").is_dir(),
        "the real sample data is missing: expected {}/data/fingerprint/fvc2002 (set APG_SHARED_DIR)",
        dir.display()
    );
    dir
}

/// An FVC2002 DB1_B impression, e.g. `fvc("101_1")`.
pub fn fvc(name: &str) -> PathBuf {
    shared_dir()
        .join("data/fingerprint/fvc2002/DB1_B")
        .join(format!("{name}.tif"))
}

/// A sample upload body for the API.
pub fn upload(path: &Path) -> Value {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    json!({ "data": base64::engine::general_purpose::STANDARD.encode(bytes), "name": path.file_name().unwrap().to_string_lossy() })
}

/// How to start an agent.
#[derive(Clone, Default)]
pub struct Options {
    /// Extra YAML appended to the generated configuration (top-level sections).
    pub extra_yaml: String,
    /// Files copied into the simulated reader's directory.
    pub reader_files: Vec<PathBuf>,
    /// `WATCHDOG_USEC` to pass.
    pub watchdog_usec: Option<u64>,
    /// Extra simulated device specs (YAML flow mappings).
    pub extra_devices: Vec<String>,
    /// `APG_BIOMETRIC_ENV` (default `testing`).
    pub profile: Option<String>,
    /// Agent id (default `test-agent`).
    pub agent_id: Option<String>,
    /// Site id (default `test-site`).
    pub site: Option<String>,
    /// `logging.format` (default `json`).
    pub log_format: Option<&'static str>,
    /// Lines added to the `devices:` section, each indented by two spaces.
    pub device_yaml: String,
    /// Extra environment of the agent process.
    pub env: Vec<(String, String)>,
}

/// A running agent and the files it owns.
pub struct AgentProcess {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub db: PathBuf,
    pub log: PathBuf,
    pub reader_dir: PathBuf,
    child: Option<Child>,
    notify: UnixDatagram,
    /// Every notification received so far, in order.
    pub messages: Vec<String>,
    options: Options,
    pub api: Option<String>,
}

pub fn agent_binary() -> &'static str {
    env!("CARGO_BIN_EXE_apg-biometric-agent")
}

pub fn cli_binary() -> &'static str {
    env!("CARGO_BIN_EXE_apg-biometric")
}

impl AgentProcess {
    /// Prepares the directory, key and configuration, starts the agent and waits for READY=1.
    pub fn start(options: Options) -> Self {
        let mut agent = Self::prepare(options);
        agent.spawn();
        agent.wait_ready(Duration::from_secs(60));
        agent
    }

    /// Prepares everything but does not start.
    pub fn prepare(options: Options) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("apg-agent-test")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        let reader_dir = root.join("reader");
        std::fs::create_dir_all(&reader_dir).unwrap();
        for (i, file) in options.reader_files.iter().enumerate() {
            // Prefix keeps the configured order (the reader replays files sorted by name).
            let name = format!("{i:03}-{}", file.file_name().unwrap().to_string_lossy());
            std::fs::copy(file, reader_dir.join(name))
                .unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
        }
        let key = root.join("master.key");
        apg_biometric::crypto::create_key_file(&key).expect("master key");
        let socket = root.join("run/agent.sock");
        let db = root.join("agent.db");
        let log = root.join("agent.log");
        let mut devices = vec![format!(
            "{{id: reader-1, kind: fingerprint_reader, directory: {}, dpi: 500}}",
            reader_dir.display()
        )];
        devices.extend(options.extra_devices.iter().cloned());
        let config = root.join("agent.yaml");
        let yaml = format!(
            "agent: {{id: {agent_id}, site: {site}}}\n\
             storage: {{path: {db}, backup_dir: {root}/backups}}\n\
             keys: {{master_key_file: {key}}}\n\
             api: {{listen: \"127.0.0.1:0\", socket: {socket}}}\n\
             monitoring: {{metrics_enabled: true, metrics_address: 127.0.0.1, metrics_port: 0}}\n\
             logging: {{level: info, format: {log_format}, file: {log}}}\n\
             devices:\n  capture_timeout: 2.0\n{device_yaml}  simulated:\n{devices}\n{extra}\n",
            agent_id = options.agent_id.as_deref().unwrap_or("test-agent"),
            site = options.site.as_deref().unwrap_or("test-site"),
            db = db.display(),
            root = root.display(),
            key = key.display(),
            socket = socket.display(),
            log = log.display(),
            log_format = options.log_format.unwrap_or("json"),
            devices = devices
                .iter()
                .map(|d| format!("    - {d}\n"))
                .collect::<String>(),
            extra = options.extra_yaml,
            device_yaml = options.device_yaml,
        );
        std::fs::write(&config, yaml).unwrap();
        let notify_path = root.join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Self {
            dir,
            config,
            socket,
            db,
            log,
            reader_dir,
            child: None,
            notify,
            messages: Vec::new(),
            options,
            api: None,
        }
    }

    /// Starts the binary (again, after a stop or kill).
    pub fn spawn(&mut self) {
        let mut command = Command::new(agent_binary());
        command
            .args(["run", "--config"])
            .arg(&self.config)
            .env("NOTIFY_SOCKET", self.dir.path().join("notify.sock"))
            .env(
                "APG_BIOMETRIC_ENV",
                self.options.profile.as_deref().unwrap_or("testing"),
            )
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command.envs(self.options.env.iter().map(|(k, v)| (k, v)));
        if let Some(usec) = self.options.watchdog_usec {
            command.env("WATCHDOG_USEC", usec.to_string());
        }
        self.messages.clear();
        self.api = None;
        self.child = Some(command.spawn().expect("start apg-biometric-agent"));
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Reads notifications for up to `wait`, appending them to `messages`.
    pub fn pump(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.notify.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    self.messages.extend(text.lines().map(str::to_owned));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("notify socket: {e}"),
            }
        }
    }

    /// Waits until a notification equal to `line` arrives after index `from`; returns its index.
    pub fn wait_for(&mut self, line: &str, from: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.messages.iter().skip(from).position(|m| m == line) {
                return from + i;
            }
            if Instant::now() > deadline {
                panic!(
                    "no {line:?} within {timeout:?}; got {:?}; log:\n{}",
                    self.messages,
                    self.log_text()
                );
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                let stderr = self.stderr();
                panic!("the agent exited ({status}) before {line:?}; notifications {:?}; stderr: {stderr}; log:\n{}", self.messages, self.log_text());
            }
            self.pump(Duration::from_millis(50));
        }
    }

    pub fn wait_ready(&mut self, timeout: Duration) {
        self.wait_for("READY=1", 0, timeout);
        let health = self.socket_request("GET", &format!("{PREFIX}/health"), None);
        self.api = health.json["endpoints"]["api"].as_str().map(str::to_owned);
    }

    fn stderr(&mut self) -> String {
        let mut out = String::new();
        if let Some(mut e) = self.child.as_mut().and_then(|c| c.stderr.take()) {
            let _ = e.read_to_string(&mut out);
        }
        out
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal)
            .expect("signal the agent");
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(10))
            .expect("the agent did not stop within 10 s of SIGTERM")
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.child = None;
    }

    /// A request over the operator socket (local admin).
    pub fn socket_request(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let stream = UnixStream::connect(&self.socket)
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.socket.display()));
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        http(
            stream,
            method,
            path,
            body.map(|b| b.to_string().into_bytes()).as_deref(),
            &[],
        )
    }

    /// A request over TCP with optional API key.
    pub fn api_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        api_key: Option<&str>,
    ) -> Reply {
        let addr = self
            .api
            .as_ref()
            .expect("the agent reported no TCP API address");
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let headers: Vec<(&str, &str)> =
            api_key.map(|k| vec![("X-API-Key", k)]).unwrap_or_default();
        http(stream, method, path, body, &headers)
    }

    /// Creates an API key with `role` through the socket and returns the secret.
    pub fn create_api_key(&self, name: &str, role: &str) -> String {
        let reply = self.socket_request(
            "POST",
            &format!("{PREFIX}/api-keys"),
            Some(&json!({ "name": name, "role": role })),
        );
        assert_eq!(reply.status, 201, "create api key: {}", reply.text);
        reply.json["key"]
            .as_str()
            .unwrap_or_else(|| panic!("no key in {}", reply.text))
            .to_owned()
    }

    /// Creates a subject; the agent must answer 201.
    pub fn create_subject(&self, external_id: &str) {
        let reply = self.socket_request(
            "POST",
            &format!("{PREFIX}/subjects"),
            Some(&json!({ "external_id": external_id })),
        );
        assert_eq!(reply.status, 201, "create subject: {}", reply.text);
    }

    /// Enrolls an existing subject from `device`, naming no modality: the agent takes it from
    /// the device.
    pub fn enroll_from_device(&self, external_id: &str, device: &str) -> Reply {
        self.socket_request(
            "POST",
            &format!("{PREFIX}/subjects/{external_id}/enroll"),
            Some(&json!({ "device_id": device })),
        )
    }

    /// Creates a subject and enrolls it from the simulated reader.
    pub fn enroll_from_reader(&self, external_id: &str) -> Reply {
        self.create_subject(external_id);
        self.socket_request(
            "POST",
            &format!("{PREFIX}/subjects/{external_id}/enroll"),
            Some(&json!({ "modality": "fingerprint", "device_id": "reader-1" })),
        )
    }

    /// Verifies `subject` with an uploaded sample over the socket.
    pub fn verify_file(&self, subject: &str, sample: &Path) -> Reply {
        self.socket_request(
            "POST",
            &format!("{PREFIX}/verify"),
            Some(&json!({ "subject_id": subject, "modality": "fingerprint", "sample": upload(sample) })),
        )
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- agent log {} (tail) ---", self.log.display());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
        self.kill();
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub text: String,
    pub json: Value,
}

/// A minimal HTTP/1.1 exchange (`Connection: close`), enough for the agent's API.
pub fn http<S: Read + Write>(
    mut stream: S,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    if let Some(body) = body {
        // The server may answer (413) and close before reading everything: that is fine.
        let _ = stream.write_all(body);
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut payload = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        payload = dechunk(&payload);
    }
    let text = String::from_utf8_lossy(&payload).to_string();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, text, json }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}
