//! Which weights files dreamfarm reads (`.safetensors`) and what to tell a
//! user who has a PyTorch checkpoint instead: torchvision's `.pth` files
//! are what a GoogLeNet user has in hand, and the worker's loader, the
//! submitting client and the coordinator all meet them.

/// Whether a file starting with `head` is a PyTorch checkpoint: a ZIP
/// archive, or before torch 1.6 a pickle.
pub fn is_pytorch_checkpoint(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04") || head.first() == Some(&0x80)
}

/// What the checkpoint `shown` (a path, or a stand-in where the file has
/// none) is, to follow "it is" or "the file is", with the one command that
/// converts it.
pub fn pytorch_checkpoint_advice(shown: &str) -> String {
    format!(
        "a PyTorch checkpoint (.pth), and dreamfarm reads .safetensors. Fix: convert it once with the project's Python: .venv/bin/python -c \"import sys, torch, safetensors.torch as st; st.save_file({{k: v.contiguous() for k, v in torch.load(sys.argv[1], weights_only=True).items()}}, sys.argv[2])\" {shown} WEIGHTS.safetensors, then pass --weights WEIGHTS.safetensors"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_told_from_safetensors_and_other_files() {
        assert!(is_pytorch_checkpoint(b"PK\x03\x04 and the rest"));
        assert!(is_pytorch_checkpoint(b"\x80\x02\x8a\x0alegacy pickle"));
        // A safetensors file starts with its header's length (little-endian).
        for other in [
            &b"\x58\x00\x00\x00\x00\x00\x00\x00{"[..],
            b"hello",
            b"PK",
            b"",
        ] {
            assert!(!is_pytorch_checkpoint(other), "{other:?}");
        }
        let advice = pytorch_checkpoint_advice("/tmp/g.pth");
        assert!(
            advice.contains("torch.load(sys.argv[1], weights_only=True)"),
            "{advice}"
        );
        assert!(
            advice.contains(" /tmp/g.pth WEIGHTS.safetensors"),
            "{advice}"
        );
    }
}
