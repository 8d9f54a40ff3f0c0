#!/bin/sh
# Runs once, when the PostGIS container initialises its data directory: the least-privileged
# role the app serves as (migrations grant it what it needs; it owns nothing).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v app_password="${APP_DB_PASSWORD:-gridpatrol_app}" <<'SQL'
CREATE ROLE gridpatrol_app LOGIN PASSWORD :'app_password';
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
SQL
