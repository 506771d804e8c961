#!/usr/bin/env bash
# Installs the system packages ioengine builds against and benchmarks with, when they are missing.
# As root it installs them with apt; otherwise it says which to install and fails.
set -euo pipefail
need=()
[ -f /usr/include/liburing.h ] || need+=(liburing-dev)
[ -f /usr/include/libaio.h ] || need+=(libaio-dev)
command -v fio >/dev/null 2>&1 || need+=(fio)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
python3 -c 'import sysconfig,os,sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"],"Python.h")) else 1)' \
  || need+=(python3-dev)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ioengine: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "ioengine needs these packages: ${need[*]}" >&2
  echo "install them with: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
