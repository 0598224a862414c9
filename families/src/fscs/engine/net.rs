//! The small U-Net both FSCS networks share (mask generator and residue predictor), rebuilt
//! from the published architecture. Activation comes before batch norm, as in the original.

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// The same `[N,C,H,W]` tensor with channels-last (NHWC) strides, the layout libtorch's
/// fastest CPU convolutions take (and keep: their outputs come back channels-last).
pub fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// One FSCS network with `cin` input and `cout` output channels.
#[derive(Debug)]
pub struct UNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    conv3: nn::Conv2D,
    bn3: nn::BatchNorm,
    deconv1: nn::ConvTranspose2D,
    bnde1: nn::BatchNorm,
    deconv2: nn::ConvTranspose2D,
    bnde2: nn::BatchNorm,
    deconv3: nn::ConvTranspose2D,
    bnde3: nn::BatchNorm,
    conv4: nn::Conv2D,
    bn4: nn::BatchNorm,
    conv5: nn::Conv2D,
}

impl UNet {
    pub fn new(p: nn::Path<'_>, cin: i64, cout: i64) -> UNet {
        let down = |name: &str, i, o| {
            let cfg = nn::ConvConfig { stride: 2, padding: 1, bias: false, ..Default::default() };
            nn::conv2d(&p / name, i, o, 3, cfg)
        };
        let up = |name: &str, i, o| {
            let cfg = nn::ConvTransposeConfig { stride: 2, padding: 1, output_padding: 1, bias: false, ..Default::default() };
            nn::conv_transpose2d(&p / name, i, o, 3, cfg)
        };
        let same = |name: &str, i, o| {
            let cfg = nn::ConvConfig { stride: 1, padding: 1, bias: true, ..Default::default() };
            nn::conv2d(&p / name, i, o, 3, cfg)
        };
        let bn = |name: &str, c| nn::batch_norm2d(&p / name, c, Default::default());
        UNet {
            conv1: down("conv1", cin, 2 * cin),
            bn1: bn("bn1", 2 * cin),
            conv2: down("conv2", 2 * cin, 4 * cin),
            bn2: bn("bn2", 4 * cin),
            conv3: down("conv3", 4 * cin, 8 * cin),
            bn3: bn("bn3", 8 * cin),
            deconv1: up("deconv1", 8 * cin, 4 * cin),
            bnde1: bn("bnde1", 4 * cin),
            deconv2: up("deconv2", 8 * cin, 2 * cin),
            bnde2: bn("bnde2", 2 * cin),
            deconv3: up("deconv3", 4 * cin, 2 * cin),
            bnde3: bn("bnde3", 2 * cin),
            conv4: same("conv4", 2 * cin + 3, cin),
            bn4: bn("bn4", cin),
            conv5: same("conv5", cin, cout),
        }
    }

    /// Runs the network on `x` (`[B,cin,H,W]`); `image` (`[B,3,H,W]`) feeds the last skip
    /// connection. Returns conv5's output before the final activation. Activations are
    /// channels-last throughout (as the weights are, see `Fscs::load`).
    pub fn forward(&self, x: &Tensor, image: &Tensor) -> Tensor {
        let (x, image) = (&channels_last(x), &channels_last(image));
        let block = |m: &dyn ModuleT, bn: &nn::BatchNorm, x: &Tensor| bn.forward_t(&m.forward_t(x, false).relu(), false);
        let x1 = block(&self.conv1, &self.bn1, x);
        let x2 = block(&self.conv2, &self.bn2, &x1);
        let x3 = block(&self.conv3, &self.bn3, &x2);
        let y = Tensor::cat(&[block(&self.deconv1, &self.bnde1, &x3), x2], 1);
        let y = Tensor::cat(&[block(&self.deconv2, &self.bnde2, &y), x1], 1);
        let y = Tensor::cat(&[block(&self.deconv3, &self.bnde3, &y), image.shallow_clone()], 1);
        let y = block(&self.conv4, &self.bn4, &y);
        self.conv5.forward_t(&y, false)
    }
}
