//! `wshub serve`'s settings from a `--config` TOML file, `WSHUB_*`
//! variables and flags, `--check-config` and `--log-format json`, run as the
//! real binary. Each run starts from an environment without `WSHUB_*`
//! variables or `RUST_LOG`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// `wshub ARGS`, with `env` as its only `WSHUB_*` variables.
fn wshub(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wshub"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WSHUB_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command.args(args).envs(env.iter().copied());
    command.stdin(Stdio::null());
    command
}

/// `wshub ARGS` run to its end.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    wshub(args, env).output().expect("wshub runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A config file with `text`, in the temporary directory, named after
/// `test`; removed when dropped.
fn config_file(test: &str, text: &str) -> tempfile::TempPath {
    let file = tempfile::Builder::new()
        .prefix(&format!("wshub-{test}-"))
        .suffix(".toml")
        .tempfile()
        .unwrap();
    std::fs::write(file.path(), text).unwrap();
    file.into_temp_path()
}

/// `--check-config`'s output when valid: the settings as TOML, and each
/// key's origin (the comment after its value).
fn check(args: &[&str], env: &[(&str, &str)]) -> (toml::Table, Vec<(String, String)>) {
    let mut argv = vec!["serve", "--check-config"];
    argv.extend_from_slice(args);
    let out = run(&argv, env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("# wshub serve: the settings are valid"),
        "{text}"
    );
    let origins = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, rest) = line.split_once(" = ")?;
            let (_, origin) = rest.rsplit_once("  # ")?;
            Some((key.to_owned(), origin.to_owned()))
        })
        .collect();
    (text.parse().expect("--check-config prints TOML"), origins)
}

fn origin<'a>(origins: &'a [(String, String)], key: &str) -> &'a str {
    let found = origins.iter().find(|(k, _)| k == key);
    &found
        .unwrap_or_else(|| panic!("{key} not in {origins:?}"))
        .1
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wshub.example.toml")
}

#[test]
fn file_values_take_effect_and_say_where_they_came_from() {
    let file = config_file(
        "file",
        r#"
send-queue = 64
max-message-size = "1MiB"
ping-interval = "1m 30s"
trusted-proxy = ["10.0.0.0/8", "fd00::/8"]
no-echo = true
log-format = "json"
"#,
    );
    let (settings, origins) = check(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(settings["send-queue"].as_integer(), Some(64));
    assert_eq!(settings["max-message-size"].as_str(), Some("1MiB"));
    assert_eq!(settings["ping-interval"].as_str(), Some("1m 30s"));
    let proxies = settings["trusted-proxy"].as_array().unwrap();
    assert_eq!(proxies.len(), 2);
    assert_eq!(settings["no-echo"].as_bool(), Some(true));
    assert_eq!(settings["log-format"].as_str(), Some("json"));
    assert_eq!(origin(&origins, "send-queue"), file.to_str().unwrap());
    assert_eq!(origin(&origins, "send-queue-bytes"), "default");
}

#[test]
fn flags_beat_variables_beat_the_file_beats_the_defaults() {
    let file = config_file(
        "precedence",
        "message-rate = 5\nmessage-burst = 7\npresence-limit = 9\n",
    );
    // The file named by WSHUB_CONFIG rather than --config.
    let env = [
        ("WSHUB_CONFIG", file.to_str().unwrap()),
        ("WSHUB_MESSAGE_BURST", "8"),
        ("WSHUB_PRESENCE_LIMIT", "10"),
        ("WSHUB_TRUSTED_PROXY", "10.0.0.1,fd00::/8"),
    ];
    let (settings, origins) = check(&["--presence-limit", "11"], &env);
    for (key, value, from) in [
        ("message-timeout", toml::Value::from("1m"), "default"),
        ("message-rate", 5.into(), file.to_str().unwrap()),
        ("message-burst", 8.into(), "WSHUB_MESSAGE_BURST"),
        ("presence-limit", 11.into(), "--presence-limit"),
        (
            "trusted-proxy",
            toml::Value::Array(vec!["10.0.0.1".into(), "fd00::/8".into()]),
            "WSHUB_TRUSTED_PROXY",
        ),
    ] {
        assert_eq!(settings[key], value, "{key}");
        assert_eq!(origin(&origins, key), from, "{key}");
    }
}

#[test]
fn the_history_settings_come_from_the_file_variables_and_flags_and_bad_ones_are_named() {
    let file = config_file(
        "history",
        "history-size = 50\nhistory-ttl = \"30s\"\nhistory-max-replay = 20\n",
    );
    let path = file.to_str().unwrap();
    let (settings, origins) = check(
        &["--config", path, "--history-max-replay", "10"],
        &[("WSHUB_HISTORY_TTL", "2m")],
    );
    for (key, value, from) in [
        ("history-size", toml::Value::from(50), path),
        ("history-ttl", "2m".into(), "WSHUB_HISTORY_TTL"),
        ("history-max-replay", 10.into(), "--history-max-replay"),
    ] {
        assert_eq!(settings[key], value, "{key}");
        assert_eq!(origin(&origins, key), from, "{key}");
    }
    // 0 turns history off; it is not an error.
    let (settings, _) = check(&["--history-size", "0", "--history-ttl", "0s"], &[]);
    assert_eq!(settings["history-size"].as_integer(), Some(0));

    for (args, env, expected) in [
        (
            &["--history-ttl", "400d"][..],
            &[][..],
            "--history-ttl must be at most 365d",
        ),
        (
            &[],
            &[("WSHUB_HISTORY_TTL", "1000d")][..],
            "environment variable WSHUB_HISTORY_TTL: --history-ttl must be at most 365d",
        ),
        (
            &["--history-size", "lots"],
            &[],
            "invalid value 'lots' for '--history-size <MESSAGES>'",
        ),
        (
            &[],
            &[("WSHUB_HISTORY_MAX_REPLAY", "-1")],
            "environment variable WSHUB_HISTORY_MAX_REPLAY: invalid value '-1' for '--history-max-replay <MESSAGES>'",
        ),
        (
            &["--history-ttl", "soon"],
            &[],
            "invalid value 'soon' for '--history-ttl <DURATION>'",
        ),
    ] {
        let mut argv = vec!["serve", "--check-config"];
        argv.extend_from_slice(args);
        let out = run(&argv, env);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
        let err = stderr(&out);
        assert!(err.contains(expected), "{expected:?} not in {err}");
    }
    let file = config_file("bad-history", "history-size = -3\n");
    let out = run(
        &[
            "serve",
            "--check-config",
            "--config",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("key history-size"), "{err}");
}

#[test]
fn an_unknown_key_is_refused_with_the_file_and_the_closest_key() {
    let file = config_file("unknown", "max_conections = 10\nlisten = \"127.0.0.1:0\"\n");
    let out = run(
        &[
            "serve",
            "--check-config",
            "--config",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for needed in [
        file.to_str().unwrap(),
        "unknown key \"max_conections\"",
        "did you mean max-connections?",
    ] {
        assert!(err.contains(needed), "{needed:?} not in {err}");
    }
}

#[test]
fn a_bad_value_in_the_file_names_the_file_the_key_and_the_fix() {
    let file = config_file("bad-value", "max-message-size = \"0\"\n");
    let path = file.to_str().unwrap();
    let out = run(&["serve", "--check-config", "--config", path], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let expected =
        format!("{path}, key max-message-size: --max-message-size must be at least 1 byte");
    assert!(err.contains(&expected), "{expected:?} not in {err}");

    // A value the flag's parser refuses reads as the flag's own error.
    let file = config_file("unparsable", "ping-interval = \"soon\"\n");
    let path = file.to_str().unwrap();
    let out = run(&["serve", "--check-config", "--config", path], &[]);
    assert_eq!(out.status.code(), Some(2));
    let from_file = stderr(&out);
    let from_flag = stderr(&run(&["serve", "--ping-interval", "soon"], &[]));
    let flag_error = from_flag
        .lines()
        .next()
        .unwrap()
        .strip_prefix("error: ")
        .unwrap();
    assert!(
        flag_error.starts_with("invalid value 'soon' for '--ping-interval <DURATION>'"),
        "{from_flag}"
    );
    assert_eq!(
        from_file.trim_end(),
        format!("error: {path}, key ping-interval: {flag_error}")
    );
}

#[test]
fn an_api_key_file_is_read_at_start_and_a_weak_key_is_refused_with_the_rule() {
    let short = config_file("short-key", "0123456789\n");
    let out = run(
        &[
            "serve",
            "--check-config",
            "--api-key-file",
            short.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let expected = format!(
        "--api-key-file {}: an API key needs at least 16 bytes",
        short.display()
    );
    assert!(err.contains(&expected), "{expected:?} not in {err}");

    let missing = run(
        &[
            "serve",
            "--check-config",
            "--api-key-file",
            "/nonexistent/api.key",
        ],
        &[],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("--api-key-file /nonexistent/api.key: cannot read it"));

    let good = config_file("good-key", "0123456789abcdef0123456789abcdef\n");
    let path = good.to_str().unwrap();
    let (settings, _) = check(&[], &[("WSHUB_API_KEY_FILE", path)]);
    assert_eq!(settings["api-key-file"].as_str(), Some(path));
}

#[test]
fn a_bad_variable_is_named() {
    let out = run(&["serve", "--check-config"], &[("WSHUB_SEND_QUEUE", "0")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let expected = "environment variable WSHUB_SEND_QUEUE: --send-queue must be at least 1 frame";
    assert!(err.contains(expected), "{err}");
    let out = run(&["serve", "--check-config"], &[("WSHUB_RUNTIME", "fast")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(
            "environment variable WSHUB_RUNTIME: invalid value 'fast' for '--runtime <RUNTIME>'"
        ),
        "{err}"
    );
}

/// Switches take 1/0, yes/no, on/off as well as true/false, as variables
/// are usually written (the test scripts' own WSHUB_COMPRESSION=1 once
/// stopped the hub they started).
#[test]
fn a_switch_variable_takes_1_and_0() {
    for value in ["1", "yes", "0", "off"] {
        let out = run(&["serve", "--check-config"], &[("WSHUB_NO_ECHO", value)]);
        assert_eq!(out.status.code(), Some(0), "{value}: {}", stderr(&out));
        let shown = stdout(&out);
        assert!(
            shown.lines().any(|l| l.starts_with("no-echo = ")
                && l.contains(value)
                && l.ends_with("# WSHUB_NO_ECHO")),
            "WSHUB_NO_ECHO={value}:\n{shown}"
        );
    }
    let out = run(&["serve", "--check-config"], &[("WSHUB_NO_ECHO", "maybe")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn check_config_binds_no_port() {
    // The port is taken: serving would fail to listen, checking does not try.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["serve", "--check-config", "--listen", &addr], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stdout(&out).contains("listening on"), "{}", stdout(&out));
    let served = run(&["serve", "--listen", &addr], &[]);
    assert_eq!(served.status.code(), Some(1), "{}", stderr(&served));
    assert!(stderr(&served).contains("cannot listen on"));
}

#[test]
fn the_example_lists_every_setting_at_its_default_and_passes_the_check() {
    let text = std::fs::read_to_string(example()).unwrap();
    let (defaults, origins) = check(&[], &[]);
    let out = run(&["serve", "--check-config"], &[]);
    let unset = stdout(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("# ")?.strip_suffix(" is not set"))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let keys = origins.iter().map(|(key, _)| key).chain(&unset);
    let listed = |key: &str| {
        text.lines()
            .any(|l| l.starts_with(&format!("{key} = ")) || l.starts_with(&format!("# {key} = ")))
    };
    let missing: Vec<_> = keys.filter(|key| !listed(key)).collect();
    assert!(
        missing.is_empty(),
        "wshub.example.toml lacks {missing:?}: add each with its default and a comment"
    );
    let (from_example, _) = check(&["--config", example().to_str().unwrap()], &[]);
    assert_eq!(
        from_example, defaults,
        "the example's values are the defaults"
    );
}

/// A `wshub serve` started with `args`, killed when dropped, with its
/// address and its stderr lines as they arrive.
struct Server {
    child: Child,
    addr: String,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = wshub(args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wshub runs");
        let (tx, stderr) = mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first
            .trim_end()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("no listening line: {first:?}"))
            .to_owned();
        Self {
            child,
            addr,
            stderr,
        }
    }

    /// The status line of the answer to `GET path`.
    fn get(&self, path: &str) -> String {
        let mut tcp = TcpStream::connect(&self.addr).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        write!(tcp, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = tcp.read_to_string(&mut answer);
        answer.lines().next().unwrap_or_default().to_owned()
    }

    /// stderr lines up to and including the first containing `needle`.
    fn log_until(&self, needle: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self
                .stderr
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("no {needle:?} in {lines:#?}"));
            let done = line.contains(needle);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_server_started_with_a_file_serves_by_it_and_logs_json_lines() {
    let file = config_file(
        "server",
        "listen = \"127.0.0.1:0\"\nno-echo = true\nmax-connections-per-ip = 7\n",
    );
    let server = Server::start(
        &[
            "--log-format",
            "json",
            "serve",
            "--config",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(server.get("/healthz"), "HTTP/1.1 200 OK");
    assert!(server.get("/echo").starts_with("HTTP/1.1 404"));
    let lines = server.log_until("wshub hub ready");
    let mut limits = None;
    for line in &lines {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(object["level"], "INFO", "{line}");
        assert!(
            object["target"].as_str().unwrap().starts_with("wshub"),
            "{line}"
        );
        assert!(object["fields"]["message"].is_string(), "{line}");
        if object["fields"]["message"] == "connection limits" {
            limits = Some(object);
        }
    }
    let limits = limits.expect("a connection limits line");
    assert_eq!(limits["fields"]["max_connections_per_ip"], 7);
}
