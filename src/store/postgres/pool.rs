//! The connections of the PostgreSQL store: an r2d2 pool whose connections keep the statements
//! they prepared, so that a statement that runs on every request is parsed and planned once per
//! connection, not once per run.

use postgres::tls::{MakeTlsConnect, TlsConnect};
use postgres::types::Type;
use postgres::{Client, Config, Socket, Statement};
use r2d2_postgres::r2d2;
use std::collections::HashMap;

/// A connection and the statements prepared on it, by their text.
pub(super) struct Connection {
    pub(super) client: Client,
    prepared: HashMap<&'static str, Statement>,
}

impl Connection {
    /// `sql` with parameters of `types`, prepared on this connection the first time it is asked for.
    pub(super) fn statement(&mut self, sql: &'static str, types: &[Type]) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare_typed(sql, types)?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// Opens [`Connection`]s for r2d2 (as `r2d2_postgres` does for bare clients).
#[derive(Debug)]
pub(super) struct Manager<T> {
    config: Config,
    tls: T,
}

impl<T> Manager<T> {
    pub(super) fn new(config: Config, tls: T) -> Manager<T> {
        Manager { config, tls }
    }
}

impl<T> r2d2::ManageConnection for Manager<T>
where
    T: MakeTlsConnect<Socket> + Clone + 'static + Sync + Send,
    T::TlsConnect: Send,
    T::Stream: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    type Connection = Connection;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Connection, postgres::Error> {
        Ok(Connection { client: self.config.connect(self.tls.clone())?, prepared: HashMap::new() })
    }

    fn is_valid(&self, conn: &mut Connection) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.client.is_closed()
    }
}
