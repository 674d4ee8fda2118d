//! Every SQL statement, written once, in each engine's form.
//!
//! Statements are written with PostgreSQL's numbered placeholders (`$1`, `$2`, a number may repeat
//! or come out of order) and run through [`Sql::on`], which renders them for the engine: SQLite
//! and PostgreSQL take the text as it is; MySQL/MariaDB take only `?`, one per use, so each `$n`
//! becomes a `?` and the binds are re-ordered (and repeated) to match. The renderer skips string
//! literals, quoted identifiers and comments, so a `$1` inside `'...'` stays text. It makes one
//! other change, for MySQL only: `CAST(… AS BIGINT)` becomes `CAST(… AS SIGNED)`, MySQL's name for
//! a 64-bit integer cast (sums must be cast: MySQL's `SUM` is a DECIMAL, which the `Any` driver
//! cannot read).
//!
//! Where the engines' SQL differs beyond placeholders, the statement carries the other engine's
//! text next to the common one (`sql!("…", mysql: "…")`), so both live at the same call site.
//!
//! An `INSERT … ON CONFLICT (…) DO NOTHING` is the idempotent insert on SQLite and PostgreSQL.
//! MySQL has no such clause, and `INSERT IGNORE` would also turn truncation and every other error
//! into a warning. So on MySQL the clause is cut off and the duplicate-key error (1062) of the
//! unique key named by the statement (`PRIMARY` unless `key:` says otherwise) is the "already
//! done" answer: [`Stmt::execute`] reports it as zero rows affected, like `DO NOTHING`. A
//! duplicate on any other key stays an error, as it does on PostgreSQL. (On MySQL a failed
//! statement rolls back only itself, so the transaction carries on.)
//!
//! Every `sql!` in the workspace is found in the source, rendered and prepared on every engine by
//! `tests/tests/sql_statements.rs`.

use crate::db::{Db, Engine};
use sqlx::any::{AnyArguments, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValueRef};
use sqlx::{Any, AnyConnection, AnyPool, Decode, Executor, FromRow, Row, Type, ValueRef};
use std::borrow::Cow;
use std::sync::OnceLock;

/// One statement: its common text and any engine's own.
#[derive(Debug)]
pub struct Sql {
    /// `file:line` of the `sql!` that wrote it, for error messages and the statement test.
    pub site: &'static str,
    pub common: &'static str,
    pub mysql: Option<&'static str>,
    /// On MySQL, the unique key whose duplicate-key error means "already done" (see the module
    /// docs). Only meaningful for `INSERT … ON CONFLICT … DO NOTHING`.
    pub mysql_key: &'static str,
    /// The engines it is written for: all, unless the call site branches on the engine.
    pub engines: &'static [Engine],
    /// The MySQL form, rendered on first use (statements are statics: once per process).
    pub mysql_rendered: OnceLock<Rendered>,
}

/// A statement written once (see the module docs). Forms: `sql!("…")`; `sql!("…", mysql: "…")`
/// (MySQL's own text); `sql!("INSERT … ON CONFLICT (…) DO NOTHING", key: "name")` (the MySQL
/// unique key of those columns, when not the primary key); `sql!("…", only: [Sqlite, Postgres])`
/// (a branch of code that runs on those engines only).
#[macro_export]
macro_rules! sql {
    ($common:literal $(,)?) => {
        $crate::sql!(@make $common, ::core::option::Option::None, "PRIMARY", &$crate::db::Engine::ALL)
    };
    ($common:literal, mysql: $mysql:literal $(,)?) => {
        $crate::sql!(@make $common, ::core::option::Option::Some($mysql), "PRIMARY", &$crate::db::Engine::ALL)
    };
    ($common:literal, key: $key:literal $(,)?) => {
        $crate::sql!(@make $common, ::core::option::Option::None, $key, &$crate::db::Engine::ALL)
    };
    ($common:literal, only: [$($engine:ident),+ $(,)?] $(,)?) => {
        $crate::sql!(@make $common, ::core::option::Option::None, "PRIMARY", &[$($crate::db::Engine::$engine),+])
    };
    (@make $common:literal, $mysql:expr, $key:literal, $engines:expr) => {{
        static STATEMENT: $crate::sql::Sql = $crate::sql::Sql {
            site: ::core::concat!(::core::file!(), ":", ::core::line!()),
            common: $common,
            mysql: $mysql,
            mysql_key: $key,
            engines: $engines,
            mysql_rendered: ::std::sync::OnceLock::new(),
        };
        &STATEMENT
    }};
}

impl Sql {
    /// The statement's text for `engine`, before placeholders are rendered.
    pub fn text_for(&self, engine: Engine) -> Cow<'static, str> {
        match (engine, self.mysql) {
            (Engine::MySql, Some(own)) => Cow::Borrowed(own),
            (Engine::MySql, None) => match split_on_conflict(self.common) {
                Some((insert, _)) => Cow::Borrowed(insert),
                None => Cow::Borrowed(self.common),
            },
            _ => Cow::Borrowed(self.common),
        }
    }

    /// On MySQL, whether a duplicate-key error means "already done" (an insert-once statement).
    fn insert_once(&self) -> bool {
        self.mysql.is_none() && split_on_conflict(self.common).is_some()
    }

    /// The columns of the `ON CONFLICT (…)` clause, if the statement has one.
    pub fn conflict_columns(&self) -> Option<Vec<&'static str>> {
        let (_, clause) = split_on_conflict(self.common)?;
        let inner = clause.split_once('(')?.1.split_once(')')?.0;
        Some(inner.split(',').map(str::trim).collect())
    }

    /// Ready to bind, for the engine of `on` (a [`Db`], a pool, a connection or a transaction).
    pub fn on(&'static self, on: impl EngineOf) -> Stmt {
        let engine = on.engine_of();
        debug_assert!(
            self.engines.contains(&engine),
            "{}: written for {:?}, run on {engine:?}",
            self.site,
            self.engines
        );
        let rendered = match engine {
            Engine::MySql => Cow::Borrowed(
                self.mysql_rendered
                    .get_or_init(|| render(self.text_for(engine), engine)),
            ),
            _ => Cow::Owned(render(self.text_for(engine), engine)),
        };
        Stmt {
            sql: self,
            engine,
            rendered,
            params: Vec::new(),
        }
    }
}

/// `(INSERT …, ON CONFLICT (…) [WHERE …] DO NOTHING)` when the statement ends that way.
fn split_on_conflict(text: &'static str) -> Option<(&'static str, &'static str)> {
    let trimmed = text.trim_end();
    let upper = trimmed.to_ascii_uppercase();
    if !upper.ends_with("DO NOTHING") || !upper.trim_start().starts_with("INSERT") {
        return None;
    }
    let at = upper.rfind("ON CONFLICT")?;
    Some((trimmed[..at].trim_end(), &trimmed[at..]))
}

/// A statement's text in one engine's placeholder style, and for `?` engines which bind goes
/// where (indexes into the binds, in the order written; `None` when the binds go in as given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: Cow<'static, str>,
    pub bind_order: Option<Vec<usize>>,
}

/// Renders `$n` placeholders for `engine` (see the module docs).
pub fn render(text: Cow<'static, str>, engine: Engine) -> Rendered {
    if engine != Engine::MySql {
        return Rendered {
            text,
            bind_order: None,
        };
    }
    let mut out = String::with_capacity(text.len());
    let mut order = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\'' | b'"' | b'`' => {
                let end = closing_quote(bytes, i);
                out.push_str(&text[i..end]);
                i = end;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                let end = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
                out.push_str(&text[i..end]);
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |n| i + 2 + n + 2);
                out.push_str(&text[i..end]);
                i = end;
            }
            b'$' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                let n: usize = text[i + 1..i + 1 + digits].parse().unwrap_or(0);
                order.push(n.saturating_sub(1));
                if engine == Engine::MySql {
                    out.push('?');
                } else {
                    out.push_str(&text[i..i + 1 + digits]);
                }
                i += 1 + digits;
            }
            _ => {
                let next = text[i..]
                    .find(['\'', '"', '`', '-', '/', '$'])
                    .map_or(bytes.len(), |n| if n == 0 { i + 1 } else { i + n });
                let chunk = &text[i..next];
                if engine == Engine::MySql && chunk.contains(" AS BIGINT)") {
                    out.push_str(&chunk.replace(" AS BIGINT)", " AS SIGNED)"));
                } else {
                    out.push_str(chunk);
                }
                i = next;
            }
        }
    }
    if engine == Engine::MySql {
        Rendered {
            text: Cow::Owned(out),
            bind_order: Some(order),
        }
    } else {
        Rendered {
            text,
            bind_order: None,
        }
    }
}

/// Index just past the quote that closes the one at `start` (a doubled quote is an escaped one).
fn closing_quote(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// A bound value, kept until the engine's order of binds is known.
#[derive(Debug, Clone)]
pub enum Param {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}
impl From<Option<i64>> for Param {
    fn from(v: Option<i64>) -> Self {
        Param::Int(v)
    }
}
impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(Some(v.to_owned()))
    }
}
impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(Some(v))
    }
}
impl From<&String> for Param {
    fn from(v: &String) -> Self {
        Param::Text(Some(v.clone()))
    }
}
impl From<Option<&str>> for Param {
    fn from(v: Option<&str>) -> Self {
        Param::Text(v.map(str::to_owned))
    }
}
impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        Param::Text(v)
    }
}
impl From<Option<&String>> for Param {
    fn from(v: Option<&String>) -> Self {
        Param::Text(v.cloned())
    }
}

/// What knows which engine it talks to.
pub trait EngineOf {
    fn engine_of(&self) -> Engine;
}
impl EngineOf for Engine {
    fn engine_of(&self) -> Engine {
        *self
    }
}
impl EngineOf for &Db {
    fn engine_of(&self) -> Engine {
        self.engine()
    }
}
impl EngineOf for &AnyConnection {
    fn engine_of(&self) -> Engine {
        Engine::of(self)
    }
}
impl EngineOf for &sqlx::Transaction<'_, Any> {
    fn engine_of(&self) -> Engine {
        (&***self).engine_of()
    }
}
impl EngineOf for &AnyPool {
    fn engine_of(&self) -> Engine {
        crate::db::engine_of(self.connect_options().database_url.as_str()).unwrap_or(Engine::Sqlite)
    }
}

/// What an `execute` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Executed {
    rows_affected: u64,
}

impl Executed {
    pub fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// A statement rendered for one engine, collecting its binds.
#[must_use = "a statement does nothing until it is executed or fetched"]
pub struct Stmt {
    sql: &'static Sql,
    engine: Engine,
    rendered: Cow<'static, Rendered>,
    params: Vec<Param>,
}

impl Stmt {
    pub fn bind(mut self, value: impl Into<Param>) -> Self {
        self.params.push(value.into());
        self
    }

    fn query(&self) -> sqlx::query::Query<'_, Any, AnyArguments<'_>> {
        const UNBOUND: Param = Param::Int(None);
        let mut query = sqlx::query(&self.rendered.text);
        match &self.rendered.bind_order {
            Some(order) => {
                for &n in order {
                    query = query.bind_param(self.params.get(n).unwrap_or(&UNBOUND));
                }
            }
            None => {
                for param in &self.params {
                    query = query.bind_param(param);
                }
            }
        }
        query
    }

    pub async fn execute<'c, E>(self, executor: E) -> Result<Executed, sqlx::Error>
    where
        E: Executor<'c, Database = Any>,
    {
        match self.query().execute(executor).await {
            Ok(done) => Ok(Executed {
                rows_affected: done.rows_affected(),
            }),
            Err(e)
                if self.engine == Engine::MySql
                    && self.sql.insert_once()
                    && duplicate_key(&e) == Some(self.sql.mysql_key) =>
            {
                Ok(Executed { rows_affected: 0 })
            }
            Err(e) => Err(e),
        }
    }

    pub async fn fetch_all<'c, E>(self, executor: E) -> Result<Vec<AnyRow>, sqlx::Error>
    where
        E: Executor<'c, Database = Any>,
    {
        self.query().fetch_all(executor).await
    }

    pub async fn fetch_one<'c, E>(self, executor: E) -> Result<AnyRow, sqlx::Error>
    where
        E: Executor<'c, Database = Any>,
    {
        self.query().fetch_one(executor).await
    }

    pub async fn fetch_optional<'c, E>(self, executor: E) -> Result<Option<AnyRow>, sqlx::Error>
    where
        E: Executor<'c, Database = Any>,
    {
        self.query().fetch_optional(executor).await
    }

    pub async fn fetch_all_as<'c, T, E>(self, executor: E) -> Result<Vec<T>, sqlx::Error>
    where
        E: Executor<'c, Database = Any>,
        T: for<'r> FromRow<'r, AnyRow>,
    {
        self.fetch_all(executor)
            .await?
            .iter()
            .map(T::from_row)
            .collect()
    }

    pub async fn fetch_one_as<'c, T, E>(self, executor: E) -> Result<T, sqlx::Error>
    where
        E: Executor<'c, Database = Any>,
        T: for<'r> FromRow<'r, AnyRow>,
    {
        T::from_row(&self.fetch_one(executor).await?)
    }

    pub async fn fetch_optional_as<'c, T, E>(self, executor: E) -> Result<Option<T>, sqlx::Error>
    where
        E: Executor<'c, Database = Any>,
        T: for<'r> FromRow<'r, AnyRow>,
    {
        self.fetch_optional(executor)
            .await?
            .as_ref()
            .map(T::from_row)
            .transpose()
    }

    pub async fn fetch_one_scalar<'c, T, E>(self, executor: E) -> Result<T, sqlx::Error>
    where
        E: Executor<'c, Database = Any>,
        T: for<'r> Decode<'r, Any> + Type<Any>,
    {
        self.fetch_one(executor).await?.try_get(0)
    }

    pub async fn fetch_optional_scalar<'c, T, E>(
        self,
        executor: E,
    ) -> Result<Option<T>, sqlx::Error>
    where
        E: Executor<'c, Database = Any>,
        T: for<'r> Decode<'r, Any> + Type<Any>,
    {
        self.fetch_optional(executor)
            .await?
            .map(|row| row.try_get(0))
            .transpose()
    }

    pub async fn fetch_all_scalar<'c, T, E>(self, executor: E) -> Result<Vec<T>, sqlx::Error>
    where
        E: Executor<'c, Database = Any>,
        T: for<'r> Decode<'r, Any> + Type<Any>,
    {
        self.fetch_all(executor)
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect()
    }
}

trait BindParam<'q> {
    fn bind_param(self, param: &Param) -> Self;
}

impl<'q> BindParam<'q> for sqlx::query::Query<'q, Any, AnyArguments<'q>> {
    fn bind_param(self, param: &Param) -> Self {
        match param {
            Param::Int(v) => self.bind(*v),
            Param::Text(v) => self.bind(v.clone()),
        }
    }
}

/// The unique key named by MySQL's duplicate-key error (1062), without MySQL 8's `table.` prefix.
fn duplicate_key(err: &sqlx::Error) -> Option<&str> {
    let sqlx::Error::Database(db) = err else {
        return None;
    };
    let mysql = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()?;
    if mysql.number() != 1062 {
        return None;
    }
    let key = mysql
        .message()
        .rsplit_once("for key '")?
        .1
        .strip_suffix('\'')?;
    Some(key.rsplit_once('.').map_or(key, |(_, name)| name))
}

/// A text column that may be long. MySQL's `TEXT` types come through the `Any` driver as bytes
/// (only `VARCHAR` comes as text), so a `MEDIUMTEXT` column (reasons, details, webhook bodies,
/// start notes) is read as `Text` rather than `String`; it accepts both, checking UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl Type<Any> for Text {
    fn type_info() -> AnyTypeInfo {
        <String as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        matches!(ty.kind(), AnyTypeInfoKind::Text | AnyTypeInfoKind::Blob)
    }
}

impl<'r> Decode<'r, Any> for Text {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        if value.type_info().kind() == AnyTypeInfoKind::Blob {
            let bytes = <Vec<u8> as Decode<Any>>::decode(value)?;
            return Ok(Text(String::from_utf8(bytes)?));
        }
        Ok(Text(<String as Decode<Any>>::decode(value)?))
    }
}

impl From<Text> for String {
    fn from(text: Text) -> String {
        text.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(text: &'static str, engine: Engine) -> (String, Option<Vec<usize>>) {
        let r = render(Cow::Borrowed(text), engine);
        (r.text.into_owned(), r.bind_order)
    }

    #[test]
    fn numbered_placeholders_pass_through_on_sqlite_and_postgres() {
        let text = "UPDATE t SET a = $2, b = $2 + 1 WHERE k = $1";
        for engine in [Engine::Sqlite, Engine::Postgres] {
            assert_eq!(rendered(text, engine), (text.to_owned(), None));
        }
    }

    #[test]
    fn mysql_gets_one_question_mark_per_use_with_binds_in_use_order() {
        let (text, order) = rendered(
            "UPDATE t SET a = $2, b = $2 + $3 WHERE k = $1 AND $10 > $2",
            Engine::MySql,
        );
        assert_eq!(text, "UPDATE t SET a = ?, b = ? + ? WHERE k = ? AND ? > ?");
        assert_eq!(order, Some(vec![1, 1, 2, 0, 9, 1]));
    }

    #[test]
    fn placeholders_inside_strings_identifiers_and_comments_stay_text() {
        let (text, order) = rendered(
            "SELECT '$1', 'it''s $2', \"$3\", `$4` -- $5\n, $6 /* $7 */ FROM t WHERE a = $1",
            Engine::MySql,
        );
        assert_eq!(
            text,
            "SELECT '$1', 'it''s $2', \"$3\", `$4` -- $5\n, ? /* $7 */ FROM t WHERE a = ?"
        );
        assert_eq!(order, Some(vec![5, 0]));
    }

    #[test]
    fn mysql_casts_to_signed() {
        let (text, _) = rendered(
            "SELECT CAST(COALESCE(SUM(q), 0) AS BIGINT), 'AS BIGINT)' FROM t WHERE a = $1",
            Engine::MySql,
        );
        assert_eq!(
            text,
            "SELECT CAST(COALESCE(SUM(q), 0) AS SIGNED), 'AS BIGINT)' FROM t WHERE a = ?"
        );
        let (text, _) = rendered("SELECT CAST(NULL AS BIGINT)", Engine::Postgres);
        assert_eq!(text, "SELECT CAST(NULL AS BIGINT)");
    }

    #[test]
    fn a_dollar_without_digits_is_text() {
        let (text, order) = rendered("SELECT 'a' || $ || $x FROM t", Engine::MySql);
        assert_eq!(text, "SELECT 'a' || $ || $x FROM t");
        assert_eq!(order, Some(vec![]));
    }

    #[test]
    fn multibyte_text_survives() {
        let (text, _) = rendered("SELECT '订单 $1' , $1 -- 注释", Engine::MySql);
        assert_eq!(text, "SELECT '订单 $1' , ? -- 注释");
    }

    #[test]
    fn insert_once_loses_its_on_conflict_clause_on_mysql_only() {
        let stmt = sql!(
            "INSERT INTO payment_log (payment_no, event) VALUES ($1, $2)
             ON CONFLICT (payment_no, event) DO NOTHING",
            key: "payment_log_payment_event"
        );
        assert_eq!(
            stmt.text_for(Engine::MySql),
            "INSERT INTO payment_log (payment_no, event) VALUES ($1, $2)"
        );
        assert!(stmt.text_for(Engine::Postgres).ends_with("DO NOTHING"));
        assert!(stmt.insert_once());
        assert_eq!(stmt.conflict_columns(), Some(vec!["payment_no", "event"]));
        assert_eq!(stmt.mysql_key, "payment_log_payment_event");

        let upsert = sql!(
            "INSERT INTO catalog (sku, name) VALUES ($1, $2)
             ON CONFLICT (sku) DO UPDATE SET name = excluded.name",
            mysql: "INSERT INTO catalog (sku, name) VALUES ($1, $2)
             ON DUPLICATE KEY UPDATE name = VALUES(name)"
        );
        assert!(!upsert.insert_once());
        assert!(upsert.text_for(Engine::MySql).contains("DUPLICATE KEY"));
        assert!(!sql!("SELECT 1").insert_once());
    }
}
