//! `apg-biometric`: the operator CLI. It talks to the running agent over its Unix socket;
//! `keys init` and `doctor` also work without a running agent.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::{Args, Parser, Subcommand};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::client::{Answer, Client};
use crate::config::DEFAULT_CONFIG_PATH;

/// Operator CLI of the apg-biometric agent.
#[derive(Parser, Debug)]
#[command(name = "apg-biometric", version, about)]
pub struct Cli {
    /// Agent configuration (for the socket path and `doctor`).
    #[arg(long, global = true, env = "APG_BIOMETRIC_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Agent socket (overrides api.socket from the configuration).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// Print the agent's JSON answers as they are.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Where samples come from.
#[derive(Args, Debug, Clone)]
pub struct SampleArgs {
    /// Modality (default: what `--device` captures, else fingerprint).
    #[arg(long)]
    pub modality: Option<String>,
    /// Capture from this device (default: the first usable one).
    #[arg(long, conflicts_with = "sample")]
    pub device: Option<String>,
    /// Use these sample files instead of a device (repeat for several).
    #[arg(long)]
    pub sample: Vec<PathBuf>,
}

/// CLI commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// The agent's health checks.
    Health,
    /// Capture devices.
    Devices {
        #[command(subcommand)]
        action: Option<DeviceAction>,
    },
    /// Enrolled people.
    Subjects {
        #[command(subcommand)]
        action: SubjectAction,
    },
    /// Enroll a modality for a subject (several captures).
    Enroll {
        /// Subject external id.
        subject: String,
        #[command(flatten)]
        samples: SampleArgs,
        /// Create the subject first if it does not exist.
        #[arg(long)]
        create: bool,
        /// Display name, with --create.
        #[arg(long)]
        name: Option<String>,
    },
    /// Verify a claimed identity (1:1).
    Verify {
        /// Subject external id.
        subject: String,
        #[command(flatten)]
        samples: SampleArgs,
    },
    /// Identify the person presenting (1:N).
    Identify {
        #[command(flatten)]
        samples: SampleArgs,
        /// Candidates to list.
        #[arg(long, default_value_t = 5)]
        max_candidates: usize,
    },
    /// Recent decisions.
    History {
        /// Only this subject.
        #[arg(long)]
        subject: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Data keys and API keys.
    Keys {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Copy the store to a backup file (templates stay encrypted).
    Backup {
        /// File (default: a time-stamped file in storage.backup_dir).
        path: Option<PathBuf>,
    },
    /// Replace the store with a backup made under the same master key.
    Restore {
        /// Backup file.
        path: PathBuf,
    },
    /// Check configuration, store, keys, devices, models and broker, and say what to fix.
    Doctor,
}

/// Device actions.
#[derive(Subcommand, Debug)]
pub enum DeviceAction {
    /// List devices (default).
    List,
    /// Capture once and print the quality.
    Test {
        /// Device id.
        id: String,
    },
    /// Simulated devices: replay this file at the next capture.
    Present {
        /// Device id.
        id: String,
        /// File name inside the device's sample directory.
        file: String,
    },
}

/// Subject actions.
#[derive(Subcommand, Debug)]
pub enum SubjectAction {
    /// List subjects.
    List {
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Create a subject.
    Create {
        /// External id (badge or employee number).
        external_id: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Show a subject and its templates.
    Show {
        /// External id.
        subject: String,
    },
    /// Delete a subject and erase its templates.
    Delete {
        /// External id.
        subject: String,
    },
}

/// Audit actions.
#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Check the whole MAC chain.
    Verify,
    /// Recent entries.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

/// Key actions.
#[derive(Subcommand, Debug)]
pub enum KeyAction {
    /// Re-encrypt every template under a new data key (online).
    Rotate,
    /// Create a new master key file (mode 0600); never overwrites.
    Init {
        /// Key file.
        #[arg(long, default_value = "/etc/apg-biometric/master.key")]
        file: PathBuf,
    },
    /// Create an API key for a kiosk or integration (printed once).
    CreateApiKey {
        /// Name, e.g. lobby-kiosk.
        #[arg(long)]
        name: String,
        /// admin, security_analyst, operator or viewer.
        #[arg(long)]
        role: String,
        /// Days until it expires.
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// List API keys (never the keys themselves).
    ListApiKeys,
    /// Revoke an API key by id or name.
    RevokeApiKey {
        /// Id or name.
        key: String,
    },
}

/// Runs the CLI; the exit code is 0 on success, 1 on a refused or failed operation.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| socket_from_config(&cli.config));
    let client = Client::new(&socket);
    let out = Output { json: cli.json };
    match cli.command {
        Command::Health => {
            let a = client.call(Method::GET, "/health", None).await?;
            out.health(&a);
            Ok(i32::from(a.status != StatusCode::OK))
        }
        Command::Devices { action } => {
            devices(&client, &out, action.unwrap_or(DeviceAction::List)).await
        }
        Command::Subjects { action } => subjects(&client, &out, action).await,
        Command::Enroll {
            subject,
            samples,
            create,
            name,
        } => enroll(&client, &out, &subject, &samples, create, name).await,
        Command::Verify { subject, samples } => {
            let mut body = sample_body(&samples, true)?;
            body["subject_id"] = json!(subject);
            let a = client.call(Method::POST, "/verify", Some(&body)).await?;
            out.decision(&a, "verify")
        }
        Command::Identify {
            samples,
            max_candidates,
        } => {
            let mut body = sample_body(&samples, true)?;
            body["max_candidates"] = json!(max_candidates);
            let a = client.call(Method::POST, "/identify", Some(&body)).await?;
            out.decision(&a, "identify")
        }
        Command::History { subject, limit } => {
            let q = subject
                .map(|s| format!("&subject={}", urlencode(&s)))
                .unwrap_or_default();
            let a = client
                .call(Method::GET, &format!("/history?limit={limit}{q}"), None)
                .await?;
            out.table(
                &a,
                "history",
                &[
                    "created_at",
                    "operation",
                    "modality",
                    "decision",
                    "score",
                    "device_id",
                    "reason",
                ],
            )
        }
        Command::Audit {
            action: AuditAction::Verify,
        } => {
            let a = client.call(Method::POST, "/audit/verify", None).await?;
            if out.raw(&a) {
                return Ok(i32::from(!a.status.is_success()));
            }
            if !a.status.is_success() {
                return out.fail(&a);
            }
            if a.body["intact"] == json!(true) {
                println!("Audit log intact: {} entries checked.", a.body["entries"]);
                Ok(0)
            } else {
                println!(
                    "AUDIT LOG BROKEN: entries {} were altered, removed or inserted.",
                    a.body["broken"]
                );
                Ok(1)
            }
        }
        Command::Audit {
            action: AuditAction::List { limit },
        } => {
            let a = client
                .call(Method::GET, &format!("/audit?limit={limit}"), None)
                .await?;
            out.table(
                &a,
                "entries",
                &["created_at", "actor", "action", "subject_id"],
            )
        }
        Command::Keys { action } => keys(&client, &out, action).await,
        Command::Backup { path } => {
            let body = json!({ "path": path });
            let a = client.call(Method::POST, "/backup", Some(&body)).await?;
            out.simple(&a, |b| format!("Backup written to {} ({} bytes). It is encrypted: keep the master key to restore it.", b["path"].as_str().unwrap_or("?"), b["bytes"]))
        }
        Command::Restore { path } => {
            let path = std::fs::canonicalize(&path)
                .with_context(|| format!("backup file {}", path.display()))?;
            let a = client
                .call(Method::POST, "/restore", Some(&json!({ "path": path })))
                .await?;
            out.simple(&a, |b| {
                format!(
                    "Restored {}: {} subjects, {} unreadable templates.",
                    b["path"].as_str().unwrap_or("?"),
                    b["subjects"],
                    b["unreadable_templates"]
                )
            })
        }
        Command::Doctor => crate::doctor::run(&cli.config, &client, cli.json).await,
    }
}

fn socket_from_config(config: &Path) -> PathBuf {
    crate::config::load(config, std::env::vars())
        .map(|c| c.api.socket)
        .unwrap_or_else(|_| crate::config::Api::default().socket)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn sample_body(args: &SampleArgs, single: bool) -> anyhow::Result<Value> {
    let mut body = json!({});
    if let Some(modality) = &args.modality {
        body["modality"] = json!(modality);
    }
    if let Some(device) = &args.device {
        body["device_id"] = json!(device);
    }
    let uploads = args
        .sample
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read sample file {}", path.display()))?;
            Ok(json!({ "data": base64::engine::general_purpose::STANDARD.encode(bytes), "name": path.file_name().map(|n| n.to_string_lossy().to_string()) }))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if single {
        match uploads.len() {
            0 => {}
            1 => body["sample"] = uploads.into_iter().next().expect("one"),
            n => bail!("give one --sample for this command ({n} given)"),
        }
    } else if !uploads.is_empty() {
        body["samples"] = json!(uploads);
    }
    Ok(body)
}

async fn devices(client: &Client, out: &Output, action: DeviceAction) -> anyhow::Result<i32> {
    match action {
        DeviceAction::List => {
            let a = client.call(Method::GET, "/devices", None).await?;
            if out.raw(&a) || !a.status.is_success() {
                return if a.status.is_success() {
                    Ok(0)
                } else {
                    out.fail(&a)
                };
            }
            let devices = a.body["devices"].as_array().cloned().unwrap_or_default();
            if devices.is_empty() {
                println!("No devices. Plug a reader in, or configure devices.simulated.");
            }
            println!(
                "{:<20} {:<12} {:<20} {:<18} {:<40} CAPABILITIES",
                "ID", "DRIVER", "KIND", "STATE", "TRANSPORT"
            );
            for d in devices {
                let caps: Vec<&str> = d["capabilities"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .filter(|(_, v)| **v == json!(true))
                            .map(|(k, _)| k.as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                let transport = d["transport"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .filter(|(k, _)| *k != "type")
                            .map(|(k, v)| {
                                format!(
                                    "{k}={}",
                                    v.as_str().map_or_else(|| v.to_string(), str::to_string)
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                println!(
                    "{:<20} {:<12} {:<20} {:<18} {:<40} {}",
                    d["id"].as_str().unwrap_or("?"),
                    d["driver"].as_str().unwrap_or("?"),
                    d["kind"].as_str().unwrap_or("?"),
                    d["state"].as_str().unwrap_or("?"),
                    format!(
                        "{} {}",
                        d["transport"]["type"].as_str().unwrap_or(""),
                        transport
                    ),
                    caps.join(",")
                );
                if let Some(e) = d["last_error"].as_str() {
                    println!("    last error: {e}");
                }
            }
            Ok(0)
        }
        DeviceAction::Test { id } => {
            let a = client
                .call(
                    Method::POST,
                    &format!("/devices/{}/test", urlencode(&id)),
                    None,
                )
                .await?;
            out.simple(&a, |b| {
                let mut text = format!(
                    "{}: captured in {:.0} ms",
                    id,
                    b["capture_ms"].as_f64().unwrap_or(0.0)
                );
                if b["accepted"] == json!(true) {
                    text += &format!(
                        "; quality {:.2} ({} native)",
                        b["quality"]["score"].as_f64().unwrap_or(0.0),
                        b["quality"]["native"]
                    );
                } else if let Some(r) = b["reason"].as_str() {
                    text += &format!("; refused: {r}");
                }
                text
            })
        }
        DeviceAction::Present { id, file } => {
            let a = client
                .call(
                    Method::POST,
                    &format!("/devices/{}/present", urlencode(&id)),
                    Some(&json!({ "file": file })),
                )
                .await?;
            out.simple(&a, |_| {
                format!("{id} will replay {file} at its next capture.")
            })
        }
    }
}

async fn subjects(client: &Client, out: &Output, action: SubjectAction) -> anyhow::Result<i32> {
    match action {
        SubjectAction::List { limit } => {
            let a = client
                .call(Method::GET, &format!("/subjects?limit={limit}"), None)
                .await?;
            out.table(
                &a,
                "subjects",
                &[
                    "external_id",
                    "display_name",
                    "id",
                    "origin_agent",
                    "created_at",
                ],
            )
        }
        SubjectAction::Create { external_id, name } => {
            let a = client
                .call(
                    Method::POST,
                    "/subjects",
                    Some(&json!({ "external_id": external_id, "display_name": name })),
                )
                .await?;
            out.simple(&a, |b| {
                format!(
                    "Subject {} created (id {}).",
                    external_id,
                    b["id"].as_str().unwrap_or("?")
                )
            })
        }
        SubjectAction::Show { subject } => {
            let a = client
                .call(
                    Method::GET,
                    &format!("/subjects/{}", urlencode(&subject)),
                    None,
                )
                .await?;
            out.simple(&a, |b| {
                let mut text = format!(
                    "{} (id {}), enrolled at {}",
                    subject,
                    b["subject"]["id"].as_str().unwrap_or("?"),
                    b["subject"]["origin_agent"].as_str().unwrap_or("?")
                );
                for t in b["templates"].as_array().into_iter().flatten() {
                    text += &format!(
                        "\n  {} template {} quality {:.2} key v{}",
                        t["modality"].as_str().unwrap_or("?"),
                        t["id"].as_str().unwrap_or("?"),
                        t["quality"].as_f64().unwrap_or(0.0),
                        t["key_version"]
                    );
                }
                if let Some(until) = b["locked_until"].as_str() {
                    text += &format!("\n  LOCKED until {until}");
                }
                text
            })
        }
        SubjectAction::Delete { subject } => {
            let a = client
                .call(
                    Method::DELETE,
                    &format!("/subjects/{}", urlencode(&subject)),
                    None,
                )
                .await?;
            out.simple(&a, |_| {
                format!("Subject {subject} deleted; its templates are erased.")
            })
        }
    }
}

async fn enroll(
    client: &Client,
    out: &Output,
    subject: &str,
    samples: &SampleArgs,
    create: bool,
    name: Option<String>,
) -> anyhow::Result<i32> {
    if create {
        let a = client
            .call(
                Method::POST,
                "/subjects",
                Some(&json!({ "external_id": subject, "display_name": name })),
            )
            .await?;
        if a.status != StatusCode::CREATED && a.status != StatusCode::CONFLICT {
            return out.fail(&a);
        }
    }
    let body = sample_body(samples, false)?;
    let mut code = 1;
    let json_mode = out.json;
    client
        .stream(
            &format!("/subjects/{}/enroll", urlencode(subject)),
            &body,
            |line| {
                if json_mode {
                    println!("{line}");
                }
                match line["event"].as_str() {
                    Some("capture") if !json_mode => println!(
                        "[{}/{}] Present the {} now (attempt {})...",
                        line["accepted"].as_u64().unwrap_or(0) + 1,
                        line["needed"],
                        line["modality"].as_str().unwrap_or("biometric"),
                        line["attempt"]
                    ),
                    Some("accepted") if !json_mode => println!(
                        "[{}/{}] Accepted, quality {:.2}.",
                        line["accepted"],
                        line["needed"],
                        line["quality"].as_f64().unwrap_or(0.0)
                    ),
                    Some("retry") if !json_mode => {
                        println!("      Try again: {}", line["reason"].as_str().unwrap_or(""))
                    }
                    Some("done") => {
                        code = 0;
                        if !json_mode {
                            let r = &line["result"];
                            println!(
                                "Enrolled {} ({}): {} templates stored after {} captures.",
                                r["subject"].as_str().unwrap_or(subject),
                                r["modality"].as_str().unwrap_or(""),
                                r["templates"].as_array().map_or(0, Vec::len),
                                r["attempts"]
                            );
                        }
                    }
                    Some("failed") if !json_mode => eprintln!(
                        "Enrollment failed: {}",
                        line["error"]["message"].as_str().unwrap_or("unknown error")
                    ),
                    _ => {}
                }
            },
        )
        .await?;
    Ok(code)
}

async fn keys(client: &Client, out: &Output, action: KeyAction) -> anyhow::Result<i32> {
    match action {
        KeyAction::Rotate => {
            let a = client.call(Method::POST, "/keys/rotate", None).await?;
            out.simple(&a, |b| {
                format!(
                    "Data key version {} active; {} templates re-encrypted in {:.0} ms{}.",
                    b["active_version"],
                    b["resealed"],
                    b["duration_ms"].as_f64().unwrap_or(0.0),
                    if b["finished"] == json!(true) {
                        "; older keys retired"
                    } else {
                        "; SOME TEMPLATES COULD NOT BE RE-ENCRYPTED, older keys kept (see the log)"
                    }
                )
            })
        }
        KeyAction::Init { file } => {
            crate::crypto::create_key_file(&file).with_context(|| {
                format!(
                    "cannot create master key {} (it must not exist yet)",
                    file.display()
                )
            })?;
            println!("Master key written to {} (mode 0600). Back it up offline: without it, templates and backups cannot be read.", file.display());
            Ok(0)
        }
        KeyAction::CreateApiKey {
            name,
            role,
            expires_days,
        } => {
            let a = client
                .call(
                    Method::POST,
                    "/api-keys",
                    Some(&json!({ "name": name, "role": role, "expires_in_days": expires_days })),
                )
                .await?;
            out.simple(&a, |b| {
                format!(
                    "API key {} ({}) created. It is shown only now:\n{}",
                    name,
                    role,
                    b["key"].as_str().unwrap_or("?")
                )
            })
        }
        KeyAction::ListApiKeys => {
            let a = client.call(Method::GET, "/api-keys", None).await?;
            out.table(
                &a,
                "api_keys",
                &[
                    "name",
                    "role",
                    "id",
                    "created_at",
                    "expires_at",
                    "revoked_at",
                    "last_used_at",
                ],
            )
        }
        KeyAction::RevokeApiKey { key } => {
            let a = client
                .call(
                    Method::DELETE,
                    &format!("/api-keys/{}", urlencode(&key)),
                    None,
                )
                .await?;
            out.simple(&a, |_| format!("API key {key} revoked."))
        }
    }
}

/// Printing answers for people (or as JSON).
struct Output {
    json: bool,
}

impl Output {
    /// In JSON mode prints the answer and returns true.
    fn raw(&self, a: &Answer) -> bool {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&a.body).unwrap_or_default()
            );
        }
        self.json
    }

    fn fail(&self, a: &Answer) -> anyhow::Result<i32> {
        eprintln!("Refused ({}): {}", a.status, a.error_message());
        Ok(1)
    }

    fn simple(&self, a: &Answer, text: impl FnOnce(&Value) -> String) -> anyhow::Result<i32> {
        if self.raw(a) {
            return Ok(i32::from(!a.status.is_success()));
        }
        if !a.status.is_success() {
            return self.fail(a);
        }
        println!("{}", text(&a.body));
        Ok(0)
    }

    fn table(&self, a: &Answer, key: &str, columns: &[&str]) -> anyhow::Result<i32> {
        if self.raw(a) {
            return Ok(i32::from(!a.status.is_success()));
        }
        if !a.status.is_success() {
            return self.fail(a);
        }
        let rows = a.body[key].as_array().cloned().unwrap_or_default();
        println!(
            "{}",
            columns
                .iter()
                .map(|c| c.to_uppercase())
                .collect::<Vec<_>>()
                .join("\t")
        );
        for row in rows {
            let cells: Vec<String> = columns
                .iter()
                .map(|c| match &row[*c] {
                    Value::Null => "-".into(),
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.as_f64().map_or_else(
                        || n.to_string(),
                        |f| {
                            if f.fract() == 0.0 {
                                format!("{f:.0}")
                            } else {
                                format!("{f:.3}")
                            }
                        },
                    ),
                    other => other.to_string(),
                })
                .collect();
            println!("{}", cells.join("\t"));
        }
        Ok(0)
    }

    fn health(&self, a: &Answer) {
        if self.raw(a) {
            return;
        }
        println!(
            "Agent {} (site {}), {} profile, status {}",
            a.body["agent"].as_str().unwrap_or("?"),
            a.body["site"].as_str().unwrap_or("?"),
            a.body["profile"].as_str().unwrap_or("?"),
            a.body["status"].as_str().unwrap_or("?")
        );
        for c in a.body["checks"].as_array().into_iter().flatten() {
            println!(
                "  {:<8} {:<9} {}",
                c["status"].as_str().unwrap_or("?"),
                c["name"].as_str().unwrap_or("?"),
                c["detail"].as_str().unwrap_or("")
            );
        }
    }

    fn decision(&self, a: &Answer, what: &str) -> anyhow::Result<i32> {
        if self.raw(a) {
            return Ok(i32::from(!a.status.is_success()));
        }
        if !a.status.is_success() {
            return self.fail(a);
        }
        let b = &a.body;
        let decision = b["decision"].as_str().unwrap_or("?");
        match what {
            "verify" => println!(
                "{}: {} (score {:.3}, threshold {:.3}, quality {:.2}, {:.0} ms){}",
                b["subject"].as_str().unwrap_or("?"),
                decision.to_uppercase(),
                b["score"].as_f64().unwrap_or(0.0),
                b["threshold"].as_f64().unwrap_or(0.0),
                b["quality"]["score"].as_f64().unwrap_or(0.0),
                b["duration_ms"].as_f64().unwrap_or(0.0),
                b["locked_until"]
                    .as_str()
                    .map(|u| format!("; subject LOCKED until {u}"))
                    .unwrap_or_default()
            ),
            _ => println!(
                "{}{} (score {}, threshold {:.3}, {} templates searched, {:.0} ms)",
                decision.to_uppercase(),
                b["subject"]
                    .as_str()
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default(),
                b["score"]
                    .as_f64()
                    .map_or_else(|| "-".into(), |s| format!("{s:.3}")),
                b["threshold"].as_f64().unwrap_or(0.0),
                b["gallery_size"],
                b["duration_ms"].as_f64().unwrap_or(0.0)
            ),
        }
        Ok(i32::from(decision != "accepted" && decision != "matched"))
    }
}
