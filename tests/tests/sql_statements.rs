//! Every SQL statement in the workspace, rendered and prepared on every engine.
//!
//! The statements are found in the source: every `sql!(…)` in the workspace's Rust files is
//! parsed (with `syn`, as the compiler would read its string literals) and rebuilt as the
//! [`Sql`] the macro makes. Each is then rendered by `orderflow_activities::sql` for SQLite,
//! PostgreSQL and MySQL/MariaDB and prepared on a freshly migrated database of that engine: the
//! server parses it and resolves every table and column, so a statement one engine cannot run
//! fails here, by name, before any behaviour test meets it. Also checked:
//!
//! * each statement's placeholders are `$1..$n` with none skipped (a skipped one is a bind that
//!   goes nowhere), and the MySQL form has exactly one `?` per use;
//! * an insert-once statement (`… ON CONFLICT (cols) DO NOTHING`) names, for MySQL, a unique key
//!   that exists on its table with exactly those columns — the key whose duplicate-key error
//!   means "already done";
//! * no code outside the layer runs SQL text of its own (`sqlx::query…`), except the few places
//!   listed in `RAW_SQL_ALLOWED`, each with its reason;
//! * every `sql!(` in the text was found by the parser (none hidden inside another macro).
//!
//! Without `TEST_POSTGRES_URL` / `TEST_MYSQL_URL` those engines' halves say so and are skipped.

use orderflow_activities::db::{Db, Engine};
use orderflow_activities::sql::{Sql, render};
use orderflow_tests::{fresh_database, workspace_root};
use sqlx::Executor;
use std::path::{Path, PathBuf};
use syn::visit::Visit;

/// Files that may run SQL text without the layer, and how many times.
const RAW_SQL_ALLOWED: &[(&str, usize, &str)] = &[
    (
        "activities/src/sql.rs",
        1,
        "the layer itself, running the rendered text",
    ),
    (
        "activities/src/orders.rs",
        1,
        "PostgreSQL only: one statement inserting an order and a VALUES group per line",
    ),
    (
        "activities/src/outbox.rs",
        1,
        "marking a relay's batch published: one UPDATE with an IN list of integer ids, no binds",
    ),
    (
        "activities/src/failure.rs",
        2,
        "a unit test of the error rule, on its own table in an in-memory SQLite",
    ),
    (
        "tests/tests/orders.rs",
        2,
        "a test hides a table (and brings it back) to make a step fail",
    ),
    (
        "tests/tests/chaos.rs",
        1,
        "the earliest deadline of a test's orders: an IN list of literal order ids, no binds",
    ),
    (
        "tests/src/lib.rs",
        2,
        "creating the test databases, and counting rows of a test's own table and condition",
    ),
    (
        "bench/load/src/lib.rs",
        2,
        "the load tool's status polls: IN lists of literal order ids, no binds",
    ),
];

/// Directories whose Rust files are searched (the fuzz workspace has no SQL).
const SOURCE_DIRS: &[&str] = &[
    "activities/src",
    "http/src",
    "client/src",
    "starter/src",
    "worker/src",
    "workflows/src",
    "domain/src",
    "bench/load/src",
    "tests/src",
    "tests/tests",
];

/// This test's own MySQL-only query of `information_schema` is not one of the application's.
const THIS_FILE: &str = "tests/tests/sql_statements.rs";

struct Found {
    file: String,
    sql: &'static Sql,
}

/// A `sql!`'s arguments: common text, MySQL text, MySQL key, engines.
type Args = (String, Option<String>, Option<String>, Option<Vec<Engine>>);

#[derive(Default)]
struct SqlMacros {
    found: Vec<Args>,
    errors: Vec<String>,
}

impl<'ast> Visit<'ast> for SqlMacros {
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        if mac.path.segments.last().is_some_and(|s| s.ident == "sql") {
            match mac.parse_body_with(parse_sql_args) {
                Ok(args) => self.found.push(args),
                Err(e) => self.errors.push(format!("{e}: {}", mac.tokens)),
            }
        }
        syn::visit::visit_macro(self, mac);
    }
}

/// `"common"`, then optionally `, mysql: "…"` or `, key: "…"`, and a trailing comma.
fn parse_sql_args(input: syn::parse::ParseStream) -> syn::Result<Args> {
    let common: syn::LitStr = input.parse()?;
    let (mut mysql, mut key, mut only) = (None, None, None);
    while input.peek(syn::Token![,]) {
        input.parse::<syn::Token![,]>()?;
        if input.is_empty() {
            break;
        }
        let name: syn::Ident = input.parse()?;
        input.parse::<syn::Token![:]>()?;
        if name == "only" {
            let list: syn::ExprArray = input.parse()?;
            let engines = list.elems.iter().map(|e| match quote_path(e).as_str() {
                "Sqlite" => Ok(Engine::Sqlite),
                "Postgres" => Ok(Engine::Postgres),
                "MySql" => Ok(Engine::MySql),
                other => Err(syn::Error::new(name.span(), format!("no engine {other}"))),
            });
            only = Some(engines.collect::<syn::Result<Vec<_>>>()?);
            continue;
        }
        let value: syn::LitStr = input.parse()?;
        match name.to_string().as_str() {
            "mysql" => mysql = Some(value.value()),
            "key" => key = Some(value.value()),
            other => return Err(syn::Error::new(name.span(), format!("unknown {other}"))),
        }
    }
    Ok((common.value(), mysql, key, only))
}

fn quote_path(expr: &syn::Expr) -> String {
    match expr {
        syn::Expr::Path(p) => p
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Every `sql!` of the workspace, and the raw-SQL count per file.
fn statements() -> (Vec<Found>, Vec<(String, usize)>) {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in SOURCE_DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    let mut found = Vec::new();
    let mut raw = Vec::new();
    for path in files {
        let relative = path.strip_prefix(&root).unwrap().display().to_string();
        if relative == THIS_FILE {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{relative}: {e}"));
        let mut visitor = SqlMacros::default();
        visitor.visit_file(&file);
        assert!(
            visitor.errors.is_empty(),
            "{relative}: {:?}",
            visitor.errors
        );
        // The macro's own definition and docs are not statements.
        let in_text = text.matches("sql!(").count()
            - text.matches("macro_rules! sql").count()
            - text
                .lines()
                .filter(|l| l.trim_start().starts_with("//") && l.contains("sql!("))
                .count();
        if relative != "activities/src/sql.rs" {
            assert_eq!(
                visitor.found.len(),
                in_text,
                "{relative}: a `sql!(` the parser did not see (inside another macro?)"
            );
        }
        let raw_uses =
            text.matches("sqlx::query").count() - text.matches("sqlx::query::Query").count();
        if raw_uses > 0 {
            raw.push((relative.clone(), raw_uses));
        }
        for (common, mysql, key, only) in visitor.found {
            let sql: &'static Sql = Box::leak(Box::new(Sql {
                site: leak(relative.clone()),
                common: leak(common),
                mysql: mysql.map(leak),
                mysql_key: key.map_or("PRIMARY", leak),
                engines: only.map_or(&Engine::ALL[..], |e| Box::leak(e.into_boxed_slice())),
                mysql_rendered: std::sync::OnceLock::new(),
            }));
            found.push(Found {
                file: relative.clone(),
                sql,
            });
        }
    }
    (found, raw)
}

#[test]
fn only_the_listed_places_run_sql_text_outside_the_layer() {
    let (found, raw) = statements();
    assert!(found.len() > 50, "only {} statements found", found.len());
    let mut wrong = Vec::new();
    for (file, uses) in &raw {
        let allowed = RAW_SQL_ALLOWED
            .iter()
            .find(|(f, _, _)| f == file)
            .map(|(_, n, _)| *n);
        if allowed != Some(*uses) {
            wrong.push(format!("{file}: {uses} (allowed: {allowed:?})"));
        }
    }
    for (file, _, _) in RAW_SQL_ALLOWED {
        if !raw.iter().any(|(f, _)| f == file) {
            wrong.push(format!(
                "{file}: listed in RAW_SQL_ALLOWED but runs no SQL text"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "SQL text run without `sql!`; write it with `sql!` (or list it in RAW_SQL_ALLOWED with \
         the reason):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn placeholders_are_dense_and_render_one_question_mark_per_use() {
    let (found, _) = statements();
    for Found { file, sql } in &found {
        for &engine in sql.engines {
            let text = sql.text_for(engine);
            let rendered = render(text.clone(), engine);
            let uses = render(text, Engine::MySql).bind_order.unwrap();
            let mut used = vec![false; uses.iter().max().map_or(0, |n| n + 1)];
            for n in uses {
                used[n] = true;
            }
            assert!(
                used.iter().all(|u| *u),
                "{file}: {engine:?} form of {:?} skips a placeholder",
                sql.common
            );
            if engine == Engine::MySql {
                let order = rendered.bind_order.as_ref().unwrap();
                assert_eq!(rendered.text.matches('?').count(), order.len(), "{file}");
                assert!(
                    !rendered.text.contains("ON CONFLICT"),
                    "{file}: {}",
                    rendered.text
                );
                assert!(
                    !rendered.text.contains("RETURNING"),
                    "{file}: {}",
                    rendered.text
                );
            }
        }
    }
}

async fn migrated(engine: Engine) -> Option<Db> {
    let url = fresh_database(engine).await.unwrap()?;
    let db = Db::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    Some(db)
}

async fn prepares_on(engine: Engine) {
    let Some(db) = migrated(engine).await else {
        return;
    };
    let (found, _) = statements();
    let mut failures = Vec::new();
    let mut conn = db.pool().acquire().await.unwrap();
    for Found { file, sql } in found.iter().filter(|f| f.sql.engines.contains(&engine)) {
        let rendered = render(sql.text_for(engine), engine);
        if let Err(e) = conn.prepare(&rendered.text).await {
            failures.push(format!("{file}: {e}\n    {}", rendered.text));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} statements do not prepare on {engine:?}:\n{}",
        failures.len(),
        found.len(),
        failures.join("\n")
    );
    eprintln!("{} statements prepared on {engine:?}", found.len());
}

#[tokio::test]
async fn every_statement_prepares_on_sqlite() {
    prepares_on(Engine::Sqlite).await;
}

#[tokio::test]
async fn every_statement_prepares_on_postgres() {
    prepares_on(Engine::Postgres).await;
}

#[tokio::test]
async fn every_statement_prepares_on_mysql() {
    prepares_on(Engine::MySql).await;
}

/// The table an `INSERT INTO <table>` writes.
fn insert_table(text: &str) -> &str {
    let rest = text.trim_start()["INSERT INTO".len()..].trim_start();
    rest.split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap()
}

#[tokio::test]
async fn insert_once_statements_name_the_mysql_key_of_their_conflict_columns() {
    let Some(db) = migrated(Engine::MySql).await else {
        return;
    };
    let (found, _) = statements();
    let mut checked = 0;
    for Found { file, sql } in &found {
        let Some(columns) = sql.conflict_columns() else {
            continue;
        };
        if sql.mysql.is_some() {
            continue;
        }
        let table = insert_table(sql.common);
        let key_columns: Vec<String> = orderflow_activities::sql!(
            "SELECT column_name FROM information_schema.statistics
              WHERE table_schema = DATABASE() AND table_name = $1 AND index_name = $2
                AND non_unique = 0
              ORDER BY seq_in_index"
        )
        .on(&db)
        .bind(table)
        .bind(sql.mysql_key)
        .fetch_all_scalar(db.pool())
        .await
        .unwrap();
        assert_eq!(
            key_columns, columns,
            "{file}: on MySQL the unique key {:?} of {table} must have the ON CONFLICT columns",
            sql.mysql_key
        );
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} insert-once statements");
}
