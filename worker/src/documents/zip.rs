//! A ZIP archive of stored (uncompressed) members, which is all OpenRaster needs: its PNGs
//! are already compressed, and its `mimetype` member must come first, stored, with no extra
//! field, so that the bytes at offset 30 spell the type (the spec's "magic number").
//! Written from PKWARE's APPNOTE: local headers, the central directory, the end record.

/// Members in order, as `(name, bytes)`.
pub fn stored(members: &[(&str, &[u8])]) -> Result<Vec<u8>, super::RenderError> {
    let total: usize = members.iter().map(|(n, b)| 30 + n.len() + b.len() + 46 + n.len()).sum::<usize>() + 22;
    if total > u32::MAX as usize || members.len() > usize::from(u16::MAX) {
        return Err(super::RenderError::Output("the document is over the 4 GiB a ZIP archive without ZIP64 can hold".to_owned()));
    }
    let mut out = Vec::with_capacity(total);
    let mut central = Vec::new();
    for (name, bytes) in members {
        let offset = out.len() as u32;
        let crc = crc32fast::hash(bytes);
        let size = bytes.len() as u32;
        // Local file header: version 1.0, no flags, stored, no time (1980-01-01).
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        for v in [10u16, 0, 0, 0, 0x21] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, size, size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [name.len() as u16, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(bytes);
        // Its central directory entry.
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        for v in [10u16, 10, 0, 0, 0, 0x21] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, size, size] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [name.len() as u16, 0, 0, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [0u32, offset] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(name.as_bytes());
    }
    let directory = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    let n = members.len() as u16;
    for v in [0u16, 0, n, n] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [central.len() as u32, directory] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}
