"""sglang-matrix: one matrix spec for per-SM, per-ISA Nix builds of SGLang."""

__version__ = "0.1.0"
