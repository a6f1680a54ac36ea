"""`orchestrator analyze`: the modality gap of embeddings computed elsewhere (the paper's released
features, a user's own model): read and checked (inputs.py), measured (measure.py) and shown
as tables, JSON and a picture (output.py)."""
