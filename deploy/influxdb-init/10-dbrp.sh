#!/bin/bash
# Runs once, on the first start of the influxdb:2.x image (after `setup`): maps the InfluxDB 1.x
# database name "$DOCKER_INFLUXDB_INIT_BUCKET" with retention policy "autogen" to the bucket, so
# InfluxQL clients (the bundled Grafana data source) can query it through /query.
set -euo pipefail
influx v1 dbrp create \
  --org "${DOCKER_INFLUXDB_INIT_ORG}" \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
  --rp autogen \
  --default
