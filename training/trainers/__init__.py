"""The trainer registry: one module per trainer, `registry.TRAINERS` by key, `trainer_get(key)`."""
