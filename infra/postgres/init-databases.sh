#!/bin/sh
# First start of the postgres service: a database for each server that keeps state
# besides IA Continu's own (POSTGRES_DB): Prefect's orchestration DB and MLflow's
# tracking + registry DB, owned by POSTGRES_USER. Runs once, from
# /docker-entrypoint-initdb.d; a database that already exists is left alone.
set -eu
for db in ${IAC_POSTGRES_DATABASES:-prefect mlflow}; do
  exists=$(psql -tA --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -c "SELECT 1 FROM pg_database WHERE datname = '$db'")
  if [ "$exists" = 1 ]; then
    echo "database $db exists"
  else
    echo "creating database $db"
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
      -c "CREATE DATABASE \"$db\" OWNER \"$POSTGRES_USER\""
  fi
done
