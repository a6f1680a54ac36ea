-- Runs once, when the postgres volume is created: the MLflow server gets a database of its own
-- beside the results store's (POSTGRES_DB), both owned by POSTGRES_USER.
CREATE DATABASE mlflow;
