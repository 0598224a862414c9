//! Reads the convolutions of an ONNX file: their weights, biases and attributes, in the order
//! the graph runs them. That is all the matting networks need from the published files: the
//! networks themselves are written in tch (`u2net.rs`), so they run batched, at any size and
//! on any device, and a worker needs nothing but the file as its publisher ships it.
//!
//! ONNX is protocol buffers; this reads the few fields it needs (ModelProto.graph, its nodes
//! and initialisers) straight from the bytes, without a protobuf toolchain.

use tch::{Kind, Tensor};

/// One `Conv` node.
#[derive(Debug)]
pub struct ConvNode {
    /// `[out, in/group, kh, kw]` float32 on the CPU (float16 files are widened).
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub strides: Vec<i64>,
    pub dilations: Vec<i64>,
    pub pads: Vec<i64>,
    pub group: i64,
}

/// The `Conv` nodes of the ONNX model in `bytes`, in graph order.
pub(crate) fn conv_nodes(bytes: &[u8]) -> Result<Vec<ConvNode>, String> {
    let graph = fields(bytes)?
        .into_iter()
        .find_map(|(n, v)| (n == 7).then_some(v))
        .and_then(Value::bytes)
        .ok_or("no graph in the file (not an ONNX model)")?;
    let mut initialisers = std::collections::HashMap::new();
    let mut convs = Vec::new();
    for (n, v) in fields(graph)? {
        match (n, v) {
            (1, Value::Bytes(node)) => {
                let node = Node::parse(node)?;
                if node.op_type == "Conv" {
                    convs.push(node);
                }
            }
            (5, Value::Bytes(tensor)) => {
                let (name, t) = parse_tensor(tensor)?;
                initialisers.insert(name, t);
            }
            _ => {}
        }
    }
    let mut take = |name: &str| initialisers.remove(name).ok_or_else(|| format!("Conv input {name} is not an initialiser"));
    convs
        .into_iter()
        .map(|node| {
            let weight = take(node.inputs.get(1).map(String::as_str).unwrap_or(""))?;
            let bias = match node.inputs.get(2).filter(|s| !s.is_empty()) {
                Some(name) => Some(take(name)?),
                None => None,
            };
            let ints = |name: &str, default: &[i64]| node.ints.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_else(|| default.to_vec());
            Ok(ConvNode {
                weight,
                bias,
                strides: ints("strides", &[1, 1]),
                dilations: ints("dilations", &[1, 1]),
                pads: ints("pads", &[0, 0, 0, 0]),
                group: ints("group", &[1])[0],
            })
        })
        .collect()
}

struct Node {
    inputs: Vec<String>,
    op_type: String,
    /// Integer and integer-list attributes by name.
    ints: Vec<(String, Vec<i64>)>,
}

impl Node {
    fn parse(bytes: &[u8]) -> Result<Node, String> {
        let mut node = Node { inputs: Vec::new(), op_type: String::new(), ints: Vec::new() };
        for (n, v) in fields(bytes)? {
            match (n, v) {
                (1, Value::Bytes(s)) => node.inputs.push(utf8(s)?),
                (4, Value::Bytes(s)) => node.op_type = utf8(s)?,
                (5, Value::Bytes(attr)) => {
                    let (mut name, mut ints) = (String::new(), Vec::new());
                    for (n, v) in fields(attr)? {
                        match (n, v) {
                            (1, Value::Bytes(s)) => name = utf8(s)?,
                            (3, Value::Varint(i)) => ints.push(i as i64),
                            (8, Value::Varint(i)) => ints.push(i as i64),
                            (8, Value::Bytes(packed)) => ints.extend(varints(packed)?.into_iter().map(|i| i as i64)),
                            _ => {}
                        }
                    }
                    node.ints.push((name, ints));
                }
                _ => {}
            }
        }
        Ok(node)
    }
}

/// An initialiser's name and values (float32 or float16, widened to float32).
fn parse_tensor(bytes: &[u8]) -> Result<(String, Tensor), String> {
    let (mut dims, mut dtype, mut name, mut raw, mut floats) = (Vec::new(), 0u64, String::new(), None, Vec::new());
    for (n, v) in fields(bytes)? {
        match (n, v) {
            (1, Value::Varint(d)) => dims.push(d as i64),
            (1, Value::Bytes(packed)) => dims.extend(varints(packed)?.into_iter().map(|d| d as i64)),
            (2, Value::Varint(t)) => dtype = t,
            (4, Value::Bytes(packed)) => floats.extend(packed.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            (4, Value::Fixed32(f)) => floats.push(f32::from_bits(f)),
            (8, Value::Bytes(s)) => name = utf8(s)?,
            (9, Value::Bytes(r)) => raw = Some(r),
            (14, Value::Varint(1)) => return Err(format!("initialiser {name} is stored outside the file")),
            _ => {}
        }
    }
    let count: i64 = dims.iter().product();
    let bad = |what: &str| format!("initialiser {name}: {what}");
    let tensor = match (dtype, raw) {
        (1, Some(r)) if r.len() as i64 == count * 4 => Tensor::from_data_size(r, &dims, Kind::Float),
        (10, Some(r)) if r.len() as i64 == count * 2 => Tensor::from_data_size(r, &dims, Kind::Half).to_kind(Kind::Float),
        (1, None) if floats.len() as i64 == count => Tensor::from_slice(&floats).view(dims.as_slice()),
        (1 | 10, _) => return Err(bad("its data does not match its shape")),
        (t, _) => return Err(bad(&format!("data type {t} (only float32 and float16 weights are read)"))),
    };
    Ok((name, tensor))
}

fn utf8(s: &[u8]) -> Result<String, String> {
    String::from_utf8(s.to_vec()).map_err(|_| "a name is not UTF-8".to_owned())
}

enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Value<'a> {
    fn bytes(self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// The (field number, value) pairs of one protobuf message.
fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Value<'_>)>, String> {
    let truncated = || "truncated protobuf (the file is damaged)".to_owned();
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf).ok_or_else(truncated)?;
        let value = match key & 7 {
            0 => Value::Varint(varint(&mut buf).ok_or_else(truncated)?),
            1 => {
                buf = buf.get(8..).ok_or_else(truncated)?;
                Value::Fixed64
            }
            2 => {
                let len = usize::try_from(varint(&mut buf).ok_or_else(truncated)?).map_err(|_| truncated())?;
                let (head, tail) = (buf.get(..len).ok_or_else(truncated)?, &buf[len..]);
                buf = tail;
                Value::Bytes(head)
            }
            5 => {
                let b = buf.get(..4).ok_or_else(truncated)?;
                let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                buf = &buf[4..];
                Value::Fixed32(v)
            }
            t => return Err(format!("protobuf wire type {t} (not an ONNX model)")),
        };
        out.push((key >> 3, value));
    }
    Ok(out)
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn varints(mut packed: &[u8]) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    while !packed.is_empty() {
        out.push(varint(&mut packed).ok_or("truncated packed integers")?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a length-delimited field.
    fn field(n: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn reads_a_conv_node_with_its_initialisers_and_attributes() {
        let mut weight = vec![8u8, 1, 8, 1, 8, 1, 8, 1, 16, 1]; // dims 1,1,1,1; float
        weight.extend(field(8, b"w"));
        weight.extend(field(9, &2.5f32.to_le_bytes()));
        let mut attr = field(1, b"dilations");
        attr.extend(field(8, &[2, 2]));
        let mut node = field(1, b"x");
        node.extend(field(1, b"w"));
        node.extend(field(4, b"Conv"));
        node.extend(field(5, &attr));
        let mut graph = field(1, &node);
        graph.extend(field(5, &weight));
        let model = field(7, &graph);
        let convs = conv_nodes(&model).unwrap();
        assert_eq!(convs.len(), 1);
        assert_eq!(convs[0].weight.size(), [1, 1, 1, 1]);
        assert_eq!(f64::try_from(convs[0].weight.sum(Kind::Float)).unwrap(), 2.5);
        assert_eq!(convs[0].dilations, [2, 2]);
        assert_eq!(convs[0].strides, [1, 1]);
        assert!(convs[0].bias.is_none());
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        assert!(conv_nodes(&[0x3a, 0x40, 1, 2]).is_err());
        assert!(conv_nodes(b"not an onnx file at all").is_err());
        assert!(conv_nodes(&[]).is_err());
    }
}
