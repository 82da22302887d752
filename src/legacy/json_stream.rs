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
