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

impl JsonFile {
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &std::path::Path) -> Result<JsonFile, super::LegacyError> {
        let io = |source| super::LegacyError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let total = file.metadata().map_err(io)?.len();
        let (counting, done) = Counting::new(file);
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
