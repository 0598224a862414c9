//! U2-Net's nested U-blocks (Qin et al., "U2-Net: Going Deeper with Nested U-Structure for
//! Salient Object Detection", Pattern Recognition 2020) and the two networks built from them
//! that Lamina runs: U2-Netp (the small salient-object net) and IS-Net (Qin et al., "Highly
//! Accurate Dichotomous Image Segmentation", ECCV 2022). Rebuilt in tch from the published
//! architectures; the weights are the published ONNX files' (`onnx.rs`), whose batch norms
//! are already folded into the convolutions.
//!
//! The convolutions are built in the order the networks run them, which is the order of the
//! ONNX files' `Conv` nodes: every one is checked against its node's shape, stride and
//! dilation as it is taken, so a file of another network is refused, not misread.

use tch::{Device, Tensor};

use super::onnx::ConvNode;

/// A convolution with its bias (batch norm folded in) and an optional ReLU after it.
#[derive(Debug)]
struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    /// The weights in a reduced precision, when the network runs in one (the fp32 ones
    /// stay, so going back to fp32 is exact).
    reduced: Option<(Tensor, Option<Tensor>)>,
    stride: i64,
    dilation: i64,
    padding: i64,
    relu: bool,
}

impl Conv {
    fn forward(&self, x: &Tensor) -> Tensor {
        let (weight, bias) = match &self.reduced {
            Some((w, b)) => (w, b.as_ref()),
            None => (&self.weight, self.bias.as_ref()),
        };
        let y = x.conv2d(weight, bias, [self.stride; 2], [self.padding; 2], [self.dilation; 2], 1);
        if self.relu {
            y.relu()
        } else {
            y
        }
    }
}

/// Takes the networks' convolutions from the file in order, checking each.
struct Weights<I: Iterator<Item = ConvNode>> {
    nodes: I,
    taken: usize,
    device: Device,
}

impl<I: Iterator<Item = ConvNode>> Weights<I> {
    /// The next convolution, which must be `cout x cin x k x k` with this stride and dilation
    /// (padding `dilation * (k / 2)`).
    fn conv(&mut self, cin: i64, cout: i64, k: i64, stride: i64, dilation: i64, relu: bool) -> Result<Conv, String> {
        let index = self.taken;
        self.taken += 1;
        let node = self.nodes.next().ok_or_else(|| format!("the file has {index} convolutions; the network needs more"))?;
        let padding = dilation * (k / 2);
        let want = [cout, cin, k, k];
        if node.weight.size() != want
            || node.strides != [stride, stride]
            || node.dilations != [dilation, dilation]
            || node.pads != [padding; 4]
            || node.group != 1
            || node.bias.as_ref().is_some_and(|b| b.size() != [cout])
        {
            return Err(format!(
                "convolution {index} is {:?} (stride {:?}, dilation {:?}), expected {want:?} (stride {stride}, dilation {dilation}): not the network's file",
                node.weight.size(),
                node.strides,
                node.dilations
            ));
        }
        Ok(Conv {
            weight: node.weight.to_device(self.device),
            bias: node.bias.map(|b| b.to_device(self.device)),
            stride,
            dilation,
            padding,
            relu,
            reduced: None,
        })
    }
}

/// Bilinear resize of `x` to the height and width of `like` (half-pixel centres, as the
/// networks were trained and exported).
pub fn upsample_like(x: &Tensor, like: &Tensor) -> Tensor {
    let size = like.size();
    resize(x, size[2], size[3])
}

pub fn resize(x: &Tensor, h: i64, w: i64) -> Tensor {
    let size = x.size();
    if size[2] == h && size[3] == w {
        return x.shallow_clone();
    }
    x.upsample_bilinear2d([h, w], false, None, None)
}

fn pool(x: &Tensor) -> Tensor {
    x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], true)
}

/// A residual U-block: `RSU-L` (L levels, pooled between them, the deepest dilated) or
/// `RSU-4F` (four levels at full resolution, dilations 1, 2, 4, 8).
#[derive(Debug)]
struct Rsu {
    input: Conv,
    encoder: Vec<Conv>,
    decoder: Vec<Conv>,
    /// RSU-4F: no pooling, dilation instead.
    dilated: bool,
}

impl Rsu {
    fn new<I: Iterator<Item = ConvNode>>(w: &mut Weights<I>, levels: usize, cin: i64, mid: i64, cout: i64) -> Result<Rsu, String> {
        let input = w.conv(cin, cout, 3, 1, 1, true)?;
        let mut encoder = vec![w.conv(cout, mid, 3, 1, 1, true)?];
        for _ in 1..levels - 1 {
            encoder.push(w.conv(mid, mid, 3, 1, 1, true)?);
        }
        encoder.push(w.conv(mid, mid, 3, 1, 2, true)?);
        let mut decoder = Vec::new();
        for _ in 0..levels - 2 {
            decoder.push(w.conv(2 * mid, mid, 3, 1, 1, true)?);
        }
        decoder.push(w.conv(2 * mid, cout, 3, 1, 1, true)?);
        Ok(Rsu { input, encoder, decoder, dilated: false })
    }

    fn new_4f<I: Iterator<Item = ConvNode>>(w: &mut Weights<I>, cin: i64, mid: i64, cout: i64) -> Result<Rsu, String> {
        Ok(Rsu {
            input: w.conv(cin, cout, 3, 1, 1, true)?,
            encoder: vec![w.conv(cout, mid, 3, 1, 1, true)?, w.conv(mid, mid, 3, 1, 2, true)?, w.conv(mid, mid, 3, 1, 4, true)?, w.conv(mid, mid, 3, 1, 8, true)?],
            decoder: vec![w.conv(2 * mid, mid, 3, 1, 4, true)?, w.conv(2 * mid, mid, 3, 1, 2, true)?, w.conv(2 * mid, cout, 3, 1, 1, true)?],
            dilated: true,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let input = self.input.forward(x);
        let levels = self.encoder.len();
        // hx[i]: the output of encoder level i (0-based).
        let mut hx: Vec<Tensor> = Vec::with_capacity(levels);
        hx.push(self.encoder[0].forward(&input));
        for i in 1..levels {
            // Pooled between levels, except before the last (dilated) one and in RSU-4F.
            let prev = if self.dilated || i == levels - 1 { hx[i - 1].shallow_clone() } else { pool(&hx[i - 1]) };
            hx.push(self.encoder[i].forward(&prev));
        }
        let mut d = self.decoder[0].forward(&Tensor::cat(&[&hx[levels - 1], &hx[levels - 2]], 1));
        for (j, conv) in self.decoder.iter().enumerate().skip(1) {
            let skip = &hx[levels - 2 - j];
            let up = if self.dilated { d } else { upsample_like(&d, skip) };
            d = conv.forward(&Tensor::cat(&[&up, skip], 1));
        }
        d + input
    }
}

/// Which published network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// U2-Netp: six encoder stages of 64 channels, a fused output of the six side outputs.
    U2Netp,
    /// IS-Net (ISNetDIS): a stride-2 input convolution, wider stages, side output 1 only.
    IsNet,
}

/// A salient-object network: `[B,3,S,S]` normalised input to `[B,1,S,S]` matte in [0,1].
#[derive(Debug)]
pub struct U2Net {
    arch: Arch,
    input: Option<Conv>,
    encoder: Vec<Rsu>,
    decoder: Vec<Rsu>,
    sides: Vec<Conv>,
    fuse: Option<Conv>,
}

/// One U-block of a network: its levels (4 with `F`: RSU-4F, dilated, never pooled) and its
/// input, middle and output channels.
type Block = (usize, bool, i64, i64, i64);
const F: bool = true;

/// The published architectures, in the order their convolutions run: the encoder's six
/// blocks, the decoder's five (5d to 1d), and the channels of the six side outputs.
struct Layout {
    encoder: [Block; 6],
    decoder: [Block; 5],
    sides: [i64; 6],
}

const U2NETP_LAYOUT: Layout = Layout {
    encoder: [(7, !F, 3, 16, 64), (6, !F, 64, 16, 64), (5, !F, 64, 16, 64), (4, !F, 64, 16, 64), (4, F, 64, 16, 64), (4, F, 64, 16, 64)],
    decoder: [(4, F, 128, 16, 64), (4, !F, 128, 16, 64), (5, !F, 128, 16, 64), (6, !F, 128, 16, 64), (7, !F, 128, 16, 64)],
    sides: [64; 6],
};

const ISNET_LAYOUT: Layout = Layout {
    encoder: [(7, !F, 64, 32, 64), (6, !F, 64, 32, 128), (5, !F, 128, 64, 256), (4, !F, 256, 128, 512), (4, F, 512, 256, 512), (4, F, 512, 256, 512)],
    decoder: [(4, F, 1024, 256, 512), (4, !F, 1024, 128, 256), (5, !F, 512, 64, 128), (6, !F, 256, 32, 64), (7, !F, 128, 16, 64)],
    sides: [64, 64, 128, 256, 512, 512],
};

impl U2Net {
    /// Builds `arch` from the `Conv` nodes of its ONNX file, on `device`.
    pub(crate) fn from_convs(arch: Arch, convs: Vec<ConvNode>, device: Device) -> Result<U2Net, String> {
        let total = convs.len();
        let w = &mut Weights { nodes: convs.into_iter(), taken: 0, device };
        let layout = match arch {
            Arch::U2Netp => &U2NETP_LAYOUT,
            Arch::IsNet => &ISNET_LAYOUT,
        };
        // IS-Net starts with a stride-2 convolution (no activation); U2-Netp does not.
        let input = if arch == Arch::IsNet { Some(w.conv(3, 64, 3, 2, 1, false)?) } else { None };
        let mut block = |&(levels, fused, cin, mid, cout): &Block| if fused { Rsu::new_4f(w, cin, mid, cout) } else { Rsu::new(w, levels, cin, mid, cout) };
        let encoder = layout.encoder.iter().map(&mut block).collect::<Result<_, _>>()?;
        let decoder = layout.decoder.iter().map(&mut block).collect::<Result<_, _>>()?;
        let sides = layout.sides.iter().map(|&c| w.conv(c, 1, 3, 1, 1, false)).collect::<Result<_, _>>()?;
        // U2-Netp fuses its six side outputs with a 1x1 convolution; IS-Net uses side 1 alone.
        let fuse = if arch == Arch::U2Netp { Some(w.conv(6, 1, 1, 1, 1, false)?) } else { None };
        let net = U2Net { arch, input, encoder, decoder, sides, fuse };
        if w.taken != total {
            return Err(format!("the file has {total} convolutions; the network uses {}", w.taken));
        }
        Ok(net)
    }

    /// Converts every weight and bias to `kind` (the input must then be in `kind` too).
    pub fn set_kind(&mut self, kind: tch::Kind) {
        let blocks = self.encoder.iter_mut().chain(self.decoder.iter_mut());
        let convs = blocks.flat_map(|b| std::iter::once(&mut b.input).chain(b.encoder.iter_mut()).chain(b.decoder.iter_mut()));
        let all = convs.chain(self.input.iter_mut()).chain(self.sides.iter_mut()).chain(self.fuse.iter_mut());
        for conv in all {
            conv.reduced = (kind != tch::Kind::Float).then(|| (conv.weight.to_kind(kind), conv.bias.as_ref().map(|b| b.to_kind(kind))));
        }
    }

    /// The matte of a normalised batch, in [0,1], at the input's size.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let start = match &self.input {
            Some(conv) => conv.forward(x),
            None => x.shallow_clone(),
        };
        let mut enc: Vec<Tensor> = Vec::with_capacity(6);
        enc.push(self.encoder[0].forward(&start));
        for stage in &self.encoder[1..] {
            let prev = pool(enc.last().unwrap_or(&start));
            enc.push(stage.forward(&prev));
        }
        // Decoder: stage 5d takes stage 6 upsampled to stage 5, and so on up to stage 1d.
        let mut dec: Vec<Tensor> = Vec::with_capacity(5);
        let mut d = enc[5].shallow_clone();
        for (i, stage) in self.decoder.iter().enumerate() {
            let skip = &enc[4 - i];
            d = stage.forward(&Tensor::cat(&[&upsample_like(&d, skip), skip], 1));
            dec.push(d.shallow_clone());
        }
        // dec[4] is stage 1d, dec[0] stage 5d.
        let side1 = self.sides[0].forward(&dec[4]);
        match self.arch {
            Arch::IsNet => upsample_like(&side1, x).sigmoid(),
            Arch::U2Netp => {
                let mut sides = vec![side1.shallow_clone()];
                for (k, conv) in self.sides.iter().enumerate().skip(1) {
                    let source = if k == 5 { &enc[5] } else { &dec[4 - k] };
                    sides.push(upsample_like(&conv.forward(source), &side1));
                }
                let fused = Tensor::cat(&sides, 1);
                self.fuse.as_ref().map_or(side1.shallow_clone(), |f| f.forward(&fused)).sigmoid()
            }
        }
    }
}
