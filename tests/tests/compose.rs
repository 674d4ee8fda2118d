//! Static checks of the docker-compose stack (`docker-compose.yml`, `Dockerfile`,
//! `.dockerignore`, `deploy/`), in the normal test suite and without Docker: the images cannot
//! be pulled everywhere the tests run, so what can be checked without running them is checked
//! here, against the real binaries and the real code.
//!
//! Every compose check runs on both stacks: `docker-compose.yml` alone (the orders on
//! PostgreSQL), and with `docker-compose.mysql.yml` merged over it as docker compose merges
//! `-f a -f b` (the orders on MySQL 8).
//!
//! * The services started from the Orderflow image run real subcommands (`<cmd> --help` exits
//!   0 on this checkout's debug binaries), and every `ORDERFLOW_*`, `DATABASE_URL`,
//!   `TEMPORAL_*`, `STRIPE_*`, `WECHATPAY_*` and `ALIPAY_*` variable they set is one those binaries read.
//! * No service switches the sandbox payment gateway on (a development tool).
//! * Every long-running service has a healthcheck and a restart policy; one-shots do not
//!   restart.
//! * The setup service registers every search attribute in
//!   `orderflow_workflows::search_attributes::REGISTRATION`, with its type.
//! * Prometheus scrapes the worker and the shim on the ports they are configured to serve.
//! * The worker, the shim and `migrate` use the stack's orders database, and wait for it to be
//!   healthy; no service waits for one the stack does not start. On MySQL: a `mysql:8.x`
//!   server whose user, password and database are the ones in DATABASE_URL, on a named volume,
//!   that lets the migrations create their triggers.
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

/// The stacks the compose files describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stack {
    /// `docker compose up`: `docker-compose.yml`, the orders on PostgreSQL.
    Postgres,
    /// `docker compose -f docker-compose.yml -f docker-compose.mysql.yml up`: the orders on MySQL.
    Mysql,
}

const STACKS: [Stack; 2] = [Stack::Postgres, Stack::Mysql];

impl Stack {
    /// The orders database: its service, and how DATABASE_URL must begin and end (the password
    /// in between is a `${...}` placeholder).
    fn database(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Stack::Postgres => (
                "orders-db",
                "postgres://orderflow:",
                "@orders-db:5432/orderflow",
            ),
            Stack::Mysql => ("mysql", "mysql://orderflow:", "@mysql:3306/orderflow"),
        }
    }
}

/// A compose file, parsed, with its `<<: *anchor` merge keys applied as docker compose does.
fn parse(file: &str) -> Value {
    let mut value: Value = serde_norway::from_str(&read(file))
        .unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"));
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{file} merge keys: {e}"));
    value
}

/// Sequences an override file replaces rather than extends (compose's merge rules).
const REPLACED_SEQUENCES: &[&str] = &["command", "entrypoint", "test"];

/// Merges an override file into `base` as `docker compose -f base -f over` does: mappings key by
/// key, `!reset` removes an entry, `!override` replaces it whole, a scalar replaces a scalar.
/// Compose appends other sequences (ports, volumes, ...) by rules of their own that this does
/// not model: meeting one is a failure, not a guess.
fn merge(base: &mut Value, over: Value, path: &str) {
    let (Value::Mapping(base), Value::Mapping(over)) = (base, over) else {
        panic!("{path}: only mappings are merged here");
    };
    for (key, value) in over {
        let name = key.as_str().expect("compose keys are strings").to_owned();
        let here = format!("{path}/{name}");
        match (base.get_mut(&key), value) {
            (_, Value::Tagged(tagged)) if tagged.tag == "reset" => {
                base.remove(&key);
            }
            (_, Value::Tagged(tagged)) if tagged.tag == "override" => {
                base.insert(key, tagged.value);
            }
            (_, Value::Tagged(tagged)) => panic!("{here}: unknown tag {}", tagged.tag),
            (Some(old @ Value::Mapping(_)), new @ Value::Mapping(_)) => merge(old, new, &here),
            (Some(Value::Sequence(_)), new @ Value::Sequence(_))
                if REPLACED_SEQUENCES.contains(&name.as_str()) =>
            {
                base.insert(key, new);
            }
            (Some(old @ (Value::Mapping(_) | Value::Sequence(_))), new) => {
                panic!("{here}: merging {new:?} into {old:?} is not modelled here")
            }
            (_, new) => {
                base.insert(key, new);
            }
        }
    }
}

fn compose(stack: Stack) -> &'static Value {
    static POSTGRES: OnceLock<Value> = OnceLock::new();
    static MYSQL: OnceLock<Value> = OnceLock::new();
    match stack {
        Stack::Postgres => POSTGRES.get_or_init(|| parse("docker-compose.yml")),
        Stack::Mysql => MYSQL.get_or_init(|| {
            let mut merged = parse("docker-compose.yml");
            merge(&mut merged, parse("docker-compose.mysql.yml"), "");
            merged
        }),
    }
}

fn services(stack: Stack) -> &'static Mapping {
    compose(stack)
        .get("services")
        .and_then(Value::as_mapping)
        .unwrap_or_else(|| panic!("{stack:?}: a services mapping"))
}

fn service(stack: Stack, name: &str) -> &'static Value {
    services(stack)
        .get(name)
        .unwrap_or_else(|| panic!("{stack:?}: no service {name:?}"))
}

/// The services `up` starts: those without `profiles` (a service in a profile starts only when
/// the profile is asked for).
fn service_names(stack: Stack) -> Vec<String> {
    services(stack)
        .iter()
        .filter(|(_, svc)| svc.get("profiles").is_none())
        .map(|(k, _)| k.as_str().expect("service names are strings").to_owned())
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
fn orderflow_services(stack: Stack) -> Vec<String> {
    service_names(stack)
        .into_iter()
        .filter(|name| service(stack, name).get("build").is_some())
        .collect()
}

/// Services some other service waits for to exit 0.
fn one_shots(stack: Stack) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for name in service_names(stack) {
        if let Some(Value::Mapping(deps)) = service(stack, &name).get("depends_on") {
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
        || name.starts_with("WECHATPAY_")
        || name.starts_with("ALIPAY_")
}

fn is_temporal_envconfig(name: &str) -> bool {
    TEMPORAL_ENVCONFIG.contains(&name) || name.starts_with("TEMPORAL_TLS")
}

#[test]
fn worker_and_shim_run_real_subcommands() {
    for stack in STACKS {
        assert_eq!(
            words(service(stack, "worker").get("command")),
            ["orderflow-worker"],
            "{stack:?}"
        );
        assert_eq!(
            words(service(stack, "shim").get("command")),
            ["orderflow", "serve"],
            "{stack:?}"
        );
        let services = orderflow_services(stack);
        assert!(
            services.contains(&"worker".to_owned()) && services.contains(&"shim".to_owned()),
            "{stack:?}: worker and shim must be built from the Dockerfile: {services:?}"
        );
        for name in services {
            let svc = service(stack, &name);
            assert!(
                svc.get("entrypoint").is_none(),
                "{stack:?} {name}: the image's binaries are run through `command`"
            );
            let command = words(svc.get("command"));
            assert!(!command.is_empty(), "{stack:?} {name} has no command");
            help_of(&command);
        }
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
    for stack in STACKS {
        for name in orderflow_services(stack) {
            let svc = service(stack, &name);
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
                        "{stack:?} {name}: {var} (not in `{} --help`)",
                        command.join(" ")
                    ));
                }
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
    for stack in STACKS {
        let (database, url_start, url_end) = stack.database();
        for name in ["worker", "shim", "migrate"] {
            let env = environment(service(stack, name));
            let get = |var: &str| {
                env.get(var)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| panic!("{stack:?} {name}: {var} is not set"))
            };
            let url = get("DATABASE_URL");
            assert!(
                url.starts_with(url_start) && url.ends_with(url_end),
                "{stack:?} {name}: DATABASE_URL must be the {database} service: {url}"
            );
            let deps = service(stack, name)
                .get("depends_on")
                .and_then(Value::as_mapping)
                .unwrap_or_else(|| panic!("{name}: depends_on as a mapping with conditions"));
            let condition = |dep: &str| {
                deps.get(dep)
                    .and_then(|d| d.get("condition"))
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("{stack:?}: {name} does not wait for {dep}"))
            };
            assert_eq!(condition(database), "service_healthy", "{stack:?} {name}");
            if name == "migrate" {
                continue;
            }
            assert_eq!(get("TEMPORAL_ADDRESS"), "temporal:7233", "{name}");
            assert_eq!(get("TEMPORAL_NAMESPACE"), "default", "{name}");
            assert!(
                get("ORDERFLOW_PUBLIC_URL").contains("http://localhost:8080"),
                "{name}: ORDERFLOW_PUBLIC_URL"
            );
            assert_eq!(
                condition("temporal-setup"),
                "service_completed_successfully"
            );
            assert_eq!(condition("migrate"), "service_completed_successfully");
        }
        let worker = environment(service(stack, "worker"));
        assert_eq!(
            worker.get("ORDERFLOW_METRICS_ADDRESS"),
            Some(&Some("0.0.0.0:9464".to_owned()))
        );
        // The worker's relay publishes the order events to the stack's NATS, once it is healthy
        // with JetStream on.
        assert_eq!(
            worker.get("ORDERFLOW_NATS_URL"),
            Some(&Some("nats://nats:4222".to_owned()))
        );
        let nats = service(stack, "nats");
        let command = words(nats.get("command"));
        assert!(
            command.contains(&"-js".to_owned()) && command.contains(&"-sd".to_owned()),
            "{stack:?}: NATS runs with JetStream and a store: {command:?}"
        );
        let check = words(nats.get("healthcheck").and_then(|h| h.get("test")));
        assert!(
            check.iter().any(|w| w.contains("js-enabled-only=true")),
            "{stack:?}: NATS is healthy only with JetStream up: {check:?}"
        );
        assert_eq!(
            service(stack, "worker")
                .get("depends_on")
                .and_then(|d| d.get("nats"))
                .and_then(|d| d.get("condition"))
                .and_then(Value::as_str),
            Some("service_healthy")
        );
        let shim = environment(service(stack, "shim"));
        assert_eq!(
            shim.get("ORDERFLOW_LISTEN"),
            Some(&Some("0.0.0.0:8080".to_owned()))
        );
    }
}

/// No service waits for one the stack does not start: the MySQL stack replaces every wait for
/// `orders-db`, which it leaves out.
#[test]
fn services_wait_only_for_services_the_stack_starts() {
    for stack in STACKS {
        let started = service_names(stack);
        let mut problems = Vec::new();
        for name in &started {
            let deps = match service(stack, name).get("depends_on") {
                None => continue,
                Some(Value::Mapping(deps)) => deps.keys().cloned().collect::<Vec<_>>(),
                Some(Value::Sequence(deps)) => deps.clone(),
                Some(other) => panic!("{stack:?} {name}: depends_on {other:?}"),
            };
            for dep in deps {
                let dep = dep.as_str().expect("service names are strings");
                if !started.iter().any(|s| s == dep) {
                    problems.push(format!("{stack:?}: {name} waits for {dep}, not started"));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

#[test]
fn the_mysql_stack_runs_the_orders_on_mysql_8() {
    let stack = Stack::Mysql;
    let (database, _, _) = stack.database();
    let started = service_names(stack);
    assert!(
        !started.contains(&"orders-db".to_owned()),
        "the orders PostgreSQL still starts: {started:?}"
    );
    assert!(
        started.contains(&"postgresql".to_owned()),
        "Temporal keeps its PostgreSQL: {started:?}"
    );
    let mysql = service(stack, database);
    let image = mysql.get("image").and_then(Value::as_str).unwrap_or("");
    assert!(image.starts_with("mysql:8."), "{image}");
    let test = words(mysql.get("healthcheck").and_then(|h| h.get("test")));
    assert!(
        test.iter().any(|w| w == "mysqladmin") && test.iter().any(|w| w == "ping"),
        "a mysqladmin ping healthcheck: {test:?}"
    );
    assert!(
        test.iter().any(|w| w == "127.0.0.1"),
        "the healthcheck pings over TCP (the init server has no networking): {test:?}"
    );

    // The server's user, password and database are the ones every DATABASE_URL names.
    let env = environment(mysql);
    let get = |var: &str| {
        env.get(var)
            .cloned()
            .flatten()
            .unwrap_or_else(|| panic!("mysql: {var} is not set"))
    };
    let expected = format!(
        "mysql://{}:{}@{database}:3306/{}",
        get("MYSQL_USER"),
        get("MYSQL_PASSWORD"),
        get("MYSQL_DATABASE")
    );
    assert_eq!(get("MYSQL_DATABASE"), "orderflow");
    assert!(
        get("MYSQL_PASSWORD").starts_with("${") && get("MYSQL_PASSWORD").ends_with('}'),
        "the password comes from the environment: {}",
        get("MYSQL_PASSWORD")
    );
    for name in ["worker", "shim", "migrate"] {
        assert_eq!(
            environment(service(stack, name)).get("DATABASE_URL"),
            Some(&Some(expected.clone())),
            "{name}"
        );
    }

    // Its data survives the container, on a volume the file declares.
    let volumes: Vec<String> = words(mysql.get("volumes"));
    let volume = volumes
        .iter()
        .find_map(|v| v.strip_suffix(":/var/lib/mysql"))
        .unwrap_or_else(|| panic!("no volume at /var/lib/mysql: {volumes:?}"));
    assert!(
        compose(stack)
            .get("volumes")
            .and_then(Value::as_mapping)
            .is_some_and(|declared| declared.contains_key(volume)),
        "{volume} is not a named volume"
    );

    // The migrations create triggers, which with MySQL 8's binary logging (on by default) a
    // user without SUPER may only do when the server trusts routine creators.
    assert!(
        read("migrations/mysql/0001_orderflow.sql").contains("CREATE TRIGGER"),
        "the MySQL migrations no longer create triggers: drop the flag below"
    );
    let command = words(mysql.get("command"));
    assert!(
        command
            .iter()
            .any(|w| w == "--log-bin-trust-function-creators=ON"),
        "mysql: {command:?}"
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
    for stack in STACKS {
        for name in service_names(stack) {
            let svc = service(stack, &name);
            for (var, value) in environment(svc) {
                if var == "ORDERFLOW_SANDBOX" && value.as_deref() != Some("false") {
                    problems.push(format!("{stack:?} {name}: ORDERFLOW_SANDBOX={value:?}"));
                } else if var.starts_with("ORDERFLOW_SANDBOX_") {
                    problems.push(format!("{stack:?} {name}: {var} (the sandbox is off here)"));
                }
            }
            let command = words(svc.get("command"));
            if command.iter().any(|w| w.starts_with("--sandbox")) {
                problems.push(format!("{stack:?} {name}: command {command:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn long_running_services_have_healthchecks_and_restart_policies() {
    let mut problems = Vec::new();
    for stack in STACKS {
        let one_shots = one_shots(stack);
        assert!(
            one_shots.contains("temporal-setup"),
            "{stack:?}: temporal-setup is waited for: {one_shots:?}"
        );
        for name in service_names(stack) {
            let svc = service(stack, &name);
            let restart = svc.get("restart").and_then(scalar);
            if one_shots.contains(&name) {
                if !matches!(restart.as_deref(), None | Some("no")) {
                    problems.push(format!(
                        "{stack:?} {name}: a one-shot must not restart ({restart:?})"
                    ));
                }
                continue;
            }
            if !matches!(restart.as_deref(), Some("unless-stopped" | "always")) {
                problems.push(format!("{stack:?} {name}: restart is {restart:?}"));
            }
            let check = svc.get("healthcheck");
            let disabled = check
                .and_then(|h| h.get("disable"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let test = words(check.and_then(|h| h.get("test")));
            if disabled || test.is_empty() || test[0] == "NONE" {
                problems.push(format!("{stack:?} {name}: no healthcheck"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn orderflow_healthchecks_probe_the_configured_ports() {
    let dockerfile = read("Dockerfile");
    for stack in STACKS {
        for (name, address_var, path) in [
            ("worker", "ORDERFLOW_METRICS_ADDRESS", "/metrics"),
            ("shim", "ORDERFLOW_ADMIN_LISTEN", "/readyz"),
        ] {
            let svc = service(stack, name);
            let address = environment(svc)
                .get(address_var)
                .cloned()
                .flatten()
                .unwrap_or_else(|| panic!("{stack:?} {name}: {address_var}"));
            let test = words(svc.get("healthcheck").and_then(|h| h.get("test")));
            assert_eq!(
                test,
                ["CMD", "orderflow-http-check", port_of(&address), path],
                "{stack:?} {name}'s healthcheck"
            );
        }
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
    for stack in STACKS {
        setup_registers_every_search_attribute(stack);
    }
}

fn setup_registers_every_search_attribute(stack: Stack) {
    let setup = service(stack, "temporal-setup");
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
    for stack in STACKS {
        prometheus_scrapes(stack);
    }
}

fn prometheus_scrapes(stack: Stack) {
    // The admin listener is for the stack's network only: exposed, never published.
    let shim = service(stack, "shim");
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
    let prometheus = service(stack, "prometheus");
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
        environment(service(stack, "worker"))
            .get("ORDERFLOW_METRICS_ADDRESS")
            .cloned()
            .flatten()
            .as_deref()
            .expect("worker metrics address"),
    )
    .to_owned();
    let shim_port = port_of(
        environment(service(stack, "shim"))
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
