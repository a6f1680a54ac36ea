"""Packs: K trials of the `dual_encoder` trainer that differ only in settings a vectorised model
can hold per member, trained as one model (issue: thousands of small trials)."""
