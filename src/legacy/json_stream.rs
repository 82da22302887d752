//! A JSON object read one member at a time: each member's value is parsed on its own and
//! handed over, so a store of any size is read in the memory of its largest member.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What to do with the members of an object.
pub enum Members<'f> {
    /// Hand each member to the callback.
    Each(&'f mut dyn FnMut(String, Value) -> anyhow::Result<()>),
    /// Route the members named here to their own handling; skip the others.
    Sections(Vec<(&'static str, Members<'f>)>),
}

/// Reads the object in `reader` member by member. A failing callback stops the reading and
/// its error is returned as `Err(Ok(error))`; a syntax error is `Err(Err(error))`.
pub fn read_object(
    reader: impl Read,
    members: Members<'_>,
) -> Result<(), Result<anyhow::Error, serde_json::Error>> {
    let mut stopped = None;
    let mut de = serde_json::Deserializer::from_reader(reader);
    let result = ObjectSeed {
        members,
        stopped: &mut stopped,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match (result, stopped) {
        (_, Some(e)) => Err(Ok(e)),
        (Err(e), None) => Err(Err(e)),
        (Ok(()), None) => Ok(()),
    }
}

struct ObjectSeed<'f, 's> {
    members: Members<'f>,
    stopped: &'s mut Option<anyhow::Error>,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self.members {
            Members::Each(each) => {
                while let Some(key) = map.next_key::<String>()? {
                    let value: Value = map.next_value()?;
                    if let Err(e) = each(key, value) {
                        *self.stopped = Some(e);
                        return Err(de::Error::custom("stopped by the caller"));
                    }
                }
            }
            Members::Sections(mut sections) => {
                while let Some(key) = map.next_key::<String>()? {
                    match sections.iter().position(|(name, _)| *name == key) {
                        Some(i) => {
                            let (_, members) = sections.swap_remove(i);
                            map.next_value_seed(ObjectSeed {
                                members,
                                stopped: self.stopped,
                            })?;
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A store's JSON file, opened for [`read_object`], and how far through it the reading is.
pub struct JsonFile {
    pub reader: std::io::BufReader<Counting<std::fs::File>>,
    done: Arc<AtomicU64>,
    total: u64,
}

/// How long [`JsonFile::open`] waits for a store that is being written to settle.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

impl JsonFile {
    /// A snapshot of the store, read from a private copy.
    ///
    /// The agents rewrite their store in place on every write (truncate, then `json.dump`;
    /// `specs/legacy-agents.md`), so a reader can catch it half written, or read the start
    /// of one version and the end of the next. The file is copied, read again, and the copy
    /// taken only when both readings agree and it holds one whole JSON value; while the
    /// agent is writing, again after a pause. A file that stays cut off (an agent that died
    /// mid-write, or whose saves fail) is handed over as it is, and its reader reports it.
    ///
    /// # Errors
    /// The file cannot be read, or no private copy can be made.
    pub fn open(path: &std::path::Path) -> Result<JsonFile, super::LegacyError> {
        let io = |source| super::LegacyError::Io {
            path: path.display().to_string(),
            source,
        };
        let deadline = std::time::Instant::now() + SETTLE;
        let mut pause = std::time::Duration::from_millis(5);
        let copy = loop {
            let (mut copy, copied) = snapshot(path).map_err(io)?;
            let again = read_through(std::fs::File::open(path).map_err(io)?, None).map_err(io)?;
            if (copied == again && complete(&mut copy).map_err(io)?)
                || std::time::Instant::now() >= deadline
            {
                break copy;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(200));
        };
        let total = copy.metadata().map_err(io)?.len();
        let (counting, done) = Counting::new(copy);
        Ok(JsonFile {
            reader: std::io::BufReader::new(counting),
            done,
            total,
        })
    }

    /// A handle on the position, for the callbacks while the reader is borrowed.
    pub fn position(&self) -> impl Fn() -> super::Position + use<> {
        let (done, total) = (self.done.clone(), self.total);
        move || super::Position {
            done: done.load(Ordering::Relaxed),
            total,
        }
    }
}

/// What one reading of a file saw: a hash of its bytes.
type Digest = u64;

/// Whether `copy` holds one whole JSON value (a store cut off mid-write does not); read
/// through without keeping anything, then rewound.
fn complete(copy: &mut std::fs::File) -> std::io::Result<bool> {
    use serde::Deserializer as _;
    use std::io::Seek;
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(&mut *copy));
    let whole = de.deserialize_ignored_any(IgnoredAny).is_ok() && de.end().is_ok();
    copy.seek(std::io::SeekFrom::Start(0))?;
    Ok(whole)
}

/// A private copy of `path` (an unnamed temporary file, positioned at its start) and the
/// digest of what was copied.
fn snapshot(path: &std::path::Path) -> std::io::Result<(std::fs::File, Digest)> {
    use std::io::Seek;
    let mut copy = tempfile::tempfile()?;
    let digest = read_through(std::fs::File::open(path)?, Some(&mut copy))?;
    copy.seek(std::io::SeekFrom::Start(0))?;
    Ok((copy, digest))
}

/// Reads `file` to its end, writing what it reads to `copy` if given.
fn read_through(
    mut file: std::fs::File,
    mut copy: Option<&mut std::fs::File>,
) -> std::io::Result<Digest> {
    use std::io::Write;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.digest());
        }
        hasher.update(&buf[..n]);
        if let Some(copy) = copy.as_mut() {
            copy.write_all(&buf[..n])?;
        }
    }
}

/// [`read_object`]'s outcome as a store reader's: the caller's error, or a format error
/// naming the file and the agent whose store it should be.
pub fn finish(
    result: Result<(), Result<anyhow::Error, serde_json::Error>>,
    path: &std::path::Path,
    what: &'static str,
) -> Result<(), super::LegacyError> {
    result.map_err(|e| match e {
        Ok(stopped) => super::LegacyError::Stopped(stopped),
        Err(syntax) => super::format_error(path, what, syntax),
    })
}

/// A reader that counts the bytes read through it (for progress).
pub struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R> Counting<R> {
    pub fn new(inner: R) -> (Counting<R>, Arc<AtomicU64>) {
        let count = Arc::new(AtomicU64::new(0));
        (
            Counting {
                inner,
                count: count.clone(),
            },
            count,
        )
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
