//! Entry points for the fuzz targets in `fuzz/` (not part of the public API): each feeds
//! untrusted bytes to a decoder that must answer with a value or an error, never a panic.

/// Decodes `bytes` as a frame of either direction of the wire protocol.
pub fn wire_decode(bytes: &[u8]) {
    let mut buf = Vec::new();
    let _ = crate::wire::read_frame::<crate::wire::HostMsg>(&mut &bytes[..], &mut buf);
    let _ = crate::wire::read_frame::<crate::wire::WorkerMsg>(&mut &bytes[..], &mut buf);
    let _ = crate::wire::decode::<crate::wire::HostMsg>(bytes);
    // Packed numbers are unpacked item by item after decoding: as many as a chunk may hold.
    if let Ok(crate::wire::WorkerMsg::Results { results, .. }) = crate::wire::decode(bytes) {
        results.items().take(1 << 16).for_each(drop);
    }
}

/// Decodes `bytes` as wire values, and as JSON checked against a few WIT types.
pub fn values_decode(bytes: &[u8]) {
    use crate::values::WitType;
    use crate::values::json::from_json;
    let _ = postcard::from_bytes::<Vec<crate::Value>>(bytes);
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes) {
        let types = [
            WitType::List(Box::new(WitType::Option(Box::new(WitType::Char)))),
            WitType::Record(vec![
                ("a-b".into(), WitType::U8),
                ("c".into(), WitType::Flags(vec!["x".into()])),
            ]),
            WitType::Variant(vec![
                (
                    "v".into(),
                    Some(WitType::Tuple(vec![WitType::F32, WitType::S64])),
                ),
                ("w".into(), None),
            ]),
            WitType::Result {
                ok: Some(Box::new(WitType::String)),
                err: None,
            },
        ];
        for ty in &types {
            let _ = from_json(&json, ty, "fuzz");
        }
    }
}
