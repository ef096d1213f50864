//! The GPU cost model of `ROOFLINE.md`, shared by the twin's simulated engine and the capacity
//! report: model geometries and GPU ceilings (presets), a request's GPU time for its prompt and
//! output lengths, and the memory-bandwidth utilisation (MBU) a measured inter-token time
//! implies. Pure arithmetic: no I/O.

/// A model's shape, as far as its cost goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    pub params: f64,
    pub layers: f64,
    pub kv_heads: f64,
    pub head_dim: f64,
    pub bytes_per_weight: f64,
    pub bytes_per_kv: f64,
}

impl Geometry {
    pub fn weight_bytes(&self) -> f64 {
        self.params * self.bytes_per_weight
    }
    /// KV-cache bytes per token: 2 (K and V) · layers · kv_heads · head_dim · bytes.
    pub fn kv_bytes_per_token(&self) -> f64 {
        2.0 * self.layers * self.kv_heads * self.head_dim * self.bytes_per_kv
    }
}

/// A GPU's ceilings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gpu {
    pub hbm_bytes_per_s: f64,
    pub flops: f64,
    pub memory_bytes: f64,
}

/// Model presets: `ROOFLINE.md`'s geometries (bf16).
pub fn model_preset(name: &str) -> Option<Geometry> {
    let g = |params: f64, layers: f64| Geometry {
        params,
        layers,
        kv_heads: 8.0,
        head_dim: 128.0,
        bytes_per_weight: 2.0,
        bytes_per_kv: 2.0,
    };
    match name {
        "llama-3.1-8b" => Some(g(8.03e9, 32.0)),
        // 14.5 GB of weights, Llama's KV shape.
        "mistral-7b" => Some(g(7.25e9, 32.0)),
        "codestral-22b" => Some(g(22.2e9, 56.0)),
        _ => None,
    }
}

/// GPU presets (dense bf16 FLOP/s, HBM bandwidth, memory).
pub fn gpu_preset(name: &str) -> Option<Gpu> {
    match name {
        "h100-sxm" => Some(Gpu {
            hbm_bytes_per_s: 3.35e12,
            flops: 989e12,
            memory_bytes: 80e9,
        }),
        "h200" => Some(Gpu {
            hbm_bytes_per_s: 4.8e12,
            flops: 989e12,
            memory_bytes: 141e9,
        }),
        _ => None,
    }
}

/// `[roofline.<endpoint>]`: the model and GPUs behind an endpoint, for putting measurements
/// beside the roofline. A twin backend with `[stack.backend.engine]` declares itself.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// `llama-3.1-8b`, `mistral-7b`, `codestral-22b`.
    pub model: String,
    /// `h100-sxm`, `h200`.
    pub gpu: String,
    /// GPUs serving the endpoint (replicas or tensor parallel; ceilings scale with them).
    #[serde(default = "one")]
    pub gpus: u32,
    /// Achieved shares of bandwidth and FLOP/s the request ceilings assume (ROOFLINE.md's
    /// well-tuned 0.8 and 0.5).
    #[serde(default = "mbu")]
    pub mbu: f64,
    #[serde(default = "mfu")]
    pub mfu: f64,
}

fn one() -> u32 {
    1
}
fn mbu() -> f64 {
    0.8
}
fn mfu() -> f64 {
    0.5
}

/// The batch ROOFLINE.md's per-request costs assume.
pub const REFERENCE_BATCH: f64 = 64.0;

/// What is wrong with a hardware declaration.
#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    #[error("model '{0}': one of llama-3.1-8b, mistral-7b, codestral-22b")]
    Model(String),
    #[error("gpu '{0}': one of h100-sxm, h200")]
    Gpu(String),
    #[error("mbu and mfu must be in (0, 1], gpus at least 1")]
    Shares,
}

impl Hardware {
    /// The presets, or what is wrong with the declaration.
    pub fn resolve(&self) -> Result<(Geometry, Gpu), HardwareError> {
        let g =
            model_preset(&self.model).ok_or_else(|| HardwareError::Model(self.model.clone()))?;
        let gpu = gpu_preset(&self.gpu).ok_or_else(|| HardwareError::Gpu(self.gpu.clone()))?;
        let share = |v: f64| v > 0.0 && v <= 1.0;
        if !(share(self.mbu) && share(self.mfu) && self.gpus >= 1) {
            return Err(HardwareError::Shares);
        }
        Ok((g, gpu))
    }

    /// ROOFLINE.md's GPU time of one request of `isl` prompt and `osl` output tokens at batch
    /// `batch`: `ISL·2P / (u_F·F) + OSL·(W/B + (ISL + OSL/2)·kv) / (u_B·BW)`, seconds.
    pub fn request_gpu_s(&self, isl: f64, osl: f64, batch: f64) -> Option<f64> {
        let (g, gpu) = self.resolve().ok()?;
        let prefill = isl * 2.0 * g.params / (self.mfu * gpu.flops);
        let per_token = g.weight_bytes() / batch + (isl + osl / 2.0) * g.kv_bytes_per_token();
        Some(prefill + osl * per_token / (self.mbu * gpu.hbm_bytes_per_s))
    }

    /// Requests/s the endpoint's GPUs could serve of this one shape (ROOFLINE's ceiling).
    pub fn ceiling_rps(&self, isl: f64, osl: f64) -> Option<f64> {
        let t = self.request_gpu_s(isl, osl, REFERENCE_BATCH)?;
        (t > 0.0).then(|| f64::from(self.gpus) / t)
    }

    /// The MBU a measured inter-token time implies: each step reads the weights once and the
    /// KV of `batch` contexts of `context` tokens, `((W + kv·B·c) / TPOT) / BW`.
    pub fn achieved_mbu(&self, tpot_s: f64, batch: f64, context: f64) -> Option<f64> {
        let (g, gpu) = self.resolve().ok()?;
        let bytes = g.weight_bytes() + g.kv_bytes_per_token() * batch.max(1.0) * context;
        (tpot_s > 0.0).then(|| bytes / tpot_s / gpu.hbm_bytes_per_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h100_llama() -> Hardware {
        toml::from_str("model = \"llama-3.1-8b\"\ngpu = \"h100-sxm\"").unwrap()
    }

    /// ROOFLINE.md's per-feature table (within rounding): completion 1k/64 ≈ 43 GPU-ms,
    /// ≈ 23 requests/s; chat 4k/400 ≈ 255 GPU-ms, ≈ 3.9 requests/s.
    #[test]
    fn request_costs_match_the_roofline_table() {
        let h = h100_llama();
        let t = h.request_gpu_s(1000.0, 64.0, 64.0).unwrap();
        assert!((t * 1000.0 - 43.0).abs() < 43.0 * 0.05, "{t}");
        let chat = h.ceiling_rps(4000.0, 400.0).unwrap();
        assert!((chat - 3.9).abs() < 3.9 * 0.1, "{chat}");
    }

    /// One stream at 4.79 ms a token reads the weights at full bandwidth: MBU 1; at 6 ms, 0.8.
    #[test]
    fn mbu_of_a_single_stream() {
        let h = h100_llama();
        let full = h.achieved_mbu(16.06e9 / 3.35e12, 1.0, 0.0).unwrap();
        assert!((full - 1.0).abs() < 0.01, "{full}");
        let slow = h.achieved_mbu(16.06e9 / 3.35e12 / 0.8, 1.0, 0.0).unwrap();
        assert!((slow - 0.8).abs() < 0.01, "{slow}");
        assert!(h.achieved_mbu(0.0, 1.0, 0.0).is_none());
    }
}
