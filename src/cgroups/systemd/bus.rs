//! The D-Bus conversation with a systemd manager, over the bus it is on.
//!
//! zbus starts threads, so this runs only inside `sys::in_subprocess`: exprun
//! itself must stay single-threaded to clone the container's init. cgroups-rs's
//! own systemd client was not used: it dials only the system bus (never a
//! user's), keeps its proxy private, and returns before systemd has finished
//! the job, while a scope must exist (and hold exprun) before anything is
//! written into it.

use std::path::Path;

use zbus::blocking::{Connection, MessageIterator};
use zbus::message::Type;
use zbus::zvariant::{OwnedObjectPath, Value};

use super::Prop;

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// A connection to one manager, subscribed to its job signals.
pub(super) struct Client {
    conn: Connection,
    /// Every JobRemoved signal from before the first request: a job's end
    /// cannot be missed even when its signal comes before the reply naming it.
    messages: MessageIterator,
}

impl Client {
    pub(super) fn connect(socket: &Path) -> Result<Self, String> {
        let address = format!("unix:path={}", socket.display());
        let conn = zbus::blocking::connection::Builder::address(address.as_str())
            .and_then(|b| b.build())
            .map_err(|e| format!("connecting: {e}"))?;
        let rule = "type='signal',sender='org.freedesktop.systemd1',interface='org.freedesktop.systemd1.Manager',\
                    member='JobRemoved'";
        let messages = MessageIterator::for_match_rule(rule, &conn, None).map_err(|e| format!("AddMatch: {e}"))?;
        let client = Self { conn, messages };
        client.call("Subscribe", &())?;
        Ok(client)
    }

    /// `StartTransientUnit(unit, "fail", props, [])`, then wait for its job.
    pub(super) fn start_transient_scope(&mut self, unit: &str, props: Vec<(&str, Prop)>) -> Result<(), String> {
        let props: Vec<(&str, Value<'_>)> = props.into_iter().map(|(n, p)| (n, value(p))).collect();
        let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
        let job = self.job(self.call("StartTransientUnit", &(unit, "fail", props, aux))?)?;
        self.wait_for(&job)
    }

    /// `SetUnitProperties(unit, runtime = true, props)`.
    pub(super) fn set_unit_properties(&mut self, unit: &str, props: Vec<(&str, Prop)>) -> Result<(), String> {
        let props: Vec<(&str, Value<'_>)> = props.into_iter().map(|(n, p)| (n, value(p))).collect();
        self.call("SetUnitProperties", &(unit, true, props)).map(drop)
    }

    /// `StopUnit(unit, "replace")`, then wait for its job; no such unit is done.
    pub(super) fn stop_unit(&mut self, unit: &str) -> Result<(), String> {
        match self.call("StopUnit", &(unit, "replace")) {
            Ok(reply) => {
                let job = self.job(reply)?;
                self.wait_for(&job)
            }
            Err(e) if e.contains("NoSuchUnit") => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn call<B>(&self, method: &str, body: &B) -> Result<zbus::Message, String>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.conn.call_method(Some(DEST), PATH, Some(MANAGER), method, body).map_err(|e| format!("{method}: {e}"))
    }

    fn job(&self, reply: zbus::Message) -> Result<OwnedObjectPath, String> {
        reply.body().deserialize::<OwnedObjectPath>().map_err(|e| format!("reading the job's path: {e}"))
    }

    /// Wait for `JobRemoved` of `job`; any result but "done" is an error.
    fn wait_for(&mut self, job: &OwnedObjectPath) -> Result<(), String> {
        for msg in &mut self.messages {
            let msg = msg.map_err(|e| format!("waiting for job {}: {e}", job.as_str()))?;
            let header = msg.header();
            if header.message_type() != Type::Signal || header.member().map(|m| m.as_str()) != Some("JobRemoved") {
                continue;
            }
            let Ok((_, path, unit, result)) = msg.body().deserialize::<(u32, OwnedObjectPath, String, String)>()
            else {
                continue;
            };
            if path == *job {
                return match result.as_str() {
                    "done" => Ok(()),
                    other => Err(format!("the job for {unit} ended with result {other:?} (see journalctl -u {unit})")),
                };
            }
        }
        Err(format!("the connection closed before job {} ended", job.as_str()))
    }
}

fn value(p: Prop) -> Value<'static> {
    match p {
        Prop::Bool(b) => Value::from(b),
        Prop::U64(n) => Value::from(n),
        Prop::Str(s) => Value::from(s),
        Prop::Mask(bytes) => Value::from(bytes),
        Prop::Pids(pids) => Value::from(pids),
    }
}
