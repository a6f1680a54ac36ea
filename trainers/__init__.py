"""gapsweep's trainers: pure PyTorch/NumPy science, free of Ray, MLflow and SQLAlchemy."""
