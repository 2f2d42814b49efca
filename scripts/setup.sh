#!/usr/bin/env bash
# Installs what deploywatch and its tests need on Debian or Ubuntu: clickhouse-server
# and clickhouse-client from the distribution, nats-server (the tests run
# deploywatch against an external NATS too), and prometheus and
# prometheus-alertmanager (the tests run them as real senders to /api/v1/write and
# /webhooks/alertmanager), and curl and jq (the recipe tests run the recipes'
# shell). Only what is missing is installed, and the services
# apt starts for the packages this run installed are stopped and disabled: the
# tests start their own on free ports. Safe to run again.
set -euo pipefail

need=()
command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null 2>&1 || need+=(clickhouse-client)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || [ -x /usr/bin/prometheus-alertmanager ] || need+=(prometheus-alertmanager)
# The recipe tests run the recipes' shell as CI systems do, with curl and jq.
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v jq >/dev/null 2>&1 || need+=(jq)

if [ ${#need[@]} -eq 0 ]; then
  echo "setup: clickhouse-server, clickhouse-client, nats-server, prometheus, prometheus-alertmanager, curl and jq are installed"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "setup: run as root or install sudo to apt-get install ${need[*]}" >&2; exit 1; }
  sudo="sudo"
fi
# prometheus pulls in prometheus-node-exporter; note whether it was here before.
node_exporter_before=false
dpkg -s prometheus-node-exporter >/dev/null 2>&1 && node_exporter_before=true
echo "setup: installing ${need[*]} with apt-get"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"

# The tests only need the binaries. Debian's packages start services on fixed
# ports: nats-server on 127.0.0.1:4222, where `deploywatch serve` runs its
# embedded NATS by default, prometheus on :9090 with prometheus-node-exporter
# (which it recommends) on :9100, and prometheus-alertmanager on :9093. Stop and
# disable the ones this run installed; without systemd (a container) apt
# started none.
services=()
for pkg in "${need[@]}"; do
  case $pkg in
    nats-server) services+=(nats-server) ;;
    prometheus)
      services+=(prometheus)
      $node_exporter_before || services+=(prometheus-node-exporter)
      ;;
    prometheus-alertmanager) services+=(prometheus-alertmanager) ;;
  esac
done
if [ ${#services[@]} -gt 0 ] && command -v systemctl >/dev/null 2>&1; then
  for svc in "${services[@]}"; do
    if $sudo systemctl disable --now "$svc" >/dev/null 2>&1; then
      echo "setup: stopped and disabled the $svc service apt started (the tests run their own on free ports)"
    fi
  done
fi
