//! The objects the host serves: dicts. Their state is the host's; a task reaches it with a
//! [`DictRequest`] on its worker's shared-state socket, answered by one [`DictReply`] from
//! the thread [`serve`] runs for that worker. The host's own handle (`SharedDict`) calls the
//! same methods directly. (Queues and pipes are rings in the shared region: see
//! [`super::ring`].)

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};

use super::SharedObjects;
use crate::wire::{self, DictReply, DictRequest, SharedFailure};

/// A dictionary of byte strings under string keys (`wasi:keyvalue`'s bucket).
#[derive(Debug, Default)]
pub(crate) struct Dict {
    entries: Mutex<BTreeMap<String, Vec<u8>>>,
}

/// How many keys one `list-keys` answers at the most; its cursor goes on from there.
const KEYS_PER_PAGE: usize = 1000;

impl Dict {
    pub(crate) fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A page of keys from `cursor` on, and the cursor of the next page.
    pub(crate) fn keys(&self, cursor: Option<u64>) -> (Vec<String>, Option<u64>) {
        let entries = self.lock();
        let start = cursor.unwrap_or(0) as usize;
        let keys: Vec<String> = entries
            .keys()
            .skip(start)
            .take(KEYS_PER_PAGE)
            .cloned()
            .collect();
        let next = (start + keys.len() < entries.len()).then(|| (start + keys.len()) as u64);
        (keys, next)
    }

    /// Adds `delta` to the number stored as decimal text under `key` (0 if absent).
    pub(crate) fn increment(&self, key: &str, delta: u64) -> Result<u64, SharedFailure> {
        let mut entries = self.lock();
        let current = match entries.get(key) {
            None => 0,
            Some(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    SharedFailure::Other(format!("the value of `{key}` is not a decimal number"))
                })?,
        };
        let new = current
            .checked_add(delta)
            .ok_or_else(|| SharedFailure::Other(format!("`{key}` would overflow u64")))?;
        entries.insert(key.to_string(), new.to_string().into_bytes());
        Ok(new)
    }
}

/// Answers one worker's requests until its socket closes (the worker ended or was killed).
pub(crate) fn serve(objects: Arc<SharedObjects>, socket: UnixStream) {
    let Ok(mut output) = socket.try_clone() else {
        return;
    };
    let mut input = BufReader::new(crate::spin::SpinRead(socket));
    let mut buf = Vec::new();
    let mut frame = Vec::new();
    while let Ok(Some(request)) = wire::read_frame::<DictRequest>(&mut input, &mut buf) {
        let reply = answer(&objects, &request);
        if wire::encode_frame(&reply, &mut frame).is_err() || output.write_all(&frame).is_err() {
            return;
        }
    }
}

/// Runs one dict request (from a worker's socket, or over a remote worker's link).
pub(crate) fn answer(objects: &SharedObjects, request: &DictRequest) -> DictReply {
    let result = match request {
        DictRequest::Get { dict, key } => objects
            .dict(*dict)
            .map(|d| DictReply::Maybe(d.lock().get(key).cloned())),
        DictRequest::Set { dict, key, value } => objects.dict(*dict).map(|d| {
            d.lock().insert(key.clone(), value.clone());
            DictReply::Done
        }),
        DictRequest::Delete { dict, key } => objects.dict(*dict).map(|d| {
            d.lock().remove(key);
            DictReply::Done
        }),
        DictRequest::Exists { dict, key } => objects
            .dict(*dict)
            .map(|d| DictReply::Flag(d.lock().contains_key(key))),
        DictRequest::Keys { dict, cursor } => objects.dict(*dict).map(|d| {
            let (keys, cursor) = d.keys(*cursor);
            DictReply::Keys { keys, cursor }
        }),
        DictRequest::Increment { dict, key, delta } => objects
            .dict(*dict)
            .and_then(|d| d.increment(key, *delta))
            .map(DictReply::Number),
        DictRequest::GetMany { dict, keys } => objects.dict(*dict).map(|d| {
            let entries = d.lock();
            DictReply::Many(
                keys.iter()
                    .map(|key| entries.get(key).map(|v| (key.clone(), v.clone())))
                    .collect(),
            )
        }),
        DictRequest::SetMany { dict, entries } => objects.dict(*dict).map(|d| {
            let mut map = d.lock();
            for (key, value) in entries {
                map.insert(key.clone(), value.clone());
            }
            DictReply::Done
        }),
        DictRequest::DeleteMany { dict, keys } => objects.dict(*dict).map(|d| {
            let mut map = d.lock();
            for key in keys {
                map.remove(key);
            }
            DictReply::Done
        }),
    };
    result.unwrap_or_else(DictReply::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increment_keeps_decimal_text() {
        let dict = Dict::default();
        assert_eq!(dict.increment("n", 2).unwrap(), 2);
        assert_eq!(dict.increment("n", 3).unwrap(), 5);
        assert_eq!(dict.lock().get("n").unwrap(), b"5");
        dict.lock().insert("s".into(), b"text".to_vec());
        assert!(dict.increment("s", 1).is_err());
    }

    #[test]
    fn keys_come_in_pages_with_a_cursor() {
        let dict = Dict::default();
        for i in 0..1500 {
            dict.lock().insert(format!("k{i:04}"), Vec::new());
        }
        let (first, cursor) = dict.keys(None);
        assert_eq!(first.len(), 1000);
        let (rest, end) = dict.keys(cursor);
        assert_eq!(rest.len(), 500);
        assert_eq!(end, None);
    }
}
