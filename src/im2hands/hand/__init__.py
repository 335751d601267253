"""Hand models and conventions: joint orders, the MANO-format layer, the open hand model, canonicalisation."""
