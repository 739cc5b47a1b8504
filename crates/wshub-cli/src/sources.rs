//! Where `wshub serve`'s settings come from, strongest first: flags,
//! `WSHUB_*` environment variables, the `--config` TOML file, defaults.
//!
//! Nothing here names a particular flag. Each long flag of `serve`, and the
//! global `--log` and `--log-format`, is a setting, found by walking clap's
//! `Command`:
//! - its variable is `WSHUB_` and the long name in upper snake case
//!   (`--max-connections`: `WSHUB_MAX_CONNECTIONS`), set with clap's `env`;
//!   a repeatable flag's variable takes a comma-separated list;
//! - its file key is the long name (`max-connections = 1000`); the file's
//!   values become the flags' defaults, so clap itself applies the
//!   precedence.
//!
//! Values are written as on the command line (`"25s"`, `"64KiB"`; numbers
//! and booleans may be bare) and go through the flag's own parser, so a bad
//! one is reported as the flag's would be, after the file and key or the
//! variable it came from.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use crate::args::Cli;

/// The subcommand whose flags are settings.
const SERVE: &str = "serve";

/// Long names of `serve`'s flags that are about the settings, not settings.
const NOT_SETTINGS: [&str; 4] = ["help", "version", "config", "check-config"];

/// Words in a key whose value `--check-config` does not print.
const SECRET_WORDS: [&str; 3] = ["secret", "password", "token"];

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Default,
    File,
    Env,
    Flag,
}

/// One flag seen as a setting.
#[derive(Debug)]
struct Setting {
    /// The flag's long name, which is also its file key.
    key: String,
    /// Its `WSHUB_*` environment variable.
    env: String,
    /// A flag of `wshub` itself (`--log`), not of `serve`.
    global: bool,
    /// The flag as clap built it: its id, parser, action and value names.
    arg: Arg,
    /// The values in effect, as typed; empty when it has none.
    values: Vec<String>,
    /// `None` when the setting has no value (`--workers` left out).
    origin: Option<Origin>,
}

impl Setting {
    /// A repeatable flag: a TOML array in the file.
    fn repeatable(&self) -> bool {
        matches!(self.arg.get_action(), ArgAction::Append)
    }

    /// A flag without a value: `true` or `false` in the file.
    fn switch(&self) -> bool {
        !self.arg.get_action().takes_values()
    }
}

/// The command line's settings, each with where its value came from.
#[derive(Debug)]
pub(crate) struct Sources {
    /// The `--config` file, if any.
    file: Option<PathBuf>,
    settings: Vec<Setting>,
}

/// Parses the command line `argv` with the environment and the `--config`
/// file under it.
///
/// # Errors
/// A [`clap::Error`] for what clap refuses (and for `--help`, which the
/// caller shows with [`clap::Error::exit`]); otherwise one line for each
/// unknown key or bad value in the file or the environment, naming where
/// it is.
pub(crate) fn parse(argv: Vec<OsString>) -> Result<(Cli, Sources)> {
    let mut settings = settings();
    let file = config_path(&argv);
    let from_file = match &file {
        Some(path) => read_file(path, &settings)?,
        None => BTreeMap::new(),
    };
    check_env(&settings)?;

    let mut command = Cli::command();
    for setting in &settings {
        let id = setting.arg.get_id().clone();
        let layer = |arg: Arg| layered(arg, setting, from_file.get(&setting.key));
        command = if setting.global {
            command.mut_arg(id, layer)
        } else {
            command.mut_subcommand(SERVE, |serve| serve.mut_arg(id, layer))
        };
    }
    command = config_from_env(command);
    let matches = command.try_get_matches_from_mut(argv)?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
    if let Some(serve) = matches.subcommand_matches(SERVE) {
        for setting in &mut settings {
            let matches = if setting.global { &matches } else { serve };
            record(setting, matches, from_file.contains_key(&setting.key));
        }
    }
    Ok((cli, Sources { file, settings }))
}

/// Every setting, in the order `serve --help` lists them.
fn settings() -> Vec<Setting> {
    let mut cli = Cli::command();
    cli.build();
    let serve = cli
        .find_subcommand(SERVE)
        .expect("wshub has a serve subcommand");
    let globals = cli
        .get_arguments()
        .filter(|arg| arg.is_global_set())
        .map(|arg| (true, arg));
    // Global flags are copied into subcommands when built; they are taken once, above.
    let own = serve
        .get_arguments()
        .filter(|arg| !arg.is_global_set())
        .map(|arg| (false, arg));
    globals
        .chain(own)
        .filter_map(|(global, arg)| {
            let key = arg.get_long()?;
            (!NOT_SETTINGS.contains(&key)).then(|| Setting {
                key: key.to_owned(),
                env: env_name(key),
                global,
                arg: boolish(arg.clone()),
                values: Vec::new(),
                origin: None,
            })
        })
        .collect()
}

/// `arg`, taking a switch's value (from a variable or the file) as `true`,
/// `false`, `1`, `0`, `yes`, `no`, `on` or `off`, as environment variables
/// usually are written (`WSHUB_NO_ECHO=1`).
fn boolish(arg: Arg) -> Arg {
    if arg.get_action().takes_values() {
        arg
    } else {
        arg.value_parser(clap::builder::BoolishValueParser::new())
    }
}

/// `WSHUB_MAX_CONNECTIONS` for `max-connections`.
fn env_name(key: &str) -> String {
    format!("WSHUB_{}", key.to_ascii_uppercase().replace('-', "_"))
}

/// The `--config` file named by the command line or `WSHUB_CONFIG`, read
/// leniently: a command line clap refuses is refused again, with its real
/// error, when parsed with the file.
fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let matches = config_from_env(Cli::command())
        .ignore_errors(true)
        .try_get_matches_from(argv)
        .ok()?;
    matches
        .subcommand_matches(SERVE)?
        .get_one::<PathBuf>("config")
        .cloned()
}

/// `command` with `serve --config` also read from `WSHUB_CONFIG`.
fn config_from_env(command: clap::Command) -> clap::Command {
    command.mut_subcommand(SERVE, |serve| {
        serve.mut_arg("config", |arg| {
            arg.env(env_name("config")).hide_env_values(true)
        })
    })
}

/// `arg` with its environment variable, and with the file's values, if
/// any, as its default: clap then takes a flag over the variable over the
/// file.
fn layered(arg: Arg, setting: &Setting, from_file: Option<&Vec<String>>) -> Arg {
    // A secret's value must not show in --help.
    let mut arg = boolish(arg).env(setting.env.clone()).hide_env_values(true);
    if setting.repeatable() {
        arg = arg.value_delimiter(',');
    }
    if let Some(values) = from_file {
        arg = arg.default_values(values.clone());
    }
    arg
}

/// Notes the values in effect for `setting` and where they came from.
fn record(setting: &mut Setting, matches: &ArgMatches, in_file: bool) {
    let id = setting.arg.get_id().as_str();
    setting.values = matches
        .get_raw(id)
        .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    setting.origin = matches.value_source(id).map(|source| match source {
        ValueSource::CommandLine => Origin::Flag,
        ValueSource::EnvVariable => Origin::Env,
        _ if in_file => Origin::File,
        _ => Origin::Default,
    });
}

/// The file's values by key, each checked by its flag's parser.
///
/// # Errors
/// If the file cannot be read or is not TOML; otherwise one line for each
/// unknown key (with the closest known one) and each bad value.
fn read_file(path: &Path, settings: &[Setting]) -> Result<BTreeMap<String, Vec<String>>> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--config {shown}: cannot read it"))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| anyhow!("--config {shown}: not valid TOML: {e}"))?;
    let mut values = BTreeMap::new();
    let mut errors = Vec::new();
    for (key, value) in table {
        let Some(setting) = settings.iter().find(|s| s.key == key) else {
            errors.push(format!("{shown}: {}", unknown_key(&key, settings)));
            continue;
        };
        let checked = file_values(setting, &value).and_then(|typed| {
            for one in &typed {
                check_value(&setting.arg, one)?;
            }
            Ok(typed)
        });
        match checked {
            Ok(typed) => {
                values.insert(key, typed);
            }
            Err(e) => errors.push(format!("{shown}, key {key}: {e}")),
        }
    }
    if !errors.is_empty() {
        bail!(errors.join("\n"));
    }
    Ok(values)
}

/// `unknown key "max_conections"; did you mean max-connections?`
fn unknown_key(key: &str, settings: &[Setting]) -> String {
    // clap's own threshold for "did you mean".
    const SIMILAR: f64 = 0.7;
    let wanted = key.replace('_', "-");
    let closest = settings
        .iter()
        .map(|s| (strsim::jaro(&wanted, &s.key), &s.key))
        .filter(|(similarity, _)| *similarity > SIMILAR)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((_, known)) => format!("unknown key {key:?}; did you mean {known}?"),
        None => format!(
            "unknown key {key:?}; the keys are the long names of the flags of `wshub serve --help`"
        ),
    }
}

/// A file value as command-line values: an array for a repeatable flag, one
/// string, number or boolean otherwise.
fn file_values(setting: &Setting, value: &toml::Value) -> Result<Vec<String>, String> {
    match value {
        toml::Value::Array(items) if setting.repeatable() => items.iter().map(scalar).collect(),
        toml::Value::Array(_) => Err("takes one value, not an array".to_owned()),
        one => scalar(one).map(|v| vec![v]),
    }
}

fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(format!(
            "expected a string, number or boolean as on the command line, found {}",
            value.type_str()
        )),
    }
}

/// Checks each set `WSHUB_*` variable with its flag's parser.
fn check_env(settings: &[Setting]) -> Result<()> {
    let mut errors = Vec::new();
    for setting in settings {
        let Some(value) = std::env::var_os(&setting.env) else {
            continue;
        };
        let Some(value) = value.to_str() else {
            errors.push(format!(
                "environment variable {}: not valid UTF-8",
                setting.env
            ));
            continue;
        };
        let values: Vec<&str> = if setting.repeatable() {
            value.split(',').collect()
        } else {
            vec![value]
        };
        for one in values {
            if let Err(e) = check_value(&setting.arg, one) {
                errors.push(format!("environment variable {}: {e}", setting.env));
            }
        }
    }
    if !errors.is_empty() {
        bail!(errors.join("\n"));
    }
    Ok(())
}

/// Parses `value` as `--flag=value` with `arg`'s own parser and value
/// names, so an error reads as it would on the command line.
fn check_value(arg: &Arg, value: &str) -> Result<(), String> {
    let long = arg.get_long().expect("settings have long names");
    let mut probe = Arg::new("value")
        .long(long.to_owned())
        .action(ArgAction::Set)
        .value_parser(arg.get_value_parser().clone());
    probe = match arg.get_value_names() {
        Some(names) => probe.value_names(names.iter().cloned()),
        None => probe.value_name("true|false"),
    };
    clap::Command::new("wshub")
        .no_binary_name(true)
        .arg(probe)
        .try_get_matches_from([format!("--{long}={value}")])
        .map(drop)
        .map_err(|e| {
            // clap's first paragraph: "error: invalid value … [possible values: …]".
            let text = e.to_string();
            let first = text.split("\n\n").next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            first.split_whitespace().collect::<Vec<_>>().join(" ")
        })
}

impl Sources {
    /// `error`, after the file and key or the variable that set the flag it
    /// starts with (`--send-queue must be at least 1 frame`). A flag typed on
    /// the command line needs no more.
    pub(crate) fn attribute(&self, error: anyhow::Error) -> anyhow::Error {
        let named = error.chain().find_map(|cause| {
            let message = cause.to_string();
            let flag = message.strip_prefix("--")?;
            let end = flag
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(flag.len());
            self.settings.iter().find(|s| s.key == flag[..end])
        });
        let Some(setting) = named else {
            return error;
        };
        match (setting.origin, &self.file) {
            (Some(Origin::File), Some(file)) => {
                error.context(format!("{}, key {}", file.display(), setting.key))
            }
            (Some(Origin::Env), _) => {
                error.context(format!("environment variable {}", setting.env))
            }
            _ => error,
        }
    }

    /// The settings in effect as a TOML file would set them, each with
    /// where it came from in a comment, after a one-line summary.
    pub(crate) fn effective(&self) -> String {
        let count = |origin| {
            let n = self.settings.iter().filter(|s| s.origin == Some(origin));
            n.count()
        };
        let file = match &self.file {
            Some(path) => format!("{} from {}", count(Origin::File), path.display()),
            None => "no --config file".to_owned(),
        };
        let mut out = format!(
            "# wshub serve: the settings are valid ({file}, {} from the environment, {} from flags)\n",
            count(Origin::Env),
            count(Origin::Flag),
        );
        for setting in &self.settings {
            let key = &setting.key;
            let origin = match setting.origin {
                // A repeatable flag left out is an empty list.
                None if setting.repeatable() => "default".to_owned(),
                None => {
                    let _ = writeln!(out, "# {key} is not set");
                    continue;
                }
                Some(Origin::Default) => "default".to_owned(),
                Some(Origin::File) => self
                    .file
                    .as_deref()
                    .unwrap_or(Path::new(""))
                    .display()
                    .to_string(),
                Some(Origin::Env) => setting.env.clone(),
                Some(Origin::Flag) => format!("--{key}"),
            };
            if SECRET_WORDS.iter().any(|word| key.contains(word)) {
                let _ = writeln!(out, "# {key} is set (hidden)  # {origin}");
                continue;
            }
            let _ = writeln!(out, "{key} = {}  # {origin}", toml_value(setting));
        }
        out
    }
}

/// A setting's value as TOML: bare numbers and booleans, quoted strings,
/// an array for a repeatable flag.
fn toml_value(setting: &Setting) -> toml::Value {
    let one = |value: &String| {
        if let Ok(b) = value.parse::<bool>() {
            if setting.switch() {
                return toml::Value::Boolean(b);
            }
        }
        match value.parse::<i64>() {
            Ok(n) => toml::Value::Integer(n),
            Err(_) => toml::Value::String(value.clone()),
        }
    };
    match setting.values.as_slice() {
        values if setting.repeatable() => toml::Value::Array(values.iter().map(one).collect()),
        [value, ..] => one(value),
        [] => toml::Value::Array(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(key: &str) -> Setting {
        settings()
            .into_iter()
            .find(|s| s.key == key)
            .unwrap_or_else(|| panic!("no setting {key}"))
    }

    #[test]
    fn every_long_serve_flag_is_a_setting_named_after_it() {
        let keys: Vec<String> = settings().into_iter().map(|s| s.key).collect();
        for key in [
            "log",
            "log-format",
            "listen",
            "trusted-proxy",
            "compression",
        ] {
            assert!(keys.contains(&key.to_owned()), "{key} missing: {keys:?}");
        }
        for not_a_setting in NOT_SETTINGS {
            assert!(!keys.contains(&not_a_setting.to_owned()), "{not_a_setting}");
        }
        let max = setting("max-connections-per-ip");
        assert_eq!(max.env, "WSHUB_MAX_CONNECTIONS_PER_IP");
        assert!(!max.global && !max.repeatable() && !max.switch());
        assert!(setting("trusted-proxy").repeatable());
        assert!(setting("no-echo").switch());
        assert!(setting("log-format").global);
    }

    #[test]
    fn a_value_is_refused_in_the_words_clap_uses_for_the_flag() {
        let from_flag = Cli::command()
            .try_get_matches_from(["wshub", "serve", "--send-queue", "many"])
            .unwrap_err()
            .to_string();
        let checked = check_value(&setting("send-queue").arg, "many").unwrap_err();
        assert!(
            from_flag.starts_with(&format!("error: {checked}")),
            "{from_flag} / {checked}"
        );
        assert!(check_value(&setting("send-queue").arg, "64").is_ok());
        assert!(check_value(&setting("no-echo").arg, "true").is_ok());
        let err = check_value(&setting("runtime").arg, "fast").unwrap_err();
        assert!(
            err.contains("possible values: multi-thread, current-thread"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_key_is_answered_with_the_closest_known_one() {
        let settings = settings();
        let err = unknown_key("max_conections", &settings);
        assert!(err.contains("did you mean max-connections?"), "{err}");
        let err = unknown_key("colour", &settings);
        assert!(err.contains("wshub serve --help"), "{err}");
    }

    #[test]
    fn file_values_are_typed_as_on_the_command_line() {
        let value = |text: &str| text.parse::<toml::Table>().unwrap()["k"].clone();
        let proxies = setting("trusted-proxy");
        assert_eq!(
            file_values(&proxies, &value(r#"k = ["10.0.0.0/8", "::1"]"#)),
            Ok(vec!["10.0.0.0/8".to_owned(), "::1".to_owned()])
        );
        let send_queue = setting("send-queue");
        assert_eq!(
            file_values(&send_queue, &value("k = 64")),
            Ok(vec!["64".to_owned()])
        );
        assert!(file_values(&send_queue, &value("k = [64]")).is_err());
        assert!(file_values(&send_queue, &value("k = { a = 1 }")).is_err());
        assert_eq!(
            file_values(&setting("no-echo"), &value("k = true")),
            Ok(vec!["true".to_owned()])
        );
    }
}
