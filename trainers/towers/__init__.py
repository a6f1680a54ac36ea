"""The towers of the dual encoder, one module per family, built by `kind` from the table in
registry.py; init.py re-draws, warm-starts and aligns them before training."""
