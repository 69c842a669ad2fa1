//! A fresh PostgreSQL database per test, with blocking helpers for assertions.

use tokio_postgres::{types::ToSql, Client, NoTls, Row};

/// A database created for one test and dropped with it.
pub struct Database {
    /// Database name.
    pub name: String,
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
}

const ADMIN: &str = "host=127.0.0.1 user=postgres";

impl Database {
    /// Creates `apg_<prefix>_<unique>` on the local server.
    pub fn create(prefix: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let name = format!(
            "apg_{prefix}_{}_{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        );
        runtime.block_on(async {
            let admin = connect(ADMIN).await;
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        });
        Self {
            name,
            runtime,
            client: None,
        }
    }

    /// libpq connection string for this database (for the hub's config).
    pub fn url(&self) -> String {
        format!("{ADMIN} dbname={}", self.name)
    }

    /// Runs a query and returns its rows. A missing table (the hub has not migrated yet)
    /// gives an empty result.
    pub fn rows(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<Row> {
        if self.client.is_none() {
            let url = self.url();
            self.client = Some(self.runtime.block_on(connect(&url)));
        }
        let client = self.client.as_ref().expect("connected");
        match self.runtime.block_on(client.query(sql, params)) {
            Ok(rows) => rows,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                Vec::new()
            }
            Err(e) => panic!("query {sql:?} on {}: {}", self.name, describe(&e)),
        }
    }

    /// Runs `sql` on the server's `postgres` database (for what cannot be done from inside
    /// this database, such as refusing connections to it).
    pub fn admin(&mut self, sql: &str) {
        self.runtime.block_on(async {
            let admin = connect(ADMIN).await;
            admin
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql:?}: {}", describe(&e)));
        });
    }

    /// The first column of the first row as a count (0 when there is no row).
    pub fn count(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> i64 {
        self.rows(sql, params)
            .first()
            .map_or(0, |r| r.get::<_, i64>(0))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.client = None;
        let name = self.name.clone();
        self.runtime.block_on(async {
            let admin = connect(ADMIN).await;
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        });
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map_or_else(
        || e.to_string(),
        |d| format!("{}: {}", d.severity(), d.message()),
    )
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} (trust auth expected): {e}"));
    tokio::spawn(connection);
    client
}
