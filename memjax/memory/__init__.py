"""Memory families: each a State NamedTuple, pure init/read/write ops and a Flax cell."""
