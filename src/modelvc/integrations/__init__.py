"""Training integrations over the public Registry API: `run` (any loop) and
`transformers.ModelvcCallback` (the Hugging Face Trainer). docs/training.md."""
