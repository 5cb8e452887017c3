#!/usr/bin/env bash
# Installs, with apt-get, only the Debian packages mtalab needs that are missing.
# Usage: scripts/setup.sh [--with-torch]   (torch is only needed by the benchmarks)
set -euo pipefail
pkgs=(cmake g++ make git libhdf5-dev hdf5-tools libboost-program-options-dev libboost-context-dev doctest-dev
      libopenblas-openmp-dev bible-kjv python3-matplotlib python3-h5py
      slurmctld slurmd slurm-client munge   # a single-node Slurm for the Slurm launcher's tests (slurm_local.sh)
      libopenmpi-dev openmpi-bin)           # training with several processes (experiments/dist, tests/mpi)
if [[ "${1:-}" == "--with-torch" ]]; then pkgs+=(python3-torch); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The default text corpus, no network needed: the King James Bible from bible-kjv.
corpus=data/corpora/kjv.txt
cd "$(dirname "$0")/.."
if [[ ! -s $corpus ]]; then
  mkdir -p "$(dirname "$corpus")"
  bible -l0 "Gen1:1-Rev22:21" > "$corpus.tmp" && mv "$corpus.tmp" "$corpus"
fi
