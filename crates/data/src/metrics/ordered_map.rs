//! Serde helper (`#[serde(with = "...")]`) that writes a `Vec<(String, T)>` as a JSON object,
//! keeping the vector's order (the task order of the configuration), and reads it back in the
//! file's order.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::fmt;
use std::marker::PhantomData;

pub(crate) fn serialize<T: Serialize, Z: Serializer>(
    entries: &[(String, T)],
    serializer: Z,
) -> Result<Z::Ok, Z::Error> {
    let mut map = serializer.serialize_map(Some(entries.len()))?;
    for (name, value) in entries {
        map.serialize_entry(name, value)?;
    }
    map.end()
}

struct EntriesVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for EntriesVisitor<T> {
    type Value = Vec<(String, T)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map from task name to metrics")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut access: M) -> Result<Self::Value, M::Error> {
        let mut out = Vec::new();
        while let Some(entry) = access.next_entry::<String, T>()? {
            out.push(entry);
        }
        Ok(out)
    }
}

pub(crate) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(String, T)>, D::Error> {
    deserializer.deserialize_map(EntriesVisitor(PhantomData))
}
