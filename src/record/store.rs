//! The parts of run records that repeat from run to run, stored once.
//!
//! A sweep makes thousands of runs of one image with one set of options: their
//! runtime specs, host facts, image and determinism profile are the same but
//! for the run id in a few paths, and their inputs are the same data.
//! [`RunRecord::write`] stores each such field ([`SHARED`]; the cgroup plan,
//! which names the run's own cgroups, stays), and the entries of a long input
//! or output tree ([`ENTRIES`]), as an object in `runs/.objects/sha256/<hex>`, the field's
//! compact JSON with every occurrence of the run id written [`RUN_ID`], and
//! puts `{"$object": "sha256:<hex>"}` in record.json in its place. A field
//! whose JSON holds [`RUN_ID`] itself stays in record.json.
//!
//! Reading puts the field back: the object is opened without following
//! links, must be a regular file, must hash to its name, and counts towards
//! the same size limit as the record. Objects are written before the record
//! that names them; `runs rm` and `runs prune` remove those no record names
//! ([`collect`]) under the index's lock, which every record writer holds
//! shared from its first object to its index line.
//!
//! [`RunRecord::write`]: super::RunRecord::write

use std::cell::RefCell;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize as _;

use super::files::{FileEntry, TreeDigest};

use crate::digest::Digest;
use crate::fsutil;

/// The objects directory, in `runs/`.
pub const OBJECTS: &str = ".objects";
/// What stands for the run id in an object.
pub const RUN_ID: &str = "{run_id}";
/// The key of a reference: `{"$object": "sha256:<hex>"}`.
pub const REF_KEY: &str = "$object";
/// The record fields stored as objects.
pub const SHARED: [&str; 4] = ["spec", "host", "image", "determinism"];
/// Of each input's and output's tree, the list of entries is stored as an
/// object when its JSON is longer than this: inputs shared by a sweep's
/// runs are then stored once, and record.json stays small whatever the data.
pub const ENTRIES: usize = 1024;

/// Errors of the object store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing an object failed.
    #[error("{op} object {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The object file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A record names an object that is not there.
    #[error("run {run}: its record names object {digest}, which is missing from {dir}; the record cannot be read whole (was the runs directory copied without .objects?)")]
    Missing {
        /// The run.
        run: String,
        /// The object.
        digest: Digest,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// An object is not what its name says.
    #[error("run {run}: object {path} {why}; it was changed after exprun wrote it, so the record cannot be trusted (remove the run with exprun runs rm)")]
    Bad {
        /// The run.
        run: String,
        /// The object file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A reference in a record is malformed.
    #[error("run {run}: {why}")]
    Reference {
        /// The run.
        run: String,
        /// What is wrong.
        why: String,
    },
}

/// The objects of the records in `runs`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store of `runs` (its directory made on the first write).
    pub fn of(runs: &Path) -> Self {
        Self { dir: runs.join(OBJECTS).join("sha256") }
    }

    /// The directory objects are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join(d.hex())
    }

    /// Store `bytes` unless an object of that digest is there; its digest.
    /// Written to a temporary file, synced when `durable`, renamed into place:
    /// a reader sees the whole object or none.
    pub fn put(&self, bytes: &[u8], durable: bool) -> Result<Digest, Error> {
        let digest = Digest::of_bytes(bytes);
        let path = self.path(&digest);
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64) {
            return Ok(digest);
        }
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { op, path, source }
        };
        fsutil::create_private_dir_all(&self.dir).map_err(io("making the directory of", &path))?;
        let tmp = self.dir.join(format!(".{}.tmp-{}", digest.hex(), fsutil::random_hex(6)));
        let written = (|| {
            let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(bytes)?;
            if durable {
                f.sync_all()?;
            }
            fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(io("writing", &path))?;
        Ok(digest)
    }

    /// The bytes of object `digest`, at most `limit` of them, checked against
    /// its name; for run `run`.
    pub fn get(&self, run: &str, digest: &Digest, limit: u64) -> Result<Vec<u8>, GetError> {
        let path = self.path(digest);
        let bad = |why: String| GetError::Store(Error::Bad { run: run.into(), path: path.clone(), why });
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(GetError::Store(Error::Missing {
                    run: run.into(),
                    digest: digest.clone(),
                    dir: self.dir.clone(),
                }))
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(bad("is a symbolic link".into())),
            Err(source) => return Err(GetError::Store(Error::Io { op: "opening", path, source })),
        };
        let meta =
            file.metadata().map_err(|source| Error::Io { op: "reading", path: path.clone(), source })?;
        if !meta.is_file() {
            return Err(bad("is not a regular file".into()));
        }
        if meta.len() > limit {
            return Err(GetError::TooBig { path, size: meta.len() });
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(limit + 1).read_to_end(&mut bytes).map_err(|source| Error::Io {
            op: "reading",
            path: path.clone(),
            source,
        })?;
        if bytes.len() as u64 > limit {
            return Err(GetError::TooBig { path, size: bytes.len() as u64 });
        }
        let have = Digest::of_bytes(&bytes);
        if &have != digest {
            return Err(bad(format!("does not match its name: its content is {have}")));
        }
        Ok(bytes)
    }

    /// Remove the objects `keep` (given the hex of each digest) says no
    /// record names. Call with the index lock held exclusively (no record is
    /// being written). The digests removed.
    pub fn collect(&self, keep: impl Fn(&str) -> bool) -> Result<Vec<Digest>, Error> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(Error::Io { op: "listing", path: self.dir.clone(), source }),
        };
        let mut removed = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            // Temporary files of a writer that died go too: none is live under the lock.
            let digest = Digest::from_hex(&name).ok();
            if digest.as_ref().is_some_and(|d| keep(d.hex())) {
                continue;
            }
            let path = e.path();
            match fs::remove_file(&path) {
                Ok(()) => removed.extend(digest),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Io { op: "removing", path, source }),
            }
        }
        Ok(removed)
    }
}

/// Why an object could not be had.
#[derive(Debug)]
pub enum GetError {
    /// Missing, unreadable or not what its name says.
    Store(Error),
    /// Over the record size limit.
    TooBig {
        /// The object file.
        path: PathBuf,
        /// Its size, or what was read of it.
        size: u64,
    },
}

impl From<Error> for GetError {
    fn from(e: Error) -> Self {
        GetError::Store(e)
    }
}

/// The object form of a field's JSON for run `run_id`: the run id written
/// [`RUN_ID`]; `None` when the text holds [`RUN_ID`] already (it could not be
/// told apart), and the field stays in the record.
pub fn template(json: &str, run_id: &str) -> Option<String> {
    if json.contains(RUN_ID) || run_id.is_empty() {
        return None;
    }
    Some(json.replace(run_id, RUN_ID))
}

/// The field's JSON back from its object form.
pub fn instantiate(object: &str, run_id: &str) -> String {
    object.replace(RUN_ID, run_id)
}

/// A reference as it stands in record.json.
pub fn reference(d: &Digest) -> serde_json::Value {
    serde_json::json!({ REF_KEY: d.to_string() })
}

/// What a record being read resolves its references against.
struct Context {
    store: Store,
    run: String,
    /// Bytes the record may still take, objects included.
    left: u64,
    /// The objects named.
    named: Vec<Digest>,
    /// Why resolving failed.
    error: Option<GetError>,
}

thread_local! {
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// What [`reading`] learned besides the parsed value.
pub struct Resolved {
    /// The objects the record named.
    pub named: Vec<Digest>,
    /// Why a reference could not be resolved, when it could not.
    pub error: Option<GetError>,
}

/// Run `parse` (a record's deserialisation) with references resolved from
/// `store` for run `run`, the objects taking at most `left` bytes in all.
pub fn reading<T>(store: Store, run: &str, left: u64, parse: impl FnOnce() -> T) -> (T, Resolved) {
    CONTEXT.with(|c| {
        *c.borrow_mut() = Some(Context { store, run: run.into(), left, named: Vec::new(), error: None })
    });
    let out = parse();
    let ctx = CONTEXT.with(|c| c.borrow_mut().take());
    let resolved = match ctx {
        Some(c) => Resolved { named: c.named, error: c.error },
        None => Resolved { named: Vec::new(), error: None },
    };
    (out, resolved)
}

fn resolve<T: DeserializeOwned, E: de::Error>(digest: &str) -> Result<T, E> {
    CONTEXT.with(|c| {
        let mut guard = c.borrow_mut();
        let Some(ctx) = guard.as_mut() else {
            return Err(E::custom("names a shared object, but it is not in a runs directory's record.json"));
        };
        let fail = |ctx: &mut Context, e: GetError| {
            let msg = match &e {
                GetError::Store(s) => s.to_string(),
                GetError::TooBig { path, size } => format!("object {} is {size} bytes", path.display()),
            };
            ctx.error.get_or_insert(e);
            E::custom(msg)
        };
        let digest: Digest = match digest.parse() {
            Ok(d) => d,
            Err(e) => {
                let why = format!("its record names object {digest:?}, not a digest: {e}");
                return Err(fail(ctx, GetError::Store(Error::Reference { run: ctx.run.clone(), why })));
            }
        };
        let bytes = match ctx.store.get(&ctx.run, &digest, ctx.left) {
            Ok(b) => b,
            Err(e) => return Err(fail(ctx, e)),
        };
        ctx.left -= bytes.len() as u64;
        ctx.named.push(digest.clone());
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => instantiate(t, &ctx.run),
            Err(_) => {
                let path = ctx.store.path(&digest);
                let e = Error::Bad { run: ctx.run.clone(), path, why: "is not UTF-8 JSON".into() };
                return Err(fail(ctx, GetError::Store(e)));
            }
        };
        serde_json::from_str(&text).map_err(|e| {
            let path = ctx.store.path(&digest);
            let e = Error::Bad {
                run: ctx.run.clone(),
                path,
                why: format!("is not the field it stands for: {e}"),
            };
            fail(ctx, GetError::Store(e))
        })
    })
}

/// `deserialize_with` of a field that may be stored as an object: the field's
/// value in place, or a reference to it.
pub fn field<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<T, D::Error> {
    d.deserialize_map(Field(std::marker::PhantomData))
}

/// [`field`] of an optional field.
pub fn optional<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    struct Opt<T>(std::marker::PhantomData<T>);
    impl<'de, T: DeserializeOwned> Visitor<'de> for Opt<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("null, an object, or a reference to one")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            field(d).map(Some)
        }
    }
    d.deserialize_option(Opt(std::marker::PhantomData))
}

struct Field<T>(std::marker::PhantomData<T>);

impl<'de, T: DeserializeOwned> Visitor<'de> for Field<T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object, or a reference to one")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let first: Option<String> = map.next_key()?;
        if first.as_deref() == Some(REF_KEY) {
            let digest: String = map.next_value()?;
            if map.next_key::<de::IgnoredAny>()?.is_some() {
                return Err(de::Error::custom(format!("a reference has only the key {REF_KEY:?}")));
            }
            return resolve(&digest);
        }
        T::deserialize(de::value::MapAccessDeserializer::new(Replay { first, rest: map }))
    }
}

/// A map with its first key read already: that key, then the rest.
struct Replay<A> {
    first: Option<String>,
    rest: A,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Replay<A> {
    type Error = A::Error;
    fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        match self.first.take() {
            Some(k) => seed.deserialize(k.into_deserializer()).map(Some),
            None => self.rest.next_key_seed(seed),
        }
    }
    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.rest.next_value_seed(seed)
    }
}

/// `deserialize_with` of a data record's tree: its `entries`, the list that
/// grows with the data, in place or a reference ([`ENTRIES`]); the rest of
/// the tree is small and always in place.
pub fn tree<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TreeDigest>, D::Error> {
    struct Opt;
    impl<'de> Visitor<'de> for Opt {
        type Value = Option<TreeDigest>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("null or a tree")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(Tree).map(Some)
        }
    }
    d.deserialize_option(Opt)
}

struct Tree;

impl<'de> Visitor<'de> for Tree {
    type Value = TreeDigest;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a tree")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TreeDigest, A::Error> {
        let mut rest = serde_json::Map::new();
        let mut entries: Option<Vec<FileEntry>> = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "entries" {
                entries = Some(map.next_value_seed(Entries)?);
            } else {
                rest.insert(key, map.next_value()?);
            }
        }
        let entries = entries.ok_or_else(|| de::Error::missing_field("entries"))?;
        rest.insert("entries".into(), serde_json::Value::Array(Vec::new()));
        let mut tree: TreeDigest =
            serde_json::from_value(serde_json::Value::Object(rest)).map_err(de::Error::custom)?;
        tree.entries = entries;
        Ok(tree)
    }
}

/// A tree's entries: the list, or a reference to it.
struct Entries;

impl<'de> de::DeserializeSeed<'de> for Entries {
    type Value = Vec<FileEntry>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Entries {
    type Value = Vec<FileEntry>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of entries, or a reference to one")
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Vec::<FileEntry>::deserialize(de::value::SeqAccessDeserializer::new(seq))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        match map.next_key::<String>()? {
            Some(k) if k == REF_KEY => {}
            _ => return Err(de::Error::custom(format!("a reference has the key {REF_KEY:?}"))),
        }
        let digest: String = map.next_value()?;
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom(format!("a reference has only the key {REF_KEY:?}")));
        }
        resolve(&digest)
    }
}

/// The objects a record names, from its stored JSON (record.json as written).
pub fn named_in(stored: &serde_json::Value) -> Vec<Digest> {
    let digest = |v: Option<&serde_json::Value>| v?.get(REF_KEY)?.as_str()?.parse().ok();
    let fields = SHARED.iter().filter_map(|k| digest(stored.get(*k)));
    let trees = ["inputs", "outputs"]
        .iter()
        .filter_map(|k| stored.get(*k)?.as_array())
        .flatten()
        .filter_map(|d| digest(d.pointer("/tree/entries")));
    fields.chain(trees).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_gives_back_what_it_was_made_from() {
        let id = "0123456789abcdef0123456789abcdef";
        let json = format!(r#"{{"root":"/r/containers/{id}/rootfs","x":"{id}{id}","y":"run_id}}"}}"#);
        let t = template(&json, id).unwrap();
        assert!(!t.contains(id), "{t}");
        assert_eq!(instantiate(&t, id), json);
        assert_eq!(template(r#"{"a":"{run_id}"}"#, id), None, "a field holding the placeholder stays inline");
    }

    #[test]
    fn a_field_reads_in_place_or_by_reference() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct S {
            #[serde(deserialize_with = "field")]
            a: std::collections::BTreeMap<String, String>,
            #[serde(deserialize_with = "optional")]
            b: Option<std::collections::BTreeMap<String, u32>>,
        }
        let t = tempfile::tempdir().unwrap();
        let store = Store::of(t.path());
        let d = store.put(br#"{"p":"/x/{run_id}/y"}"#, false).unwrap();
        let text = format!(r#"{{"a":{{"$object":"{d}"}},"b":{{"n":1}}}}"#);
        let (s, r) = reading(store.clone(), "RID", 1 << 20, || serde_json::from_str::<S>(&text));
        let s = s.unwrap();
        assert_eq!(s.a["p"], "/x/RID/y");
        assert_eq!(s.b.unwrap()["n"], 1);
        assert_eq!(r.named, std::slice::from_ref(&d));
        let (s, _) = reading(store.clone(), "RID", 1 << 20, || {
            serde_json::from_str::<S>(r#"{"a":{"k":"v"},"b":null}"#)
        });
        assert_eq!(s.unwrap().b, None);
        // Tampered: refused by name.
        fs::write(store.dir().join(d.hex()), br#"{"p":"other"}"#).unwrap();
        let (s, r) = reading(store.clone(), "RID", 1 << 20, || serde_json::from_str::<S>(&text));
        assert!(s.is_err());
        let e = match r.error {
            Some(GetError::Store(e)) => e.to_string(),
            other => panic!("{other:?}"),
        };
        assert!(e.contains("does not match its name") && e.contains("run RID"), "{e}");
        // Outside a runs directory, a reference is refused.
        assert!(serde_json::from_str::<S>(&text).is_err());
    }

    #[test]
    fn collect_keeps_what_is_named() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::of(t.path());
        let a = store.put(b"a", false).unwrap();
        let b = store.put(b"b", false).unwrap();
        assert_eq!(store.collect(|hex| hex == a.hex()).unwrap(), [b]);
        assert!(store.get("r", &a, 10).is_ok());
    }
}
