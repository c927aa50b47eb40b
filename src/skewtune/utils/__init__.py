"""Small shared helpers: atomic writes, hashing, registries."""
