#!/bin/sh
# Runs once, when the postgres volume is created (in the official image and in the Debian-built
# one alike). The results store and the MLflow server each get a login role of their own, with
# no superuser, role or database rights, owning one database: neither can read the other's
# tables, and neither holds the superuser's password.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v results_password="$RESULTS_DB_PASSWORD" -v mlflow_password="$MLFLOW_DB_PASSWORD" <<'SQL'
CREATE ROLE gapsweep_results LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'results_password';
CREATE ROLE gapsweep_mlflow LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'mlflow_password';
CREATE DATABASE results OWNER gapsweep_results;
CREATE DATABASE mlflow OWNER gapsweep_mlflow;
SQL
