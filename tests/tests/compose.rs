//! Static checks of the docker-compose stack (`docker-compose.yml`, `Dockerfile`,
//! `.dockerignore`, `deploy/`), in the normal test suite and without Docker: the images cannot
//! be pulled everywhere the tests run, so what can be checked without running them is checked
//! here, against the real binaries and the real code.
//!
//! * The services started from the Orderflow image run real subcommands (`<cmd> --help` exits
//!   0 on this checkout's debug binaries), and every `ORDERFLOW_*`, `DATABASE_URL`,
//!   `TEMPORAL_*` and `STRIPE_*` variable they set is one those binaries read.
//! * No service switches the sandbox payment gateway on (a development tool).
//! * Every long-running service has a healthcheck and a restart policy; one-shots do not
//!   restart.
//! * The setup service registers every search attribute in
//!   `orderflow_workflows::search_attributes::REGISTRATION`, with its type.
//! * Prometheus scrapes the worker and the shim on the ports they are configured to serve.
//! * The Dockerfile builds and installs every `[[bin]]` of the worker and starter crates.

use orderflow_tests::workspace_root;
use orderflow_workflows::search_attributes::REGISTRATION;
use serde_norway::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Temporal's own client configuration variables, read by the SDK's envconfig rather than by
/// clap, so they are not in `--help`.
const TEMPORAL_ENVCONFIG: &[&str] = &["TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY"];

/// Variables read with `std::env::var` outside clap, by file; a name counts only while the
/// file really reads it.
const READ_OUTSIDE_CLAP: &[(&str, &str)] = &[(
    "worker/src/telemetry.rs",
    include_str!("../../worker/src/telemetry.rs"),
)];

fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compose() -> &'static Value {
    static COMPOSE: OnceLock<Value> = OnceLock::new();
    COMPOSE.get_or_init(|| {
        let mut value: Value = serde_norway::from_str(&read("docker-compose.yml"))
            .unwrap_or_else(|e| panic!("docker-compose.yml is not valid YAML: {e}"));
        // `<<: *anchor` merge keys, as docker compose applies them.
        value
            .apply_merge()
            .unwrap_or_else(|e| panic!("docker-compose.yml merge keys: {e}"));
        value
    })
}

fn services() -> &'static Mapping {
    compose()
        .get("services")
        .and_then(Value::as_mapping)
        .expect("docker-compose.yml has a services mapping")
}

fn service(name: &str) -> &'static Value {
    services()
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name:?}"))
}

fn service_names() -> Vec<String> {
    services()
        .keys()
        .map(|k| k.as_str().expect("service names are strings").to_owned())
        .collect()
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A service's `environment`, in either compose form. `None`: the name is listed without a
/// value (passed through from where compose runs, unset otherwise).
fn environment(svc: &Value) -> BTreeMap<String, Option<String>> {
    match svc.get("environment") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Mapping(map)) => map
            .iter()
            .map(|(k, v)| {
                let name = k.as_str().expect("variable names are strings").to_owned();
                (name, scalar(v))
            })
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| {
                let item = item.as_str().expect("environment entries are strings");
                match item.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (item.to_owned(), None),
                }
            })
            .collect(),
        Some(other) => panic!("unexpected environment {other:?}"),
    }
}

/// `command` / `entrypoint` as words, in either compose form.
fn words(value: Option<&Value>) -> Vec<String> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|w| scalar(w).expect("command words are scalars"))
            .collect(),
        Some(other) => panic!("unexpected command {other:?}"),
    }
}

/// Services run from the image the Dockerfile builds.
fn orderflow_services() -> Vec<String> {
    service_names()
        .into_iter()
        .filter(|name| service(name).get("build").is_some())
        .collect()
}

/// Services some other service waits for to exit 0.
fn one_shots() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for name in service_names() {
        if let Some(Value::Mapping(deps)) = service(&name).get("depends_on") {
            for (dep, how) in deps {
                if how.get("condition").and_then(Value::as_str)
                    == Some("service_completed_successfully")
                {
                    found.insert(dep.as_str().expect("service name").to_owned());
                }
            }
        }
    }
    found
}

fn port_of(address: &str) -> &str {
    address
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{address:?} has no port"))
        .1
}

fn bin_dir() -> &'static PathBuf {
    orderflow_tests::debug_binaries()
}

/// `<command...> --help` on the debug binaries: it must exit 0; returns what it printed.
fn help_of(command: &[String]) -> String {
    let (program, args) = command.split_first().expect("a command");
    assert!(
        program == "orderflow" || program == "orderflow-worker",
        "{program:?} is not a binary of the Orderflow image"
    );
    let path = bin_dir().join(program);
    let out = Command::new(&path)
        .args(args)
        .arg("--help")
        // Help text must not depend on who runs the test.
        .env_clear()
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "`{} --help` exited {}: {}",
        command.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// Names in clap's `[env: NAME=value]` / `[env: NAME]` annotations.
fn env_names_in_help(help: &str) -> BTreeSet<String> {
    help.split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

fn read_outside_clap() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (_, source) in READ_OUTSIDE_CLAP {
        for rest in source.split("env::var(\"").skip(1) {
            if let Some((name, _)) = rest.split_once('"') {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

fn is_checked_variable(name: &str) -> bool {
    name == "DATABASE_URL"
        || name.starts_with("ORDERFLOW_")
        || name.starts_with("TEMPORAL_")
        || name.starts_with("STRIPE_")
}

fn is_temporal_envconfig(name: &str) -> bool {
    TEMPORAL_ENVCONFIG.contains(&name) || name.starts_with("TEMPORAL_TLS")
}

#[test]
fn worker_and_shim_run_real_subcommands() {
    assert_eq!(
        words(service("worker").get("command")),
        ["orderflow-worker"]
    );
    assert_eq!(
        words(service("shim").get("command")),
        ["orderflow", "serve"]
    );
    let services = orderflow_services();
    assert!(
        services.contains(&"worker".to_owned()) && services.contains(&"shim".to_owned()),
        "worker and shim must be built from the Dockerfile: {services:?}"
    );
    for name in services {
        let svc = service(&name);
        assert!(
            svc.get("entrypoint").is_none(),
            "{name}: the image's binaries are run through `command`"
        );
        let command = words(svc.get("command"));
        assert!(!command.is_empty(), "{name} has no command");
        help_of(&command);
    }
}

#[test]
fn every_variable_set_on_orderflow_services_is_read_by_the_binaries() {
    let outside_clap = read_outside_clap();
    assert!(
        outside_clap.contains("ORDERFLOW_LOG_FORMAT"),
        "telemetry.rs no longer reads ORDERFLOW_LOG_FORMAT: {outside_clap:?}"
    );
    let mut unknown = Vec::new();
    for name in orderflow_services() {
        let svc = service(&name);
        let command = words(svc.get("command"));
        let accepted = env_names_in_help(&help_of(&command));
        assert!(
            accepted.contains("DATABASE_URL"),
            "{name}: `{} --help` shows no [env: ...] annotations:\n{accepted:?}",
            command.join(" ")
        );
        for var in environment(svc).keys() {
            if is_checked_variable(var)
                && !accepted.contains(var)
                && !is_temporal_envconfig(var)
                && !outside_clap.contains(var)
            {
                unknown.push(format!(
                    "{name}: {var} (not in `{} --help`)",
                    command.join(" ")
                ));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "variables the binaries do not read (a typo, or a flag that is gone):\n  {}",
        unknown.join("\n  ")
    );
}

#[test]
fn worker_and_shim_get_the_settings_the_stack_needs() {
    for name in ["worker", "shim"] {
        let env = environment(service(name));
        let get = |var: &str| {
            env.get(var)
                .cloned()
                .flatten()
                .unwrap_or_else(|| panic!("{name}: {var} is not set"))
        };
        assert_eq!(get("TEMPORAL_ADDRESS"), "temporal:7233", "{name}");
        assert_eq!(get("TEMPORAL_NAMESPACE"), "default", "{name}");
        assert!(
            get("DATABASE_URL").starts_with("postgres://orderflow:")
                && get("DATABASE_URL").ends_with("@orders-db:5432/orderflow"),
            "{name}: DATABASE_URL must be the orders-db service"
        );
        assert!(
            get("ORDERFLOW_PUBLIC_URL").contains("http://localhost:8080"),
            "{name}: ORDERFLOW_PUBLIC_URL"
        );
        let deps = service(name)
            .get("depends_on")
            .and_then(Value::as_mapping)
            .unwrap_or_else(|| panic!("{name}: depends_on as a mapping with conditions"));
        let condition = |dep: &str| {
            deps.get(dep)
                .and_then(|d| d.get("condition"))
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{name} does not wait for {dep}"))
        };
        assert_eq!(
            condition("temporal-setup"),
            "service_completed_successfully"
        );
        assert_eq!(condition("orders-db"), "service_healthy");
    }
    let worker = environment(service("worker"));
    assert_eq!(
        worker.get("ORDERFLOW_METRICS_ADDRESS"),
        Some(&Some("0.0.0.0:9464".to_owned()))
    );
    let shim = environment(service("shim"));
    assert_eq!(
        shim.get("ORDERFLOW_LISTEN"),
        Some(&Some("0.0.0.0:8080".to_owned()))
    );
}

/// The sandbox payment gateway lets anyone pay: it is a development tool, off unless
/// switched on, and this production-like stack never switches it on. No service sets
/// ORDERFLOW_SANDBOX to anything but `false` (no `${...}` either, which a `.env` could turn
/// on) or passes `--sandbox`, and none carries the sandbox's own settings, which mean nothing
/// while it is off.
#[test]
fn no_service_switches_the_sandbox_on() {
    let mut problems = Vec::new();
    for name in service_names() {
        let svc = service(&name);
        for (var, value) in environment(svc) {
            if var == "ORDERFLOW_SANDBOX" && value.as_deref() != Some("false") {
                problems.push(format!("{name}: ORDERFLOW_SANDBOX={value:?}"));
            } else if var.starts_with("ORDERFLOW_SANDBOX_") {
                problems.push(format!("{name}: {var} (the sandbox is off here)"));
            }
        }
        let command = words(svc.get("command"));
        if command.iter().any(|w| w.starts_with("--sandbox")) {
            problems.push(format!("{name}: command {command:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn long_running_services_have_healthchecks_and_restart_policies() {
    let one_shots = one_shots();
    assert!(
        one_shots.contains("temporal-setup"),
        "temporal-setup is waited for: {one_shots:?}"
    );
    let mut problems = Vec::new();
    for name in service_names() {
        let svc = service(&name);
        let restart = svc.get("restart").and_then(scalar);
        if one_shots.contains(&name) {
            if !matches!(restart.as_deref(), None | Some("no")) {
                problems.push(format!("{name}: a one-shot must not restart ({restart:?})"));
            }
            continue;
        }
        if !matches!(restart.as_deref(), Some("unless-stopped" | "always")) {
            problems.push(format!("{name}: restart is {restart:?}"));
        }
        let check = svc.get("healthcheck");
        let disabled = check
            .and_then(|h| h.get("disable"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let test = words(check.and_then(|h| h.get("test")));
        if disabled || test.is_empty() || test[0] == "NONE" {
            problems.push(format!("{name}: no healthcheck"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn orderflow_healthchecks_probe_the_configured_ports() {
    let dockerfile = read("Dockerfile");
    for (name, address_var, path) in [
        ("worker", "ORDERFLOW_METRICS_ADDRESS", "/metrics"),
        ("shim", "ORDERFLOW_ADMIN_LISTEN", "/readyz"),
    ] {
        let svc = service(name);
        let address = environment(svc)
            .get(address_var)
            .cloned()
            .flatten()
            .unwrap_or_else(|| panic!("{name}: {address_var}"));
        let test = words(svc.get("healthcheck").and_then(|h| h.get("test")));
        assert_eq!(
            test,
            ["CMD", "orderflow-http-check", port_of(&address), path],
            "{name}'s healthcheck"
        );
    }
    assert!(
        dockerfile.contains("deploy/http-check.sh /usr/local/bin/orderflow-http-check"),
        "the image installs the healthcheck helper"
    );
    let helper = read("deploy/http-check.sh");
    assert!(
        helper.starts_with("#!/bin/bash"),
        "http-check.sh needs bash's /dev/tcp"
    );
}

#[test]
fn the_setup_service_registers_every_search_attribute_the_code_lists() {
    let setup = service("temporal-setup");
    let image = setup.get("image").and_then(Value::as_str).unwrap_or("");
    assert!(image.starts_with("temporalio/admin-tools:"), "{image}");
    let listed = environment(setup)
        .get("SEARCH_ATTRIBUTES")
        .cloned()
        .flatten()
        .expect("temporal-setup sets SEARCH_ATTRIBUTES");
    let registered: BTreeMap<&str, &str> = listed
        .split_whitespace()
        .map(|pair| {
            pair.split_once('=')
                .unwrap_or_else(|| panic!("{pair:?} is not Name=Type"))
        })
        .collect();
    let missing: Vec<String> = REGISTRATION
        .iter()
        .filter(|(name, kind)| registered.get(name) != Some(kind))
        .map(|(name, kind)| format!("{name}={kind}"))
        .collect();
    assert!(
        missing.is_empty(),
        "search attributes in REGISTRATION that temporal-setup does not register: {missing:?} \
         (it registers {registered:?})"
    );

    // The script the service runs is the one in deploy/, and it really registers them.
    let entrypoint = words(setup.get("entrypoint")).join(" ");
    let volumes: Vec<String> = setup
        .get("volumes")
        .and_then(Value::as_sequence)
        .expect("temporal-setup mounts its script")
        .iter()
        .map(|v| v.as_str().expect("short volume syntax").to_owned())
        .collect();
    let (host, _) = volumes
        .iter()
        .filter_map(|v| {
            let mut parts = v.split(':');
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .find(|(_, inside)| entrypoint.contains(inside.as_str()))
        .unwrap_or_else(|| panic!("the entrypoint {entrypoint:?} runs none of {volumes:?}"));
    let script = read(host.trim_start_matches("./"));
    for needle in [
        "operator search-attribute create",
        "SEARCH_ATTRIBUTES",
        "already exists",
    ] {
        assert!(script.contains(needle), "{host} lacks {needle:?}");
    }
}

#[test]
fn prometheus_scrapes_the_worker_and_the_shim() {
    // The admin listener is for the stack's network only: exposed, never published.
    let shim = service("shim");
    let admin = environment(shim)
        .get("ORDERFLOW_ADMIN_LISTEN")
        .cloned()
        .flatten()
        .expect("the shim's admin address");
    let published = words(shim.get("ports"));
    assert!(
        published.iter().all(|p| !p.contains(port_of(&admin))),
        "the admin port is published: {published:?}"
    );
    let prometheus = service("prometheus");
    let config_host = prometheus
        .get("volumes")
        .and_then(Value::as_sequence)
        .expect("prometheus mounts its config")
        .iter()
        .filter_map(Value::as_str)
        .find_map(|v| {
            let mut parts = v.split(':');
            let host = parts.next()?;
            (parts.next()? == "/etc/prometheus/prometheus.yml").then(|| host.to_owned())
        })
        .expect("a config mounted at /etc/prometheus/prometheus.yml");
    assert_eq!(config_host, "./deploy/prometheus.yml");
    let config: Value = serde_norway::from_str(&read("deploy/prometheus.yml"))
        .unwrap_or_else(|e| panic!("deploy/prometheus.yml: {e}"));
    let mut scraped = BTreeSet::new();
    for job in config
        .get("scrape_configs")
        .and_then(Value::as_sequence)
        .expect("scrape_configs")
    {
        let path = job
            .get("metrics_path")
            .and_then(Value::as_str)
            .unwrap_or("/metrics");
        for statics in job
            .get("static_configs")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            for target in statics
                .get("targets")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                let target = target.as_str().expect("targets are strings");
                scraped.insert(format!("{target}{path}"));
            }
        }
    }
    let worker_port = port_of(
        environment(service("worker"))
            .get("ORDERFLOW_METRICS_ADDRESS")
            .cloned()
            .flatten()
            .as_deref()
            .expect("worker metrics address"),
    )
    .to_owned();
    let shim_port = port_of(
        environment(service("shim"))
            .get("ORDERFLOW_ADMIN_LISTEN")
            .cloned()
            .flatten()
            .as_deref()
            .expect("shim admin address"),
    )
    .to_owned();
    for wanted in [
        format!("worker:{worker_port}/metrics"),
        format!("shim:{shim_port}/metrics"),
    ] {
        assert!(
            scraped.contains(&wanted),
            "prometheus does not scrape {wanted}: {scraped:?}"
        );
    }
}

/// `name = "..."` of each `[[bin]]` table in a crate manifest.
fn bin_names(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in read(manifest).lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin
            && let Some(value) = line.strip_prefix("name")
            && let Some(value) = value.trim_start().strip_prefix('=')
        {
            names.push(value.trim().trim_matches('"').to_owned());
        }
    }
    names
}

#[test]
fn the_dockerfile_builds_and_installs_every_binary() {
    let dockerfile = read("Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    assert!(
        lines.contains(&"FROM rust:1.95-bookworm AS builder"),
        "builder stage on rust:1.95-bookworm"
    );
    assert!(
        lines.contains(&"FROM debian:bookworm-slim AS runtime"),
        "runtime stage on debian:bookworm-slim"
    );
    assert!(
        dockerfile.contains(
            "cargo build --release --locked --bins -p orderflow-worker -p orderflow-starter"
        ),
        "release build of the shipped binaries only, with the committed Cargo.lock"
    );
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "runs as {user}"
    );

    let mut bins = bin_names("worker/Cargo.toml");
    bins.extend(bin_names("starter/Cargo.toml"));
    assert!(
        bins.contains(&"orderflow-worker".to_owned()) && bins.contains(&"orderflow".to_owned()),
        "[[bin]] names of worker/ and starter/: {bins:?}"
    );
    let install = lines
        .iter()
        .find(|l| l.starts_with("COPY --from=builder") && l.ends_with("/usr/local/bin/"))
        .expect("a COPY --from=builder ... /usr/local/bin/");
    for bin in &bins {
        assert!(
            install
                .split_whitespace()
                .any(|w| w.ends_with(&format!("target/release/{bin}"))),
            "{bin} is not installed: {install}"
        );
    }
    // The load generator is a bench tool (bench/load/): not in the image.
    for bin in bin_names("bench/load/Cargo.toml") {
        assert!(
            !bins.contains(&bin) && !install.contains(&bin),
            "{bin} is a bench tool, not part of the image: {install}"
        );
    }

    // The dependency layer copies every member's manifest; a missing one fails the build.
    let root = read("Cargo.toml");
    let members = root
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .expect("workspace members")
        .0;
    for member in members.split(',').map(|m| m.trim().trim_matches('"')) {
        if member.is_empty() {
            continue;
        }
        assert!(
            lines.contains(&format!("COPY {member}/Cargo.toml {member}/").as_str()),
            "the Dockerfile does not copy {member}/Cargo.toml"
        );
    }

    let dockerignore = read(".dockerignore");
    let ignored: BTreeSet<&str> = dockerignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in [
        "target/",
        ".venv/",
        "data/",
        ".run/",
        "tests/browser/node_modules/",
        ".git/",
    ] {
        assert!(ignored.contains(needed), ".dockerignore lacks {needed}");
    }
    for kept in ["migrations", "deploy", "tests", "Cargo.lock"] {
        assert!(
            !ignored
                .iter()
                .any(|l| l.trim_end_matches('/').trim_start_matches('/') == kept),
            ".dockerignore must keep {kept}: the build needs it"
        );
    }
}
