"""Building blocks shared by zoo model families (one concept per file, no model assembly)."""
