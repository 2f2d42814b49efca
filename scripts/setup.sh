#!/usr/bin/env bash
# Installs what deploywatch and its tests need on Debian or Ubuntu: clickhouse-server
# and clickhouse-client from the distribution, and nats-server (the tests run
# deploywatch against an external NATS too). Safe to run again.
set -euo pipefail

need=()
command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null 2>&1 || need+=(clickhouse-client)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)

if [ ${#need[@]} -eq 0 ]; then
  echo "setup: clickhouse-server, clickhouse-client and nats-server are installed"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "setup: run as root or install sudo to apt-get install ${need[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "setup: installing ${need[*]} with apt-get"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"

# Debian's nats-server package starts a service on 127.0.0.1:4222, where
# `deploywatch serve` runs its embedded NATS by default. The tests only need
# the binary: stop the service that this run installed.
if [[ " ${need[*]} " == *" nats-server "* ]] && command -v systemctl >/dev/null 2>&1; then
  if $sudo systemctl disable --now nats-server >/dev/null 2>&1; then
    echo "setup: stopped and disabled the nats-server service apt started (deploywatch serve embeds NATS on 127.0.0.1:4222)"
  fi
fi
