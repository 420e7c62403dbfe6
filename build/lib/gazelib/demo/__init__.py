"""Built-in demo corpus: drawn talking characters, synthetic speech, modelled viewers."""
